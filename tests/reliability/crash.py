"""Crash consistency: SIGKILL a busy dynamod at random moments, then check what survived.

    python -m tests.reliability.crash --cycles 50 [--seed N] [--workers 4]
                                      [--synchronous FULL] [--keep]

Every cycle, client threads inject and delete without pause: new sites (one to
three per request), datasets of one to four blocks of up to 60 files with a
replica, more replicas of earlier datasets, site updates, and deletions of whole
datasets, blocks and sites.  In some cycles a read/write application (a script
authorized for the purpose) creates several datasets and deletes one.  At a
random moment the daemon is killed with SIGKILL (in application cycles the
application is first SIGKILLed, killed through `kill_application`, let finish,
or left running), restarted, and checked:

- every acknowledged request is there, and nothing else is: each request
  touches its own uniquely named objects, so their state must be the one the
  acknowledged requests give, and the request each client had in flight at the
  kill is either all there or not at all (a half-applied one is a violation);
  an application's changes likewise (and its record should say `done`, and a
  `kill_application` should not have answered `killed`, exactly when they are
  there: a disagreement is counted and shown, not a violation);
- PRAGMA integrity_check and foreign_key_check pass, and the inventory loaded
  from the file keeps its consistency rules (`Inventory.problems`);
- every object keeps its id across the restart, and no id is given twice;
- in some cycles a second daemon is started on the same database (another socket):
  it must refuse at once, naming the first one's pid, while the first serves on;
- in some cycles the daemon's address space is limited a few MiB above what it
  uses before the kill: it may stop itself (fail-stop, status 70) or refuse
  requests, but never die otherwise, and the checks below hold all the same;
- in some cycles a thread submits asynchronous applications without pause: every
  application id the daemon answered is still known after the restart, with the
  record it was answered for (never a stranger's), and no id is given again;
- the daemon's memory equals the file (`rows.all_rows` of both), after each
  restart and, in some cycles, while it serves (clients paused);
- the daemon writes the snapshot of its column tables whenever it has been idle
  for 0.1 s (dynamod/inventory/snapshot.py), and in some cycles (`--quiet-kills`,
  a fraction) the clients pause before the kill, which then lands before, while or
  after a snapshot is written: the restart uses it when it is current (counted),
  and the checks above hold either way.

It prints a summary and exits 1 on any violation.
"""

import argparse
import copy
import hashlib
import os
import random
import re
import shutil
import signal
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for support

from dynamoclient.connection import Client, ConnectionFailed, RemoteError  # noqa: E402
from support.daemon import Daemon, fresh_directory, write_config  # noqa: E402
from support.randomness import SEED, SEED_VARIABLE  # noqa: E402

from . import snapshot  # noqa: E402

SNAPSHOT_IDLE = 0.1   # seconds: the daemon's snapshot_idle (snapshot_interval 0)
SEED_SITES = ("T1_SEED_A", "T2_SEED_B", "T2_SEED_C", "T3_SEED_D")
SEED_VIEW = {"host": "seed.example.org", "backend": "davs://seed.example.org/store",
             "status": "ready"}
GROUP = "CrashOps"
APP_TITLE = "crash-writer"
APP_SITE = SEED_SITES[0]
APP_SCRIPT = """\
import sys, time
from dynamod.executable import inventory, Dataset, Block, File, DatasetReplica, BlockReplica

token, count, nfiles, pause, victim = sys.argv[1:]
if victim:
    inventory.delete(inventory.datasets[victim])
for i in range(int(count)):
    name = f"/app/{token}/D{i}/RAW"
    inventory.update(Dataset(name, status="valid"))
    for b in ("b0", "b1"):
        inventory.update(Block(b, name))
        for j in range(int(nfiles)):
            inventory.update(File(f"/store/app/{token}/{i}/{b}/f{j}.root", f"{name}#{b}",
                                  size=1000 + j))
    inventory.update(DatasetReplica(name, "%s"))
    for b in ("b0", "b1"):
        inventory.update(BlockReplica(f"{name}#{b}", "%s"))
    time.sleep(float(pause))
print("done")
""" % (APP_SITE, APP_SITE)
ACTIVE = ("new", "waiting", "run")


