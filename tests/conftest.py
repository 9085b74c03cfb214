"""The daemon fixture: a real dynamod on a real socket with a real SQLite file.

Every integration test starts its own daemon in a temporary directory and talks
to it through the real clients; nothing is mocked.
"""

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pytest

from dynamoclient.connection import Client, ConnectionFailed

EXAMPLES = Path(__file__).parent.parent / "examples"


class Daemon:
    """A dynamod process the test controls: start, stop, kill -9, restart."""

    def __init__(self, state_dir: Path, socket_path: str, extra_args=()):
        self.state_dir = state_dir
        self.socket = socket_path
        self.database = str(state_dir / "inventory.db")
        self.log_path = state_dir / "dynamod.log"
        self.extra_args = list(extra_args)
        self.process = None

    @property
    def env(self) -> dict:
        return {**os.environ, "DYNAMO_SOCKET": self.socket}

    def start(self, timeout=15.0):
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dynamod", "--state-dir", str(self.state_dir),
             "--socket", self.socket, *self.extra_args],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dynamod exited with {self.process.returncode}:\n{self.log()}")
            try:
                with Client(self.socket, timeout=5) as client:
                    client.call("ping")
                return self
            except (ConnectionFailed, OSError):
                time.sleep(0.02)
        raise RuntimeError(f"dynamod did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig=signal.SIGTERM, timeout=30.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        code = self.process.wait(timeout)
        return code

    def kill9(self):
        self.process.kill()
        self.process.wait()

    def restart(self):
        self.stop()
        return self.start()

    def client(self, **kwargs) -> Client:
        return Client(self.socket, **kwargs)

    def call(self, method, **params):
        with self.client() as client:
            return client.call(method, **params)

    def client_command(self, tool, *args, input=None, check=True, timeout=60, **kwargs):
        """Run a real client (`inject`, `dynamo`, `exec_auth`) with these arguments."""
        result = subprocess.run([sys.executable, "-m", f"dynamoclient.{tool}", *map(str, args)],
                                env=self.env, input=input, capture_output=True, text=True,
                                timeout=timeout, **kwargs)
        if check and result.returncode != 0:
            raise AssertionError(f"{tool} {args} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def inject(self, *args, **kwargs) -> subprocess.CompletedProcess:
        """Run the real `dynamo-inject` with these arguments."""
        return self.client_command("inject", *args, **kwargs)

    def dynamo(self, *args, **kwargs) -> subprocess.CompletedProcess:
        """Run the real `dynamo` with these arguments."""
        return self.client_command("dynamo", *args, **kwargs)

    def exec_auth(self, *args, **kwargs) -> subprocess.CompletedProcess:
        """Run the real `dynamo-exec-auth` with these arguments."""
        return self.client_command("exec_auth", *args, **kwargs)

    def inject_json(self, document, *args, check=True) -> dict:
        """Inject a document through `dynamo-inject --json -` and return the counts."""
        result = self.inject("--json", *args, "-", input=json.dumps(document), check=check)
        return json.loads(result.stdout) if result.returncode == 0 else result


NOBODY = 65534


def read_until(fd, marker: bytes, timeout=15.0) -> bytes:
    """Read a terminal (pty) until `marker` appears; everything read so far."""
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no {marker!r} in {data!r}")
        data += os.read(fd, 4096)
    return data


def as_nobody(work, *args):
    """Run `work(*args)` in a forked child as uid/gid 65534; its (JSON) return value."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest, no exceptions escaping
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(write_end, orjson.dumps(work(*args)))
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged child failed"
    return orjson.loads(data)


@pytest.fixture
def daemon():
    """A running dynamod in a fresh temporary directory (short path: sockets need one)."""
    root = Path(tempfile.mkdtemp(prefix="dyn-", dir="/tmp"))
    os.chmod(root, 0o755)
    instance = Daemon(root / "state", str(root / "dynamod.sock"))
    instance.start()
    yield instance
    instance.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def workdir():
    """A fresh directory under /tmp that every account can reach (pytest's own
    temporary tree is root's alone, and socket paths must stay short)."""
    root = Path(tempfile.mkdtemp(prefix="dyo-", dir="/tmp"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def seed_sites() -> dict:
    return json.loads((EXAMPLES / "mydynamo-storage-sites.json").read_text())


@pytest.fixture
def seed_data() -> dict:
    return json.loads((EXAMPLES / "mydynamo-data.json").read_text())
