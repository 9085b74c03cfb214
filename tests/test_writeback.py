"""Write-back: a read/write application's changes come back through its pipe in runs,
are applied (runs of plain updates together) and committed with its `done` record, the
store writing only the columns that changed.  A real dynamod and the real `dynamo`; the
pipe's hostile side is a script that writes to it itself."""

import json
import re
import sqlite3
import subprocess
import sys
import time

import pytest

from support.daemon import cpu_seconds
from support.views import snapshot

DS = "/W/B/RAW"
BLOCKS = [f"b{i}" for i in range(40)]
GOOD_RUN = (b'{"op": "update", "kind": "site", "keys": ["name"], "fields": ["status"], '
            b'"rows": [["S2", "morgue"]]}\n')


@pytest.fixture
def stocked(daemon):
    """40 blocks of one file each, complete at S1 and S2 (group G1); sites S1 to S3."""
    daemon.inject_json({
        "site": [{"name": "S1"}, {"name": "S2"}, {"name": "S3"}],
        "group": [{"name": "G1"}, {"name": "G2"}],
        "dataset": [{"name": DS, "blocks": [
            {"name": b, "files": [{"name": f"/w/{b}", "size": 10}]} for b in BLOCKS]}],
        "datasetreplica": [{"dataset": DS, "site": site, "group": "G1",
                            "blockreplicas": [{"block": b, "group": "G1"} for b in BLOCKS]}
                           for site in ("S1", "S2")]})
    return daemon


def writer(daemon, tmp_path, text, title="writer", check=True):
    """Run `text` as an authorized read/write application; its completed process."""
    path = tmp_path / f"{title}.py"
    path.write_text(text)
    daemon.exec_auth("--executable", path, "--title", title)
    return daemon.dynamo(path, "--write-request", "--title", title, check=check)


def replicas(daemon) -> dict:
    """(block, site) -> (group, last_update) of every block replica, as the daemon shows."""
    found = {}
    for name in BLOCKS:
        for r in daemon.call("get_block", name=f"{DS}#{name}")["replicas"]:
            found[name, r["site"]] = (r["group"], r["last_update"])
    return found


def forged(daemon, tmp_path, data: bytes) -> dict:
    """Run a writer whose script writes `data` to its pipe itself and exits 0 at once
    (so nothing else is sent); the application's record, once it changed nothing."""
    before = snapshot(daemon)
    result = writer(daemon, tmp_path, f"import os\nos.write(3, {data!r})\nos._exit(0)\n",
                    check=False)
    assert result.returncode != 0
    assert snapshot(daemon) == before
    return daemon.call("list_applications", limit=1)["applications"][0]


def test_changes_beyond_max_changes_bytes_end_the_writer_with_nothing_applied(start_daemon,
                                                                              tmp_path):
    """A writer's changes are applied in one step of the event loop: past
    max_changes_bytes (256 MiB; 64 KiB here) it is killed and none is kept."""
    daemon = start_daemon(config={"applications": {"max_changes_bytes": 65536}})
    daemon.inject_json({"site": [{"name": "S2"}]})
    app = forged(daemon, tmp_path, GOOD_RUN * 1000)
    assert app["status"] == "killed"
    assert app["message"] == "its changes exceed 65536 bytes ([applications] max_changes_bytes)"
    # made by the script's own updates: killed while it sends them, told in one line
    result = writer(daemon, tmp_path, "for n in range(3000):\n"
                    "    inventory.update(Site(f'T2_MANY_{n}', host='h' * 20))\n",
                    title="many", check=False)
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr and "max_changes_bytes" in result.stderr
    assert [s["name"] for s in daemon.call("list_sites")["sites"]] == ["S2"]


def test_only_the_columns_that_changed_are_written(stocked, tmp_path):
    """Values the store holds that memory does not (written behind the daemon's back)
    survive a write-back that changes other columns of the same rows: a full row
    would have put memory's values back."""
    db = sqlite3.connect(stocked.database, isolation_level=None)
    db.execute("UPDATE block_replicas SET is_custodial = 1")
    db.execute("UPDATE sites SET host = 'behind' WHERE name = 'S1'")
    db.close()

    done = writer(stocked, tmp_path, f"""\
for block in inventory.datasets[{DS!r}].blocks:
    for replica in block.replicas:
        inventory.update(BlockReplica(block.full_name(), replica.site.name, last_update=77))
inventory.update(Site('S1', status='morgue'))
""")

    assert done.returncode == 0
    db = sqlite3.connect(f"file:{stocked.database}?mode=ro", uri=True)
    rows = db.execute("SELECT is_custodial, last_update FROM block_replicas").fetchall()
    site = db.execute("SELECT host, status FROM sites WHERE name = 'S1'").fetchone()
    db.close()
    assert rows == [(1, 77)] * 80 and site == ("behind", "morgue")
    app = stocked.call("list_applications", limit=1)["applications"][0]
    assert app["message"] == "changes applied: updated 80 blockreplicas, updated 1 sites"


