"""Injection and deletion documents: the JSON `dynamo-inject` sends.

A document is an object with any of the keys `site`, `group`, `dataset`,
`datasetreplica`, each a list of objects (datasets nest `blocks`, blocks nest
`files`, dataset replicas nest `blockreplicas`).  Whatever the JSON order, they
are applied in one order (see `inject`), so one document can describe
everything, as in the original's documentation.  Errors
carry the JSON path of the object (`dataset[0].blocks[1].files[3]`) and name
the object and field.
"""

import difflib
from itertools import groupby, repeat

from ..errors import Conflict, DynamoError, InvalidParams, InvalidValue, NotFound
from .changes import KEEP, ChangeSet
from .repeats import refuse_conflicting_repeats

SECTIONS = ("site", "group", "dataset", "datasetreplica")
TOP_KEYS = (*SECTIONS, "comment")  # a comment, of any value, is ignored (as the original did)

# key in the JSON -> field of the object (None: handled by the code below)
SITE_KEYS = {"name": None, "host": "host", "storage_type": "storage_type", "backend": "backend",
             "status": "status"}
GROUP_KEYS = {"name": None, "olevel": "olevel"}
DATASET_KEYS = {"name": None, "status": "status", "data_type": "data_type",
                "software_version": "software_version", "last_update": "last_update",
                "is_open": "is_open", "size": None, "num_files": None, "blocks": None}
BLOCK_KEYS = {"name": None, "size": "size", "num_files": "num_files", "is_open": "is_open",
              "last_update": "last_update", "files": None}
FILE_KEYS = {"name": None, "size": "size", "site": None, "adler32": "adler32", "crc32": "crc32",
             "md5": "md5"}
DATASET_REPLICA_KEYS = {"dataset": None, "site": None, "growing": "growing", "group": None,
                        "blockreplicas": None}
BLOCK_REPLICA_KEYS = {"block": None, "group": None, "is_custodial": "is_custodial",
                      "last_update": "last_update", "size": "size", "files": None,
                      "complete": None}


class located:
    """Name the object (and its JSON path) in any error raised inside.

    `what` names the object by kind and name; None (an object without a usable
    name) names it by its path instead.  (A class, not a generator: it wraps every
    block and block replica of a document.)
    """

    __slots__ = ("path", "what")

    def __init__(self, path: str, what: str | None):
        self.path, self.what = path, what

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, traceback):
        if isinstance(exc, DynamoError) and "path" not in exc.details:
            exc.details["path"] = self.path
            what = self.what or self.path
            if not exc.message.startswith((f"{what}:", f"{what} ")):
                exc.message = f"{what}: {exc.message}"
                exc.args = (exc.message,)
        return False


def _items(container: dict, key: str, path: str):
    """(path, item) for each element of the list `container[key]`, if present."""
    value = container.get(key)
    if value is None:
        return
    if not isinstance(value, list):
        raise InvalidParams(f"{path}{key} must be a list of objects", path=f"{path}{key}")
    for i, item in enumerate(value):
        yield f"{path}{key}[{i}]", item


def _label(item, key) -> str | None:
    """The object's name for messages, before it is checked (None if unusable)."""
    value = item.get(key) if isinstance(item, dict) else None
    return value if isinstance(value, str) and value else None


def _fields(item, keys: dict, *identity: str) -> dict:
    """Check the object's keys and return {field: value} of its plain fields."""
    if not isinstance(item, dict):
        raise InvalidParams(f"must be an object, not {type(item).__name__}")
    if not item.keys() <= keys.keys():
        unknown = sorted(set(item) - set(keys))[0]
        raise InvalidParams(_unknown("key", unknown, keys), field=unknown)
    for key in identity:
        if key not in item:
            raise InvalidParams(f"missing {key!r}", field=key)
    return {field: item[key] for key, field in keys.items() if field and key in item}


def _name(item, key, kind):
    value = item[key]
    if not isinstance(value, str) or not value:
        raise InvalidParams(f"{kind} {key} must be a non-empty string, not {value!r}", field=key)
    return value


def _replica_label(item) -> str | None:
    site, dataset = _label(item, "site"), _label(item, "dataset")
    return site and dataset and f"dataset replica {site}:{dataset}"


