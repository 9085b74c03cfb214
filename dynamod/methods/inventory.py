"""Inventory queries (answered from memory) and changes (inject, delete)."""

import re
from fnmatch import translate

from ..auth.policy import Access
from ..errors import InvalidParams
from ..inventory import injection
from .registry import Call, method

MAX_PATTERN = 1024


def site_view(site) -> dict:
    return {"name": site.name, "id": site.id, "host": site.host,
            "storage_type": site.storage_type, "backend": site.backend, "status": site.status}


def group_view(group) -> dict:
    return {"name": group.name, "id": group.id, "olevel": group.olevel}


def dataset_view(dataset) -> dict:
    return {"name": dataset.name, "id": dataset.id, "status": dataset.status,
            "data_type": dataset.data_type, "software_version": dataset.software_version,
            "last_update": dataset.last_update, "is_open": dataset.is_open,
            "size": dataset.size, "num_files": dataset.num_files,
            "num_blocks": len(dataset.blocks)}


def block_view(block) -> dict:
    return {"name": block.name, "dataset": block.dataset.name, "id": block.id,
            "size": block.size, "num_files": block.num_files, "is_open": block.is_open,
            "last_update": block.last_update}


def file_view(f) -> dict:
    return {"name": f.lfn, "id": f.id, "size": f.size, **f.checksums()}


def block_replica_view(replica, with_files=False) -> dict:
    view = {"block": replica.block.name, "site": replica.site.name,
            "group": replica.group.name, "is_custodial": replica.is_custodial,
            "size": replica.size, "last_update": replica.last_update,
            "complete": replica.is_complete()}
    if with_files and not replica.is_complete():
        view["files"] = sorted(f.lfn for f in replica.files())
    return view


def dataset_replica_view(replica) -> dict:
    return {"dataset": replica.dataset.name, "site": replica.site.name,
            "growing": replica.growing, "group": replica.group.name,
            "blockreplicas": sorted((block_replica_view(r) for r in replica.block_replicas),
                                    key=lambda v: v["block"])}


def _by_name(views, key="name"):
    return sorted(views, key=lambda v: v[key])


def _glob(pattern: str):
    """The matcher of a glob.  Long patterns are refused: translating one takes time
    quadratic in its length (a few thousand `[` stall the daemon for seconds), and
    fnmatch would keep tens of thousands of them in its cache."""
    if len(pattern) > MAX_PATTERN:
        raise InvalidParams(f"pattern is longer than {MAX_PATTERN} characters", field="pattern")
    return re.compile(translate(pattern)).match


@method("list_sites", Access.READ)
def list_sites(call: Call, pattern: str = "*") -> dict:
    """Sites whose name matches the glob `pattern`."""
    matches = _glob(pattern)
    return {"sites": _by_name(site_view(s) for n, s in call.inventory.sites.items()
                              if matches(n))}


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
    matches = _glob(pattern)
    names = sorted(n for n in call.inventory.datasets if matches(n))
    truncated = limit is not None and len(names) > limit
    names = names[:limit] if truncated else names
    return {"datasets": [dataset_view(call.inventory.datasets[n]) for n in names],
            "truncated": truncated}


@method("get_dataset", Access.READ)
def get_dataset(call: Call, name: str) -> dict:
    """One dataset with its blocks and its replicas."""
    dataset = call.inventory.dataset(name)
    return {**dataset_view(dataset),
            "blocks": _by_name(block_view(b) for b in dataset.blocks),
            "replicas": _by_name((dataset_replica_view(r) for r in dataset.replicas), "site")}


@method("get_block", Access.READ)
def get_block(call: Call, name: str) -> dict:
    """One block (`dataset#block`) with its files and its replicas."""
    block = call.inventory.block(name)
    return {**block_view(block),
            "files": _by_name(file_view(f) for f in block.files_by_lfn.values()),
            "replicas": _by_name((block_replica_view(r, with_files=True)
                                  for r in block.replicas), "site")}


@method("list_site_replicas", Access.READ)
def list_site_replicas(call: Call, site: str) -> dict:
    """The dataset replicas (with their block replicas) held at a site."""
    found = call.inventory.site(site)
    return {"site": found.name,
            "replicas": _by_name((dataset_replica_view(r) for r in found.dataset_replicas),
                                 "dataset")}


@method("lfn_to_pfn", Access.READ)
def lfn_to_pfn(call: Call, site: str, lfn: str) -> dict:
    """The physical file name of `lfn` at `site`: the site's backend + the LFN."""
    return {"site": site, "lfn": lfn, "pfn": call.inventory.site(site).to_pfn(lfn)}


@method("inject", Access.INVENTORY)
async def inject(call: Call, data: dict, dry_run: bool = False) -> dict:
    """Create or update what the injection document describes, as one transaction."""
    counts = await call.service.change(lambda c: injection.inject(c, data), dry_run,
                                       call.actor)
    return {**counts, "dry_run": dry_run}


@method("delete", Access.INVENTORY)
async def delete(call: Call, data: dict, dry_run: bool = False) -> dict:
    """Remove what the document names (with the cascades), as one transaction."""
    counts = await call.service.change(lambda c: injection.delete(c, data), dry_run,
                                       call.actor)
    return {**counts, "dry_run": dry_run}
