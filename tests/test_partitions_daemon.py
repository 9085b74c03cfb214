"""Partitions, quotas and usage through a real dynamod and the real clients."""

import json
import signal
import sys
import time

import pytest

from dynamoclient.connection import RemoteError
from support.daemon import Daemon
from support.seed import DS, LFN1, T2, T3, seed

SIZE, SIZE1 = 165438, 57495   # the seed block; its first file


def seeded_with_partial(daemon):
    """The seed (complete at T2, null group) and an incomplete replica at T3 (LFN1 only)
    owned by AnalysisOps."""
    seed(daemon)
    daemon.inject_json({"group": [{"name": "AnalysisOps"}],
                        "datasetreplica": [{"site": T3, "dataset": DS, "group": "AnalysisOps",
                                            "blockreplicas": [{"block": "48dbe0c6-36fa-11e8-a5e2-ac1f6b05e848",
                                                               "files": [LFN1]}]}]})


def usage_of(daemon, site, partition):
    rows = daemon.call("site_usage", site=site, partition=partition)["usage"]
    assert len(rows) == 1
    return rows[0]


def test_partitions_quotas_usage_and_restart(daemon):
    seeded_with_partial(daemon)
    with pytest.raises(RemoteError) as refused:
        daemon.call("set_partition", name="Bad", condition='group = "AnalysisOps"')
    assert refused.value.code == "invalid_value"
    assert refused.value.details["position"] == 7
    assert "at position 7" in refused.value.message
    daemon.call("set_partition", name="Ops", condition='group == "AnalysisOps" and not complete')
    daemon.call("set_partition", name="Default", condition="group == none")
    daemon.call("set_partition", name="Tier3", condition='site ~ "T3_*"')
    daemon.call("set_partition", name="All", subpartitions=["Ops", "Default"])
    with pytest.raises(RemoteError, match="unknown subpartition"):
        daemon.call("set_partition", name="X", subpartitions=["Nope"])
    assert [p["name"] for p in daemon.call("list_partitions")["partitions"]] == [
        "Ops", "Default", "Tier3", "All"]

    ops = usage_of(daemon, T3, "Ops")
    assert (ops["incomplete_replicas"], ops["used"], ops["projected"]) == (1, SIZE1, SIZE)
    default = usage_of(daemon, T2, "Default")
    assert (default["complete_replicas"], default["used"], default["quota"]) == (1, SIZE, 0)
    assert default["occupancy"] is None
    assert usage_of(daemon, T2, "Ops")["used"] == 0

    daemon.call("set_quota", site=T3, partition="Ops", quota=10 * SIZE1)
    daemon.call("set_quota", site=T3, partition="Default", quota="unlimited")
    with pytest.raises(RemoteError, match="superpartition"):
        daemon.call("set_quota", site=T3, partition="All", quota=5)
    with pytest.raises(RemoteError, match="quota"):
        daemon.call("set_quota", site=T3, partition="Ops", quota=-1)
    assert usage_of(daemon, T3, "Ops")["occupancy"] == pytest.approx(0.1)
    assert usage_of(daemon, T3, "All")["quota"] == "unlimited"

    # the replica becomes complete: it leaves Ops at once
    daemon.inject_json({"datasetreplica": [{"site": T3, "dataset": DS, "blockreplicas": [
        {"block": "48dbe0c6-36fa-11e8-a5e2-ac1f6b05e848", "complete": True}]}]})
    assert usage_of(daemon, T3, "Ops")["used"] == 0
    assert usage_of(daemon, T3, "Tier3")["complete_bytes"] == SIZE

    status = daemon.call("status")
    assert status["partitions"]["All"] == "[Ops, Default]" and status["quotas"] == 2
    before = daemon.call("site_usage")["usage"]
    daemon.restart()
    assert daemon.call("site_usage")["usage"] == before
    daemon.call("delete_partition", name="Tier3")
    with pytest.raises(RemoteError, match="subpartition of All"):
        daemon.call("delete_partition", name="Ops")

    # the change log names each definition and quota
    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline:
        text = (daemon.state_dir / "changes.log").read_text()
        if "deleted partition Tier3" in text:
            break
        time.sleep(0.05)
    assert "updated partition Ops definition: None -> 'group == \"AnalysisOps\" and not complete'" in text
    assert f"updated quota {T3}:Ops quota: 0 -> {10 * SIZE1}" in text
    assert f"updated quota {T3}:Default quota: 0 -> 'unlimited'" in text
    assert "deleted partition Tier3" in text


