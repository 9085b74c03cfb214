"""Inventory queries (answered from memory; the lists' and datasets' answers kept while
memory does not change, answers.py) and changes (inject, delete)."""

from operator import attrgetter, itemgetter

import orjson

from ..auth.policy import Access
from ..errors import InvalidParams
from ..inventory import injection
from ..inventory.fields import Field
from ..inventory.names import SortedNames
from ..inventory.objects import BlockReplica, DatasetReplica, File, Group, Site
from .answers import Answers
from .registry import Call, method

# The daemon's one inventory: its list answers, and its names in order.
_ANSWERS = Answers()
_SITE_NAMES = SortedNames("site", "sites")
_DATASET_NAMES = SortedNames("dataset", "datasets")


def _slot(cls, name: str) -> str:
    """The slot that holds field `name`'s value when it is a validating field; else the
    name (a plain slot, a property)."""
    attr = cls.__dict__.get(name)
    return attr.member.__name__ if (isinstance(attr, Field)
                                    and type(attr).__get__ is Field.__get__) else name


class _Reader:
    """The values of some fields (`names`) of `cls` objects, as tuples.

    A validating field (inventory/fields.py) checks a value when it is set and keeps
    it in a slot, so reading goes straight to the slots in one C call instead of a
    Python descriptor call per field, which made most of a view's cost.  An object
    with a field never set (the null group's name, a field an injection left out)
    raises AttributeError there and is read through the descriptors, which give the
    field's default."""

    __slots__ = ("fast", "slow")

    def __init__(self, cls, *names):
        self.fast = attrgetter(*(_slot(cls, n) for n in names))
        self.slow = attrgetter(*names)

    def __call__(self, obj):
        try:
            return self.fast(obj)
        except AttributeError:
            return self.slow(obj)


_SITE = _Reader(Site, "name", "id", "host", "storage_type", "backend", "status")
_GROUP = _Reader(Group, "name", "id", "olevel")
_FILE = _Reader(File, "lfn", "id", "size")
# Datasets, blocks and replicas (views of columns) are read with their `values()`; a
# replica's group is read as the object, its name from _GROUP_NAMES.


class _GroupNames(dict):
    """Group -> its name, filled as groups are met.  A group's name never changes (the
    field is frozen), and the null group has none set: read with a replica's other
    fields, it would send every replica the null group owns down the slow path."""

    def __missing__(self, group):
        name = self[group] = group.name
        return name


_GROUP_NAMES = _GroupNames()


def site_view(site) -> dict:
    name, id_, host, storage_type, backend, status = _SITE(site)
    return {"name": name, "id": id_, "host": host, "storage_type": storage_type,
            "backend": backend, "status": status}


def group_view(group) -> dict:
    name, id_, olevel = _GROUP(group)
    return {"name": name, "id": id_, "olevel": olevel}


def dataset_view(dataset) -> dict:
    id_, name, status, data_type, software_version, last_update, is_open = dataset.values()
    size, num_files, num_blocks = dataset.totals()
    return {"name": name, "id": id_, "status": status, "data_type": data_type,
            "software_version": software_version, "last_update": last_update,
            "is_open": is_open, "size": size, "num_files": num_files, "num_blocks": num_blocks}


def block_views(dataset: str, facts) -> list[dict]:
    """Views of blocks of the dataset named `dataset`, given by their facts (name, id,
    size, num_files, is_open, last_update: BlockSet.facts)."""
    return [{"name": name, "dataset": dataset, "id": id_, "size": size,
             "num_files": num_files, "is_open": is_open, "last_update": last_update}
            for name, id_, size, num_files, is_open, last_update in facts]


def file_view(f) -> dict:
    name, id_, size = _FILE(f)
    return {"name": name, "id": id_, "size": size, **f.checksums()}


def block_replica_views(replicas) -> list[dict]:
    groups = _GROUP_NAMES
    return [{"block": block.name, "site": site.name, "group": groups[group],
             "is_custodial": is_custodial, "size": size, "last_update": last_update,
             "complete": file_ids is None}
            for block, site, group, is_custodial, size, last_update, file_ids
            in map(BlockReplica.values, replicas)]


