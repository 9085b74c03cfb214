"""The inventory's objects: sites, groups, datasets, blocks, files, replicas.

Sites and groups, the few, are plain slotted objects hashed by identity (they
are dict keys).  Datasets, blocks and replicas, the many, live in tables of
columns (datasets.py, columns.py): a `Dataset`, a `Block`, a `BlockReplica` or a
`DatasetReplica` is a view `(table, row)`, a tuple made on access, equal to (and
hashed as) any other view of the same row, so they compare with `==`, not `is`.
Files are made on demand from the file cache and are equal by value (see File).
Their `repr` is the constructor call operators know from the original system's
documentation, e.g.
`Site('T2_US_XYZ','t2-storage.xyz.edu','disk','gsiftp://...','ready',1)`.

Objects built by a caller (`Site('X', status='ready')`, `Block('b1', 'ds')`) are
*detached*: their links to other objects may be names, and only the fields the
caller set are copied by `inventory.update` (a detached dataset, block or
replica is a view of a one-row `Detached` table of its own).  Objects held by the
inventory are linked and maintained by `ChangeSet` (changes.py), which keeps the
consistency rules.
"""

import time
from array import array
from bisect import bisect_left
from collections.abc import Mapping, Set
from itertools import repeat
from operator import attrgetter

from ..errors import InvalidValue, NotFound
from .fields import (Checksum, Choice, Column, Count, Field, Flag, Text, Time, Version,
                     given_fields)

STORAGE_TYPES = ("disk", "mss", "buffer", "unknown")
SITE_STATUSES = ("ready", "waitroom", "morgue", "unknown")
DATASET_STATUSES = ("unknown", "deleted", "deprecated", "invalid", "production", "valid", "ignored")
DATA_TYPES = ("unknown", "production", "test")
OWNERSHIP_LEVELS = ("Dataset", "Block")
CHECKSUM_ALGORITHMS = ("adler32", "crc32", "md5")


def _set_repr(objects) -> str:
    return "set([" + ", ".join(map(repr, objects)) + "])"


class ObjectSet(set):
    """A set of inventory objects, printed the way the documentation shows it."""

    __slots__ = ()

    __repr__ = _set_repr


class _SetLike(Set):
    """What makes a compact collection of the inventory a `collections.abc.Set`: set
    comparisons and operators (`-`, `|`, `&`, `^`, `<=`, `isdisjoint`), results as
    ObjectSets.  Methods only: no instance memory."""

    __slots__ = ()

    @classmethod
    def _from_iterable(cls, iterable):
        return ObjectSet(iterable)

    def __ne__(self, other):
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __repr__ = _set_repr


class Members(tuple, _SetLike):
    """The few replicas of a block or a dataset, or the block replicas of a dataset
    replica: an immutable tuple (a quarter of a set's memory; an empty one is shared)
    that a change replaces whole.  Printed, compared and combined as the set the
    documentation shows (a frozen set: hashable); still indexable."""

    __slots__ = ()

    # tuple's own comparisons would come first: set semantics instead (a plain tuple
    # on the other side falls back to tuple comparison, as before)
    __eq__, __lt__, __le__, __gt__, __ge__ = (
        Set.__eq__, Set.__lt__, Set.__le__, Set.__gt__, Set.__ge__)
    __ne__ = _SetLike.__ne__
    __hash__ = Set._hash
    __repr__ = _set_repr


NO_MEMBERS = Members()
NO_ROW = -1  # the end of a chain of rows (columns.py)
_new_view = tuple.__new__   # _new_view(Block, (table, row)): a view, all in C


class _View(tuple):
    """A view `(table, row)`: a copy is the same view (as a tuple's is the tuple)."""

    __slots__ = ()

    def __reduce__(self):
        return _new_view, (type(self), tuple(self))


class SiteReplicas(_SetLike):
    """A site's dataset replicas: a doubly linked chain of rows in the inventory's
    DatasetReplicaTable (columns.py), from `head` to `tail` (`length` of them), which
    that table keeps (and sets `table` on the first one).  A set (`in` and `len` take
    O(1)), and callable as the original's method `site.dataset_replicas()`, which gives
    a copy (safe to iterate while deleting)."""

    __slots__ = ("table", "head", "tail", "length")

    def __init__(self):
        self.table = None   # None until the site holds a replica
        self.head = self.tail = NO_ROW
        self.length = 0

    def __call__(self) -> ObjectSet:
        return ObjectSet(self)

    def __len__(self):
        return self.length

    def __iter__(self):
        return self.table.at_site(self) if self.table is not None else iter(())

    def __contains__(self, replica):
        return (type(replica) is DatasetReplica and replica[0] is self.table
                and self.table.site_chain(replica[1]) is self)


