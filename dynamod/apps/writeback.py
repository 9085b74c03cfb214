"""A writer's changes: read from its pipe, applied and committed as one transaction.

The records come back one JSON object per line, closed by an end line with
their count, so a writer that died half way is told apart from one that
changed nothing.  They are applied with the rules of injection, and the
application's `done` record is committed in the same transaction.
"""

import dataclasses
import os
import time

import orjson

from .. import collector
from ..errors import DynamoError
from ..inventory.updates import apply_record

MAX_UPDATE_BYTES = 1 << 30


class Receiver:
    """Collects what a writer sends, from the event loop (`loop.add_reader`)."""

    def __init__(self, fd: int, on_overflow):
        self.fd = fd
        self.received = bytearray()
        self.on_overflow = on_overflow

    def read(self):
        while True:
            try:
                chunk = os.read(self.fd, 1 << 20)
            except OSError:   # BlockingIOError included: nothing more for now
                return
            if not chunk:
                return
            if len(self.received) + len(chunk) > MAX_UPDATE_BYTES:
                self.on_overflow("its changes exceed 1 GiB")
                return
            self.received += chunk


def parse(data: bytes) -> list | None:
    """The records a writer sent, or None unless they end with a matching end line."""
    try:
        records = [orjson.loads(line) for line in data.splitlines()]
    except orjson.JSONDecodeError:
        return None
    if not records or records[-1] != {"end": len(records) - 1}:
        return None
    return records[:-1]


async def write_back(service, app, data: bytes):
    """Apply the changes a writer sent, as one transaction, or none of them.

    The cyclic garbage collector waits until the commit is done: 100,000 records
    make hundreds of thousands of objects, none of them garbage, and each collection
    they would trigger walks them all (a full one, the whole inventory too).
    """
    with collector.paused():
        records = parse(data)
        if records is None:
            app.status = "failed"
            app.message = "its changes arrived incomplete; nothing was applied"
            return

        def apply(changes):
            for rec in records:
                apply_record(changes, rec)
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
