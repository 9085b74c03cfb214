"""Objects to store rows and back: what a ChangeSet writes, what start-up loads.

Rows are tuples in the column order of `store.tables`; the null group is
NULL; a complete block replica's file list is NULL, an incomplete one a JSON
list of file ids.  An object a ChangeSet updated is written as the columns
that changed only (a dict), so that a write-back of 100,000 times is 100,000
one-column UPDATEs.
"""

from itertools import groupby
from operator import attrgetter, itemgetter

import orjson

from ..store.tables import BY_KIND, INVENTORY_KINDS
from .changes import ChangeSet, store_key
from .columns import owner_key
from .inventory import PLURAL
from .partitions import Record
from .objects import (NO_MEMBERS, NO_ROW, Block, BlockReplica, BlockSet, Dataset,
                      DatasetReplica, File, Group, Members, Site)


def _group_id(group):
    return group.id or None


def _file_ids(r):
    ids = r.file_ids
    return None if ids is None else orjson.dumps(ids).decode()


def _block_row(b) -> tuple:
    id_, dataset, name, size, num_files, is_open, last_update = b.values()
    return id_, dataset.id, name, size, num_files, is_open, last_update


def _block_replica_row(r) -> tuple:
    block, site, group, is_custodial, size, last_update, ids = r.values()
    return (block.id, site.id, _group_id(group), is_custodial, size, last_update,
            None if ids is None else orjson.dumps(ids).decode())


def _file_row(f) -> tuple:
    fid, lfn, size, adler32, crc32, md5 = File.values(f)
    return (fid, f.block.id, lfn, size, adler32, crc32, md5)


# By class rather than through an isinstance chain: a write-back makes 100,000 rows.
_ROWS = {
    Site: lambda o: (o.id, o.name, o.host, o.storage_type, o.backend, o.status),
    Group: lambda o: (o.id, o.name, o.olevel),
    Dataset: lambda o: (o.id, o.name, o.status, o.data_type, o.software_version, o.last_update,
                        o.is_open),
    Block: _block_row,
    File: _file_row,
    DatasetReplica: lambda o: (o.dataset.id, o.site.id, o.growing, _group_id(o.group)),
    BlockReplica: _block_replica_row,
    Record: lambda o: o.row,   # a partition or a quota
}


def to_row(obj) -> tuple:
    try:
        row = _ROWS[type(obj)]
    except KeyError:
        raise TypeError(f"not an inventory object: {obj!r}") from None
    return row(obj)


# The columns of a field whose column has another name or form; any other field is
# the column of the same name.
_COLUMNS = {"group": ("group_id", lambda o: _group_id(o.group)),
            "file_ids": ("file_ids", _file_ids)}
_GETTERS = {}   # (class, field names...) -> ((column, getter), ...) in the table's order


def _getters(cls, names) -> tuple:
    columns = dict(_COLUMNS.get(n, (n, attrgetter(n))) for n in names)
    return tuple((c, columns[c]) for c in BY_KIND[cls.kind].columns if c in columns)


def change_rows(changes: ChangeSet) -> dict:
    """Snapshot a ChangeSet as {(kind, key): row}, taken before later changes: None for
    what it deleted, the columns that changed ({column: value}) for an object it
    updated, a full row for anything else (what it created, partitions and quotas).

    An object with updates in the journal existed before the ChangeSet (a ChangeSet
    journals no update of what it created), so its row is in the store, or in an
    earlier submission to the writer (see `Writer._merge`).
    """
    updated = {}   # (kind, key) -> {field: (old, new)} of what the journal says changed
    for how, obj, detail in changes.journal:
        if how == "updated" and type(obj) is not Record:
            key = store_key(obj)
            found = updated.get(key)
            updated[key] = detail if found is None else {**found, **detail}
    rows, changed, getters = {}, updated.get, _GETTERS.get
    for key, obj in changes.ops.items():
        if obj is None:
            rows[key] = None
            continue
        cls, names = type(obj), changed(key)
        if names is None or cls is Record:   # partitions and quotas: upserts
            rows[key] = _ROWS[cls](obj)
            continue
        shape = (cls, *names)
        columns = getters(shape) or _GETTERS.setdefault(shape, _getters(cls, names))
        rows[key] = {column: get(obj) for column, get in columns}
    return rows