class BlockSet(_SetLike):
    """A dataset's blocks: their rows in the inventory's BlockTable, sorted by name (a
    block by name is a bisection, a new one an insertion: a dataset may hold
    thousands), iterated in creation order (the rows' order), printed and combined
    as a set.  Made on access, over the run of rows the DatasetTable keeps for the
    dataset (datasets.py)."""

    __slots__ = ("table", "owner")

    def __init__(self, table=None, owner=NO_ROW):
        self.table = table   # the BlockTable (None: a detached dataset's, always empty)
        self.owner = owner   # the dataset's row in the DatasetTable

    def _span(self) -> tuple:
        """(the array of every dataset's block rows, where this one's run starts, its
        length)."""
        if self.table is None:
            return _NO_ROWS, 0, 0
        return self.table.datasets.block_span(self.owner)

    @property
    def rows(self) -> array:
        """The rows of the blocks, sorted by name (a copy)."""
        rows, start, n = self._span()
        return rows[start:start + n]

    def __iter__(self):
        return map(_new_view, repeat(Block), zip(repeat(self.table), sorted(self.rows)))

    def __len__(self):
        return self._span()[2]

    def _index(self, raw: bytes) -> tuple:
        """Where a name is or would go in the run: (its index in the array, the array,
        the run's end)."""
        rows, start, n = self._span()
        return bisect_left(rows, raw, start, start + n, key=self.table.raw_name), rows, start + n

    def __contains__(self, block):
        if type(block) is not Block or block[0] is not self.table:
            return False
        row = block[1]
        if not self.table.exists(row):
            return False
        at, rows, end = self._index(self.table.raw_name(row))
        return at < end and rows[at] == row

    def values(self) -> list:
        """Block.values of each block, in name order, without a view per block."""
        return list(map(self.table.values_at, self.rows)) if self.table is not None else []

    def find(self, name):
        """The Block named `name`, or None."""
        if not isinstance(name, str) or self.table is None:
            return None
        raw = name.encode("utf-8", "surrogatepass")
        at, rows, end = self._index(raw)
        if at < end and self.table.raw_name(rows[at]) == raw:
            return _new_view(Block, (self.table, rows[at]))
        return None

    def find_many(self, names: list) -> list:
        """`find` of each name; through `by_name` when they are many for the blocks there
        are (a dataset replica's block replicas of an injection name most of them)."""
        if self.table is None or len(names) * 8 < len(self):
            return list(map(self.find, names))
        rows, table = self.by_name(), self.table
        return [_new_view(Block, (table, rows[name])) if type(name) is str and name in rows
                else None for name in names]

    def by_name(self) -> dict:
        """{name: row} of the blocks, for many look-ups in a row (where making the dict
        pays: `find` is a bisection with a Python key at each step)."""
        rows, start, n = self._span()
        if not n:
            return {}
        names, offsets = self.table.names, self.table.offsets
        return {names[offsets[row]:offsets[row + 1]].decode("utf-8", "surrogatepass"): row
                for row in rows[start:start + n]}

    def insert(self, row):
        """Add the block at `row` (its name not here yet); returns the undo."""
        at = self._index(self.table.raw_name(row))[0]
        return self.table.datasets.insert_block(self.owner, at, row)

    def remove(self, row):
        """Remove the block at `row`; returns the undo."""
        at = self._index(self.table.raw_name(row))[0]
        return self.table.datasets.remove_block(self.owner, at)

    def facts(self) -> list:
        """See BlockTable.facts: of each block, in name order (the order of `rows`)."""
        return self.table.facts(self.rows) if self.table is not None else []

    def replica_facts(self, names: list) -> dict:
        """See BlockTable.replica_facts: of the blocks' replicas by site, given the blocks'
        names in name order (from `facts`)."""
        return self.table.replica_facts(self.rows, names) if self.table is not None else {}


_NO_ROWS = array("i")   # a detached dataset's block rows


class ReplicaChain(_SetLike):
    """A dataset replica's block replicas: its chain in the BlockReplicaTable (see
    columns.py), made on access.  `len` and `in` take O(1) (a block replica is in it
    when it is alive, at the same site and of a block of the same dataset);
    iteration follows the chain, in creation order."""

    __slots__ = ("table", "owner")

    def __init__(self, table, owner):
        self.table, self.owner = table, owner   # the BlockReplicaTable, the owner's row

    def __len__(self):
        return self.table.owners.length[self.owner]

    def __iter__(self):
        return self.table.chain(self.owner)

    def __contains__(self, replica):
        return (type(replica) is BlockReplica and replica[0] is self.table
                and self.table.in_chain(replica[1], self.owner))

    def facts(self) -> list:
        """See BlockReplicaTable.chain_facts."""
        return self.table.chain_facts(self.owner)