# ------------------------------------------------------------------ views
def site_view(site) -> dict:
    return {"host": site.host, "backend": site.backend, "status": site.status}


def dataset_view(dataset) -> dict:
    """What a request can say about a dataset, in a form the model builds too."""
    return {"status": dataset.status,
            "blocks": {b.name: {f.lfn: f.size for f in b.files_by_lfn.values()}
                       for b in dataset.blocks},
            "replicas": {r.site.name: {"growing": r.growing, "group": r.group.name,
                                       "blocks": {br.block.name: _held(br)
                                                  for br in r.block_replicas}}
                         for r in dataset.replicas}}


def _held(replica):
    return None if replica.file_ids is None else sorted(f.lfn for f in replica.files())


def views(inventory) -> dict:
    """(kind, name) -> view of every site and dataset."""
    found = {("site", n): site_view(s) for n, s in inventory.sites.items()}
    found.update((("dataset", n), dataset_view(d)) for n, d in inventory.datasets.items())
    return found


def owner(key) -> str:
    """The namespace a site or dataset belongs to: a client (w0, w1...), app, or ? (none)."""
    kind, name = key
    if kind == "site":
        return name.split("_")[1] if name.startswith("CRASH_") else "?"
    if name.startswith("/crash/"):
        return name.split("/")[2]
    return "app" if name.startswith("/app/") else "?"


# ------------------------------------------------------------------ model
@dataclass
class Op:
    """One request (or one application run) and the state it leaves its objects in."""
    kind: str
    method: str
    doc: dict
    after: dict          # (kind, name) -> view, None: absent


@dataclass
class Namespace:
    """The objects one client (or the application) owns, as acknowledged so far."""
    name: str
    state: dict = field(default_factory=dict)
    inflight: Op | None = None
    acked: list = field(default_factory=list)
    refused: list = field(default_factory=list)
    idle: threading.Event = field(default_factory=threading.Event)

    def apply(self, op: Op):
        for key, view in op.after.items():
            if view is None:
                self.state.pop(key, None)
            else:
                self.state[key] = view

    def owned(self, kind) -> list:
        return sorted(name for k, name in self.state if k == kind)


def _replica(rnd, dataset, site, blocks, growing) -> tuple[dict, dict]:
    group = rnd.choice([None, GROUP])
    entries, held = [], {}
    for bname, files in blocks.items():
        entry = {"block": bname}
        if len(files) > 1 and rnd.random() < 0.4:
            entry["files"] = held[bname] = sorted(rnd.sample(sorted(files),
                                                             rnd.randint(1, len(files) - 1)))
        else:
            held[bname] = None
        entries.append(entry)
    doc = {"dataset": dataset, "site": site, "growing": growing, "blockreplicas": entries}
    if group:
        doc["group"] = group
    return doc, {"growing": growing, "group": group, "blocks": held}


def new_dataset(ns, rnd, tag) -> Op:
    name = f"/crash/{ns.name}/{tag}/RAW"
    blocks, entries = {}, []
    for i in range(rnd.randint(1, 4)):
        bname = f"b{i}"
        files = {f"/store/crash/{ns.name}/{tag}/{bname}/f{j}.root": rnd.randint(1, 5 * 10**9)
                 for j in range(rnd.choice([1, 2, 10, 60]))}
        blocks[bname] = files
        entry = {"name": bname, "files": [{"name": lfn, "size": s} for lfn, s in files.items()]}
        if rnd.random() < 0.5:
            entry.update(size=sum(files.values()), num_files=len(files))
        entries.append(entry)
    status = rnd.choice(["valid", "production"])
    doc = {"dataset": [{"name": name, "status": status, "blocks": entries}]}
    view = {"status": status, "blocks": blocks, "replicas": {}}
    if rnd.random() < 0.7:
        site = rnd.choice(SEED_SITES)
        replica_doc, view["replicas"][site] = _replica(rnd, name, site, blocks, False)
        doc["datasetreplica"] = [replica_doc]
    return Op("new_dataset", "inject", doc, {("dataset", name): view})


