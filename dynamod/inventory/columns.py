"""Blocks, block replicas and dataset replicas as columns: one array per field, one
row per object.

A grid holds millions of blocks and replicas.  As Python objects they cost
hundreds of bytes each, and an application forked from the daemon that merely
reads them copies their pages (reading an object writes its reference count).
Here each field is an `array` (a link is a row of the other table: a block's
dataset is its row in the DatasetTable, datasets.py), block names are slices of
one UTF-8 buffer, and `Block`, `BlockReplica` and `DatasetReplica` (objects.py)
are views `(table, row)` made on access: reading a column writes nothing.

Rows are appended in id order (ids only grow), so the id column is sorted (the
start-up finds a replica's block by its id there) and the rows' order is
creation order.  Links are rows:
- a block's replicas: a list through `next_in_block` from the block's
  `first_replica` (a block has a few replicas; new ones go last);
- a dataset replica's block replicas: a doubly linked chain through
  `next_in_owner` and `prev_in_owner`, from its row's `head` to its `tail` in
  the DatasetReplicaTable (it may hold thousands, and one leaves in O(1)); new
  ones go last;
- a dataset's blocks: a run of their rows sorted by name in the DatasetTable's
  `block_rows` (a BlockSet, objects.py, reads it);
- a dataset's replicas: a list through `next_in_dataset` from its row's
  `first_replica` in the DatasetTable; a site's: a doubly linked chain through
  `next_at_site` and `prev_at_site` from its SiteReplicas' `head` to its `tail`.
Sites and groups are kept by id (`BlockReplicaTable.sites`, `.groups`, which the
DatasetReplicaTable shares; 0 is the null group); they are registered when
created and stay after a deletion, so that a dead row can still be read.

Every change is a table operation that returns its inverse, which the ChangeSet
keeps as its undo and runs strictly newest first.  A deleted row is marked dead
(`alive` 0) and left where it is, still readable (the change log names what a
change deleted after the fact; a dead row's dataset is a row of the DatasetTable,
dead or alive) and never reused; undoing a creation removes the row, then the
last one.  A restart drops them (a load from rows, or from the snapshot, holds the
live rows only: `dump` and `restore` below and in datasets.py, snapshot.py).
Compacting the dead rows away while serving (when the daemon is idle) is not done
yet: it will have to renumber the rows in every column, list and chain, and in the
views the file cache holds.
"""

from array import array
from bisect import bisect_left, bisect_right
from functools import partial
from itertools import accumulate, chain, compress, count, islice, repeat
from operator import add, itemgetter, lshift, lt, ne, not_, or_
from types import SimpleNamespace

import orjson

from ..errors import InvalidValue
from .fields import MAX_COUNT
from .objects import (NO_MEMBERS, NO_ROW, Block, BlockReplica, BlockSet, Dataset, DatasetReplica,
                      Members, ReplicaChain)

_new_view = tuple.__new__
_TOTALS = frozenset(("size", "num_files"))   # block fields its dataset sums (datasets.py)
# Rows turned into columns at a time at start-up: as many as the store's reader
# fetches (store/reader.py).  Larger batches of rows, once freed, leave their memory
# scattered between the small buffers made meanwhile (measured at medium scale: 167
# resident bytes per object with 65,536, 122 with 4,096, as with 1,024).
BATCH = 4096


def _encoded(name: str) -> bytes:
    return name.encode("utf-8", "surrogatepass")


def batches(rows):
    """The rows (any iterable) as lists of at most BATCH."""
    rows = iter(rows)
    while batch := list(islice(rows, BATCH)):
        yield batch


class Names:
    """The names of a table's rows: slices of one UTF-8 buffer."""

    __slots__ = ("names", "offsets")

    def __init__(self):
        self.names = bytearray()        # every name, UTF-8, one after the other
        self.offsets = array("q", [0])  # row r's name is names[offsets[r]:offsets[r + 1]]

    def raw_name(self, row) -> bytearray:
        return self.names[self.offsets[row]:self.offsets[row + 1]]

    def name_at(self, row) -> str:
        offsets = self.offsets
        return self.names[offsets[row]:offsets[row + 1]].decode("utf-8", "surrogatepass")

    def names_at(self, rows) -> list[str]:
        """`name_at` of each row."""
        names, offsets = self.names, self.offsets
        return [names[offsets[row]:offsets[row + 1]].decode("utf-8", "surrogatepass")
                for row in rows]

    def append_name(self, name: str):
        self.names += _encoded(name)
        self.offsets.append(len(self.names))

    def extend_names(self, names) -> list:
        """Append the names (an iterable of str); returns them encoded."""
        encoded = list(map(str.encode, names))
        self.names += b"".join(encoded)
        self.offsets.extend(islice(accumulate(map(len, encoded), initial=self.offsets[-1]),
                                   1, None))
        return encoded

    def truncate_names(self, row):
        """Remove the names from row `row` on."""
        del self.names[self.offsets[row]:]
        del self.offsets[row + 1:]

    def dump_names(self) -> tuple:
        """A copy of the names (for `live_names`, in a snapshot's thread)."""
        return bytes(self.names), self.offsets[:]

    def restore_names(self, parts: dict, n: int):
        """The names of `n` rows, from the parts `live_names` made."""
        self.names, self.offsets = bytearray(parts["names"]), column("q", parts["offsets"])
        require(len(self.offsets) == n + 1 and self.offsets[0] == 0
                and self.offsets[-1] == len(self.names), "names that do not fit their rows")


