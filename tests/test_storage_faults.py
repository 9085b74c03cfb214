"""Storage faults, for real: a full disk, failing writes, a database locked by another process.

For each fault: the requests whose commit fails get `store_error`; memory is
never ahead of the disk (the daemon's memory equals its file, none of the
failed changes shows in queries, and what was acknowledged before stays);
reads are answered during the fault; writes resume, without a restart, once
the fault is cleared.  The database sits on a tmpfs or a loop device the test
mounts, so the errors come from the kernel, not from a mock.
"""

import hashlib
import os
import re
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from dynamoclient.connection import RemoteError
from reliability import snapshot
from support.daemon import Daemon
from support.faults import SITES, lock


def dataset_doc(tag: str, files: int = 20) -> dict:
    """A dataset of one block with a replica at T2_FAULT_A; long LFNs fill a disk fast."""
    name = f"/Fault/{tag}/RAW"
    files = [{"name": f"/store/fault/{tag}/{'x' * 150}/{i}.root", "size": 1000 + i}
             for i in range(files)]
    return {"dataset": [{"name": name, "status": "valid",
                         "blocks": [{"name": "b1", "files": files}]}],
            "datasetreplica": [{"dataset": name, "site": "T2_FAULT_A",
                                "blockreplicas": [{"block": "b1"}]}]}


def replica_doc(tag: str) -> dict:
    """A second replica of dataset `tag` (only valid once that dataset is in memory)."""
    return {"datasetreplica": [{"dataset": f"/Fault/{tag}/RAW", "site": "T2_FAULT_B",
                                "blockreplicas": [{"block": "b1"}]}]}


def dataset_names(daemon) -> set:
    return {d["name"] for d in daemon.call("list_datasets")["datasets"]}


def assert_queries_match_the_disk(daemon, acknowledged, failed):
    """Queries show every acknowledged dataset and no failed one, and what they show of
    sites and datasets is what the file holds.  (Works during a fault: no commit needed.)"""
    names = dataset_names(daemon)
    assert {f"/Fault/{t}/RAW" for t in acknowledged} <= names
    assert not names & {f"/Fault/{t}/RAW" for t in failed}
    disk = snapshot.disk(daemon.database)
    answered = {"sites": {s["name"]: (s["id"], s["status"], s["host"])
                          for s in daemon.call("list_sites")["sites"]},
                "datasets": {d["name"]: (d["id"], d["num_blocks"], d["num_files"], d["size"])
                             for d in daemon.call("list_datasets")["datasets"]}}
    stored = {"sites": {n: (s.id, s.status, s.host) for n, s in disk.inventory.sites.items()},
              "datasets": {n: (d.id, len(d.blocks), d.num_files, d.size)
                           for n, d in disk.inventory.datasets.items()}}
    assert answered == stored
    assert disk.integrity == [] and disk.problems == []


def assert_memory_is_the_disk(daemon, acknowledged, failed):
    """As above, and the whole of memory equals the file: read by a read-only application,
    which needs the store to commit its record, so only when no fault is on."""
    assert_queries_match_the_disk(daemon, acknowledged, failed)
    memory, disk = snapshot.memory(daemon), snapshot.disk(daemon.database)
    assert snapshot.differences(memory, disk) == []
    assert memory.problems == []


def inject_until_store_error(daemon, acknowledged, limit=200) -> tuple[str, RemoteError]:
    """Inject new datasets until one is refused; returns its tag and the error."""
    with daemon.client() as client:
        for n in range(limit):
            tag = f"fill{n}"
            try:
                client.call("inject", data=dataset_doc(tag))
            except RemoteError as exc:
                return tag, exc
            acknowledged.append(tag)
    raise AssertionError(f"{limit} injections and no commit failed")


def reads_work(daemon, acknowledged):
    """Every kind of read is answered from memory while the store fails."""
    started = time.monotonic()
    assert daemon.call("ping") == {"pong": True}
    assert daemon.call("status")["inventory"]["datasets"] == len(dataset_names(daemon))
    dataset = daemon.call("get_dataset", name=f"/Fault/{acknowledged[0]}/RAW")
    assert dataset["num_files"] == 20
    assert [s["name"] for s in daemon.call("list_sites")["sites"]] == ["T2_FAULT_A", "T2_FAULT_B"]
    assert time.monotonic() - started < 1.5


def fill(directory: Path, leave: int) -> Path:
    """Take all the free space of `directory`'s file system but `leave` bytes."""
    stat = os.statvfs(directory)
    ballast = directory / "ballast"
    with open(ballast, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, max(stat.f_bavail * stat.f_frsize - leave, 1))
    return ballast


