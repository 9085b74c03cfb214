"""Applications: scripts forked from the live inventory, through the real `dynamo`."""

import ctypes
import os
import pty
import socket
import subprocess
import sys
import threading
import time
import types

import pytest

from dynamod.apps import child
from support.daemon import Daemon
from support.terminal import read_until

SEED_SITES = [
    "Site('T2_US_XYZ','t2-storage.xyz.edu','disk','gsiftp://t2-storage.xyz.edu:2811/cms',"
    "'ready',1)",
    "Site('T3_US_XYZ','t3-storage.xyz.edu','disk',"
    "'srm://t3-storage.xyz.edu:8443/srm/v2/server?SFN=/mnt/hadoop/cms','ready',2)",
]
DATASET = "pandaf/010/DoubleMuon+Run2017F-31Mar2018-v1+MINIAOD"
SEED_DATASET = (f"Dataset('{DATASET}','production','unknown','pandaf/010',1528406008,True,1)")
SEED_BLOCKS = (f"set([Block('48dbe0c6-36fa-11e8-a5e2-ac1f6b05e848','{DATASET}',165438,2,True,"
               f"1528406008,1,False)])")


def script(tmp_path, text, name="app.py"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("argv", [["app.py"], ["app.py --dry-run 'a b'"], [""]])
def test_a_lone_script_argument_parses_as_the_parser_would(argv):
    """`dynamo SCRIPT` skips argparse (start-up time): it must get the same options."""
    from dynamoclient.dynamo import build_parser, parse_args

    assert vars(parse_args(argv)) == vars(build_parser().parse_args(argv))


def test_the_json_codec_writes_what_orjson_writes(workdir):
    """`dynamo` talks through the json module (start-up time); the daemon must read the
    same requests as from orjson, NaN and infinities included (as null).  A peer on a
    real socket reads what a `fast_json=False` client sends and answers it."""
    orjson = pytest.importorskip("orjson")
    from dynamoclient.connection import Client

    params = {"timeout": float("inf"), "args": ["é", "\n", '"'], "cwd": "/",
              "nested": [{"x": float("nan")}, -0.5, 2**63, None, True]}
    answer = {"id": 1, "result": params}
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(workdir / "peer.sock"))
        listener.listen(1)
        with Client(str(workdir / "peer.sock"), timeout=10, fast_json=False) as client:
            peer, _ = listener.accept()
            with peer, peer.makefile("rb") as lines:
                rid = client.send("run_application", params)
                sent = lines.readline()
                peer.sendall(orjson.dumps(answer) + b"\n")
                received = client.receive()
    assert sent == orjson.dumps({"id": rid, "method": "run_application", "params": params}) + b"\n"
    assert received == orjson.loads(orjson.dumps(answer))


def test_console_from_a_pipe_prints_the_seed_reprs(seeded):
    lines = ("inventory.sites\ninventory.datasets\n"
             f"inventory.datasets['{DATASET}'].blocks\n")
    result = seeded.dynamo(input=lines)
    assert result.stdout.splitlines() == [
        "{'T2_US_XYZ': " + SEED_SITES[0] + ", 'T3_US_XYZ': " + SEED_SITES[1] + "}",
        "{'" + DATASET + "': " + SEED_DATASET + "}",
        SEED_BLOCKS,
    ]
    assert "DYNAMO" in result.stderr


