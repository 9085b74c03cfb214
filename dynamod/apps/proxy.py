"""The inventory as an application sees it.

The child holds the daemon's objects as they were at the fork (copy-on-write).
`update` and `delete` change that copy through the same rules as the daemon
and keep a record of each call; a read/write application's records go back to
the daemon when it ends well, a read-only one's die with it.
"""

import time
from collections.abc import Mapping

from ..errors import DynamoError, InvalidValue
from ..inventory.changes import ChangeSet
from ..inventory.objects import CLASSES, BlockReplica
from ..inventory.updates import (Runs, apply_run, finder, plain_updater, record,
                                 replica_updater, row_tables)


class ApplicationInventory:
    def __init__(self, inventory, writable: bool):
        self._inventory = inventory
        self.writable = writable
        self.records = Runs()
        self._changes = ChangeSet(inventory)   # one for every call: see `_apply`
        # the last call's shape, its finder, its plain_updater; the replica_updater
        # (made again after any call it did not apply)
        self._shape = self._find = self._plain = self._replicas = None
        # {kind: rows}: the objects of the tables whose objects may be recorded by row
        # (updates.plain_updater) that existed at the fork, the rows below these
        self._fork_rows = {kind: len(table) for kind, table in row_tables(inventory).items()}

    @property
    def memory(self):
        """The daemon's Inventory as it was at the fork, with this application's changes:
        for checking scripts (`problems()`, `counts()`) and tests.  Its interface is the
        daemon's own, not the original's, and may change between versions."""
        return self._inventory

    @property
    def sites(self) -> dict:
        return self._inventory.sites

    @property
    def groups(self) -> dict:
        return self._inventory.groups

    @property
    def datasets(self) -> Mapping:
        """The datasets by name (read-only; change them through `update`/`delete`)."""
        return self._inventory.datasets

    @property
    def partitions(self) -> dict:
        """{name: Partition}; `site.partitions[name]` gives its quota and usage there."""
        return dict(self._inventory.usage.partitions)

    def find_file(self, lfn):
        """The File with this LFN, or None."""
        return self._inventory.file_cache.find(lfn)

    def find_block(self, full_name):
        """The Block `dataset#block`, or None."""
        dataset, _, name = full_name.partition("#")
        found = self._inventory.datasets.get(dataset)
        return found.find_block(name) if found else None

    def make_object(self, text: str):
        """The detached object a printed object describes, as the original's
        `make_object`: `inventory.make_object("Site('T2_X','se.x','disk','','ready',0)")`."""
        obj = eval(text, {"__builtins__": {}, **{c.__name__: c for c in CLASSES}})  # noqa: S307
        if not isinstance(obj, CLASSES):
            raise InvalidValue(f"not an inventory object: {text!r}")
        if isinstance(obj, BlockReplica) and obj.file_ids is not None:
            raise InvalidValue("a printed BlockReplica shows a file count, not its files: "
                               "build it with BlockReplica(..., files=[LFN, ...])")
        return obj

    def update(self, obj, site=None):
        """Create or update `obj` by its identity; returns the inventory's object.

        `site` says where a new file of a block with replicas is present.
        """
        if self._replicas is None:
            self._replicas = replica_updater(self._inventory, self.records,
                                             self._fork_rows["blockreplica"])
        result = self._replicas(obj)   # most calls: a built replica's plain fields
        if result is not None:
            return result
        return self._apply(*record("update", obj, site))

    def delete(self, obj):
        """Remove `obj` (found by its identity) with the usual cascade; returns `obj`, as
        the original returned the object it removed (`LOG.info('deleted %s',
        inventory.delete(replica))`); a missing one raises `NotFound`."""
        self._apply(*record("delete", obj))
        return obj

    def register_update(self, obj):
        """The original's record of an object changed in place: `update` does it."""
        return self.update(obj)

    def _apply(self, shape, row):
        """Apply one call's record as a change of its own: refused, it is undone; kept, it
        stays (this copy is never committed, so nothing of it need be remembered).  A
        plain update of an existing object is set straight (`plain_updater`)."""
        self._replicas = None   # its look-ups may no longer hold
        if shape != self._shape:   # calls of one shape in a row share a finder
            self._shape = shape
            self._find = find = finder(shape, self._inventory)
            self._plain = plain_updater(self._inventory, shape, find, self.records,
                                        self._fork_rows.get(shape[1]))
        if self._plain is not None:   # most calls: set straight, no ChangeSet
            result = self._plain(row)
            if result is not None:
                return result
        changes = self._changes
        changes.now = int(time.time())
        try:
            result = apply_run(changes, shape, [row], self._find)
            changes.finish()
        except DynamoError:
            changes.discard()
            raise
        changes.keep()
        self.records.add(shape, row)
        return result

    def __repr__(self):
        mode = "read/write" if self.writable else "read-only"
        return f"{self._inventory!r} ({mode} application copy)"
