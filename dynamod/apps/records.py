"""Application records: what was run, by whom, how it ended; kept for a while.

A record is committed before its submitter hears its id (so an id is never
given twice, whatever crash follows) and at each change of status.  Records
end after `retention` seconds; a user sees their own records, an
administrator everyone's.  Nothing of a record but the application's own
reaches a child (see `forget_others`).

What was submitted to the store is a RowTable, changed through the one undo
log: a record whose first commit fails is forgotten (its submitter is told,
and it never runs), and expired records whose deletion fails come back.  A
later status change that fails to commit keeps the live record as it is (the
process's state is real); the next one writes the whole row again.
"""

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field

import orjson

from ..errors import NotFound
from ..tables import RowTable, Undo

log = logging.getLogger("dynamod.apps")

ACTIVE = ("new", "waiting", "run")


def _over() -> asyncio.Event:
    over = asyncio.Event()
    over.set()
    return over


# The events of every record loaded from the store: it ended before this daemon started.
# One shared, not two per record: a child drops every other record before its script
# runs, and each object it frees is a page copied from the daemon (slots likewise).
_OVER = _over()


@dataclass(slots=True)
class Application:
    id: int
    title: str
    path: str
    args: list
    user: str
    uid: int
    gid: int
    write: bool
    timeout: float | None
    script: str = ""
    cwd: str | None = None
    checksum: str = ""
    status: str = "new"
    exit_code: int | None = None
    pid: int | None = None
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    message: str = ""
    workarea: str | None = None
    superuser: bool = False    # the submitter's standing; a queued writer is checked again
    ended_event: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    started_event: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def forget(self):
        """Empty what the submitter gave and what it reveals (in a child: `forget_others`)."""
        self.title = self.path = self.script = self.checksum = self.message = self.user = ""
        self.args, self.cwd, self.workarea = [], None, None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def end(self, status: str, message: str):
        self.status, self.message = status, message
        self.ended = self.ended or time.time()
        self.ended_event.set()
        self.started_event.set()

    def row(self) -> tuple:
        return (self.id, self.title, self.path, orjson.dumps(self.args).decode(), self.user,
                self.uid, "write" if self.write else "read", self.status, self.exit_code,
                self.pid, self.timeout, self.checksum, self.submitted, self.started, self.ended,
                self.message, self.workarea)

    def view(self) -> dict:
        return {"id": self.id, "title": self.title, "path": self.path, "args": self.args,
                "user": self.user, "mode": "write" if self.write else "read",
                "status": self.status, "exit_code": self.exit_code, "pid": self.pid,
                "timeout": self.timeout, "submitted": self.submitted, "started": self.started,
                "ended": self.ended, "message": self.message, "workarea": self.workarea}

    @classmethod
    def from_row(cls, row) -> "Application":
        (aid, title, path, args, user, uid, mode, status, exit_code, pid, timeout, checksum,
         submitted, started, ended, message, workarea) = row
        return cls(aid, title, path, orjson.loads(args), user, uid, -1, mode == "write", timeout,
                   checksum=checksum, status=status, exit_code=exit_code, pid=pid,
                   submitted=submitted, started=started, ended=ended, message=message,
                   workarea=workarea, ended_event=_OVER, started_event=_OVER)


def checksum(script: str) -> str:
    return hashlib.sha256(script.encode()).hexdigest()


class Records:
    """Every application record, by id; ids come from the store's `next_ids`."""

    def __init__(self, writer, config):
        self.writer = writer
        self.config = config   # its retention changes live
        self.apps: dict[int, Application] = {}
        self.table = RowTable("application", self._changed)   # (id,) -> row submitted
        self.next_id = 1

    def _changed(self, key, old, new):
        """The live records follow the table's: a row gone takes its record, a row back
        (an undone deletion) brings one."""
        if new is None:
            self.apps.pop(key[0], None)
        elif key[0] not in self.apps:
            self.apps[key[0]] = Application.from_row(new)

    def load(self, rows, next_id: int):
        """Take the records from the store; those that were active died with the daemon."""
        self.table.load(rows, lambda row: (row[0],))
        interrupted = [app for app in self.apps.values() if app.active]
        for app in interrupted:
            app.status, app.message = "killed", "the daemon stopped while it was active"
            app.ended = app.ended or time.time()
        self.next_id = next_id
        for app in interrupted:
            self.persist(app)
        if interrupted:
            log.warning("marked %d application(s) killed: they were active when the daemon "
                        "stopped", len(interrupted))

    def new(self, **fields) -> Application:
        app = Application(self.next_id, **fields)
        app.checksum = checksum(app.script)
        self.next_id += 1
        self.apps[app.id] = app
        return app

    def persist(self, app: Application) -> asyncio.Future:
        """Commit the record as it is now (with the next id, so no id is reused)."""
        return self._commit({(app.id,): app.row()}, {"application": self.next_id})

    def _commit(self, rows: dict, next_ids: dict) -> asyncio.Future:
        ops = {("application", key): row for key, row in rows.items()}
        undo = Undo().apply({"application": self.table}, ops)
        return self.writer.submit(ops, next_ids, undo.rollback)

    def get(self, app_id: int) -> Application:
        try:
            return self.apps[app_id]
        except KeyError:
            raise NotFound(f"unknown application {app_id}") from None

    def active(self, user: str | None = None) -> list[Application]:
        return [a for a in self.apps.values() if a.active and (user is None or a.user == user)]

    def expire(self, now: float | None = None) -> asyncio.Future | None:
        """Delete the records of applications that ended more than `retention` ago."""
        retention = self.config.app_retention_days * 86400
        limit = (now or time.time()) - retention
        old = {a.id: a for a in self.apps.values()
               if not a.active and a.ended and a.ended < limit}
        if not old:
            return None
        log.info("deleted %d application record(s) older than %g days", len(old),
                 self.config.app_retention_days)
        return self._commit(dict.fromkeys((i,) for i in old), {})

    def forget_others(self, keep: int):
        """In a child: drop every record but its own (their arguments may hold secrets).
        The others are emptied too: the daemon's tasks that run or queue them still hold
        them (a walk of every object finds them), and so their script, arguments, title,
        paths and messages."""
        mine, row = self.apps.get(keep), self.table.get((keep,))
        for app in self.apps.values():
            if app is not mine:
                app.forget()
        self.apps.clear()
        self.table.clear()
        if mine is not None:
            self.apps[keep] = mine
        if row is not None:
            self.table.apply((keep,), row)
