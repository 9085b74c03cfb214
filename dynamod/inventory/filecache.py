"""Files out of memory: a bounded cache of the blocks whose file lists are loaded.

A grid inventory has tens of millions of files, four fifths of what a naive
daemon would hold, and almost no request needs them: blocks carry their size
and file count.  So files live in the store, and a block's files are loaded
(as one query) when something asks for them, packed (packedfiles.py: about a
fifth of the memory of File objects); the least recently used blocks are
dropped again once more than `limit` files are loaded.  The bound counts files,
whatever their form.

A block whose files a change touched is *held* until that change is committed
or undone: its files are then File objects the change works on, ahead of the
store (or referred to by its undo), and must not be dropped.  `by_lfn` indexes
the files of held blocks, the only ones the store may not know; any other LFN
is looked up in the store, which says which block holds it.  The first files of
a block an injection created stay packed while held (`add_new`: no File object
per file), indexed to their block's FileMap, until a change needs them as File
objects.  Without a store
(an inventory in memory only), memory is the files' only copy: they stay File
objects, every one indexed.

The cache is keyed by block id (blocks are views of their rows, columns.py:
nothing is kept on them), and the `source` reads the store: the daemon's
own read connection, or in an application's child the channel to the daemon
(apps/filechannel.py).
"""

from itertools import chain

from .columns import repeated
from .packedfiles import FileMap, PackedFiles

NO_LIMIT = None


