"""A prototype of the compact inventory: columns of numbers instead of one object per row.

Not used by the daemon: `python -m bench.probes memory DB columnar` and `... walk DB
columnar` build it from the same rows as the daemon's objects, so that the memory per
object, the build time, a full walk and the pages a forked walk copies are measured side
by side (the issue asks how far memory can be pushed, with numbers).

Layout.  Each kind keeps its rows' order (ids ascending); a row is an index into its
kind's columns:
- ids, sizes, times: array('q'); row indexes: array('i'); site, group and enumeration
  codes (statuses, versions): array('H') into a small table of the distinct values;
  the one flag of each kind (so nothing to pack): array('B');
- names: one UTF-8 `bytes` and an offsets array; a dataset by name is a bisect in the
  dataset indexes sorted by name.  Measured at medium scale, a dict by name (str keys,
  int values) costs 11 B/object more RSS (340 B a dataset: its keys also keep the pages
  of the rows they were read with) and 5 B/object traced, for a lookup of 0.35 us
  instead of 3.3 us; a query's round trip is tens of us: no dict;
- the replicas of a block (of a dataset) are a range of the replica rows, which come
  sorted by block (dataset) then site: `block_replica_start[b]` to `[b + 1]`;
- a dataset's blocks: the block indexes sorted by (dataset, name), each dataset a
  range of it, so a block by name is a bisect in its dataset's range (1.3 us; no
  index built lazily, no dict);
- a site's dataset replicas: the dataset replica indexes sorted by site, likewise;
- the file ids of the few incomplete block replicas: one array of them all, where each
  replica's begin, and those replicas' indexes (sorted: a bisect finds one).
Sites and groups (a few hundred) stay tuples.  The views are flyweights made on
access: no row is a Python object.
"""

from array import array
from bisect import bisect_left, bisect_right
from collections import namedtuple
from functools import partial
from itertools import accumulate, chain, compress, count, repeat
from operator import is_not, itemgetter

import orjson

Site = namedtuple("Site", "name host storage_type backend status id")
Group = namedtuple("Group", "name olevel id")
NO_GROUP = Group(None, "Block", 0)


class Codes:
    """The few distinct values of a column (statuses, versions), each stored as its code."""

    __slots__ = ("values", "codes")

    def __init__(self):
        self.values, self.codes = [], {}

    def __call__(self, value) -> int:
        code = self.codes.get(value)
        if code is None:
            code = self.codes[value] = len(self.values)
            self.values.append(value)
        return code


class Names:
    """Strings as one UTF-8 bytes and where each starts: 8 bytes a name, no object."""

    __slots__ = ("data", "offsets")

    def __init__(self, encoded: list):
        self.offsets = array("q", accumulate(map(len, encoded), initial=0))
        self.data = b"".join(encoded)

    def raw(self, i) -> bytes:
        return self.data[self.offsets[i]:self.offsets[i + 1]]

    def __getitem__(self, i) -> str:
        return self.raw(i).decode()


# The build maps C functions over the rows (no Python code a row): the block stage
# took 0.35 s with comprehensions and lambdas, where the daemon's objects take 0.1 s.
def column(rows, j, typecode="q", code=None) -> array:
    """Column j of the rows, each value first mapped by `code` if given."""
    values = map(itemgetter(j), rows)
    return array(typecode, values if code is None else map(code, values))


def flags(rows, j) -> array:
    return column(rows, j, "B", bool)


def encoded(rows, j) -> list:
    return list(map(str.encode, map(itemgetter(j), rows)))


def starts(keys: array, ids) -> array:
    """Where the run of each id begins in `keys` (both ascending), and the end."""
    found = array("i", map(partial(bisect_left, keys), ids))
    found.append(len(keys))
    return found


def grouped(keys: array, distinct: int) -> tuple[array, array]:
    """The indexes of `keys` (codes below `distinct`) sorted by key, and where each
    key's run begins."""
    order = array("i", sorted(range(len(keys)), key=keys.__getitem__))
    return order, starts(array(keys.typecode, map(keys.__getitem__, order)), range(distinct))


