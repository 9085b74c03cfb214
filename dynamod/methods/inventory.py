"""Inventory queries (answered from memory) and changes (inject, delete)."""

import functools
import re
from fnmatch import translate
from operator import attrgetter, itemgetter

from ..auth.policy import Access
from ..errors import InvalidParams
from ..inventory import injection
from ..inventory.fields import Field
from ..inventory.objects import Block, Dataset, DatasetReplica, File, Group, Site
from .registry import Call, method

MAX_PATTERN = 1024
GLOB_CACHE = 256  # compiled patterns kept: the few that scripts and operators repeat

# The class a link attribute leads to, for reading a field of the linked object.
_LINKS = {"block": Block, "dataset": Dataset, "group": Group, "site": Site}


def _slot_path(cls, path: str) -> str:
    """`path` (`size`, `block.name`) with each validating field replaced by the slot that
    holds its value; other attributes (plain slots, properties) stay as they are."""
    head, _, rest = path.partition(".")
    attr = cls.__dict__.get(head)
    slot = attr.member.__name__ if (isinstance(attr, Field)
                                    and type(attr).__get__ is Field.__get__) else head
    return f"{slot}.{_slot_path(_LINKS[head], rest)}" if rest else slot


def _reader(cls, *paths):
    """A function giving the values of `paths` on a `cls` object, as a tuple.

    A validating field (inventory/fields.py) checks a value when it is set and keeps
    it in a slot, so reading goes straight to the slots in one C call instead of a
    Python descriptor call per field, which made most of a view's cost.  An object
    with a field never set (the null group's name, a field an injection left out)
    raises AttributeError there and is read through the descriptors, which give the
    field's default."""
    fast, slow = attrgetter(*(_slot_path(cls, p) for p in paths)), attrgetter(*paths)

    def read(obj):
        try:
            return fast(obj)
        except AttributeError:
            return slow(obj)
    return read


_SITE = _reader(Site, "name", "id", "host", "storage_type", "backend", "status")
_GROUP = _reader(Group, "name", "id", "olevel")
_DATASET = _reader(Dataset, "name", "id", "status", "data_type", "software_version",
                   "last_update", "is_open")
_FILE = _reader(File, "lfn", "id", "size")
_DATASET_REPLICA = _reader(DatasetReplica, "dataset.name", "site.name", "growing", "group")


def site_view(site) -> dict:
    name, id_, host, storage_type, backend, status = _SITE(site)
    return {"name": name, "id": id_, "host": host, "storage_type": storage_type,
            "backend": backend, "status": status}


def group_view(group) -> dict:
    name, id_, olevel = _GROUP(group)
    return {"name": name, "id": id_, "olevel": olevel}


def dataset_view(dataset) -> dict:
    name, id_, status, data_type, software_version, last_update, is_open = _DATASET(dataset)
    return {"name": name, "id": id_, "status": status, "data_type": data_type,
            "software_version": software_version, "last_update": last_update,
            "is_open": is_open, "size": dataset.size, "num_files": dataset.num_files,
            "num_blocks": len(dataset.blocks)}


def block_view(block) -> dict:
    id_, dataset, name, size, num_files, is_open, last_update = block.values()
    return {"name": name, "dataset": dataset.name, "id": id_, "size": size,
            "num_files": num_files, "is_open": is_open, "last_update": last_update}


def file_view(f) -> dict:
    name, id_, size = _FILE(f)
    return {"name": name, "id": id_, "size": size, **f.checksums()}


def block_replica_view(replica, with_files=False) -> dict:
    block, site, group, is_custodial, size, last_update, file_ids = replica.values()
    complete = file_ids is None
    view = {"block": block.name, "site": site.name, "group": group.name,
            "is_custodial": is_custodial, "size": size, "last_update": last_update,
            "complete": complete}
    if with_files and not complete:
        view["files"] = sorted(f.lfn for f in replica.files())
    return view


def dataset_replica_view(replica) -> dict:
    dataset, site, growing, group = _DATASET_REPLICA(replica)
    return {"dataset": dataset, "site": site, "growing": growing, "group": group.name,
            "blockreplicas": _by_name(map(block_replica_view, replica.block_replicas),
                                      "block")}


def _by_name(views, key="name"):
    return sorted(views, key=itemgetter(key))


