"""Store integrity, through real daemons: one owner per store, ids that are never given
twice, any path, damage refused in one line, a newer schema left untouched, backups
all or nothing.
"""

import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dynamoclient.connection import RemoteError
from dynamod.store import uri
from support.daemon import Daemon

SITES = [{"name": "T2_INT_A", "host": "a.example.org", "backend": "davs://a/store"},
         {"name": "T2_INT_B", "host": "b.example.org", "backend": "davs://b/store"}]
RECOVERY = "restore a backup (dynamod restore COPY) or recover it (sqlite3 "


def dataset_doc(tag: str, blocks: int = 1, files: int = 5) -> dict:
    """A dataset of `blocks` blocks of `files` files (long LFNs: pages fill fast)."""
    name = f"/Integrity/{tag}/RAW"
    return {"dataset": [{"name": name, "status": "valid", "blocks": [
        {"name": f"b{b}", "files": [{"name": f"/store/int/{tag}/{b}/{'z' * 100}/{f}.root",
                                     "size": 1000 + f} for f in range(files)]}
        for b in range(blocks)]}],
            "datasetreplica": [{"dataset": name, "site": "T2_INT_A",
                                "blockreplicas": [{"block": f"b{b}"} for b in range(blocks)]}]}


def on(root: Path, database: Path, name: str = "a") -> Daemon:
    """A daemon (not started) with its own state directory and socket, on `database`."""
    daemon = Daemon(root / f"state-{name}", str(root / f"{name}.sock"),
                    ["--database", str(database)])
    daemon.database = str(database)
    return daemon