def add_replica(ns, rnd, name) -> Op | None:
    view = ns.state["dataset", name]
    free = [s for s in SEED_SITES if s not in view["replicas"]]
    if not free:
        return None
    site = rnd.choice(free)
    after = copy.deepcopy(view)
    doc, after["replicas"][site] = _replica(rnd, name, site, view["blocks"], rnd.random() < 0.5)
    return Op("add_replica", "inject", {"datasetreplica": [doc]}, {("dataset", name): after})


def delete_block(ns, rnd, name) -> Op | None:
    view = ns.state["dataset", name]
    if len(view["blocks"]) < 2:
        return None
    bname = rnd.choice(sorted(view["blocks"]))
    after = copy.deepcopy(view)
    del after["blocks"][bname]
    for replica in after["replicas"].values():
        replica["blocks"].pop(bname, None)
    doc = {"dataset": [{"name": name, "blocks": [{"name": bname}]}]}
    return Op("delete_block", "delete", doc, {("dataset", name): after})


def new_sites(ns, rnd, tag) -> Op:
    after, entries = {}, []
    for i in range(rnd.randint(1, 3)):
        name = f"CRASH_{ns.name}_{tag}_{i}"
        view = {"host": f"se{i}.{tag}.example.org", "backend": f"root://se{i}.{tag}//store",
                "status": rnd.choice(["ready", "waitroom", "unknown"])}
        entries.append({"name": name, **view})
        after["site", name] = view
    return Op("new_sites", "inject", {"site": entries}, after)


def update_site(ns, rnd, name) -> Op:
    view = dict(ns.state["site", name])
    view["status"] = rnd.choice([s for s in ("ready", "waitroom", "morgue", "unknown")
                                 if s != view["status"]])
    view["host"] = f"moved{rnd.randint(0, 10**6)}.example.org"
    doc = {"site": [{"name": name, "status": view["status"], "host": view["host"]}]}
    return Op("update_site", "inject", doc, {("site", name): view})


def next_op(ns, rnd, tag) -> Op:
    datasets, sites = ns.owned("dataset"), ns.owned("site")
    roll = rnd.random()
    if datasets and roll < 0.12 + min(0.3, len(datasets) / 150):
        name = rnd.choice(datasets)
        return Op("delete_dataset", "delete", {"dataset": [{"name": name}]},
                  {("dataset", name): None})
    roll = rnd.random()
    if datasets and roll < 0.2:
        op = add_replica(ns, rnd, rnd.choice(datasets))
        if op:
            return op
    if datasets and roll < 0.3:
        op = delete_block(ns, rnd, rnd.choice(datasets))
        if op:
            return op
    if sites and roll < 0.45:
        name = rnd.choice(sites)
        if rnd.random() < 0.3 + min(0.6, len(sites) / 100):
            return Op("delete_site", "delete", {"site": [{"name": name}]}, {("site", name): None})
        return update_site(ns, rnd, name)
    if roll < 0.6:
        return new_sites(ns, rnd, tag)
    return new_dataset(ns, rnd, tag)


def app_op(token, count, nfiles, victim) -> Op:
    """What APP_SCRIPT leaves behind when its changes are applied."""
    after = {("dataset", victim): None} if victim else {}
    for i in range(count):
        blocks = {b: {f"/store/app/{token}/{i}/{b}/f{j}.root": 1000 + j for j in range(nfiles)}
                  for b in ("b0", "b1")}
        after["dataset", f"/app/{token}/D{i}/RAW"] = {
            "status": "valid", "blocks": blocks,
            "replicas": {APP_SITE: {"growing": False, "group": None,
                                    "blocks": {"b0": None, "b1": None}}}}
    return Op("application", "run_application", {}, after)


