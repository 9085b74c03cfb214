"""The SQLite store: opened once, loaded whole at start-up, written in batches.

The daemon holds the inventory in memory; this module only persists it.  It
speaks in plain tuples (see tables.py) so it knows nothing of the objects.
One aiosqlite connection, in its thread (thread.py), does all the work, so the
event loop never waits on the disk; a transaction is one call to that thread.
Every transaction it commits bumps the commit counter (table `commits`), which
stamps the snapshot of the column tables that it also writes (`write_snapshot`;
inventory/snapshot.py).  Opening takes the store's lock (lock.py) and reads the
schema version before anything writes the file.
"""

import asyncio
import logging
import os
import sqlite3
import tempfile
import time
import zlib
from collections import defaultdict
from importlib import resources

import orjson

from .. import failstop
from ..errors import DynamoError, StoreError
from . import check, uri
from .lock import StoreLock
from .thread import StoreThread
from .tables import BY_KIND, ID_KINDS, TABLES

log = logging.getLogger("dynamod.store")

SCHEMA_VERSION = 5
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
JOURNAL_SIZE_LIMIT = 64 << 20

# Each entry upgrades the schema from version N (its index + 1) to N + 1.
MIGRATIONS: list[str] = [
    "ALTER TABLE applications ADD COLUMN workarea TEXT",   # 1 -> 2: work areas recorded
    "CREATE TABLE change_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, "
    "actor TEXT NOT NULL, lines TEXT NOT NULL)",           # 2 -> 3: the change log's queue
    "CREATE TABLE partitions (name TEXT PRIMARY KEY, definition TEXT NOT NULL); "
    "CREATE TABLE quotas (site TEXT NOT NULL, partition TEXT NOT NULL, "
    "quota INTEGER NOT NULL, PRIMARY KEY (site, partition))",  # 3 -> 4: partitions, quotas
    "CREATE TABLE commits (id INTEGER PRIMARY KEY CHECK (id = 0), counter INTEGER NOT NULL); "
    "INSERT INTO commits VALUES (0, 0); "
    "CREATE TABLE snapshot_stamp (id INTEGER PRIMARY KEY CHECK (id = 0), "
    "format INTEGER NOT NULL, counter INTEGER NOT NULL, taken REAL NOT NULL); "
    "CREATE TABLE snapshot_parts (name TEXT PRIMARY KEY, crc32 INTEGER NOT NULL, "
    "data BLOB NOT NULL)",   # 4 -> 5: the commit counter, the snapshot of the columns
]


# Deletes with no table of their own: every file of a block, keyed (block_id,); the
# change log's entries up to a number, keyed (seq,) (see changelog.py).
BLOCKFILES = "blockfiles"
CHANGELOG_UPTO = "changelog_upto"
# Files never stored before, keyed (the first one's id,): a list of file rows, inserted as
# they are (an injection's bulk; no other row of the same submission names them).
NEW_FILES = "newfiles"
# Updates of the same columns of many rows, keyed (kind, columns): a list of the UPDATE's
# parameters, each row's key then its columns (a write-back's bulk, kept as columns from
# the inventory's tables to executemany; no other row of the same submission is of them).
COLUMNS = "columns"
# From this many rows on, a table's inserts (or upserts) go as one JSON array that SQLite
# reads itself (json_each): one statement, one step, in which the connection's thread does
# not hold the GIL, where executemany takes it back after each row (and waits for it
# while the event loop applies the next change).  As fast alone, and the two overlap.
JSON_ROWS = 64
BACKUP_PAGES = 256   # pages a backup copies between two progress reports (1 MiB)


def _delete_order() -> tuple:
    """(kind, sql) for the deletes, children first; a block's files before the block."""
    order = []
    for table in reversed(TABLES):
        if table.kind == "block":
            order.append((BLOCKFILES, "DELETE FROM files WHERE block_id = ?"))
        if table.kind == "changelog":
            order.append((CHANGELOG_UPTO, "DELETE FROM change_log WHERE seq <= ?"))
        order.append((table.kind, table.delete_sql))
    return tuple(order)


DELETES = _delete_order()
# Every transaction the store commits bumps the counter (a snapshot is stamped with it).
BUMP_SQL = "UPDATE commits SET counter = counter + 1"
NEXT_IDS_SQL = ("INSERT INTO next_ids (kind, next_id) VALUES (?, ?) "
                "ON CONFLICT (kind) DO UPDATE SET next_id = excluded.next_id")
