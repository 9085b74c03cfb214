"""Blocks and block replicas as columns: one array per field, one row per object.

A grid holds millions of blocks and block replicas.  As Python objects they cost
hundreds of bytes each, and an application forked from the daemon that merely
reads them copies their pages (reading an object writes its reference count).
Here each field is an `array` (a block's dataset, a list of references: datasets
stay objects), block names are slices of one UTF-8 buffer, and `Block` and
`BlockReplica` (objects.py) are views `(table, row)` made on access: reading a
column writes nothing.

Rows are appended in id order (ids only grow), so the id column is sorted (the
start-up finds a replica's block by its id there) and the rows' order is
creation order.  Links are rows:
- a block's replicas: a list through `next_in_block` from the block's
  `first_replica` (a block has a few replicas; new ones go last);
- a dataset replica's block replicas: a doubly linked chain through
  `next_in_owner` and `prev_in_owner`, from the DatasetReplica's `head` to its
  `tail` (it may hold thousands, and one leaves in O(1)); new ones go last;
- a dataset's blocks: its BlockSet (objects.py), their rows sorted by name.
Sites and groups are kept by id (`BlockReplicaTable.sites`, `.groups`; 0 is the
null group); they are registered when created and stay after a deletion, so that
a dead row can still be read.

Every change is a table operation that returns its inverse, which the ChangeSet
keeps as its undo and runs strictly newest first.  A deleted row is marked dead
(`alive` 0) and left where it is, still readable (the change log names what a
change deleted after the fact; a dead block keeps its dataset's name, not the
Dataset) and never reused; undoing a creation removes the row, then the last
one.  A restart drops them (a load from rows, or from the snapshot, holds the
live rows only: `dump` and `restore` below, inventory/snapshot.py).  Compacting
the dead rows away while serving (when the daemon is idle) is not done yet:
it will have to renumber the rows in every column, BlockSet and chain, and in
the views the file cache holds.
"""

from array import array
from bisect import bisect_left, bisect_right
from collections import defaultdict
from functools import partial
from itertools import accumulate, chain, compress, count, islice, repeat
from operator import attrgetter, itemgetter, lshift, ne, or_

import orjson

from ..errors import InvalidValue
from .objects import NO_MEMBERS, NO_ROW, Block, BlockReplica, Members

_new_view = tuple.__new__
# Rows turned into columns at a time at start-up: as many as the store's reader
# fetches (store/reader.py).  Larger batches of rows, once freed, leave their memory
# scattered between the small buffers made meanwhile (measured at medium scale: 167
# resident bytes per object with 65,536, 122 with 4,096, as with 1,024).
BATCH = 4096


def _encoded(name: str) -> bytes:
    return name.encode("utf-8", "surrogatepass")


def _batches(rows):
    """The rows (any iterable) as lists of at most BATCH."""
    rows = iter(rows)
    while batch := list(islice(rows, BATCH)):
        yield batch


