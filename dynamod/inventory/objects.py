"""The inventory's objects: sites, groups, datasets, blocks, files, replicas.

They are plain slotted objects hashed by identity (they live in sets and are
dict keys).  Their `repr` is the constructor call operators know from the
original system's documentation, e.g.
`Site('T2_US_XYZ','t2-storage.xyz.edu','disk','gsiftp://...','ready',1)`.

Objects built by a caller (`Site('X', status='ready')`) are *detached*: their
links to other objects may be names, and only the fields the caller set are
copied by `inventory.update`.  Objects held by the inventory are linked and
maintained by `ChangeSet` (changes.py), which keeps the consistency rules.
"""

from .fields import Checksum, Choice, Count, Field, Flag, Text, Version, given_fields

STORAGE_TYPES = ("disk", "mss", "buffer", "unknown")
SITE_STATUSES = ("ready", "waitroom", "morgue", "unknown")
DATASET_STATUSES = ("unknown", "deleted", "deprecated", "invalid", "production", "valid", "ignored")
DATA_TYPES = ("unknown", "production", "test")
OWNERSHIP_LEVELS = ("Dataset", "Block")


def _set_repr(objects) -> str:
    return "set([" + ", ".join(map(repr, objects)) + "])"


class ObjectSet(set):
    """A set of inventory objects, printed the way the documentation shows it."""

    __slots__ = ()

    __repr__ = _set_repr


class Members(tuple):
    """The few replicas of a block or a dataset, or the block replicas of a dataset
    replica: an immutable tuple (a quarter of a set's memory; an empty one is shared)
    that a change replaces whole.  Printed as the set the documentation shows."""

    __slots__ = ()

    __repr__ = _set_repr


NO_MEMBERS = Members()


class BlockSet:
    """A dataset's blocks: a dict by name (a dataset may hold thousands of blocks, and
    each block a request names is looked up), iterated and printed as a set."""

    __slots__ = ("by_name", "cache")

    def __init__(self, cache=None):
        self.by_name = {}
        self.cache = cache  # the inventory's FileCache, which loads the blocks' files

    def __iter__(self):
        return iter(self.by_name.values())

    def __len__(self):
        return len(self.by_name)

    def __contains__(self, block):
        return self.by_name.get(getattr(block, "name", None)) is block

    __repr__ = _set_repr


def _init(obj, values: dict):
    """Set the given (non-None-default) keyword fields through their checks."""
    for name, value in values.items():
        if value is not _UNSET:
            setattr(obj, name, value)


class _Unset:
    __slots__ = ()

    def __repr__(self):
        return "<unset>"


_UNSET = _Unset()


class Site:
    __slots__ = ("_name", "_host", "_storage_type", "_backend", "_status", "id", "dataset_replicas")
    kind = "site"
    name = Text(required=True, frozen=True)
    host = Text()
    storage_type = Choice(STORAGE_TYPES, "disk")
    backend = Text()
    status = Choice(SITE_STATUSES, "unknown")
    FIELDS = ("host", "storage_type", "backend", "status")

    def __init__(self, name, host=_UNSET, storage_type=_UNSET, backend=_UNSET, status=_UNSET, id=0):
        self.name = name
        _init(self, dict(host=host, storage_type=storage_type, backend=backend, status=status))
        self.id = id
        self.dataset_replicas = ObjectSet()

    def __repr__(self):
        return (f"Site({self.name!r},{self.host!r},{self.storage_type!r},"
                f"{self.backend!r},{self.status!r},{self.id})")

    def to_pfn(self, lfn: str) -> str:
        """The physical file name: the backend with the LFN appended."""
        return self.backend + lfn

    def find_dataset_replica(self, dataset):
        return next((r for r in self.dataset_replicas if r.dataset is dataset), None)


class Group:
    __slots__ = ("_name", "_olevel", "id")
    kind = "group"
    name = Text(None, frozen=True)
    olevel = Choice(OWNERSHIP_LEVELS, "Block")
    FIELDS = ("olevel",)

    def __init__(self, name, olevel=_UNSET, id=0):
        if name is not None:
            self.name = name
        _init(self, dict(olevel=olevel))
        self.id = id

    def __repr__(self):
        return f"Group({self.name!r},{self.olevel!r},{self.id})"


class Dataset:
    __slots__ = ("_name", "_status", "_data_type", "_software_version", "_last_update",
                 "_is_open", "id", "blocks", "replicas")
    kind = "dataset"
    name = Text(required=True, frozen=True)
    status = Choice(DATASET_STATUSES, "unknown")
    data_type = Choice(DATA_TYPES, "unknown")
    software_version = Version()
    last_update = Count()
    is_open = Flag(True)
    FIELDS = ("status", "data_type", "software_version", "last_update", "is_open")

    def __init__(self, name, status=_UNSET, data_type=_UNSET, software_version=_UNSET,
                 last_update=_UNSET, is_open=_UNSET, id=0):
        self.name = name
        _init(self, dict(status=status, data_type=data_type, software_version=software_version,
                         last_update=last_update, is_open=is_open))
        self.id = id
        self.blocks = BlockSet()
        self.replicas = NO_MEMBERS

    def __repr__(self):
        return (f"Dataset({self.name!r},{self.status!r},{self.data_type!r},"
                f"{self.software_version!r},{self.last_update},{self.is_open},{self.id})")

    @property
    def size(self) -> int:
        return sum(b.size for b in self.blocks)

    @property
    def num_files(self) -> int:
        return sum(b.num_files for b in self.blocks)

    def find_block(self, name):
        try:
            return self.blocks.by_name.get(name)
        except TypeError:  # an unhashable name (a malformed record) names no block
            return None

    def find_replica(self, site):
        """The replica at `site` (a Site or a site name), or None."""
        return next((r for r in self.replicas if r.site is site or r.site.name == site), None)


