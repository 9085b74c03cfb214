"""Capabilities: every set cleared, in a process that must not hold the daemon's.

The unit runs the daemon as its own account with CAP_SETUID, CAP_SETGID and
CAP_CHOWN (ambient, so that it can take a caller's identity), and CAP_KILL (to
stop an application, which runs as its caller): an application's
child must hold none of them, and neither should a program the daemon executes
(ambient capabilities survive execve), however little it runs.  So the daemon
clears its ambient set at start-up (`keep_from_programs`), keeping them in its
permitted and effective sets, where a forked child finds them, and a forked child
clears every set before it runs anything of its caller's (`drop_all`).
"""

import ctypes

CAP_KILL, CAP_SETUID = 5, 7
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_CAPABILITY_VERSION_3 = 0x20080522
# Looked up once in the daemon: each CDLL() makes a new class, which a child would have
# to build on pages it shares with the daemon (copy-on-write faults before the script).
_libc = ctypes.CDLL(None, use_errno=True)
prctl, _capset = _libc.prctl, _libc.capset


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def keep_from_programs():
    """Clear the ambient set of this thread, and so of every thread it starts later: a
    program executed from then on gets none of the capabilities, which this process
    keeps (a no-op without ambient capabilities)."""
    prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)


def held(capability: int) -> bool:
    """Whether this process holds `capability` in its effective set (root: all of them)."""
    with open("/proc/self/status") as status:
        effective = next(int(line.split()[1], 16) for line in status
                         if line.startswith("CapEff"))
    return bool(effective >> capability & 1)


def drop_all():
    """Clear every capability set (a uid other than 0 keeps them across setuid() when
    they are ambient), and check that none is left."""
    prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header, data = _CapHeader(_CAPABILITY_VERSION_3, 0), (_CapData * 2)()
    if _capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    with open("/proc/self/status") as status:
        held = [line.split()[0] for line in status
                if line.startswith(("CapInh", "CapPrm", "CapEff", "CapAmb"))
                and int(line.split()[1], 16)]
    if held:
        raise PermissionError(f"capabilities still held: {', '.join(held)}")
