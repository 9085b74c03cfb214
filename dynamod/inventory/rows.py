"""Objects to store rows and back: what a ChangeSet writes, what start-up loads.

Rows are tuples in the column order of `store.tables`; the null group is
NULL; a complete block replica's file list is NULL, an incomplete one a JSON
list of file ids.  An object a ChangeSet updated is written as the columns
that changed only (a dict), so that a write-back of 100,000 times is 100,000
one-column UPDATEs; a run of one column it set in bulk, as the list of those
UPDATEs' parameters, its keys read from the table's columns (no object or dict
per row).
"""

from itertools import repeat
from operator import attrgetter

import orjson

from ..store.sqlite import COLUMNS
from ..store.tables import BY_KIND, INVENTORY_KINDS
from .changes import ChangeSet, store_key
from .inventory import PLURAL
from .partitions import Record
from .objects import Block, BlockReplica, Dataset, DatasetReplica, File, Group, Site


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


def _dataset_replica_row(r) -> tuple:
    dataset, site, growing, group = r.values()
    return dataset.id, site.id, growing, _group_id(group)


def _file_row(f) -> tuple:
    fid, lfn, size, adler32, crc32, md5 = File.values(f)
    return (fid, f.block.id, lfn, size, adler32, crc32, md5)


# By class rather than through an isinstance chain: a write-back makes 100,000 rows.
_ROWS = {
    Site: lambda o: (o.id, o.name, o.host, o.storage_type, o.backend, o.status),
    Group: lambda o: (o.id, o.name, o.olevel),
    Dataset: Dataset.values,
    Block: _block_row,
    File: _file_row,
    DatasetReplica: _dataset_replica_row,
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
    """The (column, getter) pairs of an update of these fields of `cls`, made once."""
    shape = (cls, *names)
    found = _GETTERS.get(shape)
    if found is None:
        columns = dict(_COLUMNS.get(n, (n, attrgetter(n))) for n in names)
        found = _GETTERS[shape] = tuple((c, columns[c]) for c in BY_KIND[cls.kind].columns
                                        if c in columns)
    return found


def _union(names: tuple, more) -> tuple:
    return tuple(dict.fromkeys((*names, *more)))


def change_rows(changes: ChangeSet) -> dict:
    """Snapshot a ChangeSet as {(kind, key): row}, taken before later changes: None for
    what it deleted, the columns that changed ({column: value}) for an object it
    updated, a full row for anything else (what it created, partitions and quotas),
    the list of rows of a block's new files (NEW_FILES), and the runs of a column it
    set in bulk (`ChangeSet.update_column`) as the rows of one UPDATE each (COLUMNS).

    An object with updates in the journal existed before the ChangeSet (a ChangeSet
    journals no update of what it created), so its row is in the store, or in an
    earlier submission to the writer (see `Writer._merge`).
    """
    rows = _object_rows(changes)
    for run in changes.columns:
        key = COLUMNS, (run.cls.kind, (run.name,))
        found = rows.get(key)   # an earlier run of the column, of other rows
        rows[key] = run.store_rows() if found is None else found + run.store_rows()
    return rows


def _object_rows(changes: ChangeSet) -> dict:
    """`change_rows` of the objects in the ChangeSet's `ops`."""
    updated = {}   # (kind, key) -> the fields the journal says changed
    for how, obj, detail in changes.journal:
        if how == "updated" and type(obj) is not Record:
            key = store_key(obj)
            found = updated.get(key)
            updated[key] = tuple(detail) if found is None else _union(found, detail)
        elif how == "updates" or how == "column" and obj.spilled:   # a run of them
            names = obj.names
            if updated:
                for key in obj.keys:
                    found = updated.get(key)
                    updated[key] = names if found is None else _union(found, names)
            else:
                updated = dict.fromkeys(obj.keys, names)
    rows = _run_rows(changes, updated)
    if rows is not None:
        return rows
    rows, changed = {}, updated.get
    # the class and field names of the last updated object (a run's are the same objects),
    # its columns' getters, and the column and its getter when it is one (most runs)
    cls = names = columns = one = get = None
    for key, obj in changes.ops.items():
        if changed(key) is names and type(obj) is cls:   # as the last one
            rows[key] = {one: get(obj)} if one else {c: g(obj) for c, g in columns}
            continue
        if obj is None or type(obj) is list:   # a delete, or NEW_FILES' rows
            rows[key] = obj
            continue
        if changed(key) is None or type(obj) is Record:   # partitions, quotas: upserts
            rows[key] = _ROWS[type(obj)](obj)
            continue
        cls, names = type(obj), changed(key)
        columns = _getters(cls, names)
        one, get = columns[0] if len(columns) == 1 else (None, None)
        rows[key] = {one: get(obj)} if one else {c: g(obj) for c, g in columns}
    return rows


def _run_rows(changes: ChangeSet, updated: dict) -> dict | None:
    """`change_rows` of a ChangeSet that is one run of updates of one field (a write-back's
    bulk: every object it wrote is one of the run's), made in passes of C over the run;
    None for any other."""
    journal, ops = changes.journal, changes.ops
    if len(journal) != 1 or journal[0][0] != "updates" or len(ops) != len(updated):
        return None
    run = journal[0][1]
    cls = type(run.objects[0])
    if len(run.names) != 1 or set(map(type, ops.values())) != {cls} or cls is Record:
        return None
    (column, get), = _getters(cls, run.names)
    return dict(zip(ops, map(dict.fromkeys, repeat((column,)), map(get, ops.values()))))


def build(inventory, tables: dict, next_ids: dict, snapshot=None, replicas=None):
    """Fill an empty inventory from the rows of `StoreReader.tables()`; with `snapshot`
    (a function of the inventory, its sites and groups loaded: see snapshot.py), the
    column tables come from it instead of their rows; with `replicas` (a ReplicaLoad
    started on the same store), the block replicas from its process when it can.

    Files stay in the store (the inventory's file cache loads them per block).
    The rows were checked on their way in: datasets, blocks and replicas go
    straight into their columns (datasets.py, columns.py), no object per row.
    """
    sites, groups = {}, inventory.block_replicas.groups
    for row in tables["site"]:
        site = sites[row[0]] = Site(row[1], *row[2:6], id=row[0])
        inventory.sites[site.name] = site
    inventory.block_replicas.sites.update(sites)
    for gid, name, olevel in tables["group"]:
        group = groups[gid] = Group(name, olevel, id=gid)
        inventory.groups[name] = group
    if snapshot is None:
        inventory.dataset_table.load(tables["dataset"])
        inventory.blocks.load(tables["block"])
        inventory.dataset_replicas.load(tables["datasetreplica"])
        if replicas is None or not replicas.fill(inventory.block_replicas):
            inventory.block_replicas.load(tables["blockreplica"])
    else:
        snapshot(inventory)
    for kind in inventory.next_ids:
        inventory.next_ids[kind] = next_ids.get(kind, 1)
    counted = inventory.recount()
    inventory.totals.update({kind: counted[PLURAL[kind]] for kind in inventory.totals})


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
