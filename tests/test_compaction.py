"""Compaction: the column tables made again without the rows of deleted objects.

In memory, over random sequences of requests with compactions between them, the
inventory must stay what it was (the same rows, ids and consistency rules) and
keep working: later requests, and their undo, apply to the new tables.  Through
a real daemon, an idle daemon with many deleted objects compacts itself, and then
shows and stores exactly what it did before.
"""

import re
import time

from hypothesis import HealthCheck, given, settings, strategies as st

from dynamod.inventory import snapshot
from dynamod.inventory.inventory import Inventory
from dynamod.inventory.rows import all_rows
from reliability import snapshot as stored
from support.documents import apply, requests, state
from support.history import make_history
from support.seed import block_doc, dataset_doc
from support.views import snapshot as views


def compact(inventory) -> int:
    """What an idle daemon does: a snapshot's parts made, then the tables from them."""
    return snapshot.compact(inventory, snapshot.take(inventory)())


def rows_and_ids(inventory):
    return all_rows(inventory), dict(inventory.next_ids)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests, st.lists(st.booleans(), min_size=20, max_size=20))
def test_a_compacted_inventory_is_the_same_and_keeps_working(sequence, compact_after):
    inventory, twin = Inventory(), Inventory()   # the twin is never compacted
    history = []
    for (kind, document), compacting in zip(sequence, compact_after):
        before = state(inventory)
        changes = apply(inventory, kind, document)
        assert (changes is None) == (apply(twin, kind, document) is None)
        if changes is not None:
            history.append((before, changes))
        if compacting:
            rows, dead = inventory.rows(), inventory.dead_rows()
            kept = rows_and_ids(inventory)
            assert compact(inventory) == dead
            assert inventory.rows() == rows - dead and inventory.dead_rows() == 0
            assert rows_and_ids(inventory) == kept
            history.clear()   # as in the daemon: only committed changes are compacted
        assert inventory.problems() == []
        assert rows_and_ids(inventory) == rows_and_ids(twin)
    for before, changes in reversed(history):
        changes.rollback()
        assert state(inventory) == before


def test_a_compaction_that_fails_leaves_the_tables_as_they_were():
    inventory = Inventory()
    apply(inventory, "inject", {"site": [{"name": "T2_A"}], **dataset_doc(
        "/A/B/RAW", block_doc("b1", ("/store/a/1", 10)))})
    apply(inventory, "inject", {"datasetreplica": [{"dataset": "/A/B/RAW", "site": "T2_A",
                                                    "blockreplicas": [{"block": "b1"}]}]})
    apply(inventory, "inject", dataset_doc("/A/C/RAW", block_doc("b2", ("/store/a/2", 5))))
    apply(inventory, "delete", dataset_doc("/A/C/RAW"))
    before, tables = state(inventory), inventory.rows()

    def broken(tables):
        tables["dataset"].restore({})

    try:
        inventory.compact(broken)
    except Exception:
        pass
    else:
        raise AssertionError("restoring from no parts did not fail")
    assert state(inventory) == before and inventory.rows() == tables
    assert inventory.problems() == []
    assert apply(inventory, "delete", dataset_doc("/A/B/RAW")) is not None
    assert inventory.problems() == []


def test_the_files_of_a_compacted_inventory_without_a_store_are_in_their_blocks():
    """Such an inventory keeps every file as an object: after a compaction, a file
    given again is in its own block, and a change of its size moves its block's."""
    inventory = Inventory()
    apply(inventory, "inject", dataset_doc("/A/C/RAW", block_doc("b0")))
    apply(inventory, "delete", dataset_doc("/A/C/RAW"))   # the rows move up one
    apply(inventory, "inject", dataset_doc("/A/B/RAW", block_doc("b1", ("/store/a/1", 10))))
    compact(inventory)
    assert apply(inventory, "inject", dataset_doc(
        "/A/B/RAW", block_doc("b1", ("/store/a/1", 30)))) is not None
    assert inventory.problems() == []
    assert inventory.block("/A/B/RAW", "b1").size == 30
    assert apply(inventory, "delete", dataset_doc(
        "/A/B/RAW", block_doc("b1", ("/store/a/1", 30)))) is not None
    assert inventory.problems() == []
    assert inventory.block("/A/B/RAW", "b1").num_files == 0


def compactions(daemon) -> list[int]:
    return [int(n) for n in re.findall(r"inventory compacted: (\d+) rows", daemon.log())]


def test_an_idle_daemon_compacts_and_shows_and_stores_the_same(start_daemon):
    daemon = start_daemon(config={"daemon": {"snapshot_idle": 1.0, "snapshot_interval": 0}})
    make_history(daemon)
    names = [f"/Churn/D{n}/RAW" for n in range(40)]
    daemon.inject_json({"dataset": [dataset_doc(name, *(block_doc(
        f"b{b}", (f"/store/churn/{name}/{b}", 10 + b)) for b in range(5)))["dataset"][0]
        for name in names]})
    daemon.inject_json({"dataset": [{"name": name} for name in names[5:]]}, "--delete")
    shown = views(daemon)
    deadline = time.monotonic() + 60
    while not compactions(daemon) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert compactions(daemon) and compactions(daemon)[0] >= 35 * 6, daemon.log()
    assert views(daemon) == shown
    memory = stored.memory(daemon)
    assert memory.problems == []
    assert stored.differences(memory, stored.disk(daemon.database)) == []
    # the compacted tables take changes as before
    daemon.inject_json(dataset_doc(names[0], block_doc("new", ("/store/churn/new", 3))))
    daemon.inject_json({"dataset": [{"name": name} for name in names[1:3]]}, "--delete")
    shown = views(daemon)
    daemon.stop()
    daemon.start()
    assert views(daemon) == shown
