"""Applications on the daemon's side: admission, the fork, time-outs, kills.

Each application is forked from the event loop's thread (the child never runs
the loop) at a moment when memory equals the committed store, next to a read
transaction opened at that same state: the child's files come from it, so
the script sees one committed snapshot for its whole life.  Its end is
noticed through a pidfd, so no SIGCHLD handler and no thread is needed, and
every child is reaped.  The parts live in their own modules: records
(records.py), script authorizations (authorizations.py), the writer slot
(slot.py), the child (child.py, seal.py), work areas (workarea.py), cgroups
(cgroup.py) and a writer's changes (writeback.py).
"""

import asyncio
import functools
import gc
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import time

import orjson

from .. import capabilities, descriptors
from ..auth import policy
from ..auth.identity import Peer
from ..config import file_key
from ..errors import Busy, DynamoError, InvalidParams, NotConfigured
from ..store.reader import StoreReader
from . import child, filechannel
from .authorizations import ScriptAuthorizations
from .cgroup import CgroupError
from .records import Application, Records
from .slot import WriterSlot
from .workarea import WorkAreas
from .writeback import Receiver, write_back

log = logging.getLogger("dynamod.apps")

EXPIRY_INTERVAL = 3600.0   # seconds between two sweeps of expired records
_PRINT_PATH = "import sys, json; print(json.dumps(sys.path))"


