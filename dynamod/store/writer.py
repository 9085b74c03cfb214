"""Group commit: one task writes every pending change in one transaction.

Changes are applied to memory first, then submitted here with a way to undo
them.  Whatever accumulated while the previous transaction was committing goes
into the next one, so many small requests share one commit.  A submitter's
future resolves only once its rows are committed.  If a commit fails, every
change not yet committed (that batch and any submitted after it, which may
build on it) is undone newest first and its submitter gets the error: memory
never stays ahead of the disk.
"""

import asyncio
import logging
import time

from .. import failstop
from ..errors import DynamoError, StoreError
from .tables import BY_KIND

log = logging.getLogger("dynamod.store")


class Writer:
    def __init__(self, store):
        self.store = store
        self.pending = []
        self.commits = 0
        self.last_commit = time.monotonic()   # when the last transaction committed
        self._wake = asyncio.Event()
        self._closing = False
        self._busy = False
        self._task = None

    def start(self):
        self._task = asyncio.get_running_loop().create_task(self._run(), name="store-writer")

    def submit(self, rows: dict, next_ids: dict, undo, counted: bool = True) -> asyncio.Future:
        """Queue rows for the next transaction; the future resolves once committed.
        A transaction of uncounted rows alone (housekeeping) is not in `commits`."""
        future = asyncio.get_running_loop().create_future()
        self.pending.append((rows, dict(next_ids), undo, future, counted))
        self._wake.set()
        return future

    async def _run(self):
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self.pending:
                if self._closing:
                    return
                continue
            batch, self.pending = self.pending, []
            self._busy = True
            try:
                rows, next_ids = _merge(batch)
                if rows or next_ids:  # flush() alone has nothing to commit
                    await self.store.write(rows, next_ids)
                    self.commits += any(entry[-1] for entry in batch)
                    self.last_commit = time.monotonic()
            except Exception as exc:  # every failure must reach the submitters
                self._fail(batch, exc)
            else:
                for _, _, _, future, _ in batch:
                    if not future.done():
                        future.set_result(None)
            self._busy = False
            self._wake.set()

    def _fail(self, batch, exc):
        failed, self.pending = batch + self.pending, []
        error = exc if isinstance(exc, DynamoError) else StoreError(f"commit failed: {exc}")
        log.error("commit of %d change(s) failed, all undone: %s", len(failed), error.message)
        with failstop.undoing(f"the undo of {len(failed)} change(s) whose commit failed"):
            for _, _, undo, _, _ in reversed(failed):
                undo()
        for _, _, _, future, _ in failed:
            if not future.done():
                future.set_exception(error)

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def idle(self) -> bool:
        """Nothing submitted is waiting or committing: what is applied is committed."""
        return not self.pending and not self._busy

    async def flush(self):
        """Wait until everything submitted so far is committed (or undone)."""
        if self.pending or self._busy:
            try:
                await self.submit({}, {}, lambda: None)
            except DynamoError:
                pass  # the failed changes were undone: memory matches the disk again

    async def close(self):
        """Commit what is pending, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task


def _merge(batch) -> tuple[dict, dict]:
    """The rows and next ids of a batch, later submissions winning (some columns of a row
    go over what an earlier submission wrote of it).  A batch of one (a large injection
    or write-back, most often) is passed as it is rather than copied."""
    if len(batch) == 1:
        return batch[0][0], batch[0][1]
    merged, next_ids = {}, {}
    for rows, ids, *_ in batch:
        earlier = {key: merged[key] for key in merged.keys() & rows.keys()
                   if type(rows[key]) is dict}
        merged.update(rows)
        for key, old in earlier.items():
            merged[key] = BY_KIND[key[0]].combined(old, rows[key])
        next_ids.update(ids)
    return merged, next_ids
