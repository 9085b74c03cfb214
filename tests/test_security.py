"""Security: every refusal path, against a real dynamod, from a real unprivileged peer.

The unprivileged account is uid/gid 65534 (`nobody`): a forked child takes it
and talks to the daemon, or submits an application that then runs as it.  A
refusal must say what was missing and change nothing (the SQLite file and the
inventory are compared before and after).  The files the daemon creates are
checked for the modes the documentation gives.
"""

import base64
import inspect
import os
import shutil
import signal
import socket
import sqlite3
import stat
import struct
import tempfile
import threading
import time
from pathlib import Path

import orjson
import pytest

from dynamod import descriptors
from dynamod.auth.policy import Access
from dynamod.methods import METHODS
from support import pki
from support.apps import checksum, wait_for_end
from support.daemon import Daemon
from support.nobody import NOBODY, as_nobody, map_nobody
from support.views import memory_view, store_rows
from support.wire import Raw, requests

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")

SCRIPT = "print('hello')\n"


# ------------------------------------------------------------------- helpers
def state(daemon) -> tuple:
    """The SQLite file's tables and the inventory the queries show (as root)."""
    client = Raw(daemon.socket)
    try:
        return store_rows(daemon.database), memory_view(client)
    finally:
        client.close()


def refusal(answer: dict, needs: str) -> str:
    assert "error" in answer, f"expected a refusal, got {answer}"
    error = answer["error"]
    assert (error["code"], error["needs"], error["uid"]) == ("not_authorized", needs, NOBODY), error
    return error["message"]


# ------------------------------------------------------------ unknown peers
def test_an_unmapped_peer_may_call_only_the_public_methods(daemon):
    before = state(daemon)
    names = sorted(METHODS)
    answers = as_nobody(requests, daemon.socket, [{"method": n} for n in names])
    for name, answer in zip(names, answers):
        if METHODS[name].access is Access.PUBLIC:
            assert answer.get("error", {}).get("code") != "not_authorized", (name, answer)
            continue
        message = refusal(answer, "identity")
        assert f"{name} refused: uid 65534 (account nobody) is not mapped" in message
    whoami = answers[names.index("whoami")]["result"]
    assert (whoami["uid"], whoami["user"], whoami["superuser"]) == (NOBODY, None, False)
    assert state(daemon) == before
    first = sorted(n for n in names if METHODS[n].access is not Access.PUBLIC)[0]
    assert f"refused {first}: uid 65534 (account nobody) is not mapped" in daemon.log()
    assert daemon.log().count("refused ") <= 5   # the rest are counted (logs.RateLimited)


SUPERUSER_CALLS = {  # each would do something if it were allowed
    "backup": {"path": "/tmp/dynamo-stolen.db"},
    "authorize_script": {"title": "evil", "checksum": "0" * 64},
    "list_script_authorizations": {},
    "revoke_script_authorization": {"title": "cleanup", "all_users": True},
    "get_user": {"name": "guest"},
    "set_user": {"name": "guest", "accounts": ["root"]},
    "create_role": {"role": "boss"},
    "grant_role": {"user": "guest", "role": "admin", "target": "all"},
    "revoke_role": {"user": "guest", "role": "admin"},
    "list_grants": {},
    "remove_from_user": {"name": "guest", "accounts": ["nobody"]},
    "delete_user": {"name": "guest"},
    "set_partition": {"name": "Stolen", "condition": "true"},
    "delete_partition": {"name": "Stolen"},
}


def test_an_admin_on_everything_is_still_refused_every_superuser_method(daemon):
    superuser_methods = sorted(n for n, m in METHODS.items() if m.access is Access.SUPERUSER)
    assert sorted(SUPERUSER_CALLS) == superuser_methods, "a superuser method has no case here"
    daemon.call("authorize_script", title="cleanup", checksum="1" * 64)
    map_nobody(daemon, "admin", "all")
    control = as_nobody(requests, daemon.socket, [
        {"method": "inject", "params": {"data": {"site": [{"name": "T2_GUEST"}]}}},
        {"method": "list_applications"}])
    assert control[0]["result"]["created"] == {"sites": 1}, "admin on inventory must inject"
    assert "result" in control[1]
    before = state(daemon)
    lines = [{"method": n, "params": SUPERUSER_CALLS[n]} for n in superuser_methods]
    for name, answer in zip(superuser_methods, as_nobody(requests, daemon.socket, lines)):
        message = refusal(answer, "superuser")
        assert f"{name} refused: guest (uid 65534) is not the superuser" in message
    assert state(daemon) == before
    assert not os.path.exists("/tmp/dynamo-stolen.db")
    assert daemon.call("get_user", name="guest")["accounts"] == ["nobody"]


def test_a_role_counts_only_on_its_target(daemon):
    map_nobody(daemon, "operator", "inventory")
    before = state(daemon)
    names = sorted(n for n, m in METHODS.items() if m.access is Access.APPLICATION)
    lines = [{"method": n, "params": {"id": 1} if "id" in METHODS[n].params else {
        "script": SCRIPT, "attach": False} if n == "run_application" else {}} for n in names]
    for name, answer in zip(names, as_nobody(requests, daemon.socket, lines)):
        message = refusal(answer, "application")
        assert "guest (uid 65534) lacks the admin or operator role on application" in message
    assert state(daemon) == before
    map_nobody(daemon, "operator", "application")
    control = as_nobody(requests, daemon.socket, [{"method": "list_applications"}])[0]
    assert control == {"id": 0, "result": {"applications": [], "writer": None}}


SLEEPER = {"script": "import time\nprint('asleep', flush=True)\ntime.sleep(60)\n",
           "attach": False}


def asleep(daemon, app_id: int):
    """Wait until the application runs its script (it says so in its work area)."""
    deadline = time.monotonic() + 30
    while True:
        workarea = daemon.call("poll_application", id=app_id)["workarea"]
        if workarea and os.path.exists(f"{workarea}/stdout") and open(
                f"{workarea}/stdout").read() == "asleep\n":
            return
        assert time.monotonic() < deadline, f"application {app_id} never ran"
        time.sleep(0.02)


