"""Sealed applications, attacked as an unprivileged account through real daemons.

The account is uid 65534, mapped to the Dynamo user `guest` with the
operator role on applications.  Each test is one way a forked script could
reach the daemon, read what is not its own, see an inconsistent inventory,
exceed its limits, hold the writer slot or hold up everyone else: the attack
must fail, and the refusal must be clear.
"""

import os
import pwd
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from support.apps import checksum, wait_for_end
from support.daemon import Daemon, fresh_directory, running, write_config
from support.nobody import NOBODY, as_nobody, map_nobody
from support.wire import requests


def run_as_nobody(daemon, script: str, *args, **params) -> dict:
    """Submit `script` asynchronously as guest; its record once it ended."""
    answer = as_nobody(requests, daemon.socket, [{"method": "run_application", "params": {
        "script": script, "path": "/tmp/attack.py", "args": list(args), "attach": False,
        **params}}])[0]
    assert "result" in answer, answer
    return wait_for_end(daemon, answer["result"]["id"])


def output(app: dict) -> str:
    return (Path(app["workarea"]) / "stdout").read_text()


def errors(app: dict) -> str:
    return (Path(app["workarea"]) / "stderr").read_text()


def shared_writable(pid) -> list[tuple[int, int, str]]:
    """(start, end, what) of the writable shared mappings of process `pid`."""
    found = []
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split(None, 5)
            if fields[1][1] == "w" and fields[1][3] == "s":
                start, end = (int(x, 16) for x in fields[0].split("-"))
                found.append((start, end, fields[5].strip() if len(fields) > 5 else ""))
    return found


def daemon_pid(daemon) -> int:
    return daemon.call("status")["pid"]


@pytest.fixture
def guest(daemon):
    """The daemon, with a site and uid 65534 as an application operator."""
    map_nobody(daemon, "operator", "application")
    daemon.call("inject", data={"site": [{"name": "T2_SEED"}]})
    return daemon


def configured(daemon_table=None, **applications) -> tuple[Path, Daemon]:
    """A daemon (not started) whose [applications] table is `applications`."""
    root = fresh_directory()
    config = root / "dynamod.toml"
    write_config(config, {"daemon": daemon_table or {}, "applications": applications})
    return root, Daemon.in_directory(root, "--config", str(config))


@pytest.fixture
def make_daemon():
    """make(daemon_table=None, **applications): a started, configured daemon with guest."""
    made = []

    def make(daemon_table=None, **applications):
        root, daemon = configured(daemon_table, **applications)
        made.append((root, daemon))
        daemon.start()
        map_nobody(daemon, "operator", "application")
        return daemon

    yield make
    for root, daemon in made:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------- 1, 2: shared mappings
MAPS = """
import json
found = []
for line in open('/proc/self/maps'):
    fields = line.split(None, 5)
    if fields[1][3] == 's':
        found.append([fields[1], fields[5].strip() if len(fields) > 5 else ''])
print(json.dumps(found))
"""


def test_a_read_only_application_holds_no_writable_shared_mapping(guest):
    """The daemon itself has them (io_uring rings, SQLite's WAL index): the child must not."""
    assert [w for _, _, w in shared_writable(daemon_pid(guest)) if w.endswith("-shm")]
    app = run_as_nobody(guest, MAPS)
    assert app["status"] == "done", errors(app)
    shared = orjson.loads(output(app))
    assert not [m for m in shared if "w" in m[0]], shared
    # what may stay: read-only mappings of files opened read-only (glibc's gconv cache)
    assert all(perms.startswith("r-") and what.startswith("/usr/") for perms, what in shared)


ATTACK = """
import ctypes, json, os, sys
targets = json.loads(sys.argv[1])
outcome = []
for start, end, what in targets:
    pid = os.fork()
    if pid == 0:
        ctypes.memset(start, 0xff, end - start)   # the whole ring, the whole WAL index
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    outcome.append([what, os.waitstatus_to_exitcode(status)])
print(json.dumps(outcome))
"""


