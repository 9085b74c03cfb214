"""`python -m bench --scale small|medium|cms [--only NAME ...]`

Measures dynamod at a chosen scale, every figure side by side with its
physical limit on this machine, in one run, and prints one table: the figure,
our value, the limit's value, their ratio, the goal, whether it is met and, if
not, the gap (how many times better the figure must get to meet it).

Figures (names for --only):
  inject     files/s through the real dynamo-inject vs raw sqlite3 executemany
  coldstart  start to READY=1 (NOTIFY_SOCKET) vs a raw scan of the same tables
  memory     resident bytes per object vs naive slotted objects; tracemalloc by kind;
             the columnar prototype (bench/columnar.py): bytes per object, a forked
             read-only walk's time and private memory vs the daemon's objects; the
             file cache filled to its limit: bytes per cached file (daemon RSS, tracemalloc)
  query      round trips/s, latency and the server's CPU per request vs a bare
             uvloop+orjson echo (1 and 10 connections)
  apps       application start (time to first byte) vs a bare fork of the same size;
             private memory a read-only walk copies; the seal (dynamod.apps.seal) timed
             in children forked from a process holding the inventory as the daemon does;
             the WAL a running read-only application's snapshot keeps while injections
             go on, against the same injections with no application
  writeback  100k changes of a read/write application vs raw sqlite3 UPDATEs (alternating
             rounds), from the script's end and end to end
  usage      usage bookkeeping: the inject figure's injection into a daemon with three
             partitions vs one with none (alternating rounds); site_usage latency for
             every site and partition over the socket

Every number printed comes from this run; nothing is estimated.  The only
constant is the reference line for the original system (documented figure,
labelled as such).
"""

import argparse
import importlib.util
import os
import platform
import select
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from operator import itemgetter

import orjson

from dynamod.config import Config
from dynamod.methods.answers import ANSWERS

from contextlib import nullcontext

from .daemon import BenchDaemon, DaemonFailed
from .generator import SCALES, Generator
from .install import interpreter_start, regular_install
from .probes import WRITEBACK
from .profile import Profile, describe

NAMES = ("inject", "usage", "coldstart", "memory", "query", "apps", "writeback")
# The partitions of the usage figure: one that holds everything, one on the group, one on
# the site's storage type and a flag (README "Partitions and quotas").
USAGE_PARTITIONS = {"All": "true", "Owned": "group != none",
                    "Disk": 'storage_type == "disk" and not custodial'}
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)

# The original Dynamo at CMS: ~20 GB of RAM for ~6 M in-memory objects (documented in
# /work/shared/NOTES.md and the issue); a reference line, not a measurement of this run.
ORIGINAL_BYTES, ORIGINAL_OBJECTS = 20e9, 6e6


@dataclass
class Settings:
    inject_files: int | None      # files the injection sends (None: the whole inventory)
    files_per_doc: int
    query_seconds: float
    connections: int
    app_repeat: int
    writeback: int
    trace_datasets: int | None    # tracemalloc breakdown on a prefix (None: everything)
    daemon_memory_limit: int | None  # RLIMIT_AS of the loaded daemon (None: none)
    rss_probe: bool               # also build the daemon's objects outside the daemon
    rounds: int = 3               # query rounds per side, alternating daemon and echo
    seal_repeat: int = 20         # forks whose child times the seal
    wal_files: int = 50_000       # files injected with and without a held snapshot
    wal_files_per_doc: int = 1_000
    usage_rounds: int = 2         # injections with and without partitions, each (ABBA order)
    inject_rounds: int = 2        # injections and raw inserts, each (ABBA order)
    usage_calls: int = 1_000      # site_usage calls timed
    writeback_rounds: int = 3     # write-back rounds, alternating with the raw UPDATEs
    coldstart_rounds: int = 3     # starts from the snapshot, alternating with raw scans
    listing_changes: int = 100    # changes, each followed by a timed list_datasets, per pattern


SETTINGS = {
    "small": Settings(None, 50_000, 0.3, 10, 3, 100_000, None, None, True, rounds=1,
                      wal_files=2_000, wal_files_per_doc=100, usage_rounds=1, usage_calls=200,
                      inject_rounds=1, writeback_rounds=1, coldstart_rounds=1,
                      listing_changes=10),
    "medium": Settings(None, 50_000, 1.5, 10, 15, 100_000, None, None, True),
    "cms": Settings(500_000, 50_000, 1.5, 10, 3, 100_000, 24_000, 21 << 30, False),
}


@dataclass
class Figure:
    section: str
    name: str
    ours: float
    limit: float | None
    unit: str
    goal: str = ""                 # e.g. "ratio >= 0.7", "ours <= 80"
    note: str = ""
    ratio: float | None = field(init=False)
    met: bool | None = field(init=False)
    gap: float | None = field(init=False)  # how many times better it must get (not met)

    def __post_init__(self):
        self.ratio = self.ours / self.limit if self.limit else None
        self.met = self.gap = None
        if self.goal:
            what, op, value = self.goal.split()
            x, target = (self.ratio if what == "ratio" else self.ours), float(value)
            if x is not None:
                self.met = x >= target if op == ">=" else x <= target
                if not self.met:
                    self.gap = target / x if op == ">=" else x / target


def fmt(value, unit) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "B":
        return f"{value / 2**30:.2f} GiB" if value >= 2**30 else (
            f"{value / 2**20:.1f} MiB" if value >= 2**20 else f"{value:,.0f} B")
    if unit == "B/obj":
        return f"{value:,.0f} B/obj"
    if unit == "us":
        return f"{value:,.0f} us"
    if unit == "%":
        return f"{value:.1f} %"
    return f"{value:,.0f} {unit}"