def _enum(values: tuple):
    """The original's `X_val` and `X_name` for a field whose values are `values`: both
    give the value's name as stored here (any case, or the original's 1-based number);
    anything else is returned unchanged, as there."""
    lookup = {v.lower(): v for v in values}

    def convert(arg):
        if type(arg) is int and 0 < arg <= len(values):
            return values[arg - 1]
        if isinstance(arg, str):
            return lookup.get(arg.lower(), arg)
        return arg

    return staticmethod(convert)


def _missing(what: str, field: str):
    raise NotFound(f"could not find {what}", field=field)


def _utc(t) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _init(obj, values: tuple):
    """Set the fields a constructor was given through their checks: `values` in the
    order of the class's FIELDS, _UNSET where not given."""
    for name, value in zip(type(obj).FIELDS, values):
        if value is not _UNSET:
            setattr(obj, name, value)


def _detached(cls, table, values: tuple):
    """The view of a caller's one-row `table` (Detached), with the fields its constructor
    was given (`values` in the order of FIELDS, _UNSET where not given) checked and put
    in the table straight: a script builds one per `inventory.update` call."""
    for name, value in zip(cls.FIELDS, values):
        if value is not _UNSET:
            table.store(name, 0, getattr(cls, name).check(value))
    return _new_view(cls, (table, 0))


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
        _init(self, (host, storage_type, backend, status))
        self.id = id
        self.dataset_replicas = SiteReplicas()

    def __repr__(self):
        return (f"Site({self.name!r},{self.host!r},{self.storage_type!r},"
                f"{self.backend!r},{self.status!r},{self.id})")

    def __str__(self):
        return (f"Site {self.name} (host={self.host}, storage_type={self.storage_type}, "
                f"backend={self.backend}, status={self.status}, x509={self.x509proxy}, "
                f"id={self.id})")

    # The original's read API (class attributes and methods: no instance memory).
    storage_type_val = storage_type_name = _enum(STORAGE_TYPES)
    status_val = status_name = _enum(SITE_STATUSES)
    TYPE_DISK, TYPE_MSS, TYPE_BUFFER, TYPE_UNKNOWN = STORAGE_TYPES  # the stored names
    STAT_READY, STAT_WAITROOM, STAT_MORGUE, STAT_UNKNOWN = SITE_STATUSES
    x509proxy = None  # no per-site proxy here

    @property
    def partitions(self) -> dict:
        """{name: SitePartition}: quota, occupancy_fraction(), replicas (partitions.py)."""
        from .partitions import site_partitions
        return site_partitions(self)

    def to_pfn(self, lfn: str, protocol=None) -> str:
        """The physical file name: the backend with the LFN appended (the seed's rule,
        the same for every protocol: the backend is the site's one endpoint)."""
        return self.backend + lfn

    def find_dataset_replica(self, dataset, must_find=False):
        """The replica here of `dataset` (a Dataset, or a dataset name), or None."""
        if isinstance(dataset, Dataset):
            found = next((r for r in dataset.replicas if r.site is self), None)
        else:
            found = next((r for r in self.dataset_replicas if r.dataset.name == dataset), None)
        if found is None and must_find:
            _missing(f"replica of {_name_of(dataset)} at {self.name}", "dataset")
        return found

    def find_block_replica(self, block, must_find=False):
        """The replica here of `block` (a Block, its name or its full name), or None."""
        found = None
        if isinstance(block, Block):
            found = next((r for r in block.replicas if r.site is self), None)
        elif isinstance(block, str):  # a scan of the site, as in the original
            dataset, full, name = block.partition("#")
            for replica in self.dataset_replicas:
                found = replica.find_block_replica(block)
                if found is None and full and replica.dataset.name == dataset:
                    found = replica.find_block_replica(name)
                if found is not None:
                    break
        if found is None and must_find:
            _missing(f"replica of block {getattr(block, 'name', block)} at {self.name}", "block")
        return found


class Group:
    __slots__ = ("_name", "_olevel", "id")
    kind = "group"
    name = Text(None, frozen=True)
    olevel = Choice(OWNERSHIP_LEVELS, "Block")
    FIELDS = ("olevel",)

    def __init__(self, name, olevel=_UNSET, id=0):
        if name is not None:
            self.name = name
        _init(self, (olevel,))
        self.id = id

    def __repr__(self):
        return f"Group({self.name!r},{self.olevel!r},{self.id})"

    def __str__(self):
        return f"Group {self.name} (olevel={self.olevel}, id={self.id})"

    olevel_val = olevel_name = _enum(OWNERSHIP_LEVELS)
    OL_DATASET, OL_BLOCK = OWNERSHIP_LEVELS
    null_group = None  # set below: the one null group (`inventory.groups[None]`)