def test_writing_where_the_ring_and_the_wal_index_were_reaches_nothing(guest):
    """The script is told where the daemon's shared mappings are and overwrites them:
    in the sealed child nothing is there (SIGSEGV), and the daemon goes on committing
    to a sound database."""
    targets = shared_writable(daemon_pid(guest))
    kinds = {"io_uring" if "io_uring" in w else "shm" if w.endswith("-shm") else w
             for _, _, w in targets}
    assert "shm" in kinds
    app = run_as_nobody(guest, ATTACK, orjson.dumps(targets).decode())
    assert app["status"] == "done", errors(app)
    outcome = orjson.loads(output(app))
    assert [code for _, code in outcome] == [-signal.SIGSEGV] * len(targets), outcome
    for n in range(20):
        guest.call("inject", data={"site": [{"name": f"T2_AFTER_{n}"}]})
    db = sqlite3.connect(f"file:{guest.database}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("SELECT count(*) FROM sites").fetchone() == (21,)
    finally:
        db.close()
    guest.restart()
    assert len(guest.call("list_sites")["sites"]) == 21


# ------------------------------------------------------- 3: writer imports
REPORT = "import colorsys\nfor site in inventory.sites.values():\n" \
         "    print(site.name, colorsys.rgb_to_hsv(0.2, 0.4, 0.4))\n"
EVIL = "from dynamod.executable import inventory, Site\n" \
       "inventory.update(Site('T2_EVIL'))\n" \
       "def rgb_to_hsv(*a):\n    return 'evil'\n"


def run_as(who: str, daemon, script: str, **params) -> dict:
    """Submit asynchronously as guest (uid 65534) or as root; the ended record."""
    if who == "guest":
        return run_as_nobody(daemon, script, **params)
    answer = requests(daemon.socket, [{"method": "run_application", "params": {
        "script": script, "attach": False, **params}}])[0]
    return wait_for_end(daemon, answer["result"]["id"])


@pytest.mark.parametrize("who", ["guest", "root"])
def test_a_writer_imports_only_what_root_installed(guest, workdir, who):
    """Root authorized report.py (which imports colorsys) for guest; guest runs the same
    bytes from a directory holding its own colorsys.py, from there, as `dynamo report.py
    -W -t report` would.  The writer never imports the caller's module; a read-only run
    keeps the script's directory first (documented), which shows the attack is real.
    (Here the interpreter lives in root's home, which uid 65534 cannot read, so guest's
    writer cannot import the standard library's colorsys either: it fails cleanly.
    Root's writer shows the module it does import.)"""
    home = workdir / "guest"
    home.mkdir()
    (home / "report.py").write_text(REPORT)
    (home / "colorsys.py").write_text(EVIL)
    guest.call("authorize_script", title="report", checksum=checksum(REPORT))
    params = {"path": str(home / "report.py"), "cwd": str(home)}
    writer = run_as(who, guest, REPORT, write=True, title="report", **params)
    assert "evil" not in output(writer)
    if who == "root":
        assert writer["status"] == "done", errors(writer)
        assert "T2_SEED (0.5, 0.5, 0.4)" in output(writer)
    elif writer["status"] != "done":
        assert "No module named 'colorsys'" in errors(writer)
    reader = run_as(who, guest, REPORT, **params)
    assert reader["status"] == "done" and "T2_SEED evil" in output(reader), errors(reader)
    names = {s["name"] for s in guest.call("list_sites")["sites"]}
    assert names == {"T2_SEED"}, "the caller's module ran in the writer"


# ----------------------------------------------------- 4: private records
WALK = """
import gc, json, sys, types
gc.unfreeze()   # the daemon froze its objects before the fork: bring them back in view
markers = json.loads(sys.argv[1])
own = {id(m) for m in markers} | {id(sys.argv[1])}   # the walk's own copies
seen = set()

def look(value):
    if isinstance(value, str) and id(value) not in own:
        for m in markers:
            if m in value:
                seen.add(m)
    elif isinstance(value, (bytes, bytearray)):
        for m in markers:
            if m.encode() in value:
                seen.add(m)

for obj in gc.get_objects():
    frame = (obj.cr_frame if isinstance(obj, types.CoroutineType) else
             obj.gi_frame if isinstance(obj, types.GeneratorType) else None)
    if frame is not None:   # a suspended task's locals
        for v in frame.f_locals.values():
            look(v)
    if isinstance(obj, (bytes, bytearray)):
        look(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            look(k); look(v)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            look(v)
    else:
        for cls in type(obj).__mro__:
            for slot in getattr(cls, '__slots__', ()):
                look(getattr(obj, slot, None))
print(json.dumps(sorted(seen)))
"""


def test_nothing_private_reaches_an_application(guest):
    """Users' e-mails, DNs and accounts, the grants, the script authorizations and the
    arguments of others' applications are dropped in the child before user code: a walk
    of every object finds none of them (it does find the inventory)."""
    dn = "/DC=org/DC=example/OU=Users/CN=Private Person"
    guest.client_command("user_auth", "--user", "jane", "--email", "jane.private@example.org",
                         "--dn", dn, "--account", "daemon", "--role", "admin", "--target",
                         "inventory", "--yes")
    digest = checksum("print('jane only')\n")
    guest.call("authorize_script", title="private-title", checksum=digest, user="jane")
    root_app = requests(guest.socket, [{"method": "run_application", "params": {
        "script": "pass\n", "args": ["--token=s3cr3t-t0ken"], "attach": False}}])[0]
    wait_for_end(guest, root_app["result"]["id"])
    markers = ["jane.private@example.org", "CN=Private Person", digest, "s3cr3t-t0ken",
               "private-title", "T2_SEED"]
    app = run_as_nobody(guest, WALK, orjson.dumps(markers).decode())
    assert app["status"] == "done", errors(app)
    assert orjson.loads(output(app)) == ["T2_SEED"]


def test_what_others_run_or_queue_does_not_reach_an_application(guest, workdir):
    """Another user's application that runs (its record held by the daemon's task that
    waits for it), one queued behind it, and one attached (the request's handler waits,
    suspended, until it ends): none of their scripts, arguments or titles is found by a
    walk of every object and every suspended frame."""
    release = workdir / "release"
    guest.call("authorize_script", title="hold-h0ld-title", checksum=checksum(HOLD))
    queued_script = QUEUED + "# qu3u3d-script\n"
    guest.call("authorize_script", title="queued", checksum=checksum(queued_script))
    running = requests(guest.socket, [{"method": "run_application", "params": {
        "script": HOLD, "title": "hold-h0ld-title", "write": True,
        "args": [str(release), "--token=runn1ng-t0ken"], "attach": False}}])[0]["result"]
    while guest.call("status")["applications"]["writer"] is None:
        time.sleep(0.02)
    queued = requests(guest.socket, [{"method": "run_application", "params": {
        "script": queued_script, "title": "queued", "write": True,
        "attach": False}}])[0]["result"]
    attached_script = workdir / "attached.py"
    attached_script.write_text(HOLD + "# att4ch3d-script\n")
    attached = threading.Thread(target=guest.dynamo, args=(f"{attached_script} {release}",))
    attached.start()
    try:
        while [a["status"] for a in guest.call("list_applications")["applications"]].count(
                "run") < 2:
            time.sleep(0.02)
        markers = ["h0ld-title", "runn1ng-t0ken", "qu3u3d-script", "att4ch3d-script",
                   "T2_SEED"]
        app = run_as_nobody(guest, WALK, orjson.dumps(markers).decode())
    finally:
        release.touch()
        attached.join(30)
    assert app["status"] == "done", errors(app)
    assert orjson.loads(output(app)) == ["T2_SEED"]
    assert wait_for_end(guest, queued["id"])["status"] == "done"
    assert wait_for_end(guest, running["id"])["status"] == "done"


MEMORY_SCAN = """
import ctypes, os, sys
# the secret's two halves, never joined in this process: what holds it whole is not ours
head, tail = sys.argv[1].encode(), sys.argv[2].encode()
found = []

def holds(data):
    at = data.find(head)
    while at >= 0:
        if data[at + len(head):at + len(head) + len(tail)] == tail:
            return True
        at = data.find(head, at + 1)
    return False

try:
    if holds(open('/proc/self/environ', 'rb').read()):
        found.append('/proc/self/environ')
except PermissionError:   # not dumpable: the file is root's
    pass
if any(holds(value) for value in os.environb.values()):
    found.append('os.environ')
for line in open('/proc/self/maps').readlines():   # read as ctypes reads it: in place
    fields = line.split()
    name = fields[5] if len(fields) > 5 else 'anonymous'
    if fields[1][0] == 'r' and not name.startswith(('[vvar', '[vsyscall')):
        start, end = (int(x, 16) for x in fields[0].split('-'))
        if holds(ctypes.string_at(start, end - start)):
            found.append(name)
print(sorted(set(found)))
"""


def test_the_daemons_environment_does_not_reach_an_application(workdir):
    """The service's environment (a unit's Environment=) is not an application's: not in
    os.environ, not in /proc/self/environ, not on its stack, where the kernel put it
    for the daemon."""
    secret = "s3cr3t-0f-th3-s3rv1c3"
    root = fresh_directory()
    daemon = Daemon.in_directory(root)
    try:
        daemon.start(env={**daemon.env, "DYNAMO_TEST_PASSWORD": secret})
        map_nobody(daemon, "operator", "application")
        app = run_as_nobody(daemon, MEMORY_SCAN, secret[:9], secret[9:])
        assert app["status"] == "done", errors(app)
        assert output(app) == "[]\n"
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------- 5: a snapshot
SNAPSHOT = """
import json, os, sys, time
shared = sys.argv[1]
for walk in range(3):
    while not os.path.exists(f'{shared}/go{walk}'):
        time.sleep(0.01)
    seen = {}
    for dataset in inventory.datasets.values():
        for block in dataset.blocks:
            seen[block.name] = [len(block.files), block.num_files,
                                sum(f.size for f in block.files), block.size]
    with open(f'{shared}/walk{walk}.tmp', 'w') as out:
        json.dump(seen, out)
    os.rename(f'{shared}/walk{walk}.tmp', f'{shared}/walk{walk}')
"""


def _files(block: str, first: int, count: int) -> list:
    return [{"name": f"/store/snap/{block}/{n}.root", "size": 100 + n}
            for n in range(first, first + count)]


def test_an_application_sees_one_committed_snapshot(make_daemon, workdir):
    """With a file cache of 2 files, every walk asks the daemon for the files again,
    while injections add files to the same blocks between the walks: each walk sees
    the inventory as forked, files included."""
    daemon = make_daemon({"file_cache": 2})
    blocks = [f"b{n}" for n in range(4)]
    daemon.call("inject", data={"dataset": [{"name": "/Snap/Shot/RAW", "blocks": [
        {"name": b, "files": _files(b, 0, 10)} for b in blocks]}]})
    shared = workdir / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    answer = as_nobody(requests, daemon.socket, [{"method": "run_application", "params": {
        "script": SNAPSHOT, "args": [str(shared)], "attach": False}}])[0]
    app_id = answer["result"]["id"]
    walks = []
    for walk in range(3):
        (shared / f"go{walk}").touch()
        deadline = time.monotonic() + 30
        while not (shared / f"walk{walk}").exists():
            assert time.monotonic() < deadline, daemon.call("poll_application", id=app_id)
            time.sleep(0.01)
        walks.append(orjson.loads((shared / f"walk{walk}").read_bytes()))
        daemon.call("inject", data={"dataset": [{"name": "/Snap/Shot/RAW", "blocks": [
            {"name": b, "files": _files(b, 10 + 5 * walk, 5)} for b in blocks]}]})
    app = wait_for_end(daemon, app_id)
    assert app["status"] == "done", errors(app)
    as_forked = {b: [10, 10, sum(100 + n for n in range(10))] for b in blocks}
    for seen in walks:
        assert {b: v[:3] for b, v in seen.items()} == as_forked
        assert all(v[2] == v[3] for v in seen.values())
    assert daemon.call("get_block", name="/Snap/Shot/RAW#b0")["num_files"] == 25


CONSISTENT = """
bad = []
for dataset in inventory.datasets.values():
    for block in dataset.blocks:
        files = block.files
        if len(files) != block.num_files or sum(f.size for f in files) != block.size:
            bad.append(block.name)
print(len(bad))
"""


def test_applications_never_see_a_change_that_is_not_committed(guest):
    """Applications forked while injections apply and commit: every block an
    application sees agrees with its files (it never sees a half-applied change)."""
    import threading

    stop = threading.Event()

    def inject():
        n = 0
        while not stop.is_set():
            guest.call("inject", data={"dataset": [{"name": "/Busy/Block/RAW", "blocks": [
                {"name": "b", "files": _files("busy", n, 50)}]}]})
            n += 50

    injector = threading.Thread(target=inject)
    injector.start()
    try:
        apps = [run_as_nobody(guest, CONSISTENT) for _ in range(8)]
    finally:
        stop.set()
        injector.join(30)
    assert [(a["status"], output(a)) for a in apps] == [("done", "0\n")] * 8


# ---------------------------------------------------------------- 6: limits
WAIT = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]):\n    time.sleep(0.02)\n"