# ------------------------------------------------------------------ the run
@dataclass
class Summary:
    cycles: int = 0
    acknowledged: int = 0
    found: int = 0
    refused: int = 0
    inflight_applied: int = 0
    inflight_absent: int = 0
    partial: int = 0
    apps: int = 0
    apps_applied: int = 0
    apps_absent: int = 0
    app_kills: dict = field(default_factory=dict)
    app_disagreements: list = field(default_factory=list)
    running_checks: int = 0
    submitted: int = 0
    submitted_found: int = 0
    second_daemons: int = 0
    pressured: int = 0
    fail_stops: int = 0
    quiet_kills: int = 0
    snapshot_starts: int = 0
    objects: dict = field(default_factory=dict)
    violations: list = field(default_factory=list)
    seconds: float = 0.0

    def text(self) -> str:
        kills = ", ".join(f"{k} {n}" for k, n in sorted(self.app_kills.items())) or "none"
        inflight = self.inflight_applied + self.inflight_absent + self.partial
        objects = ", ".join(f"{n} {k}" for k, n in self.objects.items())
        return "\n".join([
            f"cycles (SIGKILL + restart): {self.cycles} in {self.seconds:.1f} s",
            f"requests acknowledged: {self.acknowledged}, found after restart: {self.found}",
            f"requests refused with an error answer (nothing applied): {self.refused}",
            f"requests in flight at the kill: {inflight} (all applied {self.inflight_applied}, "
            f"none applied {self.inflight_absent}, partial {self.partial})",
            f"read/write applications: {self.apps} ({kills}); changes all there "
            f"{self.apps_applied}, none there {self.apps_absent}; application records or "
            f"answers that disagree with the inventory: {len(self.app_disagreements)}",
            *(f"  - {d}" for d in self.app_disagreements[:10]),
            f"second daemons on the same database: {self.second_daemons}, all refused",
            f"cycles under an address-space limit: {self.pressured}, of which the daemon "
            f"stopped itself (fail-stop, status 70): {self.fail_stops}",
            f"applications submitted (acknowledged ids): {self.submitted}, known with their "
            f"own record after the restart: {self.submitted_found}",
            f"memory = file checks while serving: {self.running_checks}, after each restart: "
            f"{self.cycles}",
            f"kills after the clients paused: {self.quiet_kills}; restarts from the "
            f"snapshot: {self.snapshot_starts} (the others from rows: it was stale)",
            f"inventory at the end: {objects}",
            f"violations: {len(self.violations)}",
            *(f"  - {v}" for v in self.violations[:50]),
        ])


