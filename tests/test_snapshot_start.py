"""The start-up's snapshot of the column tables (dynamod/inventory/snapshot.py), through
real daemons on real stores: used when it is current, and then the inventory is the
one the rows give; never used when stale, damaged, of rows edited by hand, or with
--rebuild; written at shutdown and when the store is idle; added to an old store."""

import re
import shutil
import sqlite3
from array import array
import time
import zlib

import pytest

from reliability import snapshot
from support.daemon import Daemon, fresh_directory
from support.history import (dataset_name, edit, loaded_from, make_history, not_used,
                             orders, snapshots_written)
from support.seed import block_doc, dataset_doc
from support.views import snapshot as views


def assert_equals_the_store(daemon):
    """Memory (a read-only application's view) equals the store loaded from its rows,
    and keeps every consistency rule."""
    memory = snapshot.memory(daemon)
    assert memory.problems == []
    assert snapshot.differences(memory, snapshot.disk(daemon.database)) == []


def snapshot_is_current(database) -> bool:
    """The snapshot in the store is stamped with the store's last commit."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return db.execute("SELECT s.counter = c.counter FROM commits c "
                          "JOIN snapshot_stamp s").fetchone() == (1,)
    finally:
        db.close()


@pytest.fixture(scope="module")
def written_history():
    """A stopped daemon's directory with a history (its shutdown wrote the snapshot) and
    what it showed: made once, as making it takes some twenty injections."""
    root = fresh_directory()
    daemon = Daemon.in_directory(root)
    daemon.start()
    make_history(daemon)
    shown = views(daemon)
    daemon.stop()
    yield daemon.state_dir, shown
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def history(written_history, workdir):
    """A daemon with a history, stopped: a copy of the written one's state (store, WAL,
    log), so that each test edits and restarts its own."""
    state_dir, shown = written_history
    daemon = Daemon.in_directory(workdir)
    shutil.copytree(state_dir, daemon.state_dir)
    daemon.shown = shown
    yield daemon
    daemon.stop()


def restart(daemon, *options):
    daemon.stop()
    daemon.extra_args = list(options)
    daemon.start()


def test_a_restart_starts_from_the_snapshot_and_equals_a_rebuild(history, workdir):
    """The same inventory as from rows, order included: a block's replicas and a dataset
    replica's chain in key order (before the restart they were in creation order)."""
    [written] = snapshots_written(history)
    history.start()
    assert loaded_from(history) == f"snapshot of commit {written}"
    assert views(history) == history.shown
    from_snapshot = orders(history, workdir)
    assert_equals_the_store(history)
    restart(history, "--rebuild")
    assert loaded_from(history) == "rows" and not_used(history)[-1] == "dynamod --rebuild"
    assert orders(history, workdir) == from_snapshot

    # the restored tables change as loaded ones do; their next snapshot is used too
    restart(history)
    assert loaded_from(history).startswith("snapshot of commit ")
    history.inject_json(dataset_doc(dataset_name(0), block_doc("c", ("/store/his/c", 5))))
    history.inject_json(dataset_doc(dataset_name(3)), "--delete")
    history.inject_json({"datasetreplica": [{"site": "T2_HIS_C", "dataset": dataset_name(0),
                                             "blockreplicas": [{"block": "c"}]}]})
    shown = views(history)
    restart(history)
    assert loaded_from(history) == f"snapshot of commit {snapshots_written(history)[-1]}"
    assert views(history) == shown
    from_snapshot = orders(history, workdir)
    assert_equals_the_store(history)
    restart(history, "--rebuild")
    assert (views(history), orders(history, workdir)) == (shown, from_snapshot)


def test_a_stale_snapshot_is_not_used(history, workdir):
    [written] = snapshots_written(history)
    history.start()
    history.inject_json(dataset_doc("/History/Late/RAW", block_doc("l", ("/store/late", 3))))
    shown = views(history)
    history.kill9()   # no shutdown: the snapshot stays at `written`
    history.start()
    assert loaded_from(history) == "rows"
    why = not_used(history)[-1]
    assert why.startswith(f"it is stale: taken at commit {written}, the store is at commit ")
    assert views(history) == shown
    assert_equals_the_store(history)