def test_only_its_submitter_or_an_admin_kills_an_application(daemon):
    map_nobody(daemon, "operator", "application")
    roots = requests(daemon.socket, [{"method": "run_application", "params": SLEEPER}])[0]
    root_app = roots["result"]["id"]
    guests = as_nobody(requests, daemon.socket, [
        {"method": "run_application", "params": SLEEPER},
        {"method": "kill_application", "params": {"id": root_app}}])
    asleep(daemon, guests[0]["result"]["id"])
    error = guests[1]["error"]
    # as poll_application: another user's application is neither confirmed nor its owner
    # named (it was "belongs to root": an operator going through the ids learned who ran
    # what); the daemon's log names both
    assert (error["code"], error["message"]) == ("not_found", f"unknown application {root_app}")
    assert daemon.call("poll_application", id=root_app)["status"] in ("new", "run")
    assert (f"refused kill_application: application {root_app} belongs to root; only its "
            f"submitter or an administrator may kill it, not guest (uid 65534)"
            ) in daemon.log()
    own = as_nobody(requests, daemon.socket, [
        {"method": "kill_application", "params": {"id": guests[0]["result"]["id"]}}])[0]
    assert own["result"]["killed"] is True
    map_nobody(daemon, "admin", "application")
    asleep(daemon, root_app)
    by_admin = as_nobody(requests, daemon.socket, [
        {"method": "kill_application", "params": {"id": root_app}}])[0]
    assert by_admin["result"]["killed"] is True
    assert wait_for_end(daemon, root_app)["status"] == "killed"


def _kill_when_told(socket_path: str, fds: tuple, rounds: int) -> list:
    """As the submitter: run a short application `rounds` times; tell its pid (fds[1]),
    and kill it when told to (fds[0]): what each kill answered."""
    client = Raw(socket_path, timeout=30)
    killed = []
    for _ in range(rounds):
        app = client.request(1, "run_application", script="pass\n", attach=False)["result"]
        while not (pid := client.request(2, "poll_application", id=app["id"])["result"]["pid"]):
            pass
        os.write(fds[1], struct.pack("i", pid))
        os.read(fds[0], 1)
        killed.append(client.request(3, "kill_application", id=app["id"])["result"]["killed"])
    client.close()
    return killed


def _a_process_at_each_reaped_pid(fds: tuple, rounds: int, victims: list):
    """Root: once each application's pid is free (its child reaped), fork a process that
    gets that very pid (ns_last_pid), then let the submitter kill the application."""
    for _ in range(rounds):
        pid = struct.unpack("i", os.read(fds[0], 4))[0]
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            pass
        with open("/proc/sys/kernel/ns_last_pid", "w") as last:
            last.write(str(pid - 1))
        victim = os.fork()
        if victim == 0:
            time.sleep(10)
            os._exit(0)
        os.write(fds[1], b"g")
        victims.append((pid, victim))


def test_a_kill_never_reaches_a_process_that_took_the_application_s_pid(daemon):
    """The child is reaped, then the daemon awaits the file channel's close before it
    notes the exit: a kill in between sent SIGTERM to the pid, which another process may
    already hold (here a process of root's made to take it), and marked the application
    killed although it had ended by itself."""
    map_nobody(daemon, "operator", "application")
    rounds = 40
    to_root, to_attacker = os.pipe(), os.pipe()
    victims = []
    helper = threading.Thread(target=_a_process_at_each_reaped_pid,
                              args=((to_root[0], to_attacker[1]), rounds, victims))
    helper.start()
    try:
        killed = as_nobody(_kill_when_told, daemon.socket, (to_attacker[0], to_root[1]), rounds)
    finally:
        helper.join()
        for fd in (*to_root, *to_attacker):
            os.close(fd)
    ends = []
    for pid, victim in victims:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass
        ends.append((pid == victim, os.waitstatus_to_exitcode(os.waitpid(victim, 0)[1])))
    assert sum(same for same, _ in ends) >= rounds // 2, ("the freed pids went elsewhere", victims)
    assert -signal.SIGTERM not in [code for _, code in ends], (killed, ends)
    assert killed == [False] * rounds, killed
    statuses = {a["status"] for a in daemon.call("list_applications", limit=rounds)["applications"]}
    assert statuses == {"done"}, statuses


def _start_and_kill(socket_path: str, rounds: int) -> bool:
    """Start an application and kill it the moment it is forked, `rounds` times."""
    client = Raw(socket_path, timeout=30)
    for _ in range(rounds):
        app = client.request(1, "run_application", **SLEEPER)["result"]
        while client.request(2, "poll_application", id=app["id"])["result"]["status"] == "new":
            pass
        client.request(3, "kill_application", id=app["id"])
    client.close()
    return True


def test_killing_applications_as_they_start_never_stops_the_daemon():
    """A user of applications kills each of its own as soon as it is forked: the child
    gets SIGTERM at its very start, while it still shares the daemon's signal wakeup
    descriptor.  The daemon must not take that signal for its own (and stop)."""
    root = Path(tempfile.mkdtemp(prefix="dyn-", dir="/tmp"))
    os.chmod(root, 0o755)
    config = root / "dynamod.toml"
    config.write_text("[applications]\nkill_grace = 0.5\n")  # a quick stop if it fails
    daemon = Daemon(root / "state", str(root / "dynamod.sock"), ["--config", str(config)])
    try:
        daemon.start()
        map_nobody(daemon, "operator", "application")
        assert as_nobody(_start_and_kill, daemon.socket, 40)
        assert daemon.process.poll() is None and "dynamod stopping" not in daemon.log()
        assert daemon.call("ping") == {"pong": True}
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------- read/write scripts
def test_a_write_needs_the_exact_script_authorized_for_the_title_and_user(daemon):
    writer = "inventory.update(Site('T2_WRITTEN'))\n"
    daemon.call("authorize_script", title="fix", checksum=checksum(writer))
    daemon.call("set_user", name="jane")  # an authorization names a known user
    daemon.call("authorize_script", title="jane-only", checksum=checksum(writer), user="jane")
    map_nobody(daemon, "operator", "application")
    before = state(daemon)
    refused = [
        ("root", "fix", writer + "\n"),                              # one byte more
        ("root", "fix", writer.replace("T2_WRITTEN", "T2_WRITTEM")),  # one byte changed
        ("root", "other", writer),                                   # another title
        ("root", "jane-only", writer),                               # another user's
        ("guest", "jane-only", writer),
    ]
    for who, title, script in refused:
        params = {"script": script, "title": title, "write": True, "attach": False}
        if who == "root":
            answer = requests(daemon.socket, [{"method": "run_application", "params": params}])[0]
        else:
            answer = as_nobody(requests, daemon.socket,
                               [{"method": "run_application", "params": params}])[0]
        error = answer["error"]
        assert error["code"] == "not_authorized" and "app" in error, (who, title, error)
        assert f"is not authorized for read/write under title {title!r} for user {who}" in \
            error["message"]
        assert daemon.call("poll_application", id=error["app"])["status"] == "authfailed"
    after = state(daemon)
    assert after[1]["sites"] == before[1]["sites"] and after[1]["counts"] == before[1]["counts"]
    for table in ("sites", "datasets", "blocks", "files", "dataset_replicas"):
        assert after[0][table] == before[0][table], table
    accepted = as_nobody(requests, daemon.socket, [{"method": "run_application", "params": {
        "script": writer, "title": "fix", "write": True, "attach": False}}])[0]["result"]
    assert wait_for_end(daemon, accepted["id"])["status"] == "done"
    assert "T2_WRITTEN" in {s["name"] for s in daemon.call("list_sites")["sites"]}