class ApplicationManager:
    def __init__(self, service, config, users, cgroups=None, isolated=None,
                 connections=None):
        self.service = service
        self.config = config
        self.users = users
        self.cgroups = cgroups
        self.records = Records(service.writer, config)
        self.authorizations = ScriptAuthorizations(service.writer)
        self.slot = WriterSlot(service.gate)
        self.workareas = WorkAreas(config.work_dir)
        self._isolated = isolated or IsolatedPath()
        # the server's set of who is connected: emptied in a child (the server's own)
        self.connections = set() if connections is None else connections
        self.tasks = set()
        self._expiry = None
        self._spare = None      # a read connection opened ahead for the next application
        self._stopping = False
        if capabilities.held(capabilities.CAP_SETUID) and not capabilities.held(
                capabilities.CAP_KILL):
            log.warning("applications run as their callers' accounts, which this daemon "
                        "cannot signal: dynamo --kill, time-outs and a stop cannot end them "
                        "(CAP_KILL is missing: add it to the unit's AmbientCapabilities= and "
                        "CapabilityBoundingSet=, systemd/dynamod.service)")

    @functools.cached_property
    def isolated_path(self) -> list[str]:
        """A writer's sys.path: asked of a child at start-up, its answer read at the first
        writer (a start does not wait for it)."""
        return self._isolated.result()

    def load(self, tables, next_ids: dict):
        self.records.load(tables["application"], next_ids.get("application", 1))
        self.authorizations.load(tables["authorization"])
        self.workareas.prepare()

    def start_expiry(self):
        """Delete expired records now and every hour."""
        async def sweep():
            while True:
                self.expire()
                await asyncio.sleep(EXPIRY_INTERVAL)
        self._expiry = asyncio.get_running_loop().create_task(sweep())

    def expire(self):
        areas = [a.workarea for a in self.records.apps.values()]
        self.records.expire()
        for area in set(areas) - {a.workarea for a in self.records.apps.values()}:
            WorkAreas.remove(area)

    # ------------------------------------------------------------- submit
    def admit(self, identity, title: str, path: str, args: list, write: bool,
              timeout: float | None):
        """Refuse, with the limit named, what would exceed the configured bounds."""
        config = self.config
        for name, value, limit in (("path", path, config.app_max_path),
                                   ("title", title, config.app_max_title)):
            if len(value.encode()) > limit:
                raise InvalidParams(f"the {name} exceeds {limit} bytes", field=name)
        if sum(len(a.encode()) + 1 for a in args) > config.app_max_args:
            raise InvalidParams(f"the arguments exceed {config.app_max_args} bytes",
                                field="args")
        setting = "writer_max_time" if write else "app_max_time"
        most = getattr(config, setting)
        if not identity.superuser and (timeout is None or timeout > most):
            raise InvalidParams(
                f"a {'read/write' if write else 'read-only'} application may run at most "
                f"{most:g} s ({file_key(setting)}); only the superuser may lift it",
                field="timeout")
        if identity.superuser:
            return
        mine = len(self.records.active(identity.name))
        if mine >= config.app_max_per_user:
            raise Busy(f"{identity.name} has {mine} applications active (limit "
                       f"{config.app_max_per_user} per user); wait for one to end")
        total = len(self.records.active())
        if total >= config.app_max_total:
            raise Busy(f"{total} applications are active (limit {config.app_max_total}); "
                       f"try again later")

    def create(self, identity, **fields) -> Application:
        """A new record; a writer whose script is not authorized ends at once."""
        app = self.records.new(user=identity.name, uid=identity.peer.uid,
                               gid=identity.peer.gid, superuser=identity.superuser, **fields)
        if app.write and not self.authorizations.allows(app.title, app.user, app.checksum):
            app.end("authfailed", self._not_authorized(app))
            log.warning("application %d refused: %s", app.id, app.message)
        return app

    @staticmethod
    def _not_authorized(app) -> str:
        return (f"script {app.path} (sha256 {app.checksum[:12]}…) is not authorized for "
                f"read/write under title {app.title!r} for user {app.user}; root authorizes "
                f"it with dynamo-exec-auth")

    def visible_to(self, identity, app: Application) -> bool:
        """A user sees their own records; the superuser and admins see everyone's."""
        return app.user == identity.name or self.is_admin(identity)

    def is_admin(self, identity) -> bool:
        return identity.superuser or self.users.has_role(identity.name, ("admin",),
                                                         "application")

    def start(self, app: Application, stdio: list | None, no_wait: bool = False):
        """Run `app` in the background; its events are set as it starts and ends.

        Takes ownership of the `stdio` descriptors: they are closed when it ends.
        """
        if app.write and no_wait and self.slot.holder is not None:
            holder = self.slot.describe()
            message = "another read/write application is running" + (
                f" (id {holder['app']}, {holder['title']!r} of {holder['user']})"
                if holder else "")
            app.end("failed", message)
            self.records.persist(app)
            descriptors.close_later(stdio, app.uid)
            raise Busy(message)
        task = asyncio.get_running_loop().create_task(self._run(app, stdio))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, app: Application, stdio):
        try:
            if app.write:
                if self.service.gate.locked():
                    app.status = "waiting"
                    self.records.persist(app)
                async with self.slot.hold(app):
                    self._bound_time(app)
                    if self._still_allowed(app, "while it waited"):
                        await self._execute(app, stdio)
            else:
                await self._execute(app, stdio)
        except (DynamoError, CgroupError) as exc:
            message = getattr(exc, "message", str(exc))
            log.warning("application %d could not start: %s", app.id, message)
            app.status, app.message = "failed", message
        except Exception as exc:  # the record must end, whatever happened
            log.exception("application %d failed in the daemon", app.id)
            app.status, app.message = "failed", f"daemon error: {exc}"
        finally:
            descriptors.close_later(stdio, app.uid)   # the caller's: their close may wait (descriptors.py)
            app.end(app.status, app.message)
            self.records.persist(app)
            log.info("application %d (%s) ended: %s, exit code %s", app.id, app.title,
                     app.status, app.exit_code)

    def _bound_time(self, app: Application):
        """A writer's time as `writer_max_time` is when its turn comes (lowered on SIGHUP
        while it waited, it would else run, holding the slot, as long as it was admitted
        with); the superuser's is left as asked."""
        most = self.config.writer_max_time
        if not app.superuser and (app.timeout is None or app.timeout > most):
            log.warning("application %d: its time-out lowered from %s to %g s "
                        "([applications] writer_max_time)", app.id, app.timeout, most)
            app.timeout = most

    def _still_allowed(self, app: Application, when: str) -> bool:
        """A writer runs only if its script is still authorized and its submitter still
        has the role when its turn for the slot comes, and its changes apply only if
        they still are when it ends (`when` says which, for the message)."""
        if app.status == "killed":
            return False
        if not self.authorizations.allows(app.title, app.user, app.checksum):
            app.status, app.message = "authfailed", self._not_authorized(app) + \
                f" (the authorization was revoked {when})"
        elif not app.superuser and not self.users.has_role(app.user, ("admin", "operator"),
                                                           "application"):
            app.status, app.message = "authfailed", (
                f"{app.user} lost the admin or operator role on application {when}")
        else:
            return True
        log.warning("application %d refused: %s", app.id, app.message)
        return False

    # ------------------------------------------------------------ execute
    async def _execute(self, app: Application, stdio):
        if app.status == "killed":
            return
        if stdio is None:
            app.workarea = self.workareas.create(app.id, app.uid, app.gid)
        cgroup = self.cgroups.create(app.id) if self.cgroups else None
        try:
            await self._fork_and_wait(app, stdio, cgroup)
        finally:
            if cgroup:
                self._remove_cgroup(cgroup, tries=5)

    def _remove_cgroup(self, path: str, tries: int):
        """Again a little later while the kernel still counts the reaped child."""
        if not self.cgroups.remove(path, last_try=tries <= 1):
            asyncio.get_running_loop().call_later(0.02, self._remove_cgroup, path, tries - 1)

    async def _fork_and_wait(self, app: Application, stdio, cgroup):
        loop = asyncio.get_running_loop()
        updates_r = updates_w = None
        if app.write:
            updates_r, updates_w = os.pipe()
            os.set_blocking(updates_r, False)
        files_here, files_there = socket.socketpair()
        # The daemon reads it on its event loop: a descriptor the script sent on it would be
        # closed there by the kernel, however long that close waits (descriptors.py).
        descriptors.allow(files_here, False)
        try:
            forked = await self._fork_at_committed_state(
                app, stdio, updates_w, files_there, cgroup)
        finally:
            if updates_w is not None:
                os.close(updates_w)
            files_there.close()
        if forked is None:   # killed while it waited
            if updates_r is not None:
                os.close(updates_r)
            files_here.close()
            return
        snapshot, pid = forked
        app.script = ""  # the child has its copy; records live on, scripts need not
        serving = loop.create_task(filechannel.serve(files_here, snapshot))
        app.pid, app.status, app.started = pid, "run", time.time()
        self.records.persist(app)
        app.started_event.set()
        log.info("application %d (%s, %s) started as pid %d for %s", app.id, app.title,
                 "read/write" if app.write else "read-only", pid, app.user)
        receiver = None
        if updates_r is not None:
            receiver = Receiver(updates_r, self.config.app_max_changes,
                                lambda why: self.kill_or_say(app.id, why),
                                lambda: loop.remove_reader(updates_r))
            loop.add_reader(updates_r, receiver.read)
        try:
            await self._wait(app, pid)   # sets app.exit_code
        finally:
            serving.cancel()
            await filechannel.close(snapshot)
            self._open_spare()
            if receiver is not None:
                loop.remove_reader(updates_r)
                receiver.read()
                os.close(updates_r)
        if app.status == "killed":
            return
        if app.exit_code != 0:
            app.status = "failed"
            app.message = app.message or f"{describe_exit(app.exit_code)}; nothing was changed"
        elif app.write:
            # Checked again at its end: a revocation while it ran must not let its
            # changes through (root revoked the script or the user for a reason).
            if self._still_allowed(app, "while it ran; nothing was applied"):
                await write_back(self.service, app, receiver)
        else:
            app.status = "done"

    async def _fork_at_committed_state(self, app, stdio, updates_w, files_there, cgroup):
        """Fork where memory equals the committed store, with a read transaction opened
        at that same state: (the snapshot, the child's pid), or None when the application
        was killed while it waited for that state (it then never runs)."""
        return await self.at_committed_state(
            lambda: None if app.status == "killed" else
            self._fork(app, stdio, updates_w, files_there, cgroup))

    async def at_committed_state(self, action):
        """`action()` (synchronous) at a moment when memory equals the committed store.
        Changes apply synchronously under the gate and are then committed by the
        writer: once the writer is idle, nothing applied is uncommitted (no undo is
        pending), and nothing can apply before `action` runs (no await in between)."""
        writer = self.service.writer
        while not writer.idle:
            if self.slot.holder is not None:
                await writer.flush()   # a writer app holds the gate: nothing else applies
                continue
            async with self.service.gate:   # hold injections back while the writer drains
                while not writer.idle:
                    await writer.flush()
                return action()
        return action()

    def _fork(self, app, stdio, updates_w, files_there, cgroup):
        isolated_path = self.isolated_path if app.write else None
        snapshot = self._hold_snapshot()
        plan = child.Plan(app, self.service.inventory, stdio, updates_w, files_there.fileno(),
                          app.workarea, cgroup, self._rlimits(), self.config.app_memory or None,
                          self._forget_in_child(app.id), isolated_path, child.home_of(app))
        gc.collect(1)
        gc.freeze()
        # Signals stay blocked across the fork: until the child has reset its handlers,
        # it shares the daemon's signal wake-up socket, and a SIGTERM meant for the
        # application (a kill right after it starts) would stop the daemon.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        pid = os.fork()
        if pid == 0:
            child.run(plan)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        gc.unfreeze()
        return snapshot, pid

    def _hold_snapshot(self) -> StoreReader:
        """A read transaction on the store as it is now, on the connection opened ahead
        if there is one: a new connection's first query reads the schema, which would
        add a third of a millisecond to every start."""
        snapshot, self._spare = self._spare or StoreReader(self.service.store.path), None
        try:
            snapshot.hold()
        except BaseException:
            snapshot.close()
            raise
        return snapshot

    def _open_spare(self):
        """The next application's connection, opened as one ends (not as one starts: the
        new child would share the cores with this work).  If it cannot be opened, the
        next start opens its own (and reports why)."""
        if self._spare is not None or self._stopping:
            return
        try:
            self._spare = StoreReader(self.service.store.path).prepared()
        except DynamoError as exc:
            log.debug("no read connection opened ahead: %s", exc.message)

    def _rlimits(self) -> dict:
        config = self.config
        limits = {resource.RLIMIT_CORE: 0}   # a core file would hold the daemon's memory
        if config.app_cpu_time:
            limits[resource.RLIMIT_CPU] = int(config.app_cpu_time)
        if config.app_processes:
            limits[resource.RLIMIT_NPROC] = config.app_processes
        if config.app_file_size:   # its output cannot fill the disk in one runaway loop
            limits[resource.RLIMIT_FSIZE] = config.app_file_size
        return limits

    def _forget_in_child(self, app_id: int):
        """What the child drops before user code: the daemon's private records."""
        def forget():
            self.users.forget()
            self.authorizations.forget()
            self.records.forget_others(app_id)
            self._forget_connections()
        return forget

    def _forget_connections(self):
        """In a child: who is connected (their user names, DNs, uids and pids).  Each
        identity is emptied in place, since the requests in flight hold it too; the
        refusals counted per peer (named by user and DN) go as well."""
        for connection in self.connections:
            identity = connection.identity
            if identity is not None:
                identity.peer, identity.name, identity.dn = Peer(0, -1, -1), None, None
                identity.refusal, identity.superuser = "", False
            connection.challenge = None
        self.connections.clear()
        from .. import connection   # loaded already (it imports this module's users)
        for refusals in (policy.refusals, connection.refusals):
            refusals.peers.clear()

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
                    self.kill_or_say(app.id, f"time-out after {app.timeout:g} s")
                    await ended
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        # Noted before anything else can run: from here the pid may be another process's,
        # and every signal to the application checks this first (kill, interrupt).
        app.exit_code = os.waitstatus_to_exitcode(status)
        return status

    # --------------------------------------------------------------- kill
    def kill(self, app_id: int, reason: str) -> bool:
        """Stop an application: SIGTERM now, SIGKILL after the grace period.  Its message
        is the `reason` alone: its status says it was killed."""
        app = self.records.get(app_id)
        if not app.active or app.exit_code is not None:
            return False  # ended, or its changes are being committed: too late to stop
        running = app.status == "run" and app.pid
        if running:   # first: a refused signal leaves the record as it is
            _signal(app, signal.SIGTERM)
        app.status, app.message = "killed", reason
        log.warning("application %d (%s) killed: %s", app.id, app.title, reason)
        if running:
            loop = asyncio.get_running_loop()
            loop.call_later(self.config.kill_grace, self._force_kill, app)
        else:
            app.end("killed", app.message)
            self.records.persist(app)
        return True

    def interrupt(self, app_id: int) -> bool:
        """SIGINT to a running application: the Ctrl-C its client received (the child has
        no controlling terminal, so the terminal's Ctrl-C reaches only the client)."""
        app = self.records.get(app_id)
        if app.status != "run" or not app.pid or app.exit_code is not None:
            return False  # not started, ended, or its changes are being committed
        _signal(app, signal.SIGINT)
        return True

    def kill_or_say(self, app_id: int, reason: str):
        """`kill` where no caller is there to be told it could not: the log is."""
        try:
            self.kill(app_id, reason)
        except NotConfigured as exc:
            log.error("%s", exc.message)

    def _force_kill(self, app: Application):
        if app.exit_code is None and not app.ended_event.is_set():
            try:
                _signal(app, signal.SIGKILL)
            except NotConfigured as exc:
                log.error("%s", exc.message)

    async def stop_all(self):
        """Kill every running application (daemon shutdown) and wait for their ends."""
        if self._expiry is not None:
            self._expiry.cancel()
        self._stopping = True
        self._isolated.close()
        if self._spare is not None:   # before the store's last connection, which cleans up
            self._spare.close()
            self._spare = None
        for app in self.records.active():
            self.kill_or_say(app.id, "the daemon is stopping")
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=self.config.kill_grace + 5)