@pytest.mark.parametrize("limits, message", [
    ({"max_per_user": 2, "max_total": 10}, "guest has 2 applications active (limit 2 per user)"),
    ({"max_per_user": 10, "max_total": 2}, "2 applications are active (limit 2)")])
def test_applications_at_once_are_limited(make_daemon, workdir, limits, message):
    daemon = make_daemon(**limits)
    release = workdir / "release"
    submit = {"method": "run_application", "params": {
        "script": WAIT, "args": [str(release)], "attach": False}}
    answers = as_nobody(requests, daemon.socket, [submit] * 3)
    assert ["result" in a for a in answers] == [True, True, False]
    assert answers[2]["error"]["code"] == "busy"
    assert message in answers[2]["error"]["message"]
    root = requests(daemon.socket, [submit])[0]   # the superuser is not held back
    assert "result" in root
    release.touch()
    for answer in answers[:2] + [root]:
        assert wait_for_end(daemon, answer["result"]["id"])["status"] == "done"


@pytest.mark.parametrize("field, params", [
    ("title", {"title": "t" * (2 << 20)}), ("path", {"path": "/p" * 5000}),
    ("args", {"args": ["a" * 1000] * 100}), ("cwd", {"cwd": "/c" * 4000})])
def test_title_path_arguments_are_bounded_and_nothing_is_kept(guest, field, params):
    before = guest.call("list_applications")["applications"]
    answer = as_nobody(requests, guest.socket, [{"method": "run_application", "params": {
        "script": "pass\n", "attach": False, **params}}])[0]
    assert (answer["error"]["code"], answer["error"]["field"]) == ("invalid_params", field)
    assert guest.call("list_applications")["applications"] == before
    db = sqlite3.connect(f"file:{guest.database}?mode=ro", uri=True)
    try:
        assert db.execute("SELECT count(*) FROM applications").fetchone() == (len(before),)
    finally:
        db.close()


