"""Files live in the store: a daemon with a tiny file cache answers as if it held them all.

The daemon here keeps at most 4 files in memory, so nearly every request and
every application reads its files from the database (the daemon directly, an
application's child through its channel to the daemon).  The files it does
keep are packed: they cost a fraction of File objects, and read back as the
same values, reprs and (equal) objects.
"""

import asyncio
import gc
import json
import random
import shutil
import signal
import sqlite3
import tempfile
import time
import tracemalloc
from pathlib import Path

import pytest

from dynamod.inventory import injection
from dynamod.service import InventoryService
from dynamoclient.connection import RemoteError
from reliability import snapshot
from support.daemon import Daemon

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
cache = inventory.memory.file_cache
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


# ------------------------------------------------------------ the packed form
GRID_DIRECTORY = ("/store/mc/RunIISummer20UL18MiniAODv2/TTToSemiLeptonic_TuneCP5_13TeV-powheg-"
                  "pythia8/MINIAODSIM/106X_upgrade2018_realistic_v16_L1v1-v2")


def grid_document(rng: random.Random, blocks: int, files: int) -> dict:
    """Files as a grid names them: a long directory per block, a UUID each, an adler32."""
    def uuid():
        s = f"{rng.getrandbits(128):032X}"
        return f"{s[:8]}-{s[8:12]}-{s[12:16]}-{s[16:20]}-{s[20:]}"
    return {"dataset": [{"name": "/TTToSemiLeptonic/RunIISummer20UL18-v2/MINIAODSIM", "blocks": [
        {"name": uuid(), "files": [
            {"name": f"{GRID_DIRECTORY}/{rng.randrange(10, 100) * 10000}/{uuid()}.root",
             "size": rng.randrange(10**9, 4 * 10**9), "adler32": f"{rng.getrandbits(32):08x}"}
            for _ in range(files)]} for _ in range(blocks)]}]}


def test_a_cached_file_costs_at_most_150_bytes(tmp_path, random_seed):
    """What the cache adds per file it holds, traced (as File objects: about 460 B)."""
    path = str(tmp_path / "inventory.db")
    document = grid_document(random.Random(random_seed), blocks=100, files=20)

    async def bytes_per_cached_file() -> float:
        service = await InventoryService.open(path, "NORMAL")
        await service.change(lambda changes: injection.inject(changes, document))
        await service.close()
        service = await InventoryService.open(path, "NORMAL")  # nothing cached
        try:
            blocks = [b for d in service.inventory.datasets.values() for b in d.blocks]
            blocks[0].files_by_lfn  # the reader's first query prepares its statement
            gc.collect()
            tracemalloc.start()
            try:
                for block in blocks[1:]:
                    block.files_by_lfn
                gc.collect()
                added = tracemalloc.get_traced_memory()[0]
            finally:
                tracemalloc.stop()
            cache = service.inventory.file_cache.stats()
            assert cache["files"] == 100 * 20 and cache["blocks"] == 100
            return added / (99 * 20)
        finally:
            await service.close()

    assert asyncio.run(bytes_per_cached_file()) <= 150


CHECKSUMS = {  # block -> (size, adler32, crc32, md5) of each file, as given
    "fixed": [(0, "0000000a", None, None), (2**40, "ABCDEF01", None, None),
              (7, "00ab00cd", None, None)],
    "mixed": [(1, "a", "FFFFFFFF", None), (2, None, None, "0" * 31 + "1"),
              (3, "00ab00cd", "1", "F" * 32), (4, None, None, None)],
}
PACKED = "/Packed/Files-v1/AOD"


def packed_document() -> dict:
    return {"site": [{"name": "T2_A", "backend": "gsiftp://a/"}],
            "dataset": [{"name": PACKED, "blocks": [
                {"name": block, "files": [
                    {"name": f"/store/p/{block}/{i}.root", "size": size,
                     **{k: v for k, v in zip(("adler32", "crc32", "md5"), sums) if v}}
                    for i, (size, *sums) in enumerate(files)]}
                for block, files in CHECKSUMS.items()]}],
            "datasetreplica": [{"dataset": PACKED, "site": "T2_A", "blockreplicas": [
                {"block": "mixed", "files": ["/store/p/mixed/1.root", "/store/p/mixed/3.root"]},
                {"block": "fixed"}]}]}


def expected_files(block: str, ids: list) -> list:
    return [{"name": f"/store/p/{block}/{i}.root", "id": file_id, "size": size,
             **{k: v.lower() for k, v in zip(("adler32", "crc32", "md5"), sums) if v}}
            for i, (file_id, (size, *sums)) in enumerate(zip(ids, CHECKSUMS[block]))]


