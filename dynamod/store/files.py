"""Reading files from the store: what the inventory's file cache loads per block.

A second, read-only SQLite connection used from the event loop's thread: a
block's files are one indexed query (well under a millisecond for a block of
hundreds of files), cheaper than a hop to the writer's thread, and WAL lets
it read while the writer commits.  It sees committed rows only, which is
what the cache asks of it (a block with uncommitted changes stays loaded).
"""

import sqlite3

from ..errors import StoreError
from .tables import BY_KIND

_FILES = BY_KIND["file"]
FILES_OF_BLOCK = (f"SELECT {', '.join(_FILES.columns)} FROM {_FILES.name} "
                  f"WHERE block_id = ? ORDER BY id")
CHUNK = 500  # parameters per IN (...) query
BLOCK_OF_LFN = ("SELECT b.id, d.name, b.name FROM files f JOIN blocks b ON b.id = f.block_id "
                "JOIN datasets d ON d.id = b.dataset_id WHERE f.lfn = ?")


class FileReader:
    def __init__(self, path: str):
        self.path = path
        try:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False,
                                      cached_statements=16)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the database {path}: {exc}") from exc

    def files(self, block_id: int) -> list[tuple]:
        """The block's file rows, in id order (the order they were created in)."""
        return self._query(FILES_OF_BLOCK, block_id)

    def block_of(self, lfn: str) -> tuple | None:
        """(block id, dataset name, block name) of the block holding `lfn`, or None."""
        rows = self._query(BLOCK_OF_LFN, lfn)
        return rows[0] if rows else None

    def existing(self, lfns: list) -> list:
        """Those of `lfns` that name a file in the store (one query per few hundred)."""
        found = []
        for start in range(0, len(lfns), CHUNK):
            chunk = lfns[start:start + CHUNK]
            marks = ", ".join("?" * len(chunk))
            found += [row[0] for row in self._query(
                f"SELECT lfn FROM files WHERE lfn IN ({marks})", *chunk)]
        return found

    def _query(self, sql, *params):
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read files from the database {self.path}: {exc}") from exc

    def close(self):
        self.db.close()
