"""Datasets as columns, and `inventory.datasets`, the mapping by name over them.

A dataset as a Python object held a dozen objects of its own (its name, its
status, type and version strings, its numbers, its set of blocks), which an
application forked from the daemon copies page by page as it reads them
(reading an object writes its reference count).  Here, as blocks are
(columns.py), each field is an `array`: the names are slices of one UTF-8
buffer, the status and the data type the index of their value among the
allowed ones, the software version a code into the table's list of the versions
met (a few hundred, shared by thousands of datasets), and `Dataset` (objects.py)
is a view `(table, row)` made on access.  What a dataset holds:
- its blocks: their rows in the BlockTable, sorted by name, a run of the one array
  `block_rows` (from `block_start`, `block_count` of them, room for
  `block_room`), which the BlockSet a view makes on access reads.  One array, not
  one per dataset: an application that walks the datasets touches no object of
  theirs.  A run that is full moves to the end of the array with twice the room,
  leaving a hole (so a dataset's growth costs a constant per block);
- its blocks' totals: `size` and `num_files`, the sums over its run (with
  `block_count`, what its answer and `Dataset.size` show without a walk of its
  blocks, which cost a microsecond or more per dataset listed).  They move with
  the run (a block in, a block out) and with a live block's own size and
  num_files (BlockTable.store), so every change, and its undo, keeps them; the
  snapshot holds them (summing them anew at a restore took a fifth of it);
- its replicas: a list of rows of the DatasetReplicaTable from `first_replica`.
The live rows are also indexed by name (nameindex.py): a dataset by name is a
probe or two in an array.

Rows follow the rules of the other tables (columns.py): appended in id order,
a deleted row marked dead and still readable (a dead block or replica names its
dataset by row), an undone creation removed, every change returning its undo.
"""

from array import array
from collections.abc import ItemsView, Mapping, ValuesView
from functools import partial
from itertools import accumulate, chain, compress, count, repeat
from operator import add, itemgetter

import orjson

from ..errors import InvalidValue
from .columns import (Names, as_bytes, batches, column, copy_columns, kept, live_names,
                      renumbering, require, restore_columns, taken, within)
from .fields import MAX_COUNT
from .nameindex import NameIndex
from .objects import DATA_TYPES, DATASET_STATUSES, NO_ROW, BlockSet, Dataset

_new_view = tuple.__new__
_UNITS = {"size": "bytes", "num_files": "files"}
_STATUS_CODE = {status: code for code, status in enumerate(DATASET_STATUSES)}
_TYPE_CODE = {data_type: code for code, data_type in enumerate(DATA_TYPES)}


