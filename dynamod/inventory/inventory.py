"""The in-memory inventory: sites and groups by name; datasets (datasets.py), blocks,
block replicas and dataset replicas in tables of columns (columns.py), datasets also
by name; files through a cache.

How many objects of each kind it holds is kept as changes apply and undo
(`totals`), so that `status` answers at once however large the inventory.
"""

from itertools import compress

from ..errors import InvalidValue, NotFound
from ..store.tables import ID_KINDS
from .columns import BlockReplicaTable, BlockTable, DatasetReplicaTable
from .datasets import DatasetNames, DatasetTable
from .filecache import FileCache
from .partitions import CURRENT, Usage
from .objects import NO_ROW, Block, Dataset, File, Group, Site

KINDS = ("site", "group", "dataset", "block", "file", "datasetreplica", "blockreplica")
PLURAL = {kind: kind + "s" for kind in KINDS}
# The tables of columns by kind, each after those it refers to (the order a snapshot
# restores them in), and the Inventory's attribute that holds each.
COLUMN_TABLES = {"dataset": "dataset_table", "block": "blocks",
                 "datasetreplica": "dataset_replicas", "blockreplica": "block_replicas"}


class Inventory:
    def __init__(self):
        self.sites = {}
        self.groups = {None: Group.null_group}  # the one null group
        self.file_cache = FileCache(self)
        # sites and groups by id, for the replicas' columns
        tables = _tables(self.file_cache, {}, {0: Group.null_group})
        self.datasets = DatasetNames(tables["dataset"])   # a Mapping, by name
        self._put(tables)
        self.next_ids = dict.fromkeys(ID_KINDS, 1)
        self.totals = dict.fromkeys(KINDS, 0)  # kind -> objects held (ChangeSet keeps it)
        # Objects a ChangeSet created, changed or deleted, and its undos, counted: memory
        # is as it was while both stand (what query answers are kept for).
        self.applied = self.undone = 0
        self.usage = Usage()  # partitions, quotas, usage per (site, partition)
        CURRENT.usage = self.usage  # what `site.partitions` reads (the daemon has one)

    def __repr__(self):
        return (f"<Inventory: {len(self.sites)} sites, {len(self.groups) - 1} groups, "
                f"{len(self.datasets)} datasets, {self.counts()['files']} files>")

    # ------------------------------------------------------------ lookups
    def site(self, name) -> Site:
        return _named(self.sites, name, "site")

    def group(self, name) -> Group:
        """A group by name; None (or absent) is the null group."""
        return _named(self.groups, name, "group", none_too=True)

    def dataset(self, name) -> Dataset:
        return _named(self.datasets, name, "dataset")

    def block(self, dataset_name, block_name=None) -> Block:
        """A block by dataset and name, or by its full name `dataset#block`."""
        if block_name is None:
            if not isinstance(dataset_name, str) or "#" not in dataset_name:
                raise InvalidValue(f"invalid block name {dataset_name!r}: "
                                   f"expected dataset#block", field="block")
            dataset_name, block_name = dataset_name.split("#", 1)
        block = self.dataset(dataset_name).find_block(block_name)
        if block is None:
            raise NotFound(f"unknown block {block_name!r} of dataset {dataset_name}",
                           field="block")
        return block

    def file(self, lfn) -> File:
        found = self.file_cache.find(lfn)
        if found is None:
            raise NotFound(f"unknown file {lfn!r}", field="lfn")
        return found

    def counts(self) -> dict:
        """The number of objects of each kind, by plural name (what `status` shows)."""
        return {PLURAL[kind]: n for kind, n in self.totals.items()}

    def recount(self) -> dict:
        """`counts()` counted again, the replicas' and blocks' from their columns (a pass
        in C): the loader's, and the consistency check's."""
        blocks = self.blocks
        return {"sites": len(self.sites), "groups": len(self.groups) - 1,
                "datasets": self.dataset_table.alive.count(1), "blocks": blocks.alive.count(1),
                "files": sum(compress(blocks.num_files, blocks.alive)),
                "datasetreplicas": self.dataset_replicas.alive.count(1),
                "blockreplicas": self.block_replicas.alive.count(1)}

    # --------------------------------------------------------- compaction
    def column_tables(self) -> dict:
        """{kind: table} of the tables of columns (COLUMN_TABLES)."""
        return {kind: getattr(self, name) for kind, name in COLUMN_TABLES.items()}

    def _put(self, tables: dict):
        for kind, name in COLUMN_TABLES.items():
            setattr(self, name, tables[kind])
        self.datasets.table = tables["dataset"]

    def rows(self) -> int:
        """The rows of the column tables, deleted objects' included."""
        return sum(map(len, self.column_tables().values()))

    def dead_rows(self) -> int:
        """Rows of deleted objects in the column tables (holes until a compaction)."""
        return self.rows() - sum(self.totals[kind] for kind in COLUMN_TABLES)

    def compact(self, restore) -> int:
        """Put column tables without holes in place of these; `restore(tables)` fills the
        empty ones ({kind: table}, in COLUMN_TABLES' order) with this very inventory's
        live rows.  Returns the rows dropped.

        The old tables are left as they were, so that a view still held somewhere reads
        what it read; only the sites' chains of dataset replicas are rewired (and put
        back if the new tables cannot be made, or do not hold what the old ones do).
        Files are cached by block id, query answers as bytes, names as strings; only
        the files kept as objects name their block's view, and are given the new one.
        """
        chains = [site.dataset_replicas for site in self.sites.values()]
        kept = [(c.table, c.head, c.tail, c.length) for c in chains]
        old = self.column_tables()
        new = _tables(self.file_cache, self.block_replicas.sites, self.block_replicas.groups)
        try:
            for chain in chains:
                chain.table, chain.head, chain.tail, chain.length = None, NO_ROW, NO_ROW, 0
            restore(new)
            self._put(new)
            if self.recount() != self.counts():
                raise ValueError(f"the new tables count {self.recount()}, "
                                 f"the old ones {self.counts()}")
        except BaseException:
            self._put(old)
            for chain, (table, head, tail, length) in zip(chains, kept):
                chain.table, chain.head, chain.tail, chain.length = table, head, tail, length
            raise
        self.file_cache.rebind(lambda block: self.block(block.dataset.name, block.name))
        return sum(map(len, old.values())) - self.rows()

    # ------------------------------------------------------- consistency
    def problems(self) -> list[str]:
        """Every broken consistency rule (empty when the inventory is sound)."""
        found = []
        if self.counts() != self.recount():
            found.append(f"kept counts {self.counts()} differ from the objects' "
                         f"{self.recount()}")
        for dataset in self.datasets.values():
            for block in dataset.blocks:
                files = block.files_by_lfn.values()
                if block.size != sum(f.size for f in files) or block.num_files != len(files):
                    found.append(f"block {block.full_name()}: size/num_files differ from its files")
                ids = {f.id for f in files}
                for replica in block.replicas:
                    owner = dataset.find_replica(replica.site)
                    if owner is None or replica not in owner.block_replicas:
                        found.append(f"replica of {block.full_name()} at {replica.site.name} "
                                     f"is outside a dataset replica")
                    if replica.group.name is not None and replica.group.name not in self.groups:
                        found.append(f"replica of {block.full_name()} has a deleted group")
                    present = ids if replica.file_ids is None else set(replica.file_ids)
                    if not present <= ids:
                        found.append(f"replica of {block.full_name()} lists unknown files")
                    size = sum(f.size for f in files if f.id in present)
                    if replica.size != size:
                        found.append(f"replica of {block.full_name()} at {replica.site.name}: "
                                     f"size {replica.size} but its files make {size}")
            for replica in dataset.replicas:
                if replica.site.name not in self.sites:
                    found.append(f"replica of {dataset.name} at a deleted site")
                if replica not in replica.site.dataset_replicas or replica.dataset != dataset:
                    found.append(f"replica of {dataset.name} at {replica.site.name} is not "
                                 f"its site's and its dataset's")
                chain = list(replica.block_replicas)
                held = [r for b in dataset.blocks for r in b.replicas if r.site is replica.site]
                if len(chain) != len(replica.block_replicas) or set(chain) != set(held):
                    found.append(f"replica of {dataset.name} at {replica.site.name}: its "
                                 f"chain of block replicas differs from its blocks' replicas")
            table, rows = dataset.blocks.table, dataset.blocks.rows
            names = [table.name_at(row) for row in rows]
            if (names != sorted(set(names), key=_utf8)
                    or not all(table.exists(row) and table.dataset[row] == dataset[1]
                               for row in rows)):
                found.append(f"dataset {dataset.name}: its blocks are not its live rows by name")
            walked = (sum(b.size for b in dataset.blocks), sum(b.num_files for b in dataset.blocks),
                      len(list(dataset.blocks)))
            if dataset.totals() != walked:
                found.append(f"dataset {dataset.name}: totals (size, files, blocks) "
                             f"{dataset.totals()} kept, {walked} summed over its blocks")
        datasets = self.dataset_table
        live = list(datasets.live_rows())
        if (not len(datasets.index) == len(live) == datasets.live
                or any(datasets.find(datasets.name_at(row)) != row for row in live)
                or any(datasets.find(datasets.name_at(row)) == row
                       for row in range(len(datasets)) if not datasets.alive[row])):
            found.append("the datasets by name are not the live datasets")
        walked = {"blocks": sum(len(d.blocks) for d in self.datasets.values()),
                  "datasetreplicas": sum(len(d.replicas) for d in self.datasets.values()),
                  "sites' datasetreplicas": sum(1 for s in self.sites.values()
                                                for _ in s.dataset_replicas),
                  "blockreplicas": sum(len(b.replicas) for d in self.datasets.values()
                                       for b in d.blocks)}
        counted = self.counts()
        counted["sites' datasetreplicas"] = counted["datasetreplicas"]
        if walked != {kind: counted[kind] for kind in walked}:
            found.append(f"the tables count {counted}, a walk {walked}")
        return found


def _tables(cache, sites: dict, groups: dict) -> dict:
    """Empty column tables wired to each other, {kind: table} (COLUMN_TABLES); `sites`
    and `groups` by id."""
    datasets = DatasetTable()
    blocks = BlockTable(datasets, cache)
    replicas = BlockReplicaTable(blocks, sites, groups)
    return {"dataset": datasets, "block": blocks,
            "datasetreplica": DatasetReplicaTable(replicas), "blockreplica": replicas}


def _utf8(name: str) -> bytes:
    return name.encode("utf-8", "surrogatepass")


def _named(table: dict, name, what: str, none_too: bool = False):
    """The object a reference names; a name of the wrong type is said to be one."""
    if not (isinstance(name, str) or (none_too and name is None)):
        kind = "a string or null" if none_too else "a string"
        raise InvalidValue(f"a {what} is named by {kind}, not {name!r}", field=what)
    try:
        return table[name]
    except KeyError:
        raise NotFound(f"unknown {what} {name!r}", field=what, name=name) from None
