"""All-or-nothing and write-through, over random sequences of requests.

Random injection and deletion documents over a small universe of names are
applied one after the other, as the daemon does: a request that fails must
leave the inventory exactly as before it; one that succeeds must leave it
consistent; and what the store holds after reloading must equal memory.
"""

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings

from dynamod.errors import DynamoError
from dynamod.inventory import injection
from dynamod.inventory.changes import ChangeSet
from dynamod.inventory.inventory import Inventory
from dynamod.inventory.rows import all_rows
from dynamod.service import InventoryService
from support.documents import SITES, apply, requests, state, totals, undo_restores


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests)
def test_failed_requests_change_nothing_and_undo_restores(sequence):
    undo_restores(Inventory(), sequence)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(requests)
def test_undo_restores_with_a_store_behind(tmp_path_factory, sequence):
    """As above, with a store behind the inventory (a block's first files then stay
    packed while held) and nothing committed: every change holds what it touched, as
    changes waiting for their commit do, and each is undone in turn."""
    path = str(tmp_path_factory.mktemp("store") / "inventory.db")

    async def scenario():
        service = await InventoryService.open(path, "NORMAL", file_cache=2)
        try:
            for changes in undo_restores(service.inventory, sequence):
                changes.release()
        finally:
            await service.close()

    asyncio.run(scenario())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(requests)
def test_store_after_reload_equals_memory(tmp_path_factory, sequence):
    path = str(tmp_path_factory.mktemp("store") / "inventory.db")

    async def scenario():
        # a cache of two files: blocks leave memory between (and during) the requests
        service = await InventoryService.open(path, "NORMAL", file_cache=2)
        for kind, document in sequence:
            try:
                await service.change(lambda c: getattr(injection, kind)(c, document))
            except DynamoError:
                pass
        expected = (all_rows(service.inventory), dict(service.inventory.next_ids),
                    totals(service.inventory))
        problems = await service.store.integrity_errors() + service.inventory.problems()
        await service.close()   # which writes the snapshot the first reload restores
        got = []
        for rebuild in (False, True):   # from the snapshot, then from the store's rows
            reloaded = await InventoryService.open(path, "NORMAL", rebuild=rebuild)
            got.append((all_rows(reloaded.inventory), dict(reloaded.inventory.next_ids),
                        totals(reloaded.inventory)))
            problems += reloaded.inventory.problems()
            await reloaded.close()
        return expected, got, problems

    expected, got, problems = asyncio.run(scenario())
    assert problems == []
    assert got == [expected, expected]


def test_a_block_named_twice_in_one_injection_stores_the_files_of_both(tmp_path):
    """Each naming of the block brings new files: the store gets them all, not only
    the last naming's."""
    path = str(tmp_path / "inventory.db")
    document = {"dataset": [{"name": "/A/B/RAW", "blocks": [
        {"name": "b1", "files": [{"name": "/store/f0.root", "size": 1}]},
        {"name": "b1", "files": [{"name": "/store/f1.root", "size": 2}]}]}]}

    async def scenario():
        service = await InventoryService.open(path, "NORMAL")
        await service.change(lambda c: injection.inject(c, document))
        expected = all_rows(service.inventory)
        await service.close()
        reloaded = await InventoryService.open(path, "NORMAL", rebuild=True)   # from the rows
        got, problems = all_rows(reloaded.inventory), reloaded.inventory.problems()
        await reloaded.close()
        return expected, got, problems

    expected, got, problems = asyncio.run(scenario())
    assert [row[2] for row in expected["file"]] == ["/store/f0.root", "/store/f1.root"]
    assert problems == []
    assert got == expected


def test_dry_run_changes_nothing(tmp_path):
    async def scenario():
        service = await InventoryService.open(str(tmp_path / "db"), "NORMAL")
        counts = await service.change(
            lambda c: injection.inject(c, {"site": [{"name": "S1"}]}), dry_run=True)
        sites = dict(service.inventory.sites)
        await service.close()
        return counts, sites

    counts, sites = asyncio.run(scenario())
    assert counts["created"] == {"sites": 1}
    assert sites == {}


@pytest.mark.parametrize("status", ["nice", 3, None])
def test_bad_enum_names_field_and_values(status):
    changes = ChangeSet(Inventory())
    with pytest.raises(DynamoError) as err:
        injection.inject(changes, {"site": [{"name": "S1", "status": status}]})
    assert "Site.status" in err.value.message
    assert "ready, waitroom, morgue, unknown" in err.value.message
    assert err.value.details["path"] == "site[0]"


def test_an_undone_deletion_puts_each_replica_back_in_its_place():
    """Block replicas in the middle, at the ends and alone in their lists are deleted,
    one request each, then every request is undone, newest first: each step restores
    the lists' order exactly (a block's replicas; a dataset replica's block replicas)."""
    inventory = Inventory()
    blocks = [{"block": b} for b in ("b1", "b2", "b3")]
    document = {"site": [{"name": s} for s in SITES],
                "dataset": [{"name": "/A/B/RAW", "blocks": [{"name": b["block"]}
                                                            for b in blocks]}],
                "datasetreplica": [{"dataset": "/A/B/RAW", "site": s, "blockreplicas": blocks}
                                   for s in SITES]}
    assert apply(inventory, "inject", document) is not None
    history = []
    for site, block in [("S2", "b2"), ("S1", "b1"), ("S3", "b3"), ("S2", "b1"), ("S1", "b3")]:
        before = state(inventory)
        deletion = {"datasetreplica": [{"dataset": "/A/B/RAW", "site": site,
                                        "blockreplicas": [{"block": block}]}]}
        history.append((before, apply(inventory, "delete", deletion)))
        assert inventory.problems() == []
    for before, changes in reversed(history):
        changes.rollback()
        assert state(inventory) == before
        assert inventory.problems() == []
