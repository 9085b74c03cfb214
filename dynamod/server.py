"""The daemon: start-up, serving, reload, shutdown.

start: check the state directory, load the CA certificates, take the socket
(inherited from systemd, or claimed: a stale file from a crash is replaced, a
live daemon's socket is not), load the inventory, listen, tell systemd READY.
SIGHUP: reload what can change live (log level, limits, time-outs, CAs).
SIGTERM/SIGINT: stop accepting, kill the applications, let the changes in
flight commit and answer them (within `shutdown_timeout`), close the store.
"""

import asyncio
import errno
import itertools
import logging
import os
import signal
import socket
import stat
import time
from collections import Counter

from . import __version__, descriptors, failstop, logs, systemd
from .apps.cgroup import AppCgroups, CgroupError
from .apps.runner import ApplicationManager, IsolatedPath
from .auth.identity import Authenticator, account_name
from .auth.users import UserRegistry
from .changelog import ChangeLog
from .config import Config, ConfigError, file_key
from .connection import Connection, refusals
from .errors import Busy, DynamoError
from .inventory import partitions
from .service import InventoryService
from .store import check

log = logging.getLogger("dynamod")

# Connections the kernel queues until they are accepted.  The event loop listens again
# with its own default (100) unless told, also on a socket systemd passes.
BACKLOG = 512

# Seconds between two looks for idle connections (at most; a quarter of idle_timeout when
# that is shorter), which also write the summaries of suppressed refusal lines.
IDLE_TICK = 5.0

# Settings SIGHUP applies to the running daemon; the others need a restart.
LIVE_SETTINGS = ("log_level", "max_line_bytes", "max_unidentified_line_bytes",
                 "max_buffered_bytes", "max_connections", "superuser_reserve",
                 "max_connections_per_account", "idle_timeout", "max_requests_in_flight",
                 "app_timeout", "kill_grace", "shutdown_timeout", "ca_path", "file_cache",
                 "app_max_per_user", "app_max_total", "app_max_title", "app_max_path",
                 "app_max_args", "app_retention_days", "writer_max_time", "app_max_time",
                 "app_memory", "app_cpu_time", "app_processes", "app_file_size",
                 "app_max_changes")


class StartupError(Exception):
    """A condition that keeps the daemon from starting; its text is the one-line reason."""