def test_records_and_work_areas_expire(make_daemon):
    daemon = make_daemon(retention_days=1e-5)   # under a second
    app = run_as_nobody(daemon, "print('old')\n")
    area = Path(app["workarea"])
    assert area.is_dir()
    time.sleep(1.2)
    daemon.restart()   # start-up deletes what expired (and so does an hourly sweep)
    answer = requests(daemon.socket, [{"method": "poll_application",
                                       "params": {"id": app["id"]}}])[0]
    assert answer["error"]["code"] == "not_found"
    assert not area.exists()
    db = sqlite3.connect(f"file:{daemon.database}?mode=ro", uri=True)
    try:
        deadline = time.monotonic() + 10   # the deletion commits in the background
        while db.execute("SELECT count(*) FROM applications").fetchone() != (0,):
            assert time.monotonic() < deadline, "the expired record stays in the store"
            time.sleep(0.02)
    finally:
        db.close()
    fresh = run_as_nobody(daemon, "pass\n")
    assert fresh["id"] > app["id"], "an expired id is never given again"


def test_a_user_sees_only_their_own_records(guest):
    root = requests(guest.socket, [{"method": "run_application", "params": {
        "script": "pass\n", "args": ["--token=s3cr3t"], "attach": False}}])[0]["result"]
    wait_for_end(guest, root["id"])
    own = run_as_nobody(guest, "pass\n")
    listed, polled = as_nobody(requests, guest.socket, [
        {"method": "list_applications"}, {"method": "poll_application",
                                          "params": {"id": root["id"]}}])
    assert [a["id"] for a in listed["result"]["applications"]] == [own["id"]]
    assert polled["error"]["code"] == "not_found"
    map_nobody(guest, "admin", "application")
    listed = as_nobody(requests, guest.socket, [{"method": "list_applications"}])[0]
    assert [a["id"] for a in listed["result"]["applications"]] == [own["id"], root["id"]]


