"""Applications on the daemon's side: records, forks, time-outs, kills, write-back.

Each application is forked from the event loop's thread (the child never runs
the loop); its end is noticed through a pidfd, so no SIGCHLD handler and no
thread is needed, and every child is reaped.  A read/write application holds
the service's gate from before its fork until its changes are committed, so
no injection can slip in between what it saw and what it writes (injections
wait their turn); its changes come back through a pipe and are applied and
committed as one transaction, exactly like an injection.
"""

import asyncio
import dataclasses
import gc
import hashlib
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field

import orjson

from ..errors import Busy, DynamoError, NotFound
from ..inventory.updates import apply_record
from .. import collector
from . import child, filechannel

log = logging.getLogger("dynamod.apps")

ACTIVE = ("new", "waiting", "run")
MAX_UPDATE_BYTES = 1 << 30


@dataclass
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
    ended_event: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    started_event: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def row(self) -> tuple:
        return (self.id, self.title, self.path, orjson.dumps(self.args).decode(), self.user,
                self.uid, "write" if self.write else "read", self.status, self.exit_code,
                self.pid, self.timeout, self.checksum, self.submitted, self.started, self.ended,
                self.message)

    def view(self) -> dict:
        return {"id": self.id, "title": self.title, "path": self.path, "args": self.args,
                "user": self.user, "mode": "write" if self.write else "read",
                "status": self.status, "exit_code": self.exit_code, "pid": self.pid,
                "timeout": self.timeout, "submitted": self.submitted, "started": self.started,
                "ended": self.ended, "message": self.message, "workarea": self.workarea}

    @classmethod
    def from_row(cls, row) -> "Application":
        (aid, title, path, args, user, uid, mode, status, exit_code, pid, timeout, checksum,
         submitted, started, ended, message) = row
        app = cls(aid, title, path, orjson.loads(args), user, uid, -1, mode == "write", timeout,
                  checksum=checksum, status=status, exit_code=exit_code, pid=pid,
                  submitted=submitted, started=started, ended=ended, message=message)
        app.ended_event.set()
        return app


def checksum(script: str) -> str:
    return hashlib.sha256(script.encode()).hexdigest()