class Dataset(_View):
    """A dataset: a view `(table, row)` of the inventory's DatasetTable (datasets.py), or
    of a caller's Detached one.  Its blocks are a BlockSet over its rows in the
    BlockTable; its replicas a list of rows of the DatasetReplicaTable."""

    __slots__ = ()
    kind = "dataset"
    name = Column("name", Text(required=True, frozen=True), get=lambda v: v[0].name_at(v[1]))
    status = Column("status", Choice(DATASET_STATUSES, "unknown"),
                    get=lambda v: v[0].status_at(v[1]))
    data_type = Column("data_type", Choice(DATA_TYPES, "unknown"),
                       get=lambda v: v[0].data_type_at(v[1]))
    software_version = Column("software_version", Version(),
                              get=lambda v: v[0].version_at(v[1]))
    last_update = Column("last_update", Time(), get=lambda v: v[0].last_update[v[1]])
    is_open = Column("is_open", Flag(True), get=lambda v: v[0].is_open[v[1]] != 0)
    id = property(lambda v: v[0].id[v[1]])
    blocks = property(lambda v: v[0].blocks_of(v[1]))
    replicas = property(lambda v: v[0].replicas_of(v[1]))
    FIELDS = ("status", "data_type", "software_version", "last_update", "is_open")

    def __new__(cls, name, status=_UNSET, data_type=_UNSET, software_version=_UNSET,
                last_update=_UNSET, is_open=_UNSET, id=0):
        """A detached dataset."""
        return _detached(cls, DetachedDataset(cls.name.check(name), id),
                         (status, data_type, software_version, last_update, is_open))

    def __repr__(self):
        return (f"Dataset({self.name!r},{self.status!r},{self.data_type!r},"
                f"{self.software_version!r},{self.last_update},{self.is_open},{self.id})")

    def values(self) -> tuple:
        """(id, name, status, data_type, software_version, last_update, is_open) in one
        call (what the store's rows and the queries' answers take)."""
        return self[0].values_at(self[1])

    # its blocks' sums, kept by the table (datasets.py): no walk of the blocks
    size = property(lambda v: v[0].totals_at(v[1])[0])
    num_files = property(lambda v: v[0].totals_at(v[1])[1])

    def totals(self) -> tuple:
        """(size, num_files, blocks): its blocks' sums and number, in one call."""
        return self[0].totals_at(self[1])

    def find_block(self, name, must_find=False):
        found = self.blocks.find(name)  # None for a name that is no string
        if found is None and must_find:
            _missing(f"block {name} in {self.name}", "block")
        return found

    def find_replica(self, site, must_find=False):
        """The replica at `site` (a Site or a site name), or None."""
        found = next((r for r in self.replicas if r.site is site or r.site.name == site), None)
        if found is None and must_find:
            _missing(f"replica at {_name_of(site)} of {self.name}", "site")
        return found

    # The original's read API (class attributes and methods: no instance memory).
    status_val = status_name = _enum(DATASET_STATUSES)
    data_type_val = data_type_name = _enum(DATA_TYPES)
    (STAT_UNKNOWN, STAT_DELETED, STAT_DEPRECATED, STAT_INVALID, STAT_PRODUCTION, STAT_VALID,
     STAT_IGNORED) = DATASET_STATUSES
    TYPE_UNKNOWN, TYPE_PRODUCTION, TYPE_TEST = DATA_TYPES
    name_pattern = None

    @staticmethod
    def format_software_version(value):
        return value

    def __str__(self):
        sites = ",".join(r.site.name for r in self.replicas)
        return (f"Dataset {self.name} (status={self.status}, data_type={self.data_type}, "
                f"software_version={self.software_version}, "
                f"last_update={_utc(self.last_update)}, is_open={self.is_open}, id={self.id}, "
                f"size {self.size}, {len(self.blocks)} blocks, {self.num_files} files, "
                f"replicas [{sites}])")

    @property
    def files(self) -> ObjectSet:
        """Every file of every block (each block's files are loaded as needed)."""
        found = ObjectSet()
        for block in self.blocks:
            found.update(block.files_by_lfn.values())
        return found

    def find_file(self, lfn, must_find=False):
        """The File of this dataset with this LFN, or None."""
        blocks = self.blocks
        cache = blocks.table.cache if blocks.table is not None else None
        if cache is not None:  # the inventory knows which block holds an LFN
            found = cache.find(lfn)
            found = found if found is not None and found.block.dataset == self else None
        else:
            found = next((b.files_by_lfn[lfn] for b in blocks
                          if lfn in b.files_by_lfn), None)
        if found is None and must_find:
            _missing(f"file {lfn} in {self.name}", "lfn")
        return found

    @property
    def attr(self) -> dict:
        """The original's free-form dict for a script's own notes (transient: held by
        the process that asks, never stored; no memory until asked for)."""
        return _ATTRS.setdefault(self, {})