def test_console_on_a_terminal(seeded):
    """The console on a pseudo-terminal: prompt, evaluation, Ctrl-D to leave."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["DYNAMO_SOCKET"] = seeded.socket
        os.execv(sys.executable, [sys.executable, "-m", "dynamoclient.dynamo"])
    output = read_until(fd, b">>> ")
    assert b"DYNAMO" in output
    os.write(fd, b"sorted(inventory.sites)\n")
    output = read_until(fd, b">>> ")
    assert b"['T2_US_XYZ', 'T3_US_XYZ']" in output
    os.write(fd, b"\x04")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_read_only_changes_are_discarded(seeded, tmp_path):
    path = script(tmp_path, "for s in list(inventory.sites.values()):\n"
                            "    inventory.delete(s)\n"
                            "print(inventory.sites)\n")
    result = seeded.dynamo(path)
    assert result.stdout == "{}\n"
    assert [s["name"] for s in seeded.call("list_sites")["sites"]] == ["T2_US_XYZ", "T3_US_XYZ"]


def test_an_application_shows_as_its_number_in_top_and_ps(seeded, tmp_path):
    """Not as a second dynamod: `top` and `ps -o comm` name it `app-N`, the N that
    `dynamo --kill N` takes."""
    path = script(tmp_path, "print(open('/proc/self/comm').read().strip())\n")
    shown = seeded.dynamo(path).stdout.strip()
    newest = seeded.call("list_applications", limit=1)["applications"][0]["id"]
    assert shown == f"app-{newest}"


def test_exit_code_arguments_and_stderr(seeded, tmp_path):
    path = script(tmp_path, "import sys\nprint(sys.argv[1:])\n"
                            "print('to stderr', file=sys.stderr)\nsys.exit(3)\n")
    result = seeded.dynamo(f"{path} --alpha 'two words'", check=False)
    assert result.returncode == 3
    assert result.stdout == "['--alpha', 'two words']\n"
    assert "to stderr" in result.stderr


def test_exception_gives_traceback_and_exit_1(seeded, tmp_path):
    path = script(tmp_path, "x = 1\nraise ValueError('broken on purpose')\n")
    result = seeded.dynamo(path, check=False)
    assert result.returncode == 1
    assert "ValueError: broken on purpose" in result.stderr
    assert "child.py" not in result.stderr


WRITER = """\
from dynamod.executable import inventory, Site
site = inventory.sites['T3_US_XYZ']
site.status = 'morgue'
inventory.update(site)
inventory.update(Site('T2_US_NEW', host='se.example.org', backend='davs://se.example.org/cms',
                      status='ready'))
