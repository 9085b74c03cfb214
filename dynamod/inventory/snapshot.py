"""The snapshot of the inventory's column tables: start-up without their rows.

Rebuilding the datasets, blocks and replicas from their rows is most of a cold
start (reading 590,000 rows, then linking them).  The snapshot holds those
column tables as bytes instead: each table of `inventory.COLUMN_TABLES` gives
`dump()` (on the event loop, a copy of its arrays; then, in a thread, its parts:
the live rows, renumbered, in the order a load from rows gives them, and the
lists such a load builds) and `restore(parts)` (fills the empty table, after the
tables it refers to; the sites and groups still come from their rows).  A table
joins the snapshot by implementing those two methods and being listed there;
`FORMAT` changes whenever a table's parts do.

The snapshot lives in the database (tables `snapshot_parts`, `snapshot_stamp`),
stamped with the store's commit counter, which every commit bumps in its own
transaction.  It is trusted only when its stamp is the counter, its format this
one, every part passes its CRC-32, the parts make sound tables, and each of its
tables holds as many rows as the store's: edits by hand while the daemon was
stopped do not move the counter, and a count catches rows added or deleted;
values changed by hand need `dynamod --rebuild`, which ignores the snapshot.
(Triggers that cleared the stamp on every write of those tables would catch all
edits, but cost a third more per UPDATE of a write-back: see BENCHMARKS.md.)
Otherwise the inventory is built from rows, and the log says why (the block
replicas' rows read by a process of their own when they are many: replicaload.py).
"""

import logging

from ..errors import StoreError
from ..store.tables import BY_KIND
from .columns import SnapshotError
from .inventory import Inventory
from .replicaload import ReplicaLoad
from .rows import build

log = logging.getLogger("dynamod.snapshot")

FORMAT = 4   # 4: a dataset's block totals (datasets.py)
# What parts that do not make sound tables raise in `restore`.
UNSOUND = (SnapshotError, KeyError, ValueError, IndexError, TypeError, OverflowError)


def take(inventory):
    """On the event loop, with memory equal to the committed store: a copy of the
    tables; returns the function (for a thread) that gives the parts, {name: bytes}."""
    makers = {kind: table.dump() for kind, table in inventory.column_tables().items()}
    return lambda: {f"{kind}.{name}": data for kind, make in makers.items()
                    for name, data in make().items()}


def load(reader, tables, next_ids, rebuild: bool = False) -> tuple[Inventory, int | None]:
    """The inventory, from the snapshot when it can be trusted, else from rows; and
    the commit the snapshot was taken at (None: built from rows)."""
    why = "dynamod --rebuild" if rebuild else None
    if why is None:
        try:
            stamp = reader.snapshot_stamp()
            why = _untrusted(stamp)
            if why is None:   # its parts are read only when the stamp vouches for them
                parts = reader.snapshot_parts()
        except StoreError as exc:
            why = f"it cannot be read: {exc.message}"
    if why is None:
        inventory = Inventory()
        try:
            build(inventory, tables, next_ids, lambda inv: _restore(inv, parts))
            why = _differs(inventory, reader)
        except UNSOUND as exc:
            why = f"its parts do not make sound tables ({type(exc).__name__}: {exc})"
        if why is None:
            return inventory, stamp["counter"]
    (log.info if why.startswith(("there is", "it is stale")) else log.warning)(
        "inventory snapshot not used (%s): loading from rows", why)
    replicas = ReplicaLoad.start(reader)
    try:
        inventory = Inventory()
        build(inventory, tables, next_ids, replicas=replicas)
    finally:
        if replicas is not None:
            replicas.stop()
    return inventory, None


def _untrusted(stamp: dict) -> str | None:
    if stamp["counter"] is None:
        return "there is none"
    if stamp["format"] != FORMAT:
        return f"its format is {stamp['format']}, this dynamod's {FORMAT}"
    if stamp["counter"] != stamp["commits"]:
        return (f"it is stale: taken at commit {stamp['counter']}, the store is at commit "
                f"{stamp['commits']}")
    return None


def compact(inventory, parts: dict) -> int:
    """Replace the inventory's column tables by tables made from `parts`, the snapshot
    just taken of it (whose parts hold the live rows only): the rows of deleted
    objects go.  Returns how many went."""
    return inventory.compact(lambda tables: _restore_tables(tables, parts))


def _restore(inventory, parts: dict):
    _restore_tables(inventory.column_tables(), parts)


def _restore_tables(tables: dict, parts: dict):
    for kind, table in tables.items():
        prefix = f"{kind}."
        table.restore({name[len(prefix):]: data for name, data in parts.items()
                       if name.startswith(prefix)})


def _differs(inventory, reader) -> str | None:
    """Which store table holds another number of rows than the restored table (None:
    none does).  A count is a walk of an index (3 ms for the blocks and block
    replicas at medium scale, where the sums of a few columns took 90 ms: a scan of
    the tables)."""
    for kind, table in inventory.column_tables().items():
        name = BY_KIND[kind].name
        stored = reader.count(name)
        if stored != len(table):
            return (f"table {name} holds {stored} rows, the snapshot {len(table)}: edited "
                    f"by hand?")
    return None
