"""Each application in a cgroup v2 of its own, below the daemon's.

A script that allocates without end, or forks without end, would otherwise
take the memory or the process slots the daemon needs to go on serving; with
its own `memory.max` and `pids.max` the kernel stops the script, not the
daemon.  The daemon needs a delegated subtree for this (under systemd:
`Delegate=yes`).  cgroup v2 puts processes only in leaves once controllers
are enabled, so the subtree is laid out as

    BASE/daemon     the daemon itself
    BASE/app-<id>   one application (its child and everything it starts)

An application's cgroup also holds what its script leaves running (a process
that forked, left the session and forked again): the daemon kills it when the
application ends, and at start-up in the cgroups a crashed daemon left.
"""

import errno
import logging
import os
import signal
import time

log = logging.getLogger("dynamod.apps")

SWEEP_WAIT = 2.0   # seconds start-up waits for a leftover cgroup's processes to die


class CgroupError(Exception):
    """A cgroup the daemon cannot use, with a one-line reason."""


def _read(path):
    with open(path) as f:
        return f.read()


def _write(path, text):
    """One write(2), as cgroup files require; errors are those of the kernel."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _procs(path) -> set[int]:
    """The processes in the cgroup `path` and in those below it."""
    found = set()
    for directory, _, _ in os.walk(path):
        try:
            found.update(map(int, _read(os.path.join(directory, "cgroup.procs")).split()))
        except OSError:
            pass  # removed meanwhile
    return found


def _kill(path):
    """SIGKILL to every process in the cgroup `path` and below it: its cgroup.kill, or
    before Linux 5.14 (no such file) to each process their cgroup.procs list."""
    try:
        _write(os.path.join(path, "cgroup.kill"), "1")
    except OSError:
        _kill_each(path)


def _kill_each(path):
    for pid in _procs(path):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass  # ended meanwhile (or not the daemon's to kill: the cgroup stays, said so)


def _sweep(path) -> int:
    """Kill what an application of an earlier daemon left running in `path` (a crash:
    nothing removed it), until it is empty, then remove it; how many were killed."""
    killed = set()
    deadline = time.monotonic() + SWEEP_WAIT
    while (left := _procs(path)) and time.monotonic() < deadline:
        killed |= left
        _kill(path)
        time.sleep(0.005)
    for directory, _, _ in os.walk(path, topdown=False):
        if directory != path:
            try:
                os.rmdir(directory)
            except OSError:
                pass  # said below: `path` then stays too
    AppCgroups.remove(path)
    return len(killed)


def _own_cgroup():
    """The daemon's cgroup v2 directory and its path in the hierarchy, or None and why not."""
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[2:3] == ["cgroup2"]]
    if not mounts:
        return None, None, "no cgroup v2 file system is mounted"
    with open("/proc/self/cgroup") as f:
        own = [line[3:].rstrip("\n") for line in f if line.startswith("0::")]
    if not own:
        return None, None, "the daemon is in no cgroup v2 (/proc/self/cgroup has no 0:: line)"
    return os.path.join(mounts[0], own[0].lstrip("/")), own[0], None


def _not_delegated(base, own):
    """Why `base` is not ours to divide, or None when it is.

    Write access is the test for the daemon's own account.  Root may write
    anywhere, so as root it also takes systemd's mark of `Delegate=yes`
    (the trusted.delegate or user.delegate attribute) or a cgroup namespace
    of its own; the root of the whole hierarchy never counts.
    """
    if not os.path.exists(os.path.join(base, "cgroup.events")):
        return f"the daemon is in the root cgroup ({base})"
    for name in ("cgroup.procs", "cgroup.subtree_control"):
        if not os.access(os.path.join(base, name), os.W_OK):
            return f"{base} is not delegated to the daemon ({name} is not writable)"
    if not os.access(base, os.W_OK | os.X_OK):
        return f"{base} is not delegated to the daemon (cannot create cgroups in it)"
    if os.geteuid() != 0 or own == "/":
        return None
    for name in ("trusted.delegate", "user.delegate"):
        try:
            if os.getxattr(base, name) == b"1":
                return None
        except OSError:
            pass
    return f"{base} is not marked delegated (systemd: Delegate=yes)"


