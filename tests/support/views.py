"""What the daemon shows and stores, taken before and after: equal means unchanged; and
what its answers must be, made from the objects."""

import hashlib
import sqlite3

from dynamod.store.tables import TABLES

from .wire import Raw


def snapshot(daemon) -> dict:
    """Everything the inventory's query methods show; equal snapshots mean an unchanged
    inventory."""
    sites = daemon.call("list_sites")["sites"]
    datasets = [daemon.call("get_dataset", name=d["name"])
                for d in daemon.call("list_datasets")["datasets"]]
    return {
        "counts": daemon.call("status")["inventory"],
        "sites": sites,
        "groups": daemon.call("list_groups")["groups"],
        "datasets": datasets,
        "blocks": [daemon.call("get_block", name=f"{d['name']}#{b['name']}")
                   for d in datasets for b in d["blocks"]],
        "site_replicas": [daemon.call("list_site_replicas", site=s["name"]) for s in sites],
    }


def memory_view(client: Raw) -> dict:
    """What the queries show of the daemon's memory (applications, script authorizations
    and grants too), and its commit count; over one connection, as the test's peer."""
    def ask(method, **params):
        answer = client.request(method, method, **params)
        assert "result" in answer, answer
        return answer["result"]

    status = ask("status")
    datasets = ask("list_datasets")["datasets"]
    return {"commits": status["commits"], "counts": status["inventory"],
            "sites": ask("list_sites"), "groups": ask("list_groups"), "datasets": datasets,
            "details": [ask("get_dataset", name=d["name"]) for d in datasets],
            "apps": ask("list_applications"), "scripts": ask("list_script_authorizations"),
            "grants": ask("list_grants")}


def store_rows(database: str) -> dict:
    """Row count and digest of every table of the SQLite file (read-only, beside the
    daemon's connection; WAL lets both be open)."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        found = {}
        for sql, name in [(t.select_sql, t.name) for t in TABLES
                          if t.kind != "changelog"] + [  # a queue, emptied in the background
                ("SELECT kind, next_id FROM next_ids ORDER BY kind", "next_ids")]:
            rows = db.execute(sql).fetchall()
            found[name] = (len(rows), hashlib.sha256(repr(rows).encode()).hexdigest()[:16])
        return found
    finally:
        db.close()


# The answers of get_dataset and list_site_replicas as PROTOCOL.md documents them, made
# from the objects' public API (another code than the daemon's); encoded with orjson
# they must equal the daemon's answers byte for byte (key order included).
def block_replica_shown(replica) -> dict:
    return {"block": replica.block.name, "site": replica.site.name,
            "group": replica.group.name, "is_custodial": replica.is_custodial,
            "size": replica.size, "last_update": replica.last_update,
            "complete": replica.is_complete()}


def dataset_replica_shown(replica) -> dict:
    held = [block_replica_shown(r) for r in replica.block_replicas]
    return {"dataset": replica.dataset.name, "site": replica.site.name,
            "growing": replica.growing, "group": replica.group.name,
            "blockreplicas": sorted(held, key=lambda view: view["block"])}


def dataset_shown(dataset) -> dict:
    blocks = sorted(dataset.blocks, key=lambda block: block.name)
    return {"name": dataset.name, "id": dataset.id, "status": dataset.status,
            "data_type": dataset.data_type, "software_version": dataset.software_version,
            "last_update": dataset.last_update, "is_open": dataset.is_open,
            "size": sum(b.size for b in blocks), "num_files": sum(b.num_files for b in blocks),
            "num_blocks": len(blocks),
            "blocks": [{"name": b.name, "dataset": dataset.name, "id": b.id, "size": b.size,
                        "num_files": b.num_files, "is_open": b.is_open,
                        "last_update": b.last_update} for b in blocks],
            "replicas": sorted(map(dataset_replica_shown, dataset.replicas),
                               key=lambda view: view["site"])}


def site_replicas_shown(site) -> dict:
    return {"site": site.name,
            "replicas": sorted(map(dataset_replica_shown, site.dataset_replicas),
                               key=lambda view: view["dataset"])}