_ATTRS = {}  # Dataset -> its `attr` dict, in the process that asked


def _name_of(link):
    return link if isinstance(link, str) or link is None else link.name


class Detached:
    """The one-row table behind a dataset, block or replica a caller builds
    (`Block('b1', 'ds', size=3)`), one class per kind (below): each column a one-element
    tuple, links as given (objects or names), the defaults the class's own, and `given`,
    the fields the caller set with their values (what `inventory.update` copies).  So a
    detached object costs its links and what was set, made in a few steps: a script
    builds one per `inventory.update` call.  It answers the calls of the views as the
    inventory's tables do."""

    cache = None  # no file cache: a detached block's files are its own dict

    def store(self, name, row, value):
        self.__dict__[name] = (value,)
        self.given[name] = value

    def is_set(self, name) -> bool:
        return name in self.given

    def name_at(self, row):
        return self.name[row]

    def status_at(self, row):
        return self.status[row]

    def data_type_at(self, row):
        return self.data_type[row]

    def version_at(self, row):
        return self.software_version[row]

    def dataset_at(self, row):
        return self.dataset[row]

    def blocks_of(self, row) -> BlockSet:
        return BlockSet()

    def totals_at(self, row) -> tuple:
        return 0, 0, 0   # a detached dataset has no blocks

    def block_at(self, row):
        return self.block[row]

    def site_at(self, row):
        return self.site[row]

    def group_at(self, row):
        return self.group[row]

    def set_group(self, row, group):
        self.store("group", row, group)

    def file_ids_at(self, row):
        return self.file_ids[row]

    def set_file_ids(self, row, file_ids):
        self.store("file_ids", row, file_ids)

    def replicas_of(self, row) -> Members:
        return NO_MEMBERS

    block_replicas_of = replicas_of   # a dataset's, a block's, a dataset replica's

    def values_at(self, row) -> tuple:
        """The fields of the view's kind, as its `values()` (VALUES: their names)."""
        return tuple(getattr(self, name)[row] for name in self.VALUES)


class DetachedDataset(Detached):
    VALUES = ("id", "name", "status", "data_type", "software_version", "last_update",
              "is_open")

    def __init__(self, name, id):
        self.name, self.id, self.given = (name,), (id,), {}


class DetachedBlock(Detached):
    VALUES = ("id", "dataset", "name", "size", "num_files", "is_open", "last_update")

    def __init__(self, name, dataset, id):
        self.name, self.dataset, self.id = (name,), (dataset,), (id,)
        self.given, self.files = {}, {}

    def full_name_at(self, row) -> str:
        return f"{_name_of(self.dataset[row])}#{self.name[row]}"


class DetachedDatasetReplica(Detached):
    VALUES = ("dataset", "site", "growing", "group")

    def __init__(self, dataset, site):
        self.dataset, self.site, self.given = (dataset,), (site,), {}


class DetachedBlockReplica(Detached):
    VALUES = ("block", "site", "group", "is_custodial", "size", "last_update", "file_ids")

    def __init__(self, block, site):
        self.block, self.site, self.given = (block,), (site,), {}

    def as_built(self) -> tuple:
        """(block, site, {field: value}): the links as the caller gave them and the
        fields set, in the order set (not copied: read them, never change them), in one
        call: what `inventory.update` of a built replica, a write-back's bulk, reads."""
        return self.block[0], self.site[0], self.given


