"""The store's connection: aiosqlite's, a whole transaction one call to its thread.

SQLite works in that thread, so the event loop never waits on the disk.  A call
is one hop to the thread and back, and a whole transaction is one call (`run`):
it goes from BEGIN to COMMIT while the event loop applies the next change.
(With a hop per statement, as aiosqlite's public API has it, each statement
waited for the event loop to be free before the next could start: the commit
of a large injection then waited for the whole apply of the next one, 0.5 s,
and the two took turns instead of overlapping.)  `run` uses aiosqlite's
`Connection._execute` and `_conn`, private names: pyproject.toml pins the
versions that have them as used here.  sqlite3 gives up the GIL while SQLite
works.
"""

import aiosqlite

from ..threadname import name_thread


class StoreThread:
    """An aiosqlite connection, with whole transactions run in its thread."""

    def __init__(self, db: aiosqlite.Connection):
        self._db = db

    @classmethod
    async def connect(cls, database: str, **options) -> "StoreThread":
        """Open `database` (sqlite3.connect's options) in a new thread."""
        store = cls(await aiosqlite.connect(database, **options))
        await store.run(lambda _: name_thread("dynamod-store"))
        return store

    async def run(self, work, *args):
        """`work(connection, *args)` in the thread: its result, or what it raised."""
        db = self._db
        return await db._execute(_Once(work, db._conn, args))

    async def execute(self, sql: str, parameters=()):
        await self.run(_execute, sql, parameters)

    async def fetchall(self, sql: str, parameters=()) -> list:
        return list(await self._db.execute_fetchall(sql, parameters))

    async def executescript(self, script: str):
        await self.run(_executescript, script)

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    async def close(self):
        await self._db.close()


def _execute(db, sql, parameters):
    db.execute(sql, parameters)


def _executescript(db, script):
    db.executescript(script)


class _Once:
    """`work(db, *args)`, letting go of them when made: aiosqlite's thread keeps the last
    call it ran until the next arrives, which for a transaction is its statements and
    rows (an injection's: tens of MiB) kept alive while the store idles."""

    __slots__ = ("call",)

    def __init__(self, work, db, args: tuple):
        self.call = (work, db, args)

    def __call__(self):
        (work, db, args), self.call = self.call, None
        return work(db, *args)