class Server:
    def __init__(self, config: Config):
        self.config = config
        self.users = UserRegistry()
        self.authenticator = Authenticator(self.users, os.getuid())
        self.connections = set()
        self.numbers = itertools.count(1)   # each connection's, for the logs (Connection.number)
        self.accounts = Counter()  # uid -> connections it holds (all but the superuser's)
        self.buffered = 0   # bytes of unfinished lines held for them (max_buffered_bytes)
        self.service = None
        self.apps = None
        self.cgroups = None  # the applications' cgroups, when delegated to us
        self.trust = []  # CA certificates for X.509 authentication
        self.listener = None
        self.activated = False  # the socket came from systemd, which owns its file
        self.started = time.monotonic()
        self._stopping = asyncio.Event()   # set by SIGTERM/SIGINT, from the first moment
        self._watchdog = None
        self._idle = None   # the task closing idle connections
        self._check = None  # the store's integrity check, in a thread
        self._isolated = None  # the applications' sys.path, asked of a child at start-up

    async def start(self):
        os.umask(0o077)  # the database and logs are the daemon's alone
        self._check_state_dir()
        self._check_change_log()
        self.trust = load_trust_or_say_why(self.config.ca_path)
        try:
            self.cgroups = AppCgroups.setup(self.config.cgroup, self.config.app_memory or None,
                                            self.config.app_processes or None)
        except CgroupError as exc:
            raise StartupError(str(exc)) from None
        listening = systemd.listen_socket()
        self.activated = listening is not None
        if listening is None:
            listening = _claim_socket(self.config.socket)
        systemd.notify(f"STATUS=loading the inventory from {self.config.database}")
        self._isolated = IsolatedPath()   # asked of a child while the inventory loads
        try:
            self.service = await InventoryService.open(
                self.config.database, self.config.synchronous, self._load,
                ChangeLog(self.config.change_log), self.config.file_cache,
                self.config.partitions, self.config.rebuild)
        except BaseException:
            self._isolated.close()
            listening.close()
            if not self.activated:  # a refused start leaves no socket file behind
                os.unlink(self.config.socket)
            raise
        where = listening.getsockname() if self.activated else self.config.socket
        if not descriptors.allow(listening, False):
            log.warning("this kernel cannot refuse descriptors sent to the socket (SO_PASSRIGHTS, "
                        "Linux 6.16): a peer that sends one with a request can hold the daemon "
                        "while the kernel closes it (RELIABILITY.md, Known limits)")
        loop = asyncio.get_running_loop()
        self.listener = await loop.create_unix_server(lambda: Connection(self), sock=listening,
                                                      backlog=BACKLOG)
        if not self.activated:
            os.chmod(self.config.socket, 0o666)  # anyone may connect; identity is per peer
        counts = self.service.loaded_counts
        systemd.notify("READY=1", f"STATUS=serving {counts['sites']} sites, "
                                  f"{counts['datasets']} datasets, {counts['files']} files")
        self.apps.start_expiry()
        self._idle = loop.create_task(self._close_idle())
        self._check = check.Watch(self.config.database, failstop.damaged, loop).start()
        self.service.keep_snapshot(self.config.snapshot_idle, self.config.snapshot_interval)
        interval = systemd.watchdog_interval()
        if interval:
            self._watchdog = loop.create_task(_watchdog(interval))
        log.info("dynamod ready on %s (pid %d%s; version %s; configuration %s)", where,
                 os.getpid(), ", socket from systemd" if self.activated else "", __version__,
                 self.config.config_file or "none: the defaults and the options")

    def _check_state_dir(self):
        try:
            make_state_dir(self.config.state_dir)
            probe = os.path.join(self.config.state_dir, f".write-test-{os.getpid()}")
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(probe)
        except OSError as exc:
            raise StartupError(f"state directory {self.config.state_dir} is not writable: "
                               f"{exc.strerror}{_owner_hint(self.config.state_dir, exc)}"
                               ) from None

    def _check_change_log(self):
        """A change log that no write can ever reach is a mistake in the configuration, told
        at start; a full disk is not (its lines wait in the store: changelog.py)."""
        path = self.config.change_log
        where = f"change log {path} ([daemon] change_log)"
        if os.path.lexists(path) and not os.path.isfile(path):
            raise StartupError(f"{where} is not a regular file")
        if not os.path.isdir(os.path.dirname(path)):
            raise StartupError(f"{where}: its directory does not exist")

    def _load(self, service, tables, next_ids):
        """Take the daemon's own records (applications, users) from the loaded store."""
        self.users.load(tables)
        for name in self.authenticator.superuser_names():
            if name in self.users.users:   # stored before set_user refused such names
                log.warning("the registered user %r bears a name of the superuser: what "
                            "is the superuser's by that name (applications, script "
                            "authorizations) is that user's too; delete it "
                            "(dynamo-user-auth --user %s --delete) and register it under "
                            "another name", name, name)
        self.apps = ApplicationManager(service, self.config, self.users, self.cgroups,
                                       self._isolated, self.connections)
        self.apps.load(tables, next_ids)

    def admit(self, connection) -> bool:
        """Take the connection, or refuse it with `busy` naming the limit: one account
        (uid) holds at most max_connections_per_account, and the last superuser_reserve
        slots are the superuser's, so that no one else can lock root out."""
        config, identity = self.config, connection.identity
        uid, superuser = identity.peer.uid, identity.superuser
        per_account = config.max_connections_per_account
        limit = config.max_connections - (0 if superuser else config.superuser_reserve)
        if self._stopping.is_set():
            connection.refuse(Busy("dynamod is shutting down", reason="shutdown"))
            return False
        if not superuser and per_account and self.accounts[uid] >= per_account:
            error = Busy(f"uid {uid} already holds {self.accounts[uid]} connections, the most "
                         f"one account may (max_connections_per_account): close one, then "
                         f"try again", reason="account", limit=per_account)
        elif len(self.connections) >= limit:
            kept = "" if superuser else (f": max_connections {config.max_connections} less "
                                         f"{config.superuser_reserve} kept for the superuser")
            error = Busy(f"too many connections (limit {limit}{kept}); try again later",
                         reason="connections", limit=limit)
        else:
            self.connections.add(connection)
            if not superuser:
                connection.account = uid
                self.accounts[uid] += 1
            return True
        who = identity.describe()
        refusals.warning(who, "refused a connection of %s: %s", who, error.message)
        connection.refuse(error)
        return False

    def forget(self, connection):
        if connection not in self.connections:
            return  # refused at admission
        self.connections.discard(connection)
        if connection.account is not None:
            self.accounts[connection.account] -= 1
            if not self.accounts[connection.account]:
                del self.accounts[connection.account]

    async def _close_idle(self):
        """Close the connections idle past idle_timeout, so that forgotten ones give
        their slots back; and write the summaries of suppressed refusal lines."""
        while True:
            timeout = self.config.idle_timeout
            await asyncio.sleep(min(timeout / 4, IDLE_TICK) if timeout else IDLE_TICK)
            refusals.sweep()
            timeout = self.config.idle_timeout
            if timeout:
                now = time.monotonic()
                for connection in [c for c in self.connections if c.idle_for(now) >= timeout]:
                    connection.close_idle(timeout)

    def request_stop(self):
        self._stopping.set()

    def reload(self, fresh: Config):
        """Apply the live settings of a re-read configuration, logging each change (and
        that there was none: an operator who edited the file wants to know it was seen)."""
        changed = fresh.partitions != self.config.partitions
        for name in LIVE_SETTINGS:
            old, new = getattr(self.config, name), getattr(fresh, name)
            if old == new:
                continue
            changed = True
            if name == "ca_path":
                try:
                    self.trust = load_trust_or_say_why(new)
                except StartupError as exc:
                    log.error("reload: %s; keeping %s", exc,
                              f"the CA certificates of {old}" if old else
                              "no CA certificates (peers identified by their Unix account)")
                    continue
            if name == "log_level":
                logging.getLogger().setLevel(new)
            if name in ("app_memory", "app_processes") and self.cgroups is not None:
                self.cgroups.memory_max = fresh.app_memory or None
                self.cgroups.pids_max = fresh.app_processes or None
            if name == "file_cache":
                self.service.inventory.file_cache.limit = new
                self.service.inventory.file_cache.trim()
            setattr(self.config, name, new)
            log.warning("reload: %s changed from %r to %r", file_key(name), old, new)
            if name in ("max_line_bytes", "max_unidentified_line_bytes"):
                for connection in self.connections:
                    connection.update_line_limit()
        if fresh.partitions != self.config.partitions:
            asyncio.get_running_loop().create_task(self._reload_partitions(fresh.partitions))
        for name in ("state_dir", "socket", "database", "synchronous", "work_dir", "change_log",
                     "cgroup", "snapshot_idle", "snapshot_interval"):
            if getattr(self.config, name) != getattr(fresh, name):
                log.warning("reload: %s changes only at restart", file_key(name))
                changed = True
        if not changed:
            log.info("reload: no setting changed (%s)",
                     f"configuration {fresh.config_file}" if fresh.config_file else
                     "no configuration file: the defaults and the options")

    async def _reload_partitions(self, configured: dict):
        """The configuration's partitions, taken when no change is pending (their undo
        would count with the old definitions); the usage is recounted once."""
        def redefine():
            usage = self.service.inventory.usage
            try:
                usage.define(partitions.with_configured(usage.partitions, configured))
            except DynamoError as exc:
                log.error("reload: partitions refused, nothing changed: %s", exc.message)
                return
            usage.recount(self.service.inventory)
            self.config.partitions = configured
            log.warning("reload: configured partitions now %s",
                        ", ".join(configured) or "none")
        await self.apps.at_committed_state(redefine)

    async def serve_until_stopped(self):
        await self._stopping.wait()

    async def stop(self):
        systemd.notify("STOPPING=1", "STATUS=stopping")
        log.info("dynamod stopping")
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._idle is not None:
            self._idle.cancel()
        if self.listener is not None:
            self.listener.close()
        if self.apps is not None:
            await self.apps.stop_all()
        pending = [t for c in self.connections for t in c.tasks]
        if pending:
            await asyncio.wait(pending, timeout=self.config.shutdown_timeout)
        for connection in list(self.connections):
            connection.transport.close()
        if self._check is not None:
            self._check.stop()
        if self.service is not None:
            await self.service.close()
        self.remove_socket()
        log.info("dynamod stopped")

    def remove_socket(self):
        """The socket file goes with the daemon (unless systemd owns it)."""
        if self.listener is not None and not self.activated:
            try:
                os.unlink(self.config.socket)
            except FileNotFoundError:
                pass


