"""Files live in the store: a daemon with a tiny file cache answers as if it held them all.

The daemon here keeps at most 4 files in memory, so nearly every request and
every application reads its files from the database (the daemon directly, an
application's child through its channel to the daemon).
"""

import shutil
import signal
import sqlite3
import tempfile
import time
from pathlib import Path

import pytest

from conftest import Daemon
from dynamoclient.connection import RemoteError
from reliability import snapshot

SITES = [{"name": "T2_A", "backend": "gsiftp://a/"}, {"name": "T2_B", "backend": "gsiftp://b/"}]
DATASETS, BLOCKS, FILES = 3, 3, 3


def lfn(d, b, f):
    return f"/store/data/D{d}/B{b}/{f}.root"


def document() -> dict:
    datasets, replicas = [], []
    for d in range(DATASETS):
        blocks = [{"name": f"b{b}", "files": [{"name": lfn(d, b, f), "size": 100 * d + 10 * b + f}
                                             for f in range(FILES)]} for b in range(BLOCKS)]
        datasets.append({"name": f"/D{d}/Run-v1/AOD", "blocks": blocks})
        replicas.append({"dataset": f"/D{d}/Run-v1/AOD", "site": "T2_A",
                         "blockreplicas": [{"block": f"b{b}"} for b in range(BLOCKS)]})
        replicas.append({"dataset": f"/D{d}/Run-v1/AOD", "site": "T2_B",
                         "blockreplicas": [{"block": "b0", "files": [lfn(d, 0, 0)]}]})
    return {"site": SITES, "dataset": datasets, "datasetreplica": replicas}


@pytest.fixture
def small_cache():
    root = Path(tempfile.mkdtemp(prefix="dyn-", dir="/tmp"))
    root.chmod(0o755)
    config = root / "dynamod.toml"
    config.write_text("[daemon]\nfile_cache = 4\n")
    daemon = Daemon(root / "state", str(root / "dynamod.sock"), ["--config", str(config)])
    daemon.config = config
    daemon.start()
    daemon.inject_json(document())
    daemon.restart()  # nothing loaded: every file is read from the store
    yield daemon
    daemon.stop()
    shutil.rmtree(root, ignore_errors=True)


def files_in_store(daemon, block_name) -> list:
    with sqlite3.connect(daemon.database) as db:
        return [r[0] for r in db.execute(
            "SELECT lfn FROM files JOIN blocks ON blocks.id = files.block_id "
            "WHERE blocks.name = ? ORDER BY files.id", (block_name,))]


def test_requests_read_files_of_blocks_out_of_memory(small_cache):
    for d in range(DATASETS):
        for b in range(BLOCKS):
            block = small_cache.call("get_block", name=f"/D{d}/Run-v1/AOD#b{b}")
            assert [f["name"] for f in block["files"]] == [lfn(d, b, f) for f in range(FILES)]
            assert block["size"] == sum(100 * d + 10 * b + f for f in range(FILES))
    partial = small_cache.call("get_block", name="/D1/Run-v1/AOD#b0")["replicas"]
    assert [r.get("files") for r in partial] == [None, [lfn(1, 0, 0)]]
    pfn = small_cache.call("lfn_to_pfn", lfn=lfn(2, 2, 2), site="T2_A")
    assert pfn["pfn"] == "gsiftp://a/" + lfn(2, 2, 2)


def test_the_cache_stays_bounded_and_its_limit_changes_live(small_cache):
    assert small_cache.call("status")["file_cache"] == {"files": 0, "blocks": 0, "limit": 4}
    for d in range(DATASETS):
        for b in range(BLOCKS):
            small_cache.call("get_block", name=f"/D{d}/Run-v1/AOD#b{b}")
            assert small_cache.call("status")["file_cache"]["files"] <= 4
    small_cache.config.write_text("[daemon]\nfile_cache = 100\n")
    small_cache.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while small_cache.call("status")["file_cache"]["limit"] != 100:
        assert time.monotonic() < deadline, small_cache.log()
        time.sleep(0.05)
    for d in range(DATASETS):
        for b in range(BLOCKS):
            small_cache.call("get_block", name=f"/D{d}/Run-v1/AOD#b{b}")
    cache = small_cache.call("status")["file_cache"]
    assert cache == {"files": DATASETS * BLOCKS * FILES, "blocks": DATASETS * BLOCKS,
                     "limit": 100}