def run_dynamod(*args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dynamod", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if " ERROR " in line or " CRITICAL " in line]


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ------------------------------------------------------------ 1: one owner per store
def test_a_second_daemon_on_the_same_database_is_refused(workdir):
    database = workdir / "inventory.db"
    first = on(workdir, database, "a").start()
    try:
        first.call("inject", data={"site": SITES})
        pid = first.call("status")["pid"]
        lock = Path(f"{database}.lock")
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        assert lock.read_text() == f"{pid}\n"

        second = run_dynamod("--state-dir", workdir / "state-b", "--socket",
                             workdir / "b.sock", "--database", database)
        assert second.returncode == 1
        assert "Traceback" not in second.stderr
        assert not (workdir / "b.sock").exists()
        assert [line.split(" ERROR dynamod: ")[1] for line in errors(second.stderr)] == [
            f"database {database} is in use by another dynamod (pid {pid}, lock {lock})"]

        first.call("inject", data=dataset_doc("after"))  # the first serves on, and writes
        assert first.call("status")["pid"] == pid
        assert first.call("get_dataset", name="/Integrity/after/RAW")["num_files"] == 5
    finally:
        first.stop()
    third = on(workdir, database, "b").start()
    try:
        assert third.call("get_dataset", name="/Integrity/after/RAW")["num_files"] == 5
        assert Path(f"{database}.lock").read_text() == f"{third.call('status')['pid']}\n"
    finally:
        third.stop()


def test_a_second_daemon_on_the_same_database_by_another_name_is_refused(workdir):
    """A symlink to the database and a hard link to it name the same file: a daemon
    started on either is refused while the first serves (before, each took a lock file
    of its own name and both wrote the database, each with its own inventory), and so
    is a restore to either."""
    database = workdir / "inventory.db"
    first = on(workdir, database, "a").start()
    try:
        first.call("inject", data={"site": SITES})
        pid = first.call("status")["pid"]
        assert run_dynamod("backup", workdir / "copy.db", "--socket",
                           first.socket).returncode == 0
        (workdir / "by-symlink.db").symlink_to(database)
        os.link(database, workdir / "by-link.db")
        expected = {
            "by-symlink.db": f"is in use by another dynamod (pid {pid}, lock {database}.lock)",
            "by-link.db": "is in use by another dynamod under another name (a link to the "
                          "same file"}
        for name, refusal in expected.items():
            second = run_dynamod("--state-dir", workdir / "state-b", "--socket",
                                 workdir / "b.sock", "--database", workdir / name)
            assert second.returncode == 1 and refusal in second.stderr, second.stderr
            restored = run_dynamod("restore", workdir / "copy.db", "--database",
                                   workdir / name)
            assert restored.returncode == 1 and refusal in restored.stderr, restored.stderr
        assert first.call("inject", data=dataset_doc("after"))["created"]["datasets"] == 1
    finally:
        first.stop()


def test_next_ids_set_too_low_are_repaired_at_start(workdir):
    database = workdir / "inventory.db"
    daemon = on(workdir, database).start()
    daemon.call("inject", data={"site": SITES})
    daemon.call("inject", data=dataset_doc("one", blocks=3))
    daemon.call("inject", data=dataset_doc("two"))
    app = daemon.call("run_application", script="pass\n", title="ids", attach=False)
    while daemon.call("poll_application", id=app["id"])["status"] not in ("done", "failed"):
        time.sleep(0.05)
    daemon.stop()
    db = sqlite3.connect(database)
    highest = {kind: db.execute(f"SELECT max(id) FROM {table}").fetchone()[0]
               for kind, table in (("site", "sites"), ("dataset", "datasets"),
                                   ("block", "blocks"), ("file", "files"),
                                   ("application", "applications"))}
    db.execute("UPDATE next_ids SET next_id = 1 WHERE kind IN ('site', 'block', 'file')")
    db.execute("UPDATE next_ids SET next_id = 2 WHERE kind = 'dataset'")
    db.execute("DELETE FROM next_ids WHERE kind = 'application'")
    db.commit()
    db.close()

    daemon.start()
    repaired = [line.split("next_ids repaired: ")[1] for line in daemon.log().splitlines()
                if " WARNING dynamod.store: next_ids repaired: " in line]
    assert sorted(repaired) == sorted([
        f"application next id was None, not above the highest id in table applications; "
        f"now {highest['application'] + 1}",
        f"block next id was 1, not above the highest id in table blocks; "
        f"now {highest['block'] + 1}",
        f"dataset next id was 2, not above the highest id in table datasets; "
        f"now {highest['dataset'] + 1}",
        f"file next id was 1, not above the highest id in table files; "
        f"now {highest['file'] + 1}",
        f"site next id was 1, not above the highest id in table sites; "
        f"now {highest['site'] + 1}"])
    daemon.call("inject", data={"site": [{"name": "T2_INT_C"}]})
    daemon.call("inject", data=dataset_doc("three", blocks=2))
    sites = {s["name"]: s["id"] for s in daemon.call("list_sites")["sites"]}
    assert sites["T2_INT_C"] == highest["site"] + 1
    three = daemon.call("get_dataset", name="/Integrity/three/RAW")
    assert three["id"] == highest["dataset"] + 1
    app = daemon.call("run_application", script="pass\n", title="ids", attach=False)
    assert app["id"] == highest["application"] + 1
    daemon.restart()  # a sound next_ids is not touched again
    assert daemon.log().count("next_ids repaired") == 5
    daemon.stop()


# ---------------------------------------------------------------------- 2: paths
ODD = "é %41 #1 ?x"  # percent escape, fragment, query, spaces, non-ASCII


def files_in(database: Path) -> int:
    db = sqlite3.connect(database)  # a plain path: no URI
    try:
        return db.execute("SELECT count(*) FROM files").fetchone()[0]
    finally:
        db.close()


def logical_size(database) -> int:
    """The database's bytes, the WAL's pages included."""
    db = sqlite3.connect(database)
    try:
        return db.execute("SELECT page_count * page_size FROM pragma_page_count(), "
                          "pragma_page_size()").fetchone()[0]
    finally:
        db.close()


def files_under(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_paths_with_uri_characters(workdir):
    """SQLite URIs end a path at # or ?, decode %41 to A: every connection must still
    open the file named, and nothing may appear anywhere else."""
    state = workdir / f"état {ODD}"
    database = state / f"inventory {ODD}.db"
    before = files_under(workdir)
    daemon = Daemon(state, str(workdir / "d.sock"), ["--database", str(database)])
    daemon.database = str(database)
    daemon.start()
    daemon.call("inject", data={"site": SITES})
    daemon.call("inject", data=dataset_doc("odd", blocks=2))
    assert daemon.call("status")["database"] == str(database)
    assert files_in(database) == 10  # the file named, no other

    daemon.restart()  # the read-only connection loads the right file
    assert daemon.call("get_dataset", name="/Integrity/odd/RAW")["num_files"] == 10
    daemon.kill9()
    daemon.start()
    assert daemon.call("get_dataset", name="/Integrity/odd/RAW")["num_files"] == 10

    backups = workdir / f"backups {ODD}"
    backups.mkdir()
    dest = backups / f"copy {ODD}.db"
    daemon.call("backup", path=str(dest))
    assert files_under(backups) == {dest.name}
    assert files_in(dest) == 10
    checked = run_dynamod("check", "--database", database)
    assert checked.stdout == f"{database}: ok\n" and checked.returncode == 0
    daemon.stop()

    assert files_under(workdir) - before == {
        str(p.relative_to(workdir)) for p in (
            state, database, Path(f"{database}.lock"), state / "dynamod.log",
            state / "changes.log", state / "work", backups, dest)}


# ---------------------------------------------------------------------- 3: damage
@pytest.fixture(scope="module")
def sound_store() -> Path:
    """A real store, closed cleanly (no WAL), big enough for tables of many pages."""
    root = Path(tempfile.mkdtemp(prefix="dyn-int-", dir="/tmp"))
    daemon = on(root, root / "inventory.db").start()
    try:
        daemon.call("inject", data={"site": SITES})
        for n in range(10):
            daemon.call("inject", data=dataset_doc(f"d{n}", blocks=100, files=4))
    finally:
        daemon.stop()
    assert not Path(f"{daemon.database}-wal").exists()
    yield Path(daemon.database)
    shutil.rmtree(root, ignore_errors=True)


def damage(store: Path, copy: Path, btree: str) -> int:
    """Copy `store` and overwrite a page in the middle of `btree` (a table or index)
    with garbage; returns the page number.  The middle in key order (dbstat's path),
    not in page numbers: the last leaf is read by the start's `max(id)`, which would
    find the damage before what each test means to show (page numbers follow how the
    tables' writes interleaved, which varies from run to run)."""
    copy.write_bytes(store.read_bytes())
    db = sqlite3.connect(uri.read_only(store), uri=True)
    try:
        size = db.execute("PRAGMA page_size").fetchone()[0]
        pages = [row[0] for row in db.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY path",
            (btree,))]
    finally:
        db.close()
    assert len(pages) >= 3, f"{btree} has {len(pages)} leaf pages"
    page = pages[len(pages) // 2]
    with open(copy, "r+b") as f:
        f.seek((page - 1) * size)
        f.write(bytes([0xA5]) * size)
    return page


def test_damage_in_what_the_start_loads_stops_it(sound_store, workdir):
    """With --rebuild the start reads every block row (from a snapshot it reads none:
    see the next test)."""
    database = workdir / "damaged.db"
    damage(sound_store, database, "blocks")
    before = digest(database)
    daemon = on(workdir, database)
    daemon.extra_args = [*daemon.extra_args, "--rebuild"]
    with pytest.raises(RuntimeError, match="exited with 1"):
        daemon.start()
    line = (f"database {database} is damaged (table blocks: database disk image is "
            f"malformed); {RECOVERY}{database} .recover)")
    assert [e.split(" ERROR dynamod: ")[1] for e in errors(daemon.log())] == [line], daemon.log()
    assert "Traceback" not in daemon.log()
    assert digest(database) == before
    checked = run_dynamod("check", "--database", database)
    assert checked.returncode == 1 and "table blocks" in checked.stderr


@pytest.mark.parametrize("btree, named", [
    ("blocks", "table blocks: database disk image is malformed"),   # started from the snapshot
    ("files", "table files: database disk image is malformed"),
    ("sqlite_autoindex_files_1", "index sqlite_autoindex_files_1 of table files: Page "),
    ("files_block", "index files_block of table files: Page "),
])
def test_damage_found_in_the_background_stops_the_daemon(sound_store, workdir, btree, named):
    """The files and the indexes are not read at start-up: the quick_check that runs
    once the daemon serves finds the damage, and the daemon stops for good (status 65,
    which the unit does not restart: RestartPreventExitStatus)."""
    database = workdir / "damaged.db"
    page = damage(sound_store, database, btree)
    daemon = on(workdir, database)
    try:
        daemon.start()
    except RuntimeError:
        pass  # stopped before the first ping
    assert daemon.process.wait(30) == 65, daemon.log()
    log = daemon.log()
    assert "Traceback" not in log
    [line] = errors(log)
    assert f" CRITICAL dynamod: database {database} is damaged ({named}" in line
    if "Page" in named:
        assert f"Page {page}: " in line
    assert f"{RECOVERY}{database} .recover)" in line
    assert not os.path.exists(daemon.socket)
    checked = run_dynamod("check", "--database", database)
    assert checked.returncode == 1
    assert named.split(":")[0] in checked.stderr


@pytest.mark.parametrize("how", ["replaced", "removed"])
def test_a_database_replaced_or_removed_under_the_daemon_stops_it(workdir, how):
    """A backup copied into place by hand while the daemon runs (or the file removed):
    its next commits would have gone to the old file, lost at the next start.  The next
    change stops the daemon for good (65), nothing acknowledged after the swap, and the
    copy is left as it was put there."""
    database = workdir / "inventory.db"
    daemon = on(workdir, database)
    daemon.start()
    try:
        daemon.inject_json({"site": [{"name": "T2_INT_A", "host": "h", "backend": "g://h/"}]})
        copy = workdir / "copy.db"
        assert run_dynamod("backup", "--socket", daemon.socket, copy).returncode == 0
        daemon.inject_json(dataset_doc("before"))
        if how == "replaced":
            os.rename(copy, database)
            kept = digest(database)
        else:
            os.unlink(database)
        result = daemon.inject_json(dataset_doc("after"), check=False)
        assert result.returncode != 0
        assert daemon.process.wait(30) == 65, daemon.log()
    finally:
        daemon.stop()
    [line] = errors(daemon.log())
    assert (f" CRITICAL dynamod: database {database} was {how} while dynamod served it; "
            f"nothing more is written: start dynamod again to serve the file now there (to "
            f"put a backup in place, stop dynamod and run dynamod restore COPY)") in line
    if how == "replaced":
        assert digest(database) == kept


def test_a_file_that_is_not_a_database_is_refused(workdir):
    database = workdir / "inventory.db"
    database.write_bytes(b"not a database: " + os.urandom(8192))
    before = digest(database)
    daemon = on(workdir, database)
    with pytest.raises(RuntimeError, match="exited with 1"):
        daemon.start()
    assert [e.split(" ERROR dynamod: ")[1] for e in errors(daemon.log())] == [
        f"database {database} is damaged (file is not a database); "
        f"{RECOVERY}{database} .recover)"]
    assert "Traceback" not in daemon.log()
    assert digest(database) == before
    assert not Path(f"{database}-wal").exists()


def test_check_while_a_daemon_serves(daemon):
    daemon.call("inject", data={"site": SITES})
    daemon.call("inject", data=dataset_doc("live", blocks=5))
    checked = run_dynamod("check", "--state-dir", daemon.state_dir)
    assert (checked.returncode, checked.stdout) == (0, f"{daemon.database}: ok\n")
    deadline = time.monotonic() + 10
    while "quick_check of " not in daemon.log():  # the daemon's own check, found it sound
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)
    daemon.call("inject", data=dataset_doc("later"))  # nothing was locked or changed


def test_a_newer_schema_is_refused_before_anything_is_written(workdir):
    database = workdir / "inventory.db"
    daemon = on(workdir, database).start()
    daemon.call("inject", data={"site": SITES})
    daemon.stop()
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
        db.execute("PRAGMA user_version = 99")
    before = digest(database)
    with pytest.raises(RuntimeError, match="exited with 1"):
        daemon.start()
    assert [e.split(" ERROR dynamod: ")[1] for e in errors(daemon.log())] == [
        f"database {database} has schema version 99; this dynamod knows versions up to "
        f"{current_schema()}: upgrade dynamod"]
    assert digest(database) == before
    assert database.read_bytes()[18:20] == b"\x01\x01"  # still a rollback journal
    assert not Path(f"{database}-wal").exists()


def current_schema() -> int:
    from dynamod.store.sqlite import SCHEMA_VERSION

    return SCHEMA_VERSION


# -------------------------------------------------------------------- 4: backups
def test_a_backup_that_does_not_fit_leaves_nothing(rig):
    (rig.root / "db").mkdir()
    daemon = rig.daemon(rig.root / "db" / "inventory.db")
    daemon.call("inject", data={"site": SITES})
    for n in range(6):
        daemon.call("inject", data=dataset_doc(f"d{n}", blocks=20, files=10))
    small = rig.tmpfs("small", "256k")
    assert logical_size(daemon.database) > 2 * 256 * 1024
    dest = small / "copy.db"
    with pytest.raises(RemoteError) as refused:
        daemon.call("backup", path=str(dest))
    assert refused.value.code == "store_error"
    assert refused.value.message.startswith(f"backup to {dest} failed: ")
    assert "full" in refused.value.message
    assert list(small.iterdir()) == []  # no DEST, no temporary file, no journal

    rig.run("mount", "-o", "remount,size=64m", str(small))  # the same DEST, with room
    done = daemon.call("backup", path=str(dest))
    assert done["path"] == str(dest) and done["bytes"] == os.path.getsize(dest)
    assert [p.name for p in small.iterdir()] == ["copy.db"]
    with pytest.raises(RemoteError, match="exists; a backup never overwrites"):
        daemon.call("backup", path=str(dest))
    assert run_dynamod("check", "--database", dest).returncode == 0
    restored = on(rig.root, dest, "restored").start()
    try:
        assert restored.call("get_dataset", name="/Integrity/d5/RAW")["num_files"] == 200
    finally:
        restored.stop()
