"""Injection and deletion documents: the JSON `dynamo-inject` sends.

A document is an object with any of the keys `site`, `group`, `dataset`,
`datasetreplica`, each a list of objects (datasets nest `blocks`, blocks nest
`files`, dataset replicas nest `blockreplicas`).  Sections are applied in that
order whatever the JSON order, so one file can describe everything.  Errors
carry the JSON path of the object (`dataset[0].blocks[1].files[3]`) and name
the object and field.
"""

from contextlib import contextmanager

from ..errors import DynamoError, InvalidParams, NotFound
from .changes import ChangeSet

SECTIONS = ("site", "group", "dataset", "datasetreplica")

# key in the JSON -> field of the object (None: handled by the code below)
SITE_KEYS = {"name": None, "host": "host", "storage_type": "storage_type", "backend": "backend",
             "status": "status"}
GROUP_KEYS = {"name": None, "olevel": "olevel"}
DATASET_KEYS = {"name": None, "status": "status", "data_type": "data_type",
                "software_version": "software_version", "last_update": "last_update",
                "is_open": "is_open", "blocks": None}
BLOCK_KEYS = {"name": None, "size": "size", "num_files": "num_files", "is_open": "is_open",
              "last_update": "last_update", "files": None}
FILE_KEYS = {"name": None, "size": "size", "site": None, "adler32": "adler32", "crc32": "crc32",
             "md5": "md5"}
DATASET_REPLICA_KEYS = {"dataset": None, "site": None, "growing": "growing", "group": None,
                        "blockreplicas": None}
BLOCK_REPLICA_KEYS = {"block": None, "group": None, "is_custodial": "is_custodial",
                      "last_update": "last_update", "size": "size", "files": None}


@contextmanager
def located(path: str, what: str):
    """Name the object (and its JSON path) in any error raised inside."""
    try:
        yield
    except DynamoError as exc:
        if "path" not in exc.details:
            exc.details["path"] = path
            exc.message = f"{what}: {exc.message}"
            exc.args = (exc.message,)
        raise


def _items(container: dict, key: str, path: str):
    """(path, item) for each element of the list `container[key]`, if present."""
    value = container.get(key)
    if value is None:
        return
    if not isinstance(value, list):
        raise InvalidParams(f"{path}{key} must be a list of objects", path=f"{path}{key}")
    for i, item in enumerate(value):
        yield f"{path}{key}[{i}]", item


def _fields(item, keys: dict, path: str, identity: str) -> dict:
    """Check the object's keys and return {field: value} of its plain fields."""
    if not isinstance(item, dict):
        raise InvalidParams(f"{path} must be an object, not {type(item).__name__}", path=path)
    unknown = sorted(set(item) - set(keys))
    if unknown:
        raise InvalidParams(f"{path}: unknown key {unknown[0]!r} (allowed: {', '.join(keys)})",
                            path=path, field=unknown[0])
    if identity not in item:
        raise InvalidParams(f"{path}: missing {identity!r}", path=path, field=identity)
    return {field: item[key] for key, field in keys.items() if field and key in item}


def _name(item, key, path, kind):
    value = item[key]
    if not isinstance(value, str) or not value:
        raise InvalidParams(f"{path}: {kind} {key} must be a non-empty string, not {value!r}",
                            path=path, field=key)
    return value


def inject(changes: ChangeSet, document):
    """Create or update everything the document describes."""
    _check_document(document)
    inv = changes.inventory
    for path, item in _items(document, "site", ""):
        fields = _fields(item, SITE_KEYS, path, "name")
        name = _name(item, "name", path, "site")
        with located(path, f"site {name}"):
            changes.site(name, fields)
    for path, item in _items(document, "group", ""):
        fields = _fields(item, GROUP_KEYS, path, "name")
        name = _name(item, "name", path, "group")
        with located(path, f"group {name}"):
            changes.group(name, fields)
    for path, item in _items(document, "dataset", ""):
        fields = _fields(item, DATASET_KEYS, path, "name")
        name = _name(item, "name", path, "dataset")
        with located(path, f"dataset {name}"):
            dataset = changes.dataset(name, fields)
        for bpath, bitem in _items(item, "blocks", path + "."):
            bfields = _fields(bitem, BLOCK_KEYS, bpath, "name")
            bname = _name(bitem, "name", bpath, "block")
            with located(bpath, f"block {name}#{bname}"):
                block = changes.block(dataset, bname, bfields)
            for fpath, fitem in _items(bitem, "files", bpath + "."):
                ffields = _fields(fitem, FILE_KEYS, fpath, "name")
                lfn = _name(fitem, "name", fpath, "file")
                with located(fpath, f"file {lfn}"):
                    site = inv.site(fitem["site"]) if "site" in fitem else None
                    changes.file(block, lfn, ffields, site)
    for path, item in _items(document, "datasetreplica", ""):
        fields = _fields(item, DATASET_REPLICA_KEYS, path, "dataset")
        _fields(item, DATASET_REPLICA_KEYS, path, "site")
        what = f"dataset replica {item['site']}:{item['dataset']}"
        with located(path, what):
            dataset, site = inv.dataset(item["dataset"]), inv.site(item["site"])
            if "group" in item:
                fields["group"] = inv.group(item["group"])
            replica = changes.dataset_replica(dataset, site, fields)
        for bpath, bitem in _items(item, "blockreplicas", path + "."):
            bfields = _fields(bitem, BLOCK_REPLICA_KEYS, bpath, "block")
            bname = _name(bitem, "block", bpath, "block replica")
            with located(bpath, f"block replica {site.name}:{dataset.name}#{bname}"):
                block = inv.block(dataset.name, bname)
                if "group" in bitem:
                    bfields["group"] = inv.group(bitem["group"])
                lfns = bitem.get("files")
                if lfns is not None and not isinstance(lfns, list):
                    raise InvalidParams("files must be a list of LFNs", field="files")
                changes.block_replica(replica, block, bfields, lfns)
    changes.finish()


