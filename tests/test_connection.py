"""The protocol against a real dynamod on its real socket.

Raw sockets where the bytes matter (malformed lines, half-sent requests,
clients that never read); the only time bounds are generous liveness ones.
"""

import os
import socket
import time
from collections import Counter

import orjson
import pytest

from dynamoclient.connection import RemoteError
from support.daemon import rss_kib
from support.nobody import as_nobody as run_as_nobody
from support.wire import Raw

SITE = {"name": "T2_TEST", "host": "se.test.org", "backend": "gsiftp://se.test.org/cms",
        "status": "ready"}


@pytest.fixture
def raw(daemon):
    client = Raw(daemon.socket)
    yield client
    client.close()


def error(answer: dict) -> dict:
    assert "error" in answer, f"expected an error answer, got {answer}"
    return answer["error"]


# ------------------------------------------------------- errors are answers
BAD_LINES = [
    # line, expected code, expected id in the answer, expected `field`
    (b'{"id": 1, "method": "ping"', "parse_error", None, None),
    (b'{"id": 2, "method": "\xff\xfe"}', "parse_error", None, None),
    (b'{"id": 3, "method": "p\xc3"}', "parse_error", None, None),
    (b"\x00", "parse_error", None, None),
    (b'{"id": 4, "method": "pi\x00ng"}', "parse_error", None, None),
    (b'{"id": 5, "method": "ping"}\x00', "parse_error", None, None),
    (b"", "parse_error", None, None),
    (b"[1, 2]", "invalid_request", None, None),
    (b'{"id": true, "method": "ping"}', "invalid_request", None, None),
    (b'{"id": 1.5, "method": "ping"}', "invalid_request", None, None),
    (b'{"id": 6, "method": "ping", "params": [1]}', "invalid_request", 6, None),
    (b'{"id": 7, "method": "ping", "extra": 1}', "invalid_request", 7, None),
    (b'{"id": 8}', "invalid_request", 8, None),
    (b'{"id": 9, "method": "no_such_method"}', "method_not_found", 9, None),
    (b'{"id": 10, "method": "list_sites", "params": {"pattern": 5}}', "invalid_params", 10,
     "pattern"),
    (b'{"id": 11, "method": "list_datasets", "params": {"limit": true}}', "invalid_params", 11,
     "limit"),
    (b'{"id": 12, "method": "list_datasets", "params": {"limit": 1.0}}', "invalid_params", 12,
     "limit"),
    (b'{"id": 13, "method": "inject", "params": {"data": []}}', "invalid_params", 13, "data"),
    (b'{"id": 14, "method": "inject", "params": {"data": {}, "dry_run": 1}}', "invalid_params",
     14, "dry_run"),
    (b'{"id": 15, "method": "ping", "params": {"x": 1}}', "invalid_params", 15, "x"),
    (b'{"id": 16, "method": "get_dataset", "params": {}}', "invalid_params", 16, "name"),
    (b'{"id": 17, "method": "lfn_to_pfn", "params": {"site": "X"}}', "invalid_params", 17,
     "lfn"),
    (b'{"id": "s", "method": "get_dataset", "params": {"name": "/no/such"}}', "not_found", "s",
     "dataset"),
]


def test_bad_requests_get_error_answers_and_the_connection_stays_usable(raw):
    for line, code, rid, field in BAD_LINES:
        raw.send(line + b"\n")
        answer = raw.receive()
        assert answer["id"] == rid, (line, answer)
        assert error(answer)["code"] == code, (line, answer)
        assert error(answer)["message"], (line, answer)
        assert error(answer).get("field") == field, (line, answer)
        assert raw.ping_works(), line


def test_a_bad_request_in_a_pipeline_spoils_only_itself(raw):
    raw.send(b'{"id": 1, "method": "ping"}\n{"id": 2, "meth\xff\n'
             b'\x00\n{"id": 3, "method": "ping"}\n')
    answers = [raw.receive() for _ in range(4)]
    assert answers[0] == {"id": 1, "result": {"pong": True}}
    assert [error(a)["code"] for a in answers[1:3]] == ["parse_error", "parse_error"]
    assert answers[3] == {"id": 3, "result": {"pong": True}}


