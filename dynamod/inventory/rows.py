"""Objects to store rows and back: what a ChangeSet writes, what start-up loads.

Rows are tuples in the column order of `store.tables`; the null group is
NULL; a complete block replica's file list is NULL, an incomplete one a JSON
list of file ids.
"""

from itertools import groupby
from operator import itemgetter

import orjson

from ..store.tables import INVENTORY_KINDS
from .changes import ChangeSet
from .columns import owner_key
from .inventory import PLURAL
from .partitions import Record
from .objects import (NO_MEMBERS, NO_ROW, Block, BlockReplica, BlockSet, Dataset,
                      DatasetReplica, File, Group, Members, Site)


def _group_id(group):
    return group.id or None


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


def change_rows(changes: ChangeSet) -> dict:
    """Snapshot a ChangeSet as {(kind, key): row or None}, taken before later changes."""
    return {key: None if obj is None else _ROWS[type(obj)](obj)
            for key, obj in changes.ops.items()}


def build(inventory, tables: dict, next_ids: dict):
    """Fill an empty inventory from the rows of `StoreReader.tables()`.

    Files stay in the store (the inventory's file cache loads them per block).
    The rows were checked on their way in, so datasets and dataset replicas are made
    without their constructors' checks (slots set directly), and blocks and block
    replicas go straight into their columns (columns.py), no object per row.
    """
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
    blocks.load(tables["block"], datasets)
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
    inventory.block_replicas.load(tables["blockreplica"], owners)
    for kind in inventory.next_ids:
        inventory.next_ids[kind] = next_ids.get(kind, 1)
    counted = inventory.recount()
    inventory.totals.update({kind: counted[PLURAL[kind]] for kind in inventory.totals})


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