class Columns:
    """The inventory as columns, built table by table from the store's rows (the
    `tables` of dynamod.inventory.rows.build, read parents first)."""

    def __init__(self, tables):
        self.sites = [Site(*row[1:], row[0]) for row in tables["site"]]
        self.site_index = {site.id: i for i, site in enumerate(self.sites)}
        self.groups = [NO_GROUP] + [Group(*row[1:], row[0]) for row in tables["group"]]
        self.group_index = {group.id: i for i, group in enumerate(self.groups)}
        self.group_index[None] = 0
        self.status, self.data_type, self.version = Codes(), Codes(), Codes()
        self._datasets(tables["dataset"])
        self._blocks(tables["block"])
        self._dataset_replicas(tables["datasetreplica"])
        self._block_replicas(tables["blockreplica"])

    def _datasets(self, rows):
        self.dataset_id = column(rows, 0)
        names = encoded(rows, 1)
        self.dataset_order = array("i", sorted(range(len(rows)), key=names.__getitem__))
        self.dataset_names = Names(names)
        self.dataset_status = column(rows, 2, "H", self.status)
        self.dataset_data_type = column(rows, 3, "H", self.data_type)
        self.dataset_version = column(rows, 4, "H", self.version)
        self.dataset_last_update = column(rows, 5)
        self.dataset_open = flags(rows, 6)

    def _blocks(self, rows):
        self.block_id = column(rows, 0)
        dataset_index = dict(zip(self.dataset_id, count()))  # for the build only
        self.block_dataset = column(rows, 1, "i", dataset_index.__getitem__)
        names = encoded(rows, 2)
        self.block_names = Names(names)
        self.block_size = column(rows, 3)
        self.block_num_files = column(rows, 4)
        self.block_open = flags(rows, 5)
        self.block_last_update = column(rows, 6)
        by_dataset = list(zip(self.block_dataset, names)).__getitem__
        self.dataset_blocks = array("i", sorted(range(len(rows)), key=by_dataset))
        self.dataset_block_start = starts(array("i", map(self.block_dataset.__getitem__,
                                                         self.dataset_blocks)),
                                          range(len(self.dataset_id)))

    def _dataset_replicas(self, rows):
        self.dataset_replica_start = starts(column(rows, 0), self.dataset_id)
        self.dr_site = column(rows, 1, "H", self.site_index.__getitem__)
        self.dr_growing = flags(rows, 2)
        self.dr_group = column(rows, 3, "H", self.group_index.__getitem__)
        self.site_dataset_replicas, self.site_dr_start = grouped(self.dr_site, len(self.sites))

    def _block_replicas(self, rows):
        self.block_replica_start = starts(column(rows, 0), self.block_id)
        self.br_site = column(rows, 1, "H", self.site_index.__getitem__)
        self.br_group = column(rows, 2, "H", self.group_index.__getitem__)
        self.br_custodial = flags(rows, 3)
        self.br_size = column(rows, 4)
        self.br_last_update = column(rows, 5)
        files = list(map(itemgetter(6), rows))
        self.br_incomplete = array("i", compress(count(), map(is_not, files, repeat(None))))
        lists = [orjson.loads(files[i]) for i in self.br_incomplete]
        self.br_file_start = array("q", accumulate(map(len, lists), initial=0))
        self.br_file_ids = array("q", chain.from_iterable(lists))

    def file_ids(self, replica: int):
        """None for a complete replica, else the ids of the files it holds."""
        at = bisect_left(self.br_incomplete, replica)
        if at == len(self.br_incomplete) or self.br_incomplete[at] != replica:
            return None
        return self.br_file_ids[self.br_file_start[at]:self.br_file_start[at + 1]]

    # ------------------------------------------------------------ access
    def datasets(self):
        return views(DatasetView, self, range(len(self.dataset_id)))

    def dataset(self, name: str):
        found = _find(self.dataset_order, 0, len(self.dataset_order), self.dataset_names, name)
        return None if found is None else DatasetView((self, found))

    def find_block(self, dataset: int, name: str):
        begin, end = self.dataset_block_start[dataset], self.dataset_block_start[dataset + 1]
        found = _find(self.dataset_blocks, begin, end, self.block_names, name)
        return None if found is None else BlockView((self, found))

    def dataset_replicas_at(self, site: int):
        s = self.site_dr_start
        return views(DatasetReplicaView, self, self.site_dataset_replicas[s[site]:s[site + 1]])


