"""A writer's changes: sent through its pipe, applied and committed as one transaction.

The records come back in runs (see inventory/updates.py), one JSON object per
line, closed by an end line with the number of runs, so a writer that died
half way is told apart from one that changed nothing.  They are applied with
the rules of injection, runs of plain updates in bulk, and the application's
`done` record is committed in the same transaction.
"""

import dataclasses
import os
import time

import orjson

from .. import collector
from ..errors import DynamoError, InvalidParams
from ..inventory.updates import apply_run, run_shape



class Receiver:
    """Collects what a writer sends, from the event loop (`loop.add_reader`).  At the end
    of the pipe (the child closes it, then exits) the records are parsed at once: while
    the kernel tears the child down (16 ms at medium scale), before its exit status
    says whether they are to be applied."""

    def __init__(self, fd: int, limit: int, on_overflow, on_closed):
        """`limit`: bytes it takes (max_changes_bytes), the whole applied in one step of
        the event loop (some 5 s and 2 GiB of memory for 256 MiB)."""
        self.fd = fd
        self.limit = limit
        self.received = bytearray()
        self.on_overflow = on_overflow
        # At the end of the pipe: the pipe would be readable, and read, again and again
        # while the kernel tears the child down.
        self.on_closed = on_closed
        self.runs = None   # parsed at the end of the pipe (`parse`)
        self.ended = False

    def read(self):
        while True:
            try:
                chunk = os.read(self.fd, 1 << 20)
            except OSError:   # BlockingIOError included: nothing more for now
                return
            if not chunk:
                if not self.ended:
                    self.ended = True
                    self.on_closed()
                    with collector.paused():   # as `write_back` would parse them
                        self.runs = parse(self.received)
                return
            if len(self.received) + len(chunk) > self.limit:
                self.on_overflow(f"its changes exceed {self.limit} bytes "
                                 f"([applications] max_changes_bytes)")
                return
            self.received += chunk


def send(pipe, runs):
    """Write an application's runs of records (`updates.Runs`) to its pipe, in the
    writer's child."""
    for (op, kind, keys, fields), rows in runs:
        pipe.write(orjson.dumps({"op": op, "kind": kind, "keys": keys, "fields": fields,
                                 "rows": rows}) + b"\n")
    pipe.write(orjson.dumps({"end": len(runs.runs)}) + b"\n")


def parse(data: bytes) -> list | None:
    """The runs a writer sent, or None unless they end with a matching end line."""
    try:
        runs = [orjson.loads(line) for line in data.splitlines()]
    except orjson.JSONDecodeError:
        return None
    if not runs or runs[-1] != {"end": len(runs) - 1}:
        return None
    return runs[:-1]


def apply_runs(changes, runs: list):
    """Apply the runs a writer sent, checked like any request (the script could have
    written anything to its pipe)."""
    for run in runs:
        if type(run) is not dict or run.keys() != _RUN_KEYS or type(run["rows"]) is not list:
            raise InvalidParams(f"a run of updates is an object with {', '.join(_RUN_KEYS)} "
                                f"(rows a list), not {str(run)[:200]}")
        apply_run(changes, run_shape(run["op"], run["kind"], run["keys"], run["fields"]),
                  run["rows"])


_RUN_KEYS = {"op": None, "kind": None, "keys": None, "fields": None, "rows": None}.keys()


async def write_back(service, app, receiver: Receiver):
    """Apply the changes a writer sent, as one transaction, or none of them (parsed at
    the end of its pipe; else now: a process the script started may hold it open).

    The cyclic garbage collector waits until the commit is done: 100,000 records
    make hundreds of thousands of objects, none of them garbage, and each collection
    they would trigger walks them all (a full one, the whole inventory too).
    """
    with collector.paused():
        runs = receiver.runs if receiver.ended else parse(receiver.received)
        if runs is None:
            app.status = "failed"
            app.message = "its changes arrived incomplete; nothing was applied"
            return

        def apply(changes):
            apply_runs(changes, runs)
            changes.finish()

        outcome = {"status": "done", "message": "no changes"}

        def record(counts):
            """The `done` record, committed in the same transaction as the changes (and
            shown only once they are committed)."""
            outcome.update(ended=time.time(), message="changes applied: " + _summary(counts))
            return {("application", (app.id,)): dataclasses.replace(app, **outcome).row()}

        try:
            await service.change_holding_gate(apply, f"{app.user} app={app.id}", record)
        except DynamoError as exc:
            app.status = "failed"
            app.message = f"its changes were refused, nothing was applied: {exc.message}"
        else:
            for name, value in outcome.items():
                setattr(app, name, value)


def _summary(counts: dict) -> str:
    parts = [f"{how} {n} {kind}" for how in ("created", "updated", "deleted")
             for kind, n in counts.get(how, {}).items()]
    return ", ".join(parts) or "none"
