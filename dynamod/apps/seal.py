"""Sealing a child: no memory it shares with the daemon stays writable.

fork() copies private memory but shares MAP_SHARED mappings with the
daemon: libuv's io_uring rings (the kernel runs what is placed there as the
daemon) and SQLite's WAL index (`-shm`; zeroing it corrupts the database).
Whatever library maps them, /proc/self/maps lists them with `s`.  Each
shared mapping is unmapped unless it is read-only and cannot be made
writable (a file opened read-only, such as glibc's gconv-modules.cache,
which the C library reads); closing descriptors is not enough, a mapping
outlives its descriptor.
"""

import ctypes
import re

_PROT_READ, _PROT_WRITE = 1, 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


_SHARED = re.compile(rb"^([0-9a-f]+)-([0-9a-f]+) ([r-][w-][x-])s \S+ \S+ \S+ *(.*)$",
                     re.MULTILINE)


def shared_mappings() -> list[tuple[int, int, str, str]]:
    """(start, end, permissions, what) of every shared mapping of this process (one
    regular-expression pass over /proc/self/maps: only the few shared lines are parsed)."""
    with open("/proc/self/maps", "rb", buffering=0) as maps:
        text = maps.readall()
    return [(int(start, 16), int(end, 16), perms.decode() + "s",
             what.decode(errors="replace"))
            for start, end, perms, what in _SHARED.findall(text)]


def seal() -> list[str]:
    """Unmap every shared mapping that is or can be made writable; returns what was
    removed.  Raises OSError if one stays.  One reading of the maps is the whole
    truth: the child has a single thread, so nothing maps anything meanwhile."""
    removed = []
    for start, end, perms, what in shared_mappings():
        if "w" not in perms and _libc.mprotect(start, end - start,
                                               _PROT_READ | _PROT_WRITE) != 0:
            continue  # read-only, and the kernel refuses write access: harmless
        if _libc.munmap(start, end - start) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"cannot unmap the shared mapping {what or hex(start)}")
        removed.append(what or f"anonymous at {start:#x}")
    return removed