# The kinds numbered from `next_ids`: the inventory's, and the applications.
NUMBERED_KINDS = ID_KINDS + ("application",)


class SchemaTooNew(DynamoError):
    code = "store_error"


class Refused(StoreError):
    """A row broke a constraint of the store (a file's LFN that another file has): the
    submission that wrote it is at fault, not the store."""


class Store:
    def __init__(self, db: StoreThread, path: str, lock: StoreLock | None = None):
        self.db = db
        self.path = path
        self.lock = lock  # None: a store read, not owned (tests' snapshots)
        self.fresh = {}  # kind -> the first id no committed row has (next_ids, committed)
        self.commits = 0  # the committed value of the commit counter (table `commits`)
        self.identity = None  # (device, inode) of the file it writes (an owned store)
        self._file = os.path.abspath(path)   # as opened, whatever directory comes after
        self._transactions = asyncio.Lock()  # one at a time: each is several awaits

    @classmethod
    async def open(cls, path: str, synchronous: str = "FULL") -> "Store":
        """Lock, then open (creating or upgrading the schema); a database in use by
        another dynamod, damaged, or one SQLite cannot open or read is a StoreError,
        so the daemon stops with one line naming it."""
        if synchronous.upper() not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}")
        lock = StoreLock.take(path)
        try:
            # Absolute: SQLite takes a name beginning with "file:" for a URI.
            db = await StoreThread.connect(os.path.abspath(path), isolation_level=None)
        except sqlite3.Error as exc:
            lock.release()
            raise StoreError(f"cannot open the database {path}: {exc}") from exc
        try:
            await db.execute("PRAGMA busy_timeout = 2000")
            store = cls(db, path, lock)
            version = await store._schema_version()  # before anything writes the file
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            await db.execute("PRAGMA foreign_keys = ON")
            # A WAL that grew while an application held its snapshot is cut back to this
            # once a checkpoint has emptied it (else the file keeps its largest size).
            await db.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            await store._prepare_schema(version)
            await store._repair_next_ids()
            store.fresh = dict(await db.fetchall("SELECT kind, next_id FROM next_ids"))
            store.commits = await store._scalar("SELECT counter FROM commits")
            store.identity = _identity(store._file)
        except sqlite3.Error as exc:
            await db.close()
            lock.release()
            if check.is_damage(exc):
                raise check.damaged(path, str(exc)) from None
            raise StoreError(f"cannot open the database {path}: {exc}") from exc
        except BaseException:
            await db.close()
            lock.release()
            raise
        return store

    async def _schema_version(self) -> int:
        """The file's schema version; a newer one than this dynamod knows is refused
        before anything (the journal mode included) changes in the file."""
        version = await self._scalar("PRAGMA user_version")
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"database {self.path} has schema version {version}; this dynamod knows "
                f"versions up to {SCHEMA_VERSION}: upgrade dynamod"
            )
        return version

    async def _prepare_schema(self, version: int):
        """Create or upgrade the schema.  Each step commits with its version number, so a
        crash between steps resumes at the next one; a current database is not written
        at all (another process may hold its lock, the disk may be full)."""
        if version == 0:
            ddl = resources.files(__package__).joinpath("schema.sql").read_text()
            await self.db.executescript(
                f"BEGIN; {ddl}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            return
        for number, step in enumerate(MIGRATIONS[version - 1:], start=version + 1):
            await self.db.executescript(
                f"BEGIN; {step}; PRAGMA user_version = {number}; COMMIT;")
        if version < SCHEMA_VERSION:   # the journal says when a way back closed
            log.warning("database %s: schema upgraded from version %d to %d; a dynamod "
                        "older than this one no longer opens it (a backup taken before "
                        "the upgrade does)", self.path, version, SCHEMA_VERSION)

    async def _repair_next_ids(self):
        """A next id not above its table's highest id (a database edited by hand, restored
        in part) would give an id twice: it is raised, with a warning per kind.  Read
        first, so that a sound store is not written."""
        stored = dict(await self.db.fetchall("SELECT kind, next_id FROM next_ids"))
        repairs = []
        for kind in NUMBERED_KINDS:
            table = BY_KIND[kind].name
            highest = await self._scalar(f"SELECT max(id) FROM {table}")
            if highest is not None and stored.get(kind, 1) <= highest:
                repairs.append((kind, table, stored.get(kind), highest + 1))
        if repairs:
            await self._transaction(
                [[(NEXT_IDS_SQL, [(kind, new) for kind, _, _, new in repairs])]])
        for kind, table, old, new in repairs:
            log.warning("next_ids repaired: %s next id was %s, not above the highest id in "
                        "table %s; now %d", kind, old, table, new)

    async def _scalar(self, sql, params=()):
        rows = await self.db.fetchall(sql, params)
        return rows[0][0] if rows else None

    async def write(self, changes: dict, next_ids: dict):
        """Apply `changes` ({(kind, key): row, or None to delete}) in one transaction.

        A row is a tuple of every column (an INSERT, or an upsert for a key that may
        be stored already), or a dict of the columns that changed (an UPDATE); the
        UPDATEs of many rows' same columns may come as one list (COLUMNS).
        Deletes go first so that a name freed and taken again in the same batch
        does not trip a unique index; foreign keys are checked at COMMIT.  A delete
        of kind "blockfiles", key (block_id,), removes every file of that block.

        Rows go in one `executemany` per statement, and the whole transaction in one
        call to the connection's thread (thread.py), not one per statement or row.
        Cancelling the caller does not stop it: it still ends in COMMIT or ROLLBACK.
        """
        statements = _statements(changes, self.fresh)
        statements.append(self._next_ids(next_ids, self.fresh))
        await asyncio.shield(self._transaction([statements]))
        self.fresh.update(next_ids)

    async def write_snapshot(self, counter: int, format: int, parts: dict) -> bool:
        """Replace the snapshot by `parts` ({name: bytes}), stamped with `counter` and
        `format`, in one transaction, if the commit counter is still `counter` (else
        nothing is written and False returned: a commit came after the parts were
        taken).  The counter is not bumped: the snapshot changes no other row."""
        rows = await asyncio.to_thread(
            lambda: [(name, zlib.crc32(data), data) for name, data in parts.items()])
        async with self._transactions:
            self._check_file()
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                if await self._scalar("SELECT counter FROM commits") != counter:
                    await self._rollback()
                    return False
                await self.db.execute("DELETE FROM snapshot_stamp")
                await self.db.execute("DELETE FROM snapshot_parts")
                await self.db.run(sqlite3.Connection.executemany,
                                  "INSERT INTO snapshot_parts (name, crc32, data) "
                                  "VALUES (?, ?, ?)", rows)
                await self.db.execute("INSERT INTO snapshot_stamp (id, format, counter, taken) "
                                      "VALUES (0, ?, ?, ?)", (format, counter, time.time()))
                await self.db.execute("COMMIT")
            except BaseException:
                await self._rollback()
                raise
        return True

    async def write_each(self, submissions: list) -> tuple[int, Refused | None]:
        """Write `submissions` ([(changes, next_ids)], as `write` takes them) in order, in
        one transaction, each in a savepoint of its own.  The first whose rows break a
        constraint is rolled back alone and ends the transaction, which then commits
        those before it.  Returns how many were committed and, when one was refused,
        its `Refused`.  Any other error rolls everything back and is raised."""
        fresh, parts = dict(self.fresh), []
        for changes, next_ids in submissions:
            parts.append(_statements(changes, fresh))   # a later one's tuple for an id an
            fresh.update(next_ids)                      # earlier one gave is an upsert

        def next_ids_of(done: int) -> dict:
            """The next ids once the first `done` submissions are written."""
            merged = {}
            for _, next_ids in submissions[:done]:
                merged.update(next_ids)
            return merged

        refused = await asyncio.shield(self._transaction(
            parts, lambda done: [self._next_ids(next_ids_of(done), self.fresh)]))
        done = len(submissions) if refused is None else refused[0]
        self.fresh.update(next_ids_of(done))
        return done, None if refused is None else refused[1]

    @staticmethod
    def _next_ids(next_ids: dict, fresh: dict) -> tuple:
        return (NEXT_IDS_SQL, [(kind, next_id) for kind, next_id in next_ids.items()
                               if fresh.get(kind) != next_id])

    async def _transaction(self, parts: list, ending=None) -> tuple | None:
        """BEGIN, each (sql, rows) of each part (a list of statements) through
        `executemany`, the commit counter's bump, COMMIT, in one call to the store's
        thread (`_transact`): all or nothing, one transaction at a time.  Any error rolls
        it back; a disk error (SQLITE_IOERR) also buries the failed commit.  An UPDATE
        must find every row it names: memory holds the object, so the store must too,
        and a row missing is refused rather than silently not written.

        With `ending` (write_each), each part runs in a savepoint; a part that breaks a
        constraint is rolled back alone, `ending(n)` gives the statements that close
        the n parts before it, and the transaction commits: returns (n, its `Refused`)
        (None: no part was refused).  Without, a broken constraint is `Refused`, all
        rolled back."""
        async with self._transactions:
            self._check_file()
            try:
                refused = await self.db.run(_transact, parts, ending)
                self.commits += 1
            except sqlite3.Error as exc:
                await self._rollback()
                if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_IOERR:
                    await self._bury_failed_commit()
                error = Refused if isinstance(exc, sqlite3.IntegrityError) else StoreError
                raise error(f"the database refused the change: {exc}") from exc
            except BaseException:
                await self._rollback()
                raise
        return refused

    def _check_file(self):
        """Before a transaction: the file at `path` is still the one this store opened.
        One replaced (a copy put there by hand) or removed while the daemon runs would
        take no more of its commits (they would go to the old file, lost at the next
        start), and memory could no longer be shown to equal the file the next start
        reads: the daemon stops for good, and an operator says which file is right."""
        if self.identity is None:
            return
        try:
            found = _identity(self._file)
        except OSError:
            found = None
        if found != self.identity:
            failstop.damaged(
                f"database {self.path} was {'removed' if found is None else 'replaced'} while "
                f"dynamod served it; nothing more is written: start dynamod again to serve "
                f"the file now there (to put a backup in place, stop dynamod and run dynamod "
                f"restore COPY)")

    async def _rollback(self):
        if self.db.in_transaction:
            try:
                await self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the transaction is gone already; nothing was committed

    async def _bury_failed_commit(self):
        """Commit a transaction that only rewrites the header page, so that its WAL frame
        lands on the failed commit's first frame.  After a failed fsync that commit may
        still sit whole in the page cache, and WAL recovery at the next start would take
        it for committed; with its first frame overwritten its checksum chain is broken.
        When this commit fails too, its frame has most often reached the page cache all
        the same; if not, the risk lasts until a commit passes."""
        try:
            await self.db.executescript(
                f"BEGIN IMMEDIATE; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        except sqlite3.Error:
            await self._rollback()

    async def integrity_errors(self) -> list[str]:
        """What `PRAGMA integrity_check` and `foreign_key_check` report (empty: sound)."""
        found = [r[0] for r in await self.db.fetchall("PRAGMA integrity_check")]
        found = [] if found == ["ok"] else found
        found += [str(r) for r in await self.db.fetchall("PRAGMA foreign_key_check")]
        return found

    async def backup(self, dest: str, progress=None):
        """Copy the database to `dest`, all or nothing (see `copy_database`), in a thread
        (which calls `progress`)."""
        await asyncio.to_thread(copy_database, self.path, dest, progress)

    async def close(self):
        await self.db.close()
        if self.lock is not None:
            self.lock.release()  # last: no connection of ours is left on the file


def _identity(path: str) -> tuple[int, int]:
    found = os.stat(path)
    return found.st_dev, found.st_ino


def _transact(db, parts: list, ending) -> tuple | None:
    """`Store._transaction`'s statements, in the store's thread: what it returns."""
    refused = None
    db.execute("BEGIN IMMEDIATE")
    for number, statements in enumerate(parts):
        if ending is None:
            _execute_all(db, statements)
            continue
        db.execute("SAVEPOINT part")
        try:
            _execute_all(db, statements)
        except sqlite3.IntegrityError as exc:
            db.execute("ROLLBACK TO part")
            refused = number, Refused(f"the database refused the change: {exc}")
        db.execute("RELEASE part")
        if refused is not None:
            break
    if ending is not None:
        _execute_all(db, ending(len(parts) if refused is None else refused[0]))
    db.execute(BUMP_SQL)
    db.execute("COMMIT")
    return refused


def _execute_all(db, statements: list):
    """Each (sql, rows) through `executemany`; an UPDATE must find every row."""
    for sql, rows in statements:
        if rows:
            cursor = db.executemany(sql, rows)
            if sql.startswith("UPDATE") and cursor.rowcount != len(rows):
                raise StoreError(f"the database lacks {len(rows) - cursor.rowcount}"
                                 f" of the {len(rows)} rows to update ({sql})")


def _statements(changes: dict, fresh: dict) -> list:
    """The (sql, rows) of `Store.write`, in their order: deletes children first, then
    per table (parents first) its inserts, upserts and updates.  An object with an id
    never used before is a plain INSERT (cheaper than the upsert by a third), and so are
    the rows of NEW_FILES; many rows go as one JSON array (JSON_ROWS)."""
    deletes, inserts, upserts, updates = (defaultdict(list) for _ in range(4))
    for (kind, key), row in changes.items():
        if kind == NEW_FILES:
            inserts["file"] += row
        elif kind == COLUMNS:
            updates[key] += row
        elif row is None:
            deletes[kind].append(key)
        elif type(row) is dict:
            updates[kind, tuple(row)].append((*key, *row.values()))
        elif kind in ID_KINDS and key[0] >= fresh.get(kind, 1):
            inserts[kind].append(row)
        else:
            upserts[kind].append(row)
    statements = [(sql, deletes[kind]) for kind, sql in DELETES if kind in deletes]
    for table in TABLES:
        for upsert, rows in ((False, inserts.get(table.kind)), (True, upserts.get(table.kind))):
            if rows and len(rows) >= JSON_ROWS and table.json:
                statements.append((table.from_json_sql(upsert), [(orjson.dumps(rows),)]))
            else:
                statements.append((table.upsert_sql if upsert else table.insert_sql, rows))
        # in key order: the table's pages in turn (a random order takes about twice as long)
        statements += [(table.update_sql(columns), sorted(rows))
                       for (kind, columns), rows in updates.items() if kind == table.kind]
    return statements


PROGRESS_SECONDS = 1.0   # between two reports of a copy's progress


def paced(report):
    """`progress(copied, total)` for copy_database that tells `report(event)` about a
    copy of several steps: after its first step, then at most once every
    PROGRESS_SECONDS (`{"copied": bytes, "total": bytes}`), and when the check of the
    copy begins, if it told anything before (`{"checking": True, "total": bytes}`).  A
    copy of one step says nothing."""
    told = [None]   # when it last told

    def progress(copied, total):
        now = time.monotonic()
        if copied is None:
            if told[0] is None:
                return
            event = {"checking": True, "total": total}
        elif copied < total if told[0] is None else now - told[0] >= PROGRESS_SECONDS:
            event = {"copied": copied, "total": total}
        else:
            return
        told[0] = now
        report(event)
    return progress


def copy_database(path: str, dest: str, progress=None):
    """SQLite's online backup, from a read snapshot of its own (WAL: the writer keeps
    committing), into a temporary file beside `dest`; the copy is checked
    (integrity_check), synced, then linked to `dest`, which must not exist.  On any
    failure the temporary file goes and nothing is at `dest`.

    It copies BACKUP_PAGES pages at a time, calling `progress(copied, total)` (bytes)
    after each step, and `progress(None, total)` when the check begins.  Every step
    reads the one snapshot the source connection's transaction holds: SQLite restarts
    a stepped copy whenever another connection commits, which under steady commits
    would be for ever."""
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.", suffix=".tmp",
                                     dir=os.path.dirname(dest))
    os.close(fd)
    try:
        target = sqlite3.connect(temporary)
        try:
            source = sqlite3.connect(uri.read_only(path), uri=True)
            try:
                source.execute("BEGIN")
                source.execute("SELECT 1 FROM sqlite_schema LIMIT 1").fetchall()  # the read
                page = source.execute("PRAGMA page_size").fetchone()[0]
                source.backup(target, pages=BACKUP_PAGES, progress=progress and (
                    lambda status, left, total: progress((total - left) * page, total * page)))
            finally:
                source.close()
            if progress is not None:
                progress(None, os.path.getsize(temporary))
            problems = check.problems(target, "integrity_check")
        finally:
            target.close()
        if problems:
            raise StoreError(f"the copy failed its integrity check: {problems[0]}")
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(temporary, dest)  # unlike rename, never replaces a file that appeared
    finally:
        for leftover in (temporary, f"{temporary}-journal", f"{temporary}-wal",
                         f"{temporary}-shm"):
            try:
                os.unlink(leftover)
            except FileNotFoundError:
                pass
    sync_directory(os.path.dirname(dest))


def sync_directory(path: str):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