class BlockTable(Names):
    """Every block of the inventory, one row each."""

    __slots__ = ("id", "dataset", "size", "num_files", "is_open", "last_update", "alive",
                 "first_replica", "cache", "datasets", "replicas")
    COLUMNS = ("id", "dataset", "size", "num_files", "is_open", "last_update", "alive",
               "first_replica")

    def __init__(self, datasets, cache=None):
        super().__init__()
        self.id, self.size, self.num_files, self.last_update = (array("q") for _ in range(4))
        self.is_open, self.alive = array("b"), array("b")
        self.first_replica = array("i")
        self.dataset = array("i")     # the row of each one's dataset in the DatasetTable
        self.cache = cache            # the inventory's FileCache, which loads files
        self.datasets = datasets      # the DatasetTable
        datasets.blocks = self
        self.replicas = None          # the BlockReplicaTable (it sets itself here)

    def __len__(self):
        return len(self.id)

    def __repr__(self):
        return f"<BlockTable: {self.alive.count(1)} blocks in {len(self)} rows>"

    # ------------------------------------------------------------ reading
    def dataset_at(self, row) -> Dataset:
        return _new_view(Dataset, (self.datasets, self.dataset[row]))

    def exists(self, row) -> bool:
        """Whether `row` holds a block (not deleted, not undone)."""
        return row < len(self.alive) and self.alive[row] != 0

    def is_set(self, name) -> bool:
        return True   # every field of a stored block has its value

    def full_name_at(self, row) -> str:
        """'dataset#block', the block's full name, in one decoding."""
        datasets, offsets, dataset = self.datasets, self.offsets, self.dataset[row]
        full = (datasets.names[datasets.offsets[dataset]:datasets.offsets[dataset + 1]] + b"#"
                + self.names[offsets[row]:offsets[row + 1]])
        return full.decode("utf-8", "surrogatepass")

    def values_at(self, row) -> tuple:
        """See Block.values."""
        offsets = self.offsets
        return (self.id[row], _new_view(Dataset, (self.datasets, self.dataset[row])),
                self.names[offsets[row]:offsets[row + 1]].decode("utf-8", "surrogatepass"),
                self.size[row], self.num_files[row], self.is_open[row] != 0,
                self.last_update[row])

    def facts(self, rows) -> list:
        """(name, id, size, num_files, is_open, last_update) of the blocks at `rows`: what
        a dataset's answer shows of them (a Block.values per block made a Dataset view
        each, and its name read again)."""
        names, offsets = self.names, self.offsets
        ids, size, num_files, is_open, last_update = (self.id, self.size, self.num_files,
                                                      self.is_open, self.last_update)
        return [(names[offsets[row]:offsets[row + 1]].decode("utf-8", "surrogatepass"),
                 ids[row], size[row], num_files[row], is_open[row] != 0, last_update[row])
                for row in rows]   # a tuple a row: a third less time than a map a column

    def replica_facts(self, rows, names) -> dict:
        """{site id: [(block name, group, is_custodial, size, last_update, complete), ...]}
        of the replicas of the blocks at `rows` (named `names`), in that order: what a
        dataset's answer shows of each of its replicas' block replicas, read by walking
        each block's few replicas (the chain of each dataset replica, then a sort by
        block name, took half as long again)."""
        replicas, found = self.replicas, {}
        first, after, site, files = (self.first_replica, replicas.next_in_block,
                                     replicas.site, replicas.files)
        group, custodial, size, last_update, groups = (
            replicas.group, replicas.is_custodial, replicas.size, replicas.last_update,
            replicas.groups)
        for name, row in zip(names, rows):
            at = first[row]
            while at != NO_ROW:
                facts = (name, groups[group[at]], custodial[at] != 0, size[at],
                         last_update[at], at not in files)
                held = found.get(site[at])
                if held is None:
                    found[site[at]] = [facts]
                else:
                    held.append(facts)
                at = after[at]
        return found

    def replicas_of(self, row) -> Members:
        """The replicas of the block at `row`."""
        replicas, found = self.replicas, []
        row, after = self.first_replica[row], replicas.next_in_block
        while row != NO_ROW:
            found.append(_new_view(BlockReplica, (replicas, row)))
            row = after[row]
        return Members(found) if found else NO_MEMBERS

    # ----------------------------------------------------------- changing
    def grow(self, rows: list, sizes: list, counts: list):
        """Add `sizes` and `counts` to the size and num_files of the live blocks at `rows`
        (distinct), and to their datasets' sums, a column at a time: as `store` of each
        would, without a call per block (an injection's new blocks get their files
        together).  Returns the undo, or None, having changed nothing, when a value
        would pass MAX_COUNT (the caller then sets them one by one, which says where)."""
        of = list(map(self.dataset.__getitem__, rows))
        planned = []
        for name, added in (("size", sizes), ("num_files", counts)):
            column, totals, by_dataset = getattr(self, name), getattr(self.datasets, name), {}
            for dataset, amount in zip(of, added):
                by_dataset[dataset] = by_dataset.get(dataset, 0) + amount
            old, old_totals = list(map(column.__getitem__, rows)), [
                totals[dataset] for dataset in by_dataset]
            new = list(map(add, old, added))
            new_totals = list(map(add, old_totals, by_dataset.values()))
            if max(new) > MAX_COUNT or max(new_totals) > MAX_COUNT:
                return None
            planned.append((column, old, new, totals, list(by_dataset), old_totals,
                            new_totals))
        for column, _, new, totals, datasets, _, new_totals in planned:
            list(map(column.__setitem__, rows, new))
            list(map(totals.__setitem__, datasets, new_totals))

        def undo():
            for column, old, _, totals, datasets, old_totals, _ in planned:
                list(map(column.__setitem__, rows, old))
                list(map(totals.__setitem__, datasets, old_totals))
        return undo

    def store(self, name, row, value):
        values = getattr(self, name)
        if name in _TOTALS and self.alive[row]:   # its dataset's sum moves with it
            self.datasets.add_to_total(name, self.dataset[row], value - values[row])
        values[row] = value

    def add(self, block_id, dataset, name, size, num_files, is_open, last_update):
        """A new block (checked values) in `dataset`: (its view, the undo)."""
        row = len(self.id)
        for column, value in zip((self.id, self.dataset, self.size, self.num_files,
                                  self.is_open, self.last_update, self.alive,
                                  self.first_replica),
                                 (block_id, dataset[1], size, num_files, is_open, last_update,
                                  1, NO_ROW)):
            column.append(value)
        self.append_name(name)
        unlist = dataset.blocks.insert(row)

        def undo():
            unlist()
            for column in self.COLUMNS:
                del getattr(self, column)[row:]
            self.truncate_names(row)
        return _new_view(Block, (self, row)), undo

    def add_many(self, first_id, dataset, names: list, is_open: list, last_update: list):
        """New blocks (checked values, names sorted and not in the dataset yet) of
        `dataset`, empty, their ids from `first_id` on, appended column by column and
        listed in the dataset at once: (their rows, the one undo)."""
        first, n = len(self.id), len(names)
        rows = range(first, first + n)
        self.id.extend(range(first_id, first_id + n))
        self.dataset.extend(repeat(dataset[1], n))
        self.size.extend(repeat(0, n))
        self.num_files.extend(repeat(0, n))
        self.is_open.extend(is_open)
        self.last_update.extend(last_update)
        self.alive.extend(repeat(1, n))
        self.first_replica.extend(repeat(NO_ROW, n))
        self.extend_names(names)
        blocks = BlockSet(self, dataset[1])
        if not len(blocks):
            unlist = [self.datasets.place_new_blocks(dataset[1], rows)]
        else:
            unlist = list(map(blocks.insert, rows))

        def undo():
            for step in reversed(unlist):
                step()
            for column in self.COLUMNS:
                del getattr(self, column)[first:]
            self.truncate_names(first)
        return rows, undo

    def delete(self, block: Block):
        """The block leaves its dataset (its replicas are gone already); returns the undo.
        The dead row still names its dataset's row."""
        row = block[1]
        relist = self.dataset_at(row).blocks.remove(row)
        self.alive[row] = 0

        def undo():
            self.alive[row] = 1
            relist()
        return undo

    # ------------------------------------------------------------ loading
    def load(self, rows):
        """Append the store's block rows (id, dataset id, name, size, num_files, is_open,
        last_update), in id order, a batch at a time, column by column (the datasets
        are loaded); each block goes into its dataset's blocks."""
        for batch in batches(rows):
            first = len(self.id)
            for j, column in ((0, self.id), (3, self.size), (4, self.num_files),
                              (5, self.is_open), (6, self.last_update)):
                column.extend(map(itemgetter(j), batch))
            self.alive.extend(repeat(1, len(batch)))
            self.first_replica.extend(repeat(NO_ROW, len(batch)))
            owners = rows_of(self.datasets.id, list(map(itemgetter(1), batch)))
            self.dataset.extend(owners)
            encoded = self.extend_names(map(itemgetter(2), batch))
            self._list(owners, encoded, first)

    def _list(self, owners: list, encoded: list, first: int):
        """Put the batch's rows into their datasets' blocks, sorted by name: a run of rows
        of one dataset (`owners`: their rows) is sorted in C and appended, or merged
        when the dataset already has blocks (those of an earlier batch, or run)."""
        start = 0
        for end in compress(count(1), map(ne, owners, islice(owners, 1, None))):
            self._list_run(owners[start], encoded, first, start, end)
            start = end
        if start < len(owners):
            self._list_run(owners[start], encoded, first, start, len(owners))

    def _list_run(self, dataset: int, encoded, first, start, end):
        order = sorted(range(start, end), key=encoded.__getitem__)
        if not self.datasets.block_room[dataset]:
            self.datasets.place_blocks(dataset, map(first.__add__, order))
        else:
            blocks = BlockSet(self, dataset)
            for i in order:
                blocks.insert(first + i)

    # ----------------------------------------------------------- snapshot
    # (inventory/snapshot.py) `dump` copies the columns on the event loop (memcpy) and
    # returns a function that makes the parts from the copy in another thread: the
    # live rows in the order a load from rows gives them (renumbered, as every
    # table's parts number them), with the lists it would build, so that `restore`
    # makes exactly the table `load` makes.  Tables are restored in the order of
    # inventory.COLUMN_TABLES, each after those it refers to.
    def dump(self):
        return partial(_block_parts, copy_columns(self, _BLOCK_PARTS + ("alive",)),
                       *self.dump_names(), self.datasets.alive[:])

    def restore(self, parts: dict):
        """Fill the empty table from `dump`'s parts (the DatasetTable is restored, and
        its runs of block rows are checked here)."""
        n = restore_columns(self, _BLOCK_PARTS, parts, "block")
        self.restore_names(parts, n)
        require(within(self.dataset, len(self.datasets)) and within(self.datasets.block_rows, n),
                "blocks of unknown datasets, or datasets of unknown blocks")
        self.alive = array("b", [1]) * n
        self.first_replica = array("i", [NO_ROW]) * n