class CrashRun:
    def __init__(self, root: Path, seed: int, workers: int, synchronous: str, log=print,
                 quiet_kills: float = 0.3):
        self.rnd = random.Random(seed)
        self.log = log
        self.quiet_kills = quiet_kills
        write_config(root / "dynamod.toml",
                     {"daemon": {"snapshot_idle": SNAPSHOT_IDLE, "snapshot_interval": 0}})
        args = ["--synchronous", synchronous, "--log-level", "INFO",
                "--config", str(root / "dynamod.toml")]
        self.daemon = Daemon(root / "state", str(root / "dynamod.sock"), args)
        self.clients = [Namespace(f"w{i}") for i in range(workers)]
        self.app = Namespace("app")
        self.summary = Summary()
        self.ids = {}                        # (kind, name) -> id at the last check
        self.used_ids = {}                   # kind -> every id seen
        self.stopping = threading.Event()
        self.pausing = threading.Event()
        self.app_pid = None
        self.submitted = {}                  # application id -> the title it was given

    # -------------------------------------------------------------- setup
    def start(self):
        self.daemon.start()
        self.daemon.call("inject", data={"site": [{"name": s, **SEED_VIEW} for s in SEED_SITES],
                                         "group": [{"name": GROUP}]})
        self.daemon.call("authorize_script", title=APP_TITLE,
                         checksum=hashlib.sha256(APP_SCRIPT.encode()).hexdigest())
        self.check("start")

    # -------------------------------------------------------------- clients
    def _client(self, ns: Namespace, rnd: random.Random, cycle: int):
        try:
            client = Client(self.daemon.socket, timeout=120)
        except (ConnectionFailed, OSError):
            ns.idle.set()
            return
        with client:
            seq = 0
            while not self.stopping.is_set():
                if self.pausing.is_set():
                    ns.idle.set()
                    time.sleep(0.005)
                    continue
                ns.idle.clear()
                seq += 1
                op = next_op(ns, rnd, f"c{cycle}s{seq}")
                ns.inflight = op
                try:
                    client.call(op.method, data=op.doc)
                except RemoteError as exc:
                    ns.refused.append(f"{op.kind}: {exc}")
                    ns.inflight = None
                    continue
                except (ConnectionFailed, OSError):
                    break
                ns.apply(op)
                ns.acked.append(op)
                ns.inflight = None
        ns.idle.set()

    def _submitter(self, cycle: int):
        """Submit asynchronous applications until the kill; keep the ids answered."""
        try:
            client = Client(self.daemon.socket, timeout=120)
        except (ConnectionFailed, OSError):
            return
        with client:
            n = 0
            while not self.stopping.is_set():
                if self.pausing.is_set():
                    time.sleep(0.005)
                    continue
                n += 1
                title = f"submitted-c{cycle}-{n}"
                try:
                    record = client.call("run_application", script="pass\n", title=title,
                                         attach=False)
                except (ConnectionFailed, OSError, RemoteError):
                    return
                self.submitted[record["id"]] = title
                time.sleep(0.005)

    def _check_submitted(self, when: str):
        for app_id, title in self.submitted.items():
            self.summary.submitted += 1
            try:
                record = self.daemon.call("poll_application", id=app_id)
            except RemoteError as exc:
                self.violation(f"{when}: application {app_id} was answered, then lost: {exc}")
                continue
            if record["title"] != title:
                self.violation(f"{when}: application {app_id} was answered for {title!r}, "
                               f"its record is {record['title']!r}")
                continue
            self.summary.submitted_found += 1
        if self.submitted:
            fresh = self.daemon.call("run_application", script="pass\n", attach=False)["id"]
            if fresh <= max(self.submitted):
                self.violation(f"{when}: application id {fresh} given again")
        self.submitted = {}

    def _second_daemon(self, cycle: int):
        """Another dynamod on the same database must refuse, naming the holder."""
        import subprocess

        other = self.daemon.state_dir.parent / f"second-{cycle}"
        done = subprocess.run(
            [sys.executable, "-m", "dynamod", "--state-dir", str(other), "--socket",
             str(other / "d.sock"), "--database", self.daemon.database],
            capture_output=True, text=True, timeout=60)
        self.summary.second_daemons += 1
        pid = self.daemon.process.pid
        if done.returncode != 1 or f"in use by another dynamod (pid {pid}" not in done.stderr:
            self.violation(f"cycle {cycle}: a second daemon on the same database was not "
                           f"refused (exit {done.returncode}): {done.stderr.strip()[-300:]}")
        shutil.rmtree(other, ignore_errors=True)

    def _pressure(self):
        """Limit the daemon's address space to a few MiB above what it uses."""
        import resource

        pid = self.daemon.process.pid
        with open(f"/proc/{pid}/statm") as statm:
            used = int(statm.read().split()[0]) * resource.getpagesize()
        margin = self.rnd.choice([1, 2, 4, 8, 16]) << 20
        resource.prlimit(pid, resource.RLIMIT_AS, (used + margin, resource.RLIM_INFINITY))
        self.summary.pressured += 1

    def _quiet(self, rnd: random.Random):
        """Pause the clients (and the submitter) and let the daemon sit idle a moment
        before the kill: past SNAPSHOT_IDLE after its last commit (the applications
        submitted last end meanwhile) it writes its snapshot; the kill may land before,
        while or after it does."""
        self.pausing.set()
        for ns in self.clients:
            ns.idle.wait(60)
        if self.summary.snapshot_starts == 0:   # until one restart from the snapshot, after
            self._snapshot_current()            # it, however busy the machine
        self.summary.quiet_kills += 1
        time.sleep(rnd.uniform(0.0, 10 * SNAPSHOT_IDLE))

    def _snapshot_current(self, timeout: float = 10.0):
        """Until the store's snapshot is of its last commit (written now, or before the
        clients paused if nothing was committed since); a daemon short of memory (a
        cycle under an address-space limit) may not write it: then the kill goes on."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with sqlite3.connect(f"file:{self.daemon.database}?mode=ro", uri=True) as db:
                stamp = db.execute("SELECT c.counter, s.counter FROM commits c LEFT JOIN "
                                   "snapshot_stamp s").fetchone()
            if stamp[0] == stamp[1]:
                return
            time.sleep(0.02)

    def _check_while_serving(self):
        """Pause the clients, compare memory with the file, resume."""
        self.pausing.set()
        for ns in self.clients:
            ns.idle.wait(60)
        memory, disk = snapshot.memory(self.daemon), snapshot.disk(self.daemon.database)
        for problem in snapshot.differences(memory, disk):
            self.violation(f"while serving, memory differs from the file: {problem}")
        self._check_ids(disk, "while serving")
        self.summary.running_checks += 1
        self.pausing.clear()

    # ---------------------------------------------------------- application
    def _application(self, cycle: int) -> tuple[int, Op]:
        """Start the writer, then SIGKILL it, kill it through the daemon, let it finish, or
        leave it running for the daemon's SIGKILL; records which happened."""
        rnd = self.rnd
        count, nfiles, pause = rnd.randint(2, 6), rnd.choice([5, 20, 50]), rnd.uniform(0.02, 0.12)
        victims = self.app.owned("dataset")
        victim = rnd.choice(victims) if victims and rnd.random() < 0.6 else ""
        op = app_op(f"c{cycle}", count, nfiles, victim)
        self.app.inflight = op
        record = self.daemon.call("run_application", script=APP_SCRIPT, path="crash_writer.py",
                                  args=[f"c{cycle}", str(count), str(nfiles), f"{pause:.3f}",
                                        victim], title=APP_TITLE, write=True, attach=False)
        app_id, self.app_pid = record["id"], None
        self.summary.apps += 1
        plan = rnd.choice(["daemon", "sigkill", "kill_application", "finish"])
        time.sleep(rnd.uniform(0.0, count * pause * 1.2 + 0.1))
        record = self.daemon.call("poll_application", id=app_id)
        self.app_pid = record["pid"]
        how = "finished before the daemon's SIGKILL"
        if record["status"] in ACTIVE:
            how = "running at the daemon's SIGKILL"
            if plan == "sigkill" and record["status"] == "run":
                how = "SIGKILLed"
                try:
                    os.kill(record["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
            elif plan == "kill_application":
                how = "killed by kill_application"
                answer = self.daemon.call("kill_application", id=app_id)
            elif plan == "finish":
                how = "finished before the daemon's SIGKILL"
        self.summary.app_kills[how] = self.summary.app_kills.get(how, 0) + 1
        if how != "running at the daemon's SIGKILL":
            record = self._wait_app(app_id)
            if record["status"] == "done":
                self.app.apply(op)
            if how == "killed by kill_application" and answer["killed"] \
                    and record["status"] != "killed":
                self._disagreement(f"cycle {cycle}: kill_application answered killed, yet "
                                   f"application {app_id} ended {record['status']}: "
                                   f"{record['message']}")
            self.app.inflight = None
            time.sleep(rnd.uniform(0.0, 0.3))
        return app_id, op

    def _wait_app(self, app_id, timeout=60.0) -> dict:
        """The record once the application has ended (a kill says `killed` at once)."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.daemon.call("poll_application", id=app_id)
            if record["ended"] is not None or time.monotonic() > deadline:
                return record
            time.sleep(0.02)

    # -------------------------------------------------------------- a cycle
    def cycle(self, number: int):
        rnd = self.rnd
        for ns in self.clients:
            ns.acked, ns.inflight = [], None
            ns.idle.clear()
        self.app.acked = []
        self.stopping.clear()
        threads = [threading.Thread(target=self._client, args=(ns, random.Random(rnd.random()),
                                                               number), daemon=True)
                   for ns in self.clients]
        if rnd.random() < 0.5:
            threads.append(threading.Thread(target=self._submitter, args=(number,),
                                            daemon=True))
        for thread in threads:
            thread.start()
        application = None
        time.sleep(rnd.uniform(0.05, 0.8))
        if rnd.random() < 0.25:
            self._check_while_serving()
            time.sleep(rnd.uniform(0.0, 0.5))
        if rnd.random() < 0.2:
            self._second_daemon(number)
        if rnd.random() < 0.4:
            application = self._application(number)
        else:
            time.sleep(rnd.uniform(0.0, 0.8))
        if rnd.random() < 0.2:
            self._pressure()
            time.sleep(rnd.uniform(0.2, 1.5))
        if rnd.random() < self.quiet_kills:
            self._quiet(rnd)
        ended = self.daemon.process.poll()
        if ended == 70:
            self.summary.fail_stops += 1
        elif ended is not None:
            self.violation(f"cycle {number}: the daemon died by itself with status {ended}")
        self.daemon.kill9()
        self.stopping.set()
        for thread in threads:
            thread.join(120)
        self.pausing.clear()
        if self.app_pid:
            try:
                os.kill(self.app_pid, signal.SIGKILL)  # the orphaned writer, if still alive
            except ProcessLookupError:
                pass
        try:
            self.daemon.start()
        except RuntimeError as exc:
            last = " | ".join(str(exc).strip().splitlines()[-5:])
            self.violation(f"cycle {number}: the daemon did not start again: {last}")
            raise
        self.summary.cycles += 1
        started = re.findall(r"inventory loaded from .* \((rows|snapshot of commit \d+)\) in ",
                             self.daemon.log())
        self.summary.snapshot_starts += bool(started) and started[-1] != "rows"
        self.check(f"cycle {number}", application)

    # -------------------------------------------------------------- checks
    def violation(self, text: str):
        self.summary.violations.append(text)
        self.log(f"VIOLATION: {text}")

    def check(self, when: str, application=None):
        disk = snapshot.disk(self.daemon.database)
        memory = snapshot.memory(self.daemon)
        for error in disk.integrity:
            self.violation(f"{when}: integrity: {error}")
        for problem in disk.problems:
            self.violation(f"{when}: inconsistent inventory in the file: {problem}")
        for problem in snapshot.differences(memory, disk):
            self.violation(f"{when}: after the restart, memory differs from the file: {problem}")
        self._check_ids(disk, when)
        actual = views(disk.inventory)
        for site in SEED_SITES:
            if actual.pop(("site", site), None) != SEED_VIEW:
                self.violation(f"{when}: seed site {site} changed or lost")
        by_owner = {}
        for key, view in actual.items():
            by_owner.setdefault(owner(key), {})[key] = view
        for ns in [*self.clients, self.app]:
            self._check_namespace(when, ns, by_owner.pop(ns.name, {}))
        for name, objects in by_owner.items():
            self.violation(f"{when}: objects nobody created: {sorted(objects)[:5]}")
        if application is not None:
            self._check_app_record(when, *application)
        self._check_submitted(when)
        self.summary.objects = disk.inventory.counts()

    def _check_namespace(self, when, ns: Namespace, actual: dict):
        bad = set()
        op, ns.inflight = ns.inflight, None
        if op is not None:
            got = {k: actual.get(k) for k in op.after}
            before = {k: ns.state.get(k) for k in op.after}
            if got == op.after:
                ns.apply(op)
                self._count_inflight(ns, True)
            elif got == before:
                self._count_inflight(ns, False)
            else:
                self.summary.partial += 1
                changed = [k for k in op.after if got[k] != op.after[k] and got[k] != before[k]]
                self.violation(f"{when}: {ns.name}: {op.kind} half-applied: {changed[:3]} "
                               f"match neither before nor after")
                bad.update(op.after)
                for key, view in got.items():
                    ns.apply(Op("seen", "", {}, {key: view}))
        for key in sorted(set(actual) | set(ns.state)):
            expected, found = ns.state.get(key), actual.get(key)
            if expected != found:
                what = "lost" if found is None else "unexpected" if expected is None else "differs"
                self.violation(f"{when}: {ns.name}: {key[0]} {key[1]} {what}")
                bad.add(key)
                ns.apply(Op("seen", "", {}, {key: found}))
        if ns is not self.app:
            self.summary.acknowledged += len(ns.acked)
            self.summary.found += sum(1 for o in ns.acked if not bad & set(o.after))
            self.summary.refused += len(ns.refused)
            for refusal in ns.refused[:3]:
                self.log(f"{when}: {ns.name}: refused: {refusal}")
            ns.refused = []

    def _count_inflight(self, ns, applied: bool):
        if ns is self.app:
            return  # counted with its record
        if applied:
            self.summary.inflight_applied += 1
        else:
            self.summary.inflight_absent += 1

    def _check_app_record(self, when, app_id, op):
        """The record of the application must agree with what it left in the inventory."""
        record = self.daemon.call("poll_application", id=app_id)
        applied = all(self.app.state.get(k) == v for k, v in op.after.items())
        if applied:
            self.summary.apps_applied += 1
        else:
            self.summary.apps_absent += 1
        if (record["status"] == "done") != applied:
            self._disagreement(f"{when}: application {app_id} is {record['status']} "
                               f"({record['message']}) but its changes are "
                               f"{'there' if applied else 'absent'}")

    def _disagreement(self, text: str):
        self.summary.app_disagreements.append(text)
        self.log(f"DISAGREEMENT: {text}")

    def _check_ids(self, disk, when):
        ids = disk.ids()
        for key, old in self.ids.items():
            new = ids.get(key)
            if new is not None and new != old:
                self.violation(f"{when}: {key[0]} {key[1]} changed id {old} -> {new}")
        for key, new in ids.items():
            if key not in self.ids:
                used = self.used_ids.setdefault(key[0], set())
                if new in used:
                    self.violation(f"{when}: {key[0]} {key[1]} reuses id {new}")
                used.add(new)
        self.ids = ids


def run(cycles: int, seed: int = SEED, workers: int = 4, synchronous: str = "FULL",
        keep: bool = False, log=print, quiet_kills: float = 0.3) -> Summary:
    root = fresh_directory("dyn-crash-")
    log(f"crash run: {cycles} cycles, seed {seed}, {workers} clients, synchronous {synchronous},"
        f" in {root}")
    started = time.monotonic()
    crash = CrashRun(root, seed, workers, synchronous, log, quiet_kills)
    try:
        crash.start()
        for number in range(1, cycles + 1):
            try:
                crash.cycle(number)
            except RuntimeError:
                break  # the daemon did not start again: a violation, already counted
            s = crash.summary
            log(f"cycle {number}: acknowledged {s.acknowledged}, found {s.found}, in flight "
                f"applied/absent/partial {s.inflight_applied}/{s.inflight_absent}/{s.partial}, "
                f"violations {len(s.violations)}, {time.monotonic() - started:.1f} s")
    finally:
        crash.stopping.set()
        crash.daemon.stop()
        crash.summary.seconds = time.monotonic() - started
        if keep or crash.summary.violations:
            log(f"kept {root} (daemon log: {crash.daemon.log_path})")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return crash.summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.crash",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=50, help="kill cycles (default 50)")
    parser.add_argument("--seed", type=int, default=SEED,
                        help=f"random seed (default: ${SEED_VARIABLE}, else a random one)")
    parser.add_argument("--workers", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--synchronous", default="FULL", choices=("OFF", "NORMAL", "FULL", "EXTRA"),
                        type=str.upper, help="the daemon's --synchronous (default FULL)")
    parser.add_argument("--keep", action="store_true", help="keep the state directory")
    parser.add_argument("--quiet-kills", type=float, default=0.3,
                        help="the fraction of cycles whose kill comes after the clients paused "
                             "(default 0.3)")
    args = parser.parse_args(argv)
    summary = run(args.cycles, args.seed, args.workers, args.synchronous, args.keep,
                  quiet_kills=args.quiet_kills)
    print(summary.text())
    return 1 if summary.violations else 0


if __name__ == "__main__":
    sys.exit(main())