class DatasetTable(Names):
    """Every dataset of the inventory, one row each."""

    __slots__ = ("id", "status", "data_type", "version", "last_update", "is_open", "alive",
                 "first_replica", "block_start", "block_count", "block_room", "block_rows",
                 "size", "num_files", "index", "versions", "version_code", "live", "blocks",
                 "replicas")
    COLUMNS = ("id", "status", "data_type", "version", "last_update", "is_open", "alive",
               "first_replica", "block_start", "block_count", "block_room", "size",
               "num_files")

    def __init__(self):
        super().__init__()
        self.id, self.last_update = array("q"), array("q")
        self.status, self.data_type = array("b"), array("b")   # indexes of their values
        self.is_open, self.alive = array("b"), array("b")
        self.version = array("i")         # row -> its code in `versions`
        self.first_replica = array("i")   # the row of its first replica (DatasetReplicaTable)
        self.block_start, self.block_count, self.block_room = (array("i") for _ in range(3))
        self.block_rows = array("i")      # the runs of every dataset's block rows
        self.size, self.num_files = array("q"), array("q")   # the sums over each run
        self.index = NameIndex(self)      # the live rows by name
        self.versions = [None]            # code -> software version (None: none)
        self.version_code = {None: 0}     # software version -> code
        self.live = 0                     # live rows
        self.blocks = None                # the BlockTable (it sets itself here)
        self.replicas = None              # the DatasetReplicaTable (it sets itself here)

    def __len__(self):
        return len(self.id)

    def __repr__(self):
        return f"<DatasetTable: {self.live} datasets in {len(self)} rows>"

    # ------------------------------------------------------------ reading
    def exists(self, row) -> bool:
        return row < len(self.alive) and self.alive[row] != 0

    def is_set(self, name) -> bool:
        return True

    def status_at(self, row) -> str:
        return DATASET_STATUSES[self.status[row]]

    def data_type_at(self, row) -> str:
        return DATA_TYPES[self.data_type[row]]

    def version_at(self, row):
        return self.versions[self.version[row]]

    def values_at(self, row) -> tuple:
        """See Dataset.values."""
        return (self.id[row], self.name_at(row), DATASET_STATUSES[self.status[row]],
                DATA_TYPES[self.data_type[row]], self.versions[self.version[row]],
                self.last_update[row], self.is_open[row] != 0)

    def blocks_of(self, row) -> BlockSet:
        return BlockSet(self.blocks, row)

    def totals_at(self, row) -> tuple:
        """(size, num_files, blocks) of the dataset at `row`: its blocks' sums."""
        return self.size[row], self.num_files[row], self.block_count[row]

    def block_span(self, row) -> tuple:
        """(block_rows, where the run of the dataset at `row` starts, its length)."""
        return self.block_rows, self.block_start[row], self.block_count[row]

    def replicas_of(self, row):
        return self.replicas.of_dataset(self.first_replica[row])

    def find(self, name) -> int:
        """The live row named `name` (NO_ROW: none)."""
        if not isinstance(name, str):
            return NO_ROW
        return self.index.find(name.encode("utf-8", "surrogatepass"))

    def live_rows(self):
        """The live rows, in creation order."""
        return compress(count(), self.alive)

    def view(self, row) -> Dataset:
        return _new_view(Dataset, (self, row))

    # ----------------------------------------------------------- changing
    def store(self, name, row, value):
        if name == "status":
            self.status[row] = _STATUS_CODE[value]
        elif name == "data_type":
            self.data_type[row] = _TYPE_CODE[value]
        elif name == "software_version":
            self.version[row] = self._code(value)
        else:
            getattr(self, name)[row] = value

    def _code(self, version) -> int:
        code = self.version_code.get(version)
        if code is None:   # a version met for the first time: it stays
            code = self.version_code[version] = len(self.versions)
            self.versions.append(version)
        return code

    def add(self, dataset_id, name, status, data_type, software_version, last_update,
            is_open):
        """A new dataset (checked values): (its view, the undo)."""
        row = len(self.id)
        for values, value in zip(
                (self.id, self.status, self.data_type, self.version, self.last_update,
                 self.is_open, self.alive, self.first_replica, self.block_start,
                 self.block_count, self.block_room, self.size, self.num_files),
                (dataset_id, _STATUS_CODE[status], _TYPE_CODE[data_type],
                 self._code(software_version), last_update, is_open, 1, NO_ROW, 0, 0, 0, 0,
                 0)):
            values.append(value)
        self.append_name(name)
        self._list(row)

        def undo():
            self._unlist(row)
            for name in self.COLUMNS:
                del getattr(self, name)[row:]
            self.truncate_names(row)
        return _new_view(Dataset, (self, row)), undo

    def delete(self, dataset: Dataset):
        """The dataset (its blocks and replicas gone already) leaves; returns the undo."""
        row = dataset[1]
        self._unlist(row)
        self.alive[row] = 0

        def undo():
            self.alive[row] = 1
            self._list(row)
        return undo

    def insert_block(self, row, at, block):
        """Put `block` at index `at` of `block_rows` (in the run of the dataset at `row`,
        where its name goes); returns the undo."""
        place = at - self.block_start[row]
        self._put(row, place, block)
        return partial(self._take, row, place)

    def remove_block(self, row, at):
        """Take the block at index `at` of `block_rows` out of its run; returns the undo."""
        place = at - self.block_start[row]
        return partial(self._put, row, place, self._take(row, place))

    def _put(self, row, place, block):
        n = self.block_count[row]
        if n == self.block_room[row]:
            self._grow(row)
        rows, start = self.block_rows, self.block_start[row]
        at = start + place
        rows[at + 1:start + n + 1] = rows[at:start + n]
        rows[at] = block
        self.block_count[row] = n + 1
        self.size[row] += self.blocks.size[block]
        self.num_files[row] += self.blocks.num_files[block]

    def _take(self, row, place) -> int:
        rows, start, n = self.block_rows, self.block_start[row], self.block_count[row]
        at = start + place
        block = rows[at]
        rows[at:start + n - 1] = rows[at + 1:start + n]
        self.block_count[row] = n - 1
        self.size[row] -= self.blocks.size[block]
        self.num_files[row] -= self.blocks.num_files[block]
        return block

    def add_to_total(self, name, row, change: int):
        """A block of the dataset at `row` grew by `change` (or shrank: negative) in
        `size` or `num_files` (`name`).  Raises InvalidValue, changing nothing, when
        the sum would pass what its answer can show (a 64-bit integer)."""
        totals = getattr(self, name)
        total = totals[row] + change
        if total > MAX_COUNT:
            raise InvalidValue(f"dataset {self.name_at(row)}: its blocks would add up to "
                               f"{total} {_UNITS[name]}, over {MAX_COUNT}", field=name)
        totals[row] = total

    def _grow(self, row):
        """Twice the room for the run of the dataset at `row`: in place when it ends the
        array, else in a copy at its end (the old place is left unused)."""
        rows, start, n, room = (self.block_rows, self.block_start[row], self.block_count[row],
                                self.block_room[row])
        wanted = max(4, 2 * room)
        if room and start + room == len(rows):
            rows.extend(repeat(0, wanted - room))
        else:
            self.block_start[row] = len(rows)
            rows.extend(rows[start:start + n])
            rows.extend(repeat(0, wanted - n))
        self.block_room[row] = wanted

    def place_blocks(self, row, blocks):
        """The first blocks (rows sorted by name) of the dataset at `row`, which has no
        room yet: a run of their own at the end of `block_rows` (loading)."""
        start = self.block_start[row] = len(self.block_rows)
        self.block_rows.extend(blocks)
        self.block_count[row] = self.block_room[row] = len(self.block_rows) - start
        self._sum_run(row)

    def _sum_run(self, row):
        """The totals of the dataset at `row`, summed over its run."""
        run = self.block_rows[self.block_start[row]:self.block_start[row] + self.block_count[row]]
        self.size[row] = sum(map(self.blocks.size.__getitem__, run))
        self.num_files[row] = sum(map(self.blocks.num_files.__getitem__, run))

    def place_new_blocks(self, row, blocks):
        """The first blocks (rows, in any order) of the dataset at `row`, which has none:
        a run of their own, sorted by name, at the end of `block_rows` (its old room, if
        any, left unused as `_grow` leaves one); returns the undo."""
        before = (self.block_start[row], self.block_count[row], self.block_room[row],
                  self.size[row], self.num_files[row])
        self.place_blocks(row, sorted(blocks, key=self.blocks.raw_name))

        def undo():
            (self.block_start[row], self.block_count[row], self.block_room[row],
             self.size[row], self.num_files[row]) = before
        return undo

    def _list(self, row):
        self.index.add(row)
        self.live += 1

    def _unlist(self, row):
        self.index.remove(row)
        self.live -= 1

    # ------------------------------------------------------------ loading
    def load(self, rows):
        """Fill the empty table with the store's dataset rows (id, name, status, data_type,
        software_version, last_update, is_open), in id order, a batch at a time, column
        by column; then index them by name."""
        for batch in batches(rows):
            n = len(batch)
            self.id.extend(map(itemgetter(0), batch))
            self.extend_names(map(itemgetter(1), batch))
            self.status.extend(map(_STATUS_CODE.__getitem__, map(itemgetter(2), batch)))
            self.data_type.extend(map(_TYPE_CODE.__getitem__, map(itemgetter(3), batch)))
            self.version.extend(map(self._code, map(itemgetter(4), batch)))
            self.last_update.extend(map(itemgetter(5), batch))
            self.is_open.extend(map(itemgetter(6), batch))
            self.alive.extend(repeat(1, n))
            self.first_replica.extend(repeat(NO_ROW, n))
            for values in (self.block_start, self.block_count, self.block_room, self.size,
                           self.num_files):
                values.extend(repeat(0, n))
        self.index.fill(len(self.id))
        self.live = len(self.id)


    # ----------------------------------------------------------- snapshot
    # As BlockTable's (columns.py): the live rows, their software versions coded anew
    # in the order a load meets them, and each one's run of block rows (renumbered, one
    # after the other, as a load places them) with its totals; the index by name is
    # built anew.
    def dump(self):
        return partial(_dataset_parts, copy_columns(self, _PARTS + _RUNS + ("alive",)),
                       *self.dump_names(), list(self.versions), self.blocks.alive[:])

    def restore(self, parts: dict):
        """Fill the empty table from `dump`'s parts (the first table restored)."""
        n = restore_columns(self, _PARTS + ("block_count",), parts, "dataset")
        self.restore_names(parts, n)
        self.versions = orjson.loads(parts["versions"])
        self.version_code = {version: code for code, version in enumerate(self.versions)}
        require(self.versions[:1] == [None] and len(self.version_code) == len(self.versions)
                and within(self.version, len(self.versions))
                and within(self.status, len(DATASET_STATUSES))
                and within(self.data_type, len(DATA_TYPES)), "dataset codes of no value")
        self.block_rows = column("i", parts["block_rows"])
        self.block_start = array("i", accumulate(self.block_count, initial=0))
        require(self.block_start.pop() == len(self.block_rows), "block runs of another length")
        self.block_room = self.block_count[:]
        self.index.fill(n)   # SnapshotError: two datasets of one name
        self.alive = array("b", [1]) * n
        self.first_replica = array("i", [NO_ROW]) * n
        self.live = n


