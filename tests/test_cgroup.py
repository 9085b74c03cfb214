"""Application cgroups on this machine's real cgroup v2 hierarchy.

setup() moves the calling process, so every "daemon" here is a forked child of
pytest that reports back through a pipe; pytest itself stays where it is.
"""

import json
import logging
import os
import signal
import time
import uuid

import pytest

from dynamod.apps.cgroup import AppCgroups, CgroupError, _kill_each
from support.daemon import running


def _cgroup2():
    """(mount point, pytest's own cgroup directory) or (None, why not)."""
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[2:3] == ["cgroup2"]]
    if not mounts:
        return None, "no cgroup v2 file system is mounted"
    with open("/proc/self/cgroup") as f:
        own = [line[3:].strip() for line in f if line.startswith("0::")]
    if not own:
        return None, "this process is in no cgroup v2"
    here = os.path.join(mounts[0], own[0].lstrip("/"))
    probe = os.path.join(here, f"dynamod-probe-{uuid.uuid4().hex[:8]}")
    try:
        os.mkdir(probe)
        os.rmdir(probe)
    except OSError as e:
        return None, f"cannot create a cgroup in {here}: {e.strerror}"
    return (mounts[0], here), None


CGROUP2, WHY = _cgroup2()
pytestmark = pytest.mark.skipif(CGROUP2 is None, reason=f"no writable cgroup v2: {WHY}")


def in_cgroup_of(path: str) -> str:
    """The cgroup v2 path of a /proc/<pid>/cgroup file."""
    with open(path) as f:
        return next(line[3:].strip() for line in f if line.startswith("0::"))


def hierarchy_path(directory: str) -> str:
    return "/" + os.path.relpath(directory, CGROUP2[0]).lstrip(".")


@pytest.fixture
def base():
    """A unique cgroup path (not created); afterwards every process in it goes
    back to pytest's cgroup and every directory under it is removed."""
    path = os.path.join(CGROUP2[1], f"dynamod-test-{uuid.uuid4().hex[:8]}")
    yield path
    if not os.path.isdir(path):
        return
    for directory, _, _ in sorted(os.walk(path), key=lambda entry: -len(entry[0])):
        with open(os.path.join(directory, "cgroup.procs")) as f:
            for pid in f.read().split():
                try:
                    with open(os.path.join(CGROUP2[1], "cgroup.procs"), "w") as back:
                        back.write(pid)
                except OSError:
                    pass  # gone meanwhile
        os.rmdir(directory)