class Block(_View):
    """A block: a view `(table, row)` of the inventory's BlockTable (columns.py), or of
    a caller's Detached one.  No memory of its own beyond the view."""

    __slots__ = ()
    kind = "block"
    name = Column("name", Text(required=True, frozen=True), get=lambda v: v[0].name_at(v[1]))
    # each getter spelled out: it runs for every block a walk meets
    size = Column("size", Count(), get=lambda v: v[0].size[v[1]])
    num_files = Column("num_files", Count(), get=lambda v: v[0].num_files[v[1]])
    is_open = Column("is_open", Flag(False), get=lambda v: v[0].is_open[v[1]] != 0)
    last_update = Column("last_update", Time(), get=lambda v: v[0].last_update[v[1]], raw=True)
    dataset = property(lambda v: v[0].dataset_at(v[1]))
    id = property(lambda v: v[0].id[v[1]])
    replicas = property(lambda v: v[0].replicas_of(v[1]))
    FIELDS = ("size", "num_files", "is_open", "last_update")

    def __new__(cls, name, dataset=None, size=_UNSET, num_files=_UNSET, is_open=_UNSET,
                last_update=_UNSET, id=0, internal_name=False):
        """A detached block.  `internal_name` is accepted so that a printed Block
        evaluates back."""
        return _detached(cls, DetachedBlock(cls.name.check(name), dataset, id),
                         (size, num_files, is_open, last_update))

    def __repr__(self):
        return (f"Block({self.name!r},{_name_of(self.dataset)!r},{self.size},{self.num_files},"
                f"{self.is_open},{self.last_update},{self.id},False)")

    def full_name(self) -> str:
        return self[0].full_name_at(self[1])   # in one call: a script asks for every block's

    def values(self) -> tuple:
        """(id, dataset, name, size, num_files, is_open, last_update) in one call (what
        the store's rows and the queries' answers take)."""
        return self[0].values_at(self[1])

    @property
    def files_by_lfn(self) -> Mapping:
        """The block's files by LFN, in id order: read from the store when they are not
        in the inventory's file cache (filecache.py)."""
        table = self[0]
        if table.cache is None:  # a detached block
            return table.files
        return table.cache.files(self)

    @property
    def files(self) -> frozenset:
        return frozenset(self.files_by_lfn.values())

    def find_replica(self, site, must_find=False):
        found = next((r for r in self.replicas if r.site is site or r.site.name == site), None)
        if found is None and must_find:
            _missing(f"replica at {_name_of(site)} of {self.full_name()}", "site")
        return found

    # The original's read API (class attributes and methods: no instance memory).
    name_pattern = None

    @staticmethod
    def to_internal_name(name: str) -> str:
        return name

    @staticmethod
    def to_real_name(name: str) -> str:
        return name

    @staticmethod
    def to_full_name(dataset_name: str, real_name: str) -> str:
        return f"{dataset_name}#{real_name}"

    @staticmethod
    def from_full_name(full_name: str) -> tuple:
        """('dataset', 'block') from 'dataset#block'."""
        dataset, found, name = full_name.partition("#")
        if not found:
            raise InvalidValue(f"invalid block name {full_name}: expected dataset#block",
                               field="block")
        return dataset, name

    def real_name(self) -> str:
        return self.name

    def find_file(self, lfn, must_find=False):
        """The File of this block with this LFN, or None."""
        found = self.files_by_lfn.get(lfn) if isinstance(lfn, str) else None
        if found is None and must_find:
            _missing(f"file {lfn} in {self.full_name()}", "lfn")
        return found

    def __str__(self):
        sites = ",".join(r.site.name for r in self.replicas)
        return (f"Block {self.full_name()} (size={self.size}, num_files={self.num_files}, "
                f"is_open={self.is_open}, last_update={_utc(self.last_update)}, "
                f"replicas=[{sites}], id={self.id})")


_FILE_SLOTS = attrgetter("id", "_lfn", "_size", "_adler32", "_crc32", "_md5")


class File:
    """A file of a block.  The file cache keeps a block's files packed and makes a File
    each time one is asked for (packedfiles.py), so Files compare equal, and hash
    alike, when they are the same file: same LFN, block and id."""

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
        _init(self, (size, adler32, crc32, md5))
        self.id = id

    @staticmethod
    def values(f) -> tuple:
        """(id, lfn, size, adler32, crc32, md5), read at once: what packing, the store's
        rows and the change log take from each of hundreds of thousands of files."""
        try:
            return _FILE_SLOTS(f)
        except AttributeError:  # a field never set (a File built with keywords)
            return (f.id, f.lfn, f.size, f.adler32, f.crc32, f.md5)

    @classmethod
    def stored(cls, block, lfn, size, id, adler32=None, crc32=None, md5=None) -> "File":
        """A File of `block` from values checked before (the store's, or checked by a
        change): no field checks."""
        f = cls.__new__(cls)
        f._lfn, f.block, f._size, f.id = lfn, block, size, id
        f._adler32, f._crc32, f._md5 = adler32, crc32, md5
        return f

    def __eq__(self, other):
        if type(other) is not File:
            return NotImplemented
        return self is other or (self._lfn == other._lfn and self.id == other.id
                                 and self.block == other.block)

    def __hash__(self):
        return hash(self._lfn)

    @property
    def name(self) -> str:
        return self.lfn

    def checksums(self) -> dict:
        return {k: getattr(self, k) for k in ("adler32", "crc32", "md5") if getattr(self, k)}

    # The original's read API: `checksum` is a tuple ordered as `checksum_algorithms`
    # (None where a checksum was not given).
    checksum_algorithms = CHECKSUM_ALGORITHMS

    @property
    def checksum(self) -> tuple:
        return (self.adler32, self.crc32, self.md5)

    def __str__(self):
        block = self.block.full_name() if isinstance(self.block, Block) else self.block
        return (f"File {self.lfn} (block={block}, size={self.size}, "
                f"checksum={self.checksum}, id={self.id})")

    def __repr__(self):
        block = self.block.full_name() if isinstance(self.block, Block) else self.block
        extra = "".join(f",{k}={v!r}" for k, v in self.checksums().items())
        return f"File({self.lfn!r},{block!r},{self.size},{self.id}{extra})"