def inject(changes: ChangeSet, document):
    """Create or update everything the document describes.

    Whatever the order in the JSON: sites, groups, datasets and their blocks, dataset
    replicas, then the blocks' files (whose `site` may so name a dataset replica of the
    same document), then block replicas (which may list those files).  An object may
    be given more than once, but not with two values for one field (`repeats`).
    """
    _check_document(document)
    refuse_conflicting_repeats(document, located)
    for path, item in _items(document, "site", ""):
        with located(path, _label(item, "name") and f"site {item['name']}"):
            fields = _fields(item, SITE_KEYS, "name")
            changes.site(_name(item, "name", "site"), fields)
    for path, item in _items(document, "group", ""):
        with located(path, _label(item, "name") and f"group {item['name']}"):
            fields = _fields(item, GROUP_KEYS, "name")
            changes.group(_name(item, "name", "group"), fields)
    blocks = [*_datasets(changes, document)]
    replicas = [*_dataset_replicas(changes, document)]
    seen = {}  # LFN -> (block path, its files) where the document gives it first
    if not _new_files(changes, [entry for entry in blocks if entry[1].get("files")], seen):
        for bpath, bitem, block in blocks:
            _files(changes, bpath, bitem, block, seen)
    if not _all_new_block_replicas(changes, replicas):
        for path, item, replica in replicas:
            _block_replicas(changes, path, item, replica)
    changes.finish()


def _datasets(changes, document):
    """Create or update the datasets and their blocks: (path, item, Block) of each block."""
    for path, item in _items(document, "dataset", ""):
        what = _label(item, "name") and f"dataset {item['name']}"
        with located(path, what):
            fields = _fields(item, DATASET_KEYS, "name")
            name = _name(item, "name", "dataset")
            dataset = changes.dataset(name, fields)
            changes.expect_totals(dataset, _totals(item), lambda p=path, w=what: located(p, w))
        added = _new_blocks(changes, dataset, path, item.get("blocks"))
        if added is not None:
            yield from added
            continue
        for bpath, bitem in _items(item, "blocks", path + "."):
            what = _label(bitem, "name") and f"block {name}#{bitem['name']}"
            with located(bpath, what):
                bfields = _fields(bitem, BLOCK_KEYS, "name")
                block = changes.block(dataset, _name(bitem, "name", "block"), bfields,
                                      where=lambda p=bpath, w=what: located(p, w))
            yield bpath, bitem, block


def _plain(items, keys) -> bool:
    """Whether `items` is a non-empty list of objects with no other keys than `keys`."""
    return (type(items) is list and bool(items) and set(map(type, items)) == {dict}
            and set().union(*items) <= keys)


def _new_blocks(changes, dataset, path, items) -> list | None:
    """The blocks of a dataset created at once when they are all new and plain
    (`ChangeSet.new_blocks`): (path, item, Block) of each, or None."""
    if not _plain(items, BLOCK_KEYS.keys()):
        return None
    names = list(map(dict.get, items, repeat("name")))
    blocks = changes.new_blocks(
        dataset, names, *[list(map(dict.get, items, repeat(key)))
                          for key in ("is_open", "last_update", "size", "num_files")],
        where=lambda i: located(f"{path}.blocks[{i}]", f"block {dataset.name}#{names[i]}"))
    if blocks is None:
        return None
    return list(zip([f"{path}.blocks[{i}]" for i in range(len(items))], items, blocks))


def _totals(item) -> dict:
    return {total: item[total] for total in ("size", "num_files") if total in item}


def _new_files(changes, blocks, seen: dict) -> bool:
    """Add the files of these blocks (path, item, Block) at once when they are all new:
    the bulk of an injection, checked and added in one pass (`ChangeSet.new_files`)."""
    added = changes.new_files([(block, bitem.get("files"), _where(bpath, bitem.get("files")))
                               for bpath, bitem, block in blocks])
    if added is None:
        return False
    for (bpath, bitem, _), lfns in zip(blocks, added):
        # all new: none can be in `seen`, whose files the inventory knows by now
        seen.update(dict.fromkeys(lfns, (bpath, bitem.get("files"))))
    return True


def _where(bpath, items):
    return lambda i: located(f"{bpath}.files[{i}]", f"file {items[i]['name']}")


def _files(changes, bpath, bitem, block, seen: dict):
    """Add or update the block's files; an LFN given twice in the document is an error."""
    where = (bpath, bitem.get("files"))
    if _new_files(changes, [(bpath, bitem, block)], seen):
        return
    inv = changes.inventory
    for fpath, fitem in _items(bitem, "files", bpath + "."):
        with located(fpath, _label(fitem, "name") and f"file {fitem['name']}"):
            ffields = _fields(fitem, FILE_KEYS, "name")
            lfn = _name(fitem, "name", "file")
            if lfn in seen:
                raise InvalidParams(f"given twice in one document, at {_path_of(lfn, *seen[lfn])} "
                                    f"and at {fpath}", field="name")
            seen[lfn] = where
            site = inv.site(fitem["site"]) if "site" in fitem else None
            changes.file(block, lfn, ffields, site)