# ------------------------------------------------------------------ X.509
def _impostor(socket_path: str, credentials: dict) -> dict:
    """Every way of presenting the certificate without proving its key, as uid 65534."""
    chain, key_pem = credentials[pki.JANE]
    other_key = pki.key_pem(pki.ec_key())
    a, b = Raw(socket_path), Raw(socket_path)
    seen = {}

    def attempt(label, client, signature, chain=chain):
        seen[label] = client.request(label, "authenticate", chain=chain, signature=signature)
        seen[label + " then"] = client.request("w", "whoami")["result"]["user"]

    attempt("no challenge", a, pki.prove(key_pem, base64.b64encode(b"guess").decode()))
    challenge = a.request(1, "auth_challenge")["result"]["challenge"]
    attempt("another key", a, pki.prove(other_key, challenge))
    attempt("a used challenge", a, pki.prove(key_pem, challenge))  # spent by the failure
    challenge_a = a.request(2, "auth_challenge")["result"]["challenge"]
    b.request(3, "auth_challenge")
    attempt("another connection's challenge", b, pki.prove(key_pem, challenge_a))
    challenge = b.request(4, "auth_challenge")["result"]["challenge"]
    attempt("no base64", b, "%%%")
    challenge = b.request(5, "auth_challenge")["result"]["challenge"]
    attempt("no certificate", b, pki.prove(key_pem, challenge), chain="not a PEM chain")
    seen["a proof"] = a.request(6, "authenticate", chain=chain,
                                signature=pki.prove(key_pem, challenge_a))
    seen["a proof then"] = a.request("w", "whoami")["result"]["user"]
    c = Raw(socket_path)
    c.request(7, "auth_challenge")
    attempt("a replayed proof", c, pki.prove(key_pem, challenge_a))
    stranger_chain, stranger_key = credentials[pki.STRANGER]
    challenge = c.request(8, "auth_challenge")["result"]["challenge"]
    attempt("an unregistered DN", c, pki.prove(stranger_key, challenge), chain=stranger_chain)
    for client in (a, b, c):
        client.close()
    return seen


def test_a_certificate_without_proof_of_possession_is_refused(x509_daemon):
    before = state(x509_daemon)
    seen = as_nobody(_impostor, x509_daemon.socket, x509_daemon.credentials)
    reasons = {"no challenge": "ask for a challenge", "another key": "does not match the key",
               "a used challenge": "ask for a challenge",
               "another connection's challenge": "does not match the key",
               "no certificate": "not valid PEM", "a replayed proof": "does not match the key",
               "an unregistered DN": f"DN {pki.STRANGER} is not registered"}
    for label, fragment in reasons.items():
        error = seen[label]["error"]
        assert error["code"] == "not_authorized" and fragment in error["message"], (label, error)
        assert seen[label + " then"] is None, f"{label}: the connection gained an identity"
    assert seen["no base64"]["error"]["code"] == "invalid_params"
    assert seen["no base64 then"] is None
    assert seen["a proof"] == {"id": 6, "result": {"user": "jane", "dn": pki.JANE}}
    assert seen["a proof then"] == "jane"
    after = state(x509_daemon)
    assert after[0] == before[0] and after[1]["counts"] == before[1]["counts"]


# ------------------------------------------------ an application's own powers
PROBE = """\
import os, socket, sys
import orjson
found = {"uid": [os.getuid(), os.geteuid(), os.getgid(), os.getegid()], "groups": os.getgroups(),
         "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")), "opened": {}}
for path in sys.argv[2:]:
    try:
        open(path, "rb").close()
        found["opened"][path] = "read"
    except OSError as exc:
        found["opened"][path] = type(exc).__name__
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sys.argv[1])
reader = sock.makefile("rb")
for i, method in enumerate(["whoami", "list_grants", "inject", "backup"]):
    params = {"inject": {"data": {"site": [{"name": "T2_FROM_APP"}]}},
              "backup": {"path": "/tmp/dynamo-app-copy.db"}}.get(method, {})
    sock.sendall(orjson.dumps({"id": i, "method": method, "params": params}) + b"\\n")
    found[method] = orjson.loads(reader.readline())
print(orjson.dumps(found).decode())
"""


def test_an_application_has_only_the_powers_of_its_uid(daemon):
    map_nobody(daemon, "operator", "application")
    state_dir = daemon.state_dir
    secrets = [daemon.database, daemon.database + "-wal", str(state_dir / "changes.log")]
    daemon.call("inject", data={"site": [{"name": "T2_SEED"}]})
    deadline = time.monotonic() + 10
    while not os.path.exists(secrets[-1]):  # the change log is written in the background
        assert time.monotonic() < deadline, "no change log"
        time.sleep(0.02)
    before = state(daemon)
    submitted = as_nobody(requests, daemon.socket, [{"method": "run_application", "params": {
        "script": PROBE, "path": "probe.py", "args": [daemon.socket, *secrets],
        "attach": False}}])[0]["result"]
    app = wait_for_end(daemon, submitted["id"])
    workarea = Path(app["workarea"])
    assert app["status"] == "done", (workarea / "stderr").read_text()
    found = orjson.loads((workarea / "stdout").read_text())
    assert found["uid"] == [NOBODY] * 4 and found["groups"] in ([], [NOBODY])
    # the standard streams, the file channel (4) and listdir's own
    assert found["fds"][:3] == [0, 1, 2] and set(found["fds"]) <= {0, 1, 2, 3, 4}, found["fds"]
    assert found["opened"] == {path: "PermissionError" for path in secrets}
    assert found["whoami"]["result"]["user"] == "guest"
    assert found["whoami"]["result"]["superuser"] is False
    assert found["list_grants"]["error"]["needs"] == "superuser"
    assert found["inject"]["error"]["needs"] == "inventory"
    assert found["backup"]["error"]["needs"] == "superuser"
    assert not os.path.exists("/tmp/dynamo-app-copy.db")
    after = state(daemon)
    assert after[1]["sites"] == before[1]["sites"]
    for path in (workarea, workarea / "stdout", workarea / "stderr"):
        info = os.stat(path)
        assert (info.st_uid, info.st_gid) == (NOBODY, NOBODY), path
        assert stat.S_IMODE(info.st_mode) == (0o700 if path == workarea else 0o600), path