class DatasetReplica(_View):
    """A dataset at a site: a view `(table, row)` of the inventory's DatasetReplicaTable
    (columns.py), or of a caller's Detached one.  Its block replicas are a chain of rows
    in the BlockReplicaTable; `block_replicas` is the set they make."""

    __slots__ = ()
    kind = "datasetreplica"
    dataset = property(lambda v: v[0].dataset_at(v[1]))
    site = property(lambda v: v[0].site_at(v[1]))
    growing = Column("growing", Flag(False), get=lambda v: v[0].growing[v[1]] != 0)
    group = Column("group", Field(), get=lambda v: v[0].group_at(v[1]),
                   put=lambda table, row, group: table.set_group(row, group))
    block_replicas = property(lambda v: v[0].block_replicas_of(v[1]))
    FIELDS = ("growing", "group")

    def __new__(cls, dataset, site, growing=_UNSET, group=_UNSET):
        """A detached dataset replica."""
        return _detached(cls, DetachedDatasetReplica(dataset, site), (growing, group))

    def __repr__(self):
        return (f"DatasetReplica({_name_of(self.dataset)!r},{_name_of(self.site)!r},"
                f"{self.growing},{_name_of(self.group)!r})")

    def values(self) -> tuple:
        """(dataset, site, growing, group) in one call (what the store's rows and the
        queries' answers take)."""
        return self[0].values_at(self[1])

    def find_block_replica(self, block, must_find=False):
        """The replica here of `block` (a Block, or a block name), or None."""
        if not isinstance(block, Block) and isinstance(self.dataset, Dataset):
            block = self.dataset.find_block(block)
        found = block.find_replica(self.site) if isinstance(block, Block) else None
        if found not in self.block_replicas:
            found = None
        if found is None and must_find:
            _missing(f"replica of block {getattr(block, 'name', block)} at "
                     f"{_name_of(self.site)}", "block")
        return found

    def is_complete(self) -> bool:
        return all(r.is_complete() for r in self.block_replicas)

    # The original's read API (methods only: no instance memory).
    def is_full(self) -> bool:
        """Every block of the dataset is here, complete."""
        return len(self.block_replicas) == len(self.dataset.blocks) and self.is_complete()

    def is_partial(self) -> bool:
        """Some blocks of the dataset are missing here; those here are complete."""
        return len(self.block_replicas) != len(self.dataset.blocks) and self.is_complete()

    def is_last_copy(self) -> bool:
        """This is the dataset's only replica."""
        return len(self.dataset.replicas) == 1 and self in self.dataset.replicas

    def last_block_created(self) -> int:
        """The latest last_update of its block replicas (0 when it has none)."""
        return max((r.last_update for r in self.block_replicas), default=0)

    def size(self, physical=True) -> int:
        """Bytes present here; with physical=False, the sizes of the blocks it holds."""
        if physical:
            return sum(r.size for r in self.block_replicas)
        return sum(r.block.size for r in self.block_replicas)

    def __str__(self):
        growing = f"True ({_name_of(self.group)})" if self.growing else "False"
        return (f"DatasetReplica {_name_of(self.site)}:{_name_of(self.dataset)} "
                f"(growing: {growing}, {len(self.block_replicas)} block_replicas)")


