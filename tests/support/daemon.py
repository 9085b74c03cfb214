"""A dynamod the test controls: a real process on a real socket with a real SQLite file."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from dynamoclient.connection import Client, ConnectionFailed

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def fresh_directory(prefix: str = "dyn-") -> Path:
    """A new directory under /tmp that every account can reach (pytest's own temporary
    tree is root's alone, and socket paths must stay short)."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(root, 0o755)
    return root


def write_config(path: Path, tables: dict):
    """A TOML configuration file: {table: {key: value}} (values as JSON writes them)."""
    path.write_text("".join(f"[{table}]\n" + "".join(
        f"{key} = {orjson.dumps(value).decode()}\n" for key, value in settings.items())
        for table, settings in tables.items()))


def rss_kib(pid: int) -> int:
    """The resident memory of process `pid` (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """The user and system CPU time process `pid` has used, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def running(pid: int) -> bool:
    """Whether process `pid` runs: it neither ended nor is a zombie awaiting its parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Daemon:
    """A dynamod process the test controls: start, stop, kill -9, restart."""

    def __init__(self, state_dir: Path, socket_path: str, extra_args=()):
        self.state_dir = state_dir
        self.socket = socket_path
        self.database = str(state_dir / "inventory.db")
        self.log_path = state_dir / "dynamod.log"
        self.extra_args = list(extra_args)
        self.process = None

    @classmethod
    def in_directory(cls, root: Path, *extra_args) -> "Daemon":
        """A daemon whose state and socket are in `root` (not started)."""
        return cls(root / "state", str(root / "dynamod.sock"), extra_args)

    @property
    def env(self) -> dict:
        return {**os.environ, "DYNAMO_SOCKET": self.socket}

    def start(self, timeout=15.0, wrapper=(), **popen):
        """Start and wait until it answers; `wrapper`: a command that runs it (setpriv ...);
        `popen`: more arguments for subprocess.Popen."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "dynamod", "--state-dir", str(self.state_dir),
             "--socket", self.socket, *self.extra_args],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, **popen,
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

    def change_log_written(self, timeout=20.0):
        """Wait until the change log's writer (a process of the daemon's) has written every
        committed change's lines out of the store's queue into changes.log."""
        deadline = time.monotonic() + timeout
        while True:
            db = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)
            try:
                if not db.execute("SELECT count(*) FROM change_log").fetchone()[0]:
                    return
            finally:
                db.close()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the change log is not written:\n{self.log()[-2000:]}")
            time.sleep(0.02)

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