def test_deeply_nested_json_is_refused_and_does_not_crash_the_daemon(daemon, raw):
    depth = 1_000_000
    raw.send(b'{"id": 1, "method": "ping", "params": {"x": ' + b"[" * depth + b"]" * depth
             + b"}}\n")
    assert error(raw.receive())["code"] == "parse_error"
    assert raw.ping_works()
    assert daemon.process.poll() is None


# ------------------------------------------------------------------ limits
def test_a_line_over_the_limit_gets_too_large_then_the_connection_closes(start_daemon):
    daemon = start_daemon("--max-line-bytes", "4096")
    bystander = Raw(daemon.socket)
    assert bystander.ping_works()
    cases = [
        b'{"id": 1, "method": "ping", "params": {"x": "' + b"y" * 5000 + b'"}}\n',  # complete
        b'{"id": 1, "method": "ping", "params": {"x": "' + b"y" * 5000,            # partial
        b"z" * 4097,                                                               # just over
    ]
    for data in cases:
        client = Raw(daemon.socket)
        client.send(data)
        answers = client.rest()
        assert len(answers) == 1, answers
        assert answers[0]["id"] is None
        assert error(answers[0])["code"] == "too_large"
        assert "4096" in error(answers[0])["message"]
        client.close()
        assert bystander.ping_works()
    bystander.close()
    fresh = Raw(daemon.socket)
    assert fresh.ping_works()
    fresh.close()


def test_requests_before_an_overlong_line_are_answered_first(start_daemon):
    daemon = start_daemon("--max-line-bytes", "4096")
    client = Raw(daemon.socket)
    good = b"".join(orjson.dumps({"id": i, "method": "ping"}) + b"\n" for i in range(5))
    inject = orjson.dumps({"id": "inject", "method": "inject",
                           "params": {"data": {"site": [SITE]}}}) + b"\n"
    client.send(good + inject + b"x" * 5000)
    answers = client.rest()
    assert [a["id"] for a in answers] == [0, 1, 2, 3, 4, "inject", None]
    assert answers[5]["result"]["created"] == {"sites": 1}
    assert error(answers[-1])["code"] == "too_large"
    client.close()
    assert daemon.call("list_sites")["sites"][0]["name"] == "T2_TEST"


def test_the_client_library_reports_too_large_not_a_broken_pipe(start_daemon):
    daemon = start_daemon("--max-line-bytes", "4096")
    big = {"site": [dict(SITE, name=f"T2_SITE_{i:05d}") for i in range(20000)]}
    with daemon.client(timeout=10) as client:
        with pytest.raises(RemoteError) as raised:
            client.call("inject", data=big)
    assert raised.value.code == "too_large"
    assert daemon.call("list_sites") == {"sites": []}


def test_max_connections_refuses_the_extra_one_with_busy(start_daemon, workdir):
    config = workdir / "dynamod.toml"   # root may take every slot; none need be kept for it
    config.write_text("[daemon]\nsuperuser_reserve = 0\n")
    daemon = start_daemon("--max-connections", "3", "--config", str(config))
    clients = []
    deadline = time.monotonic() + 10
    while len(clients) < 3:  # the start-up probe may still be counted for a moment
        client = Raw(daemon.socket)
        answer = client.request(1, "ping")
        if "result" in answer:
            clients.append(client)
        else:
            assert error(answer)["code"] == "busy" and time.monotonic() < deadline
            client.close()
            time.sleep(0.05)
    extra = Raw(daemon.socket)
    answers = extra.rest()
    assert len(answers) == 1 and answers[0]["id"] is None
    assert error(answers[0])["code"] == "busy" and "3" in error(answers[0])["message"]
    extra.close()
    assert all(c.ping_works() for c in clients)
    clients.pop().close()
    deadline = time.monotonic() + 10
    while True:  # the daemon notices the close soon, then takes a new client
        again = Raw(daemon.socket)
        answer = again.request(2, "ping")
        if "result" in answer:
            break
        again.close()
        assert time.monotonic() < deadline, "a closed connection is never forgotten"
        time.sleep(0.05)
    assert again.ping_works()
    for client in [*clients, again]:
        client.close()