class BlockTable:
    """Every block of the inventory, one row each."""

    __slots__ = ("id", "dataset", "names", "offsets", "size", "num_files", "is_open",
                 "last_update", "alive", "first_replica", "cache", "replicas")
    COLUMNS = ("id", "size", "num_files", "is_open", "last_update", "alive", "first_replica")

    def __init__(self, cache=None):
        self.id, self.size, self.num_files, self.last_update = (array("q") for _ in range(4))
        self.is_open, self.alive = array("b"), array("b")
        self.first_replica = array("i")
        self.dataset = []             # the Dataset of each row
        self.names = bytearray()      # every name, UTF-8, one after the other
        self.offsets = array("q", [0])  # row r's name is names[offsets[r]:offsets[r + 1]]
        self.cache = cache            # the inventory's FileCache, which loads files
        self.replicas = None          # the BlockReplicaTable (it sets itself here)

    def __len__(self):
        return len(self.id)

    def __repr__(self):
        return f"<BlockTable: {self.alive.count(1)} blocks in {len(self)} rows>"

    # ------------------------------------------------------------ reading
    def raw_name(self, row) -> bytearray:
        return self.names[self.offsets[row]:self.offsets[row + 1]]

    def name_at(self, row) -> str:
        offsets = self.offsets
        return self.names[offsets[row]:offsets[row + 1]].decode("utf-8", "surrogatepass")

    def exists(self, row) -> bool:
        """Whether `row` holds a block (not deleted, not undone)."""
        return row < len(self.alive) and self.alive[row] != 0

    def is_set(self, name) -> bool:
        return True   # every field of a stored block has its value

    def values_at(self, row) -> tuple:
        """See Block.values."""
        offsets = self.offsets
        return (self.id[row], self.dataset[row],
                self.names[offsets[row]:offsets[row + 1]].decode("utf-8", "surrogatepass"),
                self.size[row], self.num_files[row], self.is_open[row] != 0,
                self.last_update[row])

    def replicas_of(self, row) -> Members:
        """The replicas of the block at `row`."""
        replicas, found = self.replicas, []
        row, after = self.first_replica[row], replicas.next_in_block
        while row != NO_ROW:
            found.append(_new_view(BlockReplica, (replicas, row)))
            row = after[row]
        return Members(found) if found else NO_MEMBERS

    # ----------------------------------------------------------- changing
    def store(self, name, row, value):
        getattr(self, name)[row] = value

    def add(self, block_id, dataset, name, size, num_files, is_open, last_update):
        """A new block (checked values) in `dataset`: (its view, the undo)."""
        row = len(self.id)
        for column, value in zip((self.id, self.size, self.num_files, self.is_open,
                                  self.last_update, self.alive, self.first_replica),
                                 (block_id, size, num_files, is_open, last_update, 1, NO_ROW)):
            column.append(value)
        self.dataset.append(dataset)
        self.names += _encoded(name)
        self.offsets.append(len(self.names))
        unlist = dataset.blocks.insert(row)

        def undo():
            unlist()
            self._truncate(row)
        return _new_view(Block, (self, row)), undo

    def _truncate(self, row):
        """Remove the rows from `row` on (the undo of their creation)."""
        for name in self.COLUMNS:
            del getattr(self, name)[row:]
        del self.dataset[row:]
        del self.names[self.offsets[row]:]
        del self.offsets[row + 1:]

    def delete(self, block: Block):
        """The block leaves its dataset (its replicas are gone already); returns the undo.
        The dead row keeps the dataset's name, not the Dataset (which may be deleted
        too, and must then leave memory)."""
        row = block[1]
        dataset = self.dataset[row]
        relist = dataset.blocks.remove(row)
        self.alive[row] = 0
        self.dataset[row] = dataset.name

        def undo():
            self.dataset[row] = dataset
            self.alive[row] = 1
            relist()
        return undo

    # ------------------------------------------------------------ loading
    def load(self, rows, datasets: dict):
        """Append the store's block rows (id, dataset id, name, size, num_files, is_open,
        last_update), in id order, a batch at a time, column by column; each block
        goes into its dataset's BlockSet."""
        for batch in _batches(rows):
            first = len(self.id)
            for j, column in ((0, self.id), (3, self.size), (4, self.num_files),
                              (5, self.is_open), (6, self.last_update)):
                column.extend(map(itemgetter(j), batch))
            self.alive.extend(repeat(1, len(batch)))
            self.first_replica.extend(repeat(NO_ROW, len(batch)))
            owners = list(map(datasets.__getitem__, map(itemgetter(1), batch)))
            self.dataset += owners
            encoded = list(map(str.encode, map(itemgetter(2), batch)))
            self.names += b"".join(encoded)
            self.offsets.extend(islice(accumulate(map(len, encoded),
                                                  initial=self.offsets[-1]), 1, None))
            self._list(owners, encoded, first)

    def _list(self, owners: list, encoded: list, first: int):
        """Put the batch's rows into their datasets' BlockSets, sorted by name: a run of
        rows of one dataset is sorted in C and appended, or merged when the dataset
        already has blocks (those of an earlier batch, or of an earlier run)."""
        start = 0
        for end in compress(count(1), map(ne, owners, islice(owners, 1, None))):
            self._list_run(owners[start], encoded, first, start, end)
            start = end
        if start < len(owners):
            self._list_run(owners[start], encoded, first, start, len(owners))

    def _list_run(self, dataset, encoded, first, start, end):
        rows = dataset.blocks.rows
        order = sorted(range(start, end), key=encoded.__getitem__)
        if not rows:
            rows.extend(map(first.__add__, order))
        else:
            for i in order:
                dataset.blocks.insert(first + i)

    # ----------------------------------------------------------- snapshot
    # (inventory/snapshot.py) `dump` copies the columns on the event loop (memcpy) and
    # returns a function that makes the parts from the copy in another thread: the
    # live rows in the order a load from rows gives them, with the lists it would
    # build, so that `restore` makes exactly the table `load` makes.
    def dump(self):
        columns = {name: getattr(self, name)[:] for name in _BLOCK_PARTS + ("alive", "offsets")}
        return partial(_block_parts, columns, bytes(self.names), self.dataset.copy())

    def restore(self, parts: dict, objects: dict):
        """Fill the empty table from `dump`'s parts; `objects["datasets"]`: the Datasets
        (loaded from rows) by id, whose BlockSets get their rows."""
        datasets = objects["datasets"]
        for name in _BLOCK_PARTS + ("offsets",):
            setattr(self, name, _column(getattr(self, name).typecode, parts[name]))
        n = len(self.id)
        self.names = bytearray(parts["names"])
        self.dataset = list(map(datasets.__getitem__, _column("q", parts["dataset"])))
        _require(all(len(getattr(self, c)) == n for c in _BLOCK_PARTS) and len(self.dataset) == n
                 and len(self.offsets) == n + 1 and self.offsets[0] == 0
                 and self.offsets[-1] == len(self.names), "block columns of unequal lengths")
        self.alive = array("b", [1]) * n
        self.first_replica = array("i", [NO_ROW]) * n
        listed = _column("i", parts["blockset"])
        _require(len(listed) == n, "block sets that do not cover the table")
        start = 0
        for dataset_id, end in zip(_column("q", parts["blockset_datasets"]),
                                   _column("q", parts["blockset_ends"])):
            datasets[dataset_id].blocks.rows = listed[start:end]
            start = end
        _require(start == n, "block sets that do not cover the table")