def _owner_hint(path: str, exc: OSError) -> str:
    """Refused for want of permission, the usual cause is the account: the daemon started
    by hand under another one, or a directory root made for the service's account.
    Whose the directory is, and who is asking, says which."""
    def name(uid):
        return account_name(uid) or f"uid {uid}"
    if exc.errno not in (errno.EACCES, errno.EPERM):
        return ""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return (f" (it is {name(st.st_uid)}'s, mode {st.st_mode & 0o7777:04o}; this dynamod runs "
            f"as {name(os.geteuid())}: run it as the directory's owner, the unit's User=, "
            f"or give that account the directory)")


def make_state_dir(path: str):
    """Create the state directory traversable but not listable (the work areas inside
    belong to their users); the mode is set apart from makedirs, which a umask such as
    the daemon's own 0077 would narrow."""
    if not os.path.isdir(path):
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o711)


async def _watchdog(interval: float):
    while True:
        systemd.notify("WATCHDOG=1")
        await asyncio.sleep(interval)


def load_trust_or_say_why(path: str) -> list:
    """The CA directory; the X.509 library is loaded only when there is one (a third of
    the daemon's imports).  Also `--check-config`'s check: a missing directory passed
    it, and then stopped the start."""
    if not path:
        return []
    from .auth.x509 import load_trust
    try:
        trust = load_trust(path)
    except OSError as exc:
        hint = ("; install the CA certificates there, or remove the key (peers are then "
                "identified by their Unix account only)"
                if isinstance(exc, FileNotFoundError) else "")
        raise StartupError(f"cannot read CA certificates {path} ([auth] ca_path): "
                           f"{exc.strerror}{hint}") from None
    log.info("%d CA certificate(s) from %s", len(trust), path)
    return trust


