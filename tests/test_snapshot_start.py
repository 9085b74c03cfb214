"""The start-up's snapshot of the column tables (dynamod/inventory/snapshot.py), through
real daemons on real stores: used when it is current, and then the inventory is the
one the rows give; never used when stale, damaged, of rows edited by hand, or with
--rebuild; written at shutdown and when the store is idle; added to an old store."""

import logging
import marshal
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from array import array
import time
import zlib

import pytest

import dynamod
from dynamod.inventory import replicaload
from dynamod.inventory import snapshot as snapshot_tables
from dynamod.inventory.rows import all_rows
from dynamod.store.reader import StoreReader

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
    """Nor are its parts read: the stamp says it is stale first (a damaged part of it
    would otherwise be reported)."""
    [written] = snapshots_written(history)
    history.start()
    history.inject_json(dataset_doc("/History/Late/RAW", block_doc("l", ("/store/late", 3))))
    shown = views(history)
    history.kill9()   # no shutdown: the snapshot stays at `written`
    edit(history.database, DAMAGE["truncated"][0])
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


# A start from rows with many block replicas has them read by a process of its own
# (dynamod/inventory/replicaload.py); below THRESHOLD (every store of these tests) the
# daemon reads them itself.  Here the store of the history is loaded in process, with
# the threshold at 0 (the real process, on the real store) and out of reach.

def load_from_rows(database, threshold, monkeypatch):
    monkeypatch.setattr(replicaload, "THRESHOLD", threshold)
    reader = StoreReader(database)
    try:
        inventory, at = snapshot_tables.load(reader, reader.tables(), reader.next_ids(),
                                             rebuild=True)
    finally:
        reader.close()
    assert at is None
    return inventory


def walked(inventory) -> list:
    """Every dataset's blocks, their replicas and its dataset replicas' chains, in the
    order memory gives them (a chain follows its links)."""
    found = []
    for dataset in inventory.datasets.values():
        for block in dataset.blocks:
            found.append((dataset.name, block.name,
                          [(r.site.name, r.group.name, r.is_custodial, r.size, r.last_update,
                            r.file_ids) for r in block.replicas]))
        found += [(dataset.name, replica.site.name, [r.block.name for r in replica.block_replicas])
                  for replica in dataset.replicas]
    return found


@pytest.fixture
def from_rows_here(written_history, monkeypatch):
    """The history's store, and what loading its rows in process gives."""
    database = str(written_history[0] / "inventory.db")
    inventory = load_from_rows(database, float("inf"), monkeypatch)
    return database, walked(inventory), all_rows(inventory)


def test_the_block_replicas_read_by_a_process_make_the_same_inventory(from_rows_here,
                                                                      monkeypatch, caplog):
    database, walk, rows = from_rows_here
    caplog.set_level(logging.INFO, "dynamod.snapshot")
    inventory = load_from_rows(database, 0, monkeypatch)
    assert re.search(r"block replicas \(31\) read by process \d+", caplog.text), caplog.text
    assert "cannot be used" not in caplog.text
    assert walked(inventory) == walk and all_rows(inventory) == rows
    assert any(r[5] is not None for entry in walk if len(entry) == 3 for r in entry[2])


def _child(code: str) -> str:
    """A child's command (replicaload.CHILD) that runs `code` with the module imported
    as `rl` and its `marshal`, `sys` (the store's path in sys.argv[2])."""
    return ("import sys; sys.path.insert(0, sys.argv[1]); "
            "import marshal, dynamod.inventory.replicaload as rl; " + code)


# Another copy of the store, read by the child instead of the daemon's: as if it
# were edited between their reads.
A_BLOCK_LESS = ("DELETE FROM block_replicas WHERE block_id = (SELECT min(id) FROM blocks)",
                "DELETE FROM files WHERE block_id = (SELECT min(id) FROM blocks)",
                "DELETE FROM blocks WHERE id = (SELECT min(id) FROM blocks)")
A_REPLICA_OF_NO_DATASET_REPLICA = (
    "INSERT INTO block_replicas SELECT b.id, s.id, NULL, 0, 0, 0, NULL FROM blocks b, sites s "
    "WHERE NOT EXISTS (SELECT 1 FROM dataset_replicas r WHERE r.dataset_id = b.dataset_id "
    "AND r.site_id = s.id) LIMIT 1",)
UNREAD = _child("rl.main(sys.argv[2] + '.other')")

UNUSABLE = {
    "fails": (_child("sys.exit('no luck')"), (), "it exited with status 1: no luck"),
    "says something else": (_child("sys.stdout.buffer.write(b'not marshal')"), (),
                            "its columns are not sound (ValueError: bad marshal data"),
    "columns of unequal lengths": (_child(
        "from array import array; from dynamod.store.reader import StoreReader; "
        "r = StoreReader(sys.argv[2]); ids = array('q', r.ids('block')); "
        "parts = rl.BlockReplicaTable.read_rows(ids, r.rows('blockreplica')); "
        "parts['size'] = parts['size'][8:]; marshal.dump(parts, sys.stdout.buffer)"), (),
        "its columns are not sound (SnapshotError: block replica columns of unequal "
        "lengths)"),
    "other blocks": (UNREAD, A_BLOCK_LESS, "it read other blocks than this start did"),
    "a replica of no dataset replica": (
        UNREAD, A_REPLICA_OF_NO_DATASET_REPLICA,
        "its columns are not sound (SnapshotError: block replica of block id "),
    "hangs": (_child("import time; time.sleep(60)"), (), "it did not finish in 1 s"),
}


