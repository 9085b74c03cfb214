"""Where a measured cost goes: py-spy attached to the daemon while it works.

Optional (`python -m bench --profile`, needs `py-spy` on PATH and ptrace
rights).  The samples are summarized as the share of time spent inside each
function of the daemon (inclusive: a sample counts once for every function
on its stack), which is what the benchmark notes report.
"""

import os
import shutil
import signal
import subprocess
from collections import Counter

RATE = 100  # samples per second: low, and --nonblocking, so the daemon is not slowed


class Profile:
    def __init__(self, pid: int, out: str):
        self.pid = pid
        self.out = out
        self.process = None
        self.summary = None

    @staticmethod
    def available() -> bool:
        return shutil.which("py-spy") is not None

    def __enter__(self):
        self.process = subprocess.Popen(
            ["py-spy", "record", "--pid", str(self.pid), "--rate", str(RATE), "--nonblocking",
             "--format", "raw", "--output", self.out],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.summary = summarize(self.out) if os.path.exists(self.out) else None
        return False


def _function(frame: str) -> str:
    """`name (path/to/file.py:123)` -> `file.py:name`"""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    return f"{os.path.basename(path)}:{name}" if path else name


# Frames every sample of the daemon sits in: they say nothing about where time goes.
IGNORED = {"<module>", "run", "_run_module_as_main", "_run_code", "main", "_serve",
           "Runner.run", "Thread.run", "Thread._bootstrap", "Thread._bootstrap_inner",
           "Connection._run", "<lambda>"}


def summarize(path: str, top: int = 8) -> dict:
    """{"samples": n, "inclusive": [(function, share)], "self": [(function, share)]}"""
    inclusive, leaf, total = Counter(), Counter(), 0
    with open(path, errors="replace") as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [_function(fr) for fr in stack.split(";") if fr]
            total += n
            for fn in set(frames):
                inclusive[fn] += n
            if frames:
                # time in C under the loop's own frame: uvloop callbacks, epoll, syscalls
                name = frames[-1]
                leaf["event loop (C code)" if name.endswith("Runner.run") else name] += n
    if not total:
        return {"samples": 0, "inclusive": [], "self": []}

    def keep(fn):
        name = fn.split(":", 1)[-1]
        return fn not in IGNORED and name not in IGNORED and not fn.startswith(("process ",
                                                                               "thread "))

    incl = [(fn, n / total) for fn, n in inclusive.most_common() if keep(fn)]
    return {"samples": total, "inclusive": incl[:top],
            "self": [(fn, n / total) for fn, n in leaf.most_common(top)]}


def describe(summary: dict | None) -> str:
    if not summary or not summary["samples"]:
        return "no samples"
    inclusive = ", ".join(f"{fn} {share:.0%}" for fn, share in summary["inclusive"])
    own = ", ".join(f"{fn} {share:.0%}" for fn, share in summary["self"][:5])
    return f"{summary['samples']:,} samples; inside: {inclusive}; own time: {own}"
