"""The inventory as a running dynamod holds it, and as its SQLite file holds it.

Both come out as the rows `dynamod.inventory.rows.all_rows` gives (JSON
round-tripped, so they compare as plain lists): the disk side is read with the
daemon's own loader (`StoreReader`, `rows.build`) on a read-only connection, the
memory side is printed by a read-only application forked from the daemon.
"""

import asyncio
import inspect
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


from dynamod.inventory.inventory import ID_KINDS, Inventory
from dynamod.inventory.rows import all_rows, build
from dynamod.store import uri
from dynamod.store.reader import StoreReader
from dynamod.store.sqlite import Store
from dynamod.store.thread import StoreThread


def listing_order(inv) -> dict:
    """The order in which the inventory's dicts list their objects (by id)."""
    return {"sites": [s.id for s in inv.sites.values()],
            "groups": [g.id for g in inv.groups.values()],
            "datasets": [d.id for d in inv.datasets.values()],
            "files": sorted([b.id, [f.id for f in b.files_by_lfn.values()]]
                            for d in inv.datasets.values() for b in d.blocks)}


MEMORY_SCRIPT = inspect.getsource(listing_order) + """
import json
from dynamod.inventory.rows import all_rows
held = inventory.memory
print(json.dumps({"rows": all_rows(held), "next_ids": held.next_ids,
                  "order": listing_order(held), "problems": held.problems()}))
"""


@dataclass
class Snapshot:
    rows: dict                     # kind -> sorted rows (lists)
    next_ids: dict                 # id kind -> next id
    order: dict                    # listing_order()
    problems: list                 # Inventory.problems()
    integrity: list = field(default_factory=list)  # integrity_check + foreign_key_check
    inventory: Inventory | None = None             # the objects (disk side only)

    def ids(self) -> dict:
        """(kind, name) -> id of every object that has an id."""
        inv, found = self.inventory, {}
        for name, site in inv.sites.items():
            found["site", name] = site.id
        for name, group in inv.groups.items():
            if name is not None:
                found["group", name] = group.id
        for name, dataset in inv.datasets.items():
            found["dataset", name] = dataset.id
            for block in dataset.blocks:
                found["block", block.full_name()] = block.id
                for lfn, f in block.files_by_lfn.items():
                    found["file", lfn] = f.id
        return found


def _plain(value):
    return json.loads(json.dumps(value))


def disk(path: str) -> Snapshot:
    """Load the database file as the daemon does at start-up (read-only)."""
    async def integrity_errors():
        db = await StoreThread.connect(uri.read_only(path), uri=True)
        store = Store(db, path)
        try:
            return await store.integrity_errors()
        finally:
            await store.close()

    integrity = asyncio.run(integrity_errors())
    inventory = Inventory()
    reader = inventory.file_cache.source = StoreReader(path)  # as the daemon reads it
    build(inventory, reader.tables(), reader.next_ids())
    try:
        ids = {k: inventory.next_ids[k] for k in ID_KINDS}
        return Snapshot(_plain(all_rows(inventory)), ids, _plain(listing_order(inventory)),
                        inventory.problems(), integrity, inventory)
    finally:  # every block's files are loaded now (no limit): the file can be let go
        inventory.file_cache.source = None
        reader.close()


def memory(daemon) -> Snapshot:
    """What the daemon holds in memory now, printed by a read-only application."""
    with tempfile.TemporaryDirectory(prefix="dyn-snap-") as tmp:
        script = Path(tmp) / "snapshot.py"
        script.write_text(MEMORY_SCRIPT)
        out = daemon.dynamo(script, timeout=120).stdout
    data = json.loads(out)
    return Snapshot(data["rows"], data["next_ids"], data["order"], data["problems"])


def differences(a: Snapshot, b: Snapshot, limit: int = 5) -> list[str]:
    """The first differences between two snapshots (empty: the same inventory)."""
    found = []
    for kind in a.rows:
        left, right = a.rows[kind], b.rows.get(kind, [])
        if left != right:
            ra, rb = set(map(tuple, left)), set(map(tuple, right))
            only_a, only_b = sorted(ra - rb)[:limit], sorted(rb - ra)[:limit]
            found.append(f"{kind}: {len(left)} vs {len(right)} rows; only in the first "
                         f"{only_a}, only in the second {only_b}")
    if a.next_ids != b.next_ids:
        found.append(f"next ids {a.next_ids} vs {b.next_ids}")
    for name in a.order:
        if a.order[name] != b.order.get(name):
            found.append(f"the {name} are listed in another order")
    return found