@pytest.mark.parametrize("case", UNUSABLE, ids=list(UNUSABLE))
def test_a_process_that_cannot_be_used_leaves_the_rows_to_the_daemon(
        from_rows_here, monkeypatch, caplog, case):
    database, walk, rows = from_rows_here
    code, edits, why = UNUSABLE[case]
    if edits:
        shutil.copy(database, database + ".other")
        edit(database + ".other", *edits)
    monkeypatch.setattr(replicaload, "CHILD", code)
    monkeypatch.setattr(replicaload, "TIMEOUT", 1.0)
    started = time.monotonic()
    inventory = load_from_rows(database, 0, monkeypatch)
    assert time.monotonic() - started < 20   # the hanging one was killed
    warnings = [r.getMessage() for r in caplog.records if "cannot be used" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"the process reading the block replicas cannot be used ({why}"), warnings
    assert walked(inventory) == walk and all_rows(inventory) == rows


def test_few_block_replicas_are_read_in_process(from_rows_here, monkeypatch, caplog):
    database, walk, _ = from_rows_here
    caplog.set_level(logging.INFO, "dynamod.snapshot")
    assert walked(load_from_rows(database, 32, monkeypatch)) == walk   # 31 in the store
    assert "process" not in caplog.text


PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(dynamod.__file__)))
CAPABILITIES = ("import sys; print([l.split()[1] for l in open('/proc/self/status') "
                "if l.startswith(('CapPrm', 'CapEff', 'CapAmb'))], file=sys.stderr)")


def test_the_process_holds_none_of_the_daemons_capabilities(from_rows_here):
    """The unit gives the daemon CAP_SETUID, CAP_SETGID, CAP_CHOWN and CAP_KILL as ambient
    capabilities, which an executed program keeps: the process drops them all before it
    reads anything (as root here: it starts with every one)."""
    database, _, _ = from_rows_here

    def run(code):
        return subprocess.run([sys.executable, "-I", "-c", _child(code), PACKAGE_ROOT,
                               database], capture_output=True, timeout=60, check=True)

    held = run(CAPABILITIES).stderr.decode()
    if "'0000000000000000', '0000000000000000'" in held:
        pytest.skip("the tests hold no capabilities to drop (not root)")
    done = run(f"rl.main(sys.argv[2]); {CAPABILITIES}")
    assert done.stderr.decode() == "['0000000000000000', '0000000000000000', '0000000000000000']\n"
    assert len(marshal.loads(done.stdout)["block_ids"]) > 0


def _many(count: int, sql: str) -> str:
    """`sql` for each i in [0, count)."""
    return f"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < " \
           f"{count - 1}) {sql}"


def test_a_daemon_starting_from_many_rows_has_a_process_read_its_block_replicas(
        start_daemon):
    """100 datasets of 250 blocks at four sites: 100,000 block replicas, the threshold,
    written by hand into a real daemon's store; its start from rows takes them from the
    process, and memory equals the store as the daemon's loader reads it in process."""
    daemon = start_daemon()
    daemon.inject_json({"site": [{"name": f"T2_MANY_{s}"} for s in "ABCD"],
                        "group": [{"name": "ops"}]})
    daemon.stop()
    edit(daemon.database,
         _many(100, "INSERT INTO datasets SELECT 1000 + i, printf('/Many/D%d/RAW', i), "
                    "'valid', 'unknown', NULL, 0, 1 FROM n"),
         _many(25_000, "INSERT INTO blocks SELECT 1000 + i, 1000 + i / 250, "
                       "printf('b%d', i % 250), 0, 0, 0, 7 FROM n"),   # no files
         "INSERT INTO dataset_replicas SELECT d.id, s.id, 0, NULL FROM datasets d, sites s",
         "INSERT INTO block_replicas SELECT b.id, s.id, g.id, s.id % 2, 0, b.id, NULL "
         "FROM blocks b, sites s, groups g",
         "UPDATE next_ids SET next_id = (SELECT max(id) + 1 FROM datasets) "
         "WHERE kind = 'dataset'",
         "UPDATE next_ids SET next_id = (SELECT max(id) + 1 FROM blocks) WHERE kind = 'block'",
         "DELETE FROM snapshot_stamp")
    daemon.start()
    assert loaded_from(daemon) == "rows"
    assert re.search(r"block replicas \(100000\) read by process \d+", daemon.log())
    assert "cannot be used" not in daemon.log() and "Traceback" not in daemon.log()
    assert_equals_the_store(daemon)
