"""Operations: systemd readiness and activation, signals, logs, backup, start-up checks."""

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dynamoclient.connection import Client, ConnectionFailed
from dynamod import cli, tools
from support.daemon import Daemon, write_config
from support.nobody import nobody_runs_dynamod

ROOT = Path(__file__).parent.parent


def dataset_doc(n: int) -> dict:
    name = f"/Ops{n}/Run2017F/AOD"
    return {"dataset": [{"name": name, "blocks": [{"name": "b", "files": [
        {"name": f"/store/ops/{n}.root", "size": 10 + n}]}]}]}


def start_process(workdir, *args, env=None, **kwargs) -> subprocess.Popen:
    log = open(workdir / "daemon.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "dynamod", "--state-dir",
                             str(workdir / "state"), *args], stdout=log, stderr=log,
                            env={**os.environ, **(env or {})}, **kwargs)


def wait_ready(path, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with Client(path, timeout=5) as client:
                return client.call("ping")
        except (ConnectionFailed, OSError):
            time.sleep(0.02)
    raise AssertionError(f"the daemon at {path} did not answer")


def test_ready_arrives_on_notify_socket_only_after_loading(daemon, workdir):
    for n in range(3):
        daemon.call("inject", data=dataset_doc(n))
    daemon.stop()
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(workdir / "notify"))
    notify.settimeout(15)
    process = subprocess.Popen(
        [sys.executable, "-m", "dynamod", "--state-dir", str(daemon.state_dir),
         "--socket", daemon.socket], stderr=subprocess.DEVNULL,
        env={**os.environ, "NOTIFY_SOCKET": str(workdir / "notify"), "WATCHDOG_USEC": "200000"})
    try:
        messages = []
        while not any("READY=1" in m for m in messages):
            messages.append(notify.recv(4096).decode())
        assert messages[0].startswith("STATUS=loading")
        assert "STATUS=serving 0 sites, 3 datasets, 3 files" in messages[-1]
        with Client(daemon.socket) as client:  # ready means loaded and listening
            assert client.call("status")["inventory"]["datasets"] == 3
        pings = [notify.recv(4096).decode() for _ in range(3)]  # every 0.1 s
        assert pings == ["WATCHDOG=1"] * 3
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        while (message := notify.recv(4096).decode()) == "WATCHDOG=1":
            pass
        assert "STOPPING=1" in message
    finally:
        process.kill()
        notify.close()