def _claim_socket(path: str) -> socket.socket:
    """A listening socket at `path`; a stale file is replaced, a live daemon is not."""
    if os.path.lexists(path) and not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise StartupError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.ECONNREFUSED:
            raise StartupError(f"cannot use socket {path}: {exc.strerror or exc}") from None
        log.warning("replacing stale socket %s: the daemon before this one did not stop "
                    "cleanly (killed, or the machine went down); what it acknowledged is in "
                    "the store, and applications it ran are marked killed", path)
        os.unlink(path)
    else:
        raise StartupError(f"socket {path} is already served by a running dynamod")
    finally:
        probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


async def run(config: Config, on_ready=None, reread=None) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit status.

    `reread()` returns a fresh Config for SIGHUP (or raises ConfigError).
    """
    server = Server(config)
    # The handlers come first: a SIGTERM during start-up, or right after READY=1, stops
    # the daemon cleanly (exit 0, socket removed) instead of killing it.
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    loop.add_signal_handler(signal.SIGHUP, _reload, server, reread)
    failstop.on_stop(server.remove_socket)
    try:
        failstop.hold_reserve()
        await server.start()
    except (StartupError, DynamoError) as exc:
        log.error("%s", exc)
        return 1
    if on_ready is not None:
        on_ready(server)
    await server.serve_until_stopped()
    await server.stop()
    return 0


def _reload(server, reread):
    if reread is None or server.apps is None:
        log.warning("SIGHUP: ignored (%s)", "no configuration to re-read" if reread is None
                    else "still starting")
        return
    logs.reopen()
    log.info("SIGHUP: reloading the configuration")
    try:
        server.reload(reread())
    except ConfigError as exc:
        log.error("reload refused, nothing changed: %s", exc)