def _path_of(lfn, bpath, items) -> str:
    """The path of the first file named `lfn` among a block's `items`."""
    index = next(i for i, f in enumerate(items) if isinstance(f, dict) and f.get("name") == lfn)
    return f"{bpath}.files[{index}]"


def _dataset_replicas(changes, document):
    """Create or update the dataset replicas: (path, item, DatasetReplica) of each."""
    inv = changes.inventory
    for path, item in _items(document, "datasetreplica", ""):
        with located(path, _replica_label(item)):
            fields = _fields(item, DATASET_REPLICA_KEYS, "dataset", "site")
            dataset, site = inv.dataset(item["dataset"]), inv.site(item["site"])
            if "group" in item:
                fields["group"] = inv.group(item["group"])
            yield path, item, changes.dataset_replica(dataset, site, fields)


def _block_replicas(changes, path, item, replica):
    """The dataset replica's block replicas: each run of plain ones (no `complete`) at
    once when they are all new (`_new_block_replicas`), else one by one."""
    entries = list(_items(item, "blockreplicas", path + "."))
    for plain, run in groupby(entries, key=_plain_block_replica):
        run = list(run)
        if not (plain and _new_block_replicas(changes, [(replica, [bitem for _, bitem in run])])):
            for bpath, bitem in run:
                _block_replica(changes, bpath, bitem, replica)


_PLAIN_BLOCK_REPLICA_KEYS = frozenset(("block", "group", "is_custodial", "last_update", "size",
                                       "files"))


def _plain_block_replica(entry) -> bool:
    item = entry[1]
    return type(item) is dict and item.keys() <= _PLAIN_BLOCK_REPLICA_KEYS


def _block_replica(changes, bpath, bitem, replica):
    inv = changes.inventory
    dataset, site = replica.dataset, replica.site
    bname = _label(bitem, "block")
    with located(bpath, bname and f"block replica {site.name}:{dataset.name}#{bname}"):
        bfields = _fields(bitem, BLOCK_REPLICA_KEYS, "block")
        block = inv.block(dataset.name, _name(bitem, "block", "block replica"))
        if "group" in bitem:
            bfields["group"] = inv.group(bitem["group"])
        changes.block_replica(replica, block, bfields, _held(changes, bitem, block, site),
                              adding=True)


def _all_new_block_replicas(changes, replicas) -> bool:
    """Create the block replicas of all the document's dataset replicas (path, item,
    DatasetReplica) at once when they are all new and plain (`_new_block_replicas`);
    False, having changed nothing, when not done."""
    runs = []
    for _, item, replica in replicas:
        items = item.get("blockreplicas")
        if items is None or items == []:
            continue
        if not _plain(items, _PLAIN_BLOCK_REPLICA_KEYS):
            return False
        runs.append((replica, items))
    return not runs or _new_block_replicas(changes, runs)


def _new_block_replicas(changes, runs) -> bool:
    """Create these block replicas at once when they are all new: runs of
    (DatasetReplica, its plain block replicas' items), `ChangeSet.new_block_replicas`;
    False when not done."""
    items, blocks = [], []
    for replica, run in runs:
        items += run
        blocks += replica.dataset.blocks.find_many(list(map(dict.get, run, repeat("block"))))
    known = changes.inventory.groups
    try:
        groups = [known.get(item["group"]) if "group" in item else None for item in items]
    except TypeError:   # a group that is no name
        return False
    if None in blocks or any(group is None and "group" in item
                             for group, item in zip(groups, items)):
        return False
    return changes.new_block_replicas(
        [replica for replica, _ in runs], [len(run) for _, run in runs], blocks, groups,
        *[list(map(dict.get, items, repeat(key)))
          for key in ("is_custodial", "last_update", "size", "files")]) is not None