class BlockReplicaTable:
    """Every block replica of the inventory, one row each."""

    __slots__ = ("blocks", "block", "site", "group", "is_custodial", "size", "last_update",
                 "alive", "next_in_block", "next_in_owner", "prev_in_owner", "files",
                 "sites", "groups", "owners")
    COLUMNS = ("block", "site", "group", "is_custodial", "size", "last_update", "alive",
               "next_in_block", "next_in_owner", "prev_in_owner")

    def __init__(self, blocks: BlockTable, sites: dict, groups: dict):
        self.blocks = blocks
        blocks.replicas = self
        # the block's row, the site's and group's ids (group 0: the null group), ...; and
        # row -> the file ids of an incomplete replica (an array)
        self._clear_loaded()
        self.alive = array("b")
        self.next_in_block = array("i")
        self.next_in_owner, self.prev_in_owner = array("i"), array("i")
        self.sites = sites    # id -> Site
        self.groups = groups  # id -> Group
        self.owners = None    # the DatasetReplicaTable (it sets itself here)

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

    def at_site(self, block_row, site_id):
        """The replica of the block at `block_row` at the site with this id, or None."""
        row, after, sites = self.blocks.first_replica[block_row], self.next_in_block, self.site
        while row != NO_ROW:
            if sites[row] == site_id:
                return _new_view(BlockReplica, (self, row))
            row = after[row]
        return None

    def label_at(self, row) -> str:
        """`site:dataset#block`, as the change log names the replica."""
        blocks, block = self.blocks, self.block[row]
        return (f"{self.sites[self.site[row]].name}:"
                f"{blocks.datasets.name_at(blocks.dataset[block])}#{blocks.name_at(block)}")

    def key_at(self, row) -> tuple:
        """The replica's key in the store: (block id, site id)."""
        return self.blocks.id[self.block[row]], self.site[row]

    def keys_at(self, rows) -> list:
        """`key_at` of each row, read column by column."""
        return list(zip(map(self.blocks.id.__getitem__, map(self.block.__getitem__, rows)),
                        map(self.site.__getitem__, rows)))

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

    def of_group(self, group_id: int) -> list:
        """The block replicas the group `group_id` owns (`owned`)."""
        return owned(self, BlockReplica, group_id)

    def chain(self, owner: int):
        """The block replicas of the dataset replica at row `owner`, in creation order."""
        row, after = self.owners.head[owner], self.next_in_owner
        while row != NO_ROW:
            yield _new_view(BlockReplica, (self, row))
            row = after[row]

    def chain_facts(self, owner: int) -> list:
        """(block name, group, is_custodial, size, last_update, complete) of each block
        replica of the dataset replica at row `owner`, in creation order: what a listing
        shows of them, read column by column (a view and a Block per replica cost twice
        as much)."""
        rows, row, after = [], self.owners.head[owner], self.next_in_owner
        while row != NO_ROW:
            rows.append(row)
            row = after[row]
        return list(zip(map(self.blocks.name_at, map(self.block.__getitem__, rows)),
                        map(self.groups.__getitem__, map(self.group.__getitem__, rows)),
                        map(bool, map(self.is_custodial.__getitem__, rows)),
                        map(self.size.__getitem__, rows), map(self.last_update.__getitem__, rows),
                        map(not_, map(self.files.__contains__, rows))))

    def in_chain(self, row, owner: int) -> bool:
        owners = self.owners
        return (row < len(self.alive) and self.alive[row] != 0
                and self.site[row] == owners.site[owner]
                and self.blocks.dataset[self.block[row]] == owners.dataset[owner])

    def usage_facts(self, row) -> tuple:
        """What the usage (partitions.py) reads of a replica, in one call: its site, its
        group, its dataset, custodial, complete, its size and its block's size."""
        block = self.block[row]
        return (self.sites[self.site[row]], self.groups[self.group[row]],
                self.blocks.dataset_at(block), self.is_custodial[row] != 0,
                row not in self.files, self.size[row], self.blocks.size[block])

    # ----------------------------------------------------------- changing
    def store(self, name, row, value):
        getattr(self, name)[row] = value

    def set_group(self, row, group):
        self.group[row] = _group_id(self.groups, group, "a block replica")

    def set_file_ids(self, row, file_ids):
        if file_ids is None:
            self.files.pop(row, None)
            return
        try:
            self.files[row] = array("q", file_ids)
        except (TypeError, OverflowError):
            raise InvalidValue(f"a block replica's file_ids are the ids of its files (None: "
                               f"all), not {file_ids!r}", field="file_ids") from None

    def add(self, owner: DatasetReplica, block: Block, site, group, is_custodial, size,
            last_update, file_ids):
        """A new replica (checked values) of `block`, in the chain of `owner` (the
        dataset replica at that site): (its view, the undo)."""
        row, block_row, owner = len(self.block), block[1], owner[1]
        for column, value in zip(
                (self.block, self.site, self.group, self.is_custodial, self.size,
                 self.last_update, self.alive, self.next_in_block, self.next_in_owner,
                 self.prev_in_owner),
                (block_row, site.id, _group_id(self.groups, group, "a block replica"),
                 is_custodial, size, last_update, 1, NO_ROW, NO_ROW, self.owners.tail[owner])):
            column.append(value)
        self.set_file_ids(row, file_ids)
        self._append_to_block(row, block_row)
        self._point(owner, self.owners.tail[owner], NO_ROW, row, row)
        self.owners.length[owner] += 1
        replica = _new_view(BlockReplica, (self, row))

        def undo():
            self._unlink(row, owner)
            for name in self.COLUMNS:
                del getattr(self, name)[row:]
            self.files.pop(row, None)
        return replica, undo

    def add_many(self, owners: list, counts: list, block_rows: list, group_ids: list,
                 is_custodial: list, last_update: list, sizes: list, files: dict):
        """New replicas (checked values; blocks of their owner's dataset without a replica
        at its site), appended column by column: `counts[i]` of them (at least one) at the
        end of the chain of the dataset replica at row `owners[i]`, in that order.  Returns
        (their rows, the one undo).  `files`: {i: file ids} of the incomplete ones."""
        first, n = len(self.block), len(block_rows)
        rows = range(first, first + n)
        self.block.extend(block_rows)
        self.site.extend(repeated(map(self.owners.site.__getitem__, owners), counts))
        self.group.extend(group_ids)
        self.is_custodial.extend(is_custodial)
        self.size.extend(sizes)
        for i, ids in files.items():
            self.files[first + i] = array("q", ids)
        self.last_update.extend(last_update)
        self.alive.extend(repeat(1, n))
        self.next_in_block.extend(repeat(NO_ROW, n))
        start = first
        for owner, k in zip(owners, counts):   # each owner's run ends its chain
            run, tail = range(start, start + k), self.owners.tail[owner]
            self.next_in_owner.extend(run[1:])
            self.next_in_owner.append(NO_ROW)
            self.prev_in_owner.append(tail)
            self.prev_in_owner.extend(run[:-1])
            self._point(owner, tail, NO_ROW, start, run[-1])
            self.owners.length[owner] += k
            start += k
        for row, block_row in zip(rows, block_rows):
            self._append_to_block(row, block_row)

        def undo():   # newest first, as the replicas were added one by one
            for row, owner in zip(reversed(rows), reversed(repeated(owners, counts))):
                self._unlink(row, owner)
            for name in self.COLUMNS:
                del getattr(self, name)[first:]
            for i in files:
                self.files.pop(first + i, None)
        return rows, undo

    def _append_to_block(self, row, block_row):
        """The new replica at `row` goes last in the list of its block's replicas."""
        first, after = self.blocks.first_replica, self.next_in_block
        if first[block_row] == NO_ROW:
            first[block_row] = row
        else:
            last = first[block_row]
            while after[last] != NO_ROW:
                last = after[last]
            after[last] = row

    def delete(self, replica: BlockReplica, owner: DatasetReplica):
        """The replica leaves its block and `owner`'s chain; returns the undo (which puts
        it back where it was: undos run newest first, so its neighbours are as the
        deletion left them)."""
        row, owner = replica[1], owner[1]
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
        self.owners.length[owner] -= 1
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
        self.owners.length[owner] += 1
        self.alive[row] = 1

    def _point(self, owner, previous, following, forward, backward):
        """In the chain of the dataset replica at row `owner`, `previous` (NO_ROW: the
        head) now leads to `forward`, and `following` (NO_ROW: the tail) back to
        `backward`."""
        _point(self.owners.head, self.owners.tail, self.next_in_owner, self.prev_in_owner,
               owner, previous, following, forward, backward)

    # ------------------------------------------------------------ loading
    def load(self, rows):
        """Fill the empty table with the store's block replica rows (block id, site id,
        group id, custodial, size, last_update, file ids as JSON or NULL), in key order
        (block, site), a batch at a time, column by column; then link them (the dataset
        replicas are loaded)."""
        _read_rows(self, self.blocks.id, rows)
        self.alive = array("b", [1]) * len(self.block)
        self._link_loaded()

    @staticmethod
    def read_rows(block_ids: array, rows) -> dict:
        """The columns `load` makes of the store's block replica rows, numbering their
        blocks by `block_ids` (the blocks' ids in key order), as bytes, with those ids:
        what the process of replicaload.py sends to `load_columns`."""
        columns = SimpleNamespace(files={}, **{name: array(typecode)
                                               for name, typecode in _LOADED.items()})
        _read_rows(columns, block_ids, rows)
        parts = {name: getattr(columns, name) for name in _LOADED}
        parts.update(_file_parts(sorted(columns.files.items())))
        parts["block_ids"] = block_ids
        return as_bytes(parts)

    def load_columns(self, parts: dict):
        """`load` from the columns of `read_rows` (made of the rows of blocks numbered as
        this table's are): checked as a snapshot's parts are first (SnapshotError, the
        table left empty), then linked."""
        try:
            n = restore_columns(self, tuple(_LOADED), parts, "block replica")
            _require_known(self)
            self.files = _restored_files(parts, n)
            try:
                owners = list(self._owners_loaded())
            except KeyError as exc:   # a replica of no dataset replica
                raise SnapshotError(exc.args[0]) from None
        except BaseException:
            self._clear_loaded()
            raise
        self.alive = array("b", [1]) * n
        self._link_loaded(owners)

    def _clear_loaded(self):
        """The columns and files `load` fills, empty."""
        for name, typecode in _LOADED.items():
            setattr(self, name, array(typecode))
        self.files = {}

    def _link_loaded(self, owners=None):
        """The lists of freshly loaded rows (`_links`), given their owners or finding
        them."""
        self.next_in_block, self.next_in_owner, self.prev_in_owner = _links(
            self.block, self._owners_loaded() if owners is None else owners,
            self.blocks.first_replica, self.owners.head, self.owners.tail,
            self.owners.length)

    def _owners_loaded(self):
        """The owner of each loaded row: the replica of its block's dataset at its site
        (a dataset has a few)."""
        owners = self.owners
        first_owner, next_owner, owner_site = (owners.datasets.first_replica,
                                               owners.next_in_dataset, owners.site)
        datasets = map(self.blocks.dataset.__getitem__, self.block)
        for row, (dataset, site) in enumerate(zip(datasets, self.site)):
            owner = first_owner[dataset]
            while owner != NO_ROW and owner_site[owner] != site:
                owner = next_owner[owner]
            if owner == NO_ROW:
                raise KeyError(f"block replica of block id {self.blocks.id[self.block[row]]} "
                               f"at site id {site}: no dataset replica there")
            yield owner

    # ----------------------------------------------------------- snapshot
    # As BlockTable's: the live rows in key order (block, site), their lists, the
    # ends and lengths of the dataset replicas' chains, the file ids of incomplete
    # replicas.
    def dump(self):
        blocks, owners = self.blocks, self.owners
        return partial(_replica_parts, copy_columns(self, _REPLICA_PARTS[:6] + ("alive",)),
                       copy_columns(blocks, ("dataset", "alive")), blocks.datasets.alive[:],
                       copy_columns(owners, _OWNER_PARTS + ("alive",)), dict(self.files))

    def restore(self, parts: dict):
        """Fill the empty table from `dump`'s parts (every other table is restored): it
        also sets the blocks' first replicas and the dataset replicas' chains."""
        n = restore_columns(self, _REPLICA_PARTS, parts, "block replica")
        blocks, owners = self.blocks, self.owners
        first = column("i", parts["first_replica"])
        ends = [column("i", parts[f"owner_{name}"]) for name in ("head", "tail", "length")]
        require(len(first) == len(blocks) and all(len(end) == len(owners) for end in ends),
                "block replica lists of unequal lengths")
        _require_known(self)
        blocks.first_replica = first
        owners.head, owners.tail, owners.length = ends
        self.alive = array("b", [1]) * n
        self.files = _restored_files(parts, n)