def delete(changes: ChangeSet, document):
    """Remove what the document names: a dataset with `blocks` loses those blocks (a
    block with `files` those files), a dataset replica with `blockreplicas` those."""
    _check_document(document)
    inv = changes.inventory
    for path, item in _items(document, "datasetreplica", ""):
        _fields(item, DATASET_REPLICA_KEYS, path, "dataset")
        _fields(item, DATASET_REPLICA_KEYS, path, "site")
        with located(path, f"dataset replica {item['site']}:{item['dataset']}"):
            dataset, site = inv.dataset(item["dataset"]), inv.site(item["site"])
            replica = dataset.find_replica(site)
            if replica is None:
                raise NotFound(f"dataset {dataset.name} has no replica at {site.name}")
        if "blockreplicas" not in item:
            changes.delete_dataset_replica(replica)
            continue
        for bpath, bitem in _items(item, "blockreplicas", path + "."):
            _fields(bitem, BLOCK_REPLICA_KEYS, bpath, "block")
            bname = _name(bitem, "block", bpath, "block replica")
            with located(bpath, f"block replica {site.name}:{dataset.name}#{bname}"):
                block_replica = inv.block(dataset.name, bname).find_replica(site)
                if block_replica is None:
                    raise NotFound(f"block {bname} has no replica at {site.name}")
                changes.delete_block_replica(block_replica)
    for path, item in _items(document, "dataset", ""):
        _fields(item, DATASET_KEYS, path, "name")
        name = _name(item, "name", path, "dataset")
        with located(path, f"dataset {name}"):
            dataset = inv.dataset(name)
        if "blocks" not in item:
            changes.delete_dataset(dataset)
            continue
        for bpath, bitem in _items(item, "blocks", path + "."):
            _fields(bitem, BLOCK_KEYS, bpath, "name")
            bname = _name(bitem, "name", bpath, "block")
            with located(bpath, f"block {name}#{bname}"):
                block = inv.block(name, bname)
            if "files" not in bitem:
                changes.delete_block(block)
                continue
            for fpath, fitem in _items(bitem, "files", bpath + "."):
                _fields(fitem, FILE_KEYS, fpath, "name")
                lfn = _name(fitem, "name", fpath, "file")
                with located(fpath, f"file {lfn}"):
                    f = block.files_by_lfn.get(lfn)
                    if f is None:
                        raise NotFound(f"file {lfn} is not in block {block.full_name()}")
                    changes.delete_file(f)
    for path, item in _items(document, "group", ""):
        _fields(item, GROUP_KEYS, path, "name")
        name = _name(item, "name", path, "group")
        with located(path, f"group {name}"):
            changes.delete_group(inv.group(name))
    for path, item in _items(document, "site", ""):
        _fields(item, SITE_KEYS, path, "name")
        name = _name(item, "name", path, "site")
        with located(path, f"site {name}"):
            changes.delete_site(inv.site(name))
    changes.finish()


def _check_document(document):
    if not isinstance(document, dict):
        raise InvalidParams("the document must be a JSON object with any of the keys "
                            + ", ".join(SECTIONS))
    unknown = sorted(set(document) - set(SECTIONS))
    if unknown:
        raise InvalidParams(f"unknown section {unknown[0]!r} (allowed: {', '.join(SECTIONS)})",
                            field=unknown[0])