# --------------------------------------------------------- names and paths
def _tree(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_titles_paths_and_args_never_become_paths(daemon):
    map_nobody(daemon, "operator", "application")
    root = daemon.state_dir.parent
    before = _tree(root)
    traversal = "../../../../../../tmp/dynamo-escaped"
    params = {"script": "print('ok')\n", "title": traversal, "path": traversal + ".py",
              "args": [traversal], "cwd": traversal, "attach": False}
    ids = [requests(daemon.socket, [{"method": "run_application", "params": params}])[0],
           as_nobody(requests, daemon.socket, [{"method": "run_application",
                                                "params": params}])[0]]
    work = daemon.state_dir / "work"
    created = set()
    for answer in ids:
        app = wait_for_end(daemon, answer["result"]["id"])
        assert app["status"] == "done" and app["title"] == traversal
        area = Path(app["workarea"])
        assert area.parent == work and area.name.startswith(f"{app['id']}-")
        created |= {f"state/work/{area.name}", f"state/work/{area.name}/stdout",
                    f"state/work/{area.name}/stderr"}
    daemon.call("inject", data={"site": [{"name": traversal}], "dataset": [
        {"name": traversal, "blocks": [{"name": traversal, "files": [
            {"name": traversal, "size": 1}]}]}]})
    assert _tree(root) - before - {"state/changes.log"} == created  # (written in the background)
    assert not [p for p in Path("/tmp").iterdir() if p.name.startswith("dynamo-escaped")]


@pytest.mark.parametrize("whose", ["its own", "root's"])
def test_no_account_can_squat_a_work_area(daemon, tmp_path, whose):
    """Work areas are made by the daemon, with unguessable names, in a directory nobody
    else may write to: an unregistered account can neither plant an area (a directory,
    a symlink to a victim) nor list the others, and every application still runs."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me\n")
    work = daemon.state_dir / "work"

    def squat():
        planted = []
        for name in [str(i) for i in range(1, 20)] + ["1-x", "stdout"]:
            for plant in (lambda p: os.symlink(str(victim), p), lambda p: os.mkdir(p, 0o777)):
                try:
                    plant(str(work / name))
                    planted.append(name)
                except PermissionError:
                    pass
        try:
            os.listdir(work)
            planted.append("listed")
        except PermissionError:
            pass
        return planted

    assert as_nobody(squat) == []
    map_nobody(daemon, "operator", "application")
    params = {"script": "print('mine')\n", "attach": False}
    if whose == "root's":
        answer = requests(daemon.socket, [{"method": "run_application", "params": params}])[0]
    else:
        answer = as_nobody(requests, daemon.socket,
                           [{"method": "run_application", "params": params}])[0]
    app = wait_for_end(daemon, answer["result"]["id"])
    assert app["status"] == "done", app
    area = Path(app["workarea"])
    assert area.parent == work and len(area.name) > 12
    assert (area / "stdout").read_text() == "mine\n"
    assert os.stat(area).st_uid == (0 if whose == "root's" else NOBODY)
    assert sorted(os.listdir(victim)) == ["precious"]
    assert (victim / "precious").read_text() == "keep me\n"


# ------------------------------------------------------------ descriptors
APP_ECHO = "import sys\nprint('app says', sys.stdin.readline().strip())\n"


def _pipes(count=3):
    pairs = [os.pipe() for _ in range(count)]
    return [r for r, _ in pairs], [w for _, w in pairs]


def test_descriptors_come_only_from_the_connection_asked_for_them(daemon):
    """A asks for an application with its streams; B, another peer, sends descriptors of
    its own at that moment: the daemon must not take them, and must not keep them."""
    a = Raw(daemon.socket, timeout=30)
    a.send(orjson.dumps({"id": 1, "method": "run_application",
                         "params": {"script": APP_ECHO}}) + b"\n")
    assert a.receive() == {"id": 1, "event": {"event": "send_fds", "count": 3}}

    def intrude(socket_path):
        stdin_r, stdin_w = os.pipe()
        os.write(stdin_w, b"from B\n")
        out_r, out_w = os.pipe()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(socket_path)
        try:
            socket.send_fds(sock, [b'{"id": "b", "method": "ping"}\n'],
                            [stdin_r, out_w, out_w])
        except PermissionError:   # refused by the socket (descriptors.py)
            sock.sendall(b'{"id": "b", "method": "ping"}\n')
        answer = orjson.loads(sock.makefile("rb").readline())
        for fd in (stdin_r, stdin_w, out_w):
            os.close(fd)
        sock.close()
        time.sleep(0.5)
        os.set_blocking(out_r, False)
        try:
            leaked = os.read(out_r, 100).decode()  # EOF: nobody holds the write end
        except BlockingIOError:
            leaked = "the write end is still open somewhere"
        return {"answer": answer, "leaked": leaked}

    intruder = as_nobody(intrude, daemon.socket)
    assert intruder == {"answer": {"id": "b", "result": {"pong": True}}, "leaked": ""}

    reads, writes = _pipes()
    os.write(writes[0], b"from A\n")
    os.close(writes[0])
    socket.send_fds(a.sock, [b"F"], [reads[0], writes[1], writes[2]])
    for fd in (reads[0], writes[1], writes[2]):
        os.close(fd)
    answers = []
    while not answers or "event" in answers[-1]:
        answers.append(a.receive())
    assert answers[-1]["result"]["status"] == "done", answers
    with os.fdopen(reads[1]) as out:
        assert out.read() == "app says from A\n"
    os.close(reads[2])
    a.close()


@pytest.mark.parametrize("sent", [0, 1, 2])
def test_too_few_descriptors_end_the_request_and_its_application(daemon, sent):
    client = Raw(daemon.socket, timeout=30)
    client.send(orjson.dumps({"id": 1, "method": "run_application",
                              "params": {"script": SCRIPT}}) + b"\n")
    assert client.receive()["event"]["event"] == "send_fds"
    reads, writes = _pipes(sent)
    if sent:
        socket.send_fds(client.sock, [b"F"], writes)
    else:
        client.send(b"F")
    for fd in writes:
        os.close(fd)
    answer = client.receive()
    assert answer["id"] == 1 and answer["error"]["code"] == "invalid_request"
    assert f"received {sent}" in answer["error"]["message"]
    for fd in reads:  # the daemon closed what it got
        assert os.read(fd, 1) == b""
        os.close(fd)
    assert client.ping_works()
    client.close()
    app = daemon.call("list_applications", limit=1)["applications"][0]
    assert app["status"] == "killed" and app["ended"] is not None


def test_a_client_leaving_before_its_descriptors_leaves_no_application_behind(daemon):
    client = Raw(daemon.socket)
    client.send(orjson.dumps({"id": 1, "method": "run_application",
                              "params": {"script": SCRIPT}}) + b"\n")
    assert client.receive()["event"]["event"] == "send_fds"
    client.close()
    deadline = time.monotonic() + 10
    while True:
        app = daemon.call("list_applications", limit=1)["applications"][0]
        if app["status"] != "new":
            break
        assert time.monotonic() < deadline, "the application waits forever for its caller"
        time.sleep(0.05)
    assert app["status"] == "killed" and app["pid"] is None
    assert daemon.call("status")["connections"] == 1


def _lingering_socket(linger: int):
    """A TCP socket whose close waits up to `linger` s: SO_LINGER, and its send buffer full
    towards a peer that reads nothing (the listener, returned too, never accepts)."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock.connect(listener.getsockname())
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, linger))
    sock.setblocking(False)
    for _ in range(10):   # until the window is shut (the kernel grows it for a while)
        try:
            while True:
                sock.send(b"x" * 65536)
        except BlockingIOError:
            time.sleep(0.02)
    return listener, sock