LIMITS = """
import json, resource
limits = {name: resource.getrlimit(getattr(resource, name))
          for name in ('RLIMIT_CPU', 'RLIMIT_NPROC', 'RLIMIT_CORE')}
try:
    hog = bytearray(600 << 20)
    limits['hog'] = 'allocated'
except MemoryError:
    limits['hog'] = 'refused'
print(json.dumps(limits))
"""


def test_an_application_runs_within_its_resource_limits(make_daemon):
    daemon = make_daemon(memory=256 << 20, cpu_time=100, processes=50, file_size=1 << 20)
    app = run_as_nobody(daemon, LIMITS)
    assert app["status"] == "done", errors(app)
    assert orjson.loads(output(app)) == {"RLIMIT_CPU": [100, 100], "RLIMIT_NPROC": [50, 50],
                                         "RLIMIT_CORE": [0, 0], "hog": "refused"}
    # output without end (the work area is on the database's filesystem): it ends at
    # file_size, and the daemon commits on
    app = run_as_nobody(daemon, "while True:\n    print('x' * 4095)\n")
    assert app["status"] == "failed" and "OSError: [Errno 27] File too large" in errors(app)
    assert os.path.getsize(Path(app["workarea"]) / "stdout") == 1 << 20
    daemon.call("inject", data={"site": [{"name": "T2_AFTER"}]})


SERVICE_ACCOUNT = "daemon"   # a system account of every Debian, as the unit's `dynamo`
UNIT = Path(__file__).parent.parent / "systemd" / "dynamod.service"


def _unit_capabilities() -> list[str]:
    """What the shipped unit gives the daemon (AmbientCapabilities=)."""
    return re.search(r"^AmbientCapabilities=(.*)$", UNIT.read_text(), re.M)[1].split()


def _as_service(capabilities: list[str]) -> list[str]:
    """setpriv's command line that runs a program as the unit does: the service account,
    these capabilities ambient."""
    names = ",".join("+" + c.removeprefix("CAP_").lower() for c in capabilities)
    return ["setpriv", f"--reuid={SERVICE_ACCOUNT}", f"--regid={SERVICE_ACCOUNT}",
            "--clear-groups", f"--inh-caps={names}", f"--ambient-caps={names}"]


def _uid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("Uid:")).split()[1])


