"""One query client process: round trips on one connection for a fixed time.

Uses the real client library (`dynamoclient.connection.Client`) against
whichever server the socket leads to (dynamod or the bare echo), so both
sides of a query ratio run exactly the same client code.  Several of these
start together (same start time) for the aggregate figure.

    python -m bench.load SOCKET METHOD PARAMS_JSON DURATION START_EPOCH OUT_FILE

PARAMS_JSON is the parameters of every call, or a list of them taken in turn;
`@FILE` reads it from FILE (a long list does not fit in a command line).
"""

import array
import itertools
import sys
import time

import orjson

from dynamoclient.connection import Client

WARMUP_CALLS = 50


def main() -> int:
    path, method, params, duration, start, out = sys.argv[1:7]
    if params.startswith("@"):
        with open(params[1:], "rb") as f:
            params = f.read()
    params, duration, start = orjson.loads(params), float(duration), float(start)
    turns = itertools.cycle(params if isinstance(params, list) else [params])
    latencies = array.array("d")
    with Client(path, timeout=60) as client:
        for _ in range(WARMUP_CALLS):
            client.call(method, **next(turns))
        delay = start - time.time()
        if delay > 0:
            time.sleep(delay)
        clock, call = time.perf_counter, client.call
        began = clock()
        end = began + duration
        now = began
        while now < end:
            call(method, **next(turns))
            t = clock()
            latencies.append(t - now)
            now = t
        elapsed = now - began
    with open(out, "wb") as f:
        f.write(orjson.dumps({"count": len(latencies), "elapsed": elapsed,
                             "warmup": WARMUP_CALLS}) + b"\n")
        f.write(latencies.tobytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
