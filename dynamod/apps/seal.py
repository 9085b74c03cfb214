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
_libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)


class _Query(ctypes.Structure):
    """struct procmap_query (linux/fs.h, Linux 6.11)."""
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "size", "query_flags", "query_addr", "vma_start", "vma_end", "vma_flags",
        "vma_page_size", "vma_offset", "inode")] + [(name, ctypes.c_uint32) for name in (
            "dev_major", "dev_minor", "vma_name_size", "build_id_size")] + [
        ("vma_name_addr", ctypes.c_uint64), ("build_id_addr", ctypes.c_uint64)]


_PROCMAP_QUERY = (3 << 30) | (ctypes.sizeof(_Query) << 16) | (ord("f") << 8) | 17
_VMA_READ, _VMA_WRITE, _VMA_EXEC, _VMA_SHARED, _NEXT_VMA = 1, 2, 4, 8, 16
_SHARED = re.compile(rb"^([0-9a-f]+)-([0-9a-f]+) ([r-][w-][x-])s \S+ \S+ \S+ *(.*)$",
                     re.MULTILINE)


def shared_mappings() -> list[tuple[int, int, str, str]]:
    """(start, end, permissions, what) of every shared mapping of this process: asked
    of the kernel one shared mapping at a time (PROCMAP_QUERY, a tenth of the time),
    else read from the text of /proc/self/maps (kernels before 6.11)."""
    with open("/proc/self/maps", "rb", buffering=0) as maps:
        try:
            return _queried(maps.fileno())
        except OSError:
            return _parsed(maps.readall())


def _queried(fd: int) -> list[tuple[int, int, str, str]]:
    found, address = [], 0
    name = ctypes.create_string_buffer(4096)
    query = _Query(size=ctypes.sizeof(_Query))
    while True:
        query.query_flags, query.query_addr = _VMA_SHARED | _NEXT_VMA, address
        query.vma_name_size, query.vma_name_addr = len(name), ctypes.addressof(name)
        if _libc.ioctl(fd, _PROCMAP_QUERY, ctypes.byref(query)) != 0:
            errno = ctypes.get_errno()
            if errno == 2:   # ENOENT: no shared mapping further up
                return found
            raise OSError(errno, "PROCMAP_QUERY")
        flags = query.vma_flags
        perms = "".join(c if flags & bit else "-" for c, bit in
                        (("r", _VMA_READ), ("w", _VMA_WRITE), ("x", _VMA_EXEC))) + "s"
        found.append((query.vma_start, query.vma_end, perms,
                      name.value.decode(errors="replace") if query.vma_name_size else ""))
        address = query.vma_end


def _parsed(text: bytes) -> list[tuple[int, int, str, str]]:
    """The shared lines of /proc/self/maps, found by one regular-expression pass."""
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
