"""What the daemon shows and stores, taken before and after: equal means unchanged."""

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