@pytest.fixture
def service_account():
    """The service account's passwd entry; skips where the daemon cannot run as it."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv")
    try:
        account = pwd.getpwnam(SERVICE_ACCOUNT)
    except KeyError:
        pytest.skip(f"no account {SERVICE_ACCOUNT}")
    ran = subprocess.run([*_as_service(_unit_capabilities()), sys.executable, "-c",
                          "import subprocess, sys, dynamod.server; "
                          "subprocess.run([sys.executable, '-c', ''], check=True)"],
                         capture_output=True, timeout=60, cwd="/")
    if ran.returncode != 0:   # the interpreter may be in a directory only root reads (as the
        # daemon runs it again: setpriv's own execve passes where the account's does not)
        pytest.skip(f"{SERVICE_ACCOUNT} cannot run {sys.executable} with dynamod")
    return account


@pytest.mark.parametrize("capabilities", ["the unit's", "the unit's but CAP_KILL"])
def test_a_daemon_run_as_the_unit_runs_it_stops_an_application(service_account,
                                                               capabilities):
    """The unit's account and capabilities (systemd/dynamod.service): an application runs
    as its caller, which only CAP_KILL lets the daemon signal; without it, a kill is
    refused in words (and said at start-up), and the record stays true."""
    held = _unit_capabilities()
    if capabilities != "the unit's":
        held.remove("CAP_KILL")
    root = fresh_directory()
    daemon = Daemon.in_directory(root)
    daemon.state_dir.mkdir()
    for path in (root, daemon.state_dir):
        os.chown(path, service_account.pw_uid, service_account.pw_gid)
    pid = None
    try:
        daemon.start(wrapper=_as_service(held))
        map_nobody(daemon, "operator", "application")
        app = as_nobody(requests, daemon.socket, [{"method": "run_application", "params": {
            "script": "import time\ntime.sleep(60)\n", "attach": False}}])[0]["result"]
        while (record := daemon.call("poll_application", id=app["id"]))["status"] != "run":
            time.sleep(0.02)
        pid = record["pid"]
        while _uid(pid) != NOBODY:   # the child takes its caller's uid after the fork
            time.sleep(0.01)
        answer = requests(daemon.socket, [{"method": "kill_application",
                                           "params": {"id": app["id"]}}])[0]
        if "CAP_KILL" in held:
            assert "result" in answer, answer
            assert wait_for_end(daemon, app["id"])["status"] == "killed"
            pid = None
        else:
            assert answer["error"]["code"] == "not_configured", answer
            assert "without CAP_KILL" in answer["error"]["message"]
            assert daemon.call("poll_application", id=app["id"])["status"] == "run"
            assert "CAP_KILL is missing" in daemon.log()
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


def _cgroup2_mount() -> str | None:
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if fields[2] == "cgroup2" and os.access(fields[1], os.W_OK):
                return fields[1]
    return None


@pytest.fixture
def in_cgroup():
    """(base, daemon): a started daemon with guest, `cgroup = base` (a new cgroup below the
    hierarchy's root); afterwards the daemon stopped and every cgroup under base removed."""
    mount = _cgroup2_mount()
    if mount is None:
        pytest.skip("no writable cgroup v2 hierarchy")
    base = os.path.join(mount, f"dynamod-test-{os.getpid()}")
    root, daemon = configured(cgroup=base)
    try:
        daemon.start()
        map_nobody(daemon, "operator", "application")
        yield base, daemon
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)
        if os.path.isdir(base):
            for leaf in [*Path(base).glob("app-*"), os.path.join(base, "daemon"), base]:
                if os.path.isdir(leaf):
                    os.rmdir(leaf)


def test_each_application_runs_in_a_cgroup_of_its_own(in_cgroup):
    base, daemon = in_cgroup
    assert open(f"/proc/{daemon_pid(daemon)}/cgroup").read().rstrip().endswith("/daemon")
    app = run_as_nobody(daemon, "print(open('/proc/self/cgroup').read())")
    assert app["status"] == "done", errors(app)
    own = [line for line in output(app).splitlines() if line.startswith("0::")]
    assert own and own[0].endswith(f"/dynamod-test-{os.getpid()}/app-{app['id']}")
    deadline = time.monotonic() + 5
    while os.path.exists(os.path.join(base, f"app-{app['id']}")):
        assert time.monotonic() < deadline, "the application's cgroup was left behind"
        time.sleep(0.02)


LEAVE_BEHIND = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(sys.argv[1] + '.tmp', 'w') as out:
            out.write(str(os.getpid()))
        os.rename(sys.argv[1] + '.tmp', sys.argv[1])
        while True:
            time.sleep(60)
    os._exit(0)
