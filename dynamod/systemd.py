"""systemd integration with the standard library: sd_notify and socket activation.

Both are no-ops outside systemd: without NOTIFY_SOCKET nothing is sent, and
without LISTEN_FDS/LISTEN_PID (for this very process) no socket is inherited.
"""

import os
import socket

LISTEN_FDS_START = 3


def notify(*lines: str) -> bool:
    """Send `READY=1`, `STATUS=...` and the like to the service manager, if there is one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto("\n".join(lines).encode(), address)
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when not asked."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None


def listen_socket() -> socket.socket | None:
    """The listening socket systemd passed (the first), or None."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # not for our children
    if count < 1:
        return None
    for extra in range(LISTEN_FDS_START + 1, LISTEN_FDS_START + count):
        os.close(extra)  # one socket is all dynamod serves
    sock = socket.socket(fileno=LISTEN_FDS_START)
    sock.setblocking(False)
    os.set_inheritable(sock.fileno(), False)
    return sock