def test_runs_apply_in_order_as_the_script_saw_them(stocked, tmp_path):
    """A long run of updates of existing replicas, with a replica created in its middle
    and updated again further on, then a run of group changes by name: the daemon ends
    where the script's copy was (which applied them one by one), and so does the store."""
    done = writer(stocked, tmp_path, f"""\
import json
blocks = sorted(inventory.datasets[{DS!r}].blocks, key=lambda b: int(b.name[1:]))
inventory.update(DatasetReplica({DS!r}, 'S3', group='G2'))
for i, block in enumerate(blocks):
    inventory.update(BlockReplica(block.full_name(), 'S1', last_update=1000 + i))
    if i == 20:
        inventory.update(BlockReplica(block.full_name(), 'S3', last_update=5))
    if i == 30:
        inventory.update(BlockReplica(blocks[20].full_name(), 'S3', last_update=6))
for block in blocks:
    inventory.update(BlockReplica(block.full_name(), 'S2', group='G2'))
inventory.update(BlockReplica(blocks[20].full_name(), 'S3', group='G1'))
print(json.dumps({{f'{{b.name}} {{r.site.name}}': [r.group.name, r.last_update]
                  for b in blocks for r in b.replicas}}))
""")

    in_copy = {tuple(k.split()): tuple(v) for k, v in json.loads(done.stdout).items()}
    assert in_copy[BLOCKS[20], "S3"] == ("G1", 6) and in_copy[BLOCKS[7], "S1"][1] == 1007
    assert replicas(stocked) == in_copy
    stocked.restart()
    assert replicas(stocked) == in_copy


@pytest.mark.parametrize("bad, message", [
    ([DS, "b3", "NOPE", 5], "unknown site 'NOPE'"),
    ([DS, "b3", "S1", -5], "BlockReplica.last_update must be"),
    ([DS, "nope", "S1", 5], "unknown block 'nope'"),
    ([DS, "b3", "S1", 5, 6], "has 4 values"),
    ("S1", "has 4 values"),
])
def test_one_bad_record_in_a_run_refuses_the_whole_write_back(stocked, tmp_path, bad, message):
    """The good rows around the bad one apply nowhere; the message is the bad record's."""
    rows = [[DS, b, "S1", 5] for b in BLOCKS]
    rows[3] = bad
    run = {"op": "update", "kind": "blockreplica", "keys": ["dataset", "block", "site"],
           "fields": ["last_update"], "rows": rows}

    app = forged(stocked, tmp_path, json.dumps(run).encode() + b'\n{"end": 1}\n')

    assert app["status"] == "failed" and "nothing was applied" in app["message"]
    assert message in app["message"], app["message"]


@pytest.mark.parametrize("bad", [-1, 80, "3", 2.0, True, None])
def test_a_record_by_a_row_that_holds_no_replica_refuses_the_whole_write_back(stocked, tmp_path,
                                                                               bad):
    """Records by row (what the child sends for most updates) are checked as names are:
    a row out of the table or not a whole number refuses everything, named."""
    rows = [[row, 5] for row in range(80)]   # the 80 replicas, rows 0 to 79
    rows[3] = [bad, 5]
    run = {"op": "update", "kind": "blockreplica", "keys": ["row"],
           "fields": ["last_update"], "rows": rows}

    app = forged(stocked, tmp_path, json.dumps(run).encode() + b'\n{"end": 1}\n')

    assert app["status"] == "failed" and "nothing was applied" in app["message"]
    assert f"no blockreplica at row {bad!r}" in app["message"], app["message"]


