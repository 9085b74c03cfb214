"""Damage in the store: found, named in one line, with the way back.

At start-up the load reads every table but the files (and but the datasets,
blocks and replicas when it starts from the snapshot, inventory/snapshot.py);
damage there stops the daemon (see `damaged`).  The files, their indexes and the rest are checked by
`PRAGMA quick_check` in the background once the daemon serves (`Watch`):
measured on the medium store (930 MB, 2.3 million files) it takes 1.5 s with
the file in the page cache and 13.7 s from disk, and on the cms store (9.3 GB,
23 million files) 18 s and 162 s, against a cold start of 1.1 s and 11 s: too
dear to make every start wait.  Damage found there stops the daemon
(failstop.py); nothing is repaired.  `dynamod check` runs the full
`integrity_check` (index contents too, 3-4x the time) and `foreign_key_check`.
"""

import logging
import shlex
import sqlite3
import threading
import time

from ..errors import StoreError
from ..threadname import name_thread
from . import uri

log = logging.getLogger("dynamod.store")

DAMAGE = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def is_damage(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in DAMAGE


def damaged(path: str, what: str) -> StoreError:
    """The one line that stops the daemon: what is damaged, and how to recover."""
    return StoreError(f"database {path} is damaged ({what}); restore a backup "
                      f"(dynamod restore COPY) or recover it "
                      f"(sqlite3 {shlex.quote(path)} .recover)")


def connect(path: str) -> sqlite3.Connection:
    return sqlite3.connect(uri.read_only(path), uri=True, check_same_thread=False)


def problems(db: sqlite3.Connection, pragma: str = "quick_check") -> list[str]:
    """What `PRAGMA quick_check` (or integrity_check) reports, one line each; empty: ok.
    Damage that stops the check itself is reported as its error, or as what quick_check
    says (integrity_check stops at a row it cannot read; quick_check may name the page)."""
    try:
        found = [row[0] for row in db.execute(f"PRAGMA {pragma}")]
    except sqlite3.Error as exc:
        if not is_damage(exc):
            raise
        return (pragma == "integrity_check" and problems(db)) or [str(exc)]
    found = [line.replace("*** in database main ***\n", "") for line in found]
    return [] if found == ["ok"] else [" ".join(line.split()) for line in found]


def foreign_key_problems(db: sqlite3.Connection) -> list[str]:
    return [f"table {table} row {row}: no row {parent} it refers to"
            for table, row, parent, _ in db.execute("PRAGMA foreign_key_check")]


def check_file(path: str) -> tuple[list[str], str | None]:
    """`dynamod check`: integrity_check and foreign_key_check of the file, read-only (a
    daemon may be serving it); the problems, and the line that sums them up (None: ok)."""
    db = connect(path)
    try:
        found = problems(db, "integrity_check") or foreign_key_problems(db)
        return found, damaged(path, locate(db, found)).message if found else None
    finally:
        db.close()


def schema_problem(path: str) -> str | None:
    """Why a sound file is still not one this dynamod serves (None: it is): a schema of
    a newer dynamod is refused at the start, and a file with no schema version is not a
    dynamod database at all (an empty file, another program's): the start would make an
    empty inventory in it.  `dynamod check` says so, and `dynamod restore` refuses it."""
    from .sqlite import SCHEMA_VERSION
    db = connect(path)
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()
    if version > SCHEMA_VERSION:
        return (f"{path} has schema version {version}, of a newer dynamod; this one knows "
                f"versions up to {SCHEMA_VERSION}: use that dynamod, or a copy taken before "
                f"the upgrade")
    if version <= 0:
        return f"{path} is not a dynamod database (it has no schema version)"
    return None


def locate(db: sqlite3.Connection, found: list[str]) -> str:
    """The damaged tables and indexes, and the first problems: each table is checked on
    its own, then its b-trees' pages are looked up (dbstat, when SQLite has it)."""
    names = []
    try:
        tables = [row[0] for row in
                  db.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")]
    except sqlite3.Error as exc:
        if not is_damage(exc):
            raise
        tables = []  # not even the schema can be read: the problems say it all
    for table in tables:
        if problems(db, f'quick_check("{table}")'):
            names += _trees(db, table) or [f"table {table} or one of its indexes"]
    first = "; ".join(found[:3]) + ("; ..." if len(found) > 3 else "")
    return f"{', '.join(names)}: {first}" if names else first


def _trees(db, table) -> list[str]:
    """The b-trees of `table` (itself, its indexes) with a page SQLite cannot read."""
    trees = db.execute("SELECT type, name FROM sqlite_schema WHERE tbl_name = ? AND rootpage > 0",
                       (table,)).fetchall()
    try:
        return [f"{kind} {name}" + (f" of table {table}" if kind == "index" else "")
                for kind, name in trees
                if db.execute("SELECT 1 FROM dbstat WHERE name = ? AND pagetype = 'corrupted' "
                              "LIMIT 1", (name,)).fetchall()]
    except sqlite3.Error:
        return []  # no dbstat in this SQLite, or it cannot walk the damage


class Watch:
    """`quick_check` in a thread of its own, on a read-only connection of its own, while
    the daemon serves; `on_damage(line)` is called in the event loop if it finds any.
    Its read transaction keeps the WAL from being checkpointed past it while it runs."""

    def __init__(self, path: str, on_damage, loop):
        self.path = path
        self.on_damage = on_damage
        self.loop = loop
        self.db = None
        self.stopped = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="store-check", daemon=True)

    def start(self) -> "Watch":
        self.thread.start()
        return self

    def _run(self):
        name_thread("dynamod-check")
        started = time.monotonic()
        try:
            with self.lock:
                if self.stopped:
                    return
                self.db = connect(self.path)
            found = problems(self.db)
            line = damaged(self.path, locate(self.db, found)).message if found else None
        except sqlite3.Error as exc:
            if not self.stopped:
                log.warning("integrity check of %s could not run: %s", self.path, exc)
            return
        finally:
            with self.lock:
                if self.db is not None:
                    self.db.close()
                    self.db = None
        if line is None:
            log.info("quick_check of %s: ok in %.1f s", self.path, time.monotonic() - started)
        elif not self.stopped:
            self.loop.call_soon_threadsafe(self.on_damage, line)

    def stop(self):
        """Interrupt the check (at shutdown) and wait for its thread."""
        with self.lock:
            self.stopped = True
            if self.db is not None:
                self.db.interrupt()
        self.thread.join()