time.sleep(600)
"""


def test_what_an_application_left_running_dies_after_a_crash(in_cgroup, workdir):
    """A script forks, leaves the session and forks again: that process outlives a kill -9
    of the daemon (the script itself dies with it) and is still in the application's
    cgroup; the restarted daemon kills it, removes the cgroup and says so."""
    base, daemon = in_cgroup
    shared = workdir / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    answer = as_nobody(requests, daemon.socket, [{"method": "run_application", "params": {
        "script": LEAVE_BEHIND, "path": "/tmp/attack.py", "args": [str(shared / "pid")],
        "attach": False}}])[0]
    cgroup = os.path.join(base, f"app-{answer['result']['id']}")
    deadline = time.monotonic() + 30
    while not (shared / "pid").exists():
        assert time.monotonic() < deadline, daemon.call("poll_application",
                                                        id=answer["result"]["id"])
        time.sleep(0.02)
    left = int((shared / "pid").read_text())
    try:
        daemon.kill9()
        while Path(cgroup, "cgroup.procs").read_text().split() != [str(left)]:
            assert time.monotonic() < deadline, "the script outlived the daemon"
            time.sleep(0.02)
        assert running(left)
        daemon.start()
        assert not running(left)
        assert not os.path.exists(cgroup)
        assert f"cgroup {base}: killed 1 process left in the cgroups of an earlier " \
               f"daemon's applications (app-{answer['result']['id']})" in daemon.log()
    finally:
        if running(left):
            os.kill(left, signal.SIGKILL)


# ------------------------------------------------------- 7: the writer slot
STOPPED_WRITER = "import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)\n" \
                 "inventory.update(Site('T2_NEVER'))\n"


def test_a_reader_asks_for_no_time_limit_in_vain(guest):
    """A read-only application holds a read snapshot (the WAL cannot be checkpointed
    past it): it too is bounded, unless the superuser asks."""
    submit = {"method": "run_application", "params": {
        "script": "pass\n", "timeout": -1, "attach": False}}
    answer = as_nobody(requests, guest.socket, [submit])[0]
    assert (answer["error"]["code"], answer["error"]["field"]) == ("invalid_params", "timeout")
    assert "[applications] max_time" in answer["error"]["message"]
    root = requests(guest.socket, [submit])[0]
    assert wait_for_end(guest, root["result"]["id"])["status"] == "done"


def test_a_writer_asks_for_no_time_limit_in_vain(guest):
    guest.call("authorize_script", title="forever", checksum=checksum("pass\n"))
    answer = as_nobody(requests, guest.socket, [{"method": "run_application", "params": {
        "script": "pass\n", "title": "forever", "write": True, "timeout": -1,
        "attach": False}}])[0]
    assert (answer["error"]["code"], answer["error"]["field"]) == ("invalid_params", "timeout")
    assert "only the superuser may lift it" in answer["error"]["message"]
    root = requests(guest.socket, [{"method": "run_application", "params": {
        "script": "pass\n", "title": "forever", "write": True, "timeout": -1,
        "attach": False}}])[0]
    assert wait_for_end(guest, root["result"]["id"])["status"] == "done"


def test_a_stopped_writer_is_shown_and_ends_at_its_limit(make_daemon):
    """guest's authorized writer stops itself (SIGSTOP) holding the slot: status and the
    listing say whose it is, an injection says whom it waits for, and the writer is
    killed at writer_max_time, after which the injection goes through."""
    daemon = make_daemon(writer_max_time=3, kill_grace=0.5)
    daemon.call("authorize_script", title="stuck", checksum=checksum(STOPPED_WRITER))
    answer = as_nobody(requests, daemon.socket, [{"method": "run_application", "params": {
        "script": STOPPED_WRITER, "title": "stuck", "write": True, "attach": False}}])[0]
    app_id = answer["result"]["id"]
    deadline = time.monotonic() + 10
    while daemon.call("status")["applications"]["writer"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    holder = daemon.call("status")["applications"]["writer"]
    assert (holder["app"], holder["title"], holder["user"]) == (app_id, "stuck", "guest")
    listing = daemon.dynamo("--list")
    assert f"writer slot: held by read/write application {app_id} ('stuck' of guest" \
        in listing.stdout
    started = time.monotonic()
    injected = daemon.inject("--site", "T2_AFTER")
    assert f"dynamo-inject: waiting: read/write application {app_id} ('stuck' of guest" \
        in injected.stderr
    assert time.monotonic() - started < 10
    app = wait_for_end(daemon, app_id)
    assert app["status"] == "killed" and "time-out after 3 s" in app["message"]
    assert {s["name"] for s in daemon.call("list_sites")["sites"]} == {"T2_AFTER"}


HOLD = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]):\n    time.sleep(0.02)\n"
QUEUED = "inventory.update(Site('T2_QUEUED'))\n"


@pytest.mark.parametrize("revoked", ["authorization", "role"])
def test_a_queued_writer_is_checked_again_when_its_turn_comes(guest, workdir, revoked):
    release = workdir / "release"
    guest.call("authorize_script", title="hold", checksum=checksum(HOLD))
    guest.call("authorize_script", title="queued", checksum=checksum(QUEUED), user="guest")
    first = requests(guest.socket, [{"method": "run_application", "params": {
        "script": HOLD, "title": "hold", "write": True, "args": [str(release)],
        "attach": False}}])[0]["result"]
    while guest.call("status")["applications"]["writer"] is None:
        time.sleep(0.02)
    queued = as_nobody(requests, guest.socket, [{"method": "run_application", "params": {
        "script": QUEUED, "title": "queued", "write": True, "attach": False}}])[0]["result"]
    assert guest.call("poll_application", id=queued["id"])["status"] == "waiting"
    if revoked == "authorization":
        guest.call("revoke_script_authorization", title="queued", user="guest")
    else:
        guest.client_command("user_auth", "--user", "guest", "--role", "operator",
                             "--target", "application", "--revoke")
    release.touch()
    assert wait_for_end(guest, first["id"])["status"] == "done"
    app = wait_for_end(guest, queued["id"])
    assert app["status"] == "authfailed", app
    assert ("revoked while it waited" if revoked == "authorization"
            else "lost the admin or operator role") in app["message"]
    assert "T2_QUEUED" not in {s["name"] for s in guest.call("list_sites")["sites"]}


def test_the_shared_mappings_found_are_those_proc_lists(tmp_path):
    """What sealing unmaps is found by the kernel's query (PROCMAP_QUERY, Linux 6.11) or
    from the text of /proc/self/maps (older kernels): either way, every mapping the text
    marks shared (`s`), a WAL index here, and nothing else."""
    from dynamod.apps import seal

    db = sqlite3.connect(tmp_path / "wal.db")
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("CREATE TABLE t (x)")
        db.commit()
        found = seal.shared_mappings()
        listed = []
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if fields[1].endswith("s"):
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    listed.append((start, end, fields[1], fields[5].strip() if len(fields) > 5
                                   else ""))
        assert found == listed
        assert [what for *_, what in found if what.endswith("wal.db-shm")]
    finally:
        db.close()


# ------------------------------------------------------ 8: the file channel
HAMMER = """
import socket, sys, time
block = inventory.datasets['/Big/Block/RAW'].find_block('b').id
channel = socket.socket(fileno=4)
answers = channel.makefile('rb')
question = b'{"block": %d}\\n' % block
first = None
end = time.monotonic() + 120
while time.monotonic() < end:
    channel.sendall(question)
    line = answers.readline()
    if first is None:
        first = line
        print(line.count(b'/store/big/'), flush=True)
    elif line != first:
        sys.exit('the answer changed')