class FileCache:
    def __init__(self, inventory, source=None, limit: int | None = NO_LIMIT):
        self.inventory = inventory
        self.source = source
        self.limit = limit
        self.by_lfn = {}       # lfn -> File (or FileMap: add_new), for every held block
                               # (every block, no store)
        self._blocks = {}      # block id -> PackedFiles, or {lfn: File}; in LRU order
        self._held = {}        # block id -> [changes holding it, files counted at hold]
        self._indexed = {}     # block id -> (LFNs, FileMap) of add_new, until release
        self.loaded_files = 0

    def __repr__(self):
        return f"<FileCache: {len(self._blocks)} blocks, {self.loaded_files} files loaded>"

    def stats(self) -> dict:
        return {"files": self.loaded_files, "blocks": len(self._blocks), "limit": self.limit}

    def files(self, block):
        """The block's files by LFN (a Mapping), loaded from the store if need be."""
        files = self._ensure(block)
        self.trim()
        return files if type(files) is dict else FileMap(block, files)

    def _ensure(self, block):
        key = block.id
        files = self._blocks.pop(key, None)
        if files is None:
            files = self._load(block)
            self.loaded_files += len(files)
        self._blocks[key] = files  # the most recently used goes last
        return files

    def _load(self, block):
        if self.source is None:
            return {}
        return PackedFiles.of_rows(self.source.files(block.id))

    def created(self, block):
        """A block a change just created: its (empty) file list is all there is."""
        self._blocks.pop(block.id, None)  # an undone block had this id: it left no files
        self._blocks[block.id] = {}   # no File to pack: ready for the change to hold

    def find(self, lfn):
        """The File with this LFN, or None: held, or found through the store."""
        if not isinstance(lfn, str):
            return None
        found = self.by_lfn.get(lfn)
        if type(found) is FileMap:   # a file of a block's new files, kept packed (add_new)
            return found.get(lfn)
        if found is not None or self.source is None:
            return found
        where = self.source.block_of(lfn)
        if where is None:
            return None
        block_id, dataset_name, block_name = where
        dataset = self.inventory.datasets.get(dataset_name)
        block = dataset.find_block(block_name) if dataset is not None else None
        if block is None or block.id != block_id:
            return None  # deleted, or replaced
        return self.files(block).get(lfn)  # held: a change may have removed it

    def stored(self, lfns: list) -> tuple | None:
        """(i, full name of its block) of the first of `lfns` that names a file in the
        store, or None (asked when a commit was refused, not before: the store's unique
        index keeps LFNs unique)."""
        found = set(self.source.existing(lfns)) if self.source is not None else ()
        for i, lfn in enumerate(lfns):
            if lfn in found:
                where = self.source.block_of(lfn)
                if where is not None:
                    return i, f"{where[1]}#{where[2]}"
        return None

    # ------------------------------------------------------------ holding
    def hold(self, block) -> dict:
        """Keep the block's files in memory, as File objects indexed by LFN, until
        `release`; returns them, the dict the change works on."""
        key = block.id
        files = self._ensure(block)
        if type(files) is not dict:
            files = self._unpack(block, files)
        held = self._held.get(key)
        if held is not None:
            held[0] += 1
            return files
        self._held[key] = [1, len(files)]
        self.trim()
        return files

    def editable(self, block) -> dict:
        """The files of a block held already, as `hold` returns them."""
        files = self._ensure(block)
        return files if type(files) is dict else self._unpack(block, files)

    def _unpack(self, block, packed) -> dict:
        files = self._blocks[block.id] = {f.lfn: f for f in FileMap(block, packed).values()}
        self.by_lfn.update(files)
        return files

    def add_new(self, blocks: list, lfns: list, packed: list):
        """The first files of blocks a change created and holds, given at once (each
        block's LFNs and PackedFiles): kept packed (no File object is made), their LFNs
        indexed to their block's FileMap, in one update of the index for them all."""
        keys = [block.id for block in blocks]
        entries = list(map(FileMap, blocks, packed))
        self._blocks.update(zip(keys, packed))
        self._indexed.update(zip(keys, zip(lfns, entries)))
        self.by_lfn.update(zip(chain.from_iterable(lfns),
                               repeated(entries, list(map(len, lfns)))))

    def packed(self, block) -> PackedFiles | None:
        """The files of a held block that `add_new` gave, while they are still packed."""
        files = self._blocks.get(block.id)
        return files if type(files) is PackedFiles and block.id in self._held else None

    def forget_new(self, block):
        """Undo `add_new` (the block's files may have been unpacked since): it has none."""
        files = self._blocks[block.id]
        del self._indexed[block.id]
        for lfn in (files if type(files) is dict else files.lfns()):
            self.by_lfn.pop(lfn, None)
        self._blocks[block.id] = {}

    def release(self, held: dict):
        """Let go of the blocks a change held: {block: its id when it was held}."""
        for block, key in held.items():
            held = self._held[key]
            held[0] -= 1
            if held[0]:
                continue
            del self._held[key]
            files = self._blocks.pop(key)
            indexed = self._indexed.pop(key, None)
            self.loaded_files -= held[1]
            if self._deleted(block):
                continue  # its files went with it (and out of by_lfn, undoably)
            if self.source is not None and type(files) is not dict:   # add_new's
                self._unindex(indexed)
            elif self.source is not None:  # packed again, and no longer indexed
                for lfn, f in files.items():
                    if self.by_lfn.get(lfn) is f:
                        del self.by_lfn[lfn]
                files = PackedFiles.of_files(files.values())
            self._blocks[key] = files
            self.loaded_files += len(files)
        self.trim()

    def _unindex(self, indexed: tuple):
        """Take the LFNs `add_new` indexed (the strings it was given: their hashes known)
        out of `by_lfn`, where they still lead to its FileMap."""
        lfns, entry = indexed
        by_lfn = self.by_lfn
        list(map(by_lfn.__delitem__, [lfn for lfn, found in zip(lfns, map(by_lfn.get, lfns))
                                      if found is entry]))

    @staticmethod
    def _deleted(block) -> bool:
        """Deleted, or its creation undone (its row taken away)."""
        table, row = block
        return not table.exists(row)

    def rebind(self, block_now):
        """After a compaction: the files kept as objects (and the packed ones indexed)
        refer to their block's view of the new tables, `block_now(old view)`; else a
        change would find a file in another block than its own, and write the old
        tables (an inventory without a store keeps every file so)."""
        now = {}

        def new(old):
            found = now.get(old.id)
            if found is None:   # a deleted block has no new view (and keeps no files)
                found = now[old.id] = old if self._deleted(old) else block_now(old)
            return found
        for files in self._blocks.values():
            if type(files) is dict:
                for f in files.values():
                    f.block = new(f.block)
        for found in self.by_lfn.values():
            found.block = new(found.block)

    def unload(self, block) -> bool:
        """Let the block's files go unless they are File objects (held, or with no store).
        True when they are the store's alone: a deletion of the block can then leave
        them to the store (if it is undone, they are read again)."""
        files = self._blocks.get(block.id)
        if type(files) is dict or block.id in self._held:   # held: maybe not committed yet
            return False
        if files is not None:
            del self._blocks[block.id]
            self.loaded_files -= len(files)
        return True

    def trim(self):
        """Drop the least recently used blocks that nothing holds, down to the limit."""
        if self.limit is None or self.source is None or self.loaded_files <= self.limit:
            return
        excess, victims = self.loaded_files - self.limit, []
        for key, files in self._blocks.items():  # oldest first, only as far as needed
            if excess <= 0:
                break
            if key not in self._held:
                victims.append(key)
                excess -= len(files)
        for key in victims:
            self.loaded_files -= len(self._blocks.pop(key))