def test_serves_an_inherited_listening_socket(workdir):
    path = str(workdir / "activated.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    fd = listener.fileno()
    log = open(workdir / "daemon.log", "ab")
    move = "" if fd == 3 else f"exec 3<&{fd} {fd}<&-; "  # systemd passes it as fd 3
    # (bash: dash takes single-digit descriptors only)
    process = subprocess.Popen(
        ["bash", "-c", move + 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"',
         sys.executable, "-m", "dynamod", "--state-dir", str(workdir / "state")],
        pass_fds=(fd,), stdout=log, stderr=log)
    listener.close()
    try:
        assert wait_ready(path) == {"pong": True}
        # the socket it serves, not the configured one it never opened
        assert f"dynamod ready on {path} (pid {process.pid}, socket from systemd;" in (
            workdir / "daemon.log").read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert os.path.exists(path)  # systemd's socket file is systemd's to remove
    finally:
        process.kill()


def test_sigterm_under_load_keeps_every_acknowledged_change(daemon, tmp_path):
    sleeper = tmp_path / "sleep.py"
    sleeper.write_text("import time\ntime.sleep(120)\n")
    app = subprocess.Popen([sys.executable, "-m", "dynamoclient.dynamo", str(sleeper)],
                           env=daemon.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    acknowledged, stop = [], threading.Event()

    def injector(first):
        try:
            with daemon.client() as client:
                n = first
                while not stop.is_set():
                    client.call("inject", data=dataset_doc(n))
                    acknowledged.append(n)
                    n += 1
        except Exception:
            pass  # the daemon went away mid-request: that one was not acknowledged

    threads = [threading.Thread(target=injector, args=(k * 10000,)) for k in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 15
    while len(acknowledged) < 40 or not _running_app(daemon):
        assert time.monotonic() < deadline, "no load built up"
        time.sleep(0.05)
    child = _running_app(daemon)["pid"]
    assert daemon.stop() == 0
    stop.set()
    for t in threads:
        t.join(30)
    app.wait(30)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
    daemon.start()
    names = {d["name"] for d in daemon.call("list_datasets")["datasets"]}
    assert {f"/Ops{n}/Run2017F/AOD" for n in acknowledged} <= names
    record = daemon.call("list_applications")["applications"][-1]
    assert record["status"] == "killed"


def _running_app(daemon):
    apps = daemon.call("list_applications")["applications"]
    return next((a for a in apps if a["status"] == "run"), None)


def test_sighup_applies_the_new_log_level(workdir):
    config = workdir / "dynamod.toml"
    config.write_text('[daemon]\nlog_level = "INFO"\n')
    sock = str(workdir / "d.sock")
    process = start_process(workdir, "--config", str(config), "--socket", sock)
    try:
        wait_ready(sock)
        config.write_text('[daemon]\nlog_level = "DEBUG"\n')
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        log = workdir / "daemon.log"
        while "[daemon] log_level changed from 'INFO' to 'DEBUG'" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        wait_ready(sock)
        assert re.search(r"DEBUG dynamod.connection: connection \d+ from", log.read_text())
        config.write_text('[daemon]\nlog_levl = "INFO"\n')
        process.send_signal(signal.SIGHUP)
        while "unknown key 'log_levl'" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


def test_check_config_names_unknown_keys_and_bad_values(workdir):
    config = workdir / "bad.toml"
    for text, expected in (('[daemon]\nsynchronus = "FULL"\n', "unknown key 'synchronus'"),
                           ('[deamon]\n', "unknown table [deamon]"),
                           ('[daemon]\nsynchronous = "SOMETIMES"\n', "[daemon] synchronous"),
                           ('[applications]\ntimeout = -1\n', "[applications] timeout"),
                           # from wherever it was started: / under systemd
                           ('[daemon]\nstate_dir = "state"\n',
                            "[daemon] state_dir must be an absolute path, not 'state'"),
                           ('[daemon]\ndatabase = ""\n', "[daemon] database must be an absolute")):
        config.write_text(text)
        result = subprocess.run([sys.executable, "-m", "dynamod", "--config", str(config),
                                 "--check-config"], capture_output=True, text=True)
        assert result.returncode == 2 and expected in result.stderr, result.stderr
    example = subprocess.run([sys.executable, "-m", "dynamod", "--config",
                              str(ROOT / "systemd" / "dynamod.toml.example"), "--check-config"],
                             capture_output=True, text=True)
    assert example.returncode == 0 and 'synchronous = "FULL"' in example.stdout


def test_backup_under_load_holds_everything_acknowledged_before(daemon, workdir):
    """A copy of several steps (the files of a large block: some 13 MiB), each step made
    while injections commit, holds one consistent state and says how far it is."""
    daemon.call("inject", data={"dataset": [{"name": "/Big/Run2017F/AOD", "blocks": [
        {"name": "b0", "files": [{"name": f"/store/big/{'x' * 100}/{n}.root", "size": n}
                                 for n in range(60_000)]}]}]})
    stop, acknowledged = threading.Event(), []

    def injector():
        with daemon.client() as client:
            n = 0
            while not stop.is_set():
                client.call("inject", data=dataset_doc(n))
                acknowledged.append(n)
                n += 1

    thread = threading.Thread(target=injector)
    thread.start()
    try:
        while len(acknowledged) < 30:
            time.sleep(0.02)
        before = list(acknowledged)
        result = subprocess.run([sys.executable, "-m", "dynamod", "backup", "--progress",
                                 str(workdir / "copy.db"), "--socket", daemon.socket],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        during = len(acknowledged) - len(before)
    finally:
        stop.set()
        thread.join(30)
    assert during > 0   # commits went on while it copied
    progress = result.stderr.splitlines()
    assert re.fullmatch(r"dynamod backup: copied 1\.0 of (\d+\.\d) MiB \(\d+ %\)",
                        progress[0]), result.stderr
    assert progress[-1].startswith("dynamod backup: copied ") and progress[-1].endswith(
        " MiB, checking the copy"), result.stderr
    with sqlite3.connect(workdir / "copy.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        names = {row[0] for row in db.execute("SELECT name FROM datasets")}
        assert db.execute("SELECT count(*) FROM files").fetchone()[0] == 60_000 + len(names) - 1
    assert {f"/Ops{n}/Run2017F/AOD" for n in before} <= names
    restored = Daemon(workdir / "restored", str(workdir / "r.sock"),
                      ["--database", str(workdir / "copy.db")]).start()
    try:
        assert restored.call("status")["inventory"]["datasets"] == len(names)
    finally:
        restored.stop()
    again = subprocess.run([sys.executable, "-m", "dynamod", "backup", str(workdir / "copy.db"),
                            "--socket", daemon.socket], capture_output=True, text=True)
    assert again.returncode == 1 and "never overwrites" in again.stderr
    (workdir / "fresh").mkdir()
    put = _dynamod("restore", workdir / "copy.db", "--database", workdir / "fresh" / "i.db",
                   "--progress")
    assert put.returncode == 0, put.stderr   # a copy of several steps says how far it is
    told = put.stderr.splitlines()
    assert re.fullmatch(r"dynamod restore: copied 1\.0 of (\d+\.\d) MiB \(\d+ %\)", told[0])
    assert told[-1].startswith("dynamod restore: copied ") and told[-1].endswith(
        " MiB, checking the copy"), put.stderr
    (workdir / "quiet").mkdir()   # not on a terminal, not asked: nothing said
    quiet = _dynamod("restore", workdir / "copy.db", "--database", workdir / "quiet" / "i.db")
    assert (quiet.returncode, quiet.stderr) == (0, "")


def test_a_long_check_says_it_is_still_at_work(workdir, monkeypatch, capsys):
    """SQLite's integrity_check has no steps to count, and takes minutes on a grid's
    store: `dynamod check` says it goes on, every HEARTBEAT_SECONDS (here 10 ms), on a
    terminal or with --progress; a job's standard error (cron mails it) stays quiet."""
    path = workdir / "big.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT UNIQUE)")
        db.executemany("INSERT INTO t VALUES (?, ?)",
                       ((n, f"/store/{'x' * 60}/{n}") for n in range(200_000)))
        db.execute("PRAGMA user_version = 1")   # numbered as a dynamod database
    monkeypatch.setattr(tools, "HEARTBEAT_SECONDS", 0.01)
    assert cli.main(["check", "--database", str(path)]) == 0
    assert capsys.readouterr() == (f"{path}: ok\n", "")
    assert cli.main(["check", "--database", str(path), "--progress"]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: ok\n"
    size = path.stat().st_size / (1 << 20)
    lines = err.splitlines()
    assert lines and all(re.fullmatch(rf"dynamod check: still checking {re.escape(str(path))} "
                                      rf"\({size:.1f} MiB\), \d+ s so far", line)
                         for line in lines), err


def test_unwritable_state_directory_is_a_one_line_error(workdir):
    (workdir / "file").write_text("not a directory")
    result = subprocess.run([sys.executable, "-m", "dynamod", "--state-dir",
                             str(workdir / "file" / "state"), "--socket",
                             str(workdir / "x.sock")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "is not writable" in errors[0]


def test_journal_logging_has_priorities_and_no_timestamps(workdir):
    log_path = workdir / "journal.log"
    sock = str(workdir / "j.sock")
    with open(log_path, "wb") as log:
        st = os.fstat(log.fileno())
        process = subprocess.Popen(
            [sys.executable, "-m", "dynamod", "--state-dir", str(workdir / "state"),
             "--socket", sock], stdout=log, stderr=log,
            env={**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    try:
        wait_ready(sock)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    lines = log_path.read_text().splitlines()
    assert lines and all(line.startswith(("<6>", "<4>", "<3>", "<7>")) for line in lines)
    assert any(line.startswith("<6>dynamod: dynamod ready on") for line in lines)


def test_change_log_has_one_line_per_change(daemon):
    daemon.call("inject", data={"site": [{"name": "T2_A", "status": "ready"}]})
    daemon.call("inject", data={"site": [{"name": "T2_A", "status": "morgue"}]})
    daemon.call("delete", data={"site": [{"name": "T2_A"}]})
    daemon.stop()  # the change log is written by a process; stopping flushes it
    lines = (daemon.state_dir / "changes.log").read_text().splitlines()
    assert len(lines) == 3
    assert "created site T2_A" in lines[0]
    # each call its own connection, each request id 1: the connection tells them apart
    connections = [int(re.search(r" root connection=(\d+) request=1 ", line)[1])
                   for line in lines]
    assert connections == sorted(set(connections))
    assert "status='ready'" in lines[0]
    assert "updated site T2_A status: 'ready' -> 'morgue'" in lines[1]
    assert lines[2].endswith("deleted site T2_A")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_units_verify(workdir):
    beside = Path(sys.executable).parent / "dynamod"  # installed with this Python (.venv/bin)
    dynamod = (str(beside) if beside.exists()
               else shutil.which("dynamod") or "/usr/local/bin/dynamod")
    for unit in ("dynamod.service", "dynamod.socket"):
        text = (ROOT / "systemd" / unit).read_text().replace("/usr/local/bin/dynamod", dynamod)
        (workdir / unit).write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(workdir / "dynamod.socket"),
                             str(workdir / "dynamod.service")], capture_output=True, text=True,
                            env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    assert result.returncode == 0, result.stderr
    assert "dynamod" not in result.stderr, result.stderr


def test_the_start_names_its_configuration_and_a_reload_what_waits_for_a_restart(
        start_daemon):
    """The ready line says which file was read; SIGHUP says so of every changed key it
    does not apply (the snapshot's timers were ignored without a word)."""
    daemon = start_daemon(config={"daemon": {"snapshot_idle": 30.0}})
    config = daemon.state_dir.parent / "dynamod.toml"
    assert f"; configuration {config})" in daemon.log()
    config.write_text('[daemon]\nsnapshot_idle = 5.0\nsnapshot_interval = 60.0\n'
                      'log_level = "DEBUG"\n')
    daemon.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "log_level changed" not in daemon.log():
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)
    log = daemon.log()
    assert "reload: [daemon] snapshot_idle changes only at restart" in log
    assert "reload: [daemon] snapshot_interval changes only at restart" in log


def test_a_reload_names_each_setting_as_the_configuration_file_does(start_daemon):
    """`[applications] timeout`, not the attribute that holds it (app_timeout), for the
    settings applied and for those that wait for a restart."""
    daemon = start_daemon(config={"applications": {"timeout": 7200.0}})
    config = daemon.state_dir.parent / "dynamod.toml"
    work = daemon.state_dir.parent / "work"
    write_config(config, {"daemon": {"idle_timeout": 77.0, "snapshot_idle": 5.0},
                          "applications": {"timeout": 60.0, "max_title_bytes": 100,
                                           "work_dir": str(work)}})
    daemon.process.send_signal(signal.SIGHUP)
    expected = {"[daemon] idle_timeout changed from 300.0 to 77.0",
                "[applications] timeout changed from 7200.0 to 60.0",
                "[applications] max_title_bytes changed from 1024 to 100",
                "[daemon] snapshot_idle changes only at restart",
                "[applications] work_dir changes only at restart"}
    deadline = time.monotonic() + 30
    while True:
        said = [line.split("reload: ", 1)[1] for line in daemon.log().splitlines()
                if "reload: " in line]
        if len(said) >= len(expected) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert sorted(said) == sorted(expected)


def test_a_reload_that_changes_nothing_says_so(daemon, start_daemon):
    """SIGHUP with the file unchanged, or with no file at all (the embedded defaults):
    one line says nothing changed and what was read, rather than nothing after
    `reloading the configuration`."""
    configured = start_daemon(config={"applications": {"timeout": 60.0}})
    config = configured.state_dir.parent / "dynamod.toml"
    for instance, source in ((daemon, "no configuration file: the defaults and the options"),
                             (configured, f"configuration {config}")):
        instance.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while f"reload: no setting changed ({source})" not in instance.log():
            assert time.monotonic() < deadline, instance.log()
            time.sleep(0.05)


def _effective(*args) -> dict:
    """`dynamod --check-config`'s settings: {(table, key): value as printed}."""
    result = subprocess.run([sys.executable, "-m", "dynamod", *args, "--check-config"],
                            capture_output=True, text=True, check=True)
    settings, table = {}, None
    for line in result.stdout.splitlines():
        if line.startswith("["):
            table = line.strip("[]")
        elif " = " in line:
            key, value = line.split(" = ", 1)
            settings[table, key] = value
    return settings


def test_the_example_configuration_documents_every_key_and_starts_a_daemon(workdir):
    """systemd/README installs the example as it is: it shows every key the daemon reads,
    each with its default but the paths, and a daemon starts with it (its paths moved to
    a scratch directory), also on a host without a grid CA directory (its ca_path was
    set, so the start failed where --check-config passed)."""
    example = (ROOT / "systemd" / "dynamod.toml.example").read_text()
    defaults = _effective("--config", "/dev/null")
    paths = {"state_dir", "socket", "database", "change_log", "work_dir", "ca_path"}
    for (table, key), value in defaults.items():
        assert f"\n{key} = " in example or f"\n# {key} = " in example, key
    moved = example.replace("/var/lib/dynamo", str(workdir / "state")).replace(
        "/run/dynamo/dynamod.sock", str(workdir / "d.sock"))
    (workdir / "dynamod.toml").write_text(moved)
    given = _effective("--config", str(workdir / "dynamod.toml"))
    assert given.keys() == defaults.keys()
    assert {k: v for k, v in given.items() if k[1] not in paths} == {
        k: v for k, v in defaults.items() if k[1] not in paths}
    process = start_process(workdir, "--config", str(workdir / "dynamod.toml"))
    try:
        assert wait_ready(str(workdir / "d.sock")) == {"pong": True}, (
            workdir / "daemon.log").read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.kill()


def _dynamod(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dynamod", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def _dataset_names(daemon) -> set:
    return {d["name"] for d in daemon.call("list_datasets")["datasets"]}


def _served_names(daemon) -> set:
    """The datasets a start of the stopped `daemon` serves (it is stopped again)."""
    try:
        daemon.start()
        return _dataset_names(daemon)
    finally:
        daemon.stop()


def test_restore_after_a_crash_serves_the_backup_and_keeps_the_old_database(workdir):
    """The usual restore follows a crash, which leaves the database's -wal file: copied
    over the database by hand, the backup was served with the old WAL's pages over it
    (here: the datasets made after the backup).  `dynamod restore` moves the database
    and its WAL aside together, and is refused while a daemon holds the database."""
    daemon = Daemon.in_directory(workdir).start()
    daemon.call("inject", data=dataset_doc(0))
    assert _dynamod("backup", workdir / "copy.db", "--socket", daemon.socket).returncode == 0
    for n in (1, 2):
        daemon.call("inject", data=dataset_doc(n))
    refused = _dynamod("restore", workdir / "copy.db", "--state-dir", daemon.state_dir)
    assert refused.returncode == 1 and "is in use by another dynamod" in refused.stderr
    itself = _dynamod("restore", daemon.state_dir / "inventory.db", "--state-dir",
                      daemon.state_dir)
    assert itself.returncode == 1 and "is the database itself" in itself.stderr
    assert len(_dataset_names(daemon)) == 3
    daemon.kill9()
    assert (daemon.state_dir / "inventory.db-wal").stat().st_size > 0
    result = _dynamod("restore", workdir / "copy.db", "--state-dir", daemon.state_dir)
    assert result.returncode == 0, result.stderr
    aside = result.stdout.strip().rsplit(" ", 1)[1]
    last = (daemon.state_dir / "changes.log").read_text().splitlines()[-1]
    assert f"restored the database from {workdir / 'copy.db'}; the database it replaced is " \
           f"{aside}: the changes after the copy was taken, logged above, are not in it" in last
    assert _served_names(daemon) == {"/Ops0/Run2017F/AOD"}
    old = Daemon(workdir / "old", str(workdir / "old.sock"), ["--database", aside]).start()
    try:   # nothing committed was thrown away
        assert len(_dataset_names(old)) == 3
    finally:
        old.stop()


def test_tmpfiles_gives_the_work_directory_the_daemons_mode(daemon):
    """systemd-tmpfiles --create runs at boot and after package installs, also while the
    daemon serves: its mode for the work areas' directory must be the daemon's own (it
    was 1733, writable by every account)."""
    line = next(line for line in (ROOT / "systemd" / "dynamo.tmpfiles.conf").read_text()
                .splitlines() if line.startswith("d /var/lib/dynamo/work "))
    mode = (daemon.state_dir / "work").stat().st_mode & 0o7777
    assert int(line.split()[2], 8) == mode == 0o711


def _refused_start(workdir, config: str) -> str:
    """Start with this configuration, which must stop the start (exit 1, no traceback, no
    socket left); returns the log."""
    (workdir / "dynamod.toml").write_text(config)
    process = start_process(workdir, "--socket", str(workdir / "d.sock"),
                            "--config", str(workdir / "dynamod.toml"))
    try:
        assert process.wait(30) == 1
    finally:
        process.kill()
    log = (workdir / "daemon.log").read_text()
    assert "Traceback" not in log, log
    assert not os.path.exists(workdir / "d.sock")
    return log


@pytest.mark.parametrize("where, why", [("log-dir", "is not a regular file"),
                                        ("missing/changes.log", "its directory does not exist")])
def test_a_change_log_no_write_can_reach_stops_the_start_in_one_line(workdir, where, why):
    """It was taken, and every change then failed to reach the file (a directory where
    the file should be, a directory that does not exist), its lines piling up in the
    store."""
    (workdir / "log-dir").mkdir()
    log = _refused_start(workdir, f'[daemon]\nchange_log = "{workdir / where}"\n')
    assert f"ERROR dynamod: change log {workdir / where} ([daemon] change_log)" in log
    assert why in log


def test_a_work_dir_that_cannot_be_made_stops_the_start_in_one_line(workdir):
    """It was a traceback, and then the process hung, its store's threads still
    running: under systemd, until the start timed out."""
    (workdir / "file").write_text("not a directory")
    log = _refused_start(workdir, f'[applications]\nwork_dir = "{workdir / "file"}"\n')
    assert (f"ERROR dynamod: cannot make the work areas' directory {workdir / 'file'} "
            f"([applications] work_dir): File exists") in log


def test_top_tells_the_daemons_threads_apart(daemon):
    """`top -H` and `ps -L` show each thread's kernel name: the daemon names its own
    (the store's connection, the change log's compressor and the relay of its writer),
    and the change log's writer, a process of its own."""
    big = {"dataset": [{"name": "/Threads/A/RAW", "blocks": [{"name": "b", "files": [
        {"name": f"/store/threads/{i:05d}/{'x' * 60}", "size": 1} for i in range(2000)]}]}]}
    daemon.inject_json(big)   # an entry large enough to be compressed
    names = {Path(task, "comm").read_text().strip()
             for task in Path(f"/proc/{daemon.process.pid}/task").iterdir()}
    assert {"dynamod-store", "dynamod-relay", "dynamod-zlib"} <= names, names
    assert Path(f"/proc/{_change_log_writer(daemon)}/comm").read_text() == "dynamod-log\n"


def _change_log_writer(daemon) -> int:
    """The pid of the daemon's change-log writer."""
    deadline = time.monotonic() + 10
    while True:
        for task in Path(f"/proc/{daemon.process.pid}/task").iterdir():
            for pid in (task / "children").read_text().split():
                if Path(f"/proc/{pid}/comm").read_text().strip() == "dynamod-log":
                    return int(pid)
        assert time.monotonic() < deadline, "no change-log writer"
        time.sleep(0.02)


def _wait_for_line(path: Path, text: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while text not in (path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, f"{text!r} not in {path}"
        time.sleep(0.05)


def test_the_change_log_writer_holds_nothing_of_the_daemons_and_ignores_its_signals(daemon):
    """The writer formats every line apart from the daemon (its GIL is the event
    loop's): it holds no capability, and a Ctrl-C in the terminal (SIGINT to the
    process group), SIGTERM or SIGHUP meant for the daemon leave it running, so the
    daemon's last lines are still written at its end."""
    writer = _change_log_writer(daemon)
    status = Path(f"/proc/{writer}/status").read_text()
    held = {line.split()[0]: int(line.split()[1], 16) for line in status.splitlines()
            if line.startswith(("CapInh", "CapPrm", "CapEff", "CapAmb"))}
    assert held and not any(held.values()), held
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        os.kill(writer, sig)
    daemon.call("inject", data={"site": [{"name": "T2_SIGNALS", "status": "ready"}]})
    daemon.stop()
    assert "created site T2_SIGNALS" in (daemon.state_dir / "changes.log").read_text()
    assert not Path(f"/proc/{writer}").exists()


def test_a_change_log_writer_that_dies_is_started_again_and_no_line_is_lost(daemon):
    """Its lines wait in the store while no writer runs; the next one writes them."""
    daemon.call("inject", data={"site": [{"name": "T2_BEFORE", "status": "ready"}]})
    change_log = daemon.state_dir / "changes.log"
    _wait_for_line(change_log, "created site T2_BEFORE")
    writer = _change_log_writer(daemon)
    os.kill(writer, signal.SIGKILL)
    daemon.call("inject", data={"site": [{"name": "T2_AFTER", "status": "ready"}]})
    _wait_for_line(change_log, "created site T2_AFTER")
    assert _change_log_writer(daemon) != writer
    assert f"change log's writer (process {writer}) ended with status -9" in daemon.log()
    lines = change_log.read_text().splitlines()
    assert [line for line in lines if "created site" in line] == [
        line for line in lines if "T2_BEFORE" in line or "T2_AFTER" in line]
    assert sum("T2_AFTER" in line for line in lines) == 1


def test_sighup_names_a_file_setting_the_command_line_keeps(start_daemon):
    """A setting the command line gives is not taken from the file at SIGHUP: changed
    there, it is named in the log instead of being silently kept."""
    daemon = start_daemon("--log-level", "INFO", config={"daemon": {"log_level": "INFO"}})
    config = Path(daemon.extra_args[daemon.extra_args.index("--config") + 1])
    write_config(config, {"daemon": {"log_level": "DEBUG", "idle_timeout": 77.0}})
    daemon.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload: [daemon] idle_timeout changed" not in daemon.log():
        assert time.monotonic() < deadline, daemon.log()[-2000:]
        time.sleep(0.02)
    assert (f"reload: [daemon] log_level changed in {config}, but the command line sets it "
            f"('INFO'): "
            f"kept") in daemon.log()
    assert "log_level changed from" not in daemon.log()


def test_the_change_log_writer_of_a_killed_daemon_ends_without_a_word(daemon):
    """A crashed daemon's writer finds its input ended, writes what it can and stops:
    no traceback for a daemon it cannot tell any more (the next start writes the
    rest)."""
    writer = _change_log_writer(daemon)
    os.kill(writer, signal.SIGSTOP)   # so that it has a line to write once its daemon is gone
    daemon.call("inject", data={"site": [{"name": "T2_CRASH", "status": "ready"}]})
    daemon.process.kill()
    daemon.process.wait(10)
    os.kill(writer, signal.SIGCONT)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{writer}").exists() and "Z" not in Path(
            f"/proc/{writer}/stat").read_text().split(") ")[1][:1]:
        assert time.monotonic() < deadline, "the writer outlived its daemon"
        time.sleep(0.02)
    assert "Traceback" not in daemon.log(), daemon.log()[-2000:]
    assert "created site T2_CRASH" in (daemon.state_dir / "changes.log").read_text()


def _stopped_daemon_with_a_backup(workdir) -> tuple[Daemon, Path]:
    daemon = Daemon.in_directory(workdir).start()
    daemon.call("inject", data=dataset_doc(0))
    assert _dynamod("backup", workdir / "copy.db", "--socket", daemon.socket).returncode == 0
    daemon.stop()
    return daemon, workdir / "copy.db"


def test_restore_and_check_refuse_a_file_this_dynamod_cannot_serve(workdir):
    """A copy of a newer dynamod (its schema version above this one's), or a file that is
    no dynamod database at all (another program's SQLite file, an empty file), passed the
    check and was restored: the start then refused the first, and served an empty
    inventory made in the second.  Both are refused, the database left as it was."""
    daemon, copy = _stopped_daemon_with_a_backup(workdir)
    newer, other = workdir / "newer.db", workdir / "other.db"
    shutil.copy(copy, newer)
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 99")
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    (workdir / "empty.db").write_bytes(b"")
    for path, why in ((newer, "has schema version 99, of a newer dynamod"),
                      (other, "is not a dynamod database"),
                      (workdir / "empty.db", "is not a dynamod database")):
        checked = _dynamod("check", "--database", path)
        assert checked.returncode == 1 and f"{path} {why}" in checked.stderr, checked.stderr
        restored = _dynamod("restore", path, "--state-dir", daemon.state_dir)
        assert restored.returncode == 1, restored.stdout
        assert f"the copy {path} {why}" in restored.stderr
        assert restored.stderr.rstrip().endswith("nothing changed")
    assert not list(daemon.state_dir.glob("inventory.db.replaced-*"))
    assert _dynamod("check", "--database", copy).stdout == f"{copy}: ok\n"
    assert _served_names(daemon) == {"/Ops0/Run2017F/AOD"}


def test_a_schema_upgrade_says_that_older_dynamods_no_longer_open_the_file(workdir):
    """The upgrade was silent; the next downgrade met `upgrade dynamod` with no word in
    the journal of when that way back had closed."""
    daemon, _ = _stopped_daemon_with_a_backup(workdir)
    with sqlite3.connect(daemon.database) as db:   # as version 4 left it
        db.executescript("DROP TABLE commits; DROP TABLE snapshot_stamp; "
                         "DROP TABLE snapshot_parts; PRAGMA user_version = 4;")
    line = (f"database {daemon.database}: schema upgraded from version 4 to 5; a dynamod "
            f"older than this one no longer opens it (a backup taken before the upgrade does)")
    assert _served_names(daemon) == {"/Ops0/Run2017F/AOD"}
    assert daemon.log().count(line) == 1
    daemon.start()
    daemon.stop()
    assert daemon.log().count(line) == 1   # said once: the next start had nothing to do


def test_check_config_reads_the_ca_directory_as_the_start_does(workdir):
    """A ca_path that does not exist passed --check-config (the install step's check)
    and then stopped the start; and --check-config printed `ca_path = ""` where there is
    none, which read back as a configuration is refused."""
    config = workdir / "dynamod.toml"
    config.write_text(f'[auth]\nca_path = "{workdir / "certificates"}"\n')
    result = _dynamod("--config", config, "--check-config")
    assert result.returncode == 2, result.stdout
    assert (f"dynamod: {config}: cannot read CA certificates {workdir / 'certificates'} "
            f"([auth] ca_path): No such file or directory; install the CA certificates "
            f"there, or remove the key") in result.stderr
    if os.path.isdir("/etc/grid-security/certificates"):
        return   # the default is then a path
    printed = _dynamod("--config", "/dev/null", "--check-config")
    config.write_text(printed.stdout)
    again = _dynamod("--config", config, "--check-config")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[1:] == printed.stdout.splitlines()[1:]


def test_a_key_outside_its_table_is_told_where_it_belongs(workdir):
    """The original's flat habit (a key above every table) read as `unknown table
    [synchronous]`; a key under the wrong table listed that table's keys only."""
    config = workdir / "bad.toml"
    for text, expected in (
            ('synchronous = "NORMAL"\n[daemon]\n',
             "synchronous is outside any table: put it under [daemon]"),
            ('[daemon]\ntimeout = 60\n',
             "unknown key 'timeout' in [daemon]; it belongs in [applications]"),
            ('[daemon]\nca_path = "/etc/grid-security/certificates"\n',
             "unknown key 'ca_path' in [daemon]; it belongs in [auth]"),
            ('verbose = true\n', "verbose is outside any table: no table has that key")):
        config.write_text(text)
        result = _dynamod("--config", config, "--check-config")
        assert result.returncode == 2 and f"dynamod: {config}: {expected}" in result.stderr, \
            result.stderr


def test_a_reload_that_cannot_read_the_ca_directory_says_what_it_keeps(workdir):
    """`keeping ` ended the line: with no CA directory before, nothing was named."""
    if os.path.isdir("/etc/grid-security/certificates"):
        pytest.skip("the default ca_path is a directory here")
    config = workdir / "dynamod.toml"
    config.write_text("")
    process = start_process(workdir, "--socket", str(workdir / "d.sock"), "--config", str(config))
    try:
        wait_ready(str(workdir / "d.sock"))
        config.write_text(f'[auth]\nca_path = "{workdir / "certificates"}"\n')
        process.send_signal(signal.SIGHUP)
        _wait_for_line(workdir / "daemon.log", "keeping no CA certificates (peers identified "
                       "by their Unix account)")
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.kill()


def test_a_backup_the_daemon_cannot_write_says_whose_write_it_is(daemon, rig):
    """`dynamod backup` is run by root, the copy written by the daemon: a directory its
    account may not write to (or outside the unit's ReadWritePaths: a read-only file
    system) answered only `Permission denied`, or `Read-only file system`."""
    place = rig.tmpfs("ro", "1m")
    rig.run("mount", "-o", "remount,ro", str(place))
    result = _dynamod("backup", place / "copy.db", "--socket", daemon.socket)
    assert result.returncode == 1
    assert (f"backup to {place / 'copy.db'} failed: Read-only file system; the daemon "
            f"writes the copy as its own account") in result.stderr
    assert f"{place} must be writable by it (under systemd, also listed in " \
           f"ReadWritePaths" in result.stderr


def test_a_state_directory_of_another_account_names_both(workdir):
    """`is not writable: Permission denied` did not say that the daemon was started as
    the wrong account (or the directory made by root for the service's)."""
    if os.geteuid() != 0 or not nobody_runs_dynamod():
        pytest.skip("needs root, and setpriv running this interpreter with dynamod as nobody")
    state = workdir / "state"
    state.mkdir(mode=0o755)
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             sys.executable, "-m", "dynamod", "--state-dir", str(state),
                             "--socket", str(workdir / "d.sock")],
                            capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 1, result.stderr
    assert (f"state directory {state} is not writable: Permission denied (it is root's, "
            f"mode 0755; this dynamod runs as nobody") in result.stderr, result.stderr


def test_dynamod_status_shows_the_daemon_and_fails_without_one(seeded, workdir):
    """`status` had no command: an operator or a monitoring probe spoke JSON to the
    socket.  `dynamod status` prints it in lines (or as JSON), and exits 1 when no daemon
    answers."""
    run = lambda *args: subprocess.run([sys.executable, "-m", "dynamod", "status", *args],
                                       capture_output=True, text=True, timeout=60)
    shown = run("--socket", seeded.socket)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("dynamod ") and f"pid {seeded.process.pid}" in lines[0], lines
    assert any(line.startswith("inventory ") and "1 datasets" in line for line in lines), lines
    assert "writer slot free" in shown.stdout
    as_json = json.loads(run("--socket", seeded.socket, "--json").stdout)
    assert as_json["inventory"]["datasets"] == 1 and as_json["pid"] == seeded.process.pid
    missing = run("--socket", str(workdir / "none.sock"))
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr.startswith("dynamod status: cannot connect to dynamod at "), \
        missing.stderr


def test_a_restore_killed_while_it_copies_leaves_a_database_in_place(workdir):
    """`dynamod restore` moved the database aside, then wrote the copy (minutes for a
    large one): killed meanwhile (SIGKILL, a power cut, a closed ssh session's SIGHUP)
    it left no database at its path, and the next start made an empty one and served
    it, every acknowledged change out of sight.  Now the copy is written beside the
    database first and put in its place by a rename: killed while it copies, the old
    database is still served, whole; run again, the restore completes."""
    daemon = Daemon.in_directory(workdir).start()
    daemon.call("inject", data={"dataset": [{"name": "/Big/Run2017F/AOD", "blocks": [
        {"name": "b", "files": [{"name": f"/store/big/{n:06}.root", "size": n + 1}
                                for n in range(12_000)]}]}]})
    assert _dynamod("backup", workdir / "copy.db", "--socket", daemon.socket).returncode == 0
    for n in (1, 2):
        daemon.call("inject", data=dataset_doc(n))
    daemon.kill9()
    restore = subprocess.Popen(
        [sys.executable, "-m", "dynamod", "restore", str(workdir / "copy.db"), "--state-dir",
         str(daemon.state_dir), "--progress"], stderr=subprocess.PIPE, text=True)
    try:
        line = restore.stderr.readline()
        assert line.startswith("dynamod restore: copied "), line   # while it copies
    finally:
        restore.kill()
        restore.wait()
    assert _served_names(daemon) == {"/Big/Run2017F/AOD", "/Ops1/Run2017F/AOD",
                                     "/Ops2/Run2017F/AOD"}
    again = _dynamod("restore", workdir / "copy.db", "--state-dir", daemon.state_dir)
    assert again.returncode == 0, again.stderr
    assert not [p.name for p in daemon.state_dir.iterdir() if p.name.endswith(".tmp")]
    assert _served_names(daemon) == {"/Big/Run2017F/AOD"}


def test_a_restore_never_puts_the_database_aside_over_an_earlier_one(workdir):
    """The database a restore replaces is kept as PATH.replaced-TIME, to the second:
    a second restore in the same second (or after the clock went back) renamed its
    database over the first's, which held the changes after the backup, lost.  Each
    now gets a name of its own."""
    daemon = Daemon.in_directory(workdir).start()
    daemon.call("inject", data=dataset_doc(0))
    assert _dynamod("backup", workdir / "copy.db", "--socket", daemon.socket).returncode == 0
    daemon.call("inject", data=dataset_doc(1))
    daemon.stop()
    database = daemon.state_dir / "inventory.db"
    now = int(time.time())
    earlier = [Path(f"{database}.replaced-{time.strftime('%Y%m%dT%H%M%S', time.localtime(t))}")
               for t in range(now, now + 30)]
    for path in earlier:   # as an earlier restore, by the clock, named its database
        path.write_bytes(b"an earlier database")
    result = _dynamod("restore", workdir / "copy.db", "--state-dir", daemon.state_dir)
    assert result.returncode == 0, result.stderr
    aside = Path(result.stdout.strip().rsplit(" ", 1)[1])
    assert aside not in earlier
    assert all(p.read_bytes() == b"an earlier database" for p in earlier)
    old = Daemon(workdir / "old", str(workdir / "old.sock"), ["--database", str(aside)]).start()
    try:
        assert len(_dataset_names(old)) == 2
    finally:
        old.stop()


def test_a_torn_change_log_line_is_cut_before_the_next_append(workdir):
    """A change-log writer killed in the middle of its write leaves part of an entry it
    never told (so still queued in the database, and written again whole): the next
    append went on after the fragment, and one line held two, the second hidden from a
    grep for lines that begin with a time.  The fragment is cut first."""
    daemon = Daemon.in_directory(workdir).start()
    daemon.call("inject", data=dataset_doc(0))
    daemon.change_log_written()
    daemon.stop()
    log = daemon.state_dir / "changes.log"
    whole = log.read_bytes()
    assert whole.endswith(b"\n")
    with open(log, "ab") as f:   # what a write cut by SIGKILL leaves
        f.write(b"2026-11-30T05:00:00Z root created dataset /Ops1/Run2017F/AO")
    daemon.start()
    try:
        daemon.call("inject", data=dataset_doc(1))
        daemon.change_log_written()
    finally:
        daemon.stop()
    text = log.read_bytes()
    assert text.startswith(whole) and b"/AO2026" not in text
    assert b"dataset /Ops1/Run2017F/AOD " in text[len(whole):]
    assert all(re.match(r"\d{4}-\d\d-\d\dT", line) for line in text.decode().splitlines())
