"""`dynamod restore COPY`: put a backup in the daemon's place, safely.

Copying a backup over the database by hand goes wrong in the two cases an
operator meets: after a crash the old database's `-wal` file is still there,
and SQLite applies it to whatever file now has the database's name (the old
state's pages over the copy's: the copy is not what is served, or is damaged);
and while a daemon runs, it goes on writing its own pages into the new file.
So the restore takes the store's lock (a running daemon refuses it, naming its
pid), checks the copy, moves the current database and its `-wal` aside
together (`PATH.replaced-TIME`: nothing committed is thrown away), and writes
the copy as `copy_database` writes a backup, through SQLite (the copy's own
`-wal` included), checked and synced, owned by the database's owner.

The copy is written beside the database first (`PATH.restoring`), and only then put
in its place: a restore killed while it copies (minutes for a large store) leaves the
database where it was, never no database, which the next start would make anew and
serve empty.  The database's WAL is first checkpointed into it, so the database is
moved aside as one file, by a link, and the copy renamed over it: whenever the restore
is killed, a whole database is at PATH, the old or the copy (a WAL that cannot be
emptied, a damaged file's, is renamed aside with its file just before).
"""

import glob
import os
import sqlite3
import time

from ..errors import StoreError
from . import check
from .lock import StoreLock
from .sqlite import copy_database, sync_directory


def restore(copy: str, database: str, progress=None) -> str | None:
    """Make `copy` the database at `database`; returns where the old one was moved
    (None: there was none).  StoreError says why nothing changed.  `progress`: as
    copy_database calls it while it writes the copy."""
    if not os.path.isfile(copy):
        raise StoreError(f"{copy}: no such file")
    if os.path.exists(database) and os.path.samefile(copy, database):
        raise StoreError(f"{copy} is the database itself: nothing to restore")
    lock = StoreLock.take(database, create=False)   # refused while a daemon holds it
    try:
        try:
            found, summary = check.check_file(copy)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the copy {copy}: {exc}") from None
        if summary is not None:
            raise StoreError(f"the copy {copy} is not sound: {found[0]}; nothing changed")
        wrong = check.schema_problem(copy)
        if wrong is not None:
            raise StoreError(f"the copy {wrong}; nothing changed")
        directory = os.path.dirname(os.path.abspath(database))
        owner = os.stat(database if os.path.exists(database) else directory)
        staged = f"{database}.restoring"
        _clear(staged)   # what a restore killed before left
        aside = moved = None
        try:
            copy_database(copy, staged, progress)
            if os.geteuid() == 0:   # root restores for the daemon's account
                for path in (staged, lock.path):
                    os.chown(path, owner.st_uid, owner.st_gid)
            if os.path.exists(database):
                aside = _aside(database)
                if _checkpointed(database):
                    os.link(database, aside)   # the database stays at its path meanwhile
                else:   # a WAL that cannot be emptied goes with its file (two renames)
                    moved = _move(database, aside)
            os.replace(staged, database)
        except BaseException:
            if moved and not os.path.exists(database):
                _move(aside, database)
            _clear(staged)
            raise
        try:
            os.unlink(f"{database}-shm")   # the index of the WAL moved away
        except FileNotFoundError:
            pass
        sync_directory(directory)
        return aside
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"restore of {copy} to {database} failed: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    finally:
        lock.release()


def _move(database: str, dest: str):
    """A database and its WAL, together (the WAL belongs to that file alone)."""
    for suffix in ("", "-wal"):
        if os.path.exists(database + suffix):
            os.rename(database + suffix, dest + suffix)
    return True


def _checkpointed(database: str) -> bool:
    """Whether the database's WAL is now in the file and gone (no other connection:
    the restore holds the store's lock), so the file alone is the database."""
    try:
        db = sqlite3.connect(database)
        try:
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            db.close()   # the last connection removes an empty WAL
    except sqlite3.Error:
        return False   # damaged, say: moved with its WAL as it is
    return busy == 0 and not os.path.exists(f"{database}-wal")


def _clear(staged: str):
    """The staged copy and copy_database's temporary files for it."""
    head, tail = os.path.split(staged)
    pattern = os.path.join(glob.escape(head), f".{glob.escape(tail)}.*.tmp*")
    for path in [staged, *glob.glob(pattern)]:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _aside(database: str) -> str:
    """A name no file has, for the database moved aside: two restores in one second, or
    after the clock went back, would otherwise put the second over the first's."""
    base = f"{database}.replaced-{time.strftime('%Y%m%dT%H%M%S')}"
    name, n = base, 1
    while any(os.path.lexists(name + suffix) for suffix in ("", "-wal")):
        name, n = f"{base}.{n}", n + 1
    return name