def _stalls_the_daemon(socket_path: str, how: str, pause=None, linger=5):
    """Pass a lingering socket to the daemon, drop it (in a thread: when the daemon holds
    none, this close is the last and waits); then the seconds until the last answer, and
    a ping on another connection, came (the linger if the daemon closed it on its event
    loop).  `pause`: descriptors of two pipes to have the daemon stopped (SIGSTOP) while
    the streams and the request after them are sent."""
    listener, sock = _lingering_socket(linger)
    client = Raw(socket_path, timeout=30)
    outcome = {}
    began = time.monotonic()
    if how == "with a ping":   # an unmapped peer, unasked
        try:
            socket.send_fds(client.sock, [b'{"id": 1, "method": "ping"}\n'], [sock.fileno()])
        except PermissionError:
            outcome["sent"] = "refused"
    else:
        client.send(orjson.dumps({"id": 1, "method": "run_application",
                                  "params": {"script": "pass\n"}}) + b"\n")
        client.receive()   # send_fds
        if pause:
            os.write(pause[1], b"stop")
            os.read(pause[0], 1)
        began = time.monotonic()
        fds = [sock.fileno()] * (4 if how == "one too many" else 3)
        socket.send_fds(client.sock, [b"F"], fds)
        if how == "then with a ping":   # sent while the connection takes descriptors
            socket.send_fds(client.sock, [b'{"id": 2, "method": "ping"}\n'], [sock.fileno()])
        if pause:
            os.write(pause[1], b"c")
    threading.Thread(target=sock.close, daemon=True).start()
    expected = set() if outcome else {"1", "2"} if how == "then with a ping" else {"1"}
    answers = {}
    while expected - answers.keys():
        answer = client.receive()
        if "event" not in answer:
            answers[str(answer["id"])] = answer.get("result", answer.get("error"))
    outcome["answers"] = answers
    other = Raw(socket_path, timeout=30)
    outcome["ping"] = other.ping_works()
    outcome["seconds"] = time.monotonic() - began
    other.close()
    client.close()
    listener.close()
    return outcome


def _kernel_refuses_descriptors() -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        return descriptors.allow(sock, False)


@pytest.mark.skipif(not _kernel_refuses_descriptors(),
                    reason="the kernel cannot refuse descriptors (SO_PASSRIGHTS, Linux 6.16): "
                           "a known limit")
def test_an_unasked_descriptor_is_refused_and_never_holds_the_daemon(daemon):
    """A descriptor sent with a request, by a peer no one registered: the transport reads
    the request as bytes and the kernel closes the descriptor in the daemon's event loop,
    which waited for the socket's linger (5 s here; any time the peer likes)."""
    outcome = as_nobody(_stalls_the_daemon, daemon.socket, "with a ping")
    assert outcome["ping"] and outcome["seconds"] < 2, outcome
    assert outcome["sent"] == "refused", outcome   # SO_PASSRIGHTS
    assert daemon.call("ping") == {"pong": True}


def _stopped_meanwhile(daemon, pause):
    """The daemon stopped from the attacker's "stop" to its next byte."""
    os.read(pause[0], 4)
    daemon.process.send_signal(signal.SIGSTOP)
    os.write(pause[1], b"g")
    try:
        os.read(pause[0], 1)
        time.sleep(0.05)
    finally:
        daemon.process.send_signal(signal.SIGCONT)


@pytest.mark.parametrize("how", ["as its streams", "one too many", "then with a ping"])
def test_the_streams_an_application_is_given_never_hold_the_daemon(daemon, how):
    """An operator passes a lingering socket as its application's streams (or one too
    many; or another with a request right after them, the daemon stopped meanwhile so
    that both wait to be read): the daemon closed them on its event loop and every
    client waited out the linger."""
    if how == "then with a ping" and not _kernel_refuses_descriptors():
        pytest.skip("the kernel cannot refuse descriptors (SO_PASSRIGHTS, Linux 6.16): "
                    "a known limit")
    map_nobody(daemon, "operator", "application")
    to_attacker, from_attacker = os.pipe(), os.pipe()
    pause = (to_attacker[0], from_attacker[1])
    stopper = threading.Thread(target=_stopped_meanwhile,
                               args=(daemon, (from_attacker[0], to_attacker[1])))
    stopper.start()
    try:
        outcome = as_nobody(_stalls_the_daemon, daemon.socket, how, pause)
    finally:
        stopper.join()
        for fd in (*to_attacker, *from_attacker):
            os.close(fd)
    assert outcome["ping"] and outcome["seconds"] < 2, outcome
    if how == "one too many":
        assert outcome["answers"]["1"]["code"] == "invalid_request", outcome
    else:
        assert outcome["answers"]["1"]["status"] == "done", outcome
    if how == "then with a ping":   # taken with the streams, then closed in a thread
        assert outcome["answers"]["2"] == {"pong": True}, outcome
    assert daemon.call("ping") == {"pong": True}


