"""Load: many concurrent clients mixing queries, injections and applications; or an attack.

    python -m tests.reliability.load --clients 200 --seconds 60 [--seed N] [--json]
    python -m tests.reliability.load --attack --seconds 30 [--seed N] [--json]

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

`--attack` runs a daemon with the default limits (and a CA, so that `authenticate`
parses chains) for two phases of `--seconds` each, quiet then attacked.  Measured in
both: a bystander (uid 65533, unregistered, one connection) pinging every 10 ms,
the operator (root) injecting a dataset (commit included) and opening a new
connection to ping, every 50 ms.  The attacker is an unregistered account (uid 65534,
`attacker`): it opens every connection its account may hold and keeps most of them
idle with a half line just under the pre-identity limit; on the rest it sends 60 MiB
lines, a 25 MB PEM in `authenticate`, chains of 11 PEM blocks, chains of 10 real
certificates just under the line limit (parsed, then refused), pipelined refused
requests, half lines it abandons, and it keeps connecting past its limit.  Checked:
the bystander and root are never refused, the attacker never holds more than its
limit, the daemon's log stays small and holds no internal error.
"""

import argparse
import asyncio
import base64
import datetime
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for support

from support.daemon import EXAMPLES, Daemon, rss_kib  # noqa: E402
from support.randomness import SEED, SEED_VARIABLE  # noqa: E402
from support.seed import BLOCK, DS  # noqa: E402

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
    seed: int | None = None
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
        return {"clients": self.clients, "seconds": self.seconds, "seed": self.seed,
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
                 f"({s['requests_per_s']}/s) on {os.cpu_count()} cores, seed {s['seed']}",
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
    report = Report(clients, seconds, seed)
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


def run(clients: int, seconds: float, seed: int = SEED) -> Report:
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


# ------------------------------------------------------------------ the attack
ATTACKER, BYSTANDER = 65534, 65533   # unregistered accounts
PER_ACCOUNT = 64                     # the defaults the attack runs against
PRE_IDENTITY = 256 << 10
ACTIVE = 8                           # the attacker's connections that keep attacking
PEM_BLOCK = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


class Child:
    """A forked process as another uid: `main(*args)` under uvloop once `start` is called;
    its figures come back as JSON.  Forked before the driver's loop runs (a child of a
    running loop cannot start its own), and everything it needs is imported already."""

    def __init__(self, uid: int, main, *args):
        go_r, self.go = os.pipe()
        self.out, out_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            code = 1
            try:
                os.close(self.go)
                os.close(self.out)
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                if os.read(go_r, 1):
                    with os.fdopen(out_w, "wb") as out:
                        out.write(orjson.dumps(uvloop.run(main(*args))))
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(go_r)
        os.close(out_w)

    def start(self):
        os.write(self.go, b"g")

    async def result(self) -> dict:
        def collect():
            with os.fdopen(self.out, "rb") as out:
                data = out.read()
            os.waitpid(self.pid, 0)
            return orjson.loads(data) if data else {"failed": "the child died; see stderr"}
        os.close(self.go)
        return await asyncio.get_running_loop().run_in_executor(None, collect)


def percentiles(values: list) -> dict:
    values = sorted(values)
    if not values:
        return {"count": 0}
    return {"count": len(values), "p50_ms": round(values[len(values) // 2] * 1000, 2),
            "p99_ms": round(values[min(len(values) - 1, int(len(values) * 0.99))] * 1000, 2),
            "max_ms": round(values[-1] * 1000, 2)}


async def exchange(reader, writer, line: bytes) -> dict | None:
    """Send a line, read one answer; None when the daemon closed the connection."""
    try:
        writer.write(line)
        answer = await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT)
    except (ConnectionError, BrokenPipeError):
        return None
    return orjson.loads(answer) if answer else None


async def bystander(path: str, seconds: float) -> dict:
    """uid 65533: one connection, a ping every 10 ms; refusals are counted."""
    reader, writer = await asyncio.open_unix_connection(path)
    latencies, refused = [], []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        sent = time.perf_counter()
        answer = await exchange(reader, writer, b'{"id": 1, "method": "ping"}\n')
        latencies.append(time.perf_counter() - sent)
        if answer != {"id": 1, "result": {"pong": True}}:
            refused.append(answer)
            reader, writer = await asyncio.open_unix_connection(path)
        await asyncio.sleep(0.01)
    writer.close()
    return {"latencies": latencies, "refused": refused[:10]}


async def attacker(path: str, seconds: float, chain: str, seed: int) -> dict:
    """uid 65534: every connection its account may hold, and every way of sending too much."""
    counts, until, rng = Counter(), time.monotonic() + seconds, random.Random(seed)
    held, half = [], b'{"id": 1, "method": "ping", "params": {"x": "' + b"y" * (PRE_IDENTITY - 2048)
    while True:   # idle connections up to the account's limit, each with a half line
        reader, writer = await asyncio.open_unix_connection(path)
        answer = await exchange(reader, writer, b'{"id": 1, "method": "ping"}\n') or {}
        if "result" not in answer:
            counts[f"refused at {len(held)} open: {answer.get('error', {}).get('reason')}"] += 1
            writer.close()
            break
        writer.write(half)
        held.append(writer)
    for writer in held[-ACTIVE:]:   # their slots go to the attacks below
        writer.close()
    del held[-ACTIVE:]
    await asyncio.sleep(0.2)

    async def connection():
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(path, limit=64 << 20)
                return reader, writer
            except OSError:
                counts["connect failed"] += 1
                await asyncio.sleep(0.01)

    async def oversized(line: bytes, label: str):
        """Send the line until the daemon cuts it (asyncio then drops the too_large
        answer waiting to be read: tests/test_admission.py reads it)."""
        while time.monotonic() < until:
            reader, writer = await connection()
            outcome = "sent whole"
            try:
                for offset in range(0, len(line), 1 << 20):
                    writer.write(line[offset:offset + (1 << 20)])
                    await writer.drain()
            except (ConnectionError, BrokenPipeError):
                outcome = "cut short"
            counts[f"{label}: {outcome}"] += 1
            writer.close()

    async def pipelined(lines: list, label: str, challenge=False):
        reader, writer = await connection()
        while time.monotonic() < until:
            batch = ([b'{"id": 0, "method": "auth_challenge"}\n'] if challenge else []) + lines
            writer.write(b"".join(batch))
            for _ in batch:
                line = await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT)
                if not line:   # refused or closed: connect again
                    counts[f"{label}: connection closed"] += 1
                    writer.close()
                    reader, writer = await connection()
                    break
                answer = orjson.loads(line)
                if answer["id"] != 0:
                    counts[f"{label}: {answer.get('error', {}).get('code')}"] += 1
        writer.close()

    async def churn():
        """More connections (admitted only while one of the attacks above lets go of its)."""
        while time.monotonic() < until:
            reader, writer = await connection()
            answer = await exchange(reader, writer, b'{"id": 1, "method": "ping"}\n') or {}
            refused = answer.get("error", {}).get("reason", "closed")
            counts["one more connection: " + ("admitted" if "result" in answer else
                                              f"refused ({refused})")] += 1
            writer.close()

    async def abandon():
        while time.monotonic() < until:
            reader, writer = await connection()
            writer.write(half[:rng.randrange(1, len(half))])
            await asyncio.sleep(0.01)
            writer.transport.abort()
            counts["half lines abandoned"] += 1

    huge = b'{"id": 1, "method": "list_sites", "params": {"pattern": "' + b"x" * (60 << 20)
    pem = orjson.dumps({"id": 1, "method": "authenticate", "params": {
        "chain": PEM_BLOCK * (25_000_000 // len(PEM_BLOCK)), "signature": "AAAA"}}) + b"\n"
    eleven = [orjson.dumps({"id": i, "method": "authenticate", "params": {
        "chain": PEM_BLOCK * 11, "signature": "AAAA"}}) + b"\n" for i in range(1, 51)]
    ten = [orjson.dumps({"id": 1, "method": "authenticate", "params": {
        "chain": chain, "signature": base64.b64encode(b"x" * 64).decode()}}) + b"\n"]
    refused = [b'{"id": %d, "method": "list_sites"}\n' % i for i in range(1, 201)]
    await asyncio.gather(oversized(huge, "60 MiB line"), oversized(pem, "25 MB PEM"),
                         pipelined(eleven, "11 PEM blocks"),
                         pipelined(ten, "10 certificates, 230 KB", challenge=True),
                         pipelined(refused, "refused requests"), churn(), churn(), abandon())
    for writer in held:
        writer.close()
    return {"held": len(held), "counts": dict(counts)}


def chain_under_the_limit() -> str:
    """10 real certificates (EC, each with a 16 KiB extension): a chain `authenticate`
    must parse before it can refuse it, about 230 KB."""
    certificates = []
    for i in range(10):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"attacker {i}")])
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                       .public_key(key.public_key()).serial_number(i + 1)
                       .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                       .add_extension(x509.UnrecognizedExtension(
                           x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), os.urandom(16 << 10)),
                           False)
                       .sign(key, hashes.SHA256()))
        certificates.append(certificate.public_bytes(serialization.Encoding.PEM).decode())
    return "".join(certificates)