# ------------------------------------------------- pipelining, back-pressure
def test_2000_pipelined_requests_are_each_answered_exactly_once(daemon):
    client = Raw(daemon.socket, timeout=30)
    requests = []
    for i in range(2000):
        kind = i % 8
        if kind == 0:
            requests.append({"id": i, "method": "ping"})
        elif kind == 1:
            requests.append({"id": f"s{i}", "method": "whoami"})
        elif kind == 2:
            requests.append({"id": i, "method": "list_sites"})
        elif kind == 3:
            requests.append({"id": i, "method": "nope"})
        elif kind == 4:
            requests.append({"id": i, "method": "inject", "params": {"data": []}})
        elif kind == 5:
            requests.append({"id": i, "method": "inject",
                             "params": {"data": {"site": [dict(SITE, name=f"T2_P{i}")]}}})
        elif kind == 6:
            requests.append({"id": i, "method": "inject", "params": {
                "data": {"site": [dict(SITE, name=f"T2_D{i}")]}, "dry_run": True}})
        else:
            requests.append({"id": i, "method": "status"})
    client.send(b"".join(orjson.dumps(r) + b"\n" for r in requests))
    answers = [client.receive() for _ in requests]
    ids = Counter(a["id"] for a in answers)
    assert ids == Counter(r["id"] for r in requests)
    by_id = {a["id"]: a for a in answers}
    for r in requests:
        answer = by_id[r["id"]]
        if r["method"] in ("nope",) or r.get("params", {}).get("data") == []:
            assert "error" in answer, answer
        else:
            assert "result" in answer, answer
    client.close()
    created = {s["name"] for s in daemon.call("list_sites")["sites"]}
    assert created == {f"T2_P{i}" for i in range(5, 2000, 8)}


def test_a_client_that_never_reads_stalls_only_itself(daemon):
    pid = daemon.process.pid
    before = rss_kib(pid)
    flooder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    flooder.connect(daemon.socket)
    flooder.setblocking(False)
    chunk = b"".join(orjson.dumps({"id": i, "method": "list_methods"}) + b"\n"
                     for i in range(1000))  # ~2 kB answer for each 40 B request
    sent, cap = 0, 16 * 2**20
    blocked_since = None
    while sent < cap:
        try:
            sent += flooder.send(chunk)
            blocked_since = None
        except BlockingIOError:
            blocked_since = blocked_since or time.monotonic()
            if time.monotonic() - blocked_since > 1.0:
                break
            time.sleep(0.01)
    assert sent < cap, "the daemon kept reading from a client that reads no answers"

    other = Raw(daemon.socket, timeout=5)
    assert other.ping_works()
    assert other.request(1, "inject", data={"site": [SITE]})["result"]["created"] == {"sites": 1}
    grown_mib = (rss_kib(pid) - before) / 1024
    assert grown_mib < 64, f"daemon RSS grew by {grown_mib:.0f} MiB for a stalled client"
    flooder.close()
    assert other.ping_works()
    other.close()


def test_a_half_closed_client_still_gets_its_answers(daemon):
    client = Raw(daemon.socket)
    client.send(b'{"id": 1, "method": "ping"}\n'
                + orjson.dumps({"id": 2, "method": "inject",
                                "params": {"data": {"site": [SITE]}}}) + b"\n")
    client.sock.shutdown(socket.SHUT_WR)
    answers = client.rest()
    assert [a["id"] for a in answers] == [1, 2]
    assert answers[1]["result"]["created"] == {"sites": 1}
    client.close()


def test_a_client_vanishing_mid_request_leaves_the_daemon_serving(daemon):
    for tail in (b'{"id": 1, "meth', b'{"id": 2, "method": "inject", "params": {"data": {'):
        client = Raw(daemon.socket)
        client.send(orjson.dumps({"id": 0, "method": "inject",
                                  "params": {"data": {"site": [SITE]}}}) + b"\n" + tail)
        client.close()
    with daemon.client(timeout=5) as client:
        assert client.call("ping") == {"pong": True}
        deadline = time.monotonic() + 10
        while client.call("status")["connections"] > 1:
            assert time.monotonic() < deadline, "closed connections are never forgotten"
            time.sleep(0.05)
    assert daemon.process.poll() is None