def _signal(app: Application, sig):
    try:
        os.kill(app.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:   # the unit's CapabilityBoundingSet lacks CAP_KILL
        raise NotConfigured(
            f"cannot stop application {app.id} (pid {app.pid}, uid {app.uid}): the daemon "
            f"may not signal another account's processes without CAP_KILL (systemd unit: "
            f"AmbientCapabilities=)", app=app.id) from None


def describe_exit(code: int) -> str:
    """As a shell says it: a negative code (os.waitstatus_to_exitcode) is a signal."""
    if code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:  # a real-time signal has no name
        name = f"SIGRTMIN+{-code - signal.SIGRTMIN}"
    return f"killed by signal {-code} ({name})"


class IsolatedPath:
    """`sys.path` as `python3 -I` has it: the standard library and what is installed,
    nothing from the environment, the user's site or any working directory.  Asked of
    the interpreter itself once, at start-up, rather than guessed from our own path: the
    child starts before the inventory loads, and its answer is read at the first writer
    (waited for at start-up, it took 15 ms of an empty daemon's; on its own, 0.1-0.2 s)."""

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, "-I", "-c", _PRINT_PATH],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL, env={}, cwd="/")

    def result(self) -> list[str]:
        out, err = self.process.communicate(timeout=30)
        if self.process.returncode != 0:
            raise subprocess.CalledProcessError(self.process.returncode, self.process.args,
                                                out, err)
        return [p for p in orjson.loads(out) if p]

    def close(self):
        """Not wanted after all (the start failed): end the child."""
        if self.process.returncode is None:
            self.process.kill()
            self.process.communicate()


def parse_timeout(hours: float, default_seconds: float) -> float | None:
    """Operators' convention: hours; 0 is the server default; negative is no limit."""
    if hours < 0:
        return None
    if hours == 0:
        return default_seconds
    return hours * 3600.0
