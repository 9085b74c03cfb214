"""The inventory service: memory and store kept in step.

A change is applied to memory at once (so it is validated as a whole against
the current state), then written through the group-commit writer; the caller
gets its answer only once the change is committed.
"""

import logging
import time

from .errors import DynamoError
from .inventory.changes import ChangeSet
from .inventory.inventory import Inventory
from .inventory.rows import build, change_rows
from .store.sqlite import Store
from .store.writer import Writer

log = logging.getLogger("dynamod.service")


class InventoryService:
    def __init__(self, store: Store, inventory: Inventory):
        self.store = store
        self.inventory = inventory
        self.writer = Writer(store)

    @classmethod
    async def open(cls, path: str, synchronous: str) -> "InventoryService":
        store = await Store.open(path, synchronous)
        started = time.monotonic()
        try:
            tables, next_ids = await store.load()
            inventory = Inventory()
            build(inventory, tables, next_ids)
        except BaseException:
            await store.close()
            raise
        counts = ", ".join(f"{n} {k}" for k, n in inventory.counts().items())
        log.info("inventory loaded from %s in %.2f s: %s", path, time.monotonic() - started, counts)
        service = cls(store, inventory)
        service.writer.start()
        return service

    async def change(self, apply, dry_run: bool = False) -> dict:
        """Run `apply(changes)`; all of it is kept and committed, or none of it.

        Returns the counts of created, updated and deleted objects per kind.
        """
        changes = ChangeSet(self.inventory)
        try:
            apply(changes)
        except BaseException:
            changes.rollback()
            raise
        counts = changes.counts()
        if dry_run:
            changes.rollback()
            return counts
        if changes.ops:
            rows = change_rows(changes)
            await self.writer.submit(rows, self.inventory.next_ids, changes.rollback)
        return counts

    async def close(self):
        try:
            await self.writer.close()
        except DynamoError as exc:
            log.error("last commit failed: %s", exc.message)
        await self.store.close()