def _links(block, owners, first, heads, tails, lengths) -> tuple:
    """The lists of block replica rows in key order (block, site), each row's owner (a
    row of the DatasetReplicaTable) given by `owners`: returns (next_in_block,
    next_in_owner, prev_in_owner); `first` (by block row) gets each block's first
    replica, `heads`, `tails` and `lengths` (by owner) the ends and length of each
    chain.  A block's replicas are consecutive rows: each row's next in its block is
    the following row, except at the end of a block's run.  Each dataset replica's
    chain takes its rows in order."""
    n = len(block)
    after = array("i", range(1, n + 1))
    for row in compress(range(n), map(ne, block, chain((NO_ROW,), block))):
        first[block[row]] = row
        after[row - 1] = NO_ROW   # the end of the previous run (row 0: of the last)
    next_in_owner, prev_in_owner = array("i", [NO_ROW]) * n, array("i", [NO_ROW]) * n
    for row, owner in enumerate(owners):
        tail = tails[owner]
        if tail == NO_ROW:
            heads[owner] = row
        else:
            next_in_owner[tail] = row
            prev_in_owner[row] = tail
        tails[owner] = row
        lengths[owner] += 1
    return after, next_in_owner, prev_in_owner


class DatasetReplicaTable:
    """Every dataset replica of the inventory, one row each.  Besides its fields, a row
    holds the ends of its chain of block replicas (`head`, `tail`, `length`: the
    BlockReplicaTable keeps them) and its links: the next replica of its dataset (from
    the dataset's `first_replica` in the DatasetTable; a dataset has a few) and its
    neighbours at its site (a doubly linked chain from the site's SiteReplicas `head`
    to its `tail`: a site holds thousands, and one leaves in O(1))."""

    __slots__ = ("replicas", "datasets", "dataset", "site", "group", "growing", "alive", "head",
                 "tail", "length", "next_in_dataset", "next_at_site", "prev_at_site", "sites",
                 "groups")
    COLUMNS = ("dataset", "site", "group", "growing", "alive", "head", "tail", "length",
               "next_in_dataset", "next_at_site", "prev_at_site")

    def __init__(self, replicas: BlockReplicaTable):
        self.replicas = replicas
        replicas.owners = self
        self.datasets = replicas.blocks.datasets
        self.datasets.replicas = self
        self.dataset = array("i")   # the row of each one's dataset in the DatasetTable
        self.site, self.group = array("I"), array("I")   # ids, as the block replicas'
        self.growing, self.alive = array("b"), array("b")
        self.head, self.tail, self.length = array("i"), array("i"), array("i")
        self.next_in_dataset, self.next_at_site, self.prev_at_site = (array("i") for _ in range(3))
        self.sites, self.groups = replicas.sites, replicas.groups

    def __len__(self):
        return len(self.site)

    def __repr__(self):
        return (f"<DatasetReplicaTable: {self.alive.count(1)} dataset replicas in "
                f"{len(self)} rows>")

    # ------------------------------------------------------------ reading
    def is_set(self, name) -> bool:
        return True

    def dataset_at(self, row) -> Dataset:
        return _new_view(Dataset, (self.datasets, self.dataset[row]))

    def site_at(self, row):
        return self.sites[self.site[row]]

    def group_at(self, row):
        return self.groups[self.group[row]]

    def site_chain(self, row):
        """The SiteReplicas whose chain holds `row` (None: a dead or undone row)."""
        if row < len(self.alive) and self.alive[row] != 0:
            return self.sites[self.site[row]].dataset_replicas
        return None

    def values_at(self, row) -> tuple:
        """See DatasetReplica.values."""
        return (_new_view(Dataset, (self.datasets, self.dataset[row])),
                self.sites[self.site[row]], self.growing[row] != 0, self.groups[self.group[row]])

    def block_replicas_of(self, row) -> ReplicaChain:
        return ReplicaChain(self.replicas, row)

    def of_dataset(self, row) -> Members:
        """The dataset replicas listed from `row` (a dataset's `first_replica`)."""
        found, after = [], self.next_in_dataset
        while row != NO_ROW:
            found.append(_new_view(DatasetReplica, (self, row)))
            row = after[row]
        return Members(found) if found else NO_MEMBERS

    def at_site(self, chain):
        """The dataset replicas of a site's SiteReplicas, in creation order."""
        row, after = chain.head, self.next_at_site
        while row != NO_ROW:
            yield _new_view(DatasetReplica, (self, row))
            row = after[row]

    def views(self):
        """Every (live) dataset replica."""
        return map(_new_view, repeat(DatasetReplica),
                   zip(repeat(self), compress(count(), self.alive)))

    def of_group(self, group_id: int) -> list:
        """The dataset replicas the group `group_id` owns (`owned`)."""
        return owned(self, DatasetReplica, group_id)

    # ----------------------------------------------------------- changing
    def store(self, name, row, value):
        getattr(self, name)[row] = value

    def set_group(self, row, group):
        self.group[row] = _group_id(self.groups, group, "a dataset replica")

    def add(self, dataset, site, growing, group):
        """A new replica (checked values) of `dataset` at `site`, last of both: (its view,
        the undo)."""
        row, chain, dataset = len(self.site), site.dataset_replicas, dataset[1]
        for column, value in zip(
                (self.dataset, self.site, self.group, self.growing, self.alive, self.head,
                 self.tail, self.length, self.next_in_dataset, self.next_at_site,
                 self.prev_at_site),
                (dataset, site.id, _group_id(self.groups, group, "a dataset replica"), growing,
                 1, NO_ROW, NO_ROW, 0, NO_ROW, NO_ROW, chain.tail)):
            column.append(value)
        self._relist(dataset, row, self._last_of(dataset))
        chain.table = self
        self._relink(chain, row)

        def undo():
            self._unlist(dataset, row)
            self._unlink(chain, row)
            for name in self.COLUMNS:
                del getattr(self, name)[row:]
        return _new_view(DatasetReplica, (self, row)), undo

    def delete(self, replica: DatasetReplica):
        """The replica (its block replicas gone already) leaves its dataset and its site;
        returns the undo."""
        row = replica[1]
        dataset, chain = self.dataset[row], self.sites[self.site[row]].dataset_replicas
        before = self._unlist(dataset, row)
        self._unlink(chain, row)
        self.alive[row] = 0

        def undo():
            self.alive[row] = 1
            self._relist(dataset, row, before)
            self._relink(chain, row)
        return undo

    # `dataset`: a dataset's row in the DatasetTable
    def _last_of(self, dataset) -> int:
        row, after = self.datasets.first_replica[dataset], self.next_in_dataset
        if row != NO_ROW:
            while after[row] != NO_ROW:
                row = after[row]
        return row

    def _unlist(self, dataset, row) -> int:
        """Take the row out of its dataset's list; returns the row before it (NO_ROW: it
        was the first)."""
        after, first = self.next_in_dataset, self.datasets.first_replica
        if first[dataset] == row:
            first[dataset] = after[row]
            return NO_ROW
        before = first[dataset]
        while after[before] != row:
            before = after[before]
        after[before] = after[row]
        return before

    def _relist(self, dataset, row, before):
        """Put the row back into its dataset's list after `before` (NO_ROW: first)."""
        after, first = self.next_in_dataset, self.datasets.first_replica
        if before == NO_ROW:
            after[row] = first[dataset]
            first[dataset] = row
        else:
            after[row] = after[before]
            after[before] = row

    def _unlink(self, chain, row):
        """Take the row out of its site's chain (its own links stay)."""
        previous, following = self.prev_at_site[row], self.next_at_site[row]
        self._point(chain, previous, following, following, previous)
        chain.length -= 1

    def _relink(self, chain, row):
        """Put the row back into its site's chain between its own links."""
        self._point(chain, self.prev_at_site[row], self.next_at_site[row], row, row)
        chain.length += 1

    def _point(self, chain, previous, following, forward, backward):
        """In a site's chain, `previous` (NO_ROW: the head) now leads to `forward`, and
        `following` (NO_ROW: the tail) back to `backward`."""
        if previous == NO_ROW:
            chain.head = forward
        else:
            self.next_at_site[previous] = forward
        if following == NO_ROW:
            chain.tail = backward
        else:
            self.prev_at_site[following] = backward

    # ------------------------------------------------------------ loading
    def load(self, rows):
        """Fill the empty table with the store's dataset replica rows (dataset id, site
        id, growing, group id), in key order, a batch at a time, column by column (the
        datasets are loaded); then list them."""
        for batch in batches(rows):
            n = len(batch)
            self.dataset.extend(rows_of(self.datasets.id, list(map(itemgetter(0), batch))))
            self.site.extend(map(itemgetter(1), batch))
            self.growing.extend(map(itemgetter(2), batch))
            groups = list(map(itemgetter(3), batch))
            self.group.extend(map({None: 0}.get, groups, groups))   # NULL: the null group
            self.alive.extend(repeat(1, n))
            self.length.extend(repeat(0, n))
            for column in (self.head, self.tail, self.next_in_dataset, self.next_at_site,
                           self.prev_at_site):
                column.extend(repeat(NO_ROW, n))
        self._list_loaded()

    def _list_loaded(self):
        """The lists of freshly loaded rows: a dataset's rows are consecutive (key order),
        each leads to the next; each site's chain takes its rows in order."""
        after, first, sites = self.next_in_dataset, self.datasets.first_replica, self.sites
        previous = NO_ROW
        for row, (owner, site_id) in enumerate(zip(self.dataset, self.site)):
            if owner == previous:
                after[row - 1] = row
            else:
                first[owner] = row
                previous = owner
            chain = sites[site_id].dataset_replicas
            chain.table = self
            self.prev_at_site[row] = chain.tail
            self._relink(chain, row)

    # ----------------------------------------------------------- snapshot
    # As BlockTable's: the live rows in key order (dataset, site); `restore` lists
    # them as `load` does (a few per dataset: their chains come with the block
    # replicas).
    def dump(self):
        return partial(_dataset_replica_parts, copy_columns(self, _OWNER_PARTS + ("alive",)),
                       self.datasets.alive[:])

    def restore(self, parts: dict):
        """Fill the empty table from `dump`'s parts (the DatasetTable is restored)."""
        n = restore_columns(self, _OWNER_PARTS, parts, "dataset replica")
        require(within(self.dataset, len(self.datasets)) and _known(self),
                "dataset replicas of unknown datasets, at unknown sites or of unknown groups")
        keys = _keys(self.dataset, self.site)
        require(all(map(lt, keys, islice(keys, 1, None))), "dataset replicas out of key order")
        self.alive = array("b", [1]) * n
        self.length = array("i", [0]) * n
        for name in ("head", "tail", "next_in_dataset", "next_at_site", "prev_at_site"):
            setattr(self, name, array("i", [NO_ROW]) * n)
        self._list_loaded()