def _lingering_sockets(count: int, linger: int) -> tuple:
    """`count` TCP sockets whose close waits up to `linger` s (as `_lingering_socket`),
    their windows filled together; and the listener that never accepts them."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    listener.bind(("127.0.0.1", 0))
    listener.listen(count)
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.connect(listener.getsockname())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, linger))
        sock.setblocking(False)
        socks.append(sock)
    for _ in range(10):
        for sock in socks:
            try:
                while True:
                    sock.send(b"x" * 65536)
            except BlockingIOError:
                pass
        time.sleep(0.02)
    return listener, socks


def _tasks(pid: int) -> list:
    """The names of process `pid`'s threads."""
    return sorted(Path(f"/proc/{pid}/task/{task}/comm").read_text().strip()
                  for task in os.listdir(f"/proc/{pid}/task"))


def _streams_that_linger(socket_path: str, daemon_pid: int, rounds: int) -> dict:
    """Run `rounds` attached applications, each given a lingering socket of its own as
    its standard input (dropped once passed: the daemon's close, at the application's
    end, is the last); the daemon's threads before and after, while they linger."""
    listener, socks = _lingering_sockets(rounds, 30)
    client = Raw(socket_path, timeout=30)
    first = client.request("w", "run_application", script="pass\n", attach=False)["result"]
    while client.request("p", "poll_application", id=first["id"])["result"]["status"] != "done":
        time.sleep(0.01)   # the daemon's threads for applications started
    before = _tasks(daemon_pid)
    out_r, out_w = os.pipe()
    statuses = []
    for i, sock in enumerate(socks):
        client.send(orjson.dumps({"id": i, "method": "run_application",
                                  "params": {"script": "pass\n"}}) + b"\n")
        assert client.receive()["event"]["event"] == "send_fds"
        socket.send_fds(client.sock, [b"F"], [sock.fileno(), out_w, out_w])
        threading.Thread(target=sock.close, daemon=True).start()
        while "event" in (answer := client.receive()):
            pass
        statuses.append(answer["result"]["status"])
    time.sleep(0.2)   # the last close handed over
    after = _tasks(daemon_pid)
    ping = client.ping_works()
    client.close()
    listener.close()  # resets them: the closes end
    return {"before": before, "after": after, "statuses": statuses, "ping": ping}


def test_closes_that_hang_never_start_a_thread_each(daemon):
    """Each application's streams were closed by a thread of their own: an operator whose
    streams linger started a thread per application, as many as it liked."""
    map_nobody(daemon, "operator", "application")
    outcome = as_nobody(_streams_that_linger, daemon.socket, daemon.process.pid, 12)
    assert outcome["statuses"] == ["done"] * 12 and outcome["ping"], outcome
    assert len(outcome["after"]) <= len(outcome["before"]) + 1, outcome   # one closer


def _a_burst_behind_the_streams(socket_path: str, pause, linger: int) -> dict:
    """The daemon stopped meanwhile: the streams, then a lingering socket (dropped), then
    descriptor messages of 253 pipe ends each (some 18,000 descriptors); then how the
    daemon answers it, a new connection's ping and another attached application."""
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))   # descriptors in flight
    listener, sock = _lingering_socket(linger)
    client = Raw(socket_path, timeout=30)
    client.send(orjson.dumps({"id": 1, "method": "run_application",
                              "params": {"script": "pass\n"}}) + b"\n")
    client.receive()   # send_fds
    reads, writes = _pipes(1)
    os.write(pause[1], b"stop")
    os.read(pause[0], 1)
    socket.send_fds(client.sock, [b"F"], [reads[0], writes[0], writes[0]])
    socket.send_fds(client.sock, [b" "], [sock.fileno()])
    sock.close()   # not the last: the message holds it
    sent = 0
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    client.sock.setblocking(False)
    try:
        for _ in range(72):
            socket.send_fds(client.sock, [b" "], [writes[0]] * descriptors.MAX_FDS)
            sent += 1
    except OSError:   # a full buffer, or the kernel's bound on descriptors in flight
        pass
    client.sock.settimeout(30)
    os.write(pause[1], b"c")
    began = time.monotonic()
    while "event" in (answer := client.receive()):
        pass
    other = Raw(socket_path, timeout=30)
    outcome = {"sent": sent, "answer": answer.get("error", answer.get("result")),
               "ping": other.ping_works(), "seconds": time.monotonic() - began}
    other.send(orjson.dumps({"id": 2, "method": "run_application",
                             "params": {"script": "pass\n"}}) + b"\n")
    outcome["again"] = other.receive()
    os.write(pause[1], b"d")   # the daemon's descriptors counted meanwhile
    os.read(pause[0], 1)
    other.close()
    client.close()
    listener.close()
    return outcome


def _stopped_then_counted(daemon, pause, counted: list):
    _stopped_meanwhile(daemon, pause)
    os.read(pause[0], 1)
    counted.append(len(os.listdir(f"/proc/{daemon.process.pid}/fd")))
    os.write(pause[1], b"g")


@pytest.mark.skipif(not _kernel_refuses_descriptors(),
                    reason="the kernel cannot refuse descriptors (SO_PASSRIGHTS, Linux 6.16): "
                           "a known limit")
def test_descriptors_sent_behind_the_streams_never_fill_the_daemon_s_table(daemon):
    """Messages of descriptors sent right behind the streams (the daemon busy meanwhile)
    were all taken, queued behind a lingering close: the daemon's descriptor table
    full (16,384 here), no connection accepted, for as long as the linger lasts."""
    map_nobody(daemon, "operator", "application")
    to_attacker, from_attacker = os.pipe(), os.pipe()
    counted = []
    helper = threading.Thread(target=_stopped_then_counted, args=(
        daemon, (from_attacker[0], to_attacker[1]), counted))
    helper.start()
    try:
        outcome = as_nobody(_a_burst_behind_the_streams, daemon.socket,
                            (to_attacker[0], from_attacker[1]), 10)
    finally:
        helper.join()
        for fd in (*to_attacker, *from_attacker):
            os.close(fd)
    assert outcome["sent"] > 8, outcome
    assert outcome["ping"] and outcome["seconds"] < 2, outcome
    assert outcome["answer"].get("code") == "invalid_request", outcome
    assert "more descriptors were sent than asked for" in outcome["answer"]["message"]
    again = outcome["again"]
    assert again["error"]["code"] == "busy" and again["error"]["reason"] == "descriptors", again
    assert counted[0] < 2 * descriptors.MAX_PENDING, counted
    reads, writes = _pipes()   # root's own are closed by a thread of root's
    client = Raw(daemon.socket, timeout=30)
    client.send(orjson.dumps({"id": 1, "method": "run_application",
                              "params": {"script": "print('ok')\n"}}) + b"\n")
    client.receive()
    socket.send_fds(client.sock, [b"F"], [reads[0], writes[1], writes[2]])
    for fd in (reads[0], writes[1], writes[2], writes[0]):
        os.close(fd)
    while "event" in (answer := client.receive()):
        pass
    assert answer["result"]["status"] == "done"
    assert os.read(reads[1], 10) == b"ok\n"
    for fd in (reads[1], reads[2]):
        os.close(fd)
    client.close()
    assert daemon.call("ping") == {"pong": True}


