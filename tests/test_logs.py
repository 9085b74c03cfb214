"""Logs an operator can trust: no peer forges a line, floods the log, or keeps a
rotated log file open."""

import logging
import os
import re
import signal
import subprocess
import sys
import time

from dynamod.logs import RateLimited, escape
from support.daemon import Daemon
from support.nobody import as_nobody
from support.wire import requests

STAMPED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")
FORGED = "2026-11-29 04:00:00,000 CRITICAL dynamod: forged"


def test_escape_writes_control_characters_out():
    assert escape("a\nb\r\x1b[31mc\x00\u2028é") == "a\\nb\\r\\x1b[31mc\\x00\\u2028é"
    # what reorders or hides a line's text: bidirectional overrides and isolates,
    # zero-width characters, the byte order mark
    assert escape("x\u202ey\u2066z\u200bw\ufeff") == "x\\u202ey\\u2066z\\u200bw\\ufeff"


def test_a_name_cannot_turn_a_change_log_line_around(daemon):
    """U+202E (right-to-left override) in a name showed the rest of its change-log line
    backwards in a terminal, and the daemon's log line likewise: both write it out."""
    daemon.call("inject", data={"site": [{"name": "T2_\u202eETELED", "host": "h\u2066x"}]})
    daemon.stop()
    text = (daemon.state_dir / "changes.log").read_text()
    assert "created site T2_\\u202eETELED host='h\\u2066x'" in text, text
    assert "\u202e" not in text and "\u2066" not in text


def test_no_peer_forges_a_line_of_either_log(daemon):
    """A request id and an application title carrying newlines and a forged line: each
    log keeps one line per entry, with the newline written out."""
    answer = requests(daemon.socket, [{"method": "inject", "params": {
        "data": {"site": [{"name": "T2_REAL"}]}}}])[0]
    assert "result" in answer
    forged_id = "7\n2026-11-29T04:00:00Z root request=8 deleted site T2_PRECIOUS"
    client = daemon.client()
    with client:
        client.sock.sendall(b'{"id": ' + _json(forged_id) + b', "method": "inject", '
                            b'"params": {"data": {"site": [{"name": "T2_FORGE"}]}}}\n')
        assert "result" in client.receive()
    app = requests(daemon.socket, [{"method": "run_application", "params": {
        "script": "pass\n", "title": "t\n" + FORGED, "attach": False}}])[0]
    assert "result" in app
    change_log = daemon.state_dir / "changes.log"
    deadline = time.monotonic() + 10
    while "T2_FORGE" not in (change_log.read_text() if change_log.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    lines = change_log.read_text().splitlines()
    assert all(STAMPED.match(line) for line in lines), lines
    assert not [line for line in lines if "deleted site T2_PRECIOUS" in line
                and "request=7\\n" not in line]
    time.sleep(0.3)
    daemon_lines = daemon.log().splitlines()
    assert not [line for line in daemon_lines if line.startswith(FORGED)]
    assert [line for line in daemon_lines if "t\\n" + FORGED in line]


def _json(value) -> bytes:
    import json
    return json.dumps(value).encode()


def test_refusals_of_one_peer_are_rate_limited(daemon):
    """An unregistered account sends 300 refused requests: a handful of lines."""
    before = daemon.log().count("refused inject")
    answers = as_nobody(requests, daemon.socket, [{"method": "inject", "params": {
        "data": {"site": [{"name": "T2_X"}]}}}] * 300)
    assert all(a["error"]["code"] == "not_authorized" for a in answers)
    time.sleep(0.2)
    assert daemon.log().count("refused inject") - before <= 5


def test_a_rate_limited_peer_gets_a_summary_line():
    lines = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    logger = logging.getLogger("test.ratelimit")
    logger.propagate = False
    logger.addHandler(Collect())
    limited = RateLimited(logger, burst=2, window=0.05)
    for n in range(10):
        limited.warning("uid 65534", "refused %d", n)
    limited.warning("uid 1000", "refused other")
    time.sleep(0.06)
    limited.warning("uid 65534", "refused again")
    assert lines == ["refused 0", "refused 1", "refused other",
                     "uid 65534: 8 more refusal(s) suppressed in 0.05 s", "refused again"]
    time.sleep(0.06)
    limited.warning("uid 1000", "x")
    limited.sweep()
    assert len(limited.peers) == 1


def test_a_detached_daemon_reopens_its_log_on_sighup(workdir):
    """logrotate moves the log away and sends SIGHUP (systemd/dynamod.logrotate): the
    daemon writes to a new file of the same name."""
    state = workdir / "state"
    env = {**os.environ, "DYNAMO_SOCKET": str(workdir / "d.sock")}
    started = subprocess.run([sys.executable, "-m", "dynamod", "--state-dir", str(state),
                              "--socket", str(workdir / "d.sock"), "--detach"],
                             capture_output=True, text=True, timeout=60, env=env)
    assert started.returncode == 0, started.stderr
    pid = int((state / "dynamod.pid").read_text())
    daemon = Daemon(state, str(workdir / "d.sock"))
    try:
        (state / "dynamod.log").rename(state / "dynamod.log.1")
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not (state / "dynamod.log").exists():
            assert time.monotonic() < deadline, "no new log file"
            time.sleep(0.02)
        daemon.call("ping")
        assert "SIGHUP" in (state / "dynamod.log").read_text()
        # a second start is refused, says why on the terminal, and leaves the pid file
        again = subprocess.run(started.args, capture_output=True, text=True, timeout=60,
                               env=env)
        assert again.returncode == 1
        assert again.stderr.startswith(
            f"dynamod failed to start: socket {workdir / 'd.sock'} is already served by a "
            f"running dynamod\n"), again.stderr
        assert int((state / "dynamod.pid").read_text()) == pid
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while (state / "dynamod.pid").exists():
            assert time.monotonic() < deadline, "the pid file stays"
            time.sleep(0.05)


def test_debug_shows_the_daemons_lines_not_every_sql_statement(start_daemon):
    """--log-level DEBUG: the daemon's own lines, not aiosqlite's two per statement run
    (the schema, every row's values: the DNs and e-mails of users among them)."""
    daemon = start_daemon("--log-level", "DEBUG")
    daemon.call("set_user", name="jane", email="jane@example.org")
    daemon.stop()
    log = daemon.log()
    assert re.search(r"DEBUG dynamod.connection: connection \d+ from", log)
    assert "aiosqlite" not in log
    assert log.count("jane@example.org") == 1   # the authorization change's own line