def _matching(pattern: str, names) -> list:
    """The names that match the glob `pattern`, sorted.  Long patterns are refused:
    translating one takes time quadratic in its length (a few thousand `[` stall the
    daemon for seconds), and fnmatch would keep tens of thousands of them in its cache."""
    if len(pattern) > MAX_PATTERN:
        raise InvalidParams(f"pattern is longer than {MAX_PATTERN} characters", field="pattern")
    return sorted(filter(_compiled_glob(pattern), names))


@functools.lru_cache(maxsize=GLOB_CACHE)
def _compiled_glob(pattern: str):
    """The matcher of a glob.  Translating one costs more than the rest of a small
    query: the recent ones are kept."""
    return re.compile(translate(pattern)).match


@method("list_sites", Access.READ)
def list_sites(call: Call, pattern: str = "*") -> dict:
    """Sites whose name matches the glob `pattern`."""
    sites = call.inventory.sites
    return {"sites": [site_view(sites[n]) for n in _matching(pattern, sites)]}


@method("list_groups", Access.READ)
def list_groups(call: Call) -> dict:
    """Every group except the null group."""
    return {"groups": _by_name(group_view(g) for n, g in call.inventory.groups.items()
                               if n is not None)}


@method("list_datasets", Access.READ)
def list_datasets(call: Call, pattern: str = "*", limit: int | None = None) -> dict:
    """Datasets whose name matches the glob `pattern` (at most `limit`, by name)."""
    if limit is not None and limit < 0:
        raise InvalidParams("limit must not be negative", field="limit")
    names = _matching(pattern, call.inventory.datasets)
    truncated = limit is not None and len(names) > limit
    names = names[:limit] if truncated else names
    return {"datasets": [dataset_view(call.inventory.datasets[n]) for n in names],
            "truncated": truncated}


@method("get_dataset", Access.READ)
def get_dataset(call: Call, name: str) -> dict:
    """One dataset with its blocks and its replicas."""
    dataset = call.inventory.dataset(name)
    return {**dataset_view(dataset),
            "blocks": _by_name(map(block_view, dataset.blocks)),
            "replicas": _by_name(map(dataset_replica_view, dataset.replicas), "site")}


@method("get_block", Access.READ)
def get_block(call: Call, name: str) -> dict:
    """One block (`dataset#block`) with its files and its replicas."""
    block = call.inventory.block(name)
    return {**block_view(block),
            "files": _by_name(map(file_view, block.files_by_lfn.values())),
            "replicas": _by_name((block_replica_view(r, with_files=True)
                                  for r in block.replicas), "site")}


@method("list_site_replicas", Access.READ)
def list_site_replicas(call: Call, site: str) -> dict:
    """The dataset replicas (with their block replicas) held at a site."""
    found = call.inventory.site(site)
    return {"site": found.name,
            "replicas": _by_name(map(dataset_replica_view, found.dataset_replicas),
                                 "dataset")}


@method("lfn_to_pfn", Access.READ)
def lfn_to_pfn(call: Call, site: str, lfn: str) -> dict:
    """The physical file name of `lfn` at `site`: the site's backend + the LFN."""
    return {"site": site, "lfn": lfn, "pfn": call.inventory.site(site).to_pfn(lfn)}


@method("inject", Access.INVENTORY)
async def inject(call: Call, data: dict, dry_run: bool = False) -> dict:
    """Create or update what the injection document describes, as one transaction.

    While a read/write application holds the writer slot the request waits, and
    a `waiting` event says for which application."""
    _say_waiting(call)
    counts = await call.service.change(lambda c: injection.inject(c, data), dry_run,
                                       call.actor)
    return {**counts, "dry_run": dry_run}


@method("delete", Access.INVENTORY)
async def delete(call: Call, data: dict, dry_run: bool = False) -> dict:
    """Remove what the document names (with the cascades), as one transaction; waits
    as `inject` does."""
    _say_waiting(call)
    counts = await call.service.change(lambda c: injection.delete(c, data), dry_run,
                                       call.actor)
    return {**counts, "dry_run": dry_run}


def _say_waiting(call: Call):
    waiting = call.server.apps.slot.waiting_event()
    if waiting is not None and call.connection is not None:
        call.connection.send_event(call.request_id, waiting)