SEND_ON_THE_FILE_CHANNEL = "import os, socket, struct, sys, time\n" + inspect.getsource(
    _lingering_socket) + """\
listener, sock = _lingering_socket(5)
channel = socket.socket(fileno=4)   # the file channel (filechannel.py)
print("ready", flush=True)
while not os.path.exists(sys.argv[2]):   # the daemon stopped meanwhile
    time.sleep(0.01)
try:
    socket.send_fds(channel, [b'{"lfn": "/store/none"}\\n'], [sock.fileno()])
    print("sent", flush=True)
except PermissionError:
    print("refused", flush=True)
sock.close()
time.sleep(float(sys.argv[1]))   # the listener kept: the socket lingers
"""


@pytest.mark.skipif(not _kernel_refuses_descriptors(),
                    reason="the kernel cannot refuse descriptors (SO_PASSRIGHTS, Linux 6.16): "
                           "a known limit")
def test_an_application_cannot_pass_descriptors_on_its_file_channel(daemon):
    """A read-only application sends a lingering socket (dropped) with a question on its
    file channel, the daemon stopped meanwhile: the daemon reads the channel on its
    event loop, where the kernel closed the socket, and every client waited out the
    linger (5 s here)."""
    map_nobody(daemon, "operator", "application")
    go = daemon.state_dir.parent / "go"
    answer = as_nobody(requests, daemon.socket, [{"method": "run_application", "params": {
        "script": SEND_ON_THE_FILE_CHANNEL, "args": ["6", str(go)], "attach": False}}])[0]
    app_id = answer["result"]["id"]

    def said(prefix):
        deadline = time.monotonic() + 30
        while True:
            workarea = daemon.call("poll_application", id=app_id)["workarea"]
            if workarea and os.path.exists(f"{workarea}/stdout"):
                text = open(f"{workarea}/stdout").read()
                if text.startswith(prefix) and text.endswith("\n"):
                    return text
            assert time.monotonic() < deadline, daemon.call("poll_application", id=app_id)
            time.sleep(0.02)

    said("ready")
    daemon.process.send_signal(signal.SIGSTOP)
    try:
        go.touch()
        deadline = time.monotonic() + 10
        while True:   # the daemon is stopped: read the work area without it
            areas = [p for p in (daemon.state_dir / "work").iterdir()
                     if p.name.startswith(f"{app_id}-")]
            if areas and (areas[0] / "stdout").read_text().count("\n") == 2:
                break
            assert time.monotonic() < deadline, "the application never sent"
            time.sleep(0.01)
    finally:
        daemon.process.send_signal(signal.SIGCONT)
    time.sleep(0.2)
    began = time.monotonic()
    assert daemon.call("ping") == {"pong": True}
    seconds = time.monotonic() - began
    text = said("ready")
    daemon.call("kill_application", id=app_id)
    assert seconds < 1 and text == ("ready\nrefused\n" if _kernel_refuses_descriptors()
                                    else "ready\nsent\n"), (seconds, text)


# ------------------------------------------------------------- permissions
def test_files_and_directories_have_the_documented_modes(tmp_path):
    """The daemon creates its state directory itself here (under its own umask 0077)."""
    root = Path(tempfile.mkdtemp(prefix="dyn-", dir="/tmp"))
    os.chmod(root, 0o755)
    state_dir = root / "state"
    daemon = Daemon(root / "logs", str(root / "dynamod.sock"), ["--state-dir", str(state_dir)])
    daemon.database = str(state_dir / "inventory.db")
    daemon.start()
    try:
        daemon.call("inject", data={"site": [{"name": "T2_MODES"}]})
        map_nobody(daemon, "operator", "application")
        answer = as_nobody(requests, daemon.socket, [{"method": "run_application", "params": {
            "script": SCRIPT, "attach": False}}])[0]
        app = wait_for_end(daemon, answer["result"]["id"])
        assert app["status"] == "done"
        workarea = Path(app["workarea"])
        expected = {
            daemon.socket: (0o666, 0, stat.S_ISSOCK),
            state_dir: (0o711, 0, stat.S_ISDIR),
            daemon.database: (0o600, 0, stat.S_ISREG),
            daemon.database + "-wal": (0o600, 0, stat.S_ISREG),
            daemon.database + "-shm": (0o600, 0, stat.S_ISREG),
            state_dir / "changes.log": (0o600, 0, stat.S_ISREG),
            state_dir / "work": (0o711, 0, stat.S_ISDIR),
            workarea: (0o700, NOBODY, stat.S_ISDIR),
            workarea / "stdout": (0o600, NOBODY, stat.S_ISREG),
            workarea / "stderr": (0o600, NOBODY, stat.S_ISREG),
        }
        for path, (mode, owner, kind) in expected.items():
            info = os.lstat(path)
            assert kind(info.st_mode), path
            assert (oct(stat.S_IMODE(info.st_mode)), info.st_uid) == (oct(mode), owner), path
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------ revoked while a writer runs
@pytest.mark.parametrize("revoke", ["authorization", "role"])
def test_a_writer_whose_authorization_or_role_is_revoked_while_it_runs_applies_nothing(
        daemon, revoke):
    """Root revokes a script's authorization (or the user's role) while its writer runs:
    the writer's changes, sent when it ends, are refused (authfailed), as they are for
    a writer still waiting for the slot.  Before, they were applied and committed."""
    gate = Path(tempfile.mkdtemp(prefix="dyn-gate-"))
    gate.chmod(0o755)
    try:
        writer = ("import os, time\n"
                  "inventory.update(Site('T2_AFTER_REVOKE'))\n"
                  f"while not os.path.exists({str(gate / 'go')!r}):\n"
                  "    time.sleep(0.02)\n")
        daemon.call("authorize_script", title="late", checksum=checksum(writer))
        map_nobody(daemon, "operator", "application")
        started = as_nobody(requests, daemon.socket, [{"method": "run_application", "params": {
            "script": writer, "title": "late", "write": True, "attach": False}}])[0]["result"]
        deadline = time.monotonic() + 10
        while daemon.call("poll_application", id=started["id"])["status"] != "run":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        if revoke == "authorization":
            daemon.call("revoke_script_authorization", title="late")
        else:
            daemon.call("revoke_role", user="guest", role="operator", target="application")
        (gate / "go").touch()
        app = wait_for_end(daemon, started["id"])
    finally:
        shutil.rmtree(gate, ignore_errors=True)
    assert app["status"] == "authfailed", app
    assert "while it ran" in app["message"] and "nothing was applied" in app["message"], app
    assert "T2_AFTER_REVOKE" not in {s["name"] for s in daemon.call("list_sites")["sites"]}