class BlockReplicaTable:
    """Every block replica of the inventory, one row each."""

    __slots__ = ("blocks", "block", "site", "group", "is_custodial", "size", "last_update",
                 "alive", "next_in_block", "next_in_owner", "prev_in_owner", "files",
                 "sites", "groups")
    COLUMNS = ("block", "site", "group", "is_custodial", "size", "last_update", "alive",
               "next_in_block", "next_in_owner", "prev_in_owner")

    def __init__(self, blocks: BlockTable, sites: dict, groups: dict):
        self.blocks = blocks
        blocks.replicas = self
        self.block = array("i")                  # the block's row
        self.site, self.group = array("I"), array("I")   # ids (group 0: the null group)
        self.is_custodial, self.alive = array("b"), array("b")
        self.size, self.last_update = array("q"), array("q")
        self.next_in_block = array("i")
        self.next_in_owner, self.prev_in_owner = array("i"), array("i")
        self.files = {}       # row -> the file ids of an incomplete replica (an array)
        self.sites = sites    # id -> Site
        self.groups = groups  # id -> Group

    def __len__(self):
        return len(self.block)

    def __repr__(self):
        return f"<BlockReplicaTable: {self.alive.count(1)} block replicas in {len(self)} rows>"

    # ------------------------------------------------------------ reading
    def is_set(self, name) -> bool:
        return True

    def block_at(self, row) -> Block:
        return _new_view(Block, (self.blocks, self.block[row]))

    def site_at(self, row):
        return self.sites[self.site[row]]

    def group_at(self, row):
        return self.groups[self.group[row]]

    def file_ids_at(self, row):
        ids = self.files.get(row)
        return None if ids is None else tuple(ids)

    def values_at(self, row) -> tuple:
        """See BlockReplica.values."""
        ids = self.files.get(row)
        return (_new_view(Block, (self.blocks, self.block[row])), self.sites[self.site[row]],
                self.groups[self.group[row]], self.is_custodial[row] != 0, self.size[row],
                self.last_update[row], None if ids is None else tuple(ids))

    def views(self):
        """Every (live) block replica."""
        return map(_new_view, repeat(BlockReplica),
                   zip(repeat(self), compress(count(), self.alive)))

    def chain(self, owner):
        """The block replicas of a dataset replica, in creation order."""
        row, after = owner.head, self.next_in_owner
        while row != NO_ROW:
            yield _new_view(BlockReplica, (self, row))
            row = after[row]

    def in_chain(self, row, owner) -> bool:
        return (row < len(self.alive) and self.alive[row] != 0
                and self.site[row] == owner.site.id
                and self.blocks.dataset[self.block[row]] is owner.dataset)

    def usage_facts(self, row) -> tuple:
        """What the usage (partitions.py) reads of a replica, in one call: its site, its
        group, its dataset, custodial, complete, its size and its block's size."""
        block = self.block[row]
        return (self.sites[self.site[row]], self.groups[self.group[row]],
                self.blocks.dataset[block], self.is_custodial[row] != 0,
                row not in self.files, self.size[row], self.blocks.size[block])

    # ----------------------------------------------------------- changing
    def store(self, name, row, value):
        getattr(self, name)[row] = value

    def set_group(self, row, group):
        self.group[row] = self._group_id(group)

    def _group_id(self, group) -> int:
        if self.groups.get(getattr(group, "id", None)) is not group:
            raise InvalidValue(f"a block replica's group is a Group of the inventory, not "
                               f"{group!r}", field="group")
        return group.id

    def set_file_ids(self, row, file_ids):
        if file_ids is None:
            self.files.pop(row, None)
            return
        try:
            self.files[row] = array("q", file_ids)
        except (TypeError, OverflowError):
            raise InvalidValue(f"a block replica's file_ids are the ids of its files (None: "
                               f"all), not {file_ids!r}", field="file_ids") from None

    def add(self, owner, block: Block, site, group, is_custodial, size, last_update,
            file_ids):
        """A new replica (checked values) of `block`, in the chain of `owner` (the
        dataset replica at that site): (its view, the undo)."""
        row, block_row = len(self.block), block[1]
        for column, value in zip(
                (self.block, self.site, self.group, self.is_custodial, self.size,
                 self.last_update, self.alive, self.next_in_block, self.next_in_owner,
                 self.prev_in_owner),
                (block_row, site.id, self._group_id(group), is_custodial, size, last_update,
                 1, NO_ROW, NO_ROW, owner.tail)):
            column.append(value)
        self.set_file_ids(row, file_ids)
        first, after = self.blocks.first_replica, self.next_in_block
        if first[block_row] == NO_ROW:
            first[block_row] = row
        else:
            last = first[block_row]
            while after[last] != NO_ROW:
                last = after[last]
            after[last] = row
        self._point(owner, owner.tail, NO_ROW, row, row)
        owner.length += 1
        replica = _new_view(BlockReplica, (self, row))

        def undo():
            self._unlink(row, owner)
            for name in self.COLUMNS:
                del getattr(self, name)[row:]
            self.files.pop(row, None)
        return replica, undo

    def delete(self, replica: BlockReplica, owner):
        """The replica leaves its block and `owner`'s chain; returns the undo (which puts
        it back where it was: undos run newest first, so its neighbours are as the
        deletion left them)."""
        row = replica[1]
        before = self._unlink(row, owner)
        self.alive[row] = 0
        return partial(self._relink, row, owner, before)

    def _unlink(self, row, owner) -> int:
        """Take the row out of its lists (its own links stay); returns the row before it
        in its block's list (NO_ROW: it was the first)."""
        block_row, first, after = self.block[row], self.blocks.first_replica, self.next_in_block
        before = NO_ROW
        if first[block_row] == row:
            first[block_row] = after[row]
        else:
            before = first[block_row]
            while after[before] != row:
                before = after[before]
            after[before] = after[row]
        previous, following = self.prev_in_owner[row], self.next_in_owner[row]
        self._point(owner, previous, following, following, previous)
        owner.length -= 1
        return before

    def _relink(self, row, owner, before):
        block_row, first, after = self.block[row], self.blocks.first_replica, self.next_in_block
        if before == NO_ROW:
            after[row] = first[block_row]
            first[block_row] = row
        else:
            after[row] = after[before]
            after[before] = row
        self._point(owner, self.prev_in_owner[row], self.next_in_owner[row], row, row)
        owner.length += 1
        self.alive[row] = 1

    def _point(self, owner, previous, following, forward, backward):
        """In `owner`'s chain, `previous` (NO_ROW: the head) now leads to `forward`, and
        `following` (NO_ROW: the tail) back to `backward`."""
        if previous == NO_ROW:
            owner.head = forward
        else:
            self.next_in_owner[previous] = forward
        if following == NO_ROW:
            owner.tail = backward
        else:
            self.prev_in_owner[following] = backward

    # ------------------------------------------------------------ loading
    def load(self, rows, owners: dict):
        """Fill the empty table with the store's block replica rows (block id, site id, group id, custodial,
        size, last_update, file ids as JSON or NULL), in key order (block, site), a
        batch at a time, column by column; then link them.  `owners`: the
        DatasetReplica of each `owner_key(dataset id, site id)`."""
        ids = self.blocks.id
        for batch in _batches(rows):
            first = len(self.block)
            # the rows of the batch's blocks by id (a dict for the batch's span: one
            # lookup each, where a bisection of the whole column took 4x longer)
            low, high = bisect_left(ids, batch[0][0]), bisect_right(ids, batch[-1][0])
            row_of = dict(zip(ids[low:high], count(low)))
            self.block.extend(map(row_of.__getitem__, map(itemgetter(0), batch)))
            self.site.extend(map(itemgetter(1), batch))
            groups = list(map(itemgetter(2), batch))
            self.group.extend(map({None: 0}.get, groups, groups))   # NULL: the null group
            for j, column in ((3, self.is_custodial), (4, self.size), (5, self.last_update)):
                column.extend(map(itemgetter(j), batch))
            self.alive.extend(repeat(1, len(batch)))
            for i, files in enumerate(map(itemgetter(6), batch), first):
                if files is not None:
                    self.files[i] = array("q", orjson.loads(files))
        self._link_loaded(owners)

    def _link_loaded(self, owners: dict):
        """The lists of freshly loaded rows (see `_links`)."""
        if len(self.block):
            dataset_ids = array("q", map(attrgetter("id"), self.blocks.dataset))
            self.next_in_block, self.next_in_owner, self.prev_in_owner = _links(
                self.block, self.site, dataset_ids, self.blocks.first_replica, owners)

    # ----------------------------------------------------------- snapshot
    # As BlockTable's: the live rows in key order (block, site), their lists, the
    # chains' ends and lengths by owner_key, the file ids of incomplete replicas.
    def dump(self):
        columns = {name: getattr(self, name)[:] for name in _REPLICA_PARTS[:6] + ("alive",)}
        return partial(_replica_parts, columns, self.blocks.alive[:], self.blocks.dataset.copy(),
                       dict(self.files))

    def restore(self, parts: dict, objects: dict):
        """Fill the empty table from `dump`'s parts (the BlockTable is restored already);
        `objects["owners"]`: the DatasetReplicas (loaded from rows) by owner_key, whose
        chains are set."""
        for name in _REPLICA_PARTS:
            setattr(self, name, _column(getattr(self, name).typecode, parts[name]))
        n, blocks = len(self.block), len(self.blocks)
        first = _column("i", parts["first_replica"])
        _require(all(len(getattr(self, c)) == n for c in _REPLICA_PARTS) and len(first) == blocks,
                 "block replica columns of unequal lengths")
        _require(set(self.site) <= self.sites.keys() and set(self.group) <= self.groups.keys(),
                 "block replicas at unknown sites or of unknown groups")
        self.blocks.first_replica = first
        self.alive = array("b", [1]) * n
        owners = objects["owners"]
        for key, head, tail, length in zip(*(_column(t, parts[f"owner_{name}"]) for t, name in
                                             (("q", "keys"), ("i", "heads"), ("i", "tails"),
                                              ("q", "lengths")))):
            owner = owners[key]
            owner.head, owner.tail, owner.length = head, tail, length
        ids, start = _column("q", parts["files_ids"]), 0
        for row, end in zip(_column("i", parts["files_rows"]), _column("q", parts["files_ends"])):
            _require(0 <= row < n, "file ids of a block replica outside the table")
            self.files[row] = ids[start:end]
            start = end


