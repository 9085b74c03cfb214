"""`python -m bench.threads [--scale medium] [--files 600000]`

Where an injection's CPU goes across the daemon's threads: the inject figure's
documents (their first `--files` files) through the real dynamo-inject into a
fresh daemon, and the CPU time each thread of the daemon spent meanwhile, read
from /proc/PID/task/*/stat before and after (the change log's writer is given a
moment to write the last entry), beside dynamo-inject's own and the change
log's writer's, a process of the daemon's (`dynamod-log`).  The event loop is
the daemon's main thread; the others go by the names the daemon gives them
(dynamod/threadname.py): the store's connection (dynamod-store), the relay of
the change log's writer (dynamod-relay) and the compressor of large entries
(dynamod-zlib).  On 2 cores the sum bounds the wall time from below (half of
it), and what holds the daemon's GIL (the event loop, most of the store's
thread) must take turns.
"""

import os
import resource
import time

from .daemon import BenchDaemon
from .phases import documents


def thread_seconds(pid: int) -> dict:
    """{thread id: (its name, CPU seconds)} of a process's threads."""
    tick, found = os.sysconf("SC_CLK_TCK"), {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                name, _, fields = f.read().partition(" (")[2].rpartition(") ")
        except OSError:   # the thread ended meanwhile
            continue
        fields = fields.split()
        found[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return found


def child_seconds(pid: int) -> dict:
    """{process id: (its name, CPU seconds)} of a process's children (the change log's
    writer)."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                children = f.read().split()
        except OSError:
            continue
        for child in map(int, children):
            threads = thread_seconds(child)
            if threads:
                found[child] = (threads[child][0] if child in threads else "?",
                                sum(seconds for _, seconds in threads.values()))
    return found


def main(argv=None) -> int:
    with documents(argv, "python -m bench.threads", __doc__, 600_000) as (root, docs):
        daemon = BenchDaemon(root, os.path.join(root, "inject.db"), "FULL", "inject")
        daemon.start()
        try:
            before, client = thread_seconds(daemon.pid), resource.getrusage(
                resource.RUSAGE_CHILDREN)
            before_children = child_seconds(daemon.pid)
            started = time.perf_counter()
            result = daemon.tool("inject", "--json", *docs["paths"])
            wall = time.perf_counter() - started
            if result.returncode != 0:
                raise RuntimeError(f"dynamo-inject failed: {result.stderr[-2000:]}")
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            time.sleep(1.5)   # the change log's writer writing the last entry
            spent = {tid: (name, seconds - before.get(tid, ("", 0.0))[1])
                     for tid, (name, seconds) in thread_seconds(daemon.pid).items()}
            spent_children = {pid: (name, seconds - before_children.get(pid, ("", 0.0))[1])
                              for pid, (name, seconds) in child_seconds(daemon.pid).items()}
        finally:
            daemon.stop()
    files = docs["counts"]["file"]
    per = lambda seconds: f"{seconds:6.2f} s  {seconds / files * 1e6:5.2f} us/file"
    client = after.ru_utime + after.ru_stime - client.ru_utime - client.ru_stime
    print(f"{files:,} files, {len(docs['paths'])} documents: {wall:.2f} s "
          f"({wall / files * 1e6:.2f} us/file); CPU time:")
    print(f"  {'dynamo-inject':24} {per(client)}")
    for tid, (name, seconds) in sorted(spent.items()):   # the main thread's id is the pid
        if seconds >= 0.01:
            print(f"  {'event loop' if tid == daemon.pid else f'{name} ({tid})':24} "
                  f"{per(seconds)}")
    print(f"  {'daemon, all threads':24} {per(sum(s for _, s in spent.values()))}")
    for pid, (name, seconds) in sorted(spent_children.items()):
        print(f"  {f'process {name} ({pid})':24} {per(seconds)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
