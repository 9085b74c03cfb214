"""Runs of plain updates (a write-back's bulk), applied a run at a time: a write-back
with a bad record anywhere leaves the inventory exactly as it was, a good one is undone
exactly by its rollback (an object may come twice in a run, a run may change nothing),
and the store, reloaded, equals memory: the columns each run wrote are the right ones."""

import asyncio

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynamod.errors import DynamoError
from dynamod.inventory import injection
from dynamod.inventory.changes import ChangeSet, entry_lines, journal_entry
from dynamod.inventory.inventory import Inventory
from dynamod.inventory.rows import all_rows
from dynamod.inventory.updates import apply_run, run_shape
from dynamod.service import InventoryService
from support.documents import STOCK, state, update_runs


def used(inventory) -> dict:
    """The usage kept, copied (its entries change in place)."""
    return {key: list(entry) for key, entry in inventory.usage.table.items()}


def apply_runs(changes, runs):
    for run in runs:
        apply_run(changes, run_shape(run["op"], run["kind"], run["keys"], run["fields"]),
                  run["rows"])
    changes.finish()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(update_runs, st.booleans())
def test_a_refused_write_back_changes_nothing_and_undo_restores(write_backs, partitioned):
    """With a partition defined, changes of a replica's group or custodial flag move its
    usage, and the usage kept follows (a recount agrees), undone too."""
    inventory = Inventory()
    if partitioned:
        ChangeSet(inventory).set_partition("Owned", condition="group != none")
    injection.inject(ChangeSet(inventory, now=1000), STOCK)
    usage, history = inventory.usage, []
    for runs in write_backs:
        before = state(inventory), used(inventory)
        changes = ChangeSet(inventory, now=1000)
        try:
            apply_runs(changes, runs)
        except DynamoError:
            changes.discard()
            assert (state(inventory), used(inventory)) == before
            continue
        assert inventory.problems() == []
        assert usage.table == usage.full_count(inventory)
        history.append((before, changes))
    for before, changes in reversed(history):
        changes.rollback()
        assert (state(inventory), used(inventory)) == before


@settings(max_examples=25, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(update_runs)
def test_store_after_reload_equals_memory(tmp_path_factory, write_backs):
    path = str(tmp_path_factory.mktemp("store") / "inventory.db")

    async def scenario():
        service = await InventoryService.open(path, "NORMAL")
        await service.change(lambda changes: injection.inject(changes, STOCK))
        for runs in write_backs:
            try:
                await service.change(lambda changes: apply_runs(changes, runs))
            except DynamoError:
                pass
        expected = all_rows(service.inventory)
        await service.close()
        reloaded = await InventoryService.open(path, "NORMAL")
        got = all_rows(reloaded.inventory)
        await reloaded.close()
        return expected, got

    expected, got = asyncio.run(scenario())
    assert got == expected


def test_a_run_is_logged_compact_unless_json_cannot_hold_it():
    """A run's change-log entry is the compact JSON the log thread expands, or, with a
    value JSON cannot hold (a lone surrogate), the same lines as text."""
    inventory = Inventory()
    changes = ChangeSet(inventory)
    for name in ("S1", "S\ud800"):
        changes.site(name, {"host": "h"})
    changes.finish()
    changes.keep()
    lines = {}
    for name, host in (("S1", "x"), ("S\ud800", "x\ud800")):
        apply_run(changes, run_shape("update", "site", ["name"], ["host"]),
                  [[name, host], ["S1", "y"]])
        lines[name] = journal_entry(changes.journal)
        changes.keep()
    assert entry_lines(orjson.loads(lines["S1"])) == [
        "updated site S1 host: 'h' -> 'x'", "updated site S1 host: 'x' -> 'y'"]
    assert lines["S\ud800"] == "updated site S\ud800 host: 'h' -> 'x\\ud800'"
