"""Load: many concurrent clients mixing queries, injections and applications.

    python -m tests.reliability.load --clients 200 --seconds 60 [--seed N] [--json]

It starts its own dynamod (seeded with the walk-through's sites and dataset) and
runs the clients for a fixed time, each on its own connection of the real socket:

- readers (most of them): ping, status, list_sites, list_datasets, get_dataset,
  get_block, lfn_to_pfn, one at a time or pipelined in bursts of up to eight;
- writers: inject a dataset of their own (3 blocks of 2 files, a complete replica),
  then delete it, checking the counts of both;
- appliers: `run_application` without attach (a read-only script), then poll it to
  its end; and one client in a hundred runs the real `dynamo` (its standard streams
  passed over the socket);
- pests: hostile lines (not JSON, unknown methods, wrong parameters) whose error
  codes they know;
- quitters: send an injection (whole, or cut short) and hang up without reading;
- one flooder: sends requests and never reads an answer.

Every answer must carry an id its client is waiting for, once, and be a result
(an error only where a pest expects that error).  Afterwards: each quitter's
dataset is all there or not at all, in memory and in the SQLite file; the
connection count falls back to its baseline; the inventory's counts in memory
equal the file's; the flooder was stopped (the daemon stopped reading it); the
log holds no internal error.  It prints p50/p99 latency per kind, requests per
second, the daemon's VmRSS (baseline, peak, end) and how often a connect found the
accept queue full (and was retried, as a blocking client would wait), and exits 1 on
a violation.
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for conftest

from conftest import EXAMPLES, Daemon  # noqa: E402

DS = "pandaf/010/DoubleMuon+Run2017F-31Mar2018-v1+MINIAOD"
BLOCK = "48dbe0c6-36fa-11e8-a5e2-ac1f6b05e848"
ANSWER_TIMEOUT = 60.0  # seconds: a liveness bound, not a latency target
APP_SCRIPT = ("files = sum(len(b.files) for d in inventory.datasets.values() for b in d.blocks)\n"
              "print(inventory.sites['T2_US_XYZ'].host)\n")
PESTS = [  # (line, expected error code, the id its answer carries: None when unreadable)
    (b'{"id": %d, "method": "nope"}', "method_not_found", True),
    (b'{"id": %d, "method": "list_sites", "params": {"pattern": 5}}', "invalid_params", True),
    (b'{"id": %d, "method": "inject", "params": {"data": {"site": [{"name": "a\\u0001"}]}}}',
     "invalid_value", True),
    (b'{"id": %d, "method": "get_dataset", "params": {"name": "../../etc/passwd"}}',
     "not_found", True),
    (b'{"id": %d, "method": "ping", "params": {"x": 1}}', "invalid_params", True),
    (b'{"id": %d, "method": "ping", "id": 1}', "parse_error", False),
    (b'{"id": %d, "method": "pi\xffng"}', "parse_error", False),
    (b'{"id": %d, "method": "ping"', "parse_error", False),
    (b'{"id": %d, "method": "ping", "extra": 1}', "invalid_request", True),
]


@dataclass
class Report:
    clients: int
    seconds: float
    latencies: dict = field(default_factory=lambda: defaultdict(list))
    unexpected: list = field(default_factory=list)
    rss_kib: list = field(default_factory=list)       # samples during the run
    baseline_kib: int = 0
    end_kib: int = 0
    flooder_bytes: int = 0
    flooder_answers_pending: bool = True
    quitters: dict = field(default_factory=dict)       # dataset -> "whole" | "cut"
    quitters_applied: int = 0
    backlog_waits: int = 0                             # connects retried: accept queue full
    connections_baseline: int = 0
    connections_end: int = 0
    elapsed: float = 0.0

    def fail(self, what: str):
        if len(self.unexpected) < 1000:
            self.unexpected.append(what)

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def percentiles(self) -> dict:
        figures = {}
        for kind, values in sorted(self.latencies.items()):
            values = sorted(values)
            figures[kind] = {"count": len(values),
                             "p50_ms": round(values[len(values) // 2] * 1000, 2),
                             "p99_ms": round(values[min(len(values) - 1,
                                                        int(len(values) * 0.99))] * 1000, 2),
                             "max_ms": round(values[-1] * 1000, 2)}
        return figures

    def summary(self) -> dict:
        return {"clients": self.clients, "seconds": self.seconds,
                "requests": self.requests, "requests_per_s": round(self.requests / self.elapsed),
                "latency": self.percentiles(), "unexpected": self.unexpected,
                "rss_mib": {"baseline": round(self.baseline_kib / 1024, 1),
                            "peak": round(max(self.rss_kib, default=0) / 1024, 1),
                            "end": round(self.end_kib / 1024, 1)},
                "flooder_kib": self.flooder_bytes // 1024,
                "quitters": {"requests": len(self.quitters), "applied": self.quitters_applied},
                "connections": {"baseline": self.connections_baseline,
                                "end": self.connections_end,
                                "connects_retried_for_a_full_backlog": self.backlog_waits}}

    def text(self) -> str:
        s = self.summary()
        lines = [f"load: {s['clients']} clients x {s['seconds']:g} s, {s['requests']} requests "
                 f"({s['requests_per_s']}/s) on {os.cpu_count()} cores",
                 f"{'kind':<22}{'count':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}"]
        for kind, f in s["latency"].items():
            lines.append(f"{kind:<22}{f['count']:>8}{f['p50_ms']:>10}{f['p99_ms']:>10}"
                         f"{f['max_ms']:>10}")
        rss = s["rss_mib"]
        lines += [f"daemon VmRSS: baseline {rss['baseline']} MiB, peak {rss['peak']} MiB, "
                  f"end {rss['end']} MiB",
                  f"flooder: {s['flooder_kib']} KiB sent before the daemon stopped reading it",
                  f"quitters: {s['quitters']['requests']} requests abandoned, "
                  f"{s['quitters']['applied']} applied whole, none in part",
                  f"connections: baseline {s['connections']['baseline']}, "
                  f"end {s['connections']['end']}; connects retried while the accept queue "
                  f"was full: {self.backlog_waits}",
                  f"unexpected: {len(s['unexpected'])}"]
        lines += [f"  {u}" for u in s["unexpected"][:20]]
        return "\n".join(lines)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def connect(path: str, report: Report):
    """A connection, retried while the daemon's accept queue is full: a blocking client
    waits in connect() then, a non-blocking one gets EAGAIN.  (uvloop accepts one
    connection per loop iteration, so a saturated daemon accepts a few dozen a second.)"""
    while True:
        try:
            return await asyncio.open_unix_connection(path, limit=64 << 20)
        except BlockingIOError:
            report.backlog_waits += 1
            await asyncio.sleep(0.05)


class Connection:
    """One client connection: requests with ids, answers matched to them."""

    def __init__(self, reader, writer, report: Report, name: str):
        self.reader, self.writer, self.report, self.name = reader, writer, report, name
        self.next_id = 0

    @classmethod
    async def open(cls, path: str, report: Report, name: str) -> "Connection":
        reader, writer = await connect(path, report)
        return cls(reader, writer, report, name)

    async def answer(self) -> dict:
        line = await asyncio.wait_for(self.reader.readline(), ANSWER_TIMEOUT)
        if not line:
            raise ConnectionError("the daemon closed the connection")
        return orjson.loads(line)

    async def calls(self, requests: list) -> list:
        """Send (method, params) pipelined; the results in order, each answer timed."""
        sent, ids = time.perf_counter(), []
        payload = b""
        for method, params in requests:
            self.next_id += 1
            ids.append(self.next_id)
            payload += orjson.dumps({"id": self.next_id, "method": method,
                                     "params": params}) + b"\n"
        self.writer.write(payload)
        waiting = dict(zip(ids, requests))
        answers = {}
        while waiting:
            answer = await self.answer()
            request = waiting.pop(answer.get("id"), None)
            if request is None:
                self.report.fail(f"{self.name}: answer for id {answer.get('id')!r}, "
                                 f"waiting for {sorted(waiting)}")
                continue
            self.report.latencies[request[0]].append(time.perf_counter() - sent)
            if "error" in answer:
                self.report.fail(f"{self.name}: {request[0]} {request[1]}: {answer['error']}")
            answers[answer["id"]] = answer.get("result")
        return [answers.get(i) for i in ids]

    async def call(self, method: str, **params):
        return (await self.calls([(method, params)]))[0]

    async def close(self):
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


# ------------------------------------------------------------------- the clients
def reader_requests(rng: random.Random) -> list:
    choices = [("ping", {}), ("status", {}), ("list_sites", {"pattern": "T*"}),
               ("list_datasets", {"limit": 10}), ("get_dataset", {"name": DS}),
               ("get_block", {"name": f"{DS}#{BLOCK}"}),
               ("lfn_to_pfn", {"site": "T2_US_XYZ", "lfn": "/store/x.root"})]
    return [rng.choice(choices) for _ in range(rng.choice((1, 1, 1, 4, 8)))]


async def reader(conn: Connection, rng, until):
    while time.monotonic() < until:
        await conn.calls(reader_requests(rng))


def dataset_document(name: str, blocks: int, files: int) -> dict:
    return {"dataset": [{"name": name, "blocks": [
        {"name": f"b{b}", "files": [{"name": f"{name}/b{b}/f{f}", "size": 1000 + f}
                                    for f in range(files)]} for b in range(blocks)]}],
        "datasetreplica": [{"dataset": name, "site": "T2_US_XYZ",
                            "blockreplicas": [{"block": f"b{b}"} for b in range(blocks)]}]}


async def writer(conn: Connection, rng, until, index: int):
    expected = {"datasets": 1, "blocks": 3, "files": 6, "datasetreplicas": 1,
                "blockreplicas": 3}
    round_ = 0
    while time.monotonic() < until:
        round_ += 1
        name = f"/load/w{index}/r{round_}/RAW"
        created = await conn.call("inject", data=dataset_document(name, 3, 2))
        if created is not None and created["created"] != expected:
            conn.report.fail(f"{conn.name}: inject {name} created {created['created']}")
        deleted = await conn.call("delete", data={"dataset": [{"name": name}]})
        if deleted is not None and deleted["deleted"] != expected:
            conn.report.fail(f"{conn.name}: delete {name} deleted {deleted['deleted']}")


async def applier(conn: Connection, rng, until):
    while time.monotonic() < until:
        started = time.perf_counter()
        app = await conn.call("run_application", script=APP_SCRIPT, attach=False,
                              title="load")
        while app is not None and app["status"] in ("new", "waiting", "run"):
            await asyncio.sleep(0.05)
            app = await conn.call("poll_application", id=app["id"])
        if app is None:
            continue
        conn.report.latencies["application (to its end)"].append(
            time.perf_counter() - started)
        if (app["status"], app["exit_code"]) != ("done", 0):
            conn.report.fail(f"{conn.name}: application {app['id']} {app['status']}: "
                             f"{app['message']}")
        await asyncio.sleep(rng.uniform(0.05, 0.2))


async def dynamo_cli(socket_path: str, script: Path, report: Report, until, expected: str):
    env = {**os.environ, "DYNAMO_SOCKET": socket_path}
    while time.monotonic() < until:
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dynamoclient.dynamo", str(script), env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), ANSWER_TIMEOUT)
        report.latencies["dynamo CLI (process)"].append(time.perf_counter() - started)
        if process.returncode != 0 or out.decode() != expected:
            report.fail(f"dynamo CLI: exit {process.returncode}, {out!r}, {err[-300:]!r}")


async def pest(conn: Connection, rng, until):
    while time.monotonic() < until:
        template, code, keeps_id = rng.choice(PESTS)
        conn.next_id += 1
        sent = time.perf_counter()
        conn.writer.write(template % conn.next_id + b"\n")
        answer = await conn.answer()
        conn.report.latencies["refused (pest)"].append(time.perf_counter() - sent)
        error = answer.get("error") or {}
        if error.get("code") != code or answer.get("id") != (conn.next_id if keeps_id else None):
            conn.report.fail(f"{conn.name}: {template!r} answered {answer}")


async def quitter(path: str, report: Report, rng, until, index: int):
    """Send an injection, whole or cut, and hang up at once."""
    round_ = 0
    while time.monotonic() < until:
        round_ += 1
        name = f"/quit/q{index}/r{round_}/RAW"
        line = orjson.dumps({"id": 1, "method": "inject",
                             "params": {"data": dataset_document(name, 2, 2)}}) + b"\n"
        whole = rng.random() < 0.5
        reader_, writer_ = await connect(path, report)
        writer_.write(line if whole else line[:rng.randrange(1, len(line) - 1)])
        report.quitters[name] = "whole" if whole else "cut"
        writer_.close()
        try:
            await writer_.wait_closed()
        except OSError:
            pass
        await asyncio.sleep(rng.uniform(0.1, 0.5))


async def flooder(path: str, report: Report, until):
    """Requests without end, answers never read: the daemon must stop reading it."""
    reader_, writer_ = await connect(path, report)
    chunk = b"".join(orjson.dumps({"id": i, "method": "list_methods"}) + b"\n"
                     for i in range(500))
    try:
        while time.monotonic() < until:
            writer_.write(chunk)
            report.flooder_bytes += len(chunk)
            try:
                await asyncio.wait_for(writer_.drain(), max(0.0, until - time.monotonic()))
            except asyncio.TimeoutError:
                break
    finally:
        writer_.transport.abort()


async def sample_memory(pid: int, report: Report, until):
    while time.monotonic() < until:
        report.rss_kib.append(rss_kib(pid))
        await asyncio.sleep(0.25)


# ------------------------------------------------------------------ the checks
def on_disk(database: str, name: str) -> tuple:
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return db.execute(
            "SELECT (SELECT count(*) FROM blocks b JOIN datasets d ON b.dataset_id = d.id "
            "        WHERE d.name = ?1),"
            "       (SELECT count(*) FROM files f JOIN blocks b ON f.block_id = b.id "
            "        JOIN datasets d ON b.dataset_id = d.id WHERE d.name = ?1),"
            "       (SELECT count(*) FROM dataset_replicas r JOIN datasets d "
            "        ON r.dataset_id = d.id WHERE d.name = ?1),"
            "       (SELECT count(*) FROM block_replicas r JOIN blocks b ON r.block_id = b.id "
            "        JOIN datasets d ON b.dataset_id = d.id WHERE d.name = ?1)",
            (name,)).fetchone()
    finally:
        db.close()


def disk_counts(database: str) -> dict:
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        tables = {"sites": "sites", "groups": "groups", "datasets": "datasets",
                  "blocks": "blocks", "files": "files", "datasetreplicas": "dataset_replicas",
                  "blockreplicas": "block_replicas"}
        return {k: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for k, t in tables.items()}
    finally:
        db.close()


async def check_quitters(conn: Connection, daemon: Daemon, report: Report):
    """Each abandoned injection is all there or not at all, in memory and on disk."""
    whole = (2, 4, 1, 2)
    for name, how in report.quitters.items():
        conn.next_id += 1
        conn.writer.write(orjson.dumps({"id": conn.next_id, "method": "get_dataset",
                                        "params": {"name": name}}) + b"\n")
        answer = await conn.answer()
        if "result" in answer:
            d = answer["result"]
            memory = (len(d["blocks"]), d["num_files"], len(d["replicas"]),
                      sum(len(r["blockreplicas"]) for r in d["replicas"]))
        else:
            memory = (0, 0, 0, 0)
        disk = on_disk(daemon.database, name)
        if memory != disk or memory not in (whole, (0, 0, 0, 0)):
            report.fail(f"quitter {name} ({how}): {memory} in memory, {disk} on disk")
        if how == "cut" and memory != (0, 0, 0, 0):
            report.fail(f"quitter {name}: a cut request was applied")
        report.quitters_applied += memory == whole


async def drive(daemon: Daemon, clients: int, seconds: float, seed: int, workdir: Path) -> Report:
    report = Report(clients, seconds)
    rng = random.Random(seed)
    pid = daemon.process.pid
    monitor = await Connection.open(daemon.socket, report, "monitor")
    report.connections_baseline = (await monitor.call("status"))["connections"]
    report.baseline_kib = rss_kib(pid)
    script = workdir / "count.py"
    script.write_text(APP_SCRIPT)
    expected_cli = "t2-storage.xyz.edu\n"

    n_cli = max(1, clients // 100)
    n_apps = max(1, clients // 20)
    n_writers = max(1, clients // 5)
    n_pests = max(1, clients // 25)
    n_quitters = max(1, clients // 25)
    n_readers = max(1, clients - n_cli - n_apps - n_writers - n_pests - n_quitters - 1)

    connections = []
    for i in range(n_readers + n_writers + n_apps + n_pests):
        connections.append(await Connection.open(daemon.socket, report, f"client {i}"))
    started = time.monotonic()
    until = started + seconds
    tasks = [sample_memory(pid, report, until), flooder(daemon.socket, report, until)]
    roles = ([reader] * n_readers + [writer] * n_writers + [applier] * n_apps
             + [pest] * n_pests)
    for i, (role, conn) in enumerate(zip(roles, connections)):
        client_rng = random.Random(rng.random())
        args = (conn, client_rng, until, i) if role is writer else (conn, client_rng, until)
        tasks.append(role(*args))
    for i in range(n_quitters):
        tasks.append(quitter(daemon.socket, report, random.Random(rng.random()), until, i))
    for _ in range(n_cli):
        tasks.append(dynamo_cli(daemon.socket, script, report, until, expected_cli))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    report.elapsed = time.monotonic() - started
    for task, result in zip(tasks, results):
        if isinstance(result, BaseException):
            report.fail(f"{task.__name__} failed: {result!r}")
    for conn in connections:
        await conn.close()

    await check_quitters(monitor, daemon, report)
    deadline = time.monotonic() + 30
    while True:  # liveness: closed connections are forgotten
        report.connections_end = (await monitor.call("status"))["connections"]
        if report.connections_end <= report.connections_baseline or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    if report.connections_end > report.connections_baseline:
        report.fail(f"connections: {report.connections_end} open after the run, "
                    f"{report.connections_baseline} before")
    memory = (await monitor.call("status"))["inventory"]
    disk = disk_counts(daemon.database)
    if memory != disk:
        report.fail(f"memory {memory} differs from disk {disk}")
    report.end_kib = rss_kib(pid)
    await monitor.close()
    if report.flooder_bytes >= 64 << 20:
        report.fail(f"the daemon read {report.flooder_bytes} bytes from a client that reads "
                    f"no answer")
    log = daemon.log()
    if "internal error" in log or "Traceback" in log:
        report.fail("the daemon's log has an internal error:\n" + log[-2000:])
    return report


def run(clients: int, seconds: float, seed: int = 1) -> Report:
    """Start a seeded dynamod, drive the load, stop it; the report of the run."""
    root = Path(tempfile.mkdtemp(prefix="dyn-load-", dir="/tmp"))
    os.chmod(root, 0o755)
    daemon = Daemon(root / "state", str(root / "dynamod.sock")).start()
    try:
        for example in ("mydynamo-storage-sites.json", "mydynamo-data.json"):
            daemon.call("inject", data=json.loads((EXAMPLES / example).read_text()))
        return uvloop.run(drive(daemon, clients, seconds, seed, root))
    finally:
        code = daemon.stop()
        shutil.rmtree(root, ignore_errors=True)
        if code != 0:
            raise RuntimeError(f"dynamod exited with {code}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.load",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    report = run(args.clients, args.seconds, args.seed)
    print(json.dumps(report.summary(), indent=1) if args.json else report.text())
    return 1 if report.unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
