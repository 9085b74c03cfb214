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
"""

import fcntl
import os
import socket
import struct
import termios
import threading

# asm-generic's number (alpha, mips, parisc and sparc number it otherwise): no guess there.
SO_PASSRIGHTS = getattr(socket, "SO_PASSRIGHTS", None) or (
    83 if os.uname().machine in ("x86_64", "aarch64", "i686", "i386", "armv7l", "armv8l",
                                 "riscv64", "ppc64le", "ppc64", "s390x", "loongarch64")
    else None)
MAX_FDS = 253   # SCM_MAX_FD: as many as one message carries, so the kernel closes none here
_READ = 1 << 16


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


def close_later(fds):
    """Close descriptors a peer passed in a thread of their own, never on the event loop
    (however long one takes, the daemon serves on)."""
    if fds:
        threading.Thread(target=_close, args=(list(fds),), name="dynamod-close",
                         daemon=True).start()


def _close(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def drain(sock: socket.socket) -> bytes:
    """What `sock` (non-blocking) holds unread now, its descriptors given to `close_later`:
    after a connection stops taking descriptors, those sent while it took them."""
    queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0]
    data, stray = bytearray(), []
    while len(data) < queued:
        try:
            chunk, fds, _, _ = socket.recv_fds(sock, min(queued - len(data), _READ), MAX_FDS)
        except (BlockingIOError, InterruptedError):
            break
        stray += fds
        if not chunk:
            break
        data += chunk
    close_later(stray)
    return bytes(data)