class Bench:
    def __init__(self, args):
        self.args = args
        self.scale = SCALES[args.scale]
        self.settings = SETTINGS[args.scale]
        if args.inject_files is not None:
            self.settings.inject_files = args.inject_files or None
        self.only = set(args.only or NAMES)
        self.gen = Generator(self.scale, args.seed)
        self.synchronous = args.synchronous
        self.figures: list[Figure] = []
        self.notes: list[str] = []
        self.root = tempfile.mkdtemp(prefix="dynbench-", dir=args.workdir)
        os.chmod(self.root, 0o755)
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [REPO] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
        self.loaded = None
        self.daemon_rss = None
        self.used = None
        self.store = None
        self.profile = args.profile and Profile.available()
        if args.profile and not self.profile:
            self.note("--profile: py-spy is not installed; no profiles")

    # ------------------------------------------------------------ helpers
    def add(self, *args, **kwargs):
        figure = Figure(*args, **kwargs)
        self.figures.append(figure)
        self.log(f"  {figure.name}: {fmt(figure.ours, figure.unit)}"
                 + (f" vs {fmt(figure.limit, figure.unit)}" if figure.limit is not None else ""))

    def note(self, text):
        self.notes.append(text)
        self.log(f"  note: {text}")

    def log(self, text):
        print(text, file=sys.stderr, flush=True)

    def probe(self, *args, timeout=7200) -> dict:
        result = subprocess.run([sys.executable, "-m", "bench.probes", *map(str, args)],
                                capture_output=True, env=self.env, cwd=REPO, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"probe {args[0]} failed ({result.returncode}):\n"
                               f"{result.stderr.decode(errors='replace')[-3000:]}")
        return orjson.loads(result.stdout)

    def generate(self, *args) -> dict:
        """The generator in a process of its own (its SQLite cache and rows stay there)."""
        result = subprocess.run([sys.executable, "-m", "bench.generator", "--scale",
                                 self.scale.name, "--seed", str(self.args.seed), "--json",
                                 *map(str, args)], capture_output=True, env=self.env, cwd=REPO)
        if result.returncode != 0:
            raise RuntimeError(f"the generator failed: {result.stderr.decode()[-3000:]}")
        return orjson.loads(result.stdout)

    def timed_probe(self, *args) -> tuple[float, dict]:
        started = time.perf_counter()
        result = self.probe(*args)
        return time.perf_counter() - started, result

    def path(self, name) -> str:
        return os.path.join(self.root, name)

    def profiled(self, what: str, pid: int):
        """With --profile: py-spy samples the daemon during the block; the summary becomes
        a note (what the cost consists of)."""
        if not self.profile:
            return nullcontext()
        bench = self

        class Noted(Profile):
            def __exit__(self, *exc):
                super().__exit__(*exc)
                bench.note(f"profile of the daemon during {what}: {describe(self.summary)}")
                return False

        return Noted(pid, self.path(f"profile-{len(self.notes)}.txt"))

    # --------------------------------------------------------------- run
    def run(self) -> int:
        self.log(f"bench: scale {self.scale.name}, seed {self.args.seed}, work dir {self.root}")
        try:
            if "inject" in self.only:
                self.inject()
            if "usage" in self.only:
                self.usage()
            if self.only & {"coldstart", "memory", "query", "apps", "writeback"}:
                self.make_store()
                if "memory" in self.only:
                    self.empty_daemon()
                try:
                    self.cold_start()
                except DaemonFailed:
                    pass  # noted; what needs no loaded daemon is still measured
                try:
                    if self.loaded is not None:
                        if "memory" in self.only:
                            self.memory()
                        if "query" in self.only:
                            self.query()
                        if "apps" in self.only:
                            self.apps()
                        if "writeback" in self.only:
                            self.writeback()
                        if "memory" in self.only:  # last: it grows the daemon
                            self.file_cache()
                finally:
                    self.stop_loaded()
                if "apps" in self.only and hasattr(self, "wal_figures"):
                    self.wal_after_stop()
                if "apps" in self.only and getattr(self, "walk_rss", None):
                    self.seal()
                if "memory" in self.only:
                    self.memory_breakdown()
        finally:
            if self.loaded is not None:
                self.stop_loaded()
            if not self.args.keep:
                shutil.rmtree(self.root, ignore_errors=True)
        return 0

    # ------------------------------------------------------------ inject
    def inject(self):
        """The documents through the real dynamo-inject into a fresh daemon, against raw
        executemany of the same rows, in alternating rounds (ours, raw, raw, ours, ...:
        a drift of the shared machine falls on both sides); the best round of each."""
        self.log("== inject")
        docs = self.generate("--documents", self.path("docs"), "--files-per-doc",
                             self.settings.files_per_doc,
                             *(["--max-files", self.settings.inject_files]
                               if self.settings.inject_files else []))["documents"]
        counts = docs["counts"]
        rounds = self.settings.inject_rounds
        order = [i % 4 in (1, 2) for i in range(2 * rounds)]   # F T T F F T ... (T: raw)
        seconds = {False: [], True: []}
        for raw in order:
            seconds[raw].append(self._raw_insert(counts) if raw
                                else self._inject_once(docs, counts, not seconds[False]))
        shutil.rmtree(self.path("docs"))
        files, objects = counts["file"], sum(counts.values())
        ours, limit = min(seconds[False]), min(seconds[True])
        shown = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
        self.add("inject", "bulk injection (dynamo-inject, end to end)", files / ours,
                 files / limit, "files/s", "ratio >= 0.5",
                 note=f"{len(docs['paths'])} documents given to one dynamo-inject (each its "
                      f"own transaction, pipelined), {files:,} files, {objects:,} rows; best "
                      f"of {rounds} alternating rounds "
                      f"({''.join('R' if r else 'O' for r in order)}: O ours, R raw "
                      f"executemany): ours {shown(seconds[False])} s, raw "
                      f"{shown(seconds[True])} s")

    def _inject_once(self, docs: dict, counts: dict, profiled: bool) -> float:
        """Seconds the documents take through dynamo-inject into a fresh daemon."""
        daemon = BenchDaemon(self.root, self.path("inject.db"), self.synchronous, "inject")
        daemon.start()
        try:
            with self.profiled("the injection", daemon.pid) if profiled else nullcontext():
                started = time.perf_counter()
                result = daemon.tool("inject", "--json", *docs["paths"])
                if result.returncode != 0:
                    raise RuntimeError(f"dynamo-inject failed: {result.stderr}")
                seconds = time.perf_counter() - started
            status = daemon.call("status")["inventory"]
        finally:
            daemon.stop()
            self._remove_database("inject.db")
            shutil.rmtree(daemon.state_dir, ignore_errors=True)
        if status["files"] != counts["file"]:
            raise RuntimeError(f"injected {status['files']} files, expected {counts['file']}")
        return seconds

    def _raw_insert(self, counts: dict) -> float:
        """Seconds raw executemany takes for the rows the documents create."""
        try:
            return self.probe("insert", self.path("raw-insert.db"), self.scale.name,
                              self.args.seed, counts["dataset"], self.synchronous)["seconds"]
        finally:
            self._remove_database("raw-insert.db")

    def _remove_database(self, name: str):
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path(name + suffix)):
                os.unlink(self.path(name + suffix))

    # ------------------------------------------------------------- usage
    def usage(self):
        """What the usage bookkeeping costs: the injection of the inject figure (the same
        documents through the real dynamo-inject into a fresh daemon), with the three
        partitions of USAGE_PARTITIONS defined (set_partition, before the injection)
        against none, in alternating rounds (none, three, three, none, ...: a drift of
        the shared machine falls on both sides), the best of each; then `site_usage` for
        every site and partition, timed call by call over the socket of the daemon
        holding the partitions."""
        self.log("== usage")
        docs = self.generate("--documents", self.path("usage-docs"), "--files-per-doc",
                             self.settings.files_per_doc,
                             *(["--max-files", self.settings.inject_files]
                               if self.settings.inject_files else []))["documents"]
        counts = docs["counts"]
        rounds = self.settings.usage_rounds
        order = [bool(i % 4 in (1, 2)) for i in range(2 * rounds)]   # F T T F F T ...
        seconds = {False: [], True: []}
        latency = None
        for number, partitioned in enumerate(order):
            name = f"usage-{number}"
            daemon = BenchDaemon(self.root, self.path(name + ".db"), self.synchronous, name)
            daemon.start()
            try:
                if partitioned:
                    with daemon.client() as client:
                        for partition, condition in USAGE_PARTITIONS.items():
                            client.call("set_partition", name=partition, condition=condition)
                label = "with three partitions" if partitioned else "with no partition"
                with self.profiled(f"the injection {label}", daemon.pid):
                    started = time.perf_counter()
                    result = daemon.tool("inject", "--json", *docs["paths"])
                    if result.returncode != 0:
                        raise RuntimeError(f"dynamo-inject failed: {result.stderr[-2000:]}")
                    seconds[partitioned].append(time.perf_counter() - started)
                status = daemon.call("status")["inventory"]
                if status["files"] != counts["file"]:
                    raise RuntimeError(f"injected {status['files']} files, expected "
                                       f"{counts['file']}")
                if partitioned and latency is None:
                    latency = self._site_usage_latency(daemon, counts)
            finally:
                daemon.stop()
                self._remove_database(name + ".db")
        shutil.rmtree(self.path("usage-docs"))
        files = counts["file"]
        partitioned, plain = min(seconds[True]), min(seconds[False])
        shown = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
        self.add("usage", "injection with three partitions vs none (seconds)", partitioned,
                 plain, "s", "ratio <= 1.05",
                 note=f"{len(docs['paths'])} documents, {files:,} files "
                      f"({counts['blockreplica']:,} block replicas) through one dynamo-inject "
                      f"into a fresh daemon, as the inject figure; partitions "
                      + "; ".join(f"{n}: {c}" for n, c in USAGE_PARTITIONS.items())
                      + f" (set before the injection); best of {rounds}, rounds in the order "
                        f"{''.join('P' if p else 'N' for p in order)} (N: none, P: "
                        f"partitions): none {shown(seconds[False])} s, partitions "
                        f"{shown(seconds[True])} s; {files / partitioned:,.0f} vs "
                        f"{files / plain:,.0f} files/s")
        self.add("usage", "site_usage, every site and partition: p50 latency",
                 latency["p50"] * 1e6, None, "us", "ours <= 1000",
                 note=f"{latency['calls']:,} calls of site_usage (no parameters: every "
                      f"site and partition, {latency['rows']:,} rows) over one connection "
                      f"(dynamoclient.connection.Client), each timed; p90 "
                      f"{latency['p90'] * 1e6:,.0f} us, p99 {latency['p99'] * 1e6:,.0f} us, "
                      f"min {latency['min'] * 1e6:,.0f} us; the rows' replicas add up to "
                      f"the block replicas ({latency['replicas']:,} in partition All)")

    def _site_usage_latency(self, daemon, counts) -> dict:
        calls = self.settings.usage_calls
        times = []
        with daemon.client() as client:
            rows = client.call("site_usage")["usage"]
            for _ in range(calls):
                started = time.perf_counter()
                client.call("site_usage")
                times.append(time.perf_counter() - started)
        replicas = sum(r["complete_replicas"] + r["incomplete_replicas"]
                       for r in rows if r["partition"] == "All")
        if replicas != counts["blockreplica"]:
            raise RuntimeError(f"site_usage counts {replicas} block replicas in All, "
                               f"expected {counts['blockreplica']}")
        times.sort()
        return {"calls": calls, "rows": len(rows), "replicas": replicas,
                "p50": statistics.median(times), "p90": times[int(calls * 0.9)],
                "p99": times[min(calls - 1, int(calls * 0.99))], "min": times[0]}

    # ------------------------------------------------------------- store
    def make_store(self):
        self.log("== store")
        self.store = self.path("inventory.db")
        result = self.generate("--store", self.store)["store"]
        self.store_counts = counts = result["counts"]
        size = os.path.getsize(self.store)
        self.note(f"generated store: {', '.join(f'{v:,} {k}s' for k, v in counts.items())}; "
                  f"{size / 2**20:,.0f} MiB in {result['seconds']:.1f} s")

    def empty_daemon(self):
        daemon = BenchDaemon(self.root, self.path("empty.db"), self.synchronous, "empty")
        daemon.start()
        try:
            daemon.call("status")
            self.empty_rss = daemon.rss()
        finally:
            daemon.stop()

    def cold_start(self):
        """Starts on the same store, each with the file in the page cache: from rows (the
        generated store has no snapshot yet), whose shutdown writes the snapshot; then
        from the snapshot in rounds alternating with the raw scan, medians compared (the
        last one is the daemon the other figures use)."""
        self.log("== coldstart")
        _warm(self.store)
        scans = [self.timed_probe("scan", self.store)]
        # No snapshot while it serves (one at each stop): its write, and the heap pages
        # given back after it, would move the memory figures taken meanwhile.
        config = self.path("loaded.toml")
        with open(config, "w") as f:
            f.write("[daemon]\nsnapshot_idle = 1e9\n")
        daemon = BenchDaemon(self.root, self.store, self.synchronous, "loaded",
                             memory_limit=self.settings.daemon_memory_limit,
                             options=("--config", config))
        _warm(self.store)
        try:
            rows_ready = daemon.start()
        except DaemonFailed as exc:
            self.failed_start(daemon, exc, *scans[0])
            raise
        rows_line = self.log_line(daemon, "inventory loaded")
        self.wait_for_store_check(daemon, "the start from rows")
        daemon.stop()
        written = self.log_line(daemon, "inventory snapshot of commit")
        profile, starts = [None], []

        def spawned(pid):
            if self.profile:
                time.sleep(0.05)  # let the interpreter come up before py-spy looks at it
                profile[0] = self.profiled("start-up", pid)
                profile[0].__enter__()

        rounds = self.settings.coldstart_rounds
        for round_ in range(rounds):
            if round_:
                daemon.stop()   # nothing committed since its start: no snapshot to write
                _warm(self.store)
                scans.append(self.timed_probe("scan", self.store))
            _warm(self.store)
            try:
                starts.append(daemon.start(on_spawn=spawned if round_ == rounds - 1 else None))
            except DaemonFailed as exc:
                self.failed_start(daemon, exc, *scans[0])
                raise
            finally:
                if profile[0] is not None:
                    profile[0].__exit__(None, None, None)
        self.loaded = daemon
        self.counts = daemon.call("status")["inventory"]
        loaded_line = self.log_line(daemon, "inventory loaded")
        self.wait_for_store_check(daemon, "the last start from the snapshot")
        scan_walls = [wall for wall, _ in scans]
        scan_wall, scan = statistics.median(scan_walls), scans[0][1]
        if "coldstart" in self.only:
            self.add("coldstart", "cold start to READY=1, from the snapshot",
                     statistics.median(starts), scan_wall, "s", "ratio <= 1",
                     note=f"medians of {rounds} starts alternating with {rounds} raw scans "
                          f"(starts {', '.join(f'{t:.2f}' for t in starts)} s; scans "
                          f"{', '.join(f'{t:.2f}' for t in scan_walls)} s: a scan is a "
                          f"process reading {scan['rows']:,} rows, {scan['seconds']:.2f} s "
                          f"inside it the first time); daemon log: {loaded_line[:120]}")
            self.add("coldstart", "cold start to READY=1, from rows (no snapshot)", rows_ready,
                     scan_wall, "s", "ratio <= 2",
                     note=f"one start, the first; daemon log: {rows_line[:120]}")
            self.note(f"the snapshot, written at the first daemon's shutdown: {written}")
            self.snapshot_write()

    def snapshot_write(self):
        """The snapshot written by an idle daemon as it serves (snapshot_idle 0), and the
        WAL it leaves: a second daemon on a copy of the store, given one commit."""
        copy = self.path("snapshot-write.db")
        shutil.copyfile(self.store, copy)
        config = self.path("snapshot-write.toml")
        with open(config, "w") as f:
            f.write("[daemon]\nsnapshot_idle = 0.0\nsnapshot_interval = 0.0\n")
        daemon = BenchDaemon(self.root, copy, self.synchronous, "snapshot-write",
                             options=("--config", config))
        daemon.start()
        try:
            daemon.call("inject", data={"site": [{"name": "T9_BENCH_SNAPSHOT",
                                                  "host": "bench.example.org",
                                                  "backend": "davs://bench/store"}]})
            line = daemon.wait_for_log("inventory snapshot of commit", timeout=600) or ""
            wal = os.path.getsize(f"{copy}-wal") if os.path.exists(f"{copy}-wal") else 0
        finally:
            daemon.stop()
            os.unlink(copy)
        self.note(f"the snapshot written by an idle serving daemon: "
                  f"{line.partition('inventory snapshot of commit')[2].strip()[:120]}; "
                  f"its WAL then holds {wal / 2**20:.1f} MiB (journal_size_limit 64 MiB; "
                  f"the next checkpoint reuses it)")

    def log_line(self, daemon, text: str) -> str:
        """What follows `text` on the last log line holding it."""
        found = [line for line in daemon.log_tail(200).splitlines() if text in line]
        return found[-1].partition(text)[2].strip() if found else ""

    def failed_start(self, daemon, exc, scan_wall, scan):
        """The note and the only figure when the daemon cannot load the store."""
        limit = self.settings.daemon_memory_limit
        self.note(f"the daemon could not load this inventory: it exited "
                  f"{daemon.failed_after:.0f} s after start, its resident size having "
                  f"reached {daemon.peak_seen / 2**30:.2f} GiB"
                  + (f" (address space limited to {limit / 2**30:.0f} GiB of the "
                     f"machine's {_mem_total() / 2**30:.1f} GiB so that it cannot take "
                     f"the machine down)" if limit else "")
                  + f"; its log: {' / '.join(str(exc).splitlines()[-3:])[:600]}")
        self.add("coldstart", "raw scan of the tables (the limit alone: the daemon failed)",
                 scan_wall, None, "s", note=f"{scan['rows']:,} rows")

    def wait_for_store_check(self, daemon, start: str):
        """A daemon that checks its store in the background once it serves (`PRAGMA
        quick_check`, dynamod/store/check.py) keeps a core busy and a read transaction
        open meanwhile: what follows is measured once that check has ended."""
        if importlib.util.find_spec("dynamod.store.check") is None:
            return
        started = time.perf_counter()
        line = daemon.wait_for_log("quick_check of", "integrity check of", timeout=1800)
        waited = time.perf_counter() - started
        self.note(f"the daemon's background store check after READY=1 of {start} "
                  + (f"ended {waited:.1f} s after the start-up was measured: "
                     f"{line.split('quick_check of', 1)[-1].strip()[:120]}" if line else
                     f"had not ended {waited:.0f} s after READY=1")
                  + "; every figure but the cold start was measured after it")

    def stop_loaded(self):
        if self.loaded is not None:
            self.loaded.stop()
            self.loaded = None

    # ------------------------------------------------------------ memory
    def objects(self) -> int:
        c = self.counts if hasattr(self, "counts") else {
            k + "s": v for k, v in self.store_counts.items()}
        return (c["sites"] + c["groups"] + c["datasets"] + c["blocks"] + c["datasetreplicas"]
                + c["blockreplicas"])

    def memory(self):
        self.log("== memory")
        self.daemon_rss = rss = self.loaded.rss()
        peak = self.loaded.hwm()
        self.used = rss - self.empty_rss
        self.note(f"loaded daemon: RSS {rss / 2**20:,.0f} MiB (peak during load "
                  f"{peak / 2**20:,.0f} MiB), empty daemon {self.empty_rss / 2**20:,.0f} MiB; "
                  f"{self.objects():,} objects in memory; its {self.counts['files']:,} files stay "
                  f"in the store (read per block when asked for)")

    def file_cache(self):
        """The file cache filled to its limit (the default, 500,000 files) through requests,
        as a busy daemon's is, and what it adds to the daemon; then the same cache filled
        in a probe, traced."""
        self.log("== file cache")
        before_rss, cache = self.loaded.rss(), self.loaded.call("status")["file_cache"]
        with sqlite3.connect(f"file:{self.store}?mode=ro", uri=True) as db:
            blocks = db.execute("SELECT d.name || '#' || b.name, b.num_files FROM blocks b "
                                "JOIN datasets d ON d.id = b.dataset_id ORDER BY b.id").fetchall()
        started, asked, files = time.perf_counter(), 0, cache["files"]
        with self.loaded.client() as client:
            for name, count in blocks:  # up to the limit, no further: nothing is dropped
                if files + count > cache["limit"]:
                    break
                client.call("get_block", name=name)
                asked, files = asked + 1, files + count
        seconds = time.perf_counter() - started
        rss, full = self.loaded.rss(), self.loaded.call("status")["file_cache"]
        added = full["files"] - cache["files"]
        self.add("memory", "file cache full: daemon RSS growth per cached file",
                 (rss - before_rss) / added, None, "B/file", "ours <= 150",
                 note=f"{asked:,} get_block calls ({seconds:.1f} s) filled the cache from "
                      f"{cache['files']:,} to {full['files']:,} files ({full['blocks']:,} blocks, "
                      f"limit {full['limit']:,}): RSS {before_rss / 2**20:,.0f} -> "
                      f"{rss / 2**20:,.0f} MiB")
        if self.used is not None:
            n6 = self.objects()
            self.add("memory", "resident bytes per object, file cache full", (self.used + rss
                     - before_rss) / n6, self.used / n6, "B/obj",
                     note="(daemon RSS with the cache full - empty daemon RSS) / objects; "
                          "limit = the same without the cache (the first memory row)")
        traced = self.probe("filecache", self.store, full["limit"], "--trace")
        self.add("memory", "file cache full: tracemalloc bytes per cached file",
                 traced["bytes"] / traced["files"], None, "B/file", "ours <= 150",
                 note=f"bench.probes filecache: the inventory loaded as the daemon loads it, "
                      f"then the files of {traced['blocks']:,} blocks in store order, "
                      f"{traced['files']:,} files, {traced['bytes'] / 2**20:,.1f} MiB traced; "
                      f"making every cached file a File once "
                      f"{traced['make_seconds'] / traced['files'] * 1e6:.2f} us each, finding "
                      f"one by LFN (inventory.file: the store says which block) "
                      f"{traced['find_seconds'] / traced['found'] * 1e6:.1f} us; an index to "
                      f"the block would add "
                      + " or ".join(f"{n / traced['files']:,.0f} B/file (by {key})"
                                    for key, n in traced["indexes"].items()))

    def memory_breakdown(self):
        self.log("== memory breakdown")
        n6 = self.objects()
        files = self.store_counts["file"]
        naive = self.probe("memory", self.store, "naive")
        naive_objects = sum(s["count"] for s in naive["stages"].values())
        naive_per = naive["bytes"] / naive_objects
        if self.used is not None:
            self.add("memory", "resident bytes per object (daemon RSS - empty daemon RSS)",
                     self.used / n6, naive_per, "B/obj", "ours <= 80",
                     note=f"objects = sites+groups+datasets+blocks+replicas = {n6:,}; the "
                          f"{files:,} files stay in the store; limit = the naive baseline below")
        self.add("memory", "baseline: naive slotted objects, a set per collection",
                 naive_per, None, "B/obj", note=f"RSS growth of a process building them for "
                 f"the {naive_objects:,} objects of the store (files left in the store), "
                 f"rows dropped; peak RSS {naive['peak_rss'] / 2**20:,.0f} MiB")
        self.add("memory", "reference: original Dynamo (documented ~20 GB / ~6 M objects)",
                 ORIGINAL_BYTES / ORIGINAL_OBJECTS, None, "B/obj",
                 note="not measured here: the figure the issue quotes")
        extra = ["--datasets", self.settings.trace_datasets] if self.settings.trace_datasets else []
        traced = self.probe("memory", self.store, "dynamod", "--trace", *extra)
        traced_naive = self.probe("memory", self.store, "naive", "--trace", *extra)
        if self.settings.trace_datasets:
            self.note(f"tracemalloc breakdown on the first {self.settings.trace_datasets:,} "
                      f"datasets of the store and what they hold (a fraction: tracemalloc "
                      f"keeps a record of its own for every allocated block)")
        total = traced["bytes"]
        for kind, stage in traced["stages"].items():
            base = traced_naive["stages"].get(kind)
            per = stage["bytes"] / stage["count"] if stage["count"] else 0
            base_per = base["bytes"] / base["count"] if base and base["count"] else None
            self.add("memory", f"tracemalloc: bytes per {kind}", per,
                     base_per, "B/obj", note=f"{stage['count']:,} {kind}s, "
                     f"{stage['bytes'] / 2**20:,.1f} MiB, {100 * stage['bytes'] / total:.1f} % "
                     f"of {total / 2**20:,.0f} MiB traced")
        traced_n6 = sum(s["count"] for k, s in traced["stages"].items() if k != "file")
        traced_bytes6 = sum(s["bytes"] for k, s in traced["stages"].items() if k != "file")
        self.add("memory", "tracemalloc: bytes per object without files",
                 traced_bytes6 / traced_n6, traced_naive["bytes"] / traced_n6, "B/obj",
                 "ours <= 80", note="limit = the naive objects, traced the same way")
        self.columnar(naive_per, traced_naive["bytes"] / traced_n6, extra)
        if self.settings.rss_probe:
            built = self.probe("memory", self.store, "dynamod")
            fetch = sum(s["fetch_seconds"] for s in built["stages"].values())
            build = sum(s["build_seconds"] for s in built["stages"].values())
            by_kind = ", ".join(f"{k} {s['fetch_seconds']:.1f}+{s['build_seconds']:.1f} s"
                                for k, s in built["stages"].items())
            self.note(f"start-up build outside the daemon (same build()): fetching rows "
                      f"{fetch:.1f} s, building objects {build:.1f} s ({by_kind}); "
                      f"its RSS growth {built['bytes'] / 2**20:,.0f} MiB, peak RSS "
                      f"{built['peak_rss'] / 2**20:,.0f} MiB")

    def columnar(self, naive_per, traced_naive_per, extra):
        """The compact option measured beside the others: bench/columnar.py keeps each
        kind's values in arrays (no object per row), built from the same rows; then a
        read-only walk of every mode in a forked child (as an application walks)."""
        built = self.probe("memory", self.store, "columnar")
        traced = self.probe("memory", self.store, "columnar", "--trace", *extra)
        count = sum(s["count"] for s in built["stages"].values())
        self.add("memory", "columnar prototype: bytes per object", built["bytes"] / count,
                 naive_per, "B/obj", note=f"RSS growth of a process building the columns for "
                 f"the {count:,} objects (the daemon's objects: the resident row above; "
                 f"the goal is 80); limit = the naive baseline")
        count = sum(s["count"] for s in traced["stages"].values())
        by_kind = ", ".join(f"{k} {s['bytes'] / s['count']:,.0f}"
                            for k, s in traced["stages"].items() if s["count"])
        self.add("memory", "columnar prototype: tracemalloc bytes per object",
                 traced["bytes"] / count, traced_naive_per, "B/obj",
                 note=f"by kind (B each): {by_kind}; limit = the naive objects, traced the "
                      f"same way")
        walks = {name: self.probe("walk", self.store, mode) for name, mode in
                 (("objects", "dynamod"), ("columnar", "columnar"), ("naive", "naive"))}
        objects, columnar = walks["objects"], walks["columnar"]
        builds = "; ".join(f"{name}: build {fmt(w['build_seconds'], 's')} (+ "
                           f"{fmt(w['fetch_seconds'], 's')} fetching rows), walk "
                           f"{fmt(w['walk_seconds'], 's')}, "
                           f"again {fmt(w['walk_again_seconds'], 's')}"
                           for name, w in walks.items())
        self.add("memory", "full walk seconds: objects vs columnar", objects["walk_seconds"],
                 columnar["walk_seconds"], "s",
                 note=f"CPU seconds of the first read-only walk in a forked child (gc.freeze() "
                      f"first, as the daemon forks) over {objects['objects']:,} datasets, "
                      f"blocks and block replicas, reading name/size/site; {builds}")
        privates = "; ".join(f"{name}: {fmt(w['private'], 'B')} of a {fmt(w['rss'], 'B')} "
                             f"parent ({fmt(w['private_before'], 'B')} before the walk)"
                             for name, w in walks.items())
        self.add("memory", "private copy after a walk: objects vs columnar", objects["private"],
                 columnar["private"], "B", note=f"Private_Clean + Private_Dirty of the child "
                                                f"after its first walk; {privates}")

    # ------------------------------------------------------------- query
    def query(self):
        self.log("== query")
        echo_path = self.path("echo.sock")
        echo = subprocess.Popen([sys.executable, "-m", "bench.echo", echo_path],
                                stdout=subprocess.PIPE, env=self.env, cwd=REPO)
        try:
            if echo.stdout.readline().strip() != b"ready":
                raise RuntimeError("the echo server did not start")
            servers = (self.loaded.socket, self.loaded.pid), (echo_path, echo.pid)
            dataset = self._typical_dataset()
            small = ("list_sites", {"pattern": "T1_US_FNAL_*"})
            get = ("get_dataset", {"name": dataset.name})
            turns = [{"name": self.gen.dataset(i).name}
                     for i in range(min(self.scale.datasets, 2 * ANSWERS))]
            many = ("get_dataset", turns)
            seconds = self.settings.query_seconds
            for (method, params), label in ((small, "list_sites narrow pattern"),
                                             (get, "get_dataset"),
                                             (many, f"get_dataset of {len(turns):,} datasets "
                                                    f"in turn")):
                with self.profiled(f"{label} (1 connection)", self.loaded.pid):
                    ours, limit = self._rounds(servers, method, params, 1, seconds)
                self.add("query", f"{label}, 1 connection: round trips/s", ours["rate"],
                         limit["rate"], "rt/s", "ratio >= 0.7" if method == "list_sites" else "",
                         note=f"best of {self.settings.rounds} alternating rounds of {seconds:g} s each; "
                              f"{ours['count']:,} calls" + self._query_note(params, dataset))
                self.add("query", f"{label}, 1 connection: p50 latency", ours["p50"] * 1e6,
                         limit["p50"] * 1e6, "us")
                self.add("query", f"{label}, 1 connection: p99 latency", ours["p99"] * 1e6,
                         limit["p99"] * 1e6, "us")
                self.add("query", f"{label}, 1 connection: server CPU per request",
                         ours["cpu"] * 1e6, limit["cpu"] * 1e6, "us", "ratio <= 2",
                         note="user + system CPU of the whole server process (/proc/PID/stat) "
                              "over a round, warm-up calls included, per call; least of the "
                              "rounds of each side")
            n = self.settings.connections
            method, params = small
            ours, limit = self._rounds(servers, method, params, n, seconds)
            self.add("query", f"list_sites, {n} connections (processes): round trips/s",
                     ours["rate"], limit["rate"], "rt/s", "ratio >= 0.7",
                     note=f"best of {self.settings.rounds} alternating rounds; {ours['count']:,} calls")
            self.add("query", f"list_sites, {n} connections: p50 latency", ours["p50"] * 1e6,
                     limit["p50"] * 1e6, "us")
            self.add("query", f"list_sites, {n} connections: p99 latency", ours["p99"] * 1e6,
                     limit["p99"] * 1e6, "us")
            self._listing_after_changes(dataset, self.settings.listing_changes)
            self._status()
        finally:
            echo.terminate()
            echo.wait(30)

    def _listing_after_changes(self, dataset, changes: int):
        """`list_datasets` with a pattern and limit=100 after a change (one new dataset each
        time), which no kept answer can serve: the sorted names follow the change and the
        search stops at the limit.  The CPU time of the daemon's event-loop thread per call
        (/proc/PID/task/PID/schedstat, read while the thread waits: 20 ms after the change's
        answer, for the work after a commit to end, and 1 ms after the call's), against the
        same call 20 ms later, answered from the kept answer (as idle before: the first
        call after a pause costs more than the next); medians."""
        pid, made = self.loaded.pid, []

        def timed(call) -> float:
            used = _thread_cpu(pid)
            call()
            time.sleep(0.001)
            return _thread_cpu(pid) - used

        with self.loaded.client() as client:
            for pattern in (f"/{dataset.name.split('/')[1]}/*", "*/MINIAOD"):
                def listing():
                    answer.update(client.call("list_datasets", pattern=pattern, limit=100))
                answer, after, kept = {}, [], []
                for _ in range(changes):
                    made.append(f"/BenchQuery/n{len(made)}/RAW")
                    client.call("inject", data={"dataset": [{"name": made[-1]}]})
                    time.sleep(0.02)
                    after.append(timed(listing))
                    time.sleep(0.02)
                    kept.append(timed(listing))
                self.add("query", f"list_datasets {pattern!r} limit=100 after a change: "
                                  f"daemon CPU", statistics.median(after) * 1e6,
                         statistics.median(kept) * 1e6, "us",
                         note=f"median of {changes} calls, each 20 ms after the injection of a "
                              f"new dataset, vs the same call 20 ms later (its kept answer): CPU "
                              f"of the event loop's thread; {len(answer['datasets'])} datasets "
                              f"answered (truncated: {answer['truncated']}) of "
                              f"{self.scale.datasets:,}")
            client.call("delete", data={"dataset": [{"name": name} for name in made]})

    def _status(self, calls: int = 200):
        """`status` (the inventory's counts among the rest): the event loop's CPU per call,
        as `_listing_after_changes` reads it; median."""
        pid, used = self.loaded.pid, []
        with self.loaded.client() as client:
            for _ in range(calls):
                before = _thread_cpu(pid)
                client.call("status")
                time.sleep(0.001)
                used.append(_thread_cpu(pid) - before)
        self.add("query", "status: daemon CPU per call", statistics.median(used) * 1e6, None,
                 "us", "ours <= 1000", note=f"median of {calls} calls; CPU of the event loop's "
                                       f"thread; {sum(self.counts.values()):,} objects")

    def _rounds(self, servers, method, params, connections, seconds):
        """The daemon and the echo (each a (socket, pid) of `servers`) in alternating
        rounds; the best round of each (the machine is shared: the best round is the one
        least disturbed), with the least CPU per call of any round."""
        rounds = [[], []]
        for _ in range(self.settings.rounds):
            for side, (path, pid) in zip(rounds, servers):
                side.append(self._load(path, pid, method, params, connections, seconds))
        return [{**max(side, key=itemgetter("rate")), "cpu": min(r["cpu"] for r in side)}
                for side in rounds]

    @staticmethod
    def _query_note(params, dataset) -> str:
        if isinstance(params, list):
            kept = ("more than the daemon keeps answers of (dynamod/methods/answers.py): "
                    "each is made afresh" if len(params) > ANSWERS else
                    "few enough that their answers are kept after the first round")
            return (f"; the first {len(params):,} datasets of the store, each asked in turn, "
                    f"{kept}; the echo is sent the same requests")
        if "name" in params:
            return (f"; one dataset with {len(dataset.blocks)} blocks, "
                    f"{len(dataset.replicas)} replicas, asked again and again: its kept "
                    f"answer, made again after each change")
        return ""

    def _typical_dataset(self):
        """A dataset of the usual shape: 8 blocks (the mean), 2 replicas."""
        for i in range(min(self.scale.datasets, 2000)):
            spec = self.gen.dataset(i)
            if len(spec.blocks) == min(8, self.scale.blocks_max) and len(spec.replicas) == 2:
                return spec
        return self.gen.dataset(0)

    def _load(self, path, pid, method, params, connections, seconds) -> dict:
        start = time.time() + 0.5 + 0.12 * connections
        outs = [self.path(f"load-{i}.out") for i in range(connections)]
        cpu = _cpu_seconds(pid)
        given = self.path("load-params.json")
        with open(given, "wb") as f:
            f.write(orjson.dumps(params))
        procs = [subprocess.Popen([sys.executable, "-m", "bench.load", path, method,
                                   f"@{given}", str(seconds), str(start), out],
                                  env=self.env, cwd=REPO)
                 for out in outs]
        for p in procs:
            if p.wait(seconds + 120) != 0:
                raise RuntimeError(f"load client failed ({p.returncode})")
        cpu = _cpu_seconds(pid) - cpu
        import array
        rate, count, calls, latencies = 0.0, 0, 0, array.array("d")
        for out in outs:
            with open(out, "rb") as f:
                head = orjson.loads(f.readline())
                latencies.frombytes(f.read())
            os.unlink(out)
            rate += head["count"] / head["elapsed"]
            count += head["count"]
            calls += head["count"] + head["warmup"]
        ordered = sorted(latencies)
        return {"rate": rate, "count": count, "cpu": cpu / calls,
                "p50": ordered[len(ordered) // 2],
                "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]}

    # -------------------------------------------------------------- apps
    def apps(self):
        self.log("== apps")
        trivial = self._script("trivial.py", TRIVIAL)
        dynamo = regular_install(self.path("client-venv"), REPO)
        rss = self.loaded.rss()
        self.app_start(dynamo, trivial, rss)
        walk = self._script("walk.py", WALK)
        started = time.perf_counter()
        result = self.loaded.tool("dynamo", walk, cwd=self.root)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"walk failed: {result.stderr}")
        out = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
        private = int(out["private"])
        self.add("apps", "private memory a read-only walk copies (vs parent RSS)", private, rss,
                 "B", "ratio <= 0.05", note=f"walked {int(out['objects']):,} objects in "
                           f"{float(out['seconds']):.1f} s{out.get('aborted', '')}; "
                           f"application wall {wall:.1f} s")
        self.walk_rss = rss
        self.held_snapshot_wal()

    def seal(self):
        """The seal alone: seal.seal() timed in children forked from a process that holds
        the inventory as the daemon holds it (bench/probes.py seal).  Run once the loaded
        daemon has stopped: the store admits one dynamod at a time (its lock file), and
        the probe opens it as the daemon does."""
        self.log("== seal")
        repeat = self.settings.seal_repeat
        result = self.probe("seal", self.store, repeat, self.synchronous)
        removed = result["removed"]
        kinds = {}
        for what in removed:
            kinds[what] = kinds.get(what, 0) + 1
        removed_text = ", ".join(f"{what}{f' x{n}' if n > 1 else ''}"
                                 for what, n in kinds.items())
        left = ", ".join(f"{what} ({perms})" for perms, what in result["left"]) or "none"
        self.add("apps", f"seal in the child, median of {repeat} forks", result["median"] * 1e6,
                 None, "us", "ours <= 1000",
                 note=f"dynamod.apps.seal.seal() timed inside each child (perf_counter around "
                      f"the call), forked from a coroutine of a running uvloop loop in a process "
                      f"that loaded the store with InventoryService.open (RSS "
                      f"{result['rss'] / 2**20:,.0f} MiB, loaded in "
                      f"{result['load_seconds']:.1f} s) and holds a read snapshot "
                      f"(StoreReader.hold()); goal: the issue's 'well under a millisecond at "
                      f"medium'; min {result['min'] * 1e6:,.0f} us, max "
                      f"{result['max'] * 1e6:,.0f} us; /proc/self/maps had "
                      f"{result['maps_lines']} lines, {len(result['shared_before'])} of them "
                      f"shared; reading it once (the seal reads it once) takes "
                      f"{result['maps_read_median'] * 1e6:,.0f} us in the child (median, "
                      f"read again after the seal); in the parent, per application: the "
                      f"snapshot's open and hold {result['snapshot_open_median'] * 1e6:,.0f} us, "
                      f"fork() {fmt(result['fork_median'], 's')} (medians)")
        self.add("apps", f"seal in the child, p90 of {repeat} forks", result["p90"] * 1e6, None,
                 "us", "ours <= 1000")
        self.add("apps", "seal: shared mappings removed per child", len(removed), None,
                 "mappings", note=f"removed: {removed_text}; left: {left}")

    def held_snapshot_wal(self):
        """What a running application's snapshot costs: the WAL while injections go on.

        The loaded daemon gets `wal_files` new files (datasets the store does not have,
        documents of `wal_files_per_doc` files through the real dynamo-inject, each its
        own transaction) three times: (A) with no application; (B) while a read-only
        application that waits for the end of its standard input holds its read
        transaction; (C) a tenth as many once it has ended.  After each, the -wal file's
        size and its frames of the current generation (those carrying the salts of its
        header: a reset starts a new generation from the file's start).  The injected
        datasets are deleted afterwards, so the store is as it was for what follows."""
        self.log("== held snapshot: WAL")
        n, per_doc = self.settings.wal_files, self.settings.wal_files_per_doc
        wal = self.store + "-wal"
        first = self.scale.datasets
        phases = {}
        for phase, files in (("A", n), ("B", n), ("C", max(per_doc, n // 10))):
            docs = self.generate("--documents", self.path(f"wal-{phase}"), "--files-per-doc",
                                 per_doc, "--max-files", files, "--first", first)["documents"]
            phases[phase] = {"docs": docs["paths"], "files": docs["counts"]["file"],
                             "first": first, "next": docs["next"]}
            first = docs["next"]

        def inject(phase):
            info = phases[phase]
            info["before"] = settled_wal_state(wal)
            started = time.perf_counter()
            result = self.loaded.tool("inject", "--json", *info["docs"])
            info["seconds"] = time.perf_counter() - started
            if result.returncode != 0:
                raise RuntimeError(f"dynamo-inject failed: {result.stderr[-2000:]}")
            info["after"] = settled_wal_state(wal)

        inject("A")
        hold = self._script("hold.py", HOLD)
        app = subprocess.Popen(self.loaded.tool_command("dynamo", hold), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=self.loaded.env, cwd=self.root)
        try:
            if app.stdout.readline().strip() != b"holding":
                raise RuntimeError(f"the holding application did not start: "
                                   f"{app.stderr.read().decode(errors='replace')[-2000:]}")
            held_from = time.perf_counter()
            inject("B")
            held_for = time.perf_counter() - held_from
        finally:
            # communicate() closes its standard input first: the script ends
            out, err = app.communicate(timeout=600)
        if app.returncode != 0 or b"released" not in out:
            raise RuntimeError(f"the holding application failed ({app.returncode}): "
                               f"{err.decode(errors='replace')[-2000:]}")
        inject("C")
        self._delete_datasets(phases["A"]["first"], phases["C"]["next"])
        for phase in phases.values():
            shutil.rmtree(os.path.dirname(phase["docs"][0]), ignore_errors=True)

        a, b, c = phases["A"], phases["B"], phases["C"]
        frame = b["after"]["frame"] or a["after"]["frame"] or 1
        same = b["before"]["salts"] == b["after"]["salts"]
        appended = b["after"]["frames"] - (b["before"]["frames"] if same else 0)
        per_file = appended * frame / b["files"]
        self.add("apps", f"WAL after {a['files']:,} injected files, no application running",
                 a["after"]["size"], None, "B",
                 note=f"{len(a['docs'])} documents of ~{per_doc:,} files through dynamo-inject "
                      f"into the loaded daemon in {a['seconds']:.1f} s; -wal before "
                      f"{fmt(a['before']['size'], 'B')}; at the end "
                      f"{a['after']['frames']:,} frames of the current generation, "
                      f"{_in_db(a['after'])} "
                      f"(checkpoint sequence {a['before']['sequence']} -> "
                      f"{a['after']['sequence']}"
                      + (": the WAL was reset, i.e. reused from its start, after SQLite's "
                         "automatic checkpoints)" if a["before"]["sequence"]
                         != a["after"]["sequence"] else
                         ": never reset, though checkpointed: a reset needs a commit at a "
                         "moment when no connection reads)"))
        self.add("apps", f"WAL after {b['files']:,} injected files while a read-only "
                         f"application holds its snapshot",
                 b["after"]["size"], a["after"]["size"], "B",
                 note=f"limit = the same injection with no application (the row above); "
                      f"{len(b['docs'])} documents in {b['seconds']:.1f} s (vs "
                      f"{a['seconds']:.1f} s); the application (a read-only `dynamo` script "
                      f"waiting for the end of its standard input) held its read transaction "
                      f"for {held_for:.1f} s; {appended:,} frames of {frame:,} B appended "
                      f"({'to the same generation' if same else 'to a new generation: the WAL was reset once, before they were written'}), "
                      f"checkpoint sequence {b['before']['sequence']} -> "
                      f"{b['after']['sequence']}; at the end {_in_db(b['after'])}")
        self.add("apps", "WAL growth per file injected while a snapshot is held", per_file,
                 None, "B/file",
                 note=f"{appended:,} frames x {frame:,} B / {b['files']:,} files "
                      f"= {appended * frame / 2**20:,.1f} MiB; "
                      f"{per_file * 1e6 / 2**30:,.2f} GiB per million files")
        reset = c["after"]["sequence"] != b["after"]["sequence"]
        self.add("apps", f"WAL after the application ended and {c['files']:,} more files "
                         f"were committed", c["after"]["size"], b["after"]["size"], "B",
                 note=f"limit = the WAL when the application ended (the row above); "
                      f"{len(c['docs'])} documents in {c['seconds']:.2f} s (at the rate of "
                      f"the first row {c['files'] * a['seconds'] / a['files']:.2f} s; the "
                      f"first commit after the application ended ran SQLite's checkpoint of "
                      f"the frames it held); "
                      + (f"checkpoint sequence {b['after']['sequence']} -> "
                         f"{c['after']['sequence']}: reset, {c['after']['frames']:,} frames "
                         f"({fmt(c['after']['frames'] * frame, 'B')}) in use at the start of "
                         f"the file ({_in_db(c['after'])}), " if reset else
                         f"no reset (checkpoint sequence {c['after']['sequence']}): "
                         f"{c['after']['frames']:,} frames in use ({_in_db(c['after'])}), ")
                      + "the file keeps its size up to the daemon's journal_size_limit "
                        "(64 MiB: a reset WAL larger than that is cut back to it); "
                        "SQLite's automatic PASSIVE checkpoint runs after a commit once the "
                        "WAL holds 1,000 pages; the injected datasets were then deleted again")
        self.wal_figures = phases

    def wal_after_stop(self):
        """The WAL once the daemon stopped (its last connection's close checkpoints it)."""
        wal = self.store + "-wal"
        self.note("WAL after the loaded daemon stopped: "
                  + (f"{fmt(os.path.getsize(wal), 'B')}" if os.path.exists(wal)
                     else "no -wal file (removed by the last connection's close)"))

    def _delete_datasets(self, first: int, end: int):
        """Remove the datasets number first..end-1 (and all they hold) in one document."""
        path = self.path("wal-delete.json")
        names = [self.gen.dataset_name(i) for i in range(first, end)]
        with open(path, "wb") as f:
            f.write(orjson.dumps({"dataset": [{"name": name} for name in names]}))
        result = self.loaded.tool("inject", "--delete", "--json", path)
        os.unlink(path)
        if result.returncode != 0:
            raise RuntimeError(f"deleting the injected datasets failed: {result.stderr[-2000:]}")

    def _script(self, name, text) -> str:
        path = self.path(name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        return path

    def _cli_ttfb(self, dynamo, script) -> float:
        """The `dynamo` command of a regular install: submit to the first byte on its
        standard output."""
        started = time.perf_counter()
        proc = subprocess.Popen([dynamo, script], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.loaded.env, cwd=self.root)
        first = proc.stdout.read(1)
        ttfb = time.perf_counter() - started
        out, err = proc.communicate(timeout=600)
        if not first or proc.returncode != 0:
            raise RuntimeError(f"dynamo {script} failed ({proc.returncode}): {err.decode()}")
        return ttfb

    def _socket_ttfb(self, script) -> float:
        """The same submission from this process (no client start-up): request sent to the
        first byte on the pipe given as the application's standard output."""
        with open(script) as f:
            source = f.read()
        r, w = os.pipe()
        null = os.open(os.devnull, os.O_RDWR)
        try:
            with self.loaded.client(timeout=600) as client:
                started = time.perf_counter()
                rid = client.send("run_application", {"script": source, "path": script,
                                                      "attach": True, "cwd": self.root})
                ttfb = None
                while True:
                    answer = client.receive()
                    if answer.get("id") != rid:
                        continue
                    if "event" in answer:
                        if answer["event"].get("event") == "send_fds":
                            socket.send_fds(client.sock, [b"F"], [null, w, null])
                            ready, _, _ = select.select([r], [], [], 600)
                            if not ready or not os.read(r, 1):
                                raise RuntimeError("no output from the application")
                            ttfb = time.perf_counter() - started
                        continue
                    if "error" in answer or answer["result"]["status"] != "done":
                        raise RuntimeError(f"application failed: {answer}")
                    break
        finally:
            for fd in (r, w, null):
                os.close(fd)
        return ttfb

    def app_start(self, dynamo, script, rss: int):
        """The start of an application against its limits, in alternating rounds (the
        machine may be shared, and its load changes): each round runs the `dynamo`
        command, the same submission from this process, a bare fork of a process as big
        as the daemon (a probe of its own) and `python3 -I -S -c pass`."""
        cli, direct, forks, bare = [], [], [], []
        for _ in range(self.settings.app_repeat):
            cli.append(self._cli_ttfb(dynamo, script))
            direct.append(self._socket_ttfb(script))
            result = self.probe("fork", rss, 1)
            forks.append(result["median"])
            bare.append(interpreter_start(1))
        median = statistics.median
        fork, python = median(forks), median(bare)
        self.add("apps", "application start: dynamo CLI submit -> first output byte",
                 median(cli), fork + python, "s", "ratio <= 2",
                 note=f"medians of {len(cli)} rounds, each: the `dynamo` command of a regular "
                      f"(non-editable) install in a virtual environment of its own, the "
                      f"socket submission below, and the limits: a bare fork of a "
                      f"{result['rss'] / 2**20:,.0f} MiB process (the daemon's "
                      f"{rss / 2**20:,.0f} MiB) whose child writes one byte "
                      f"({fmt(fork, 's')}) plus `python3 -I -S -c pass` ({fmt(python, 's')}); "
                      f"ours {', '.join(f'{t * 1000:.1f}' for t in cli)} ms")
        self.add("apps", "application start: socket submit (no client start-up) -> first byte",
                 median(direct), fork, "s", "ratio <= 3",
                 note=f"ours {', '.join(f'{t * 1000:.1f}' for t in direct)} ms; bare forks "
                      f"{', '.join(f'{t * 1000:.1f}' for t in forks)} ms")

    # --------------------------------------------------------- writeback
    def writeback(self):
        """Rounds of the write-back application alternate with rounds of the raw UPDATEs
        (on the same store, the daemon idle), so that both see the same machine; the
        medians are compared.  Each round writes values no earlier one wrote."""
        self.log("== writeback")
        count = min(self.settings.writeback, self.counts["blockreplicas"])
        script = self._script("writeback.py", WRITEBACK)
        auth = self.loaded.tool("exec_auth", "--executable", script, "--title", "bench-writeback")
        if auth.returncode != 0:
            raise RuntimeError(f"dynamo-exec-auth failed: {auth.stderr}")
        value = int(time.time())
        rounds, raw = [], []
        for number in range(self.settings.writeback_rounds):
            profile = self.profiled("the write-back application", self.loaded.pid) \
                if number == 0 else nullcontext()
            with profile:
                rounds.append(self._writeback_round(script, count, value + 2 * number))
            raw.append(self.probe("update", self.store, count, self.synchronous,
                                  value + 2 * number + 1)["seconds"])
        median = statistics.median
        last = rounds[-1]
        note = (f"{count:,} BlockReplica last_update changes; {len(rounds)} rounds of the "
                f"application alternating with {len(raw)} of the raw UPDATEs, medians "
                f"compared; per round, from the script's end: "
                f"{', '.join(f'{r[0]:.2f}' for r in rounds)} s; raw: "
                f"{', '.join(f'{r * 1000:.0f}' for r in raw)} ms; the script's updates alone "
                f"{median(r[2] for r in rounds):.2f} s; daemon: {last[3]}")
        self.add("writeback", f"write-back of {count:,} changes (application end -> "
                              f"committed)", median(r[0] for r in rounds), median(raw), "s",
                 "ratio <= 3", note=note)
        self.add("writeback", f"write-back of {count:,} changes end to end (the script's "
                              f"inventory.update() calls -> committed)",
                 median(r[1] for r in rounds), median(raw), "s", "ratio <= 4")
        loop = self.probe("script", self.store, count)
        self.note(f"the write-back script's loop in process (python -m bench.probes script "
                  f"STORE {count}; CPU, best of 3): the walk {loop['walk']:.3f} s, building "
                  f"each BlockReplica too {loop['build']:.3f} s, the whole loop with its "
                  f"inventory.update() calls {loop['script']:.3f} s")

    def _writeback_round(self, script, count: int, value: int) -> tuple:
        """(from the script's end, from its first update, the updates alone: seconds;
        the daemon's message)"""
        result = self.loaded.tool("dynamo", f"{script} {count} {value}", "--write-request",
                                  "--title", "bench-writeback", cwd=self.root)
        # `dynamo` returns once the application's record is final, which is after the
        # commit (its `ended` is stamped before: it is committed with the changes)
        returned = time.time()
        if result.returncode != 0:
            raise RuntimeError(f"write-back application failed: {result.stdout}{result.stderr}")
        out = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
        app = self.loaded.call("list_applications", limit=1)["applications"][0]
        if app["status"] != "done" or f"updated {count} blockreplicas" not in app["message"]:
            raise RuntimeError(f"write-back did not apply {count} changes: {app}")
        return (returned - float(out["end"]), returned - float(out["start"]),
                float(out["seconds"]), app["message"])

    # ------------------------------------------------------------ report
    def machine(self) -> dict:
        with open("/proc/meminfo") as f:
            mem = int(next(line for line in f if line.startswith("MemTotal")).split()[1]) * 1024
        import orjson as _orjson
        import uvloop
        return {"cores": os.cpu_count(), "memory": f"{mem / 2**30:.1f} GiB",
                "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
                "kernel": platform.release(), "uvloop": uvloop.__version__,
                "orjson": _orjson.__version__, "synchronous": self.synchronous,
                "load average": " ".join(f"{x:.2f}" for x in os.getloadavg())}

    def report(self) -> str:
        rows = [("figure", "ours", "limit", "ours/limit", "goal", "met", "gap")]
        for f in sorted(self.figures, key=lambda f: NAMES.index(f.section)):
            rows.append((f.name, fmt(f.ours, f.unit), fmt(f.limit, f.unit),
                         "-" if f.ratio is None else f"{f.ratio:.3g}",
                         f.goal or "-", {True: "yes", False: "NO", None: "-"}[f.met],
                         "-" if f.gap is None else f"{f.gap:.1f}x"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = []
        for i, r in enumerate(rows):
            lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
            if i == 0:
                lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)


def _commit() -> str:
    """The repository's HEAD (read only: no git command that writes runs here)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _thread_cpu(pid: int) -> float:
    """CPU seconds a process's main thread has run (schedstat, in nanoseconds; brought up
    to date when the thread stops running)."""
    with open(f"/proc/{pid}/task/{pid}/schedstat", "rb") as f:
        return int(f.read().split()[0]) / 1e9


def _mem_total() -> int:
    with open("/proc/meminfo") as f:
        return int(next(line for line in f if line.startswith("MemTotal")).split()[1]) * 1024


def wal_state(path: str) -> dict:
    """The -wal file as SQLite left it: its size, the checkpoint sequence of its header
    (a reset writes a new header: the sequence and the salts change) and how many
    frames from the start carry the header's salts (the frames of the current
    generation; those beyond are left from an earlier one).  From the WAL index
    (-shm, read as a plain file: no lock, nothing written): the frames the last
    commit left in the WAL (mxFrame) and how many of them the checkpoints have
    copied into the database (nBackfill)."""
    import struct
    state = {"size": 0, "frames": 0, "frame": 0, "sequence": None, "salts": None,
             "mx_frame": None, "backfilled": None}
    try:
        with open(path[:-len("-wal")] + "-shm", "rb") as shm:
            index = shm.read(136)
        if len(index) >= 100:
            state["mx_frame"] = struct.unpack_from("=I", index, 16)[0]
            state["backfilled"] = struct.unpack_from("=I", index, 96)[0]
    except FileNotFoundError:
        pass
    try:
        size = os.path.getsize(path)
        f = open(path, "rb")
    except FileNotFoundError:
        return state
    state["size"] = size
    with f:
        head = f.read(32)
        if len(head) < 32:
            return state
        _, _, page_size, sequence, salt1, salt2, _, _ = struct.unpack(">8I", head)
        frame = page_size + 24
        frames, offset = 0, 32
        while offset + frame <= size:
            f.seek(offset + 8)
            if struct.unpack(">2I", f.read(8)) != (salt1, salt2):
                break
            frames += 1
            offset += frame
    state.update(frames=frames, frame=frame, sequence=sequence, salts=[salt1, salt2])
    return state


def settled_wal_state(path: str, seconds: float = 10.0) -> dict:
    """wal_state once two readings 0.25 s apart agree: the daemon's own commits after an
    answer (the change log's housekeeping) are over."""
    state, deadline = wal_state(path), time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.25)
        again = wal_state(path)
        if again == state:
            break
        state = again
    return state


def _in_db(state: dict) -> str:
    """'copied into the database: N of M frames' from the WAL index, if it was read."""
    if state["mx_frame"] is None:
        return "WAL index not read"
    return f"{state['backfilled']:,} of its {state['mx_frame']:,} frames copied into the database"


def _warm(path):
    """Read the file once so that both sides of a comparison find it in the page cache."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


TRIVIAL = """print(len(inventory.datasets), flush=True)
"""

WALK = """# Walk every dataset, block and replica (read-only), then report the private memory
# this process holds: the pages it had to copy from the daemon (copy-on-write).
import time

started = time.perf_counter()
objects = 0
aborted = ""


def available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024


for site in inventory.sites.values():
    objects += 1
    seen = site.status
for i, dataset in enumerate(inventory.datasets.values()):
    if i % 2000 == 0 and available() < (2 << 30):
        aborted = f" (stopped after {i} datasets: less than 2 GiB of memory available)"
        break
    objects += 1
    seen = dataset.last_update
    for block in dataset.blocks:
        objects += 1
        seen = block.name, block.size
        for replica in block.replicas:
            objects += 1
            seen = replica.site, replica.size, replica.last_update
    for replica in dataset.replicas:
        objects += 1
        seen = replica.site, replica.growing
seconds = time.perf_counter() - started
fields = {}
with open("/proc/self/smaps_rollup") as f:
    for line in f:
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
print("objects", objects)
print("seconds", seconds)
print("private", fields["Private_Clean"] + fields["Private_Dirty"])
print("rss", fields["Rss"])
if aborted:
    print("aborted", aborted)
"""

HOLD = """# Hold a read-only application's snapshot until the end of standard input.
import sys

print("holding", flush=True)
sys.stdin.read()
print("released", flush=True)
"""



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=SCALES, default="small")
    parser.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME",
                        help=f"measure only these ({', '.join(NAMES)})")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--synchronous", default=Config().synchronous,
                        choices=("OFF", "NORMAL", "FULL", "EXTRA"), type=str.upper,
                        help="SQLite synchronous for the daemon and the raw limits "
                             "(default: the daemon's default)")
    parser.add_argument("--inject-files", type=int,
                        help="files the injection sends (0: the whole inventory)")
    parser.add_argument("--workdir", default="/tmp", help="where the temporary files go")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--profile", action="store_true",
                        help="sample the daemon with py-spy during the injection, start-up, "
                             "queries and write-back, and note where the time goes")
    args = parser.parse_args(argv)
    bench = Bench(args)
    machine = bench.machine()
    commit = _commit()
    started = time.perf_counter()
    bench.run()
    machine["load average at the end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    elapsed = time.perf_counter() - started
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"# dynamod benchmark, scale {args.scale} (seed {args.seed}), "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {elapsed:.0f} s")
    print(f"# command: {command}")
    print(f"# code: commit {commit} at the start (and the work tree as it was then)")
    print("# machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
    print()
    print(bench.report())
    print()
    for f in sorted(bench.figures, key=lambda f: NAMES.index(f.section)):
        if f.note:
            print(f"- {f.name}: {f.note}")
    for note in bench.notes:
        print(f"- {note}")
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps({"scale": args.scale, "seed": args.seed, "command": command,
                                  "commit": commit, "machine": machine, "seconds": elapsed,
                                  "figures": [asdict(x) for x in bench.figures],
                                  "notes": bench.notes}, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
