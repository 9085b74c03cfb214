"""The inventory tables: their columns and keys, and the SQL derived from them.

Kept in one place so the writer, the loader and the schema agree on column
order; the inventory turns objects into tuples in exactly this order.  A row
to write is a tuple of every column, or a dict of some columns in this order
(an object that was updated: only what changed is written).
"""

from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Table:
    kind: str          # the object kind it stores
    name: str          # the SQL table
    columns: tuple
    key: tuple
    json: bool = True  # many rows may go as one JSON array (False: a column holds bytes)

    @property
    def upsert_sql(self) -> str:
        return self.insert_sql + self._on_conflict

    @property
    def _on_conflict(self) -> str:
        """Update a row of the same key; a table that is all key (roles, grants) has nothing
        to update."""
        updates = ", ".join(f"{c} = excluded.{c}" for c in self.columns if c not in self.key)
        action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        return f" ON CONFLICT ({', '.join(self.key)}) {action}"

    @property
    def insert_sql(self) -> str:
        return (f"INSERT INTO {self.name} ({', '.join(self.columns)}) "
                f"VALUES ({', '.join('?' for _ in self.columns)})")

    @cache
    def from_json_sql(self, upsert: bool) -> str:
        """`insert_sql` (or `upsert_sql`) of rows given as one JSON array of arrays, which
        SQLite reads in one statement (see `Store.write`)."""
        values = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(self.columns)))
        insert = (f"INSERT INTO {self.name} ({', '.join(self.columns)}) SELECT {values} "
                  f"FROM json_each(?) WHERE true")   # WHERE: ON CONFLICT is not a join's ON
        return insert + self._on_conflict if upsert else insert

    @cache
    def update_sql(self, columns: tuple) -> str:
        """UPDATE of these columns of the row with a given key; its parameters are the key,
        then the columns (so that they sort in key order: see `Store.write`)."""
        where = " AND ".join(f"{c} = ?{i}" for i, c in enumerate(self.key, 1))
        sets = ", ".join(f"{c} = ?{i}" for i, c in enumerate(columns, len(self.key) + 1))
        return f"UPDATE {self.name} SET {sets} WHERE {where}"

    def combined(self, old, new: dict):
        """The row that writing `old`, then some columns `new`, amounts to."""
        if old is None:   # a deleted row updated: never a ChangeSet's (what it updates exists)
            return new
        if type(old) is dict:
            given = {**old, **new}
            return {c: given[c] for c in self.columns if c in given}
        return tuple(new.get(c, value) for c, value in zip(self.columns, old))

    @property
    def delete_sql(self) -> str:
        where = " AND ".join(f"{c} = ?" for c in self.key)
        return f"DELETE FROM {self.name} WHERE {where}"

    @property
    def select_sql(self) -> str:
        return f"SELECT {', '.join(self.columns)} FROM {self.name} ORDER BY {', '.join(self.key)}"


# Parents before children: the order in which the loader builds objects.
INVENTORY_TABLES = (
    Table("site", "sites", ("id", "name", "host", "storage_type", "backend", "status"), ("id",)),
    Table("group", "groups", ("id", "name", "olevel"), ("id",)),
    Table("dataset", "datasets", ("id", "name", "status", "data_type", "software_version",
                                  "last_update", "is_open"), ("id",)),
    Table("block", "blocks", ("id", "dataset_id", "name", "size", "num_files", "is_open",
                              "last_update"), ("id",)),
    Table("file", "files", ("id", "block_id", "lfn", "size", "adler32", "crc32", "md5"), ("id",)),
    Table("datasetreplica", "dataset_replicas", ("dataset_id", "site_id", "growing", "group_id"),
          ("dataset_id", "site_id")),
    Table("blockreplica", "block_replicas", ("block_id", "site_id", "group_id", "is_custodial",
                                             "size", "last_update", "file_ids"),
          ("block_id", "site_id")),
)

# The daemon's own records (applications, users), written through the same writer.
APPLICATION_TABLES = (
    Table("application", "applications",
          ("id", "title", "path", "args", "user", "uid", "mode", "status", "exit_code", "pid",
           "timeout", "checksum", "submitted", "started", "ended", "message", "workarea"),
          ("id",)),
    Table("authorization", "script_authorizations", ("title", "user", "checksum", "created"),
          ("title", "user")),
    Table("user", "users", ("name", "email"), ("name",)),
    Table("user_dn", "user_dns", ("dn", "user"), ("dn",)),
    Table("user_account", "user_accounts", ("account", "user"), ("account",)),
    Table("role", "roles", ("name",), ("name",)),
    Table("grant", "grants", ("user", "role", "target"), ("user", "role", "target")),
    # The change log's queue (changelog.py): committed with each change, deleted once
    # the file holds it.  `seq` is given by SQLite (AUTOINCREMENT: never reused); the
    # lines of a large entry are compressed (bytes).
    Table("changelog", "change_log", ("seq", "time", "actor", "lines"), ("seq",), json=False),
    # Partitions (a condition, or `[A, B]` for a superpartition) and quotas per
    # (site name, partition name) in bytes, -1 for unlimited (inventory/partitions.py).
    Table("partition", "partitions", ("name", "definition"), ("name",)),
    Table("quota", "quotas", ("site", "partition", "quota"), ("site", "partition")),
)

TABLES = INVENTORY_TABLES + APPLICATION_TABLES
# What start-up reads: everything but the files, which are read per block when needed.
STARTUP_TABLES = tuple(t for t in TABLES if t.kind != "file")
BY_KIND = {t.kind: t for t in TABLES}
INVENTORY_KINDS = tuple(t.kind for t in INVENTORY_TABLES)
# The kinds whose ids the daemon assigns from `next_ids` (never reused).
ID_KINDS = ("site", "group", "dataset", "block", "file")