"""
FILES, CALLS = 200_000, 41


def test_an_application_asking_for_files_without_end_delays_no_one_else(guest):
    """A script asks for a block of 200,000 files again and again (a query and the JSON
    of every row, over 0.1 s each here): meanwhile a root client's `status`, asked at
    spread moments, is answered at once, not after the block, as it was (then each call
    waited for one).  The bound is loose: the median call, well under 20 ms."""
    files = [{"name": f"/store/big/{n:06d}.root", "size": n} for n in range(FILES)]
    guest.call("inject", data={"dataset": [{"name": "/Big/Block/RAW",
                                            "blocks": [{"name": "b", "files": files}]}]})
    answer = as_nobody(requests, guest.socket, [{"method": "run_application", "params": {
        "script": HAMMER, "path": "/tmp/attack.py", "attach": False}}])[0]
    app_id = answer["result"]["id"]
    stdout = Path(guest.call("poll_application", id=app_id)["workarea"]) / "stdout"
    deadline = time.monotonic() + 30
    while not stdout.exists() or not stdout.read_text():
        assert time.monotonic() < deadline, guest.call("poll_application", id=app_id)
        time.sleep(0.02)
    took = []
    with guest.client() as client:
        for _ in range(CALLS):
            time.sleep(0.025)
            start = time.monotonic()
            client.call("status")
            took.append(time.monotonic() - start)
    assert guest.call("poll_application", id=app_id)["status"] == "run"
    guest.call("kill_application", id=app_id)
    app = wait_for_end(guest, app_id)
    assert output(app) == f"{FILES}\n", errors(app)
    took.sort()
    assert took[CALLS // 2] < 0.02, f"status took {[round(t * 1000, 1) for t in took]} ms"
