"""The inventory service: memory and store kept in step.

A change is applied to memory at once (so it is validated as a whole against
the current state), then written through the group-commit writer; the caller
gets its answer only once the change is committed.
"""

import asyncio
import logging
import time

from . import collector, failstop
from .errors import DynamoError
from .changelog import ChangeLog
from .inventory.changes import ChangeSet, journal_lines
from .inventory.inventory import Inventory
from .inventory.partitions import load as load_partitions
from .inventory.rows import build, change_rows
from .store.reader import StoreReader
from .store.sqlite import CHANGELOG_UPTO, Refused, Store
from .store.writer import Resubmit, Writer

log = logging.getLogger("dynamod.service")


class InventoryService:
    def __init__(self, store: Store, inventory: Inventory, changelog: ChangeLog | None = None):
        self.store = store
        self.inventory = inventory
        self.changelog = changelog or ChangeLog(None)
        self.writer = Writer(store)
        self.gate = asyncio.Lock()  # held by each change, and by a read/write application
        # What `open` loaded, for the start-up messages (counting walks every dataset).
        self.loaded_counts = {}

    @classmethod
    async def open(cls, path: str, synchronous: str, on_load=None,
                   changelog: ChangeLog | None = None,
                   file_cache: int | None = None,
                   partitions: dict | None = None) -> "InventoryService":
        """Open the store and load the inventory; `on_load(service, tables, next_ids)`
        takes the other records from the same load.  At most `file_cache` files stay
        in memory (those of the blocks used last; None: no limit)."""
        store = await Store.open(path, synchronous)
        started = time.monotonic()
        reader = None
        try:
            # Read from this thread (nothing else runs yet), streaming each table.
            reader = StoreReader(path)
            tables, next_ids = reader.tables(), reader.next_ids()
            inventory = Inventory()
            with collector.paused():
                build(inventory, tables, next_ids)
                load_partitions(inventory, tables["partition"], tables["quota"], partitions)
            inventory.file_cache.source = reader
            inventory.file_cache.limit = file_cache
        except BaseException:
            if reader is not None:
                reader.close()
            await store.close()
            raise
        counts = inventory.counts()
        log.info("inventory loaded from %s in %.2f s: %s", path, time.monotonic() - started,
                 ", ".join(f"{n} {k}" for k, n in counts.items()))
        service = cls(store, inventory, changelog)
        service.loaded_counts = counts
        collector.scale(sum(counts.values()))
        service.writer.start()
        loop = asyncio.get_running_loop()
        service.changelog.start(path, lambda seq: loop.call_soon_threadsafe(
            service._logged, seq))
        if on_load is not None:
            on_load(service, tables, next_ids)
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
                if dry_run or not changes.ops:
                    with failstop.undoing("the undo of a dry run"):
                        changes.discard()
                    return changes, counts, _done()
                rows = change_rows(changes)
                if also is not None:
                    rows.update(also(counts))
                if self.changelog.path:   # committed with the change, or neither is
                    rows.update(self.changelog.entry(actor, journal_lines(changes.journal)))
                committed = self.writer.submit(rows, self.inventory.next_ids, changes.rollback,
                                               redo=True)
                committed.add_done_callback(lambda _: changes.release())
            except Exception as exc:
                failstop.stop(f"preparing the commit of an applied change raised {exc!r}")
        return changes, counts, committed

    async def close(self):
        try:
            await self.writer.close()
        except DynamoError as exc:
            log.error("last commit failed: %s", exc.message)
        self.changelog.close()   # writes the last commits' lines
        self.inventory.file_cache.source.close()  # first: the last connection cleans the WAL up
        await self.store.close()


def _done() -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future