class BlockReplica(_View):
    """A block at a site: a view `(table, row)` of the inventory's BlockReplicaTable
    (columns.py), or of a caller's Detached one."""

    __slots__ = ()
    kind = "blockreplica"
    block = property(lambda v: v[0].block_at(v[1]))
    site = property(lambda v: v[0].site_at(v[1]))
    group = Column("group", Field(), get=lambda v: v[0].group_at(v[1]),
                   put=lambda table, row, group: table.set_group(row, group))
    is_custodial = Column("is_custodial", Flag(False),
                          get=lambda v: v[0].is_custodial[v[1]] != 0)
    size = Column("size", Count(), get=lambda v: v[0].size[v[1]], raw=True)
    last_update = Column("last_update", Time(), get=lambda v: v[0].last_update[v[1]], raw=True)
    file_ids = Column("file_ids", Field(), get=lambda v: v[0].file_ids_at(v[1]),
                      put=lambda table, row, ids: table.set_file_ids(row, ids))
    FIELDS = ("group", "is_custodial", "size", "last_update", "file_ids")

    def __new__(cls, block, site, group=_UNSET, is_custodial=_UNSET, size=_UNSET,
                last_update=_UNSET, files=_UNSET):
        """A detached block replica.  `files`: None (or not given) for a complete
        replica, else the LFNs present.  As the original's constructor: a negative `size`
        is a full replica (its size the block's), and a size of 0 without `files` an
        empty one."""
        if type(size) is int and size < 0:
            size, files = _UNSET, None if files is _UNSET else files
        elif size == 0 and type(size) is int and files is _UNSET:
            files = ()
        return _detached(cls, DetachedBlockReplica(block, site),
                         (group, is_custodial, size, last_update, files))

    def __repr__(self):
        """The constructor's call that makes it again: an incomplete replica's LFNs."""
        files, size = self.file_ids, self.size
        if isinstance(self.block, Block):
            block = self.block.full_name()
            if files is not None:
                files = tuple(sorted(f.lfn for f in self.files()))
        else:   # built: a size not given is the block's (-1, as the original writes it)
            block, files = self.block, None if files is None else tuple(files)
            size = size if "size" in self[0].as_built()[2] else -1
        return (f"BlockReplica({block!r},{_name_of(self.site)!r},{_name_of(self.group)!r},"
                f"{self.is_custodial},{size},{self.last_update},{files!r})")

    def is_complete(self) -> bool:
        return self.file_ids is None

    def values(self) -> tuple:
        """(block, site, group, is_custodial, size, last_update, file_ids) in one call
        (what the store's rows and the queries' answers take)."""
        return self[0].values_at(self[1])

    def usage_facts(self) -> tuple:
        """What the usage reads of it, in one call (see BlockReplicaTable.usage_facts)."""
        return self[0].usage_facts(self[1])

    def files(self) -> frozenset:
        """The File objects present at the site."""
        if self.file_ids is None:
            return self.block.files
        ids = set(self.file_ids)
        return frozenset(f for f in self.block.files_by_lfn.values() if f.id in ids)

    # The original's read API (properties and methods: no instance memory).
    @property
    def num_files(self) -> int:
        """The number of files present here."""
        return self.block.num_files if self.file_ids is None else len(self.file_ids)

    def has_file(self, lfile) -> bool:
        """Whether this file (a File of the block, or an LFN) is present here."""
        if isinstance(lfile, str):
            lfile = self.block.find_file(lfile)
        if getattr(lfile, "block", None) != self.block:
            return False
        return self.file_ids is None or lfile.id in self.file_ids

    def __str__(self):
        block = self.block.full_name() if isinstance(self.block, Block) else self.block
        return (f"BlockReplica {_name_of(self.site)}:{block} (group={_name_of(self.group)}, "
                f"size={self.size}, last_update={_utc(self.last_update)})")


CLASSES = (Site, Group, Dataset, Block, File, DatasetReplica, BlockReplica)

# A detached object's fields read as their defaults until set.
for _view, _table in ((Dataset, DetachedDataset), (Block, DetachedBlock),
                      (DatasetReplica, DetachedDatasetReplica),
                      (BlockReplica, DetachedBlockReplica)):
    for _name in _view.FIELDS:
        setattr(_table, _name, (getattr(_view, _name).default,))

# The null group (no owner): the inventory's `groups[None]`, never stored or changed.
Group.null_group = Group(None)


def changed_fields(obj) -> dict:
    """The fields a caller set on a detached object (what `update` copies)."""
    cls = type(obj)
    if isinstance(obj, _View) and isinstance(obj[0], Detached):
        given = obj[0].given   # what was set, as it reads: `update` of a built replica
        if len(given) < 2:     # is the common call, most often with one field given
            return dict(given)
        return {n: given[n] for n in cls.FIELDS if n in given}
    return given_fields(obj, cls.FIELDS)