@pytest.mark.parametrize("line", [
    b'[1, 2]',
    b'{"op": "update", "kind": "site", "keys": ["name"], "fields": ["status"]}',
    b'{"op": "update", "kind": "site", "keys": ["name"], "fields": ["status"], "rows": 5}',
    b'{"op": "update", "kind": "site", "keys": ["name"], "fields": ["nosuch"], "rows": []}',
    b'{"op": "update", "kind": "site", "keys": ["host"], "fields": [], "rows": []}',
    b'{"op": "update", "kind": "site", "keys": ["name", "name"], "fields": [], "rows": []}',
    b'{"op": "update", "kind": "site", "keys": "name", "fields": [], "rows": []}',
    b'{"op": "grow", "kind": "site", "keys": ["name"], "fields": [], "rows": []}',
    b'{"op": "update", "kind": "planet", "keys": ["name"], "fields": [], "rows": []}',
    b'{"op": "update", "kind": "site", "keys": ["name"], "fields": ["status"], '
    b'"rows": [["S1", "morgue"]], "more": 1}',
])
def test_a_malformed_run_is_refused_with_nothing_applied(stocked, tmp_path, line):
    app = forged(stocked, tmp_path, GOOD_RUN + line + b'\n{"end": 2}\n')
    assert app["status"] == "failed" and "were refused, nothing was applied" in app["message"]


COMPLETE = GOOD_RUN + b'{"end": 1}\n'


def test_complete_changes_of_a_writer_that_fails_apply_nothing(stocked, tmp_path):
    """The records are parsed as soon as the pipe ends, before the exit status is known:
    a failing writer's are still dropped, whole as they came."""
    before = snapshot(stocked)
    result = writer(stocked, tmp_path, f"import os\nos.write(3, {COMPLETE!r})\nos._exit(1)\n",
                    check=False)
    assert result.returncode != 0
    assert snapshot(stocked) == before
    app = stocked.call("list_applications", limit=1)["applications"][0]
    assert (app["status"], app["exit_code"]) == ("failed", 1)


def test_changes_apply_when_a_process_of_the_script_holds_its_pipe_open(stocked, tmp_path):
    """The pipe does not end with the writer (a process it started still holds it): what
    arrived is parsed once the writer's exit says it succeeded."""
    writer(stocked, tmp_path, f"""\
import os, time
if os.fork() == 0:
    time.sleep(2)
    os._exit(0)
os.write(3, {COMPLETE!r})
os._exit(0)
""")
    app = stocked.call("list_applications", limit=1)["applications"][0]
    assert (app["status"], app["message"]) == ("done", "changes applied: updated 1 sites")
    assert [s["status"] for s in stocked.call("list_sites", pattern="S2")["sites"]] == ["morgue"]


@pytest.mark.parametrize("tail", [b'', b'{"end": 2}\n', b'{"end": 1}\n{"end": 1}\n', b'junk\n'])
def test_changes_that_arrive_incomplete_apply_nothing(stocked, tmp_path, tail):
    app = forged(stocked, tmp_path, GOOD_RUN + tail)
    assert app["message"] == "its changes arrived incomplete; nothing was applied"


def test_mixed_runs_are_logged_and_stored_as_the_copy_saw_them(stocked, tmp_path):
    """Runs of several shapes, one of them changing two fields of each replica (one of
    the two unchanged for some), a replica named twice in a run, a run that changes
    nothing: memory, the store after a restart and the change log (one line per object
    that changed, naming only what changed) all say what the script's copy did."""
    done = writer(stocked, tmp_path, f"""\
import json
blocks = sorted(inventory.datasets[{DS!r}].blocks, key=lambda b: int(b.name[1:]))
for i, block in enumerate(blocks[:10]):
    inventory.update(BlockReplica(block.full_name(), 'S1', group='G2' if i % 2 else 'G1',
                                  last_update=500 + i))
inventory.update(BlockReplica(blocks[0].full_name(), 'S1', group='G2', last_update=500))
for block in blocks[:5]:
    inventory.update(BlockReplica(block.full_name(), 'S2', group='G1'))
inventory.update(Site('S3', status='morgue'))
inventory.update(Site('S2', status='morgue'))
print(json.dumps({{f'{{b.name}} {{r.site.name}}': [r.group.name, r.last_update]
                  for b in blocks for r in b.replicas}}))
""")

    in_copy = {tuple(k.split()): tuple(v) for k, v in json.loads(done.stdout).items()}
    assert in_copy[BLOCKS[0], "S1"] == ("G2", 500) and in_copy[BLOCKS[3], "S1"] == ("G2", 503)
    assert replicas(stocked) == in_copy
    app = stocked.call("list_applications", limit=1)["applications"][0]
    assert app["message"] == "changes applied: updated 10 blockreplicas, updated 2 sites"
    stocked.stop()   # the change log is written by a process; stopping flushes it
    replica_lines = [line for line in (stocked.state_dir / "changes.log").read_text()
                     .splitlines() if "updated blockreplica" in line]
    assert len(replica_lines) == 11   # b0 to b9 at S1, then b0 at S1 again
    assert f"updated blockreplica S1:{DS}#b0 last_update: " in replica_lines[0]
    assert replica_lines[0].endswith(" -> 500") and "group" not in replica_lines[0]
    assert f"updated blockreplica S1:{DS}#b1 group: 'G1' -> 'G2' last_update: " \
        in replica_lines[1]
    assert replica_lines[10].endswith(f"S1:{DS}#b0 group: 'G1' -> 'G2'")
    stocked.start()
    assert replicas(stocked) == in_copy


