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
"""

import os
import sqlite3
import time

from ..errors import StoreError
from . import check
from .lock import StoreLock
from .sqlite import copy_database


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
        aside = None
        if os.path.exists(database):
            aside = f"{database}.replaced-{time.strftime('%Y%m%dT%H%M%S')}"
            _move(database, aside)
        try:
            os.unlink(f"{database}-shm")   # the index of the WAL just moved away
        except FileNotFoundError:
            pass
        try:
            copy_database(copy, database, progress)
        except BaseException:
            if aside is not None:
                _move(aside, database)
            raise
        if os.geteuid() == 0:   # root restores for the daemon's account
            for path in (database, lock.path):
                os.chown(path, owner.st_uid, owner.st_gid)
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
