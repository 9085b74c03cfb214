"""Fail-stop: running out of memory in the middle of a change never leaves a daemon
serving memory that differs from its store.

A real daemon gets an address-space limit (prlimit) a few MiB above what it
uses, then a large deletion, injection or write-back.  Whatever the margin,
the outcome is one of: the change is committed; it is refused and undone, and
the daemon serves on; or the daemon stops with status 70 and one CRITICAL line
(fail-stop), and a restart loads the store.  After each, memory equals the
store and the dataset is there whole or gone whole.
"""

import hashlib
import resource
import time

import pytest

from dynamoclient.connection import ConnectionFailed, RemoteError
from reliability import snapshot

BLOCKS, FILES = 20, 500
NAME = "/Pressure/Test/RAW"
WRITER = f"inventory.delete(inventory.datasets[{NAME!r}])\n"


def big_dataset() -> dict:
    return {"dataset": [{"name": NAME, "blocks": [
        {"name": f"b{b}", "files": [{"name": f"/store/pressure/{b}/{f}.root", "size": 1000 + f}
                                    for f in range(FILES)]} for b in range(BLOCKS)]}]}


def address_space(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


def attempt(daemon, operation: str):
    """Run one large change; 'ok', an error code, or 'stopped' (the daemon exited)."""
    try:
        if operation == "delete":
            daemon.call("delete", data={"dataset": [{"name": NAME}]})
        elif operation == "inject":
            daemon.call("inject", data=big_dataset())
        else:
            app = daemon.call("run_application", script=WRITER, title="pressure",
                              write=True, attach=False)
            while app["status"] in ("new", "waiting", "run"):
                time.sleep(0.02)
                app = daemon.call("poll_application", id=app["id"])
            return "ok" if app["status"] == "done" else app["status"]
        return "ok"
    except RemoteError as exc:
        return exc.code
    except (ConnectionFailed, OSError):
        return "stopped"


def settle(daemon, pid: int) -> int:
    """Lift the limit of a live daemon, or check why it stopped and restart it."""
    deadline = time.monotonic() + 10
    while daemon.process.poll() is None and time.monotonic() < deadline:
        try:
            resource.prlimit(pid, resource.RLIMIT_AS,
                             (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            daemon.call("ping")
            return pid
        except (ConnectionFailed, OSError, ProcessLookupError):
            time.sleep(0.05)
    assert daemon.process.wait(10) == 70, daemon.log()[-2000:]
    assert "CRITICAL dynamod: fail-stop: " in daemon.log()
    daemon.start()
    return daemon.call("status")["pid"]


def test_running_out_of_memory_in_a_change_never_serves_a_guess(daemon):
    daemon.call("authorize_script", title="pressure",
                checksum=hashlib.sha256(WRITER.encode()).hexdigest())
    daemon.call("inject", data=big_dataset())
    pid = daemon.call("status")["pid"]
    outcomes = []
    operations = ("delete", "inject", "write-back")
    for n, margin in enumerate([4, 5, 6, 7, 8, 12, 16, 24, 48]):
        present = NAME in {d["name"] for d in daemon.call("list_datasets")["datasets"]}
        operation = operations[n % 3] if present else "inject"
        if operation == "inject" and present:
            daemon.call("delete", data={"dataset": [{"name": NAME}]})
        resource.prlimit(pid, resource.RLIMIT_AS,
                         (address_space(pid) + (margin << 20), resource.RLIM_INFINITY))
        outcome = attempt(daemon, operation)
        pid = settle(daemon, pid)
        outcomes.append((margin, operation, outcome))
        memory, disk = snapshot.memory(daemon), snapshot.disk(daemon.database)
        assert snapshot.differences(memory, disk) == [], outcomes
        assert memory.problems == []
        datasets = daemon.call("list_datasets")["datasets"]
        whole = [d for d in datasets if d["name"] == NAME]
        assert whole == [] or (whole[0]["num_blocks"], whole[0]["num_files"]) == (
            BLOCKS, BLOCKS * FILES), outcomes
    seen = {outcome for *_, outcome in outcomes}
    assert "ok" in seen, outcomes
    assert seen <= {"ok", "stopped", "internal_error", "store_error", "failed"}, outcomes


@pytest.mark.parametrize("when", ["at once", "after ready"])
def test_sigterm_from_the_first_moment_stops_cleanly(daemon, when):
    """SIGTERM the moment the process starts, or right after it answers: exit 0, and
    the socket file is gone."""
    import os
    import signal

    daemon.stop()
    daemon.process = None
    if when == "after ready":
        daemon.start()
    else:
        import subprocess
        import sys

        daemon.process = subprocess.Popen(
            [sys.executable, "-m", "dynamod", "--state-dir", str(daemon.state_dir),
             "--socket", daemon.socket], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not os.path.exists(daemon.socket):   # claimed before the inventory loads
            assert time.monotonic() < deadline and daemon.process.poll() is None
            time.sleep(0.002)
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(30) == 0
    assert not os.path.exists(daemon.socket)