@pytest.mark.parametrize("bad, message", [
    ([DS, "b3", "S1", "G9", 5], "unknown group 'G9'"),
    ([DS, "b3", "S1", "G2", "soon"], "BlockReplica.last_update must be"),
])
def test_a_bad_value_in_a_run_of_two_fields_refuses_everything(stocked, tmp_path, bad,
                                                                 message):
    rows = [[DS, b, site, "G2", 9] for b in BLOCKS for site in ("S1", "S2")]
    rows[41] = bad
    run = {"op": "update", "kind": "blockreplica", "keys": ["dataset", "block", "site"],
           "fields": ["group", "last_update"], "rows": rows}

    app = forged(stocked, tmp_path, GOOD_RUN + json.dumps(run).encode() + b'\n{"end": 2}\n')

    assert app["status"] == "failed" and "nothing was applied" in app["message"]
    assert message in app["message"], app["message"]


def test_a_write_back_whose_commit_fails_is_undone_value_by_value(stocked, tmp_path):
    """The store refuses the transaction (a trigger, added behind the daemon's back,
    refuses one row's UPDATE): every replica and site has its old values again in
    memory, the application failed with the store's reason, and the daemon goes on."""
    before = snapshot(stocked)
    db = sqlite3.connect(stocked.database, isolation_level=None)
    db.execute("CREATE TRIGGER refuse BEFORE UPDATE OF last_update ON block_replicas "
               "WHEN NEW.last_update = 999 BEGIN SELECT RAISE(ABORT, 'no 999 here'); END")
    db.close()

    done = writer(stocked, tmp_path, f"""\
for i, block in enumerate(inventory.datasets[{DS!r}].blocks):
    for replica in block.replicas:
        inventory.update(BlockReplica(block.full_name(), replica.site.name, group='G2',
                                      last_update=999 if i == 20 else 100 + i))
inventory.update(Site('S1', status='morgue'))
""", check=False)

    assert done.returncode != 0
    app = stocked.call("list_applications", limit=1)["applications"][0]
    assert app["status"] == "failed" and "no 999 here" in app["message"], app
    assert snapshot(stocked) == before
    db = sqlite3.connect(stocked.database, isolation_level=None)
    db.execute("DROP TRIGGER refuse")
    db.close()
    stocked.restart()
    assert snapshot(stocked) == before
    writer(stocked, tmp_path, "inventory.update(Site('S1', status='morgue'))\n")   # it goes on



LOG_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \S+ app=\d+ (.*)")


def logged_changes(daemon) -> list[str]:
    """The changes of the applications' lines in changes.log (stamp and actor checked,
    then cut off), once the daemon stopped (stopping writes the last lines)."""
    lines = (daemon.state_dir / "changes.log").read_text().splitlines()
    found = [LOG_LINE.fullmatch(line) for line in lines if " app=" in line]
    assert all(found), lines
    return [match.group(1) for match in found]


def test_a_long_write_back_logs_every_line_in_the_documented_format(stocked, tmp_path):
    """Every change of a write-back of several runs (one field, two fields with one of
    them unchanged for some, sites between them) reaches changes.log as its own line,
    the script's order kept, each exactly as README shows a change; and the application's
    message counts the objects changed."""
    done = writer(stocked, tmp_path, f"""\
import json
expected = []
blocks = sorted(inventory.datasets[{DS!r}].blocks, key=lambda b: int(b.name[1:]))
for rounds in range(3):
    for block in blocks:
        for replica in sorted(block.replicas, key=lambda r: r.site.name):
            old, new = replica.last_update, 2000 + rounds
            inventory.update(BlockReplica(block.full_name(), replica.site.name,
                                          last_update=new))
            expected.append(f"updated blockreplica {{replica.site.name}}:{DS}#{{block.name}} "
                            f"last_update: {{old}} -> {{new}}")
    site = inventory.sites['S3']
    old, new = site.status, ['morgue', 'ready', 'waitroom'][rounds]
    inventory.update(Site('S3', status=new))
    expected.append(f"updated site S3 status: {{old!r}} -> {{new!r}}")
for i, block in enumerate(blocks):
    replica = block.find_replica(inventory.sites['S2'])
    group = 'G2' if i % 2 else 'G1'
    changed = [] if group == replica.group.name else [f"group: {{replica.group.name!r}} -> {{group!r}}"]
    changed.append(f"last_update: {{replica.last_update}} -> 3000")
    inventory.update(BlockReplica(block.full_name(), 'S2', group=group, last_update=3000))
    expected.append(f"updated blockreplica S2:{DS}#{{block.name}} " + " ".join(changed))
print(json.dumps(expected))
""")

    expected = json.loads(done.stdout)
    assert len(expected) == 3 * 80 + 3 + 40
    app = stocked.call("list_applications", limit=1)["applications"][0]
    assert app["message"] == "changes applied: updated 80 blockreplicas, updated 1 sites"
    stocked.stop()
    assert logged_changes(stocked) == expected
    stocked.start()


