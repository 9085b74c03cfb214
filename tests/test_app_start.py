"""An application's start: the caller's descriptors are asked for while its record
commits, and its script runs only once the record is committed."""

import os
import select

from support.faults import lock

MARK = "import sys; sys.stdout.write('ran'); sys.stdout.flush()\n"


def run_attached(client, script: str, write_end: int) -> dict:
    """Submit an attached read-only application with `write_end` as its standard output;
    the final answer (result or error), and the events seen before it."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        rid = client.send("run_application", {"script": script, "path": "mark.py"})
        events = []
        while True:
            answer = client.receive()
            if answer.get("id") != rid:
                continue
            if "event" not in answer:
                return {**answer, "events": events}
            events.append(answer["event"]["event"])
            if answer["event"]["event"] == "send_fds":
                client.send_fds([null, write_end, null])
    finally:
        os.close(null)


def test_an_attached_reader_whose_record_cannot_commit_never_runs(daemon):
    """The caller has sent its descriptors, but the script does not run when the commit
    fails: the caller gets store_error and no id, nothing is listed, and the id goes to
    the next application."""
    read_end, write_end = os.pipe()
    holder = lock(daemon.database)
    try:
        with daemon.client(timeout=60) as client:
            answer = run_attached(client, MARK, write_end)
    finally:
        holder.communicate("\n", timeout=30)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as output:
        assert output.read() == b""   # every copy of the pipe's write end is closed
    assert answer["error"]["code"] == "store_error"
    assert "started" not in answer["events"]   # no id told
    assert daemon.call("list_applications")["applications"] == []
    ran = daemon.call("run_application", script=MARK, path="mark.py", attach=False)
    assert [a["id"] for a in daemon.call("list_applications")["applications"]] == [ran["id"]]


def test_every_application_that_ran_has_its_record(daemon):
    """Done, failed or killed by a signal: each attached run leaves its record, with its
    exit code, as the daemon committed it (it survives a restart)."""
    scripts = {"done": MARK, "failed": MARK + "raise SystemExit(3)\n",
               "killed": MARK + "import os; os.kill(os.getpid(), 9)\n"}
    seen = {}
    for name, script in scripts.items():
        read_end, write_end = os.pipe()
        with daemon.client(timeout=60) as client:
            answer = run_attached(client, script, write_end)
        os.close(write_end)
        assert select.select([read_end], [], [], 60)[0]
        with os.fdopen(read_end, "rb") as output:
            assert output.read() == b"ran"
        assert answer["events"] == ["send_fds", "started"]
        seen[answer["result"]["id"]] = (answer["result"]["status"],
                                        answer["result"]["exit_code"])
    assert sorted(seen.values()) == [("done", 0), ("failed", -9), ("failed", 3)]
    daemon.restart()
    listed = daemon.call("list_applications")["applications"]
    assert {a["id"]: (a["status"], a["exit_code"]) for a in listed} == seen


def test_a_reader_killed_while_its_record_commits_never_runs(daemon):
    """A kill that arrives before the record is committed (the store is locked, for less
    than its busy time-out) stops the application before it starts: the record says
    killed, and the script printed nothing."""
    read_end, write_end = os.pipe()
    holder = lock(daemon.database)
    try:
        with daemon.client(timeout=60) as client:
            rid = client.send("run_application", {"script": MARK, "path": "mark.py"})
            event = client.receive()
            assert event["id"] == rid and event["event"]["event"] == "send_fds"
            client.send_fds([write_end, write_end, write_end])
            waiting = []
            while not waiting:   # listed, not yet started
                waiting = daemon.call("list_applications")["applications"]
            assert waiting[0]["status"] == "new"
            assert daemon.call("kill_application", id=waiting[0]["id"])["killed"]
            holder.communicate("\n", timeout=30)
            answer = client.receive()
    finally:
        if holder.returncode is None:
            holder.communicate("\n", timeout=30)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as output:
        assert output.read() == b""
    assert answer["result"]["status"] == "killed" and answer["result"]["pid"] is None
    assert daemon.call("poll_application", id=answer["result"]["id"])["status"] == "killed"
