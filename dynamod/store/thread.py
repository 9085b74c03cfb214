"""The store's connection, used from one thread of its own.

SQLite works in that thread, so the event loop never waits on the disk.  A
call is one hop to the thread and back, and a whole transaction is one call
(`run`): it goes from BEGIN to COMMIT while the event loop applies the next
change.  (With a hop per statement, each statement waited for the event loop
to be free before the next could start: the commit of a large injection then
waited for the whole apply of the next one, 0.5 s, and the two took turns
instead of overlapping.)  sqlite3 gives up the GIL while SQLite works.
"""

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from functools import partial


class StoreThread:
    """A sqlite3 connection and the thread that alone uses it."""

    def __init__(self, db: sqlite3.Connection, executor: ThreadPoolExecutor):
        self._db, self._executor = db, executor

    @classmethod
    async def connect(cls, database: str, **options) -> "StoreThread":
        """Open `database` (sqlite3.connect's options) in a new thread."""
        executor = ThreadPoolExecutor(1, thread_name_prefix="store")
        try:
            db = await asyncio.get_running_loop().run_in_executor(
                executor, partial(sqlite3.connect, database, check_same_thread=False,
                                  **options))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(db, executor)

    async def run(self, work, *args):
        """`work(connection, *args)` in the thread: its result, or what it raised."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, partial(work, self._db, *args))

    async def execute(self, sql: str, parameters=()):
        await self.run(_execute, sql, parameters)

    async def fetchall(self, sql: str, parameters=()) -> list:
        return await self.run(_fetchall, sql, parameters)

    async def executescript(self, script: str):
        await self.run(_executescript, script)

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    async def close(self):
        try:
            await self.run(sqlite3.Connection.close)
        finally:
            self._executor.shutdown(wait=True)


def _execute(db, sql, parameters):
    db.execute(sql, parameters)


def _fetchall(db, sql, parameters) -> list:
    return db.execute(sql, parameters).fetchall()


def _executescript(db, script):
    db.executescript(script)