def ca_directory(path: Path):
    """A CA of its own, so that auth_challenge answers and chains get parsed."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Load CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
          .public_key(key.public_key()).serial_number(1).not_valid_before(now)
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
          .sign(key, hashes.SHA256()))
    path.mkdir()
    (path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))


async def operator(daemon: Daemon, seconds: float, phase: str, figures: dict):
    """root: every 50 ms, inject a dataset (3 blocks of 2 files and a replica; commit
    included) and ping on a new connection."""
    report = Report(1, seconds)
    until = time.monotonic() + seconds

    async def inject():
        round_ = 0
        while time.monotonic() < until:
            round_ += 1
            await conn.call("inject", data=dataset_document(f"/attack/{phase}/{round_}/RAW", 3, 2))
            await asyncio.sleep(0.05)

    async def connect_and_ping():
        while time.monotonic() < until:
            started = time.perf_counter()
            fresh = await Connection.open(daemon.socket, report, "operator, new connection")
            await fresh.call("ping")
            report.latencies["connect + ping"].append(time.perf_counter() - started)
            await fresh.close()
            await asyncio.sleep(0.05)

    conn = await Connection.open(daemon.socket, report, "operator")
    await asyncio.gather(inject(), connect_and_ping())
    await conn.close()
    for kind in ("inject", "connect + ping"):
        figures[f"root {kind}"] = percentiles(report.latencies[kind])
    figures["root refused"] = report.unexpected[:10]


async def sample_daemon(daemon: Daemon, samples: list, connections: list, until: float):
    """VmRSS, and the connections open (`status`, as root), every 100 ms."""
    report = Report(1, 0)
    monitor = await Connection.open(daemon.socket, report, "monitor")
    while time.monotonic() < until:
        samples.append(rss_kib(daemon.process.pid))
        connections.append((await monitor.call("status"))["connections"])
        await asyncio.sleep(0.1)
    await monitor.close()


async def drive_attack(daemon: Daemon, seconds: float, children: dict) -> dict:
    pid, figures = daemon.process.pid, {}
    for phase in ("quiet", "attack"):
        for child in children[phase]:
            child.start()
        samples, connections, log_before = [], [], daemon.log_path.stat().st_size
        phase_figures = figures[phase] = {"rss_mib_before": round(rss_kib(pid) / 1024, 1)}
        await asyncio.gather(operator(daemon, seconds, phase, phase_figures),
                             sample_daemon(daemon, samples, connections,
                                           time.monotonic() + seconds))
        results = [await child.result() for child in children[phase]]
        phase_figures["bystander ping"] = percentiles(results[0].get("latencies", []))
        phase_figures["bystander refused"] = results[0].get("refused", results[0])
        if phase == "attack":
            phase_figures["attacker"] = results[1]
        phase_figures["rss_mib_peak"] = round(max(samples) / 1024, 1)
        phase_figures["connections_peak"] = max(connections)
        phase_figures["log_bytes"] = daemon.log_path.stat().st_size - log_before
    return figures


def run_attack(seconds: float, seed: int = SEED) -> dict:
    """Start a dynamod with the default limits, measure quiet then attacked; the figures
    and what went wrong (`unexpected`)."""
    root = Path(tempfile.mkdtemp(prefix="dyn-attack-", dir="/tmp"))
    os.chmod(root, 0o755)
    ca_directory(root / "ca")
    config = root / "dynamod.toml"
    config.write_text(f'[auth]\nca_path = "{root / "ca"}"\n')
    daemon = Daemon(root / "state", str(root / "dynamod.sock"), ["--config", str(config)]).start()
    try:
        for example in ("mydynamo-storage-sites.json", "mydynamo-data.json"):
            daemon.call("inject", data=json.loads((EXAMPLES / example).read_text()))
        chain = chain_under_the_limit()
        children = {"quiet": [Child(BYSTANDER, bystander, daemon.socket, seconds)],
                    "attack": [Child(BYSTANDER, bystander, daemon.socket, seconds),
                               Child(ATTACKER, attacker, daemon.socket, seconds, chain, seed)]}
        figures = uvloop.run(drive_attack(daemon, seconds, children))
        log = daemon.log()
    finally:
        code = daemon.stop()
        shutil.rmtree(root, ignore_errors=True)
    unexpected = [] if code == 0 else [f"dynamod exited with {code}"]
    for phase, found in figures.items():
        unexpected += [f"{phase}: bystander got {a}" for a in found["bystander refused"]]
        unexpected += [f"{phase}: root got {a}" for a in found["root refused"]]
    attack = figures["attack"]
    if attack["connections_peak"] > PER_ACCOUNT + 4:   # the bystander's, root's two, status
        unexpected.append(f"{attack['connections_peak']} connections open at once: the "
                          f"attacker held more than {PER_ACCOUNT}")
    counts = attack["attacker"].get("counts", {})
    if f"refused at {PER_ACCOUNT} open: account" not in counts:
        unexpected.append(f"the attacker's connections were not held to {PER_ACCOUNT}: {counts}")
    unexpected += [f"a line was read whole: {what}" for what in counts if "sent whole" in what]
    if "internal error" in log or "Traceback" in log:
        unexpected.append("the daemon's log has an internal error:\n" + log[-2000:])
    figures["unexpected"], figures["seed"] = unexpected, seed
    return figures


def attack_text(figures: dict) -> str:
    lines = [f"attack: default limits, {os.cpu_count()} cores, seed {figures['seed']}",
             f"{'phase':<8}{'kind':<28}{'count':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}"]
    for phase in ("quiet", "attack"):
        found = figures[phase]
        for kind in ("bystander ping", "root inject", "root connect + ping"):
            f = found.get(kind, {})
            lines.append(f"{phase:<8}{kind:<28}{f.get('count', 0):>8}{f.get('p50_ms', '-'):>10}"
                         f"{f.get('p99_ms', '-'):>10}{f.get('max_ms', '-'):>10}")
        lines.append(f"{phase:<8}daemon VmRSS {found['rss_mib_before']} MiB before, "
                     f"{found['rss_mib_peak']} MiB peak; {found['connections_peak']} "
                     f"connections at most; log grew {found['log_bytes']} bytes")
    attack = figures["attack"]["attacker"]
    lines.append(f"attacker: held {attack.get('held')} idle connections with a half line")
    lines += [f"  {what}: {n}" for what, n in sorted(attack.get("counts", {}).items())]
    lines.append(f"unexpected: {len(figures['unexpected'])}")
    lines += [f"  {u}" for u in figures["unexpected"][:20]]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.load",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=SEED,
                        help=f"random seed (default: ${SEED_VARIABLE}, else a random one)")
    parser.add_argument("--attack", action="store_true",
                        help="an unregistered account attacks; a bystander and root measure")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.attack:
        figures = run_attack(args.seconds, args.seed)
        print(json.dumps(figures, indent=1) if args.json else attack_text(figures))
        return 1 if figures["unexpected"] else 0
    report = run(args.clients, args.seconds, args.seed)
    print(json.dumps(report.summary(), indent=1) if args.json else report.text())
    return 1 if report.unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