def in_child(fn):
    """Run fn() in a forked child (the "daemon"); return its JSON-able result and
    the dynamod.apps log records it produced, as (level name, message)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        records = []
        handler = logging.Handler()
        handler.emit = lambda record: records.append((record.levelname, record.getMessage()))
        logger = logging.getLogger("dynamod.apps")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        try:
            out = {"result": fn(), "log": records}
        except BaseException as e:
            out = {"error": f"{type(e).__name__}: {e}", "log": records}
        with os.fdopen(w, "wb") as f:
            f.write(json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    assert os.waitpid(pid, 0)[1] == 0
    out = json.loads(data)
    assert "error" not in out, out["error"]
    return out["result"], out["log"]


def test_setup_moves_the_daemon_into_base_daemon(base):
    before = in_cgroup_of("/proc/self/cgroup")

    def daemon():
        cgroups = AppCgroups.setup(base, None, None)
        return cgroups.base, in_cgroup_of("/proc/self/cgroup")

    (got_base, daemon_cgroup), _ = in_child(daemon)
    assert got_base == base
    assert daemon_cgroup == hierarchy_path(base) + "/daemon"
    assert in_cgroup_of("/proc/self/cgroup") == before


def test_application_enters_its_cgroup_which_is_removed_after_the_reap(base):
    def daemon():
        cgroups = AppCgroups.setup(base, 1 << 30, 64)
        path = cgroups.create(7)
        made = os.path.isdir(path)
        ready_r, ready_w = os.pipe()
        hold_r, hold_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the application's child
            os.close(ready_r)
            os.close(hold_w)
            AppCgroups.enter(path)
            os.write(ready_w, b"x")
            os.read(hold_r, 1)  # until the daemon has looked
            os._exit(0)
        os.close(ready_w)
        os.close(hold_r)
        assert os.read(ready_r, 1) == b"x"
        child_cgroup = in_cgroup_of(f"/proc/{pid}/cgroup")
        with open(os.path.join(path, "cgroup.procs")) as f:
            procs = f.read().split()
        os.close(hold_w)
        os.waitpid(pid, 0)
        cgroups.remove(path)
        return path, made, child_cgroup, procs, pid, os.path.exists(path)

    (path, made, child_cgroup, procs, pid, still_there), log = in_child(daemon)
    assert path == os.path.join(base, "app-7")
    assert made
    assert child_cgroup == hierarchy_path(base) + "/app-7"
    assert procs == [str(pid)]
    assert not still_there
    assert not [m for level, m in log if "not removed" in m], log


def test_enter_fails_with_oserror_on_a_missing_cgroup(base):
    with pytest.raises(OSError):
        AppCgroups.enter(os.path.join(base, "app-1"))


def test_leftover_app_cgroups_are_replaced_or_refused_when_busy(base):
    def daemon():
        os.mkdir(base)
        os.mkdir(os.path.join(base, "app-3"))  # left by a crash before start-up
        cgroups = AppCgroups.setup(base, None, None)
        swept = not os.path.exists(os.path.join(base, "app-3"))
        leftover = os.path.join(base, "app-5")  # left while running
        os.mkdir(leftover)
        old = os.stat(leftover).st_ino
        path = cgroups.create(5)
        replaced = path == leftover and os.stat(path).st_ino != old
        cgroups.remove(path)
        busy = cgroups.create(6)  # a live process in it: refused, not reused
        hold_r, hold_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(hold_w)
            AppCgroups.enter(busy)
            os.read(hold_r, 1)
            os._exit(0)
        os.close(hold_r)
        while open(os.path.join(busy, "cgroup.procs")).read().split() != [str(pid)]:
            pass
        try:
            cgroups.create(6)
            refused = None
        except CgroupError as e:
            refused = str(e)
        os.close(hold_w)
        os.waitpid(pid, 0)
        cgroups.remove(busy)
        return swept, replaced, refused

    (swept, replaced, refused), _ = in_child(daemon)
    assert swept
    assert replaced
    assert refused is not None and os.path.join(base, "app-6") in refused
    assert "busy" in refused


def procs(path: str) -> list[int]:
    with open(os.path.join(path, "cgroup.procs")) as f:
        return [int(pid) for pid in f.read().split()]


def leave_behind(path: str) -> list[int]:
    """What a crashed daemon's application leaves in the cgroup `path`: its script, and a
    process that script forked, left the session with and forked again (their standard
    streams on /dev/null: pytest's output must not wait for them); both pids."""
    script = os.fork()
    if script == 0:
        try:
            AppCgroups.enter(path)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            if os.fork() == 0:
                os.setsid()
                if os.fork() != 0:
                    os._exit(0)
            while True:   # the script, and what it left behind
                signal.pause()
        finally:
            os._exit(0)
    deadline = time.monotonic() + 10
    while len(found := procs(path)) != 2:   # the one in between has gone
        assert time.monotonic() < deadline, found
        time.sleep(0.005)
    return [script, *(pid for pid in found if pid != script)]


def ended(left: list[int]) -> list[bool]:
    """Whether each of `left` (the first a child of ours) ended within 5 s; SIGKILL to
    those that did not, so that a failure leaves nothing running."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.waitpid(left[0], os.WNOHANG)[0] == 0:
        time.sleep(0.005)
    while time.monotonic() < deadline and any(running(pid) for pid in left[1:]):
        time.sleep(0.005)
    gone = [not running(pid) for pid in left]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return gone


def test_processes_left_in_a_crashed_daemons_app_cgroups_are_killed(base):
    def daemon():
        os.makedirs(os.path.join(base, "app-4"))
        left = leave_behind(os.path.join(base, "app-4"))
        os.mkdir(os.path.join(base, "app-9"))   # empty
        cgroups = AppCgroups.setup(base, None, None)
        return ended(left), sorted(n for n in os.listdir(cgroups.base) if n.startswith("app-"))

    (gone, apps), log = in_child(daemon)
    assert gone == [True, True]
    assert apps == []
    assert log == [["WARNING", f"cgroup {base}: killed 2 processes left in the cgroups of an "
                               "earlier daemon's applications (app-4, app-9), then removed them"]]


def test_before_cgroup_kill_each_process_is_killed(base):
    """Kernels before 5.14 have no cgroup.kill: each process cgroup.procs lists."""
    def daemon():
        cgroups = AppCgroups.setup(base, None, None)
        path = cgroups.create(2)
        left = leave_behind(path)
        _kill_each(path)
        gone = ended(left)
        deadline = time.monotonic() + 5
        while procs(path) and time.monotonic() < deadline:
            time.sleep(0.005)
        emptied = not procs(path)
        cgroups.remove(path)
        return gone, emptied, os.path.exists(path)

    (gone, emptied, still_there), _ = in_child(daemon)
    assert gone == [True, True] and emptied and not still_there


@pytest.mark.parametrize("where", ["root", "not-cgroup", "relative"])
def test_a_base_that_cannot_be_used_is_named(base, tmp_path, where):
    setting = {"root": CGROUP2[0], "not-cgroup": str(tmp_path / "x" / "y"),
               "relative": "dynamod-apps"}[where]
    with pytest.raises(CgroupError) as error:
        AppCgroups.setup(setting, 1 << 30, 64)
    message = str(error.value)
    assert setting in message and "\n" not in message
    assert not os.path.exists(tmp_path / "x")


def test_off_gives_none():
    assert AppCgroups.setup("off", 1 << 30, 64) is None


@pytest.mark.skipif(CGROUP2 is not None and os.path.exists(os.path.join(CGROUP2[1], "cgroup.events")),
                    reason="pytest is not in the root cgroup")
def test_auto_in_the_root_cgroup_gives_none_and_says_why():
    result, log = in_child(lambda: AppCgroups.setup("auto", 1 << 30, 64) is None)
    assert result
    assert [level for level, _ in log] == ["INFO"]
    assert "root cgroup" in log[0][1]


def test_missing_controllers_are_warned_about_and_not_enforced(base):
    def daemon():
        cgroups = AppCgroups.setup(base, 1 << 30, 64)
        with open(os.path.join(base, "cgroup.controllers")) as f:
            available = f.read().split()
        path = cgroups.create(1)
        files = sorted(n for n in ("memory.max", "pids.max") if os.path.exists(os.path.join(path, n)))
        cgroups.remove(path)
        return cgroups.describe(), available, files

    (described, available, files), log = in_child(daemon)
    absent = [c for c in ("memory", "pids") if c not in available]
    present = [c for c in ("memory", "pids") if c in available]
    warnings = [m for level, m in log if level == "WARNING"]
    assert len(warnings) == len(absent)
    for controller, warning in zip(absent, warnings):
        assert f"no {controller} controller" in warning and base in warning
    assert described == {"base": base, "memory_max": 1 << 30, "pids_max": 64, "enforced": present}
    assert files == sorted(f"{c}.max" for c in present)


def test_auto_takes_its_own_cgroup_only_when_delegated(base):
    def daemon():
        os.mkdir(base)
        with open(os.path.join(base, "cgroup.procs"), "w") as f:
            f.write("0")
        unmarked = AppCgroups.setup("auto", None, None)
        if os.geteuid() == 0:  # root may write anywhere: it takes systemd's mark
            os.setxattr(base, "trusted.delegate", b"1")
        marked = AppCgroups.setup("auto", None, None)
        return (unmarked and unmarked.base), marked.base, in_cgroup_of("/proc/self/cgroup")

    (unmarked, marked, daemon_cgroup), log = in_child(daemon)
    if os.geteuid() == 0:
        assert unmarked is None
        assert log[0][0] == "INFO" and "not marked delegated" in log[0][1] and base in log[0][1]
    assert marked == base
    assert daemon_cgroup == hierarchy_path(base) + "/daemon"