def check_failure_and_recovery(daemon, acknowledged, failed_tag, ballast):
    """Shared by the disk-full and I/O-error tests, once a commit has failed."""
    with pytest.raises(RemoteError) as again:  # still failing: nothing half-kept
        daemon.call("inject", data=dataset_doc("again"))
    assert again.value.code == "store_error"
    reads_work(daemon, acknowledged)
    assert_queries_match_the_disk(daemon, acknowledged, [failed_tag, "again"])

    # A crash during the fault: what was refused stays refused at the restart (after a
    # failed fsync the commit's WAL frames may be in the page cache, whole).
    daemon.kill9()
    daemon.start()
    pid = daemon.call("status")["pid"]
    reads_work(daemon, acknowledged)
    assert_queries_match_the_disk(daemon, acknowledged, [failed_tag, "again"])

    ballast.unlink()  # the fault clears
    assert_memory_is_the_disk(daemon, acknowledged, [failed_tag, "again"])
    daemon.call("inject", data=dataset_doc(failed_tag))
    daemon.call("inject", data=replica_doc(failed_tag))
    acknowledged.append(failed_tag)
    assert daemon.call("status")["pid"] == pid  # no restart was needed
    assert_memory_is_the_disk(daemon, acknowledged, ["again"])
    daemon.kill9()
    daemon.start()
    assert_memory_is_the_disk(daemon, acknowledged, ["again"])
    assert len(daemon.call("get_dataset", name=f"/Fault/{failed_tag}/RAW")["replicas"]) == 2


def inject_before(daemon) -> list:
    """Three acknowledged datasets the fault must leave intact; their tags."""
    tags = [f"before{n}" for n in range(3)]
    for tag in tags:
        daemon.call("inject", data=dataset_doc(tag))
    return tags


def test_disk_full(rig):
    """The database's tmpfs fills up: SQLite answers SQLITE_FULL (`database or disk is full`)."""
    disk = rig.tmpfs("disk", "8m")
    daemon = rig.daemon(disk / "inventory.db")
    acknowledged = inject_before(daemon)
    ballast = fill(disk, 96 * 1024)
    failed_tag, error = inject_until_store_error(daemon, acknowledged)
    assert error.code == "store_error" and "full" in error.message
    check_failure_and_recovery(daemon, acknowledged, failed_tag, ballast)


def test_io_error(rig):
    """The block device under the database fails its writes (EIO at fsync): a loop device
    whose backing file lives on a tmpfs that has no room left for it."""
    backing = rig.tmpfs("backing", "32m")
    disk, _ = rig.loop_ext4(backing / "disk.img", "disk")
    daemon = rig.daemon(disk / "inventory.db")
    acknowledged = inject_before(daemon)
    ballast = fill(backing, 64 * 1024)
    failed_tag, error = inject_until_store_error(daemon, acknowledged)
    assert error.code == "store_error" and "I/O error" in error.message
    check_failure_and_recovery(daemon, acknowledged, failed_tag, ballast)


def test_file_system_turns_read_only(rig):
    """ext4 mounted with errors=remount-ro meets an error (as from a failing disk; here
    its trigger_fs_error): from then on every write gets EROFS.  The kernel keeps it
    read-only until it is mounted again, which needs a restart of the daemon."""
    backing = rig.tmpfs("backing", "80m")
    disk, device = rig.loop_ext4(backing / "disk.img", "disk", errors="remount-ro")
    trigger = Path("/sys/fs/ext4") / os.path.basename(device) / "trigger_fs_error"
    if not trigger.exists():
        pytest.skip(f"{trigger} is missing: no way to make ext4 turn read-only")
    daemon = rig.daemon(disk / "inventory.db")
    acknowledged = inject_before(daemon)
    trigger.write_text("dynamod storage-fault test\n")
    for tag in ("failed0", "failed1"):
        with pytest.raises(RemoteError) as refused:
            daemon.call("inject", data=dataset_doc(tag))
        assert refused.value.code == "store_error"
    reads_work(daemon, acknowledged)
    assert_queries_match_the_disk(daemon, acknowledged, ["failed0", "failed1"])

    assert daemon.stop() == 0
    rig.run("umount", str(disk))
    rig.run("mount", "-o", "errors=remount-ro", device, str(disk))
    daemon.start()
    assert_memory_is_the_disk(daemon, acknowledged, ["failed0", "failed1"])
    daemon.call("inject", data=dataset_doc("failed0"))
    assert_memory_is_the_disk(daemon, [*acknowledged, "failed0"], ["failed1"])


WRITER = """\
import time
from dynamod.executable import inventory, Site
inventory.update(Site('T2_FROM_APP', host='app.example.org'))
time.sleep(float(__import__('sys').argv[1]))
"""


