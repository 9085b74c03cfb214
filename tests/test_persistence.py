"""What was acknowledged survives restarts and kill -9; start-up refuses what it must."""

import sqlite3
import subprocess
import sys
import threading

from dynamoclient.connection import Client
from support.daemon import Daemon

SITE = {"name": "T2_US_XYZ", "host": "t2.xyz.edu", "backend": "gsiftp://t2.xyz.edu/cms",
        "status": "ready"}


def dataset_doc(n: int) -> dict:
    """A dataset with one block of two files and a replica at T2_US_XYZ."""
    name = f"/Data{n}/Run2017F/MINIAOD"
    files = [{"name": f"/store/data/{n}/{i}.root", "size": 1000 + i} for i in range(2)]
    return {"dataset": [{"name": name, "status": "valid",
                         "blocks": [{"name": f"blk{n}", "files": files}]}],
            "datasetreplica": [{"dataset": name, "site": "T2_US_XYZ",
                                "blockreplicas": [{"block": f"blk{n}"}]}]}


def test_kill9_right_after_acknowledgement_loses_nothing(daemon):
    daemon.call("inject", data={"site": [SITE]})
    for round_ in range(3):
        with daemon.client() as client:
            result = client.call("inject", data=dataset_doc(round_))
        assert result["created"]["files"] == 2
        daemon.kill9()
        daemon.start()
        dataset = daemon.call("get_dataset", name=f"/Data{round_}/Run2017F/MINIAOD")
        assert dataset["num_files"] == 2 and dataset["replicas"][0]["site"] == "T2_US_XYZ"
    ids = [d["id"] for d in daemon.call("list_datasets")["datasets"]]
    assert ids == [1, 2, 3]


def test_concurrent_injections_then_kill9(daemon):
    """Many clients inject at once; every acknowledged one is there after kill -9."""
    daemon.call("inject", data={"site": [SITE]})
    acknowledged = []

    def worker(first):
        with daemon.client() as client:
            for n in range(first, first + 10):
                client.call("inject", data=dataset_doc(n))
                acknowledged.append(n)

    threads = [threading.Thread(target=worker, args=(k * 100,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    daemon.kill9()
    daemon.start()
    names = {d["name"] for d in daemon.call("list_datasets")["datasets"]}
    assert names == {f"/Data{n}/Run2017F/MINIAOD" for n in acknowledged}
    assert len(acknowledged) == 60
    with sqlite3.connect(daemon.database) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert db.execute("SELECT count(*) FROM files").fetchone()[0] == 120


def test_ids_never_reused_after_delete(daemon):
    daemon.call("inject", data={"site": [{"name": "A"}, {"name": "B"}]})
    daemon.call("delete", data={"site": [{"name": "B"}]})
    daemon.restart()
    daemon.call("inject", data={"site": [{"name": "C"}]})
    assert {s["name"]: s["id"] for s in daemon.call("list_sites")["sites"]} == {"A": 1, "C": 3}


def test_second_daemon_on_a_live_socket_is_refused(daemon, tmp_path):
    other = subprocess.run([sys.executable, "-m", "dynamod", "--state-dir", str(tmp_path),
                            "--socket", daemon.socket], capture_output=True, text=True,
                           timeout=30)
    assert other.returncode == 1
    assert "already served by a running dynamod" in other.stderr
    assert daemon.call("ping") == {"pong": True}


def test_stale_socket_is_replaced(daemon):
    daemon.kill9()  # leaves the socket file behind
    daemon.start()
    assert daemon.call("ping") == {"pong": True}
    assert "replacing stale socket" in daemon.log() and "did not stop cleanly" in daemon.log()


def test_newer_schema_is_refused(daemon):
    daemon.stop()
    with sqlite3.connect(daemon.database) as db:
        db.execute("PRAGMA user_version = 99")
    again = Daemon(daemon.state_dir, daemon.socket)
    try:
        again.start(timeout=10)
    except RuntimeError as exc:
        assert "schema version 99" in str(exc)
    else:
        raise AssertionError("dynamod started on a database from a newer schema")


def test_answer_comes_only_after_commit(daemon):
    """Once `inject` has answered, another connection to SQLite sees the rows."""
    with Client(daemon.socket) as client:
        client.call("inject", data={"site": [SITE]})
        with sqlite3.connect(daemon.database) as db:
            assert db.execute("SELECT name FROM sites").fetchall() == [("T2_US_XYZ",)]
