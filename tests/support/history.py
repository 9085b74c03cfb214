"""An inventory with a history, for the start-up's snapshot of the column tables: rows
deleted (dead rows in memory), replicas created out of key order (a block's replica
at a site of lower id made after one at a higher), incomplete replicas, updates; and
what the daemon's log says of its snapshots."""

import json
import re
import sqlite3

from .seed import block_doc, dataset_doc

SITES = ["T2_HIS_A", "T2_HIS_B", "T2_HIS_C"]   # ids 1, 2, 3 on a fresh daemon


def dataset_name(n: int) -> str:
    return f"/History/D{n}/RAW"


def _replica(site, name, blocks=None, **fields) -> dict:
    """A dataset replica document (blocks None: the whole replica, for a deletion)."""
    if blocks is None:
        return {"site": site, "dataset": name, **fields}
    return {"site": site, "dataset": name, **fields,
            "blockreplicas": [b if isinstance(b, dict) else {"block": b} for b in blocks]}


def make_history(daemon):
    """Five datasets of three blocks; replicas at C, then A, then B (out of key order),
    one incomplete; then a dataset, a block, a block replica and a site's replicas
    deleted, values updated, and a dataset added after the deletions."""
    daemon.inject_json({"site": [{"name": s, "host": f"{s.lower()}.example.org",
                                  "backend": f"davs://{s.lower()}/store"} for s in SITES],
                        "group": [{"name": "ops"}, {"name": "physics"}]})
    for n in range(5):
        name = dataset_name(n)
        daemon.inject_json(dataset_doc(name, *(block_doc(
            f"b{b}", *((f"/store/his/{n}/{b}/f{f}.root", 1000 * (b + 1) + f)
                       for f in range(3))) for b in (2, 0, 1)), status="valid"))
        daemon.inject_json({"datasetreplica": [_replica(SITES[2], name, ["b1", "b0"],
                                                        group="ops")]})
    for n in range(5):
        name = dataset_name(n)
        daemon.inject_json({"datasetreplica": [
            _replica(SITES[0], name, ["b2", {"block": "b0", "files": [
                f"/store/his/{n}/0/f1.root"]}], group="physics"),
            _replica(SITES[1], name, ["b0", "b1", "b2"])]})
    delete = ("--delete",)
    daemon.inject_json(dataset_doc(dataset_name(1)), *delete)
    daemon.inject_json(dataset_doc(dataset_name(2), {"name": "b0"}), *delete)
    daemon.inject_json({"datasetreplica": [_replica(SITES[1], dataset_name(3), ["b1"])]},
                       *delete)
    daemon.inject_json({"datasetreplica": [_replica(SITES[2], dataset_name(4))]}, *delete)
    daemon.inject_json({"site": [{"name": SITES[1], "status": "morgue"}],
                        **dataset_doc(dataset_name(0), {"name": "b1", "last_update": 1234567})})
    daemon.inject_json(dataset_doc(dataset_name(5), block_doc("z", ("/store/his/5/z", 7)),
                                   block_doc("a", ("/store/his/5/a", 8))))
    daemon.inject_json({"datasetreplica": [_replica(SITES[0], dataset_name(5), ["z", "a"])]})


def loaded_from(daemon) -> str:
    """What the last start loaded the inventory from: `rows` or `snapshot of commit N`."""
    found = re.findall(r"inventory loaded from .* \((rows|snapshot of commit \d+)\) in ",
                       daemon.log())
    assert found, daemon.log()
    return found[-1]


def snapshots_written(daemon) -> list[int]:
    """The commits of the snapshots the daemon's log says it wrote."""
    return [int(n) for n in re.findall(r"inventory snapshot of commit (\d+) written",
                                       daemon.log())]


def not_used(daemon) -> list[str]:
    """Why the snapshot was not used, at each start that said so."""
    return re.findall(r"inventory snapshot not used \((.*)\): loading from rows", daemon.log())


def edit(database: str, *statements):
    """Edit the (stopped) daemon's database by hand, as an operator with sqlite3 would."""
    db = sqlite3.connect(database)
    try:
        with db:
            for sql in statements:
                db.execute(sql)
    finally:
        db.close()


ORDERS_SCRIPT = """
import json
from dynamod.executable import inventory
found = {}
for name, dataset in sorted(inventory.datasets.items()):
    found[name] = {
        "blocks": [b.name for b in dataset.blocks],
        "replicas": {b.name: [(r.site.name, r.group.name, r.is_custodial, r.size,
                               r.last_update, r.file_ids) for r in b.replicas]
                     for b in dataset.blocks},
        "chains": {r.site.name: [b.block.name for b in r.block_replicas]
                   for r in dataset.replicas},
        "replica order": [r.site.name for r in dataset.replicas],
        "block rows": list(dataset.blocks.rows)}
table = inventory.memory.dataset_table   # the daemon's own interface
found["(datasets)"] = {
    "created": list(inventory.datasets),
    "rows by name": {name: table.find(name) for name in inventory.datasets},
    "sites' replicas": {name: [r.dataset.name for r in site.dataset_replicas]
                        for name, site in inventory.sites.items()}}
print(json.dumps(found))
"""


def orders(daemon, directory) -> dict:
    """Every dataset's blocks (and their rows), each block's replicas, each dataset's
    replicas and each dataset replica's block replicas; the datasets in creation order
    and the row each name finds, each site's dataset replicas: in the orders the
    inventory gives them to an application."""
    script = directory / "orders.py"
    script.write_text(ORDERS_SCRIPT)
    return json.loads(daemon.dynamo(script, timeout=120).stdout)