def test_no_user_may_take_the_superuser_s_name(daemon):
    """Applications, their records and script authorizations are the superuser's by
    the name `root` (or the daemon's account's): a registered user of that name would
    have listed, polled and killed the superuser's applications and run the scripts
    authorized for it.  Such a name is refused."""
    app = requests(daemon.socket, [{"method": "run_application", "params": {
        "script": "import time\ntime.sleep(30)\n", "attach": False}}])[0]["result"]
    try:
        answer, _ = requests(daemon.socket, [
            {"method": "set_user", "params": {"name": "root", "accounts": ["nobody"]}},
            {"method": "grant_role", "params": {"user": "root", "role": "operator",
                                                "target": "application"}}])
        killed = as_nobody(requests, daemon.socket, [
            {"method": "kill_application", "params": {"id": app["id"]}}])[0]
        assert "error" in killed, killed   # before: killed, by an operator named root
        assert answer["error"]["code"] == "invalid_params", answer
        assert "names the superuser" in answer["error"]["message"]
        assert daemon.call("poll_application", id=app["id"])["status"] == "run"
    finally:
        daemon.call("kill_application", id=app["id"])


def test_a_stored_user_with_the_superuser_s_name_is_named_at_the_start(daemon):
    """One stored before set_user refused such names is named in the log with the way
    out (the store is the operator's to mend, not the daemon's to rewrite)."""
    daemon.stop()
    db = sqlite3.connect(daemon.database)
    with db:
        db.execute("INSERT INTO users (name, email) VALUES ('root', '')")
    db.close()
    daemon.start()
    assert ("the registered user 'root' bears a name of the superuser" in daemon.log()), \
        daemon.log()[-2000:]


def test_a_queued_writer_runs_under_the_writer_max_time_of_its_turn(start_daemon):
    """writer_max_time lowered on SIGHUP while a user's writer waits for the slot bounds
    that writer when its turn comes: before, it kept the longer time it was admitted with
    and held the slot (and every injection) that long."""
    daemon = start_daemon(config={"applications": {"writer_max_time": 3600.0}})
    gate = Path(tempfile.mkdtemp(prefix="dyn-gate-"))
    gate.chmod(0o755)
    try:
        hold = ("import os, time\n"
                f"while not os.path.exists({str(gate / 'go')!r}):\n    time.sleep(0.02)\n")
        slow = "import time\ntime.sleep(60)\n"
        daemon.call("authorize_script", title="hold", checksum=checksum(hold))
        daemon.call("authorize_script", title="t", checksum=checksum(slow))
        map_nobody(daemon, "operator", "application")
        first = requests(daemon.socket, [{"method": "run_application", "params": {
            "script": hold, "title": "hold", "write": True, "attach": False}}])[0]["result"]
        while daemon.call("status")["applications"]["writer"] is None:
            time.sleep(0.02)
        queued = as_nobody(requests, daemon.socket, [{"method": "run_application", "params": {
            "script": slow, "title": "t", "write": True, "attach": False,
            "timeout": 1.0}}])[0]["result"]   # hours: the whole hour then allowed
        config = Path(daemon.extra_args[daemon.extra_args.index("--config") + 1])
        config.write_text("[applications]\nwriter_max_time = 1.0\n")
        daemon.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "writer_max_time changed" not in daemon.log():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        (gate / "go").touch()
        assert wait_for_end(daemon, first["id"])["status"] == "done"
        app = wait_for_end(daemon, queued["id"], timeout=20)
    finally:
        shutil.rmtree(gate, ignore_errors=True)
    assert app["status"] == "killed" and "time-out after 1 s" in app["message"], app


# ------------------------------------------------ who is connected, from an application
WHO_IS_CONNECTED = """\
import gc, json, sys
needles = [a[::-1] for a in sys.argv[1:]]   # reversed: the arguments do not match
gc.unfreeze()                                # the daemon froze its objects at the fork
todo, seen, found = [sys.modules, sys._getframe()] + gc.get_objects(), set(), []
while todo:
    obj = todo.pop()
    if id(obj) in seen:
        continue
    seen.add(id(obj))
    if type(obj).__name__ in ("Identity", "Peer") and obj.__module__.startswith("dynamod"):
        found.append(repr(obj))
    for ref in gc.get_referents(obj):
        if isinstance(ref, str):
            found += [ref[:200] for n in needles if n in ref and obj is not needles]
        elif not isinstance(ref, (bytes, int, float)):
            todo.append(ref)
print(json.dumps(found))
"""


def test_an_application_finds_no_other_connected_user_s_name_or_dn(x509_daemon):
    """README: the users' DNs are dropped in the child; a walk of the objects reached
    every open connection's identity (jane's name, DN, uid and pid)."""
    daemon = x509_daemon
    map_nobody(daemon, "operator", "application")
    certificate, key = daemon.credentials[pki.JANE]
    jane = Raw(daemon.socket)
    try:
        challenge = jane.request(1, "auth_challenge")["result"]["challenge"]
        assert jane.request(2, "authenticate", chain=certificate,
                            signature=pki.prove(key, challenge))["result"]["user"] == "jane"
        assert "error" in jane.request(3, "backup", path="/tmp/dynamo-never.db")  # a refusal
        submitted = as_nobody(requests, daemon.socket, [{"method": "run_application", "params": {
            "script": WHO_IS_CONNECTED, "args": [pki.JANE[::-1]],
            "attach": False}}])[0]["result"]
        app = wait_for_end(daemon, submitted["id"])
    finally:
        jane.close()
    workarea = Path(app["workarea"])
    assert app["status"] == "done", (workarea / "stderr").read_text()
    found = orjson.loads((workarea / "stdout").read_text())
    assert not [f for f in found if pki.JANE in f or "'jane'" in f or "uid=0," in f], found