def test_site_usage_client(daemon):
    seeded_with_partial(daemon)
    daemon.call("set_partition", name="Ops", condition='group == "AnalysisOps"')
    set_quota = daemon.client_command("site_usage", "--set-quota", T3, "Ops", "1MB")
    assert set_quota.stdout == f"quota of Ops at {T3}: 1.0 MB\n"
    assert daemon.call("site_usage", site=T3)["usage"][0]["quota"] == 1_000_000
    refused = daemon.client_command("site_usage", "--set-quota", T3, "Ops", "lots", check=False)
    assert refused.returncode == 2 and "not a size: 'lots'" in refused.stderr
    assert daemon.client_command("site_usage", "--partitions").stdout == \
        'Ops: group == "AnalysisOps" (store)\n'
    table = daemon.client_command("site_usage").stdout
    lines = table.splitlines()
    assert lines[0].split()[:5] == ["SITE", "PARTITION", "USED", "PROJECTED", "QUOTA"]
    assert lines[2].split()[:9] == [T3, "Ops", "57.5", "kB", "165.4", "kB", "1.0", "MB", "5.7%"]
    assert lines[1].split()[0] != T3 and lines[1].split()[6:9] == ["0", "B", "full"]
    rows = [json.loads(line) for line in
            daemon.client_command("site_usage", "--json", "--site", "T3_*").stdout.splitlines()]
    assert [(r["site"], r["partition"], r["used"], r["projected"]) for r in rows] == [
        (T3, "Ops", SIZE1, SIZE)]
    assert daemon.client_command("site_usage", "--partition", "Nope", check=False).returncode == 0


def test_applications_see_site_partitions(daemon, tmp_path):
    seeded_with_partial(daemon)
    daemon.call("set_partition", name="Ops", condition='group == "AnalysisOps"')
    daemon.call("set_quota", site=T3, partition="Ops", quota=2 * SIZE1)
    path = tmp_path / "app.py"
    path.write_text(
        "site = inventory.sites['T3_US_XYZ']\n"
        "sp = site.partitions['Ops']\n"
        "assert site.partitions[inventory.partitions['Ops']].quota == sp.quota\n"
        "assert inventory.partitions['Ops'] in site.partitions\n"
        "assert [(p.name, sp.partition.name) for p, sp in site.partitions.items()] == [\n"
        "    ('Ops', 'Ops')] and sorted(site.partitions)[0].name == 'Ops'\n"
        "assert site.partitions.get('Nope') is None and 'Ops' in site.partitions\n"
        "print(sorted(inventory.partitions), sp.quota, sp.occupancy_fraction(),\n"
        "      sp.occupancy_fraction(physical=False), len(sp.replicas),\n"
        "      inventory.sites['T2_US_XYZ'].partitions['Ops'].replicas)\n"
        "print(inventory.partitions['Ops'].contains(\n"
        "    next(iter(next(iter(site.dataset_replicas)).block_replicas))))\n")
    out = daemon.dynamo(str(path)).stdout.splitlines()
    assert out[0] == f"['Ops'] {2 * SIZE1} 0.5 {SIZE / (2 * SIZE1)} 1 {{}}"
    assert out[1] == "True"


def test_configured_partitions(tmp_path):
    config = tmp_path / "dynamod.toml"
    config.write_text('[partitions]\nT3 = \'site ~ "T3_*"\'\nBoth = "[T3]"\n')
    root = tmp_path
    instance = Daemon(root / "state", f"/tmp/dyn-part-{id(root)}.sock",
                      ["--config", str(config)])
    instance.start()
    try:
        listed = instance.call("list_partitions")["partitions"]
        assert listed == [{"name": "T3", "origin": "config", "condition": 'site ~ "T3_*"'},
                          {"name": "Both", "origin": "config", "subpartitions": ["T3"]}]
        with pytest.raises(RemoteError, match="configuration file"):
            instance.call("set_partition", name="T3", condition="true")
        with pytest.raises(RemoteError, match="configuration file"):
            instance.call("delete_partition", name="T3")
        # SIGHUP: the configured partitions change live, the usage recounted once
        config.write_text('[partitions]\nAll = "true"\n')
        instance.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while [p["name"] for p in instance.call("list_partitions")["partitions"]] != ["All"]:
            assert time.monotonic() < deadline, instance.log()
            time.sleep(0.05)
        assert "reload: configured partitions now All" in instance.log()
    finally:
        instance.stop()
    config.write_text("[partitions]\nBad = 'group == '\n")
    checked = __import__("subprocess").run(
        [sys.executable, "-m", "dynamod", "--config", str(config), "--check-config"],
        capture_output=True, text=True)
    assert checked.returncode != 0 and "at position 10" in checked.stderr


def test_a_version_3_store_gains_the_partition_tables(daemon):
    """Schema 3 -> 4: the migration adds `partitions` and `quotas`; the rest stays (then
    4 -> 5 adds the snapshot's tables)."""
    import sqlite3

    seed(daemon)
    daemon.stop()
    with sqlite3.connect(daemon.database) as db:
        for table in ("partitions", "quotas", "commits", "snapshot_stamp", "snapshot_parts"):
            db.execute(f"DROP TABLE {table}")   # what versions 4 and 5 added
        db.execute("PRAGMA user_version = 3")
    db.close()
    daemon.start()
    daemon.call("set_partition", name="Default", condition="group == none")
    daemon.call("set_quota", site=T2, partition="Default", quota=SIZE)
    assert usage_of(daemon, T2, "Default")["occupancy"] == 1.0
    daemon.restart()
    assert usage_of(daemon, T2, "Default")["occupancy"] == 1.0
    with sqlite3.connect(daemon.database) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 5
    db.close()
