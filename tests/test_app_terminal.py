"""An application and terminals: it runs in a process group of its own without a
controlling terminal, even when its streams are a terminal or the daemon was started
from one (so a Ctrl-C typed there reaches the client alone, and job control never
stops the application for using its streams)."""

import json
import os
import shutil

from support.daemon import Daemon, fresh_directory
from support.terminal import read_until

PROBE = r"""
import fcntl, json, os, termios
try:   # take the terminal it was given as its controlling terminal
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    took = True
except OSError:
    took = False
try:
    os.close(os.open("/dev/tty", os.O_RDWR))
    tty = True
except OSError:
    tty = False
print(json.dumps({"took": took, "tty": tty, "own_group": os.getpgid(0) == os.getpid()}))
"""


def run_on_a_terminal(daemon) -> dict:
    """PROBE run attached with a new terminal (pty) as its streams; what it printed."""
    master, slave = os.openpty()
    try:
        with daemon.client(timeout=60) as client:
            rid = client.send("run_application", {"script": PROBE, "path": "probe.py",
                                                  "cwd": "/"})
            while True:
                answer = client.receive()
                if answer.get("id") != rid:
                    continue
                if "event" not in answer:
                    break
                if answer["event"]["event"] == "send_fds":
                    client.send_fds([slave, slave, slave])
        assert answer["result"]["status"] == "done", answer
        printed = read_until(master, b"}")
    finally:
        os.close(master)
        os.close(slave)
    return json.loads(printed[printed.index(b"{"):])


def controlling_terminal(pid: int) -> int:
    """tty_nr of /proc/PID/stat (0: none)."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rpartition(")")[2].split()[4])


def test_an_application_cannot_take_its_terminal(daemon):
    """Its streams are a terminal no session has: it cannot make it its controlling
    terminal (only a session leader can)."""
    assert run_on_a_terminal(daemon) == {"took": False, "tty": False, "own_group": True}


def test_an_application_leaves_the_daemons_terminal():
    """A daemon started from a terminal (its controlling terminal): the application
    is not attached to it."""
    root = fresh_directory()
    master, slave = os.openpty()
    name = os.ttyname(slave)
    daemon = Daemon.in_directory(root)
    try:   # a session of its own, whose first terminal opened becomes its controlling one
        daemon.start(start_new_session=True,
                     preexec_fn=lambda: os.close(os.open(name, os.O_RDWR)))
        assert controlling_terminal(daemon.process.pid) == os.stat(slave).st_rdev
        assert run_on_a_terminal(daemon) == {"took": False, "tty": False, "own_group": True}
    finally:
        daemon.stop()
        os.close(master)
        os.close(slave)
        shutil.rmtree(root, ignore_errors=True)