def owned(table, cls, group_id: int) -> list:
    """Views (`cls`) of the live rows of a replicas' table whose group is `group_id`, in
    row order: the group column scanned in C (array.index), not a view made per row
    (deleting a group walked every replica of the inventory, 0.2 s at medium scale)."""
    found, groups, alive, at = [], table.group, table.alive, -1
    while True:
        try:
            at = groups.index(group_id, at + 1)
        except ValueError:
            return found
        if alive[at]:
            found.append(_new_view(cls, (table, at)))


def repeated(values, counts: list) -> list:
    """Each value as many times in a row as its count: a value per member of runs."""
    return list(chain.from_iterable(map(repeat, values, counts)))


def rows_of(ids: array, keys: list) -> list:
    """The rows of `keys` in the sorted column `ids` (ids only grow): a dict of the keys'
    span of the column, one look-up each (a bisection of the whole column each took 4x
    longer)."""
    if not keys:
        return []
    low, high = bisect_left(ids, min(keys)), bisect_right(ids, max(keys))
    return list(map(dict(zip(ids[low:high], count(low))).__getitem__, keys))


def _group_id(groups: dict, group, owner: str) -> int:
    """The id of `group` (a replica's), which must be a Group of the inventory
    (`groups`, by id)."""
    if groups.get(getattr(group, "id", None)) is not group:
        raise InvalidValue(f"{owner}'s group is a Group of the inventory, not {group!r}",
                           field="group")
    return group.id


