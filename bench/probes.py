"""The physical limits and the memory breakdowns, each run in a fresh process.

    python -m bench.probes scan DB
        a raw full scan of the tables the daemon loads (the same SELECTs), nothing built
    python -m bench.probes insert DB SCALE SEED DATASETS SYNCHRONOUS
        raw executemany of the rows of the first DATASETS datasets, one transaction
    python -m bench.probes update DB COUNT SYNCHRONOUS VALUE
        raw executemany of COUNT block replica UPDATEs, one transaction
    (insert and update --triggers: with triggers that clear the snapshot's stamp on each
    row written to blocks and block_replicas, the design inventory/snapshot.py weighed)
    python -m bench.probes fork RSS_BYTES REPEAT
        a bare os.fork() of a process grown to RSS_BYTES; the child writes one byte
    python -m bench.probes memory DB MODE [--trace] [--datasets N]
        build the inventory (MODE dynamod: the daemon's own objects and build();
        MODE naive: plain slotted objects with a set per collection, no files;
        MODE columnar: the compact prototype of bench/columnar.py)
        table by table, measuring what each kind keeps
    python -m bench.probes filecache DB LIMIT [--trace]
        load the store as the daemon does, then fill the file cache with the files of
        the blocks in store order up to LIMIT files, as requests would: the memory this
        adds, per cached file; the time to load them, to make each cached file a File
        once, and to find a cached file by its LFN
    python -m bench.probes walk DB MODE
        build the inventory as MODE, gc.freeze() and fork as the daemon does for an
        application; the child walks every dataset, block and block replica (read-only)
        and reports the time and the private memory it then holds
    python -m bench.probes lookup DB COUNT
        load the store as the daemon does; then, for its first COUNT datasets in turn,
        the process CPU per call of: finding the dataset by name, finding it and its
        first block by name, and the get_dataset method's answer made afresh (COUNT more
        than the daemon keeps answers of), best of three passes; that answer's cost split
        by least squares over every 16th of those datasets (each timed alone, warm) into
        a part per answer, per block, per dataset replica and per block replica; and of
        a write-back's run of 100,000 block replica last_update records (the replicas in
        store order), applied (then undone), best of three
    python -m bench.probes script DB COUNT
        load the store as the daemon does; then run the write-back benchmark's
        application (WRITEBACK: COUNT block replicas' last_update, each by
        `inventory.update(BlockReplica(...))`) in process against an application's copy
        of it, and, for comparison, the same walk alone and the walk building each
        detached BlockReplica without the update: the CPU of each, best of three
    python -m bench.probes seal DB REPEAT SYNCHRONOUS
        load the store as the daemon does (InventoryService.open: the writer's WAL
        connection, the reader, the inventory) in a running uvloop loop, hold a read
        snapshot as an application's fork does, and fork REPEAT times from the loop
        as the daemon forks an application; each child times dynamod.apps.seal.seal()

Each prints one JSON object on standard output.
"""

import argparse
import gc
import os
import random
import sqlite3
import statistics
import sys
import time
from itertools import islice

import orjson

from dynamod.store.tables import BY_KIND, STARTUP_TABLES

from .columnar import Columns

INVENTORY_ORDER = ("site", "group", "dataset", "block", "file", "datasetreplica", "blockreplica")


