"""Storage faults, for real: a database locked by another process; tmpfs mounts and loop
devices a test mounts and a daemon on them, all undone in reverse order at the end (the
`rig` fixture)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .daemon import Daemon

SITES = [{"name": "T2_FAULT_A", "host": "a.example.org", "backend": "davs://a/store"},
         {"name": "T2_FAULT_B", "host": "b.example.org", "backend": "davs://b/store"}]
LOCKER = """\
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
"""


def lock(database: str) -> subprocess.Popen:
    """Another process that holds BEGIN EXCLUSIVE on the database until told to stop."""
    holder = subprocess.Popen([sys.executable, "-c", LOCKER, database],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


class Rig:
    """Mounts, loop devices and a daemon, undone in reverse order at the end."""

    def __init__(self, root: Path):
        self.root = root
        self.undo = []

    def run(self, *cmd, skip_reason=None) -> str:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            message = f"{' '.join(cmd)}: {done.stderr.strip() or done.returncode}"
            if skip_reason:
                pytest.skip(f"{skip_reason} ({message})")
            raise RuntimeError(message)
        return done.stdout.strip()

    def tmpfs(self, name: str, size: str) -> Path:
        path = self.root / name
        path.mkdir()
        self.run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path),
                 skip_reason="cannot mount a tmpfs: the storage-fault tests need root "
                             "(CAP_SYS_ADMIN)")
        self.undo.append(lambda: self.run("umount", "-l", str(path)))
        return path

    def loop_ext4(self, image: Path, name: str, errors="continue") -> tuple[Path, str]:
        """An ext4 file system (no journal: an I/O error must not end it) on a loop device
        over `image`, a sparse file: a write to it needs the space of `image`'s file system.
        Returns where it is mounted and the loop device."""
        for tool in ("losetup", "mkfs.ext4"):
            if shutil.which(tool) is None:
                pytest.skip(f"{tool} is missing: the I/O error test needs a loop device")
        self.run("truncate", "-s", "64M", str(image))
        self.run("mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-E", "nodiscard", str(image))
        device = self.run("losetup", "--find", "--show", str(image),
                          skip_reason="no loop device available")
        self.undo.append(lambda: self.run("losetup", "-d", device))
        path = self.root / name
        path.mkdir()
        self.run("mount", "-o", f"errors={errors}", device, str(path),
                 skip_reason="cannot mount a loop device")
        self.undo.append(lambda: self.run("umount", "-l", str(path)))
        return path, device

    def daemon(self, database: Path) -> Daemon:
        daemon = Daemon(self.root / "state", str(self.root / "dynamod.sock"),
                        ["--database", str(database)])
        daemon.database = str(database)
        daemon.start()
        self.undo.append(daemon.stop)
        daemon.call("inject", data={"site": SITES})
        return daemon

    def close(self):
        while self.undo:
            try:
                self.undo.pop()()
            except Exception as exc:  # keep undoing the rest
                print(f"clean-up: {exc}", file=sys.stderr)
