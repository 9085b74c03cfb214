"""Reading the store from the event loop's thread: start-up, and files per block.

A second, read-only SQLite connection next to the writer's.  At start-up it
streams each table into the inventory row by row (no table is ever held
whole, so the load peaks low and leaves no freed rows scattered between the
objects).  Afterwards it serves the file cache: a block's files are one
indexed query (well under a millisecond for hundreds of files), cheaper than
a hop to the writer's thread, and WAL lets it read while the writer commits.
It sees committed rows only, which is what the cache asks of it (a block
with uncommitted changes stays loaded).
"""

import sqlite3
import zlib

from ..errors import StoreError
from . import check, uri
from .tables import BY_KIND

_FILES = BY_KIND["file"]
FILES_OF_BLOCK = (f"SELECT {', '.join(_FILES.columns)} FROM {_FILES.name} "
                  f"WHERE block_id = ? ORDER BY id")
CHUNK = 500  # parameters per IN (...) query
BATCH = 4096  # rows fetched at a time at start-up
BLOCK_OF_LFN = ("SELECT b.id, d.name, b.name FROM files f JOIN blocks b ON b.id = f.block_id "
                "JOIN datasets d ON d.id = b.dataset_id WHERE f.lfn = ?")


class StoreReader:
    def __init__(self, path: str):
        self.path = path
        try:
            self.db = sqlite3.connect(uri.read_only(path), uri=True, check_same_thread=False,
                                      cached_statements=16)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the database {path}: {exc}") from exc

    def prepared(self) -> "StoreReader":
        """This connection with the schema read (a new connection reads it at its first
        query), holding nothing: ready for `hold` at once."""
        try:
            self.db.execute("SELECT kind FROM next_ids LIMIT 0").fetchall()
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(f"cannot read the database {self.path}: {exc}") from exc
        return self

    def hold(self):
        """Open a read transaction and keep it: from now on this connection sees the
        store as it is at this moment, whatever commits follow (WAL keeps the pages
        it needs until `close`; a checkpoint cannot pass it, so the WAL grows while
        it is held)."""
        try:
            self.db.execute("BEGIN")
            self.db.execute("SELECT kind FROM next_ids LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the database {self.path}: {exc}") from exc

    # ----------------------------------------------------------- start-up
    def tables(self) -> "Tables":
        """Every table by kind, each read (in key order) when it is iterated."""
        return Tables(self)

    def rows(self, kind: str):
        table = BY_KIND[kind]
        try:
            cursor = self.db.execute(table.select_sql)
            while rows := cursor.fetchmany(BATCH):
                yield from rows
        except sqlite3.Error as exc:
            if check.is_damage(exc):
                raise check.damaged(self.path, f"table {table.name}: {exc}") from None
            raise StoreError(f"cannot read the database {self.path}: {exc}") from exc

    def ids(self, kind: str) -> list:
        """The ids of a table's rows, in key order (the order `rows` gives them in)."""
        table = BY_KIND[kind]
        return [id_ for id_, in self._query(f"SELECT id FROM {table.name} ORDER BY id")]

    def next_ids(self) -> dict:
        return dict(self._query("SELECT kind, next_id FROM next_ids"))

    # ----------------------------------------------------------- snapshot
    def snapshot_stamp(self) -> dict:
        """The snapshot's stamp (format, counter, taken: None when there is none) and the
        store's commit counter."""
        found = self._query("SELECT s.format, s.counter, s.taken, c.counter "
                            "FROM commits c LEFT JOIN snapshot_stamp s")
        format_, counter, taken, commits = found[0]
        return {"format": format_, "counter": counter, "taken": taken, "commits": commits}

    def snapshot_parts(self) -> dict:
        """The snapshot's parts, {name: bytes}.  A part whose CRC-32 differs from its data
        is a StoreError (a damaged snapshot)."""
        parts = {}
        for name, crc, data in self._query("SELECT name, crc32, data FROM snapshot_parts"):
            if not isinstance(data, bytes) or zlib.crc32(data) != crc:
                raise StoreError(f"snapshot part {name} fails its CRC-32")
            parts[name] = data
        return parts

    def count(self, table: str) -> int:
        return self._query(f"SELECT count(*) FROM {table}")[0][0]

    # -------------------------------------------------------------- files
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
            if check.is_damage(exc):
                raise check.damaged(self.path, str(exc)) from None
            raise StoreError(f"cannot read the database {self.path}: {exc}") from exc

    def close(self):
        self.db.close()


class Tables:
    """`tables[kind]`: the rows of that kind's table, streamed from the store."""

    def __init__(self, reader: StoreReader):
        self.reader = reader

    def __getitem__(self, kind: str):
        return self.reader.rows(kind)
