"""A terminal (pty) the test reads, as a person at the console would."""

import os
import select
import time


def read_until(fd, marker: bytes, timeout=15.0) -> bytes:
    """Read a terminal (pty) until `marker` appears; everything read so far."""
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no {marker!r} in {data!r}")
        data += os.read(fd, 4096)
    return data


def wait_until_waiting_for_input(pid: int, timeout=15.0):
    """Wait until process `pid` sleeps in select/poll, as a person typing would before
    pressing Ctrl-C.  CPython's readline notices a signal only while it waits in
    select(): one that lands while it is still handling the keys typed before is seen
    at the next key only, so a test that types and at once sends Ctrl-C could lose it."""
    deadline = time.monotonic() + timeout
    while True:
        with open(f"/proc/{pid}/wchan") as wchan, open(f"/proc/{pid}/stat") as stat:
            waiting, state = wchan.read(), stat.read().rsplit(")", 1)[1].split()[0]
        if state == "S" and ("poll" in waiting or "select" in waiting):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} is not waiting for input ({state}, {waiting})")
        time.sleep(0.01)