def _held(changes, bitem, block, site):
    """What a block replica of an injection holds, for `ChangeSet.block_replica` (which
    adds `files` to what it held).  New (not there before the request, even if a file's
    `site` made it): complete, or with `files` those, or with `complete: false` none
    yet.  Existing: what it held, and its `files`; `complete: true` makes it complete."""
    lfns, complete = _lfn_list(bitem), bitem.get("complete")
    if type(complete) is not bool and complete is not None:
        raise InvalidValue(f"complete must be true or false, not {complete!r}",
                           field="complete")
    if complete and lfns is not None:
        raise InvalidParams("give files or complete: true, not both (a complete replica "
                            "holds every file of its block)", field="complete")
    existing = block.find_replica(site)
    new = existing is None or changes.created(existing)
    if complete is False and not new and existing.is_complete():
        raise Conflict("it holds every file of its block, and complete: false takes none "
                       "away: remove files with --delete, listing them in its files",
                       field="complete")
    if complete or (complete is None and lfns is None and new):
        return None
    return KEEP if complete is None and lfns is None else lfns or ()


def _lfn_list(bitem) -> list | None:
    lfns = bitem.get("files")
    if lfns is not None and not isinstance(lfns, list):
        raise InvalidParams("files must be a list of LFNs", field="files")
    return lfns


def delete(changes: ChangeSet, document):
    """Remove what the document names: a dataset with `blocks` loses those blocks (a
    block with `files` those files), a dataset replica with `blockreplicas` those."""
    _check_document(document)
    inv = changes.inventory
    for path, item in _items(document, "datasetreplica", ""):
        with located(path, _replica_label(item)):
            _fields(item, DATASET_REPLICA_KEYS, "dataset", "site")
            dataset, site = inv.dataset(item["dataset"]), inv.site(item["site"])
            replica = dataset.find_replica(site)
            if replica is None:
                raise NotFound(f"dataset {dataset.name} has no replica at {site.name}")
        if "blockreplicas" not in item:
            changes.delete_dataset_replica(replica)
            continue
        for bpath, bitem in _items(item, "blockreplicas", path + "."):
            bname = _label(bitem, "block")
            with located(bpath, bname and f"block replica {site.name}:{dataset.name}#{bname}"):
                _fields(bitem, BLOCK_REPLICA_KEYS, "block")
                block = inv.block(dataset.name, _name(bitem, "block", "block replica"))
                block_replica = block.find_replica(site)
                if block_replica is None:
                    raise NotFound(f"block {bname} has no replica at {site.name}")
                lfns = _lfn_list(bitem)
                if lfns is None:
                    changes.delete_block_replica(block_replica)
                else:
                    changes.remove_replica_files(block_replica, lfns)
    for path, item in _items(document, "dataset", ""):
        with located(path, _label(item, "name") and f"dataset {item['name']}"):
            _fields(item, DATASET_KEYS, "name")
            name = _name(item, "name", "dataset")
            dataset = inv.dataset(name)
        if "blocks" not in item:
            changes.delete_dataset(dataset)
            continue
        for bpath, bitem in _items(item, "blocks", path + "."):
            with located(bpath, _label(bitem, "name") and f"block {name}#{bitem['name']}"):
                _fields(bitem, BLOCK_KEYS, "name")
                block = inv.block(name, _name(bitem, "name", "block"))
            if "files" not in bitem:
                changes.delete_block(block)
                continue
            for fpath, fitem in _items(bitem, "files", bpath + "."):
                with located(fpath, _label(fitem, "name") and f"file {fitem['name']}"):
                    _fields(fitem, FILE_KEYS, "name")
                    lfn = _name(fitem, "name", "file")
                    f = block.files_by_lfn.get(lfn)
                    if f is None:
                        raise NotFound(f"file {lfn} is not in block {block.full_name()}")
                    changes.delete_file(f)
    for path, item in _items(document, "group", ""):
        with located(path, _label(item, "name") and f"group {item['name']}"):
            _fields(item, GROUP_KEYS, "name")
            changes.delete_group(inv.group(_name(item, "name", "group")))
    for path, item in _items(document, "site", ""):
        with located(path, _label(item, "name") and f"site {item['name']}"):
            _fields(item, SITE_KEYS, "name")
            changes.delete_site(inv.site(_name(item, "name", "site")))
    changes.finish()


def _check_document(document):
    if not isinstance(document, dict):
        raise InvalidParams("the document must be a JSON object with any of the keys "
                            + ", ".join(SECTIONS))
    unknown = sorted(set(document) - set(TOP_KEYS))
    if unknown:   # its path too: the client names the line of the document it is on
        raise InvalidParams(_unknown("section", unknown[0], TOP_KEYS), field=unknown[0],
                            path=unknown[0])


def _unknown(what: str, name: str, allowed) -> str:
    """`unknown key 'stauts' (did you mean 'status'? allowed: ...)`."""
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown {what} {name!r} ({hint}allowed: {', '.join(allowed)})"
