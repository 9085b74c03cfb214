"""`python -m bench.pings [--scale medium] [--files 600000]`

What another client waits for while an injection runs: the inject figure's
documents (their first `--files` files) through the real dynamo-inject into a
fresh daemon, while a second connection sends `ping` every 5 ms (each waits
for its answer), and the latencies of those pings: how many were answered
during the injection, their p50, p90, p99 and longest.  An answer waits for
whatever holds the daemon's GIL: the event loop's work on a document (its
longest steps bound the tail), the store's thread binding rows, and, before the
change log's writer was a process of its own, the making of the log's lines.
"""

import os
import threading
import time

from dynamoclient.connection import Client

from .daemon import BenchDaemon
from .phases import documents

EVERY = 0.005   # seconds between a ping's answer and the next ping


def main(argv=None) -> int:
    with documents(argv, "python -m bench.pings", __doc__, 600_000) as (root, docs):
        daemon = BenchDaemon(root, os.path.join(root, "inject.db"), "FULL", "inject")
        daemon.start()
        waits, done = [], threading.Event()

        def pinger():
            with Client(daemon.socket) as client:
                while not done.is_set():
                    started = time.perf_counter()
                    client.call("ping")
                    waits.append(time.perf_counter() - started)
                    time.sleep(EVERY)

        thread = threading.Thread(target=pinger)
        try:
            thread.start()
            started = time.perf_counter()
            result = daemon.tool("inject", "--json", *docs["paths"])
            wall = time.perf_counter() - started
            done.set()
            thread.join()
            if result.returncode != 0:
                raise RuntimeError(f"dynamo-inject failed: {result.stderr[-2000:]}")
        finally:
            done.set()
            daemon.stop()
    waits.sort()
    at = lambda share: waits[min(len(waits) - 1, int(share * len(waits)))] * 1000
    print(f"{docs['counts']['file']:,} files, {len(docs['paths'])} documents: {wall:.2f} s; "
          f"{len(waits)} pings answered meanwhile: p50 {at(0.5):.2f} ms, p90 {at(0.9):.2f} "
          f"ms, p99 {at(0.99):.2f} ms, longest {waits[-1] * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