def _point(heads, tails, after, before, owner, previous, following, forward, backward):
    """In the chain of `owner` (its ends in `heads` and `tails`, its links in `after`
    and `before`), `previous` (NO_ROW: the head) now leads to `forward`, and `following`
    (NO_ROW: the tail) back to `backward`."""
    if previous == NO_ROW:
        heads[owner] = forward
    else:
        after[previous] = forward
    if following == NO_ROW:
        tails[owner] = backward
    else:
        before[following] = backward


# ------------------------------------------------------------------ snapshot
# The parts of each table that are its columns, taken as they are (arrays).
_BLOCK_PARTS = ("id", "dataset", "size", "num_files", "is_open", "last_update")
_OWNER_PARTS = ("dataset", "site", "group", "growing")
_REPLICA_PARTS = ("block", "site", "group", "is_custodial", "size", "last_update",
                  "next_in_block", "next_in_owner", "prev_in_owner")
# The columns of a block replica that its row gives (`load`), and their types.
_LOADED = {"block": "i", "site": "I", "group": "I", "is_custodial": "b", "size": "q",
           "last_update": "q"}


class SnapshotError(ValueError):
    """A snapshot's parts that do not make a sound table."""


def require(condition, what: str):
    if not condition:
        raise SnapshotError(what)