def wait_for_status(daemon, app_id, statuses, timeout=30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        record = daemon.call("poll_application", id=app_id)
        if record["status"] in statuses or time.monotonic() > deadline:
            return record
        time.sleep(0.02)


def test_database_locked_by_another_process(rig):
    """Another process holds BEGIN EXCLUSIVE longer than the daemon's busy_timeout (2 s)."""
    (rig.root / "db").mkdir()
    daemon = rig.daemon(rig.root / "db" / "inventory.db")
    acknowledged = ["before0", "before1", "before2"]
    for tag in acknowledged:
        daemon.call("inject", data=dataset_doc(tag))
    daemon.call("authorize_script", title="locked",
                checksum=hashlib.sha256(WRITER.encode()).hexdigest())
    pid = daemon.call("status")["pid"]

    # A read/write application is running when the lock is taken: its changes, sent
    # when it ends, cannot commit.
    app = daemon.call("run_application", script=WRITER, path="writer.py", args=["0.5"],
                      title="locked", write=True, attach=False)
    assert wait_for_status(daemon, app["id"], ("run",))["status"] == "run"
    holder = lock(daemon.database)
    try:
        # One connection pipelines a dataset, a replica that builds on it (applied in
        # memory on top of the first while that one waits for the lock), the deletion of
        # an acknowledged dataset and a site update; two more clients delete and inject
        # at the same time.  All of it fails together and is undone.
        requests = [("inject", dataset_doc("locked")), ("inject", replica_doc("locked")),
                    ("delete", {"dataset": [{"name": "/Fault/before0/RAW"}]}),
                    ("inject", {"site": [{"name": "T2_FAULT_A", "status": "morgue"}]})]
        others = {"other0": ("inject", dataset_doc("other0")),
                  "other1": ("delete", {"dataset": [{"name": "/Fault/before1/RAW",
                                                     "blocks": [{"name": "b1"}]}]})}
        answers = {}

        def other(tag):
            try:
                daemon.call(others[tag][0], data=others[tag][1])
            except RemoteError as exc:
                answers[tag] = exc.code

        threads = [threading.Thread(target=other, args=(tag,)) for tag in others]
        with daemon.client() as client:
            sent = {client.send(method, {"data": doc}): n for n, (method, doc) in
                    enumerate(requests)}
            for thread in threads:
                thread.start()
            record = wait_for_status(daemon, app["id"], ("done", "failed", "killed"))
            assert record["status"] == "failed"
            assert "refused, nothing was applied" in record["message"]
            assert "database is locked" in record["message"]
            # While the injections wait for the lock.  (A read sees the changes in flight:
            # before0 is gone and before1 has no block until their commit fails.)  The other
            # clients' changes are applied first, so that none lands between two reads.
            deadline = time.monotonic() + 10
            while not ("/Fault/other0/RAW" in dataset_names(daemon) and daemon.call(
                    "get_dataset", name="/Fault/before1/RAW")["num_blocks"] == 0):
                assert time.monotonic() < deadline, "the other clients' changes never applied"
                time.sleep(0.02)
            reads_work(daemon, ["before2"])
            for _ in requests:
                answer = client.receive()
                while "event" in answer:  # `waiting` for the writer holding the slot
                    answer = client.receive()
                answers[sent[answer["id"]]] = answer["error"]["code"]
        for thread in threads:
            thread.join(30)
        assert answers == {0: "store_error", 1: "store_error", 2: "store_error",
                           3: "store_error", "other0": "store_error", "other1": "store_error"}
        assert daemon.call("get_dataset", name="/Fault/before1/RAW")["num_blocks"] == 1
        assert {s["status"] for s in daemon.call("list_sites")["sites"]} == {"unknown"}
        assert_queries_match_the_disk(daemon, acknowledged, ["locked", "other0"])
    finally:
        holder.communicate("\n", timeout=30)  # the lock is released

    assert_memory_is_the_disk(daemon, acknowledged, ["locked", "other0"])
    assert "T2_FROM_APP" not in {s["name"] for s in daemon.call("list_sites")["sites"]}
    daemon.call("inject", data=dataset_doc("locked"))
    daemon.call("inject", data=replica_doc("locked"))
    daemon.call("delete", data={"dataset": [{"name": "/Fault/before0/RAW"}]})
    acknowledged = ["before1", "before2", "locked"]
    app = daemon.call("run_application", script=WRITER, path="writer.py", args=["0"],
                      title="locked", write=True, attach=False)
    assert wait_for_status(daemon, app["id"], ("done", "failed", "killed"))["status"] == "done"
    assert daemon.call("status")["pid"] == pid
    assert_memory_is_the_disk(daemon, acknowledged, ["before0", "other0"])
    daemon.kill9()
    daemon.start()
    assert_memory_is_the_disk(daemon, acknowledged, ["before0", "other0"])
    assert "T2_FROM_APP" in {s["name"] for s in daemon.call("list_sites")["sites"]}


def test_start_while_another_process_holds_the_lock(rig):
    """The daemon starts and serves reads; writes wait for the lock, then work."""
    (rig.root / "db").mkdir()
    daemon = rig.daemon(rig.root / "db" / "inventory.db")
    daemon.call("inject", data=dataset_doc("before0"))
    daemon.stop()
    holder = lock(daemon.database)
    try:
        daemon.start()
        reads_work(daemon, ["before0"])
        with pytest.raises(RemoteError) as refused:
            daemon.call("inject", data=dataset_doc("locked"))
        assert refused.value.code == "store_error"
        assert_queries_match_the_disk(daemon, ["before0"], ["locked"])
    finally:
        holder.communicate("\n", timeout=30)
    daemon.call("inject", data=dataset_doc("locked"))
    assert_memory_is_the_disk(daemon, ["before0", "locked"], [])


def test_start_on_a_full_disk_is_refused_in_one_line(rig):
    """Without room for SQLite's shared-memory file the database cannot be opened: the
    daemon says so in one line and exits; with room again it starts with everything."""
    disk = rig.tmpfs("disk", "4m")
    daemon = rig.daemon(disk / "inventory.db")
    daemon.call("inject", data=dataset_doc("before0"))
    daemon.stop()
    ballast = fill(disk, 0)
    with pytest.raises(RuntimeError, match="exited with 1"):
        daemon.start()
    last = daemon.log().strip().splitlines()[-1]
    assert f"cannot open the database {daemon.database}" in last
    assert "Traceback" not in daemon.log()
    ballast.unlink()
    daemon.start()
    assert_memory_is_the_disk(daemon, ["before0"], [])


def change_log_entries(database: str) -> int:
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return db.execute("SELECT count(*) FROM change_log").fetchone()[0]
    finally:
        db.close()


def wait_until(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("freed", ["while it runs", "before a restart"])
def test_a_full_disk_delays_the_change_log_and_loses_none_of_it(rig, freed):
    """The change log's file system is full: every committed injection is acknowledged
    and kept in the database (table change_log), a write-back's in its compact form; the
    daemon says so once; once there is room (or at the next start) every line is written,
    and the queue empties."""
    logs = rig.tmpfs("logs", "1m")
    change_log = logs / "changes.log"
    config = rig.root / "dynamod.toml"
    config.write_text(f'[daemon]\nchange_log = "{change_log}"\n')
    daemon = Daemon(rig.root / "state", str(rig.root / "dynamod.sock"), ["--config", str(config)])
    daemon.start()
    rig.undo.append(daemon.stop)
    daemon.call("inject", data={"site": SITES})
    wait_until(lambda: change_log.exists() and "T2_FAULT_A" in change_log.read_text())
    ballast = fill(logs, 0)
    tags = [f"full{n}" for n in range(5)]
    for tag in tags:
        daemon.call("inject", data=dataset_doc(tag))
    wait_until(lambda: "cannot write the change log" in daemon.log())
    script = rig.root / "touch.py"   # a write-back: its runs' lines are kept compact
    script.write_text("for ds in inventory.datasets.values():\n"
                      "    for block in ds.blocks:\n"
                      "        inventory.update(BlockReplica(block.full_name(), 'T2_FAULT_A',"
                      " last_update=77))\n")
    daemon.exec_auth("--executable", script, "--title", "touch")
    daemon.dynamo(script, "--write-request", "--title", "touch")
    assert daemon.log().count("cannot write the change log") == 1
    # each try of the thread writes what fits and cuts it back off: read between the two,
    # the file may show a part of a line a moment; cut back, it holds none of them
    wait_until(lambda: not any(tag in change_log.read_text() for tag in tags))
    assert change_log_entries(daemon.database) == 6
    if freed == "before a restart":
        daemon.stop()
        ballast.unlink()
        daemon.start()
    else:
        ballast.unlink()
    wait_until(lambda: all(f"/Fault/{tag}/RAW" in change_log.read_text() for tag in tags))
    wait_until(lambda: change_log_entries(daemon.database) == 0)
    text = change_log.read_text()
    assert text.count("created dataset /Fault/full0/RAW") == 1
    touched = [line.split(" app=", 1)[1].split(" ", 1)[1] for line in text.splitlines()
               if " app=" in line]
    assert [re.sub(r"last_update: \d+ ->", "last_update: N ->", line) for line in touched] \
        == [f"updated blockreplica T2_FAULT_A:/Fault/{tag}/RAW#b1 last_update: N -> 77"
            for tag in tags]
    assert text.endswith("\n")   # whole lines: a failed write was cut back off