def rss_bytes(pid="self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def hwm_bytes(pid="self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def _open(path: str, synchronous: str) -> sqlite3.Connection:
    """A connection set up as the daemon's store sets up its own."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA busy_timeout = 2000")
    return db


# ------------------------------------------------------------------ limits
def scan(path: str) -> dict:
    """What start-up cannot avoid: every row of every table the daemon loads, read into
    Python with the daemon's own queries, and dropped."""
    started = time.perf_counter()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows = 0
    for table in STARTUP_TABLES:
        for _ in db.execute(table.select_sql):
            rows += 1
    rows += len(db.execute("SELECT kind, next_id FROM next_ids").fetchall())
    db.close()
    return {"rows": rows, "seconds": time.perf_counter() - started}


def _stamp_triggers(db, triggers: bool):
    """Triggers clearing the snapshot's stamp on every row written to the tables the
    snapshot holds (what a hand edit would then also do); dropped when not wanted."""
    for table in ("blocks", "block_replicas"):
        for op in ("INSERT", "UPDATE", "DELETE"):
            name = f"{table}_{op.lower()}_clears_stamp"
            db.execute(f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {op} ON {table} "
                       f"BEGIN DELETE FROM snapshot_stamp; END" if triggers else
                       f"DROP TRIGGER IF EXISTS {name}")


def insert(path: str, scale: str, seed: int, datasets: int, synchronous: str,
           triggers: bool = False) -> dict:
    """Raw SQLite: the rows the injection creates, in one transaction, same schema."""
    from .generator import Generator, create_schema, insert_rows

    rows = {kind: [] for kind in INVENTORY_ORDER}
    for batch in Generator(scale, seed).rows(datasets, flush_every=1 << 62):
        for kind, found in batch.items():
            rows[kind].extend(found)
    db = sqlite3.connect(path, isolation_level=None)
    create_schema(db)
    db.close()
    db = _open(path, synchronous)
    _stamp_triggers(db, triggers)
    started = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    insert_rows(db, rows)
    db.execute("COMMIT")
    seconds = time.perf_counter() - started
    db.close()
    return {"files": len(rows["file"]), "rows": sum(map(len, rows.values())),
            "seconds": seconds}


def update(path: str, count: int, synchronous: str, value: int, triggers: bool = False) -> dict:
    """Raw SQLite: `count` block replica UPDATEs by primary key, in one transaction."""
    db = _open(path, synchronous)
    _stamp_triggers(db, triggers)
    keys = db.execute("SELECT block_id, site_id FROM block_replicas ORDER BY block_id, site_id "
                      "LIMIT ?", (count,)).fetchall()
    params = [(value, block, site) for block, site in keys]
    started = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    db.executemany("UPDATE block_replicas SET last_update = ? WHERE block_id = ? AND site_id = ?",
                   params)
    db.execute("COMMIT")
    seconds = time.perf_counter() - started
    db.close()
    return {"updates": len(params), "seconds": seconds}


def fork(target_rss: int, repeat: int) -> dict:
    """A bare fork of a process as big as the daemon: the child writes one byte to a pipe."""
    ballast = bytearray(max(0, target_rss - rss_bytes()))  # zero-filled: every page resident
    times = []
    for _ in range(repeat):
        r, w = os.pipe()
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.write(w, b"x")
            os._exit(0)
        os.read(r, 1)
        times.append(time.perf_counter() - started)
        os.waitpid(pid, 0)
        os.close(r)
        os.close(w)
    result = {"median": statistics.median(times), "min": min(times), "rss": rss_bytes()}
    del ballast
    return result


# ------------------------------------------------------------------ memory
class StagedTables:
    """The `tables` argument of a build function: each table is read from SQLite only when
    the build asks for it (build reads them once each, parents first), and the memory in
    use is noted in between, once the previous table's rows are gone.  What a stage
    leaves behind is what the objects of that kind keep."""

    def __init__(self, db, datasets: int | None, measure):
        self.db = db
        self.measure = measure
        self.marks = []        # (kind, rows, memory before, seconds fetching, fetch start)
        self.entered = []      # when build asked for each table: the previous stage's end
        self.where = _prefix_filters(db, datasets)

    def __getitem__(self, kind):
        self.entered.append(time.perf_counter())
        gc.collect()
        before = self.measure()
        table = BY_KIND[kind]
        sql = f"SELECT {', '.join(table.columns)} FROM {table.name}"
        if self.where.get(kind):
            sql += f" WHERE {self.where[kind]}"
        sql += f" ORDER BY {', '.join(table.key)}"
        started = time.perf_counter()
        rows = self.db.execute(sql).fetchall()
        self.marks.append([kind, len(rows), before, time.perf_counter() - started, started])
        return rows

    def close(self) -> dict:
        self.entered.append(time.perf_counter())
        gc.collect()
        end = self.measure()
        stages = {}
        for i, (kind, count, before, fetch, started) in enumerate(self.marks):
            after = self.marks[i + 1][2] if i + 1 < len(self.marks) else end
            finished = self.entered[i + 1]
            stages[kind] = {"count": count, "bytes": after - before, "fetch_seconds": fetch,
                            "build_seconds": finished - started - fetch}
        return stages


def _prefix_filters(db, datasets: int | None) -> dict:
    """SQL conditions keeping the first `datasets` datasets and what they hold (the
    generator numbers datasets, then their blocks and files, in order)."""
    if datasets is None:
        return {}
    last_block = db.execute("SELECT max(id) FROM blocks WHERE dataset_id <= ?",
                            (datasets,)).fetchone()[0] or 0
    return {"dataset": f"id <= {datasets}", "block": f"dataset_id <= {datasets}",
            "file": f"block_id <= {last_block}", "datasetreplica": f"dataset_id <= {datasets}",
            "blockreplica": f"block_id <= {last_block}"}


class NaiveSite:
    __slots__ = ("name", "host", "storage_type", "backend", "status", "id", "dataset_replicas")


class NaiveGroup:
    __slots__ = ("name", "olevel", "id")


class NaiveDataset:
    __slots__ = ("name", "status", "data_type", "software_version", "last_update", "is_open",
                 "id", "blocks", "replicas")


class NaiveBlock:
    __slots__ = ("name", "dataset", "size", "num_files", "is_open", "last_update", "id",
                 "replicas")


class NaiveDatasetReplica:
    __slots__ = ("dataset", "site", "growing", "group", "block_replicas")


class NaiveBlockReplica:
    __slots__ = ("block", "site", "group", "is_custodial", "size", "last_update", "file_ids")


def naive_build(tables) -> dict:
    """The baseline: slotted objects holding the row values (enum names interned), a set
    per collection, dicts by name at the top; files are left in the store."""
    intern = sys.intern
    sites, groups, datasets, blocks = {}, {None: None}, {}, {}
    by_name = {"sites": {}, "groups": {}, "datasets": {}}
    for sid, name, host, storage_type, backend, status in tables["site"]:
        s = NaiveSite()
        s.name, s.host, s.backend, s.id = name, host, backend, sid
        s.storage_type, s.status = intern(storage_type), intern(status)
        s.dataset_replicas = set()
        sites[sid] = by_name["sites"][name] = s
    for gid, name, olevel in tables["group"]:
        g = NaiveGroup()
        g.name, g.olevel, g.id = name, intern(olevel), gid
        groups[gid] = by_name["groups"][name] = g
    for did, name, status, data_type, version, last_update, is_open in tables["dataset"]:
        d = NaiveDataset()
        d.name, d.software_version, d.last_update, d.id = name, version, last_update, did
        d.status, d.data_type, d.is_open = intern(status), intern(data_type), bool(is_open)
        d.blocks, d.replicas = set(), set()
        datasets[did] = by_name["datasets"][name] = d
    for bid, did, name, size, num_files, is_open, last_update in tables["block"]:
        b = NaiveBlock()
        b.name, b.dataset, b.size, b.num_files = name, datasets[did], size, num_files
        b.is_open, b.last_update, b.id, b.replicas = bool(is_open), last_update, bid, set()
        blocks[bid] = b
        b.dataset.blocks.add(b)
    replicas = {}
    for did, sid, growing, gid in tables["datasetreplica"]:
        r = NaiveDatasetReplica()
        r.dataset, r.site, r.growing, r.group = datasets[did], sites[sid], bool(growing), groups[gid]
        r.block_replicas = set()
        r.dataset.replicas.add(r)
        r.site.dataset_replicas.add(r)
        replicas[did, sid] = r
    for bid, sid, gid, custodial, size, last_update, file_ids in tables["blockreplica"]:
        r = NaiveBlockReplica()
        block = blocks[bid]
        r.block, r.site, r.group, r.is_custodial = block, sites[sid], groups[gid], bool(custodial)
        r.size, r.last_update = size, last_update
        r.file_ids = None if file_ids is None else tuple(orjson.loads(file_ids))
        block.replicas.add(r)
        replicas[block.dataset.id, sid].block_replicas.add(r)
    return by_name


def dynamod_build(tables):
    """The daemon's own start-up build (dynamod.inventory.rows.build)."""
    from dynamod.inventory.inventory import Inventory
    from dynamod.inventory.rows import build
    from dynamod import collector

    inventory = Inventory()
    with collector.paused():  # as the daemon builds it
        build(inventory, tables, {})
    return inventory


# How each mode builds from the rows, and what its datasets are.
BUILDS = {"dynamod": dynamod_build, "naive": naive_build, "columnar": Columns}
DATASETS = {"dynamod": lambda inventory: inventory.datasets.values(),
            "naive": lambda by_name: by_name["datasets"].values(),
            "columnar": Columns.datasets}


def _import_builds():
    """Import what the builds import, beforehand: imports are not part of the inventory
    (nor of its build time)."""
    import dynamod.inventory.inventory  # noqa: F401
    import dynamod.inventory.rows  # noqa: F401
    import dynamod.service  # noqa: F401


def memory(path: str, mode: str, trace: bool, datasets: int | None) -> dict:
    import tracemalloc

    build = BUILDS[mode]
    _import_builds()

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    if trace:
        tracemalloc.start(1)
        measure = lambda: tracemalloc.get_traced_memory()[0]  # noqa: E731
    else:
        measure = rss_bytes
    gc.collect()
    start = measure()
    tables = StagedTables(db, datasets, measure)
    began = time.perf_counter()
    held = build(tables)
    seconds = time.perf_counter() - began
    stages = tables.close()
    total = measure() - start
    result = {"mode": mode, "trace": trace, "datasets": datasets, "seconds": seconds,
              "bytes": total, "stages": stages, "peak_rss": hwm_bytes(), "rss": rss_bytes()}
    if trace:
        result["peak_traced"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    del held
    return result


def file_cache(path: str, limit: int, trace: bool) -> dict:
    """The file cache filled as the daemon fills it (its store reader as the source),
    measured after the inventory is built: only what the cache adds is counted."""
    import tracemalloc

    from dynamod.store.reader import StoreReader

    _import_builds()
    reader = StoreReader(path)
    inventory = dynamod_build(reader.tables())
    cache = inventory.file_cache
    cache.source, cache.limit = reader, limit
    blocks = [block for dataset in inventory.datasets.values() for block in dataset.blocks]
    gc.collect()
    if trace:
        tracemalloc.start(1)
        measure = lambda: tracemalloc.get_traced_memory()[0]  # noqa: E731
    else:
        measure = rss_bytes
    before = measure()
    started = time.perf_counter()
    cached = []
    for block in blocks:  # up to the limit, no further: nothing is dropped again
        if cache.stats()["files"] + block.num_files > limit:
            break
        block.files_by_lfn
        cached.append(block)
    load_seconds = time.perf_counter() - started
    gc.collect()
    added = measure() - before
    files = cache.stats()["files"]
    indexes = {}
    if trace:  # the indexes to a block the cache could keep, by LFN or by its hash
        for name, key in (("lfn", str), ("hash", hash)):
            before = measure()
            index = {key(lfn): block.id for block in cached for lfn in block.files_by_lfn}
            indexes[name] = measure() - before
            del index
        tracemalloc.stop()
    started = time.perf_counter()
    lfns = [f.lfn for block in cached for f in block.files_by_lfn.values()]
    make_seconds = time.perf_counter() - started
    sample = random.Random(1).sample(lfns, min(10_000, len(lfns)))
    started = time.perf_counter()
    found = sum(inventory.file(lfn).lfn == lfn for lfn in sample)
    find_seconds = time.perf_counter() - started
    reader.close()
    return {"trace": trace, "limit": limit, "files": files, "blocks": len(cached),
            "bytes": added, "indexes": indexes, "load_seconds": load_seconds,
            "make_seconds": make_seconds, "found": found, "find_seconds": find_seconds,
            "rss": rss_bytes()}


def walk(datasets) -> int:
    """The read-only full walk, the same code for every mode: each dataset's name, each
    block's name and size, each block replica's site (its name) and size."""
    objects = 0
    for dataset in datasets:
        objects += 1
        seen = dataset.name
        for block in dataset.blocks:
            objects += 1
            seen = block.name, block.size
            for replica in block.replicas:
                objects += 1
                seen = replica.site.name, replica.size  # noqa: F841 (read, not kept)
    return objects


def private_bytes() -> int:
    """The pages this process holds alone (after a fork: those it has copied)."""
    with open("/proc/self/smaps_rollup") as f:
        return sum(int(line.split()[1]) * 1024 for line in f
                   if line.startswith(("Private_Clean:", "Private_Dirty:")))


def walk_forked(path: str, mode: str) -> dict:
    """Build as MODE, then fork as the daemon forks an application (collector frozen)
    and let the child walk (walked_in_child)."""
    _import_builds()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    tables = StagedTables(db, None, rss_bytes)
    started = time.perf_counter()
    held = BUILDS[mode](tables)
    seconds = time.perf_counter() - started
    stages = tables.close().values()
    db.close()
    gc.collect()
    gc.freeze()
    rss = rss_bytes()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(r)
            os.write(w, orjson.dumps(walked_in_child(DATASETS[mode], held)))
            status = 0
        finally:
            os._exit(status)  # a traceback, if any, is on standard error by now
    os.close(w)
    with os.fdopen(r, "rb") as f:
        report = f.read()
    if os.waitpid(pid, 0)[1] != 0:
        raise RuntimeError(f"the {mode} walk failed in the child")
    return {"mode": mode, "count": sum(s["count"] for s in stages), "seconds": seconds,
            "fetch_seconds": sum(s["fetch_seconds"] for s in stages),
            "build_seconds": sum(s["build_seconds"] for s in stages), "rss": rss,
            **orjson.loads(report)}


def walked_in_child(datasets, held) -> dict:
    """Four walks: the first pays for the pages it copies (the private memory is read
    after it), the best of the three others is the walk alone.  Timed in CPU seconds
    (user + system: copying pages is system time), which the other loads of a shared
    machine disturb less than the wall clock."""
    report = {"private_before": private_bytes()}
    times = []
    for _ in range(4):
        began = time.process_time()
        report["objects"] = walk(datasets(held))
        times.append(time.process_time() - began)
        report.setdefault("private", private_bytes())
    report["walk_seconds"], report["walk_again_seconds"] = times[0], min(times[1:])
    return report


# -------------------------------------------------------------------- seal
def _maps_lines() -> int:
    with open("/proc/self/maps", "rb") as f:
        return f.read().count(b"\n")


def seal_forked(path: str, repeat: int, synchronous: str) -> dict:
    """The daemon's state when it forks an application, then the seal timed in each child.

    The inventory is loaded by the daemon's own InventoryService.open (the store's
    writer connection in WAL mode, in its thread, the read-only StoreReader, the objects, the change
    log's writer), inside a
    running uvloop loop (libuv's io_uring rings are mapped); before each fork a fresh
    reader opens and holds a read transaction (StoreReader.hold(), as
    ApplicationManager._fork does; timed) and is closed once the child has ended.
    Each fork happens from a coroutine on the loop, with the collector frozen and the
    signals blocked, as in ApplicationManager._fork; the child takes perf_counter()
    around seal.seal(), then times one more read of /proc/self/maps (the kernel's part
    of the seal), reports through a pipe and exits."""
    import asyncio
    import signal

    import uvloop

    import tempfile

    from dynamod.apps import seal
    from dynamod.changelog import ChangeLog
    from dynamod.service import InventoryService
    from dynamod.store.reader import StoreReader

    async def forks() -> dict:
        started = time.perf_counter()
        service = await InventoryService.open(path, synchronous, changelog=ChangeLog(
            os.path.join(workdir, "changes.log")))
        load_seconds = time.perf_counter() - started
        await asyncio.sleep(0.01)  # the loop has run: its rings are in use
        times, maps_reads, opens, forks_, removed, left = [], [], [], [], None, None
        before = lines = None
        try:
            for _ in range(repeat):
                began = time.perf_counter()
                snapshot = StoreReader(path)  # a fresh one per application, as _fork does
                snapshot.hold()
                opens.append(time.perf_counter() - began)
                if before is None:
                    before, lines = seal.shared_mappings(), _maps_lines()
                r, w = os.pipe()
                gc.collect(1)
                gc.freeze()
                blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
                began = time.perf_counter()
                pid = os.fork()
                if pid == 0:
                    status = 1
                    try:
                        t0 = time.perf_counter()
                        gone = seal.seal()
                        t1 = time.perf_counter()
                        with open("/proc/self/maps", "rb", buffering=0) as maps:
                            maps.readall()  # the kernel's part of the seal, read again
                        t2 = time.perf_counter()
                        os.write(w, orjson.dumps({
                            "seconds": t1 - t0, "maps_read": t2 - t1, "removed": gone,
                            "left": [(p, what) for *_, p, what in seal.shared_mappings()]}))
                        status = 0
                    finally:
                        os._exit(status)
                forked = time.perf_counter() - began
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                gc.unfreeze()
                os.close(w)
                with os.fdopen(r, "rb") as f:
                    report = f.read()
                failed = os.waitpid(pid, 0)[1] != 0 or not report
                snapshot.close()
                if failed:
                    raise RuntimeError("the seal failed in the child")
                report = orjson.loads(report)
                times.append(report["seconds"])
                maps_reads.append(report["maps_read"])
                forks_.append(forked)
                removed, left = report["removed"], report["left"]
                await asyncio.sleep(0.005)  # the loop runs between two forks, as in the daemon
        finally:
            await service.close()
        ordered = sorted(times)
        return {"repeat": repeat, "times": times, "median": statistics.median(times),
                "p90": statistics.quantiles(times, n=10, method="inclusive")[8]
                if len(times) > 1 else times[0],
                "min": ordered[0], "max": ordered[-1],
                "maps_read_median": statistics.median(maps_reads),
                "snapshot_open_median": statistics.median(opens),
                "fork_median": statistics.median(forks_),
                "shared_before": [(p, what) for *_, p, what in before],
                "removed": removed, "left": left, "maps_lines": lines, "rss": rss_bytes(),
                "load_seconds": load_seconds}

    with tempfile.TemporaryDirectory(prefix="dynbench-seal-") as workdir:
        return uvloop.run(forks())


def lookup(path: str, count: int) -> dict:
    import types

    from dynamod.inventory import snapshot, updates
    from dynamod.inventory.changes import ChangeSet
    from dynamod.methods import inventory as methods
    from dynamod.store.reader import StoreReader

    reader = StoreReader(path)
    inventory = snapshot.load(reader, reader.tables(), reader.next_ids())[0]
    reader.close()
    names = list(islice(inventory.datasets, count))
    blocks = [(name, min(b.name for b in inventory.datasets[name].blocks)) for name in names
              if len(inventory.datasets[name].blocks)]
    call, datasets = types.SimpleNamespace(inventory=inventory), inventory.datasets
    records = list(islice(([d.name, b.name, r.site.name, 1_700_000_000]
                           for d in datasets.values() for b in d.blocks for r in b.replicas),
                          100_000))
    shape = ("update", "blockreplica", ("dataset", "block", "site"), ("last_update",))

    def write_back() -> float:
        changes = ChangeSet(inventory)
        started = time.process_time()
        updates.apply_run(changes, shape, records)
        used = time.process_time() - started
        changes.rollback()
        return used

    def best(work, calls: int) -> float:
        used = []
        for _ in range(3):
            started = time.process_time()
            work()
            used.append((time.process_time() - started) / calls)
        return min(used)

    return {"datasets": len(names),
            "get_dataset_split": _answer_split(inventory, call, names[::16]),
            "find_dataset": best(lambda: list(map(datasets.__getitem__, names)), len(names)),
            "find_block": best(lambda: [datasets[d].find_block(b) for d, b in blocks],
                               len(blocks)),
            "get_dataset": best(lambda: [methods.get_dataset(call, n) for n in names],
                                len(names)),
            "write_back_records": len(records),
            "write_back": min(write_back() for _ in range(3))}


# The write-back benchmark's application (`python -m bench --only writeback` runs it
# through `dynamo`; the probe `script` runs it in process).
WRITEBACK = """# Change the last_update of COUNT block replicas (read/write application).
import sys
import time

count, value = int(sys.argv[1]), int(sys.argv[2])
print("start", repr(time.time()))
started = time.perf_counter()
done = 0
for dataset in inventory.datasets.values():
    for block in dataset.blocks:
        name = block.full_name()
        for replica in block.replicas:
            if done < count:
                inventory.update(BlockReplica(name, replica.site.name, last_update=value))
                done += 1
    if done >= count:
        break
print("updated", done)
print("seconds", time.perf_counter() - started)
print("end", repr(time.time()), flush=True)
"""


def script(path: str, count: int) -> dict:
    """The write-back application's loop (WRITEBACK) run in process against the copy an
    application gets (ApplicationInventory over the store loaded as the daemon loads
    it), best of three CPU times of each of: the walk alone (the datasets, their
    blocks, each block's full name, each replica's site name), the walk building the
    detached BlockReplica of each replica, and the whole script (each
    `inventory.update()` call too; a fresh copy and a new value each time)."""
    import contextlib
    import io

    from dynamod.apps.proxy import ApplicationInventory
    from dynamod.inventory import snapshot
    from dynamod.inventory.objects import BlockReplica
    from dynamod.store.reader import StoreReader

    reader = StoreReader(path)
    inventory = snapshot.load(reader, reader.tables(), reader.next_ids())[0]
    reader.close()
    gc.collect(1)
    gc.freeze()   # as the daemon does before it forks an application
    build = "BlockReplica(name, replica.site.name, last_update=value)"
    update = f"inventory.update({build})"
    assert update in WRITEBACK
    loops = {"walk": WRITEBACK.replace(update, "seen = name, replica.site.name"),
             "build": WRITEBACK.replace(update, f"seen = {build}"),
             "script": WRITEBACK}
    report, value = {"count": count}, 1_700_000_000
    for part, text in loops.items():
        code, used = compile(text, "writeback.py", "exec"), []
        for _ in range(3):
            value += 1
            app = ApplicationInventory(inventory, writable=True)
            argv, sys.argv = sys.argv, ["writeback.py", str(count), str(value)]
            try:
                with contextlib.redirect_stdout(io.StringIO()) as out:
                    started = time.process_time()
                    exec(code, {"inventory": app, "BlockReplica": BlockReplica})
                    used.append(time.process_time() - started)
            finally:
                sys.argv = argv
            printed = dict(line.split(" ", 1) for line in out.getvalue().splitlines())
            if int(printed["updated"]) != count:
                raise RuntimeError(f"the store holds fewer than {count} block replicas")
        report[part] = min(used)
    report["records"] = len(app.records)
    report["runs"] = [(shape, len(rows)) for shape, rows in app.records]
    return report


def _answer_split(inventory, call, names) -> dict:
    """The CPU of a get_dataset answer made afresh (nothing is kept meanwhile: the
    daemon's Answers._keep is switched off) as a part per answer plus parts per block,
    per dataset replica and per block replica: the least-squares fit of each dataset's
    time (best of 5 runs of 50 calls in a row, so its memory is warm) on its shape."""
    from dynamod.methods import answers
    from dynamod.methods import inventory as methods

    def shape(name):
        dataset = inventory.datasets[name]
        return (1, len(dataset.blocks), len(dataset.replicas),
                sum(len(r.block_replicas) for r in dataset.replicas))

    kept, answers.Answers._keep = answers.Answers._keep, lambda self, key, encoded: None
    try:
        rows, times = [], []
        for name in names:
            used = []
            for _ in range(5):
                started = time.process_time()
                for _ in range(50):
                    methods.get_dataset(call, name)
                used.append((time.process_time() - started) / 50)
            rows.append(shape(name))
            times.append(min(used))
    finally:
        answers.Answers._keep = kept
    k = len(rows[0])
    normal = [[sum(r[i] * r[j] for r in rows) for j in range(k)] +
              [sum(r[i] * t for r, t in zip(rows, times))] for i in range(k)]
    fit = [None] * k   # no fit when the shapes do not tell the parts apart
    for i in range(k):   # Gauss-Jordan on the normal equations
        if abs(normal[i][i]) < 1e-9:
            break
        normal[i] = [v / normal[i][i] for v in normal[i]]
        for j in range(k):
            if j != i:
                normal[j] = [a - normal[j][i] * b for a, b in zip(normal[j], normal[i])]
    else:
        fit = [row[k] for row in normal]
    return {"datasets": len(names), "answer": fit[0], "per_block": fit[1],
            "per_replica": fit[2], "per_block_replica": fit[3],
            "mean_shape": [statistics.mean(r[i] for r in rows) for i in range(1, k)],
            "mean": statistics.mean(times)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probes")
    sub = parser.add_subparsers(dest="probe", required=True)
    p = sub.add_parser("scan")
    p.add_argument("db")
    p = sub.add_parser("insert")
    p.add_argument("db")
    p.add_argument("scale")
    p.add_argument("seed", type=int)
    p.add_argument("datasets", type=int)
    p.add_argument("synchronous")
    p.add_argument("--triggers", action="store_true")
    p = sub.add_parser("update")
    p.add_argument("db")
    p.add_argument("count", type=int)
    p.add_argument("synchronous")
    p.add_argument("value", type=int)
    p.add_argument("--triggers", action="store_true")
    p = sub.add_parser("fork")
    p.add_argument("rss", type=int)
    p.add_argument("repeat", type=int)
    p = sub.add_parser("memory")
    p.add_argument("db")
    p.add_argument("mode", choices=BUILDS)
    p.add_argument("--trace", action="store_true")
    p.add_argument("--datasets", type=int)
    p = sub.add_parser("filecache")
    p.add_argument("db")
    p.add_argument("limit", type=int)
    p.add_argument("--trace", action="store_true")
    p = sub.add_parser("walk")
    p.add_argument("db")
    p.add_argument("mode", choices=BUILDS)
    p = sub.add_parser("lookup")
    p.add_argument("db")
    p.add_argument("count", type=int)
    p = sub.add_parser("script")
    p.add_argument("db")
    p.add_argument("count", type=int)
    p = sub.add_parser("seal")
    p.add_argument("db")
    p.add_argument("repeat", type=int)
    p.add_argument("synchronous")
    args = parser.parse_args(argv)
    if args.probe == "scan":
        result = scan(args.db)
    elif args.probe == "insert":
        result = insert(args.db, args.scale, args.seed, args.datasets, args.synchronous,
                        args.triggers)
    elif args.probe == "update":
        result = update(args.db, args.count, args.synchronous, args.value, args.triggers)
    elif args.probe == "fork":
        result = fork(args.rss, args.repeat)
    elif args.probe == "filecache":
        result = file_cache(args.db, args.limit, args.trace)
    elif args.probe == "walk":
        result = walk_forked(args.db, args.mode)
    elif args.probe == "lookup":
        result = lookup(args.db, args.count)
    elif args.probe == "script":
        result = script(args.db, args.count)
    elif args.probe == "seal":
        result = seal_forked(args.db, args.repeat, args.synchronous)
    else:
        result = memory(args.db, args.mode, args.trace, args.datasets)
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