def build(inventory, tables: dict, next_ids: dict, snapshot=None):
    """Fill an empty inventory from the rows of `StoreReader.tables()`; with `snapshot`
    (a function of the inventory and the objects loaded: see snapshot.py), the
    blocks and block replicas come from it instead of their rows.

    Files stay in the store (the inventory's file cache loads them per block).
    The rows were checked on their way in, so datasets and dataset replicas are made
    without their constructors' checks (slots set directly), and blocks and block
    replicas go straight into their columns (columns.py), no object per row.
    """
    objects = _objects(inventory, tables)
    if snapshot is None:
        inventory.blocks.load(tables["block"], objects["datasets"])
        inventory.block_replicas.load(tables["blockreplica"], objects["owners"])
    else:
        snapshot(inventory, objects)
    for kind in inventory.next_ids:
        inventory.next_ids[kind] = next_ids.get(kind, 1)
    counted = inventory.recount()
    inventory.totals.update({kind: counted[PLURAL[kind]] for kind in inventory.totals})


def _objects(inventory, tables: dict) -> dict:
    """Sites, groups, datasets and dataset replicas from their rows; returns the datasets
    by id and the dataset replicas by `owner_key` (what the column tables refer to)."""
    sites, groups, datasets = {}, inventory.block_replicas.groups, {}
    for row in tables["site"]:
        site = sites[row[0]] = Site(row[1], *row[2:6], id=row[0])
        inventory.sites[site.name] = site
    inventory.block_replicas.sites.update(sites)
    for gid, name, olevel in tables["group"]:
        group = groups[gid] = Group(name, olevel, id=gid)
        inventory.groups[name] = group
    blocks, by_name = inventory.blocks, inventory.datasets
    for did, name, status, data_type, version, last_update, is_open in tables["dataset"]:
        dataset = datasets[did] = by_name[name] = Dataset.__new__(Dataset)
        dataset._name, dataset._status, dataset._data_type = name, status, data_type
        dataset._software_version, dataset._last_update = version, last_update
        dataset._is_open, dataset.id = bool(is_open), did
        dataset.blocks, dataset.replicas = BlockSet(blocks), NO_MEMBERS
    # Rows come in key order, so the replicas of one dataset are consecutive: each
    # dataset gets its Members once its last replica is read.
    owners = {}   # owner_key(dataset id, site id) -> DatasetReplica, for the block replicas
    for dataset, found in _runs(tables["datasetreplica"], datasets):
        members = []
        for did, sid, growing, gid in found:
            replica = owners[owner_key(did, sid)] = DatasetReplica.__new__(DatasetReplica)
            replica.dataset, replica.site = dataset, sites[sid]
            replica._growing, replica._group = bool(growing), groups[gid or 0]
            replica.head = replica.tail = NO_ROW
            replica.length = 0
            members.append(replica)
            replica.site.dataset_replicas.add(replica)
        dataset.replicas = Members(members)
    return {"datasets": datasets, "owners": owners}


def _runs(rows, holders: dict):
    """(holder, its rows) for each run of consecutive rows with the same first column."""
    for key, found in groupby(rows, itemgetter(0)):
        yield holders[key], found


def all_rows(inventory) -> dict:
    """Every object of the inventory as {kind: sorted rows}: what the store should hold."""
    rows = {kind: [] for kind in INVENTORY_KINDS}
    for site in inventory.sites.values():
        rows["site"].append(to_row(site))
    for name, group in inventory.groups.items():
        if name is not None:
            rows["group"].append(to_row(group))
    for dataset in inventory.datasets.values():
        rows["dataset"].append(to_row(dataset))
        for block in dataset.blocks:
            rows["block"].append(to_row(block))
            rows["file"].extend(to_row(f) for f in block.files_by_lfn.values())
            rows["blockreplica"].extend(to_row(r) for r in block.replicas)
        rows["datasetreplica"].extend(to_row(r) for r in dataset.replicas)
    return {kind: sorted(found) for kind, found in rows.items()}