WALK = """
import json
cache = inventory._inventory.file_cache
seen, most = {}, 0
for dataset in inventory.datasets.values():
    for block in dataset.blocks:
        seen[block.full_name()] = sorted((f.lfn, f.size, f.id) for f in block.files)
        most = max(most, cache.loaded_files)
        for replica in block.replicas:
            seen[replica.site.name + ":" + block.full_name()] = sorted(f.lfn for f in replica.files())
found = inventory.find_file("%s")
print(json.dumps({"seen": seen, "most": most, "found": found.block.full_name(),
                  "missing": inventory.find_file("/store/none.root")}))
"""


def test_an_application_walks_every_file_through_its_channel(small_cache, tmp_path):
    script = tmp_path / "walk.py"
    script.write_text(WALK % lfn(1, 2, 0))
    out = snapshot.json.loads(small_cache.dynamo(script).stdout)
    assert out["found"] == "/D1/Run-v1/AOD#b2" and out["missing"] is None
    assert out["most"] <= 4 + FILES  # bounded in the child too
    assert out["seen"]["T2_B:/D0/Run-v1/AOD#b0"] == [lfn(0, 0, 0)]
    assert out["seen"]["T2_A:/D0/Run-v1/AOD#b0"] == [lfn(0, 0, f) for f in range(FILES)]
    assert [row[0] for row in out["seen"]["/D2/Run-v1/AOD#b1"]] == [lfn(2, 1, f)
                                                                   for f in range(FILES)]


def test_changes_to_blocks_out_of_memory(small_cache):
    daemon = small_cache
    # a new file in a block whose files are in the store only: present at T2_A
    daemon.inject_json({"dataset": [{"name": "/D0/Run-v1/AOD", "blocks": [
        {"name": "b1", "files": [{"name": lfn(0, 1, 9), "size": 5, "site": "T2_A"}]}]}]})
    assert files_in_store(daemon, "b1")[-1] == lfn(0, 1, 9)
    # an LFN of another block, known only to the store, is refused
    with pytest.raises(RemoteError) as refused:
        daemon.call("inject", data={"dataset": [{"name": "/D2/Run-v1/AOD", "blocks": [
            {"name": "b0", "files": [{"name": lfn(1, 1, 1), "size": 1}]}]}]})
    assert refused.value.code == "conflict" and "/D1/Run-v1/AOD#b1" in refused.value.message
    # updating a file's size through the store's copy keeps the sums
    daemon.inject_json({"dataset": [{"name": "/D1/Run-v1/AOD", "blocks": [
        {"name": "b2", "files": [{"name": lfn(1, 2, 0), "size": 1000}]}]}]})
    assert daemon.call("get_block", name="/D1/Run-v1/AOD#b2")["size"] == 1000 + 121 + 122
    # a file, then a whole block, deleted while out of memory
    counts = daemon.inject_json({"dataset": [{"name": "/D2/Run-v1/AOD", "blocks": [
        {"name": "b2", "files": [{"name": lfn(2, 2, 1)}]}]}]}, "--delete")
    assert counts["deleted"] == {"files": 1}
    daemon.restart()
    counts = daemon.inject_json({"dataset": [{"name": "/D2/Run-v1/AOD",
                                              "blocks": [{"name": "b1"}]}]}, "--delete")
    assert counts["deleted"]["files"] == FILES and counts["deleted"]["blocks"] == 1
    with sqlite3.connect(daemon.database) as db:
        assert db.execute("SELECT count(*) FROM files WHERE lfn LIKE '/store/data/D2/B1/%'"
                          ).fetchone() == (0,)
    # the freed LFN can be used again, in another block
    daemon.inject_json({"dataset": [{"name": "/D0/Run-v1/AOD", "blocks": [
        {"name": "b2", "files": [{"name": lfn(2, 1, 0), "size": 7, "site": "T2_A"}]}]}]})

    memory, disk = snapshot.memory(daemon), snapshot.disk(daemon.database)
    assert memory.problems == [] and disk.problems == [] and disk.integrity == []
    assert snapshot.differences(memory, disk) == []
    assert len(disk.rows["file"]) == DATASETS * BLOCKS * FILES + 1 - 1 - FILES + 1
