"""Objects to store rows and back: what a ChangeSet writes, what start-up loads.

Rows are tuples in the column order of `store.tables`; the null group is
NULL; a complete block replica's file list is NULL, an incomplete one a JSON
list of file ids.
"""

import orjson

from ..store.tables import INVENTORY_KINDS
from .changes import ChangeSet
from .objects import Block, BlockReplica, BlockSet, Dataset, DatasetReplica, File, Group, Site


def _group_id(group):
    return group.id or None


def to_row(obj) -> tuple:
    if isinstance(obj, Site):
        return (obj.id, obj.name, obj.host, obj.storage_type, obj.backend, obj.status)
    if isinstance(obj, Group):
        return (obj.id, obj.name, obj.olevel)
    if isinstance(obj, Dataset):
        return (obj.id, obj.name, obj.status, obj.data_type, obj.software_version,
                obj.last_update, obj.is_open)
    if isinstance(obj, Block):
        return (obj.id, obj.dataset.id, obj.name, obj.size, obj.num_files, obj.is_open,
                obj.last_update)
    if isinstance(obj, File):
        return (obj.id, obj.block.id, obj.lfn, obj.size, obj.adler32, obj.crc32, obj.md5)
    if isinstance(obj, DatasetReplica):
        return (obj.dataset.id, obj.site.id, obj.growing, _group_id(obj.group))
    if isinstance(obj, BlockReplica):
        ids = None if obj.file_ids is None else orjson.dumps(obj.file_ids).decode()
        return (obj.block.id, obj.site.id, _group_id(obj.group), obj.is_custodial, obj.size,
                obj.last_update, ids)
    raise TypeError(f"not an inventory object: {obj!r}")


def change_rows(changes: ChangeSet) -> dict:
    """Snapshot a ChangeSet as {(kind, key): row or None}, taken before later changes."""
    return {key: None if obj is None else to_row(obj) for key, obj in changes.ops.items()}


def build(inventory, tables: dict, next_ids: dict):
    """Fill an empty inventory from the rows `Store.load` returned.

    Files stay in the store (the inventory's file cache loads them per block).
    The rows were checked on their way in, so datasets, blocks and replicas (the
    millions) are made without their constructors' checks: slots are set directly.
    """
    sites, groups, datasets, blocks = {}, {0: inventory.groups[None]}, {}, {}
    for row in tables["site"]:
        site = sites[row[0]] = Site(row[1], *row[2:6], id=row[0])
        inventory.sites[site.name] = site
    for gid, name, olevel in tables["group"]:
        group = groups[gid] = Group(name, olevel, id=gid)
        inventory.groups[name] = group
    cache, by_name = inventory.file_cache, inventory.datasets
    for did, name, status, data_type, version, last_update, is_open in tables["dataset"]:
        dataset = datasets[did] = by_name[name] = Dataset.__new__(Dataset)
        dataset._name, dataset._status, dataset._data_type = name, status, data_type
        dataset._software_version, dataset._last_update = version, last_update
        dataset._is_open, dataset.id = bool(is_open), did
        dataset.blocks, dataset.replicas = BlockSet(cache), set()
    for bid, did, name, size, num_files, is_open, last_update in tables["block"]:
        dataset = datasets[did]
        block = blocks[bid] = Block.__new__(Block)
        block._name, block.dataset, block._size, block._num_files = name, dataset, size, num_files
        block._is_open, block._last_update, block.id = bool(is_open), last_update, bid
        block._files, block.replicas = None, set()
        dataset.blocks.add(block)
    for did, sid, growing, gid in tables["datasetreplica"]:
        replica = DatasetReplica(datasets[did], sites[sid], bool(growing), groups[gid or 0])
        replica.dataset.replicas.add(replica)
        replica.site.dataset_replicas.add(replica)
    for bid, sid, gid, custodial, size, last_update, file_ids in tables["blockreplica"]:
        block, site = blocks[bid], sites[sid]
        replica = BlockReplica.__new__(BlockReplica)
        replica.block, replica.site, replica._group = block, site, groups[gid or 0]
        replica._is_custodial, replica._last_update = bool(custodial), last_update
        replica._size = block._size if size == block._size else size  # one int, not two
        replica._file_ids = None if file_ids is None else tuple(orjson.loads(file_ids))
        block.replicas.add(replica)
        block.dataset.find_replica(site).block_replicas.add(replica)
    for kind in inventory.next_ids:
        inventory.next_ids[kind] = next_ids.get(kind, 1)


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
