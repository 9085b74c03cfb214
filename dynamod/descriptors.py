"""Descriptors a peer passes (SCM_RIGHTS): refused unless asked for, closed off the loop.

The last close of a descriptor may wait as long as its other end likes: a TCP
socket with SO_LINGER and unsent data waits for its peer to read (up to a
linger time its owner sets, years if it wants), a file on a FUSE mount waits
for its server's answer.  A peer that passes one and drops its own copy makes
the daemon's close the last; and descriptors sent with a request the daemon
reads as plain bytes are closed by the kernel in the reading thread, the
event loop's (a socket closed with such a message unread, likewise).  So the
listening socket refuses descriptors (SO_PASSRIGHTS, Linux 6.16: the peer's
sendmsg fails with EPERM, and accepted connections inherit it), a connection
takes them only while it is asked for its standard streams, and whatever the
daemon received is closed by a thread of its own.

That thread is one per account (its owner's uid) at a time, closing in order,
and an account holds at most MAX_PENDING of the daemon's descriptors waiting
to be closed: a thread per close let one account start a thread for every
close it made hang (each application's streams: thousands of threads), and a
burst of messages of 253 descriptors each, sent right behind the streams,
filled the daemon's descriptor table (every connection refused) for as long
as a lingering close ahead of them lasted.  Past the budget the account is
told `busy` until its closes are done, and a connection that sent more is
ended unread, its socket closed last by the same thread.
"""

import fcntl
import os
import socket
import struct
import termios
import threading
from collections import deque

from .threadname import name_thread

# asm-generic's number (alpha, mips, parisc and sparc number it otherwise): no guess there.
SO_PASSRIGHTS = getattr(socket, "SO_PASSRIGHTS", None) or (
    83 if os.uname().machine in ("x86_64", "aarch64", "i686", "i386", "armv7l", "armv8l",
                                 "riscv64", "ppc64le", "ppc64", "s390x", "loongarch64")
    else None)
MAX_FDS = 253   # SCM_MAX_FD: as many as one message carries, so the kernel closes none here
MAX_PENDING = 4 * MAX_FDS   # descriptors of one account waiting to be closed, at most
_READ = 1 << 16
_queues = {}    # owner -> the descriptors its thread has still to close, in order
_lock = threading.Lock()


def allow(sock: socket.socket, allowed: bool) -> bool:
    """Whether the peers of `sock` may send it descriptors (a listener: its connections
    inherit it).  False where the kernel cannot refuse them (before Linux 6.16)."""
    if SO_PASSRIGHTS is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_PASSRIGHTS, int(allowed))
    except OSError:
        return False
    return True


def close_later(fds, owner: int):
    """Close descriptors that `owner` (a uid) passed, never on the event loop (however long
    one takes, the daemon serves on): by the one thread of that account, started when
    it has none."""
    if not fds:
        return
    with _lock:
        queue = _queues.get(owner)
        started = queue is None
        if started:
            queue = _queues[owner] = deque()
        queue.extend(fds)
    if started:
        threading.Thread(target=_close, args=(owner, queue), name="dynamod-close",
                         daemon=True).start()


def pending(owner: int) -> int:
    """How many descriptors of `owner` wait to be closed (the one being closed included)."""
    with _lock:
        return len(_queues.get(owner, ()))


def _close(owner: int, queue: deque):
    name_thread("dynamod-close")
    while True:
        with _lock:
            if not queue:
                del _queues[owner]
                return
            fd = queue[0]
        try:
            os.close(fd)
        except OSError:
            pass
        with _lock:
            queue.popleft()


def drain(sock: socket.socket, owner: int) -> tuple[bytes, bool]:
    """What `sock` (non-blocking) holds unread now, its descriptors given to `close_later`:
    after a connection stops taking descriptors, those sent while it took them.  False
    with it when the budget of `owner` (MAX_PENDING) stopped the reading short: the
    rest is never to be read, the socket to be closed by `close_later` once the
    connection's own is closed (its unread descriptors then close in that thread)."""
    queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0]
    data, stray = bytearray(), []
    while len(data) < queued:
        if pending(owner) + len(stray) >= MAX_PENDING:
            close_later(stray, owner)
            return bytes(data), False
        try:
            chunk, fds, _, _ = socket.recv_fds(sock, min(queued - len(data), _READ), MAX_FDS)
        except (BlockingIOError, InterruptedError):
            break
        stray += fds
        if not chunk:
            break
        data += chunk
    close_later(stray, owner)
    return bytes(data), True