def _links(block, site, dataset_ids, first, owners) -> tuple:
    """The lists of block replica rows in key order (block, site): (next_in_block,
    next_in_owner, prev_in_owner); `first` (by block row) gets each block's first
    replica, `owners[owner_key]` the ends and length of its chain.  A block's replicas
    are consecutive rows: each row's next in its block is the following row, except at
    the end of a block's run.  Each dataset replica's chain takes its rows in order."""
    n = len(block)
    after = array("i", range(1, n + 1))
    for row in compress(range(n), map(ne, block, chain((NO_ROW,), block))):
        first[block[row]] = row
        after[row - 1] = NO_ROW   # the end of the previous run (row 0: of the last)
    next_in_owner, prev_in_owner = array("i", [NO_ROW]) * n, array("i", [NO_ROW]) * n
    keys = map(or_, map(lshift, map(dataset_ids.__getitem__, block), repeat(32)),
               site)   # owner_key of each row, in C
    for row, key in enumerate(keys):
        owner = owners[key]
        tail = owner.tail
        if tail == NO_ROW:
            owner.head = row
        else:
            next_in_owner[tail] = row
            prev_in_owner[row] = tail
        owner.tail = row
        owner.length += 1
    return after, next_in_owner, prev_in_owner


# ------------------------------------------------------------------ snapshot
# The parts of each table that are its columns as they are (arrays).
_BLOCK_PARTS = ("id", "size", "num_files", "is_open", "last_update")
_REPLICA_PARTS = ("block", "site", "group", "is_custodial", "size", "last_update",
                  "next_in_block", "next_in_owner", "prev_in_owner")