print('written')
"""


def test_write_needs_authorization_of_the_exact_script(seeded, tmp_path):
    path = script(tmp_path, WRITER)
    refused = seeded.dynamo(path, "--write-request", "--title", "fix", check=False)
    assert refused.returncode != 0
    assert "written" not in refused.stdout
    assert "not authorized" in refused.stderr and "dynamo-exec-auth" in refused.stderr

    seeded.exec_auth("--executable", path, "--title", "fix")
    done = seeded.dynamo(path, "--write-request", "--title", "fix")
    assert done.stdout == "written\n"
    sites = {s["name"]: s["status"] for s in seeded.call("list_sites")["sites"]}
    assert sites == {"T2_US_XYZ": "ready", "T3_US_XYZ": "morgue", "T2_US_NEW": "ready"}
    seeded.restart()
    assert {s["name"]: s["status"] for s in seeded.call("list_sites")["sites"]} == sites

    path.write_text(WRITER.replace("morgue", "waitroom"))
    again = seeded.dynamo(path, "--write-request", "--title", "fix", check=False)
    assert again.returncode != 0 and "not authorized" in again.stderr
    assert {s["name"]: s["status"] for s in seeded.call("list_sites")["sites"]} == sites

    listing = seeded.exec_auth("--list").stdout
    assert "fix" in listing and "ALL" in listing


def test_failed_writer_changes_nothing(seeded, tmp_path):
    path = script(tmp_path, WRITER + "raise RuntimeError('after the changes')\n")
    seeded.exec_auth("--executable", path, "--title", "bad")
    result = seeded.dynamo(path, "-W", "-t", "bad", check=False)
    assert result.returncode == 1
    assert "T2_US_NEW" not in {s["name"] for s in seeded.call("list_sites")["sites"]}


def test_killed_writer_changes_nothing(seeded, tmp_path):
    path = script(tmp_path, WRITER + "import time\ntime.sleep(60)\n")
    seeded.exec_auth("--executable", path, "--title", "slow")
    runner = subprocess.Popen([sys.executable, "-m", "dynamoclient.dynamo", str(path), "-W",
                               "-t", "slow"], env=seeded.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    app_id = _wait_for_status(seeded, "run")["id"]
    seeded.dynamo("--kill", app_id)
    runner.wait(30)
    assert runner.returncode != 0
    record = seeded.call("poll_application", id=app_id)
    assert record["status"] == "killed"
    assert "T2_US_NEW" not in {s["name"] for s in seeded.call("list_sites")["sites"]}


def _wait_for_status(daemon, status, timeout=15.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        apps = daemon.call("list_applications")["applications"]
        if apps and apps[0]["status"] == status:
            return apps[0]
        time.sleep(0.05)
    raise AssertionError(f"no application reached {status}: {apps}")


def test_timeout_kills(seeded, tmp_path):
    path = script(tmp_path, "import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    result = seeded.dynamo(path, "--timeout", "0.0003", check=False)
    assert result.returncode != 0
    assert "started" in result.stdout
    assert "time-out" in result.stderr


def test_asynchronous_submission_and_poll(seeded, tmp_path):
    path = script(tmp_path, "print(len(inventory.datasets))\n")
    out = seeded.dynamo(path, "--asynchronous").stdout
    app_id = int(out.split()[1])
    record = _wait_for_status(seeded, "done")
    assert record["id"] == app_id
    polled = seeded.dynamo("--poll", app_id).stdout
    assert "status done, exit code 0" in polled
    workarea = seeded.call("poll_application", id=app_id)["workarea"]
    assert open(os.path.join(workarea, "stdout")).read() == "1\n"
    listing = seeded.dynamo("--list").stdout
    assert listing.splitlines()[0].split()[:5] == ["ID", "TITLE", "USER", "MODE", "STATUS"]


def test_one_writer_at_a_time_and_injections_wait(seeded, tmp_path):
    slow = script(tmp_path, "import time\ntime.sleep(1.5)\n"
                            "inventory.update(Site('T2_FIRST'))\n", "slow.py")
    quick = script(tmp_path, "inventory.update(Site('T2_SECOND'))\n", "quick.py")
    seeded.exec_auth("--executable", slow, "--title", "slow")
    seeded.exec_auth("--executable", quick, "--title", "quick")
    first = subprocess.Popen([sys.executable, "-m", "dynamoclient.dynamo", str(slow), "-W",
                              "-t", "slow"], env=seeded.env, stderr=subprocess.PIPE, text=True)
    _wait_for_status(seeded, "run")
    refused = seeded.dynamo(quick, "-W", "-t", "quick", "--no-wait", check=False)
    assert refused.returncode != 0 and "another read/write application" in refused.stderr

    injected = {}
    injector = threading.Thread(target=lambda: injected.update(
        done=seeded.inject("--site", "T2_INJECTED")))
    injector.start()
    waited = seeded.dynamo(quick, "-W", "-t", "quick")
    holder = "read/write application 1 ('slow' of root, since "
    assert f"application 3 waits for {holder}" in waited.stderr
    injector.join(30)
    assert f"dynamo-inject: waiting: {holder}" in injected["done"].stderr
    first.wait(30)
    assert first.returncode == 0
    ids = {s["name"]: s["id"] for s in seeded.call("list_sites")["sites"]}
    assert set(ids) >= {"T2_FIRST", "T2_SECOND", "T2_INJECTED"}
    assert ids["T2_FIRST"] < ids["T2_INJECTED"]  # the injection waited for the writer


# capset(2), as linux/capability.h declares it: the test's own set-up of a capable account
CAP_SETGID, CAP_SETUID = 6, 7
CAPABILITY_VERSION_3 = 0x20080522


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to set up a capable account")
def test_child_drops_the_setuid_capability_a_service_account_keeps():
    """The systemd set-up runs dynamod as its own account holding CAP_SETUID and
    CAP_SETGID, which setuid() to another non-root uid does not clear. The child's
    set-up (the real code, in a real forked process) must leave the script none."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(8, 1, 0, 0, 0)  # PR_SET_KEEPCAPS: keep them across the uid change
            os.setgroups([])
            os.setresgid(1, 1, 1)
            os.setresuid(1, 1, 1)  # now the `daemon` account (uid 1), like `dynamo`
            header = CapHeader(CAPABILITY_VERSION_3, 0)
            data = (CapData * 2)()
            wanted = (1 << CAP_SETUID) | (1 << CAP_SETGID)
            data[0].permitted = data[0].effective = wanted
            assert libc.capset(ctypes.byref(header), data) == 0
            assert _capability(1 << CAP_SETUID, "CapEff")
            app = types.SimpleNamespace(uid=65534, gid=65534, user="nobody", id=1, cwd="/")
            child.become(app)
            assert os.getuid() == 65534 and not _capability(~0, "CapPrm")
            try:
                os.setuid(1)
            except PermissionError:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _ambient_setuid():
    """As the unit's AmbientCapabilities= gives them: CAP_SETUID made inheritable, then
    raised in the ambient set (in the forked child, before it executes dynamod)."""
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = CapHeader(CAPABILITY_VERSION_3, 0), (CapData * 2)()
    assert libc.capget(ctypes.byref(header), data) == 0
    data[0].inheritable |= 1 << CAP_SETUID
    assert libc.capset(ctypes.byref(header), data) == 0
    assert libc.prctl(47, 2, CAP_SETUID, 0, 0) == 0   # PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give ambient capabilities")