DAMAGE = {
    "truncated": ("UPDATE snapshot_parts SET data = substr(data, 1, length(data) - 3) "
                  "WHERE name = 'blockreplica.size'", "it cannot be read: snapshot part "
                  "blockreplica.size fails its CRC-32"),
    "not a blob": ("UPDATE snapshot_parts SET data = 'garbage' WHERE name = 'block.names'",
                   "it cannot be read: snapshot part block.names fails its CRC-32"),
    # a sound checksum over unsound parts: what a bug, not the disk, could write
    "short, checksum matching": (
        f"UPDATE snapshot_parts SET data = zeroblob(16), crc32 = {zlib.crc32(bytes(16))} "
        "WHERE name = 'block.size'", "its parts do not make sound tables (SnapshotError: "
        "block columns of unequal lengths)"),
    "a part missing": ("DELETE FROM snapshot_parts WHERE name = 'blockreplica.owner_head'",
                       "its parts do not make sound tables (KeyError: 'owner_head')"),
    "another format": ("UPDATE snapshot_stamp SET format = format + 1",
                       "its format is 5, this dynamod's 4"),
    # what README tells an operator who changed values by hand
    "the stamp deleted": ("DELETE FROM snapshot_stamp", "there is none"),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_snapshot_falls_back_to_rows(history, workdir, damage):
    sql, why = DAMAGE[damage]
    edit(history.database, sql)
    history.start()
    assert loaded_from(history) == "rows" and not_used(history)[-1] == why
    assert "Traceback" not in history.log()
    assert views(history) == history.shown
    assert_equals_the_store(history)


def test_a_snapshot_naming_two_datasets_alike_falls_back_to_rows(history, workdir):
    """The second dataset's name made the first's (a sound checksum, as a bug could
    write): no index by name can hold both, and the rows are loaded instead."""
    db = sqlite3.connect(history.database)
    (names,), (offsets,) = (db.execute("SELECT data FROM snapshot_parts WHERE name = ?",
                                       (part,)).fetchone()
                            for part in ("dataset.names", "dataset.offsets"))
    db.close()
    first, second, third = array("q", offsets)[:3]
    assert second - first == third - second   # /History/D0/RAW, /History/D1/RAW
    names = names[:second] + names[:second] + names[third:]
    edit(history.database, f"UPDATE snapshot_parts SET data = x'{names.hex()}', "
                           f"crc32 = {zlib.crc32(names)} WHERE name = 'dataset.names'")
    history.start()
    assert loaded_from(history) == "rows" and not_used(history)[-1] == (
        "its parts do not make sound tables (SnapshotError: two rows named "
        "'/History/D0/RAW')")
    assert views(history) == history.shown
    assert_equals_the_store(history)


def test_rows_added_or_deleted_by_hand_are_seen_and_values_need_rebuild(history, workdir):
    """Hand edits do not move the commit counter.  A row added or deleted changes a
    table's count, which the start compares; a value changed does not: --rebuild."""
    edit(history.database, "DELETE FROM block_replicas WHERE rowid = "
                           "(SELECT max(rowid) FROM block_replicas)")
    history.start()
    assert loaded_from(history) == "rows"
    assert not_used(history)[-1] == (
        "table block_replicas holds 30 rows, the snapshot 31: edited by hand?")
    assert_equals_the_store(history)

    history.stop()   # writes a snapshot of what it loaded
    edit(history.database, "UPDATE blocks SET last_update = 42 WHERE name = 'b2'")
    history.start()
    assert loaded_from(history).startswith("snapshot of commit ")
    assert {b["last_update"] for b in views(history)["blocks"] if b["name"] == "b2"} != {42}
    restart(history, "--rebuild")
    assert loaded_from(history) == "rows"
    assert {b["last_update"] for b in views(history)["blocks"] if b["name"] == "b2"} == {42}
    assert_equals_the_store(history)
    restart(history)   # the snapshot the last shutdown wrote holds the edited value
    assert loaded_from(history).startswith("snapshot of commit ")
    assert {b["last_update"] for b in views(history)["blocks"] if b["name"] == "b2"} == {42}


HAND_ADDED = {
    "datasets": ("INSERT INTO datasets SELECT next_id, '/Hand/Made/RAW', 'valid', 'unknown', "
                 "NULL, 0, 1 FROM next_ids WHERE kind = 'dataset'",
                 "UPDATE next_ids SET next_id = next_id + 1 WHERE kind = 'dataset'"),
    "dataset_replicas": ("INSERT INTO dataset_replicas SELECT d.id, s.id, 0, NULL FROM "
                         "datasets d, sites s WHERE d.name = '/History/D5/RAW' AND "
                         "s.name = 'T2_HIS_B'",),
}


@pytest.mark.parametrize("table", HAND_ADDED)
def test_a_dataset_or_dataset_replica_added_by_hand_is_seen(history, workdir, table):
    edit(history.database, *HAND_ADDED[table])
    history.start()
    assert loaded_from(history) == "rows"
    stored, snapshotted = map(int, re.fullmatch(
        rf"table {table} holds (\d+) rows, the snapshot (\d+): edited by hand\?",
        not_used(history)[-1]).groups())
    assert stored == snapshotted + 1
    assert views(history) != history.shown
    assert_equals_the_store(history)


def test_written_when_idle_so_that_a_kill_keeps_it(start_daemon):
    daemon = start_daemon(config={"daemon": {"snapshot_idle": 0.3, "snapshot_interval": 0}})
    make_history(daemon)
    shown = views(daemon)
    deadline = time.monotonic() + 30   # one written during the history is stale
    while not snapshot_is_current(daemon.database) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert snapshot_is_current(daemon.database), daemon.log()
    daemon.kill9()
    daemon.start()
    assert loaded_from(daemon).startswith("snapshot of commit ")
    assert views(daemon) == shown
    assert_equals_the_store(daemon)


def test_a_version_4_store_gains_the_snapshot(history, workdir):
    """Schema 4 -> 5: the migration adds the commit counter and the snapshot's tables;
    the first start loads from rows, its shutdown writes the snapshot."""
    edit(history.database, "DROP TABLE commits", "DROP TABLE snapshot_stamp",
         "DROP TABLE snapshot_parts", "PRAGMA user_version = 4")
    history.start()
    assert loaded_from(history) == "rows" and not_used(history)[-1] == "there is none"
    assert views(history) == history.shown
    from_rows = orders(history, workdir)
    restart(history)
    assert loaded_from(history) == f"snapshot of commit {snapshots_written(history)[-1]}"
    assert views(history) == history.shown
    assert orders(history, workdir) == from_rows
    db = sqlite3.connect(history.database)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 5
    finally:
        db.close()
