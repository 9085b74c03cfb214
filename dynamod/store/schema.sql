-- The inventory store, schema version 5.
-- Ids are assigned by the daemon (never reused: the next id per kind is kept in
-- `next_ids`).  The null group is NULL.  Foreign keys are checked at commit, so
-- a transaction may write its rows in any order but can never leave a dangling
-- reference.

CREATE TABLE next_ids (
    kind TEXT PRIMARY KEY,
    next_id INTEGER NOT NULL
);

CREATE TABLE sites (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    host TEXT NOT NULL,
    storage_type TEXT NOT NULL,
    backend TEXT NOT NULL,
    status TEXT NOT NULL
);

CREATE TABLE groups (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    olevel TEXT NOT NULL
);

CREATE TABLE datasets (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    data_type TEXT NOT NULL,
    software_version TEXT,
    last_update INTEGER NOT NULL,
    is_open INTEGER NOT NULL
);

CREATE TABLE blocks (
    id INTEGER PRIMARY KEY,
    dataset_id INTEGER NOT NULL REFERENCES datasets (id) DEFERRABLE INITIALLY DEFERRED,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    num_files INTEGER NOT NULL,
    is_open INTEGER NOT NULL,
    last_update INTEGER NOT NULL,
    UNIQUE (dataset_id, name)
);

CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    block_id INTEGER NOT NULL REFERENCES blocks (id) DEFERRABLE INITIALLY DEFERRED,
    lfn TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    adler32 TEXT,
    crc32 TEXT,
    md5 TEXT
);
CREATE INDEX files_block ON files (block_id);

CREATE TABLE dataset_replicas (
    dataset_id INTEGER NOT NULL REFERENCES datasets (id) DEFERRABLE INITIALLY DEFERRED,
    site_id INTEGER NOT NULL REFERENCES sites (id) DEFERRABLE INITIALLY DEFERRED,
    growing INTEGER NOT NULL,
    group_id INTEGER REFERENCES groups (id) DEFERRABLE INITIALLY DEFERRED,
    PRIMARY KEY (dataset_id, site_id)
);
CREATE INDEX dataset_replicas_site ON dataset_replicas (site_id);

-- file_ids: NULL for a complete replica, else a JSON list of the ids present.
CREATE TABLE block_replicas (
    block_id INTEGER NOT NULL REFERENCES blocks (id) DEFERRABLE INITIALLY DEFERRED,
    site_id INTEGER NOT NULL REFERENCES sites (id) DEFERRABLE INITIALLY DEFERRED,
    group_id INTEGER REFERENCES groups (id) DEFERRABLE INITIALLY DEFERRED,
    is_custodial INTEGER NOT NULL,
    size INTEGER NOT NULL,
    last_update INTEGER NOT NULL,
    file_ids TEXT,
    PRIMARY KEY (block_id, site_id)
);
CREATE INDEX block_replicas_site ON block_replicas (site_id);

-- Applications (scripts run by the daemon) and their record, kept for `dynamo --list`.
CREATE TABLE applications (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    path TEXT NOT NULL,
    args TEXT NOT NULL,            -- JSON list
    user TEXT NOT NULL,
    uid INTEGER NOT NULL,
    mode TEXT NOT NULL,            -- read or write
    status TEXT NOT NULL,          -- new, waiting, run, done, failed, killed, authfailed
    exit_code INTEGER,
    pid INTEGER,
    timeout REAL,                  -- seconds; NULL: none
    checksum TEXT NOT NULL,        -- SHA-256 of the script
    submitted REAL NOT NULL,
    started REAL,
    ended REAL,
    message TEXT NOT NULL,
    workarea TEXT                  -- an asynchronous application's output directory
);

-- Scripts authorized to run read/write: by title, for one user or for all ('').
CREATE TABLE script_authorizations (
    title TEXT NOT NULL,
    user TEXT NOT NULL,
    checksum TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (title, user)
);

-- Users, their X.509 DNs and local accounts, roles and grants.
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    email TEXT NOT NULL
);
CREATE TABLE user_dns (
    dn TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users (name) DEFERRABLE INITIALLY DEFERRED
);
CREATE TABLE user_accounts (
    account TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users (name) DEFERRABLE INITIALLY DEFERRED
);
CREATE TABLE roles (
    name TEXT PRIMARY KEY
);
CREATE TABLE grants (
    user TEXT NOT NULL REFERENCES users (name) DEFERRABLE INITIALLY DEFERRED,
    role TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (user, role, target)
);
CREATE TABLE change_log (          -- the change log's lines, until changes.log holds them
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    actor TEXT NOT NULL,
    lines TEXT NOT NULL            -- one change per line; a BLOB: a write-back's JSON, or zlib at 64 KiB+
);
-- Partitions: a condition over block replicas, or `[A, B]` for a superpartition.
CREATE TABLE partitions (
    name TEXT PRIMARY KEY,
    definition TEXT NOT NULL
);
-- Quotas per (site name, partition name), in bytes; -1: unlimited.  None set: 0.
CREATE TABLE quotas (
    site TEXT NOT NULL,
    partition TEXT NOT NULL,
    quota INTEGER NOT NULL,
    PRIMARY KEY (site, partition)
);
-- The commit counter: bumped in every transaction the daemon commits.
CREATE TABLE commits (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    counter INTEGER NOT NULL
);
INSERT INTO commits VALUES (0, 0);
-- The snapshot of the inventory's column tables (inventory/snapshot.py): its parts,
-- each with its CRC-32, and its stamp (the format, and the counter it was taken at).
CREATE TABLE snapshot_stamp (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    format INTEGER NOT NULL,
    counter INTEGER NOT NULL,
    taken REAL NOT NULL
);
CREATE TABLE snapshot_parts (
    name TEXT PRIMARY KEY,
    crc32 INTEGER NOT NULL,
    data BLOB NOT NULL
);