def test_what_the_daemon_executes_gets_none_of_its_capabilities(workdir):
    """Ambient capabilities survive execve: the daemon clears its ambient set at start,
    so no program it executes (the process that reads the block replicas, the
    interpreter asked for its path) holds what the unit gives it, while the daemon
    keeps them (a forked application child needs CAP_SETUID to take its caller's uid)."""
    daemon = Daemon.in_directory(workdir)
    daemon.start(preexec_fn=_ambient_setuid)
    try:
        with open(f"/proc/{daemon.process.pid}/status") as status:
            sets = {line.split()[0]: int(line.split()[1], 16) for line in status
                    if line.startswith(("CapEff", "CapAmb"))}
        assert sets["CapAmb:"] == 0 and sets["CapEff:"] & (1 << CAP_SETUID)
    finally:
        daemon.stop()


def _capability(mask, line) -> bool:
    with open("/proc/self/status") as status:
        value = next(int(x.split()[1], 16) for x in status if x.startswith(line))
    return bool(value & mask)


def test_applications_die_with_the_daemon_and_are_marked_killed(seeded, tmp_path):
    path = script(tmp_path, "import time\nprint('up', flush=True)\ntime.sleep(120)\n")
    runner = subprocess.Popen([sys.executable, "-m", "dynamoclient.dynamo", str(path)],
                              env=seeded.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    record = _wait_for_status(seeded, "run")
    seeded.kill9()
    deadline = time.monotonic() + 10
    while _alive(record["pid"]):
        assert time.monotonic() < deadline, "the application outlived the daemon"
        time.sleep(0.05)
    runner.wait(30)
    seeded.start()
    assert seeded.call("poll_application", id=record["id"])["status"] == "killed"


def _alive(pid) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_killed_while_it_waits_for_the_committed_state_it_never_runs(daemon, tmp_path):
    """An application forks only where memory equals the committed store: when a change
    is committing, it waits.  Killed in that wait, it must not run afterwards.  The
    store is locked by another process while the application's record and a large
    injection are submitted; once released, the record commits (its submitter hears the
    id and kills it) while the injection's commit holds the fork back."""
    from support.faults import lock
    from support.seed import block_doc, dataset_doc

    marker = tmp_path / "ran"
    path = script(tmp_path, f"open({str(marker)!r}, 'w').close()\n")
    files = [(f"/store/wait/{i:06d}.root", 1000) for i in range(60_000)]
    big = dataset_doc("/Wait/Big/RAW", block_doc("b1", *files))
    holder = lock(daemon.database)
    try:
        submitter, injector = daemon.client(), daemon.client()
        submitted = submitter.send("run_application", {
            "script": path.read_text(), "path": str(path), "title": "waits", "attach": False})
        time.sleep(0.2)   # the record's commit waits for the lock
        injector.send("inject", {"data": big})
        deadline = time.monotonic() + 1.5   # within the store's busy_timeout (2 s)
        while "/Wait/Big/RAW" not in {d["name"] for d in daemon.call(
                "list_datasets", pattern="/Wait/*")["datasets"]}:
            assert time.monotonic() < deadline, "the injection was not applied in time"
            time.sleep(0.02)
    finally:
        holder.communicate("\n", timeout=30)   # the lock is released
    answer = submitter.receive()
    assert answer["id"] == submitted, answer
    app_id = answer["result"]["id"]
    assert daemon.call("kill_application", id=app_id)["killed"] is True
    injector.receive()
    submitter.close(), injector.close()
    record = daemon.call("poll_application", id=app_id)
    time.sleep(1.0)   # time to run, had it forked
    assert daemon.call("poll_application", id=app_id)["status"] == record["status"] == "killed"
    assert not marker.exists()
