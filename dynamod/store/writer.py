"""Group commit: one task writes every pending change in one transaction.

Changes are applied to memory first, then submitted here with a way to undo
them.  Whatever accumulated while the previous transaction was committing goes
into the next one, so many small requests share one commit.  A submitter's
future resolves only once its rows are committed.  If a commit fails, every
change not yet committed (that batch and any submitted after it, which may
build on it) is undone newest first and its submitter gets the error: memory
never stays ahead of the disk.

One failure is narrower: rows that break a constraint of the store (a new
file's LFN that a file of another block holds: memory leaves that check to the
store's unique index).  The submissions of the batch are then written each in
a savepoint, in order; the first one refused is the offender.  Those before it
commit.  It and every change applied after it are undone, newest first; it
fails with `Refused`; each later one that may build on it (`redo`: an
inventory change, which its submitter can apply again) gets `Resubmit`, and is
applied again to memory as it now is; the others (users, records: no part of
the inventory) stay pending, as they were.
"""

import asyncio
import logging
import time

from .. import failstop
from ..errors import DynamoError, StoreError
from .sqlite import COLUMNS, NEW_FILES, Refused
from .tables import BY_KIND

log = logging.getLogger("dynamod.store")


class Resubmit(DynamoError):
    """Undone because a change submitted before it was refused by the store: apply it
    again (it may have built on the refused change) and submit it anew."""

    code = "store_error"


class _Submission:
    __slots__ = ("rows", "next_ids", "undo", "future", "counted", "redo")

    def __init__(self, rows, next_ids, undo, future, counted, redo):
        self.rows, self.next_ids, self.undo = rows, next_ids, undo
        self.future, self.counted, self.redo = future, counted, redo


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

    def submit(self, rows: dict, next_ids: dict, undo, counted: bool = True,
               redo: bool = False) -> asyncio.Future:
        """Queue rows for the next transaction; the future resolves once committed.
        A transaction of uncounted rows alone (housekeeping) is not in `commits`.
        `redo`: an inventory change, which its submitter applies again on `Resubmit`."""
        future = asyncio.get_running_loop().create_future()
        self.pending.append(_Submission(rows, dict(next_ids), undo, future, counted, redo))
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
            # no local of this loop holds the batch while it waits: its rows, and through
            # their undo the change sets and what their requests decoded, would stay while
            # the store idles
            self._busy = True
            await self._commit(self._take())
            self._busy = False
            self._wake.set()

    def _take(self) -> list:
        batch, self.pending = self.pending, []
        return batch

    async def _commit(self, batch):
        """Write the batch and settle its submitters' futures."""
        try:
            committed, refusal = await self._write(batch)
        except Exception as exc:  # every failure must reach the submitters
            self._fail(batch, exc)
        else:
            self.commits += any(s.counted for s in batch[:committed])
            if committed:
                self.last_commit = time.monotonic()
            for submission in batch[:committed]:
                if not submission.future.done():
                    submission.future.set_result(None)
            if refusal is not None:
                self._refuse(batch[committed], batch[committed + 1:], refusal)

    async def _write(self, batch) -> tuple[int, Refused | None]:
        """Commit the batch, or the submissions before the first one the store refuses:
        how many were committed, and the refusal."""
        if len(batch) > 1 and any(key[0] == NEW_FILES for s in batch for key in s.rows):
            # rows inserted as they are: a later submission's rows cannot be merged over them
            return await self.store.write_each([(s.rows, s.next_ids) for s in batch])
        rows, next_ids = _merge(batch)
        if rows or next_ids:  # flush() alone has nothing to commit
            try:
                await self.store.write(rows, next_ids)
            except Refused as refusal:
                if len(batch) == 1:
                    return 0, refusal
                return await self.store.write_each([(s.rows, s.next_ids) for s in batch])
        return len(batch), None

    def _refuse(self, offender, later, refusal: Refused):
        """The store refused `offender`'s rows: undo it and what was applied after it (that
        may build on it), newest first; keep what is no part of the inventory."""
        later += self.pending
        self.pending = [s for s in later if not s.redo]
        redone = [s for s in later if s.redo]
        log.warning("a change was refused by the database, %d change(s) applied after it "
                    "are applied again: %s", len(redone), refusal.message)
        with failstop.undoing(f"the undo of a change the database refused and of the "
                              f"{len(redone)} applied after it"):
            for submission in reversed([offender, *redone]):
                submission.undo()
        offender.future.set_exception(refusal)
        for submission in redone:
            if not submission.future.done():
                submission.future.set_exception(Resubmit("applied again"))

    def _fail(self, batch, exc):
        failed, self.pending = batch + self.pending, []
        error = exc if isinstance(exc, DynamoError) else StoreError(f"commit failed: {exc}")
        log.error("commit of %d change(s) failed, all undone: %s", len(failed), error.message)
        with failstop.undoing(f"the undo of {len(failed)} change(s) whose commit failed"):
            for submission in reversed(failed):
                submission.undo()
        for submission in failed:
            if not submission.future.done():
                submission.future.set_exception(error)

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
        return batch[0].rows, batch[0].next_ids
    merged, next_ids = {}, {}
    for submission, rows in zip(batch, _by_row(batch)):
        earlier = {key: merged[key] for key in merged.keys() & rows.keys()
                   if type(rows[key]) is dict}
        merged.update(rows)
        for key, old in earlier.items():
            merged[key] = BY_KIND[key[0]].combined(old, rows[key])
        next_ids.update(submission.next_ids)
    return merged, next_ids


def _kinds(rows: dict) -> set:
    return {key[1][0] if key[0] == COLUMNS else key[0] for key in rows}


def _by_row(batch) -> list:
    """The submissions' rows, each one's COLUMNS (the UPDATEs of many rows) given back as
    a row per object when another submission writes rows of the same kind: it may write
    some of the same rows, and `_merge` then combines them row by row."""
    kinds = [_kinds(s.rows) for s in batch]
    given = []
    for number, submission in enumerate(batch):
        rows = submission.rows
        others = set().union(*kinds[:number], *kinds[number + 1:])
        shared = [key for key in rows if key[0] == COLUMNS and key[1][0] in others]
        if shared:
            rows = {key: row for key, row in rows.items() if key not in shared}
            for kind, columns in (key[1] for key in shared):
                width = len(BY_KIND[kind].key)
                for params in submission.rows[COLUMNS, (kind, columns)]:
                    rows[kind, params[:width]] = dict(zip(columns, params[width:]))
        given.append(rows)
    return given