def column(typecode: str, data: bytes) -> array:
    found = array(typecode)
    found.frombytes(data)
    return found


def within(values, n: int) -> bool:
    """Whether every value (a row) is in [0, n).  A scan of 300,000 rows takes some
    8 ms: the links, which every other part and its CRC vouch for, are not scanned."""
    return not values or (min(values) >= 0 and max(values) < n)


def copy_columns(table, names) -> dict:
    return {name: getattr(table, name)[:] for name in names}


def restore_columns(table, names, parts: dict, what: str) -> int:
    """Set the table's columns `names` from the parts (each keeps its typecode); returns
    their length, which must be the same for all."""
    for name in names:
        setattr(table, name, column(getattr(table, name).typecode, parts[name]))
    n = len(getattr(table, names[0]))
    require(all(len(getattr(table, name)) == n for name in names),
            f"{what} columns of unequal lengths")
    return n


def as_bytes(parts: dict) -> dict:
    return {name: part if isinstance(part, bytes) else part.tobytes()
            for name, part in parts.items()}


def kept(values: array, alive) -> array:
    """The values of the live rows."""
    return array(values.typecode, compress(values, alive))


def renumbering(alive) -> array:
    """Each live row's row once the dead ones are dropped (by old row)."""
    return array("i", accumulate(alive, initial=-1))[1:]


