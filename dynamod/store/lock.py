"""One owner per store: an exclusive lock on `<database>.lock`, held for the daemon's life.

Two daemons writing one database would each hold an inventory the other does
not see and hand out the same ids.  The lock is `flock(LOCK_EX | LOCK_NB)` on a
file beside the database, taken before anything writes the database; the
holder's pid is written into it so that the refusal can name it.  The kernel
drops the lock when the holder dies, however it dies, so a crash leaves no
stale lock to clean up (the file itself stays: removing it would let a
newcomer lock a fresh inode while another still holds the old one).  The
descriptor is close-on-exec, and a forked application closes it: the lock is
the daemon's alone.

Another name for the same database must not get past it: the lock file is named
after the database's real path (a symlink resolved), and the database file
itself is locked too (`flock`, which SQLite's own `fcntl` locks do not meet on a
local filesystem), so a hard link under another name finds it held.  That
descriptor stays open for the daemon's life: closing a descriptor of the
database would drop SQLite's locks on it.

Why not SQLite's own `PRAGMA locking_mode = EXCLUSIVE`: tried on SQLite 3.40
with WAL, it keeps the lock on the database file itself, so every other
connection is refused, those of the same process included: the read-only
connection that loads the inventory and reads files per block gets
`database is locked`, each application's read snapshot likewise, and the
online backup retries forever.  It also moves the WAL index out of shared
memory, and its refusal would not say who holds the database.
"""

import errno
import fcntl
import os

from ..errors import StoreError


class StoreLock:
    def __init__(self, fd: int, path: str, held: int):
        self.fd = fd
        self.path = path
        self.held = held    # the database file, flock'ed (-1 once released)

    @classmethod
    def take(cls, database: str, create: bool = True) -> "StoreLock":
        """Lock `database` for this process, or StoreError naming the holder's pid;
        `create`: make it (empty) if there is none, to lock it too (a restore, which puts
        a file there, does not)."""
        path = f"{os.path.realpath(database)}.lock"
        fd = cls._lock_file(database, path)
        try:
            held = _lock_database(database, path, create)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, path, held)

    @staticmethod
    def _lock_file(database: str, path: str) -> int:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot create the lock file {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StoreError(f"database {database} is in use by another dynamod "
                                 f"(pid {holder}, lock {path})") from None
            raise StoreError(f"cannot lock {path}: {exc.strerror}") from None
        try:
            # Over the old pid, then cut: a full disk still has room where the old one was.
            pid = f"{os.getpid()}\n".encode()
            os.pwrite(fd, pid, 0)
            os.ftruncate(fd, len(pid))
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot write the lock file {path}: {exc.strerror}") from None
        return fd

    def release(self):
        for fd in (self.fd, self.held):
            if fd >= 0:
                os.close(fd)
        self.fd = self.held = -1


def _lock_database(database: str, path: str, create: bool) -> int:
    """The database file itself, locked (made empty if there is none and `create`:
    SQLite takes an empty file as a new database); its descriptor, -1 if none."""
    try:
        fd = os.open(database, os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0), 0o600)
    except FileNotFoundError:
        if create:
            raise StoreError(f"cannot make the database {database}: no such directory") \
                from None
        return -1
    except OSError as exc:
        raise StoreError(f"cannot open the database {database}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise StoreError(f"database {database} is in use by another dynamod under "
                             f"another name (a link to the same file; its lock file is not "
                             f"{path})") from None
        raise StoreError(f"cannot lock the database {database}: {exc.strerror}") from None
    return fd


def _holder(fd: int) -> str:
    """The pid the holder wrote ("unknown" if it has not yet)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"