def dataset_replica_views(replicas, dataset: str | None = None,
                          held: dict | None = None) -> list[dict]:
    """Views of dataset replicas, each with its block replicas by block name; of one
    dataset's, given its name and its blocks' replicas by site (`dataset`, `held`:
    BlockSet.replica_facts), which are then read with its blocks, not per replica."""
    groups = _GROUP_NAMES
    return [{"dataset": dataset or of.name, "site": site.name, "growing": growing,
             "group": groups[group],
             "blockreplicas": _block_replica_views(
                 sorted(replica.block_replicas.facts()) if held is None
                 else held.get(site.id, ()), site.name)}
            for replica, (of, site, growing, group)
            in zip(replicas, map(DatasetReplica.values, replicas))]


def _block_replica_views(facts, site: str) -> list[dict]:
    """The views of a dataset replica's block replicas (at `site`) from their facts, in
    the facts' order."""
    groups = _GROUP_NAMES
    return [{"block": block, "site": site, "group": groups[group], "is_custodial": is_custodial,
             "size": size, "last_update": last_update, "complete": complete}
            for block, group, is_custodial, size, last_update, complete in facts]


_FIRST = itemgetter(0)


def _by_name(views, key="name"):
    return sorted(views, key=itemgetter(key))


@method("list_sites", Access.READ)
def list_sites(call: Call, pattern: str = "*") -> orjson.Fragment:
    """Sites whose name matches the glob `pattern`."""
    inventory = call.inventory

    def answer():
        sites = inventory.sites
        return {"sites": [site_view(sites[n])
                          for n in _SITE_NAMES.matching(inventory, pattern)]}
    return _ANSWERS.get(inventory, ("list_sites", pattern), answer)


@method("list_groups", Access.READ)
def list_groups(call: Call) -> orjson.Fragment:
    """Every group except the null group."""
    groups = call.inventory.groups
    return _ANSWERS.get(call.inventory, ("list_groups",), lambda: {
        "groups": _by_name(group_view(g) for n, g in groups.items() if n is not None)})


@method("list_datasets", Access.READ)
def list_datasets(call: Call, pattern: str = "*", limit: int | None = None) -> orjson.Fragment:
    """Datasets whose name matches the glob `pattern` (at most `limit`, by name)."""
    if limit is not None and limit < 0:
        raise InvalidParams("limit must not be negative", field="limit")
    inventory = call.inventory

    def answer():
        datasets = inventory.datasets
        names = _DATASET_NAMES.matching(inventory, pattern, None if limit is None else limit + 1)
        truncated = limit is not None and len(names) > limit
        return {"datasets": [dataset_view(datasets[n]) for n in names[:limit]],
                "truncated": truncated}
    return _ANSWERS.get(inventory, ("list_datasets", pattern, limit), answer)


@method("get_dataset", Access.READ)
def get_dataset(call: Call, name: str) -> orjson.Fragment:
    """One dataset with its blocks and its replicas."""
    inventory = call.inventory

    def answer():
        dataset = inventory.dataset(name)
        blocks = dataset.blocks
        facts = blocks.facts()   # each block's name read once, for its view and its replicas'
        held = blocks.replica_facts(list(map(_FIRST, facts)))
        return {**dataset_view(dataset), "blocks": block_views(name, facts),
                "replicas": _by_name(dataset_replica_views(dataset.replicas, name, held),
                                     "site")}
    return _ANSWERS.get(inventory, ("get_dataset", name), answer)


@method("get_block", Access.READ)
def get_block(call: Call, name: str) -> dict:
    """One block (`dataset#block`) with its files and its replicas."""
    block = call.inventory.block(name)
    replicas = block.replicas
    views = block_replica_views(replicas)
    for replica, view in zip(replicas, views):
        if not view["complete"]:
            view["files"] = sorted(f.lfn for f in replica.files())
    id_, dataset, block_name, size, num_files, is_open, last_update = block.values()
    [view] = block_views(dataset.name, [(block_name, id_, size, num_files, is_open,
                                         last_update)])
    return {**view,
            "files": _by_name(map(file_view, block.files_by_lfn.values())),
            "replicas": _by_name(views, "site")}


@method("list_site_replicas", Access.READ)
def list_site_replicas(call: Call, site: str) -> orjson.Fragment:
    """The dataset replicas (with their block replicas) held at a site."""
    found = call.inventory.site(site)
    return _ANSWERS.get(call.inventory, ("list_site_replicas", site), lambda: {
        "site": found.name,
        "replicas": _by_name(dataset_replica_views(found.dataset_replicas), "dataset")})


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
