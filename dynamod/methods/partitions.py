"""Partitions, quotas and usage per (site, partition) (inventory/partitions.py)."""

from ..auth.policy import Access
from ..inventory.names import matching
from ..inventory.partitions import UNLIMITED
from .inventory import _say_waiting
from .registry import Call, method


@method("list_partitions", Access.READ)
def list_partitions(call: Call) -> dict:
    """Every partition: its condition, or its subpartitions; where it is defined."""
    usage = call.inventory.usage
    return {"partitions": [p.view() for p in usage.partitions.values()]}


@method("set_partition", Access.SUPERUSER)
async def set_partition(call: Call, name: str, condition: str | None = None,
                        subpartitions: list | None = None) -> dict:
    """Define or redefine a partition (a condition, or subpartitions); the usage is
    recounted once."""
    _say_waiting(call)
    result = {}

    def apply(changes):
        result["changed"] = changes.set_partition(name, condition, subpartitions)
    await call.service.change(apply, actor=call.actor)
    return {"partition": call.inventory.usage.partitions[name].view(), **result}


@method("delete_partition", Access.SUPERUSER)
async def delete_partition(call: Call, name: str) -> dict:
    """Remove a partition (and its quotas); refused while a superpartition names it."""
    _say_waiting(call)
    await call.service.change(lambda changes: changes.delete_partition(name),
                              actor=call.actor)
    return {"deleted": name}


@method("set_quota", Access.INVENTORY)
async def set_quota(call: Call, site: str, partition: str, quota: int | str) -> dict:
    """The quota of a partition at a site: bytes, or "unlimited"."""
    _say_waiting(call)
    result = {}

    def apply(changes):
        result["changed"] = changes.set_quota(changes.inventory.site(site), partition, quota)
    await call.service.change(apply, actor=call.actor)
    found = call.inventory.usage.quota(site, partition)
    return {"site": site, "partition": partition,
            "quota": "unlimited" if found == UNLIMITED else found, **result}


@method("site_usage", Access.READ)
def site_usage(call: Call, site: str = "*", partition: str = "*") -> dict:
    """Used and projected bytes, replicas, quota and occupancy for every (site,
    partition) whose names match the globs."""
    inventory = call.inventory
    usage = inventory.usage
    rows = [usage.row_view(s, p)
            for s in matching(site, inventory.sites)
            for p in matching(partition, usage.partitions)]
    return {"usage": rows}
