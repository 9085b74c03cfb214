"""`inventory.update(obj)` / `inventory.delete(obj)` as plain records.

An application changes its copy of the inventory through these calls; each
call becomes a record (op, kind, identity, fields) with names instead of
object links.  The same `apply_record` applies it to the application's copy
(so the script sees its own changes) and, when a read/write application ends
well, to the daemon's inventory, so both sides follow one set of rules.
"""

from ..errors import InvalidParams, InvalidValue, NotFound
from .changes import KEEP, ChangeSet
from .objects import Block, BlockReplica, Dataset, DatasetReplica, File, Group, Site, changed_fields


def _name(link):
    return link if isinstance(link, str) or link is None else link.name


def _block_names(block) -> tuple[str, str]:
    if isinstance(block, Block):
        return _name(block.dataset), block.name
    if isinstance(block, str) and "#" in block:
        dataset, name = block.split("#", 1)
        return dataset, name
    raise InvalidValue(f"a block is given as a Block or as 'dataset#block', not {block!r}",
                       field="block")


def _lfns(replica: BlockReplica):
    if replica.file_ids is None:
        return None
    if isinstance(replica.block, Block):
        by_id = {f.id: f.lfn for f in replica.block.files_by_lfn.values()}
        return [by_id.get(i, i) for i in replica.file_ids]
    return list(replica.file_ids)


def record(op: str, obj, site=None) -> dict:
    """The record of `inventory.<op>(obj)`: identity by names, the fields given."""
    fields = changed_fields(obj) if op == "update" else {}
    rec = {"op": op, "kind": getattr(obj, "kind", None)}
    if isinstance(obj, (Site, Group, Dataset)):
        rec["name"] = obj.name
    elif isinstance(obj, Block):
        rec["dataset"], rec["name"] = _name(obj.dataset), obj.name
    elif isinstance(obj, File):
        rec["name"] = obj.lfn
        rec["dataset"], rec["block"] = _block_names(obj.block)
        if site is not None:
            rec["site"] = _name(site)
    elif isinstance(obj, DatasetReplica):
        rec["dataset"], rec["site"] = _name(obj.dataset), _name(obj.site)
        if "group" in fields:
            fields["group"] = _name(fields["group"])
    elif isinstance(obj, BlockReplica):
        rec["dataset"], rec["block"] = _block_names(obj.block)
        rec["site"] = _name(obj.site)
        if "group" in fields:
            fields["group"] = _name(fields["group"])
        if "file_ids" in fields:
            del fields["file_ids"]
            rec["files"] = _lfns(obj)
    else:
        raise InvalidValue(f"not an inventory object: {obj!r}")
    rec["fields"] = fields
    return rec


_CLASSES = {cls.kind: cls for cls in (Site, Group, Dataset, Block, File, DatasetReplica,
                                       BlockReplica)}
# The fields a record may give, per kind (a replica's files come as `files`, by LFN).
_SETTABLE = {kind: frozenset(cls.FIELDS) - {"file_ids"} for kind, cls in _CLASSES.items()}


def apply_record(changes: ChangeSet, rec):
    """Apply one record to the inventory behind `changes`; returns the object.

    Records may come from an application's pipe, so they are checked like any
    request: a malformed one is an InvalidParams error, never a crash.  The
    record itself is left as it is (an application keeps it to send later).
    """
    if not isinstance(rec, dict) or not isinstance(fields := rec.get("fields", {}), dict):
        raise InvalidParams(f"an update record must be an object with a 'fields' object: {rec!r}")
    op, kind = rec.get("op"), rec.get("kind")
    settable = _SETTABLE.get(kind) if isinstance(kind, str) else None
    if op not in ("update", "delete") or settable is None:
        raise InvalidParams(f"unknown update {op!r} of kind {kind!r}")
    if not fields.keys() <= settable:
        raise InvalidParams(f"{kind} has no field {sorted(fields.keys() - settable)[0]!r}")
    try:
        return _apply(changes, op, kind, fields, rec)
    except KeyError as exc:
        raise InvalidParams(f"update record of a {kind} lacks {exc.args[0]!r}") from None


def _apply(changes, op, kind, fields, rec):
    inv = changes.inventory
    if op == "delete":
        target = _find(inv, kind, rec)
        getattr(changes, f"delete_{_METHOD[kind]}")(target)
        return None
    if kind == "blockreplica":  # first: the bulk of a write-back
        block, site = inv.block(rec["dataset"], rec["block"]), inv.site(rec["site"])
        owner = block.dataset.find_replica(site)
        if owner is None:
            raise NotFound(f"dataset {block.dataset.name} has no replica at {site.name}; "
                           f"update the dataset replica first", field="site")
        # files not given: a new replica is complete, an existing one keeps what it holds
        files = rec.get("files", KEEP)
        if files is not None and files is not KEEP and not isinstance(files, list):
            raise InvalidParams(f"a block replica's files are a list of LFNs, not {files!r}")
        return changes.block_replica(owner, block, _with_group(inv, fields), files)
    if kind == "site":
        return changes.site(rec["name"], fields)
    if kind == "group":
        return changes.group(rec["name"], fields)
    if kind == "dataset":
        return changes.dataset(rec["name"], fields)
    if kind == "block":
        return changes.block(inv.dataset(rec["dataset"]), rec["name"], fields)
    if kind == "file":
        block = inv.block(rec["dataset"], rec["block"])
        site = inv.site(rec["site"]) if rec.get("site") else None
        return changes.file(block, rec["name"], fields, site)
    if kind == "datasetreplica":
        fields = _with_group(inv, fields)
        return changes.dataset_replica(inv.dataset(rec["dataset"]), inv.site(rec["site"]), fields)


def _with_group(inv, fields: dict) -> dict:
    """`fields` with a group name resolved to the Group (a new dict: the record stays)."""
    return {**fields, "group": inv.group(fields["group"])} if "group" in fields else fields


_METHOD = {"site": "site", "group": "group", "dataset": "dataset", "block": "block",
           "file": "file", "datasetreplica": "dataset_replica", "blockreplica": "block_replica"}


def _find(inv, kind, rec):
    if kind == "site":
        return inv.site(rec["name"])
    if kind == "group":
        return inv.group(rec["name"])
    if kind == "dataset":
        return inv.dataset(rec["name"])
    if kind == "block":
        return inv.block(rec["dataset"], rec["name"])
    if kind == "file":
        return inv.file(rec["name"])
    if kind in ("datasetreplica", "blockreplica"):
        site = inv.site(rec["site"])
        holder = inv.dataset(rec["dataset"]) if kind == "datasetreplica" else \
            inv.block(rec["dataset"], rec["block"])
        replica = holder.find_replica(site)
        if replica is None:
            raise NotFound(f"no replica of {rec['dataset']} at {site.name}")
        return replica