class ApplicationManager:
    def __init__(self, service, config):
        self.service = service
        self.config = config
        self.apps: dict[int, Application] = {}
        self.authorizations: dict[tuple, tuple] = {}   # (title, user) -> (checksum, created)
        self.next_id = 1
        self.tasks = set()

    # ------------------------------------------------------------ records
    def load(self, tables: dict, next_ids: dict):
        """Take the records from the store; those that were running died with the daemon."""
        interrupted = []
        for row in tables["application"]:
            app = Application.from_row(row)
            if app.status in ACTIVE:
                app.status, app.message = "killed", "the daemon stopped while it was active"
                app.ended = app.ended or time.time()
                interrupted.append(app)
            self.apps[app.id] = app
        for title, user, digest, created in tables["authorization"]:
            self.authorizations[(title, user)] = (digest, created)
        self.next_id = next_ids.get("application", 1)
        for app in interrupted:
            self._persist(app)
        if interrupted:
            log.warning("marked %d application(s) killed: they were active when the daemon "
                        "stopped", len(interrupted))

    def _persist(self, app: Application) -> asyncio.Future:
        return self.service.writer.submit({("application", (app.id,)): app.row()},
                                          {"application": self.next_id}, lambda: None)

    # ----------------------------------------------------- authorizations
    def authorize(self, title: str, user: str, digest: str):
        """Record `digest` for (title, user, or '' for all users).

        Returns whether it replaced an earlier one, and the commit's future.
        """
        key = (title, user)
        before = dict(self.authorizations)
        self.authorizations[key] = (digest, time.time())
        log.info("script authorization %s for title %r, user %s: %s",
                 "replaced" if key in before else "added", title, user or "ALL", digest)
        return key in before, self._persist_authorizations([key], before)

    def revoke(self, title: str, user: str | None):
        keys = [k for k in self.authorizations if k[0] == title and (user is None or k[1] == user)]
        if not keys:
            raise NotFound(f"no authorization for title {title!r}"
                           + (f" and user {user or 'ALL'}" if user is not None else ""))
        before = dict(self.authorizations)
        for key in keys:
            del self.authorizations[key]
            log.info("script authorization revoked: title %r, user %s", key[0], key[1] or "ALL")
        return keys, self._persist_authorizations(keys, before)

    def _persist_authorizations(self, keys, before) -> asyncio.Future:
        """Commit the entries `keys` as they are now; a failed commit restores `before`."""
        def undo():
            self.authorizations.clear()
            self.authorizations.update(before)

        rows = {("authorization", key): (*key, *self.authorizations[key])
                if key in self.authorizations else None for key in keys}
        return self.service.writer.submit(rows, {}, undo)

    def is_authorized(self, title: str, user: str, digest: str) -> bool:
        return any(self.authorizations.get((title, who), ("",))[0] == digest
                   for who in (user, ""))

    # ------------------------------------------------------------- submit
    def create(self, **fields) -> Application:
        app = Application(self.next_id, **fields)
        app.checksum = checksum(app.script)
        self.next_id += 1
        if app.write and not self.is_authorized(app.title, app.user, app.checksum):
            app.status = "authfailed"
            app.message = (f"script {app.path} (sha256 {app.checksum[:12]}…) is not authorized "
                           f"for read/write under title {app.title!r} for user {app.user}; "
                           f"root authorizes it with dynamo-exec-auth")
            app.ended = time.time()
            app.ended_event.set()
            log.warning("application %d refused: %s", app.id, app.message)
        self.apps[app.id] = app
        return app

    def writer(self) -> Application | None:
        return next((a for a in self.apps.values() if a.write and a.status in ("run",)), None)

    def start(self, app: Application, stdio: list | None, no_wait: bool = False):
        """Run `app` in the background; its events are set as it starts and ends.

        Takes ownership of the `stdio` descriptors: they are closed when it ends.
        """
        if app.status == "authfailed":
            self._persist(app)
            return
        if app.write and no_wait and self.service.gate.locked():
            holder = self.writer()
            app.status, app.ended = "failed", time.time()
            app.message = ("another read/write application is running"
                           + (f" (id {holder.id}, {holder.title!r})" if holder else ""))
            app.ended_event.set()
            self._persist(app)
            for fd in stdio or ():
                os.close(fd)
            raise Busy(app.message)
        task = asyncio.get_running_loop().create_task(self._run(app, stdio))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, app: Application, stdio):
        try:
            # Committed before the fork: a daemon killed while the application runs
            # finds its record at restart (and marks it killed).
            await self._persist(app)
            if app.write:
                if self.service.gate.locked():
                    app.status = "waiting"
                    self._persist(app)
                async with self.service.gate:
                    await self._execute(app, stdio)
            else:
                await self._execute(app, stdio)
        except Exception as exc:  # the record must end, whatever happened
            log.exception("application %d failed in the daemon", app.id)
            app.status, app.message = "failed", f"daemon error: {exc}"
        finally:
            for fd in stdio or ():
                os.close(fd)
            app.ended = app.ended or time.time()
            app.ended_event.set()
            app.started_event.set()
            self._persist(app)
            log.info("application %d (%s) ended: %s, exit code %s", app.id, app.title,
                     app.status, app.exit_code)

    async def _execute(self, app: Application, stdio):
        await self.service.writer.flush()  # the child sees committed state only
        if app.status == "killed":
            return
        loop = asyncio.get_running_loop()
        updates_r = updates_w = None
        if app.write:
            updates_r, updates_w = os.pipe()
            os.set_blocking(updates_r, False)
        files_here, files_there = socket.socketpair()
        if stdio is None:
            app.workarea = os.path.join(self.config.work_dir, str(app.id))
        gc.collect(1)
        gc.freeze()
        # Signals stay blocked across the fork: until the child has reset its handlers,
        # it shares the daemon's signal wake-up socket, and a SIGTERM meant for the
        # application (a kill right after it starts) would stop the daemon.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        pid = os.fork()
        if pid == 0:
            child.run(app, self.service.inventory, stdio, updates_w, files_there.fileno(),
                      app.workarea)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        gc.unfreeze()
        app.script = ""  # the child has its copy; records live on, scripts need not
        if updates_w is not None:
            os.close(updates_w)
        files_there.close()
        serving = loop.create_task(
            filechannel.serve(files_here, self.service.inventory.file_cache.source))
        app.pid, app.status, app.started = pid, "run", time.time()
        self._persist(app)
        app.started_event.set()
        log.info("application %d (%s, %s) started as pid %d for %s", app.id, app.title,
                 "read/write" if app.write else "read-only", pid, app.user)
        received = bytearray()
        if updates_r is not None:
            loop.add_reader(updates_r, self._read_updates, updates_r, received, app)
        try:
            status = await self._wait(app, pid)
        finally:
            serving.cancel()
            if updates_r is not None:
                loop.remove_reader(updates_r)
                self._read_updates(updates_r, received, app)
                os.close(updates_r)
        app.exit_code = os.waitstatus_to_exitcode(status)
        if app.status == "killed":
            return
        if app.exit_code != 0:
            app.status = "failed"
            app.message = app.message or f"exit code {app.exit_code}; nothing was changed"
            return
        if app.write:
            await self._write_back(app, bytes(received))
        else:
            app.status = "done"

    def _read_updates(self, fd, received: bytearray, app: Application):
        while True:
            try:
                chunk = os.read(fd, 1 << 20)
            except BlockingIOError:
                return
            except OSError:
                return
            if not chunk:
                return
            if len(received) + len(chunk) > MAX_UPDATE_BYTES:
                self.kill(app.id, "its changes exceed 1 GiB")
                return
            received += chunk

    async def _wait(self, app: Application, pid: int) -> int:
        """Wait for the child's end (pidfd), killing it at its time-out."""
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(pid)
        ended = loop.create_future()
        loop.add_reader(pidfd, lambda: ended.done() or ended.set_result(None))
        try:
            if app.timeout is None:
                await ended
            else:
                try:
                    await asyncio.wait_for(asyncio.shield(ended), app.timeout)
                except asyncio.TimeoutError:
                    self.kill(app.id, f"time-out after {app.timeout:g} s")
                    await ended
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        return status

    async def _write_back(self, app: Application, data: bytes):
        """Apply the changes a writer sent, as one transaction, or none of them.

        The cyclic garbage collector waits until the commit is done: 100,000 records
        make hundreds of thousands of objects, none of them garbage, and each collection
        they would trigger walks them all (a full one, the whole inventory too).
        """
        with collector.paused():
            records = _parse_records(data)
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
                await self.service.change_holding_gate(apply, f"{app.user} app={app.id}", record)
            except DynamoError as exc:
                app.status = "failed"
                app.message = f"its changes were refused, nothing was applied: {exc.message}"
            else:
                for name, value in outcome.items():
                    setattr(app, name, value)

    # --------------------------------------------------------------- kill
    def kill(self, app_id: int, reason: str) -> bool:
        """Stop an application: SIGTERM now, SIGKILL after the grace period."""
        app = self.get(app_id)
        if app.status not in ACTIVE or app.exit_code is not None:
            return False  # ended, or its changes are being committed: too late to stop
        previous, app.status, app.message = app.status, "killed", f"killed: {reason}"
        log.warning("application %d (%s) killed: %s", app.id, app.title, reason)
        if previous == "run" and app.pid:
            _signal(app.pid, signal.SIGTERM)
            loop = asyncio.get_running_loop()
            loop.call_later(self.config.kill_grace, self._force_kill, app)
        else:
            app.ended = time.time()
            app.ended_event.set()
            self._persist(app)
        return True

    def _force_kill(self, app: Application):
        if not app.ended_event.is_set():
            _signal(app.pid, signal.SIGKILL)

    def get(self, app_id) -> Application:
        try:
            return self.apps[app_id]
        except KeyError:
            raise NotFound(f"unknown application {app_id}") from None

    async def stop_all(self):
        """Kill every running application (daemon shutdown) and wait for their ends."""
        for app in list(self.apps.values()):
            if app.status in ACTIVE:
                self.kill(app.id, "the daemon is stopping")
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=self.config.kill_grace + 5)


def _parse_records(data: bytes) -> list | None:
    """The records a writer sent, or None unless they end with a matching end line."""
    try:
        records = [orjson.loads(line) for line in data.splitlines()]
    except orjson.JSONDecodeError:
        return None
    if not records or records[-1] != {"end": len(records) - 1}:
        return None
    return records[:-1]


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _summary(counts: dict) -> str:
    parts = [f"{how} {n} {kind}" for how in ("created", "updated", "deleted")
             for kind, n in counts.get(how, {}).items()]
    return ", ".join(parts) or "none"


def parse_timeout(hours: float, default_seconds: float) -> float | None:
    """Operators' convention: hours; 0 is the server default; negative is no limit."""
    if hours < 0:
        return None
    if hours == 0:
        return default_seconds
    return hours * 3600.0

