"""`python -m bench.growth [--sizes 1000,2000,4000,8000] [--sites 2]`

How one dataset's cost grows with its blocks: for each size N, a dataset of N
blocks (one file each) with a replica at each of `--sites` sites is injected
into a real daemon in one request, its block replicas' groups are changed in a
second request, `get_dataset` answers it once (made afresh: memory has just
changed), and the dataset is deleted in a fourth.  Printed per size: the
seconds of each request, the microseconds per block, and the ratio of the
largest size's per-block time to the smallest's (1.0 is linear growth; the
quadratic cost this guards against gave 4-10 between 1,000 and 8,000 blocks).
Also the daemon's resident size after each round, which does not come back while
the deleted rows stay in the columns, and after the compaction that an idle daemon
then makes (its snapshot written once the store is idle for `--idle` seconds).
"""

import argparse
import os
import shutil
import tempfile
import time

from .daemon import BenchDaemon


def document(name: str, blocks: int, sites: list[str], group: str) -> dict:
    return {"dataset": [{
        "name": name, "status": "valid", "data_type": "production",
        "blocks": [{"name": f"b{i:06d}", "files": [{"name": f"{name}/f{i:06d}", "size": 1000}]}
                   for i in range(blocks)]}],
        "datasetreplica": [{
            "dataset": name, "site": site, "group": group,
            "blockreplicas": [{"block": f"b{i:06d}", "group": group} for i in range(blocks)]}
            for site in sites]}


def timed(daemon: BenchDaemon, method: str, **params) -> float:
    started = time.perf_counter()
    daemon.call(method, **params)
    return time.perf_counter() - started


def run(sizes: list[int], nsites: int, workdir: str | None, idle: float) -> tuple:
    """The rounds, and the compaction after them (its log line, the RSS after it)."""
    root = tempfile.mkdtemp(prefix="dyngrowth-", dir=workdir)
    config = os.path.join(root, "growth.toml")
    with open(config, "w") as f:   # no snapshot (nor compaction) between the requests
        f.write(f"[daemon]\nsnapshot_idle = {idle}\nsnapshot_interval = 0.0\n")
    daemon = BenchDaemon(root, os.path.join(root, "inventory.db"), "normal",
                         options=("--config", config))
    rounds = []
    try:
        daemon.start()
        sites = [f"T2_GROWTH_{i}" for i in range(nsites)]
        daemon.call("inject", data={
            "site": [{"name": s, "host": "h", "backend": "gsiftp://h/", "status": "ready"}
                      for s in sites],
            "group": [{"name": "AnalysisOps"}, {"name": "DataOps"}]})
        for n in sizes:
            name = f"/Growth{n}/Run/RAW"
            inject = timed(daemon, "inject", data=document(name, n, sites, "AnalysisOps"))
            update = timed(daemon, "inject", data=document(name, n, sites, "DataOps"))
            get = timed(daemon, "get_dataset", name=name)
            delete = timed(daemon, "delete", data={"dataset": [{"name": name}]})
            rounds.append({"blocks": n, "inject_s": inject, "update_s": update, "get_s": get,
                           "delete_s": delete, "rss_mib": daemon.rss() / 2**20})
        compacted = daemon.wait_for_log("inventory compacted", "not compacted",
                                        timeout=idle + 60)
        after = daemon.rss() / 2**20
    finally:
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)
    return rounds, (compacted or "no compaction logged").partition("inventory ")[2], after


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,2000,4000,8000",
                        help="dataset sizes in blocks, comma-separated (default: %(default)s)")
    parser.add_argument("--sites", type=int, default=2, help="replicas per dataset (default 2)")
    parser.add_argument("--workdir", help="where the temporary store goes (default: $TMPDIR)")
    parser.add_argument("--idle", type=float, default=3.0,
                        help="the daemon's snapshot_idle, seconds (default %(default)s)")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]
    rounds, compacted, after = run(sizes, args.sites, args.workdir, args.idle)
    keys = ("inject_s", "update_s", "get_s", "delete_s")
    print(f"{'blocks':>8} {'inject s':>9} {'update s':>9} {'get s':>9} {'delete s':>9} "
          f"{'us/block (i/u/g/d)':>22} {'RSS MiB':>8}")
    for r in rounds:
        per = "/".join(f"{r[k] / r['blocks'] * 1e6:.0f}" for k in keys)
        print(f"{r['blocks']:>8,} {r['inject_s']:>9.3f} {r['update_s']:>9.3f} "
              f"{r['get_s']:>9.3f} {r['delete_s']:>9.3f} {per:>22} {r['rss_mib']:>8.0f}")
    first, last = rounds[0], rounds[-1]
    for key in keys:
        ratio = (last[key] / last["blocks"]) / (first[key] / first["blocks"])
        print(f"per-block {key[:-2]} time at {last['blocks']:,} vs {first['blocks']:,} "
              f"blocks: {ratio:.2f}x (1.0 = linear)")
    print(f"idle after the last round: {compacted}; RSS {rounds[-1]['rss_mib']:.0f} -> "
          f"{after:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
