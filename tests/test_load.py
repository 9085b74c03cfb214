"""Load, CI size: 50 concurrent clients for 5 s against a real dynamod.

The clients mix queries (some pipelined), injections and deletions, read-only
applications (`run_application` without attach, and the real `dynamo` with its
standard streams passed over the socket), hostile lines, clients that hang up
in the middle of an injection and one that never reads its answers; see
tests/reliability/load.py, which also runs the long version:

    python -m tests.reliability.load --clients 200 --seconds 60

Latency is printed (pytest -s), never asserted; memory only against a generous bound.
Three more loads: an unregistered account attacking (`--attack`, 3 s quiet then 3 s
attacked), many large application scripts (the records must not keep them), and a
burst of connections while the daemon is stopped (the listen backlog).
"""

import os
import signal
import socket
import time

import pytest

from reliability.load import attack_text, run, run_attack
from support.daemon import rss_kib
from support.wire import Raw

KINDS = ("ping", "status", "list_sites", "list_datasets", "get_dataset", "get_block",
         "lfn_to_pfn", "inject", "delete", "run_application", "poll_application",
         "application (to its end)", "dynamo CLI (process)", "refused (pest)")


def test_fifty_clients_for_five_seconds(random_seed):
    report = run(clients=50, seconds=5, seed=random_seed)
    print("\n" + report.text())
    assert not report.unexpected, report.text()
    summary = report.summary()
    assert set(KINDS) <= set(summary["latency"]), summary["latency"].keys()
    assert summary["requests"] > 1000
    assert report.quitters and all(how in ("whole", "cut") for how in report.quitters.values())
    assert report.connections_end == report.connections_baseline
    rss = summary["rss_mib"]
    assert rss["peak"] - rss["baseline"] < 200, f"daemon memory grew under load: {rss}"
    assert report.flooder_bytes < 16 << 20, "the daemon kept reading a client that never reads"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become the attacker")
def test_an_unregistered_attacker_for_three_seconds(random_seed):
    """Bystander and root are never refused, the attacker holds at most its account's
    connections, and the daemon's memory stays near what the limits allow."""
    figures = run_attack(seconds=3, seed=random_seed)
    print("\n" + attack_text(figures))
    assert not figures["unexpected"], attack_text(figures)
    attack = figures["attack"]
    assert attack["bystander ping"]["count"] > 50 and attack["root inject"]["count"] > 10
    grown = attack["rss_mib_peak"] - attack["rss_mib_before"]
    assert grown < 64, f"the daemon grew by {grown} MiB under attack (limits: about 16)"


def test_finished_applications_do_not_keep_their_scripts(daemon):
    """Records of ended applications stay (poll, list), their scripts must not: else every
    submission of a large script grows the daemon for good."""
    client = Raw(daemon.socket, timeout=60)
    before = rss_kib(daemon.process.pid)
    body = "pass\n" + "#" * (4 << 20) + "\n"
    ids = [client.request(i, "run_application", script=f"# {i}\n{body}", attach=False)[
        "result"]["id"] for i in range(25)]
    deadline = time.monotonic() + 60
    while any(client.request("p", "poll_application", id=i)["result"]["status"] != "done"
              for i in ids):
        assert time.monotonic() < deadline, "the applications did not end"
        time.sleep(0.1)
    client.close()
    grown = (rss_kib(daemon.process.pid) - before) / 1024
    assert grown < 50, f"the daemon kept {grown:.0f} MiB after 25 applications of 4 MiB"


def test_a_burst_of_connections_is_queued_not_refused(daemon):
    """300 clients connect while the daemon is stopped (SIGSTOP): the kernel must queue
    them all (the listen backlog), and the daemon then serves each one."""
    os.kill(daemon.process.pid, signal.SIGSTOP)
    try:
        clients = []
        for _ in range(300):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect(daemon.socket)  # BlockingIOError when the backlog is full
            sock.sendall(b'{"id": 1, "method": "ping"}\n')
            clients.append(sock)
    finally:
        os.kill(daemon.process.pid, signal.SIGCONT)
    for sock in clients:
        sock.setblocking(True)
        sock.settimeout(30)
        assert sock.makefile("rb").readline() == b'{"id":1,"result":{"pong":true}}\n'
        sock.close()
    deadline = time.monotonic() + 10
    while daemon.call("status")["connections"] > 1:
        assert time.monotonic() < deadline, "closed connections are never forgotten"
        time.sleep(0.05)
