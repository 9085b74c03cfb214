"""A writer's changes: sent through its pipe, applied and committed as one transaction.

The records come back in runs (see inventory/updates.py), one JSON object per
line, closed by an end line with the number of runs, so a writer that died
half way is told apart from one that changed nothing.  They are applied with
the rules of injection, runs of plain updates in bulk, and the application's
`done` record is committed in the same transaction.

The child closes its pipe once it sent its records, then exits; the kernel's
teardown of a child forked from a large daemon takes tens of milliseconds.  So
the records are applied to memory as soon as the pipe is closed (`WriteBack.apply`),
while the child exits, and committed only once it has exited with status 0
(`WriteBack.commit`); any other end undoes them (`WriteBack.discard`), before
any of it was submitted to the store.
"""

import dataclasses
import os
import time

import orjson

from .. import collector
from ..errors import DynamoError, InvalidParams
from ..inventory.updates import apply_run, run_shape

MAX_UPDATE_BYTES = 1 << 30


class Receiver:
    """Collects what a writer sends, from the event loop (`loop.add_reader`)."""

    def __init__(self, fd: int, on_overflow, on_closed=lambda: None):
        self.fd = fd
        self.received = bytearray()
        self.on_overflow = on_overflow
        self.on_closed = on_closed   # called at the end of the pipe (each time it is read)

    def read(self):
        while True:
            try:
                chunk = os.read(self.fd, 1 << 20)
            except OSError:   # BlockingIOError included: nothing more for now
                return
            if not chunk:
                self.on_closed()
                return
            if len(self.received) + len(chunk) > MAX_UPDATE_BYTES:
                self.on_overflow("its changes exceed 1 GiB")
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


class WriteBack:
    """A writer's changes, from what it sent to their commit with its `done` record (the
    writer holds the gate throughout).  `apply` may run first, while the child exits;
    then either `commit` or, when the application did not end well, `discard`."""

    def __init__(self, service, app, data: bytes):
        self.service, self.app = service, app
        self.runs = parse(data)
        self.changes = None   # applied to memory, not yet submitted
        self.refusal = None   # the DynamoError the records were refused for
        self._paused = False  # holding the cyclic collector (see `apply`)

    def apply(self):
        """Apply the records to memory (once), not yet committing them.

        The cyclic garbage collector waits until the commit is done (or the records
        are given up): 100,000 records make hundreds of thousands of objects, none of
        them garbage, and each collection they would trigger walks them all (a full
        one, the whole inventory too)."""
        if self.runs is None or self.changes is not None or self.refusal is not None:
            return
        if not self._paused:
            self._paused = True
            collector.hold()
        try:
            self.changes = self.service.apply_holding_gate(self._apply)
        except DynamoError as exc:
            self.refusal = exc

    def _apply(self, changes):
        apply_runs(changes, self.runs)
        changes.finish()

    async def commit(self):
        """Apply the records unless done, and commit them with the application's `done`
        record, or none of them; the application's status and message say which."""
        app = self.app
        try:
            if self.runs is None:
                app.status = "failed"
                app.message = "its changes arrived incomplete; nothing was applied"
                return
            self.apply()
            applied, self.changes = self.changes, None
            if self.refusal is not None:
                raise self.refusal
            outcome = {"status": "done", "message": "no changes"}

            def record(counts):
                """The `done` record, committed in the same transaction as the changes
                (and shown only once they are committed)."""
                outcome.update(ended=time.time(), message="changes applied: " + _summary(counts))
                return {("application", (app.id,)): dataclasses.replace(app, **outcome).row()}

            await self.service.change_holding_gate(self._apply, f"{app.user} app={app.id}",
                                                   record, applied)
        except DynamoError as exc:
            app.status = "failed"
            app.message = f"its changes were refused, nothing was applied: {exc.message}"
        else:
            for name, value in outcome.items():
                setattr(app, name, value)
        finally:
            self._resume()

    def discard(self):
        """Undo the records applied, if any: the application did not end well."""
        changes, self.changes = self.changes, None
        if changes is not None:
            self.service.give_up(changes)
        self._resume()

    def _resume(self):
        if self._paused:
            self._paused = False
            collector.release()


def _summary(counts: dict) -> str:
    parts = [f"{how} {n} {kind}" for how in ("created", "updated", "deleted")
             for kind, n in counts.get(how, {}).items()]
    return ", ".join(parts) or "none"