def _name_of(link):
    return link if isinstance(link, str) or link is None else link.name


class Block:
    __slots__ = ("_name", "dataset", "_size", "_num_files", "_is_open", "_last_update", "id",
                 "_files", "replicas")
    kind = "block"
    name = Text(required=True, frozen=True)
    size = Count()
    num_files = Count()
    is_open = Flag(False)
    last_update = Count()
    FIELDS = ("size", "num_files", "is_open", "last_update")

    def __init__(self, name, dataset=None, size=_UNSET, num_files=_UNSET, is_open=_UNSET,
                 last_update=_UNSET, id=0, internal_name=False):
        """`internal_name` is accepted so that a printed Block evaluates back."""
        self.name = name
        self.dataset = dataset
        _init(self, dict(size=size, num_files=num_files, is_open=is_open, last_update=last_update))
        self.id = id
        self._files = None  # loaded on demand: see filecache.py
        self.replicas = NO_MEMBERS

    def __repr__(self):
        return (f"Block({self.name!r},{_name_of(self.dataset)!r},{self.size},{self.num_files},"
                f"{self.is_open},{self.last_update},{self.id},False)")

    def full_name(self) -> str:
        return f"{_name_of(self.dataset)}#{self.name}"

    @property
    def files_by_lfn(self) -> dict:
        """The block's files by LFN (loaded from the store on first use)."""
        if self._files is not None:
            return self._files
        cache = self.dataset.blocks.cache if isinstance(self.dataset, Dataset) else None
        if cache is None:  # a detached block, or one of a detached dataset
            self._files = {}
            return self._files
        return cache.files(self)

    @property
    def files(self) -> frozenset:
        return frozenset(self.files_by_lfn.values())

    def find_replica(self, site):
        return next((r for r in self.replicas if r.site is site or r.site.name == site), None)


class File:
    __slots__ = ("_lfn", "block", "_size", "_adler32", "_crc32", "_md5", "id")
    kind = "file"
    lfn = Text(required=True, frozen=True)
    size = Count()
    adler32 = Checksum(8)
    crc32 = Checksum(8)
    md5 = Checksum(32)
    FIELDS = ("size", "adler32", "crc32", "md5")

    def __init__(self, lfn, block=None, size=_UNSET, id=0, *, adler32=_UNSET, crc32=_UNSET, md5=_UNSET):
        self.lfn = lfn
        self.block = block
        _init(self, dict(size=size, adler32=adler32, crc32=crc32, md5=md5))
        self.id = id

    @property
    def name(self) -> str:
        return self.lfn

    def checksums(self) -> dict:
        return {k: getattr(self, k) for k in ("adler32", "crc32", "md5") if getattr(self, k)}

    def __repr__(self):
        block = self.block.full_name() if isinstance(self.block, Block) else self.block
        extra = "".join(f",{k}={v!r}" for k, v in self.checksums().items())
        return f"File({self.lfn!r},{block!r},{self.size},{self.id}{extra})"


class DatasetReplica:
    __slots__ = ("dataset", "site", "_growing", "_group", "block_replicas")
    kind = "datasetreplica"
    growing = Flag(False)
    group = Field()
    FIELDS = ("growing", "group")

    def __init__(self, dataset, site, growing=_UNSET, group=_UNSET):
        self.dataset = dataset
        self.site = site
        _init(self, dict(growing=growing, group=group))
        self.block_replicas = NO_MEMBERS

    def __repr__(self):
        return (f"DatasetReplica({_name_of(self.dataset)!r},{_name_of(self.site)!r},"
                f"{self.growing},{_name_of(self.group)!r})")

    def find_block_replica(self, block):
        return next((r for r in self.block_replicas if r.block is block), None)

    def is_complete(self) -> bool:
        return all(r.is_complete() for r in self.block_replicas)


class BlockReplica:
    __slots__ = ("block", "site", "_group", "_is_custodial", "_size", "_last_update", "_file_ids")
    kind = "blockreplica"
    group = Field()
    is_custodial = Flag(False)
    size = Count()
    last_update = Count()
    file_ids = Field()
    FIELDS = ("group", "is_custodial", "size", "last_update", "file_ids")

    def __init__(self, block, site, group=_UNSET, is_custodial=_UNSET, size=_UNSET,
                 last_update=_UNSET, files=_UNSET):
        """`files`: None (or not given) for a complete replica, else the LFNs present."""
        self.block = block
        self.site = site
        _init(self, dict(group=group, is_custodial=is_custodial, size=size,
                         last_update=last_update, file_ids=files))

    def __repr__(self):
        block = self.block.full_name() if isinstance(self.block, Block) else self.block
        files = None if self.file_ids is None else len(self.file_ids)
        return (f"BlockReplica({block!r},{_name_of(self.site)!r},{_name_of(self.group)!r},"
                f"{self.is_custodial},{self.size},{self.last_update},{files})")

    def is_complete(self) -> bool:
        return self.file_ids is None

    def files(self) -> frozenset:
        """The File objects present at the site."""
        if self.file_ids is None:
            return self.block.files
        ids = set(self.file_ids)
        return frozenset(f for f in self.block.files_by_lfn.values() if f.id in ids)


CLASSES = (Site, Group, Dataset, Block, File, DatasetReplica, BlockReplica)


def changed_fields(obj) -> dict:
    """The fields a caller set on a detached object (what `update` copies)."""
    return given_fields(obj, type(obj).FIELDS)