# ------------------------------------------------------------------ identity
def as_nobody(socket_path: str, requests: list[dict]) -> list[dict]:
    """Send `requests` from a child running as uid/gid 65534; its answers, in order."""
    def send():
        client = Raw(socket_path, timeout=10)
        answers = []
        for r in requests:
            client.send(orjson.dumps(r) + b"\n")
            answers.append(client.receive())
        return answers

    return run_as_nobody(send)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_an_unprivileged_peer_is_refused_by_name_but_may_ping(daemon):
    ping, whoami, sites, inject = as_nobody(daemon.socket, [
        {"id": 1, "method": "ping"},
        {"id": 2, "method": "whoami"},
        {"id": 3, "method": "list_sites"},
        {"id": 4, "method": "inject", "params": {"data": {"site": [SITE]}}},
    ])
    assert ping == {"id": 1, "result": {"pong": True}}
    assert whoami["result"]["uid"] == 65534 and whoami["result"]["superuser"] is False
    assert "65534" in whoami["result"]["refusal"]
    for answer, rid in ((sites, 3), (inject, 4)):
        assert answer["id"] == rid
        assert error(answer)["code"] == "not_authorized"
        assert "uid 65534" in error(answer)["message"]
        assert error(answer)["uid"] == 65534
    assert daemon.call("list_sites") == {"sites": []}


def test_input_ending_inside_a_request_is_answered(daemon):
    client = Raw(daemon.socket)
    client.send(b'{"id": 1, "method": "ping"}\n{"id": 2, "method": "pi')
    client.sock.shutdown(socket.SHUT_WR)
    answers = client.rest()
    assert answers[0] == {"id": 1, "result": {"pong": True}}
    assert len(answers) == 2 and answers[1]["id"] is None
    assert error(answers[1])["code"] == "parse_error" and "newline" in error(answers[1])["message"]
    client.close()


def test_sizes_that_would_sum_past_64_bits_are_refused_and_the_connection_serves_on(raw):
    """Answers must stay encodable: a dataset whose blocks would add up past 2^63 - 1
    bytes is refused, and the connection keeps serving."""
    biggest = 2**63 - 1  # three blocks this size: the dataset's size exceeds 64 bits
    blocks = [{"name": f"b{i}", "size": biggest, "num_files": 1,
               "files": [{"name": f"/store/big/{i}", "size": biggest}]} for i in range(3)]
    injected = raw.request(1, "inject", data={"dataset": [{"name": "/big/d/x",
                                                          "blocks": blocks}]})
    assert error(injected)["code"] == "invalid_value"
    raw.send(b'{"id": 2, "method": "list_datasets"}\n{"id": 3, "method": "ping"}\n')
    assert raw.receive() == {"id": 2, "result": {"datasets": [], "truncated": False}}
    assert raw.receive() == {"id": 3, "result": {"pong": True}}


def test_threads_sharing_a_client_each_get_their_own_answers(seeded):
    """One Client used from several threads: each call returns its own request's
    answer (without turns, one thread read another's and raised 'answer for request')."""
    import threading

    results, failures = [], []

    def ask(site):
        try:
            for _ in range(100):
                results.append((site, client.call("list_sites", pattern=site)))
        except Exception as exc:   # noqa: BLE001 - the test reports whatever went wrong
            failures.append(repr(exc))

    with seeded.client() as client:
        threads = [threading.Thread(target=ask, args=(site,))
                   for site in ("T2_US_XYZ", "T3_US_XYZ") * 2]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
    assert len(results) == 400
    assert all([row["name"] for row in answer["sites"]] == [site] for site, answer in results)


def test_a_call_that_timed_out_leaves_the_client_usable(daemon):
    """Client(timeout=...): a call the daemon answers too late raises TimeoutError, and
    the next calls get their own answers (before, each got the one before it and
    raised 'answer for request N, expected N+1', for good)."""
    import signal

    with daemon.client(timeout=0.5) as client:
        os.kill(daemon.process.pid, signal.SIGSTOP)   # a daemon too busy to answer
        try:
            with pytest.raises(TimeoutError):
                client.call("whoami")
        finally:
            os.kill(daemon.process.pid, signal.SIGCONT)
        assert client.call("ping") == {"pong": True}
        assert client.call("list_sites", pattern="*") == {"sites": []}