class SnapshotError(ValueError):
    """A snapshot's parts that do not make a sound table."""


def _require(condition, what: str):
    if not condition:
        raise SnapshotError(what)


def _column(typecode: str, data: bytes) -> array:
    column = array(typecode)
    column.frombytes(data)
    return column


def _live_dataset_ids(datasets: list, alive) -> array:
    """The ids of the live rows' datasets (a dead row holds its dataset's name)."""
    return array("q", map(attrgetter("id"), compress(datasets, alive)))


def _block_parts(columns: dict, names: bytes, datasets: list) -> dict:
    """BlockTable.dump's parts, from its copy (in a thread): the live rows, their
    names, and the BlockSets' rows (by dataset, then name) with the runs' datasets."""
    alive, offsets = columns["alive"], columns["offsets"]
    live = list(compress(range(len(alive)), alive))
    parts = {name: array(columns[name].typecode, compress(columns[name], alive)).tobytes()
             for name in _BLOCK_PARTS}
    dataset_ids = _live_dataset_ids(datasets, alive)
    parts["dataset"] = dataset_ids.tobytes()
    encoded = [names[offsets[row]:offsets[row + 1]] for row in live]
    parts["names"] = b"".join(encoded)
    parts["offsets"] = array("q", accumulate(map(len, encoded), initial=0)).tobytes()
    keys = list(zip(dataset_ids, encoded))
    listed = sorted(range(len(live)), key=keys.__getitem__)
    owners = [dataset_ids[i] for i in listed]
    ends = [*compress(count(1), map(ne, owners, islice(owners, 1, None)))] + ([len(listed)]
                                                                               if listed else [])
    parts["blockset"] = array("i", listed).tobytes()
    parts["blockset_datasets"] = array("q", (owners[end - 1] for end in ends)).tobytes()
    parts["blockset_ends"] = array("q", ends).tobytes()
    return parts


