"""Files out of memory: a bounded cache of the blocks whose file lists are loaded.

A grid inventory has tens of millions of files, four fifths of what a naive
daemon would hold, and almost no request needs them: blocks carry their size
and file count.  So files live in the store, and a block's files are loaded
(as one query) when something asks for them; the least recently used blocks
are dropped again once more than `limit` files are loaded.

A block whose files a change touched is *held* until that change is
committed or undone: its files in memory are then ahead of the store (or its
undo refers to them) and must not be dropped.  The LFN index covers loaded
files only; for any other LFN the store says which block holds it.

The `source` reads the store: the daemon's own read connection, or in an
application's child the channel to the daemon (apps/filechannel.py).  Blocks
are views of their rows (columns.py): the loaded files are kept here by block,
not on the block.
"""

from functools import partial

from .objects import File

NO_LIMIT = None


class FileCache:
    def __init__(self, inventory, source=None, limit: int | None = NO_LIMIT):
        self.inventory = inventory
        self.source = source
        self.limit = limit
        self.by_lfn = {}       # lfn -> File, for every loaded block
        self._files = {}       # block -> its files by LFN, for every loaded block
        self._loaded = {}      # block -> its file count when counted; insertion order is LRU
        self._held = {}        # block -> number of changes holding it
        self.loaded_files = 0

    def __repr__(self):
        return f"<FileCache: {len(self._loaded)} blocks, {self.loaded_files} files loaded>"

    def stats(self) -> dict:
        return {"files": self.loaded_files, "blocks": len(self._loaded), "limit": self.limit}

    def files(self, block) -> dict:
        """The block's files by LFN, loaded from the store if need be."""
        files = self._ensure(block)
        self.trim()
        return files

    def loaded(self, block) -> bool:
        """Whether the block's files are in memory."""
        return block in self._files

    def _ensure(self, block) -> dict:
        files = self._files.get(block)
        if files is None:
            files = self._files[block] = self._load(block)
            self._count(block)
        elif block in self._loaded:  # most recently used goes last
            self._loaded[block] = self._loaded.pop(block)
        return files

    def _load(self, block) -> dict:
        if self.source is None or not block.id:
            return {}
        files = {}
        new = File.__new__
        for fid, _, lfn, size, adler32, crc32, md5 in self.source.files(block.id):
            f = new(File)
            f._lfn, f.block, f._size, f.id = lfn, block, size, fid
            f._adler32, f._crc32, f._md5 = adler32, crc32, md5
            files[lfn] = f
        self.by_lfn.update(files)
        return files

    def created(self, block):
        """A block a change just created: its (empty) file list is all there is.
        Returns the undo."""
        self._files[block] = {}
        self._count(block)
        return partial(self._forget, block)

    def _forget(self, block):
        """The block's creation is undone: its row may be given to another block."""
        self._files.pop(block, None)   # (unless trimmed: not held, it may have been)
        self.loaded_files -= self._loaded.pop(block, 0)

    def find(self, lfn):
        """The File with this LFN, or None: loaded, or found through the store."""
        if not isinstance(lfn, str):
            return None
        found = self.by_lfn.get(lfn)
        if found is not None or self.source is None:
            return found
        where = self.source.block_of(lfn)
        if where is None:
            return None
        block_id, dataset_name, block_name = where
        dataset = self.inventory.datasets.get(dataset_name)
        block = dataset.find_block(block_name) if dataset is not None else None
        if block is None or block.id != block_id or block in self._files:
            return None  # deleted, replaced, or loaded (then by_lfn would have it)
        return self.files(block).get(lfn)

    def any_known(self, lfns: list) -> bool:
        """Whether any of these LFNs names a file, loaded or in the store (a batch of new
        files asks once instead of once per file)."""
        if not self.by_lfn.keys().isdisjoint(lfns):
            return True
        return self.source is not None and bool(self.source.existing(lfns))

    # ------------------------------------------------------------ holding
    def hold(self, block) -> dict:
        """Keep the block's files in memory until `release`; returns them."""
        files = self._ensure(block)
        self._held[block] = self._held.get(block, 0) + 1
        self.trim()
        return files

    def release(self, blocks):
        for block in blocks:
            left = self._held.pop(block) - 1
            if left:
                self._held[block] = left
            if left or not self._deleted(block):
                self._count(block)
            else:   # a deleted block's files have no place in memory any more
                self.loaded_files -= self._loaded.pop(block, 0)
                self._files.pop(block, None)
        self.trim()

    def _deleted(self, block) -> bool:
        table, row = block
        return not table.exists(row)

    def _count(self, block):
        """(Re)count a loaded block's files and make it the most recently used."""
        files = self._files.get(block)
        self.loaded_files -= self._loaded.pop(block, 0)
        if files is not None:
            self._loaded[block] = len(files)
            self.loaded_files += len(files)

    def trim(self):
        """Drop the least recently used blocks that nothing holds, down to the limit."""
        if self.limit is None or self.source is None or self.loaded_files <= self.limit:
            return
        excess, victims = self.loaded_files - self.limit, []
        for block, count in self._loaded.items():  # oldest first, only as far as needed
            if excess <= 0:
                break
            if block not in self._held:
                victims.append(block)
                excess -= count
        for block in victims:
            self.loaded_files -= self._loaded.pop(block)
            for lfn, f in self._files.pop(block).items():
                if self.by_lfn.get(lfn) is f:
                    del self.by_lfn[lfn]