class AppCgroups:
    """The delegated cgroup v2 subtree the daemon places applications in."""

    def __init__(self, base: str, memory_max: int | None, pids_max: int | None, enforced: list):
        self.base = base
        self.memory_max = memory_max
        self.pids_max = pids_max
        self.enforced = enforced

    @classmethod
    def setup(cls, setting: str, memory_max: int | None,
              pids_max: int | None) -> "AppCgroups | None":
        """Called once at daemon start-up (as the daemon, before serving).

        "off": None.  "auto": the daemon's own cgroup if it is delegated,
        else None (logged at INFO).  An absolute path: that cgroup (created
        if missing), or CgroupError.
        """
        if setting == "off":
            return None
        if setting == "auto":
            base, own, why = _own_cgroup()
            why = why or _not_delegated(base, own)
            if why:
                log.info("applications share the daemon's cgroup: %s", why)
                return None
            try:
                return cls._prepare(base, memory_max, pids_max)
            except CgroupError as e:
                log.warning("applications share the daemon's cgroup: %s", e)
                return None
        if not os.path.isabs(setting):
            raise CgroupError(f"cgroup {setting!r}: neither 'auto', 'off' nor an absolute path")
        if not os.path.isdir(setting):
            parent = os.path.dirname(setting.rstrip("/"))
            if not os.path.exists(os.path.join(parent, "cgroup.controllers")):
                raise CgroupError(f"cgroup {setting}: its parent is not a cgroup v2 directory")
            try:
                os.mkdir(setting)
            except OSError as e:
                raise CgroupError(f"cgroup {setting}: cannot create it: {e.strerror}") from None
        if not os.path.exists(os.path.join(setting, "cgroup.events")):
            raise CgroupError(f"cgroup {setting}: not a cgroup v2 directory below the root")
        return cls._prepare(setting, memory_max, pids_max)

    @classmethod
    def _prepare(cls, base, memory_max, pids_max):
        """Move the daemon into BASE/daemon, enable the controllers, sweep leftovers."""
        step = "create daemon/"
        try:
            os.makedirs(os.path.join(base, "daemon"), exist_ok=True)
            step = "move the daemon into daemon/"
            _write(os.path.join(base, "daemon", "cgroup.procs"), str(os.getpid()))
            available = _read(os.path.join(base, "cgroup.controllers")).split()
            enforced = []
            for controller, limit in (("memory", memory_max), ("pids", pids_max)):
                if controller in available:
                    step = f"enable the {controller} controller"
                    _write(os.path.join(base, "cgroup.subtree_control"), f"+{controller}")
                    enforced.append(controller)
                elif limit is not None:
                    log.warning("cgroup %s has no %s controller: %s_max (%s) is not enforced",
                                base, controller, controller, limit)
        except OSError as e:
            reason = e.strerror
            if e.errno == errno.EBUSY:
                reason = "other processes are in it (cgroup v2 keeps processes in leaves)"
            raise CgroupError(f"cgroup {base}: cannot {step}: {reason}") from None
        leftovers = sorted(name for name in os.listdir(base) if name.startswith("app-"))
        if leftovers:
            killed = sum(_sweep(os.path.join(base, name)) for name in leftovers)
            log.log(logging.WARNING if killed else logging.INFO,
                    "cgroup %s: killed %d %s left in the cgroups of an earlier daemon's "
                    "applications (%s), then removed them", base, killed,
                    "process" if killed == 1 else "processes", ", ".join(leftovers))
        return cls(base, memory_max, pids_max, enforced)

    def create(self, app_id: int) -> str:
        """In the daemon, before the fork: BASE/app-<id> with its limits; returns its path."""
        path = os.path.join(self.base, f"app-{app_id}")
        try:
            try:
                os.mkdir(path)
            except FileExistsError:
                os.rmdir(path)  # a crash's leftover; EBUSY if processes are still in it
                os.mkdir(path)
        except OSError as e:
            raise CgroupError(f"cgroup {path}: {e.strerror}") from None
        limits = []
        if "memory" in self.enforced and self.memory_max is not None:
            limits.append(("memory.max", self.memory_max))
            if os.path.exists(os.path.join(path, "memory.swap.max")):
                limits.append(("memory.swap.max", 0))
        if "pids" in self.enforced and self.pids_max is not None:
            limits.append(("pids.max", self.pids_max))
        for name, value in limits:
            try:
                _write(os.path.join(path, name), str(value))
            except OSError as e:
                self.remove(path)
                raise CgroupError(f"cgroup {path}: cannot set {name}: {e.strerror}") from None
        return path

    @staticmethod
    def enter(path: str) -> None:
        """In the forked child, before it drops privileges: move into `path`."""
        _write(os.path.join(path, "cgroup.procs"), "0")

    @staticmethod
    def remove(path: str, last_try: bool = True) -> bool:
        """In the daemon, once the child is reaped: kill whatever the script left running
        in it, then remove it.  False when the kernel still counts a process (EBUSY
        comes a moment after a reap or a kill) and this is not the last try; the caller
        tries again later rather than sleeping in the event loop."""
        _kill(path)
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError as e:
            if e.errno == errno.EBUSY and not last_try:
                return False
            error = e
        try:
            left = " ".join(_read(os.path.join(path, "cgroup.procs")).split())
        except OSError:
            left = ""
        log.warning("cgroup %s not removed: %s%s", path, error.strerror,
                    f" (processes still in it: {left})" if left else "")
        return True

    def describe(self) -> dict:
        """For the daemon's `status`."""
        return {"base": self.base, "memory_max": self.memory_max,
                "pids_max": self.pids_max, "enforced": list(self.enforced)}
