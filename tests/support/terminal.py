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
