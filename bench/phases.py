"""`python -m bench.phases [--scale medium] [--files 200000]`

Where the event loop's time goes when it injects: the benchmark's documents (the
inject figure's, their first `--files` files) applied in process, one after the
other, through the daemon's own steps, each timed by the CPU time of this thread
(the machine's other load hardly moves it): decoding the request line, applying
the document to memory (injection.py, the change set), the rows and change-log
lines of the change, the commit as the event loop sees it (its statements; the
database works in the store's thread, not counted), and the release of the files
it held (packed into the file cache).  The figure the end-to-end injection adds
to this: the store's thread, and reading the socket.
"""

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from contextlib import contextmanager

from dynamod import collector
from dynamod.changelog import ChangeLog
from dynamod.inventory import injection
from dynamod.inventory.changes import ChangeSet, journal_entry
from dynamod.inventory.rows import change_rows
from dynamod.protocol import decode_request
from dynamod.service import InventoryService

from .generator import Generator

PHASES = ("decode", "apply", "rows", "lines", "commit", "release")


async def measure(paths: list[str], root: str) -> dict:
    service = await InventoryService.open(os.path.join(root, "inventory.db"), "FULL",
                                          changelog=ChangeLog(os.path.join(root, "changes.log")))
    seconds = dict.fromkeys(PHASES, 0.0)
    clock = time.thread_time
    try:
        for path in paths:
            with open(path, "rb") as f:
                line = b'{"id":1,"method":"inject","params":{"data":' + f.read() + b'}}'
            started = clock()
            document = decode_request(line).params["data"]
            decoded = clock()
            changes = ChangeSet(service.inventory)
            with collector.paused():   # as the daemon applies a change
                injection.inject(changes, document)
            applied = clock()
            rows = change_rows(changes)
            made = clock()
            rows.update(service.changelog.entry("bench", journal_entry(changes.journal)))
            written = clock()
            await service.writer.submit(rows, service.inventory.next_ids, changes.rollback)
            committed = clock()
            changes.release()
            for phase, (begin, end) in zip(PHASES, [(started, decoded), (decoded, applied),
                                                    (applied, made), (made, written),
                                                    (written, committed),
                                                    (committed, clock())]):
                seconds[phase] += end - begin
    finally:
        await service.close()
    return seconds


@contextmanager
def documents(argv, prog: str, description: str, files: int):
    """The command line of a measurement over the inject figure's documents (--scale,
    --seed, --files: their first files, --workdir) and those documents, written to a
    temporary directory removed afterwards: (the directory, write_documents' result)."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="medium")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--files", type=int, default=files)
    parser.add_argument("--workdir")
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="dynphases-", dir=args.workdir)
    try:
        yield root, Generator(args.scale, args.seed).write_documents(
            os.path.join(root, "docs"), max_files=args.files)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv=None) -> int:
    with documents(argv, "python -m bench.phases", __doc__, 200_000) as (root, docs):
        seconds = asyncio.run(measure(docs["paths"], root))
    files = docs["counts"]["file"]
    print(f"{files:,} files, {sum(docs['counts'].values()):,} rows, "
          f"{len(docs['paths'])} documents; CPU seconds of the event loop's thread:")
    for phase, value in seconds.items():
        print(f"  {phase:8} {value:6.2f} s  {value / files * 1e6:5.2f} us/file")
    total = sum(seconds.values())
    print(f"  {'total':8} {total:6.2f} s  {total / files * 1e6:5.2f} us/file")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