class _Chain:
    """The ends and length of a chain, as a DatasetReplica holds them (for `_links`)."""

    __slots__ = ("head", "tail", "length")

    def __init__(self):
        self.head = self.tail = NO_ROW
        self.length = 0


def _replica_parts(columns: dict, block_alive, datasets: list, files: dict) -> dict:
    """BlockReplicaTable.dump's parts, from its copy (in a thread): the live rows sorted
    by (block, site) with the blocks renumbered as BlockTable's parts number them, the
    lists `_links` makes of them, and the file ids of the incomplete ones."""
    renumbered = array("i", accumulate(block_alive, initial=-1))[1:]  # old block row -> new
    block = array("i", map(renumbered.__getitem__, columns["block"]))
    keys = array("q", map(or_, map(lshift, block, repeat(32)), columns["site"]))
    order = sorted(compress(range(len(block)), columns["alive"]), key=keys.__getitem__)
    parts = {"block": array("i", map(block.__getitem__, order))}
    for name in _REPLICA_PARTS[1:6]:
        parts[name] = array(columns[name].typecode, map(columns[name].__getitem__, order))
    first = array("i", [NO_ROW]) * block_alive.count(1)
    owners = defaultdict(_Chain)
    parts["next_in_block"], parts["next_in_owner"], parts["prev_in_owner"] = _links(
        parts["block"], parts["site"], _live_dataset_ids(datasets, block_alive), first, owners)
    parts["first_replica"] = first
    keyed = sorted(owners.items())
    parts["owner_keys"] = array("q", (key for key, _ in keyed))
    parts["owner_heads"] = array("i", (chain_.head for _, chain_ in keyed))
    parts["owner_tails"] = array("i", (chain_.tail for _, chain_ in keyed))
    parts["owner_lengths"] = array("q", (chain_.length for _, chain_ in keyed))
    new_row = dict(zip(order, count())) if files else {}
    incomplete = sorted((new_row[row], ids) for row, ids in files.items() if row in new_row)
    parts["files_rows"] = array("i", (row for row, _ in incomplete))
    parts["files_ends"] = array("q", accumulate(len(ids) for _, ids in incomplete))
    parts["files_ids"] = array("q", chain.from_iterable(ids for _, ids in incomplete))
    return {name: part.tobytes() for name, part in parts.items()}


def owner_key(dataset_id: int, site_id: int) -> int:
    """The key of a dataset replica in `BlockReplicaTable.load`'s `owners`: one int (a
    tuple would take twice as long to hash)."""
    return dataset_id << 32 | site_id