def _find(order: array, begin: int, end: int, names: Names, name: str):
    """The index in order[begin:end], sorted by name (UTF-8 bytes order), named `name`."""
    wanted = name.encode()
    at = bisect_left(order, wanted, begin, end, key=names.raw)
    return order[at] if at < end and names.raw(order[at]) == wanted else None


# ------------------------------------------------------------------ views
class View(tuple):
    """(store, index): a flyweight over one row.  A tuple because making one is then
    all C: a slotted class with an __init__ made and read views at half the speed in
    a micro-benchmark (the full walk gained 6 %); each attribute is spelled out as a
    lambda (not a generic getattr) for the same reason."""

    __slots__ = ()
    store = property(itemgetter(0))
    index = property(itemgetter(1))


def views(cls, store, indexes):
    return map(cls, zip(repeat(store), indexes))


def _owner(starts: array, index: int) -> int:
    """The dataset or block whose range of replica rows holds the row `index`."""
    return bisect_right(starts, index) - 1


class DatasetView(View):
    __slots__ = ()
    name = property(lambda v: v[0].dataset_names[v[1]])
    id = property(lambda v: v[0].dataset_id[v[1]])
    status = property(lambda v: v[0].status.values[v[0].dataset_status[v[1]]])
    data_type = property(lambda v: v[0].data_type.values[v[0].dataset_data_type[v[1]]])
    software_version = property(lambda v: v[0].version.values[v[0].dataset_version[v[1]]])
    last_update = property(lambda v: v[0].dataset_last_update[v[1]])
    is_open = property(lambda v: bool(v[0].dataset_open[v[1]]))

    @property
    def blocks(self):
        s, i = self
        begin, end = s.dataset_block_start[i], s.dataset_block_start[i + 1]
        return views(BlockView, s, s.dataset_blocks[begin:end])

    @property
    def replicas(self):
        s, i = self
        return views(DatasetReplicaView, s,
                     range(s.dataset_replica_start[i], s.dataset_replica_start[i + 1]))

    def find_block(self, name):
        return self[0].find_block(self[1], name)


class BlockView(View):
    __slots__ = ()
    name = property(lambda v: v[0].block_names[v[1]])
    id = property(lambda v: v[0].block_id[v[1]])
    size = property(lambda v: v[0].block_size[v[1]])
    num_files = property(lambda v: v[0].block_num_files[v[1]])
    last_update = property(lambda v: v[0].block_last_update[v[1]])
    is_open = property(lambda v: bool(v[0].block_open[v[1]]))
    dataset = property(lambda v: DatasetView((v[0], v[0].block_dataset[v[1]])))

    @property
    def replicas(self):
        s, i = self
        return views(BlockReplicaView, s,
                     range(s.block_replica_start[i], s.block_replica_start[i + 1]))


class DatasetReplicaView(View):
    __slots__ = ()
    site = property(lambda v: v[0].sites[v[0].dr_site[v[1]]])
    group = property(lambda v: v[0].groups[v[0].dr_group[v[1]]])
    growing = property(lambda v: bool(v[0].dr_growing[v[1]]))
    dataset = property(lambda v: DatasetView((v[0], _owner(v[0].dataset_replica_start, v[1]))))

    @property
    def block_replicas(self):
        """Not stored: the replicas at this site of the dataset's blocks."""
        s, i = self
        site = s.dr_site[i]
        return [r for block in self.dataset.blocks for r in block.replicas
                if s.br_site[r[1]] == site]


class BlockReplicaView(View):
    __slots__ = ()
    site = property(lambda v: v[0].sites[v[0].br_site[v[1]]])
    group = property(lambda v: v[0].groups[v[0].br_group[v[1]]])
    is_custodial = property(lambda v: bool(v[0].br_custodial[v[1]]))
    size = property(lambda v: v[0].br_size[v[1]])
    last_update = property(lambda v: v[0].br_last_update[v[1]])
    file_ids = property(lambda v: v[0].file_ids(v[1]))
    block = property(lambda v: BlockView((v[0], _owner(v[0].block_replica_start, v[1]))))