def live_names(names: bytes, offsets: array, alive) -> dict:
    """The parts `names` and `offsets` of the live rows (Names.restore_names)."""
    encoded = [names[offsets[row]:offsets[row + 1]] for row in compress(count(), alive)]
    return {"names": b"".join(encoded),
            "offsets": array("q", accumulate(map(len, encoded), initial=0))}


def taken(values: array, order) -> array:
    """The values at the rows `order`, in that order."""
    return array(values.typecode, map(values.__getitem__, order))


def _keys(datasets, sites) -> array:
    """The keys (dataset or block row << 32 | site id) of rows, in C."""
    return array("q", map(or_, map(lshift, datasets, repeat(32)), sites))


def _require_known(table):
    """That the block replica table's rows are of its blocks, at sites and of groups of
    the inventory."""
    require(within(table.block, len(table.blocks)) and _known(table),
            "block replicas of unknown blocks, at unknown sites or of unknown groups")


def _known(table) -> bool:
    """Whether the table's rows are at sites and of groups of the inventory."""
    return set(table.site) <= table.sites.keys() and set(table.group) <= table.groups.keys()


def _block_parts(columns: dict, names: bytes, offsets: array, dataset_alive) -> dict:
    """BlockTable.dump's parts, from its copy (in a thread): the live rows, their
    datasets renumbered, and their names."""
    alive = columns.pop("alive")
    parts = {name: kept(values, alive) for name, values in columns.items()}
    parts["dataset"] = taken(renumbering(dataset_alive), parts["dataset"])
    parts.update(live_names(names, offsets, alive))
    return as_bytes(parts)


def _owner_order(columns: dict, dataset_alive) -> tuple:
    """The live dataset replicas (rows of the copy `columns`) in key order (dataset,
    site), and the column of their datasets renumbered."""
    dataset = taken(renumbering(dataset_alive), columns["dataset"])
    keys = _keys(dataset, columns["site"])
    return sorted(compress(range(len(keys)), columns["alive"]), key=keys.__getitem__), dataset


def _dataset_replica_parts(columns: dict, dataset_alive) -> dict:
    """DatasetReplicaTable.dump's parts, from its copy (in a thread)."""
    order, dataset = _owner_order(columns, dataset_alive)
    parts = {name: taken(columns[name], order) for name in _OWNER_PARTS[1:]}
    parts["dataset"] = taken(dataset, order)
    return as_bytes(parts)


def _replica_parts(columns: dict, blocks: dict, dataset_alive, owners: dict,
                   files: dict) -> dict:
    """BlockReplicaTable.dump's parts, from its copy and those of the columns of the
    other tables it refers to (in a thread): the live rows sorted by (block, site),
    the lists `_links` makes of them with the chains' ends by (restored) dataset
    replica, and the file ids of the incomplete ones."""
    block = taken(renumbering(blocks["alive"]), columns["block"])
    keys = _keys(block, columns["site"])
    order = sorted(compress(range(len(block)), columns["alive"]), key=keys.__getitem__)
    parts = {name: taken(columns[name], order) for name in _REPLICA_PARTS[1:6]}
    parts["block"] = taken(block, order)
    owner_order, owner_dataset = _owner_order(owners, dataset_alive)
    owner_row = dict(zip(_keys(taken(owner_dataset, owner_order),
                               taken(owners["site"], owner_order)), count()))
    block_dataset = taken(renumbering(dataset_alive), kept(blocks["dataset"], blocks["alive"]))
    row_owners = map(owner_row.__getitem__,
                     _keys(taken(block_dataset, parts["block"]), parts["site"]))
    n = len(owner_order)
    first = array("i", [NO_ROW]) * len(block_dataset)
    ends = array("i", [NO_ROW]) * n, array("i", [NO_ROW]) * n, array("i", [0]) * n
    parts["next_in_block"], parts["next_in_owner"], parts["prev_in_owner"] = _links(
        parts["block"], row_owners, first, *ends)
    parts["first_replica"] = first
    parts["owner_head"], parts["owner_tail"], parts["owner_length"] = ends
    new_row = dict(zip(order, count())) if files else {}
    parts.update(_file_parts(sorted((new_row[row], ids) for row, ids in files.items()
                                    if row in new_row)))
    return as_bytes(parts)


def _file_parts(incomplete: list) -> dict:
    """The parts that hold the file ids of incomplete block replicas, (row, ids) each in
    row order."""
    return {"files_rows": array("i", (row for row, _ in incomplete)),
            "files_ends": array("q", accumulate(len(ids) for _, ids in incomplete)),
            "files_ids": array("q", chain.from_iterable(ids for _, ids in incomplete))}


def _restored_files(parts: dict, n: int) -> dict:
    """{row: file ids} of `_file_parts`' parts, of a table of `n` rows."""
    files, ids, start = {}, column("q", parts["files_ids"]), 0
    for row, end in zip(column("i", parts["files_rows"]), column("q", parts["files_ends"])):
        require(0 <= row < n, "file ids of a block replica outside the table")
        files[row] = ids[start:end]
        start = end
    return files


def _read_rows(table, block_ids: array, rows):
    """Append block replica rows (block id, site id, group id, custodial, size,
    last_update, file ids as JSON or NULL), in key order, to the `_LOADED` columns and
    the `files` of `table`, a batch at a time, column by column; each block numbered
    by its place in `block_ids`."""
    for batch in batches(rows):
        first = len(table.block)
        table.block.extend(rows_of(block_ids, list(map(itemgetter(0), batch))))
        table.site.extend(map(itemgetter(1), batch))
        groups = list(map(itemgetter(2), batch))
        table.group.extend(map({None: 0}.get, groups, groups))   # NULL: the null group
        for j, values in ((3, table.is_custodial), (4, table.size), (5, table.last_update)):
            values.extend(map(itemgetter(j), batch))
        for i, files in enumerate(map(itemgetter(6), batch), first):
            if files is not None:
                table.files[i] = array("q", orjson.loads(files))