_PARTS = ("id", "status", "data_type", "version", "last_update", "is_open", "size",
          "num_files")
_RUNS = ("block_start", "block_count", "block_rows")


def _dataset_parts(columns: dict, names: bytes, offsets: array, versions: list,
                   block_alive) -> dict:
    """DatasetTable.dump's parts, from its copy (in a thread)."""
    alive = columns["alive"]
    parts = {name: kept(columns[name], alive) for name in _PARTS + ("block_count",)}
    codes = parts["version"]
    recoded = {old: new for new, old in enumerate(dict.fromkeys(chain((0,), codes)))}
    parts["version"] = array("i", map(recoded.__getitem__, codes))
    parts["versions"] = orjson.dumps([versions[old] for old in recoded])   # 0: None
    runs = map(columns["block_rows"].__getitem__,
               map(slice, compress(columns["block_start"], alive),
                   map(add, compress(columns["block_start"], alive), parts["block_count"])))
    parts["block_rows"] = taken(renumbering(block_alive), chain.from_iterable(runs))
    parts.update(live_names(names, offsets, alive))
    return as_bytes(parts)


class DatasetNames(Mapping):
    """`inventory.datasets`: the live datasets by name, in creation order, read from the
    DatasetTable (a name is found through its index).  Printed as the dict it
    stands for."""

    __slots__ = ("table",)

    def __init__(self, table: DatasetTable):
        self.table = table

    def __getitem__(self, name) -> Dataset:
        row = self.table.find(name)
        if row == NO_ROW:
            raise KeyError(name)
        return _new_view(Dataset, (self.table, row))

    def get(self, name, default=None):
        row = self.table.find(name)
        return default if row == NO_ROW else _new_view(Dataset, (self.table, row))

    def __contains__(self, name):
        return self.table.find(name) != NO_ROW

    def __len__(self):
        return self.table.live

    def __iter__(self):
        return map(self.table.name_at, self.table.live_rows())

    def __reversed__(self):
        table = self.table
        return (table.name_at(row) for row in reversed(range(len(table))) if table.alive[row])

    def values(self):
        return _Values(self)

    def items(self):
        return _Items(self)

    def __repr__(self):
        return repr(dict(self.items()))


class _Values(ValuesView):
    """The datasets, in creation order: views made from the rows (no look-up by name)."""

    __slots__ = ()

    def __iter__(self):
        table = self._mapping.table
        return map(_new_view, repeat(Dataset), zip(repeat(table), table.live_rows()))


class _Items(ItemsView):
    __slots__ = ()

    def __iter__(self):
        table = self._mapping.table
        for row in table.live_rows():
            yield table.name_at(row), _new_view(Dataset, (table, row))
