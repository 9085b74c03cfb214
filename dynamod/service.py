"""The inventory service: memory and store kept in step.

A change is applied to memory at once (so it is validated as a whole against
the current state), then written through the group-commit writer; the caller
gets its answer only once the change is committed.  When the writer has been
idle a while, and at shutdown, the column tables are written as a snapshot that
the next start loads instead of their rows (inventory/snapshot.py).
"""

import asyncio
import logging
import time

from . import collector, failstop, heap
from .errors import DynamoError
from .changelog import ChangeLog
from .inventory.changes import ChangeSet, journal_entry
from .inventory.inventory import Inventory
from .inventory import snapshot
from .inventory.partitions import load as load_partitions
from .inventory.rows import change_rows
from .store.reader import StoreReader
from .store.sqlite import CHANGELOG_UPTO, Refused, Store
from .store.writer import Resubmit, Writer

log = logging.getLogger("dynamod.service")

# The column tables are made again when idle once 1 in COMPACT_EVERY rows or more are
# deleted objects' (a compaction holds the event loop: 0.12 s at medium scale).
COMPACT_EVERY = 4


class InventoryService:
    def __init__(self, store: Store, inventory: Inventory, changelog: ChangeLog | None = None):
        self.store = store
        self.inventory = inventory
        self.changelog = changelog or ChangeLog(None)
        self.writer = Writer(store)
        self.gate = asyncio.Lock()  # held by each change, and by a read/write application
        # What `open` loaded, for the start-up messages (counting walks every dataset).
        self.loaded_counts = {}
        self.snapshot_at = None   # the commit counter of the snapshot in the store, if any
        self.snapshot_written = None   # when this daemon last wrote one (monotonic)
        self._snapshots = None   # the task that writes them when the store is idle

    @classmethod
    async def open(cls, path: str, synchronous: str, on_load=None,
                   changelog: ChangeLog | None = None,
                   file_cache: int | None = None,
                   partitions: dict | None = None,
                   rebuild: bool = False) -> "InventoryService":
        """Open the store and load the inventory (from its snapshot when it can be
        trusted, unless `rebuild`: see inventory/snapshot.py); `on_load(service,
        tables, next_ids)` takes the other records from the same load.  At most
        `file_cache` files stay in memory (those of the blocks used last; None: no
        limit)."""
        store = await Store.open(path, synchronous)
        started = time.monotonic()
        reader = None
        try:
            # Read from this thread (nothing else runs yet), streaming each table.
            reader = StoreReader(path)
            tables, next_ids = reader.tables(), reader.next_ids()
            with collector.paused():
                inventory, snapshot_at = snapshot.load(reader, tables, next_ids, rebuild)
                load_partitions(inventory, tables["partition"], tables["quota"], partitions)
            inventory.file_cache.source = reader
            inventory.file_cache.limit = file_cache
        except BaseException:
            if reader is not None:
                reader.close()
            await store.close()
            raise
        heap.give_back()   # what the load's rows or the snapshot's parts took
        counts = inventory.counts()
        log.info("inventory loaded from %s (%s) in %.2f s: %s", path,
                 "rows" if snapshot_at is None else f"snapshot of commit {snapshot_at}",
                 time.monotonic() - started, ", ".join(f"{n} {k}" for k, n in counts.items()))
        service = cls(store, inventory, changelog)
        service.loaded_counts = counts
        service.snapshot_at = snapshot_at
        collector.scale(sum(counts.values()))
        service.writer.start()
        loop = asyncio.get_running_loop()
        service.changelog.start(path, lambda seq: loop.call_soon_threadsafe(
            service._logged, seq))
        if on_load is not None:
            try:
                on_load(service, tables, next_ids)
            except BaseException:   # its threads would keep the process from exiting
                await service.close()
                raise
        return service

    async def change(self, apply, dry_run: bool = False, actor: str = "-") -> dict:
        """Run `apply(changes)`; all of it is kept and committed, or none of it.

        Waits while a read/write application holds the gate (its changes are
        validated against the inventory it forked from plus its own).
        Returns the counts of created, updated and deleted objects per kind.
        """
        while True:
            async with self.gate:
                changes, counts, committed = self._apply(apply, dry_run, actor)
            if await self._committed(changes, committed):
                return counts

    async def change_holding_gate(self, apply, actor: str, also=None) -> dict:
        """`change` for the task that already holds `gate` (a read/write application);
        `also(counts)` gives more rows to commit in the same transaction."""
        while True:
            changes, counts, committed = self._apply(apply, False, actor, also)
            if await self._committed(changes, committed):
                return counts

    async def _committed(self, changes: ChangeSet, committed) -> bool:
        """Wait for the commit: True once committed, False when the change must be applied
        again (a change before it was refused: writer.py).  A refusal of its own is
        told precisely when the change knows its cause (a new file's LFN in the store)."""
        try:
            await committed
        except Resubmit:
            return False
        except Refused as refusal:
            raise changes.in_store() or refusal from None
        self.changelog.committed()
        return True

    def _logged(self, seq: int):
        """The change log's file holds its entries up to `seq`: they may go."""
        if not self.writer.closing:
            self.writer.submit({(CHANGELOG_UPTO, (seq,)): None}, {}, lambda: None, counted=False)

    def _apply(self, apply, dry_run, actor, also=None):
        """Apply, then prepare the commit.  A refused change is undone; past that point
        (or on running out of memory anywhere) memory can no longer be shown to equal
        the store, and the daemon stops (failstop.py)."""
        changes = ChangeSet(self.inventory)
        with collector.paused():
            try:
                apply(changes)
                if dry_run and (found := changes.in_store()):
                    raise found   # what the commit would be refused for
            except MemoryError as exc:
                failstop.stop(f"out of memory while applying a change ({exc!r})")
            except BaseException:
                with failstop.undoing("the undo of a refused change"):
                    changes.discard()
                raise
            try:
                counts = changes.counts()
                if dry_run or not (changes.ops or changes.columns):
                    with failstop.undoing("the undo of a dry run"):
                        changes.discard()
                    return changes, counts, _done()
                rows = change_rows(changes)
                if also is not None:
                    rows.update(also(counts))
                if self.changelog.path:   # committed with the change, or neither is
                    rows.update(self.changelog.entry(actor, journal_entry(changes.journal)))
                committed = self.writer.submit(rows, self.inventory.next_ids, changes.rollback,
                                               redo=True)
                committed.add_done_callback(lambda _: changes.release())
            except Exception as exc:
                failstop.stop(f"preparing the commit of an applied change raised {exc!r}")
        return changes, counts, committed

    # ----------------------------------------------------------- snapshot
    def keep_snapshot(self, idle: float, interval: float):
        """Write a snapshot whenever the store has had commits since the last one, none
        for `idle` seconds, and this daemon wrote none for `interval` seconds (a busy
        daemon does not rewrite tens of MiB again and again; close writes the last)."""
        self._snapshots = asyncio.get_running_loop().create_task(
            self._keep_snapshot(idle, interval), name="snapshot")

    async def _keep_snapshot(self, idle: float, interval: float):
        while True:
            await asyncio.sleep(min(max(idle, 0.1), 5.0))
            now = time.monotonic()
            if (self.store.commits != self.snapshot_at and self.writer.idle
                    and now - self.writer.last_commit >= idle
                    and (self.snapshot_written is None
                         or now - self.snapshot_written >= interval)):
                await self.write_snapshot(compact=True)

    async def write_snapshot(self, compact: bool = False) -> bool:
        """Write the snapshot of memory as the store has committed it (now, while the
        writer is idle); False if it is not idle, or a commit came while the parts
        were being made (in a thread: only the arrays' copy is made here).  With
        `compact`, the column tables are then made again from the parts when a
        quarter of their rows or more are deleted objects' (`compact`)."""
        if not self.writer.idle:
            return False
        counter, started = self.store.commits, time.monotonic()
        memory = self._memory()
        try:
            make = snapshot.take(self.inventory)
            copied = time.monotonic()
            parts = await asyncio.to_thread(make)
            made, size = time.monotonic(), sum(map(len, parts.values()))
            written = await self.store.write_snapshot(counter, snapshot.FORMAT, parts)
        except Exception as exc:   # never fatal: the next start loads from rows
            log.error("inventory snapshot not written: %r", exc)
            return False
        finally:   # an attempt that failed waits its interval too (a full disk)
            self.snapshot_written = time.monotonic()
        if written:
            self.snapshot_at = counter
            log.info("inventory snapshot of commit %d written: %.1f MiB in %.2f s (%.3f s "
                     "to copy the tables, %.2f s to make the parts in a thread, %.2f s to "
                     "commit)", counter, size / 2**20,
                     self.snapshot_written - started, copied - started, made - copied,
                     self.snapshot_written - made)
            if (compact and self._memory() == memory and self.writer.idle
                    and not self.gate.locked()):
                self.compact(parts)
        del make, parts
        await asyncio.to_thread(heap.give_back)   # the parts' tens of MiB, the old tables
        return written

    def _memory(self) -> tuple:
        """What says that memory is as it was: the store's commits, the inventory's
        changes and undos."""
        return self.store.commits, self.inventory.applied, self.inventory.undone

    def compact(self, parts: dict) -> int:
        """Drop the deleted objects' rows from the column tables, by making them again
        from `parts` (a snapshot of memory as it is) when a quarter of their rows or
        more are such holes: a dataset replaced again and again would otherwise keep
        the rows of every earlier one.  Runs on the event loop (no change can come
        in between); a failure keeps the old tables, which stay sound."""
        inventory = self.inventory
        dead, rows = inventory.dead_rows(), inventory.rows()
        if not dead or dead * COMPACT_EVERY < rows:
            return 0
        started = time.monotonic()
        try:
            with collector.paused():
                dropped = snapshot.compact(inventory, parts)
        except Exception as exc:
            log.error("inventory not compacted (the tables stay as they are): %r", exc)
            return 0
        log.info("inventory compacted: %d rows of deleted objects dropped (%d rows left) "
                 "in %.2f s", dropped, rows - dropped, time.monotonic() - started)
        return dropped

    async def close(self):
        if self._snapshots is not None:
            self._snapshots.cancel()
            try:
                await self._snapshots
            except asyncio.CancelledError:
                pass
        try:
            await self.writer.close()
        except DynamoError as exc:
            log.error("last commit failed: %s", exc.message)
        else:
            if self.store.commits != self.snapshot_at:
                await self.write_snapshot()
        self.changelog.close()   # writes the last commits' lines
        self.inventory.file_cache.source.close()  # first: the last connection cleans the WAL up
        await self.store.close()


def _done() -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future