def test_a_refused_write_back_logs_nothing(stocked, tmp_path):
    """A long run refused by its last record: no line of it reaches changes.log, and the
    next write-back's lines do."""
    rows = [[DS, b, site, 4242] for b in BLOCKS for site in ("S1", "S2")]
    rows[-1] = [DS, BLOCKS[-1], "S2", -1]
    run = {"op": "update", "kind": "blockreplica", "keys": ["dataset", "block", "site"],
           "fields": ["last_update"], "rows": rows}
    assert forged(stocked, tmp_path, json.dumps(run).encode() + b'\n{"end": 1}\n')[
        "status"] == "failed"
    writer(stocked, tmp_path, "inventory.update(Site('S1', status='morgue'))\n")
    stocked.stop()
    assert logged_changes(stocked) == ["updated site S1 status: 'unknown' -> 'morgue'"]
    stocked.start()


def test_calls_of_one_shape_find_what_the_calls_between_them_changed(stocked, tmp_path):
    """Updates of replicas, the block deleted, an update of its replica again: refused
    in the script (the block is gone), and the daemon ends as the script's copy did."""
    done = writer(stocked, tmp_path, f"""\
name = {DS!r} + '#b0'
inventory.update(BlockReplica(name, 'S1', last_update=11))
inventory.update(BlockReplica({DS!r} + '#b1', 'S1', last_update=11))
inventory.delete(inventory.find_block(name))
try:
    inventory.update(BlockReplica(name, 'S1', last_update=12))
except Exception as exc:
    print('refused:', exc)
inventory.update(BlockReplica({DS!r} + '#b1', 'S2', last_update=13))
print(sorted(b.name for b in inventory.datasets[{DS!r}].blocks) == {sorted(BLOCKS[1:])!r})
""")
    assert "refused:" in done.stdout and "b0" in done.stdout, done.stdout
    assert done.stdout.rstrip().endswith("True"), done.stdout
    assert {b["name"] for b in stocked.call("get_dataset", name=DS)["blocks"]} \
        == set(BLOCKS[1:])
    found = {(r["site"], r["last_update"]) for r in
             stocked.call("get_block", name=f"{DS}#b1")["replicas"]}
    assert found == {("S1", 11), ("S2", 13)}


def test_the_daemon_waits_idle_for_a_writer_that_closed_its_pipe(stocked, tmp_path):
    """A writer's child closes its pipe, then exits (the kernel's teardown of a child of a
    large daemon takes tens of milliseconds; this one sleeps instead): meanwhile the
    daemon reads the closed pipe no more, it waits, using next to no CPU; then it applies
    what the writer sent."""
    closed, sent = tmp_path / "closed", GOOD_RUN + b'{"end": 1}\n'
    path = tmp_path / "late.py"
    path.write_text(f"""\
import os, time
os.write(3, {sent!r})
os.close(3)
open({str(closed)!r}, 'w').close()
time.sleep(2)
os._exit(0)
""")
    stocked.exec_auth("--executable", path, "--title", "late")
    late = subprocess.Popen([sys.executable, "-m", "dynamoclient.dynamo", str(path), "-W",
                             "-t", "late"], env=stocked.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not closed.exists():
        assert time.monotonic() < deadline and late.poll() is None
        time.sleep(0.01)
    used, started = cpu_seconds(stocked.process.pid), time.monotonic()
    time.sleep(1)
    used, waited = cpu_seconds(stocked.process.pid) - used, time.monotonic() - started
    assert late.wait(30) == 0
    assert used < 0.2 * waited, f"{used:.2f} s of CPU in {waited:.2f} s"
    assert {s["name"]: s["status"] for s in stocked.call("list_sites")["sites"]}["S2"] == \
        "morgue"
