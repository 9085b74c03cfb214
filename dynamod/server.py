"""The daemon: start-up, serving, shutdown.

start: open the store and load the inventory, then listen on the Unix socket
(refusing to take over one a live daemon serves, replacing a stale one).
stop: stop accepting, let in-flight changes commit, close the store, remove
the socket.
"""

import asyncio
import errno
import logging
import os
import signal
import socket
import stat
import time

from .apps.runner import ApplicationManager
from .auth.identity import Authenticator
from .auth.users import UserRegistry
from .auth.x509 import load_trust
from .config import Config
from .connection import Connection
from .errors import Busy, DynamoError
from .service import InventoryService

log = logging.getLogger("dynamod")


class StartupError(Exception):
    """A condition that keeps the daemon from starting; its text is the one-line reason."""


class Server:
    def __init__(self, config: Config):
        self.config = config
        self.users = UserRegistry()
        self.authenticator = Authenticator(self.users, os.getuid())
        self.connections = set()
        self.service = None
        self.apps = None
        self.trust = []  # CA certificates for X.509 authentication
        self.listener = None
        self.started = time.monotonic()
        self._stopping = None

    async def start(self):
        os.umask(0o077)  # the database and logs are the daemon's alone
        # Traversable, not listable: work areas inside belong to their users.
        os.makedirs(self.config.state_dir, mode=0o711, exist_ok=True)
        if not os.access(self.config.state_dir, os.W_OK | os.X_OK):
            raise StartupError(f"state directory {self.config.state_dir} is not writable")
        if self.config.ca_path:
            try:
                self.trust = load_trust(self.config.ca_path)
            except OSError as exc:
                raise StartupError(f"cannot read CA certificates {self.config.ca_path}: "
                                   f"{exc.strerror}") from None
            log.info("%d CA certificate(s) from %s", len(self.trust), self.config.ca_path)
        listening = _claim_socket(self.config.socket)
        try:
            self.service = await InventoryService.open(self.config.database,
                                                       self.config.synchronous, self._load)
        except BaseException:
            listening.close()
            raise
        loop = asyncio.get_running_loop()
        self.listener = await loop.create_unix_server(lambda: Connection(self), sock=listening)
        os.chmod(self.config.socket, 0o666)  # anyone may connect; identity is checked per peer
        self._stopping = asyncio.Event()
        log.info("dynamod ready on %s (pid %d)", self.config.socket, os.getpid())

    def _load(self, service, tables, next_ids):
        """Take the daemon's own records (applications, users) from the loaded store."""
        self.users.load(tables)
        self.apps = ApplicationManager(service, self.config)
        self.apps.load(tables, next_ids)
        os.makedirs(self.config.work_dir, mode=0o711, exist_ok=True)

    def admit(self, connection) -> bool:
        if self._stopping is not None and self._stopping.is_set():
            connection.refuse(Busy("dynamod is shutting down"))
            return False
        if len(self.connections) >= self.config.max_connections:
            log.warning("refused a connection: %d connections open", len(self.connections))
            connection.refuse(Busy(f"too many connections (limit {self.config.max_connections})"))
            return False
        self.connections.add(connection)
        return True

    def forget(self, connection):
        self.connections.discard(connection)

    def request_stop(self):
        if self._stopping is not None:
            self._stopping.set()

    async def serve_until_stopped(self):
        await self._stopping.wait()

    async def stop(self):
        log.info("dynamod stopping")
        if self.listener is not None:
            self.listener.close()
        if self.apps is not None:
            await self.apps.stop_all()
        pending = [t for c in self.connections for t in c.tasks]
        if pending:
            await asyncio.wait(pending, timeout=30)
        for connection in list(self.connections):
            connection.transport.close()
        if self.service is not None:
            await self.service.close()
        try:
            os.unlink(self.config.socket)
        except FileNotFoundError:
            pass
        log.info("dynamod stopped")


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
            raise StartupError(f"cannot use socket {path}: {exc.strerror}") from None
        log.warning("replacing stale socket %s", path)
        os.unlink(path)
    else:
        raise StartupError(f"socket {path} is already served by a running dynamod")
    finally:
        probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(512)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {path}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


async def run(config: Config, on_ready=None) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit status."""
    server = Server(config)
    try:
        await server.start()
    except (StartupError, DynamoError) as exc:
        log.error("%s", exc)
        return 1
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    if on_ready is not None:
        on_ready(server)
    await server.serve_until_stopped()
    await server.stop()
    return 0
