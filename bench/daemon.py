"""A real dynamod for the benchmarks, started as a service manager would start it.

Start-up time is measured the way systemd sees it: from the fork of the
process to the READY=1 it sends on NOTIFY_SOCKET (a datagram socket of ours).
"""

import compileall
import functools
import os
import signal
import socket
import subprocess
import sys
import time

import dynamoclient
import dynamod
from dynamoclient.connection import Client

from .probes import hwm_bytes, rss_bytes


class DaemonFailed(RuntimeError):
    pass


@functools.cache
def byte_compiled():
    """The daemon's and the clients' modules compiled once, before the first start: where
    the environment says not to write bytecode (PYTHONDONTWRITEBYTECODE), each start
    would compile every module again (75 ms of a start here), as an installed service
    does not."""
    for package in (dynamod, dynamoclient):
        compileall.compile_dir(os.path.dirname(package.__file__), quiet=1)


class BenchDaemon:
    def __init__(self, root: str, database: str, synchronous: str, name: str = "dynamod",
                 memory_limit: int | None = None, options: tuple = ()):
        self.root = root
        self.state_dir = os.path.join(root, f"{name}-state")
        self.socket = os.path.join(root, f"{name}.sock")
        self.notify_path = os.path.join(root, f"{name}.notify")
        self.database = database
        self.synchronous = synchronous
        self.log_path = os.path.join(root, f"{name}.log")
        self.memory_limit = memory_limit
        self.options = tuple(options)   # more command-line options
        self.process = None
        self.log_offset = 0   # where the last start's lines begin in the log

    @property
    def env(self) -> dict:
        return {**os.environ, "DYNAMO_SOCKET": self.socket}

    def start(self, timeout: float = 3600.0, on_spawn=None) -> float:
        """Start and wait for READY=1; returns the seconds from start to READY.

        `on_spawn(pid)` is called once the process exists.  While waiting, the peak
        resident size is sampled (`self.peak_seen`), so a daemon that dies while loading
        still tells how far it got."""
        byte_compiled()
        os.makedirs(self.state_dir, exist_ok=True)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if os.path.exists(self.notify_path):
            os.unlink(self.notify_path)
        notify.bind(self.notify_path)
        notify.settimeout(0.2)
        log = open(self.log_path, "ab")
        self.log_offset = log.tell()   # where this start's lines begin (wait_for_log)
        limit = self.memory_limit

        def preexec():
            if limit:
                import resource
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        try:
            started = time.perf_counter()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dynamod", "--state-dir", self.state_dir,
                 "--socket", self.socket, "--database", self.database,
                 "--synchronous", self.synchronous, "--log-level", "INFO", *self.options],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                env={**os.environ, "NOTIFY_SOCKET": self.notify_path},
                preexec_fn=preexec if limit else None)
            deadline = started + timeout
            self.peak_seen = 0
            if on_spawn is not None:
                on_spawn(self.process.pid)
            while True:
                try:
                    self.peak_seen = max(self.peak_seen, hwm_bytes(self.process.pid))
                except (OSError, RuntimeError):
                    pass
                try:
                    message = notify.recv(4096)
                except socket.timeout:
                    message = b""
                if b"READY=1" in message.split(b"\n"):
                    return time.perf_counter() - started
                if self.process.poll() is not None:
                    self.failed_after = time.perf_counter() - started
                    raise DaemonFailed(f"dynamod exited with {self.process.returncode} before "
                                       f"READY=1:\n{self.log_tail()}")
                if time.perf_counter() > deadline:
                    raise DaemonFailed(f"dynamod not ready after {timeout:g} s")
        finally:
            log.close()
            notify.close()
            os.unlink(self.notify_path)

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def wait_for_log(self, *texts: str, timeout: float = 600.0) -> str | None:
        """The first line of the log since the last start holding one of `texts`, waiting
        up to `timeout` seconds for it (None: not there, or the daemon ended first)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(self.log_path, "rb") as f:
                    f.seek(self.log_offset)
                    for line in f:
                        line = line.decode(errors="replace")
                        if any(text in line for text in texts):
                            return line.rstrip("\n")
            except OSError:
                pass
            if time.monotonic() > deadline or (self.process and self.process.poll() is not None):
                return None
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def hwm(self) -> int:
        return hwm_bytes(self.pid)

    def client(self, **kwargs) -> Client:
        return Client(self.socket, **kwargs)

    def call(self, method, **params):
        with self.client() as client:
            return client.call(method, **params)

    def tool(self, module: str, *args, timeout: float = 3600, **kwargs):
        """Run a real client (`inject`, `dynamo`, `exec_auth`) against this daemon."""
        return subprocess.run([sys.executable, "-m", f"dynamoclient.{module}", *map(str, args)],
                              env=self.env, capture_output=True, text=True, timeout=timeout,
                              **kwargs)

    def tool_command(self, module: str, *args) -> list:
        return [sys.executable, "-m", f"dynamoclient.{module}", *map(str, args)]

    def stop(self, timeout: float = 600.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
