"""The block replicas of a start from rows, read by a process of their own.

A start from rows (no snapshot, or a stale one: the first start after a crash
that followed commits) spends a third of its time reading the block replica
rows into their columns: a Python object made for every value, on the one
thread that loads, while the machine's other core idles.  From THRESHOLD
block replicas on, a process of its own (`python -I`, this module) reads them
into the same columns while the daemon loads the datasets, blocks and dataset
replicas, and sends the columns' bytes; the daemon then links them as it links
the rows it reads itself (BlockReplicaTable.load_columns).

The process numbers each replica's block by the block ids it read in the same
read transaction as the replicas, and sends those ids: the daemon takes the
columns only when they are exactly the ids of the blocks it loaded, and the
columns pass the checks a snapshot's do (sites, groups, blocks known; equal
lengths).  Anything else (the process fails, dies, says something else, takes
longer than TIMEOUT) is logged and the daemon reads the rows itself, as it
does below THRESHOLD, where starting a process costs more than it saves.
"""

import logging
import marshal
import os
import subprocess
import sys
import time
from array import array

from .. import capabilities
from ..store.reader import StoreReader
from .columns import BlockReplicaTable, column

log = logging.getLogger("dynamod.snapshot")

THRESHOLD = 100_000   # block replicas in the store from which a process reads them
TIMEOUT = 600.0       # seconds the daemon waits for it

# The child's program (`python -I -c CHILD PACKAGE_ROOT DATABASE`): this module's `main`,
# found from the daemon's own package (an isolated interpreter has no current
# directory or environment on its path).
CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); "
         "from dynamod.inventory.replicaload import main; main(sys.argv[2])")
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ReplicaLoad:
    """A process reading a store's block replicas into columns."""

    def __init__(self, path: str):
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", CHILD, _ROOT, path], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    @classmethod
    def start(cls, reader) -> "ReplicaLoad | None":
        """A process for the block replicas of the store `reader` reads, when there are
        enough of them to pay for it (None: read them in process)."""
        if reader.count("block_replicas") < THRESHOLD:
            return None
        try:
            return cls(reader.path)
        except OSError as exc:
            log.warning("cannot start a process to read the block replicas (%s): "
                        "reading them here", exc.strerror or exc)
            return None

    def fill(self, table) -> bool:
        """Fill the empty BlockReplicaTable `table` (its blocks, sites, groups and dataset
        replicas loaded) with the process's columns: True, or False, having said why in
        the log and left the table empty, when they cannot be taken."""
        waiting = time.monotonic()
        try:
            out, err = self.process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            return _refuse(f"it did not finish in {TIMEOUT:.0f} s")
        waited = time.monotonic() - waiting
        if self.process.returncode != 0:
            last = err.decode("utf-8", "replace").strip().splitlines()[-1:]
            return _refuse(f"it exited with status {self.process.returncode}"
                           + (f": {last[0]}" if last else ""))
        try:
            parts, out = marshal.loads(out), None   # the parts are copies: one goes
            if not isinstance(parts, dict) or column("q", parts["block_ids"]) != table.blocks.id:
                return _refuse("it read other blocks than this start did")
            table.load_columns(parts)
        except (ValueError, EOFError, TypeError, KeyError) as exc:
            return _refuse(f"its columns are not sound ({type(exc).__name__}: {exc})")
        log.info("block replicas (%d) read by process %d, which this start waited "
                 "%.2f s for", len(table), self.process.pid, waited)
        return True

    def stop(self):
        """End the process if it still runs (the load failed before it was needed)."""
        if self.process.returncode is None:
            self.process.kill()
            self.process.communicate()


def _refuse(why: str) -> bool:
    log.warning("the process reading the block replicas cannot be used (%s): reading "
                "them here", why)
    return False


def main(path: str):
    """The child: the store's block replicas as columns, numbered by the blocks' ids read
    in the same transaction, marshalled to standard output.  It holds none of the
    daemon's capabilities: it needs none to read the store."""
    capabilities.drop_all()
    reader = StoreReader(path).prepared()
    reader.hold()
    block_ids = array("q", reader.ids("block"))
    marshal.dump(BlockReplicaTable.read_rows(block_ids, reader.rows("blockreplica")),
                 sys.stdout.buffer)
    sys.stdout.buffer.flush()