FILES_SCRIPT = """
import json
block = inventory.find_block('%s#mixed')
one = inventory.find_file('/store/p/mixed/1.root')
again = block.find_file('/store/p/mixed/1.root')
replica = block.find_replica('T2_A')
print(json.dumps({
    "reprs": [repr(f) for f in sorted(block.files, key=lambda f: f.id)],
    "str": str(one), "checksum": list(one.checksum),
    "same": [one == again, hash(one) == hash(again), len({one, again}), one in block.files,
             one in replica.files(), replica.has_file(one), one.block == block,
             one != block.find_file('/store/p/mixed/0.root'),
             inventory.find_file('/store/p/mixed/0.root') in replica.files()],
    "mapping": [list(block.files_by_lfn), len(block.files_by_lfn),
                '/store/p/mixed/2.root' in block.files_by_lfn,
                '/store/p/mixed/' in block.files_by_lfn,
                block.files_by_lfn['/store/p/mixed/3.root'].md5],
}))
""" % PACKED


def test_packed_files_read_back_as_they_were_given(daemon, tmp_path):
    """Packed after the change that made them, and again as read from the store: the same
    values (checksums as stored: lower case, leading zeros kept), reprs and equal Files."""
    daemon.inject_json(packed_document())
    ids = {block: [f["id"] for f in daemon.call("get_block", name=f"{PACKED}#{block}")["files"]]
           for block in CHECKSUMS}
    # a gap in the ids (a file deleted) and a file added later
    daemon.inject_json({"dataset": [{"name": PACKED, "blocks": [
        {"name": "fixed", "files": [{"name": "/store/p/fixed/1.root"}]}]}]}, "--delete")
    daemon.inject_json({"dataset": [{"name": PACKED, "blocks": [
        {"name": "fixed", "files": [{"name": "/store/p/fixed/3.root", "size": 9,
                                     "adler32": "ffffffff", "site": "T2_A"}]}]}]})
    fixed = expected_files("fixed", ids["fixed"])
    fixed = [fixed[0], fixed[2], {"name": "/store/p/fixed/3.root", "id": ids["mixed"][-1] + 1,
                                  "size": 9, "adler32": "ffffffff"}]
    script = tmp_path / "files.py"
    script.write_text(FILES_SCRIPT)
    seen = []
    for _ in range(2):  # packed from the change's File objects, then from the store's rows
        assert daemon.call("get_block", name=f"{PACKED}#fixed")["files"] == fixed
        assert daemon.call("get_block", name=f"{PACKED}#mixed")["files"] == expected_files(
            "mixed", ids["mixed"])
        seen.append(json.loads(daemon.dynamo(script).stdout))
        daemon.restart()
    assert seen[0] == seen[1]
    first = ids["mixed"][0]
    assert seen[0]["reprs"] == [
        f"File('/store/p/mixed/0.root','{PACKED}#mixed',1,{first},adler32='a',crc32='ffffffff')",
        f"File('/store/p/mixed/1.root','{PACKED}#mixed',2,{first + 1},md5='{'0' * 31}1')",
        f"File('/store/p/mixed/2.root','{PACKED}#mixed',3,{first + 2},adler32='00ab00cd',"
        f"crc32='1',md5='{'f' * 32}')",
        f"File('/store/p/mixed/3.root','{PACKED}#mixed',4,{first + 3})"]
    assert seen[0]["str"] == (f"File /store/p/mixed/1.root (block={PACKED}#mixed, size=2, "
                              f"checksum=(None, None, '{'0' * 31}1'), id={first + 1})")
    assert seen[0]["same"] == [True, True, 1, True, True, True, True, True, False]
    assert seen[0]["mapping"] == [[f"/store/p/mixed/{i}.root" for i in range(4)], 4, True,
                                  False, None]


HELD_SCRIPT = """
import json
block = inventory.find_block('%s#mixed')
inventory.delete(block.find_file('/store/p/mixed/1.root'))
inventory.update(File('/store/p/mixed/9.root', block.full_name(), 5), site='T2_A')
inventory.update(File('/store/p/mixed/2.root', block.full_name(), 30))
print(json.dumps([inventory.find_file('/store/p/mixed/1.root'),
                  inventory.find_file('/store/p/mixed/9.root').size,
                  inventory.find_file('/store/p/mixed/2.root').size,
                  sorted(f.lfn for f in block.files), block.num_files, block.size]))
""" % PACKED


def test_a_changed_block_reads_as_changed_in_the_application(small_cache, tmp_path):
    """An application's change holds the block in its copy, ahead of the store (which its
    lookups by LFN also ask): the copy's files are what the change left."""
    small_cache.inject_json(packed_document())
    script = tmp_path / "held.py"
    script.write_text(HELD_SCRIPT)
    out = json.loads(small_cache.dynamo(script).stdout)  # read-only: nothing written back
    assert out == [None, 5, 30, [f"/store/p/mixed/{i}.root" for i in (0, 2, 3, 9)], 4,
                   1 + 30 + 4 + 5]
    assert [f["size"] for f in small_cache.call("get_block", name=f"{PACKED}#mixed")["files"]
            ] == [1, 2, 3, 4]
