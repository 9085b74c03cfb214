"""The SQLite store on its own: a real database file, no daemon."""

import asyncio
import gc
import sqlite3
import time
import weakref

import pytest

from dynamod.errors import StoreError
from dynamod.store.reader import StoreReader
from dynamod.store.sqlite import COLUMNS, Store
from dynamod.store.writer import Writer

DATASET = (1, "/A/B/RAW", "valid", "unknown", None, 0, 1)


def block(block_id, name):
    return (block_id, 1, name, 0, 0, 1, 0)


def file(file_id, block_id):
    return (file_id, block_id, f"/store/{block_id}/{file_id}.root", 1000, None, None, None)


def file_rows(store, *block_ids) -> list:
    """The files of these blocks, read as the file cache reads them (start-up does not)."""
    reader = StoreReader(store.path)
    try:
        return [row for block_id in block_ids for row in reader.files(block_id)]
    finally:
        reader.close()


def load(store) -> tuple[dict, dict]:
    """Every table start-up reads, as lists, and the next ids."""
    reader = StoreReader(store.path)
    try:
        tables = reader.tables()
        return ({kind: list(tables[kind]) for kind in ("dataset", "block", "datasetreplica")},
                reader.next_ids())
    finally:
        reader.close()


@pytest.fixture
async def store(tmp_path):
    store = await Store.open(str(tmp_path / "inventory.db"), "FULL")
    yield store
    await store.close()


async def test_blockfiles_deletes_every_file_of_the_block_only(store):
    await store.write({("dataset", (1,)): DATASET,
                       ("block", (1,)): block(1, "b1"), ("block", (2,)): block(2, "b2"),
                       **{("file", (i,)): file(i, 1 if i <= 3 else 2) for i in range(1, 6)}},
                      {"dataset": 2, "block": 3, "file": 6})

    await store.write({("blockfiles", (1,)): None}, {})

    tables, next_ids = load(store)
    assert [f[:2] for f in file_rows(store, 1, 2)] == [(4, 2), (5, 2)]
    assert [b[0] for b in tables["block"]] == [1, 2]
    assert next_ids == {"dataset": 2, "block": 3, "file": 6}


async def test_blockfiles_go_before_the_block_in_the_same_transaction(store):
    """Children first: the block's deletion does not leave its files dangling."""
    await store.write({("dataset", (1,)): DATASET, ("block", (1,)): block(1, "b1"),
                       ("file", (1,)): file(1, 1), ("file", (2,)): file(2, 1)}, {})

    await store.write({("block", (1,)): None, ("blockfiles", (1,)): None}, {})

    tables, _ = load(store)
    assert tables["block"] == [] and file_rows(store, 1) == []
    assert await store.integrity_errors() == []


async def test_a_refused_commit_is_a_store_error_and_rolled_back(store):
    """A file of a block that does not exist fails the foreign key at COMMIT."""
    with pytest.raises(StoreError, match="the database refused the change"):
        await store.write({("dataset", (1,)): DATASET, ("file", (1,)): file(1, 99)},
                          {"dataset": 2})

    tables, next_ids = load(store)
    assert tables["dataset"] == [] and file_rows(store, 99) == [] and next_ids == {}
    await store.write({("dataset", (1,)): DATASET}, {"dataset": 2})  # not left in a transaction
    assert (load(store))[0]["dataset"] == [DATASET]


async def test_a_commit_while_another_process_holds_the_lock_is_a_store_error(store):
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        await store.db.execute("PRAGMA busy_timeout = 0")
        with pytest.raises(StoreError, match="locked"):
            await store.write({("dataset", (1,)): DATASET}, {})
    finally:
        other.execute("ROLLBACK")
        other.close()
    await store.write({("dataset", (1,)): DATASET}, {})
    assert (load(store))[0]["dataset"] == [DATASET]


async def test_new_ids_are_inserted_and_known_ones_updated(store):
    """A row whose id is past every committed one is a plain INSERT, so a stale next id
    (a row already there) is refused, never silently overwritten; a known id updates."""
    await store.write({("dataset", (1,)): DATASET}, {"dataset": 2})
    renamed = (1, "/A/B/RENAMED", *DATASET[2:])
    await store.write({("dataset", (1,)): renamed}, {"dataset": 2})
    assert load(store)[0]["dataset"] == [renamed]
    store.fresh["dataset"] = 1  # as if next_ids had been lost
    with pytest.raises(StoreError, match="UNIQUE constraint failed"):
        await store.write({("dataset", (1,)): DATASET}, {"dataset": 2})
    assert load(store)[0]["dataset"] == [renamed]


async def test_a_committed_write_keeps_nothing_of_it(store):
    """Once a write is committed nothing of its rows stays referenced by the store's
    thread (which kept its last call until the next: an injection's rows and change set
    held while the store idled)."""
    class Row(list):   # a row that can be watched
        pass

    row = Row(DATASET)
    watched = weakref.ref(row)
    await store.write({("dataset", (1,)): row}, {"dataset": 2})
    del row
    gc.collect()
    assert watched() is None
    assert load(store)[0]["dataset"] == [DATASET]


async def test_the_writer_keeps_nothing_of_a_committed_change(store):
    """Nor does the group-commit writer, waiting for the next change: neither the rows
    nor, through its undo, the change that made them."""
    class Change:   # what a ChangeSet's undo refers to
        def rollback(self):
            pass

    class Row(list):
        pass

    writer = Writer(store)
    writer.start()
    change, row = Change(), Row(DATASET)
    watched = weakref.ref(change), weakref.ref(row)
    await writer.submit({("dataset", (1,)): row}, {"dataset": 2}, change.rollback)
    del change, row
    await asyncio.sleep(0.05)   # the writer is back waiting
    gc.collect()
    assert [ref() for ref in watched] == [None, None]
    await writer.close()
    assert load(store)[0]["dataset"] == [DATASET]


async def test_some_columns_are_an_update_of_those_columns_alone(store):
    """A dict row writes the columns it names; the others keep what the store holds."""
    await store.write({("dataset", (1,)): DATASET, ("block", (1,)): block(1, "b1")},
                      {"dataset": 2, "block": 2})
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("UPDATE datasets SET data_type = 'align' WHERE id = 1")  # behind its back
    other.close()

    await store.write({("dataset", (1,)): {"status": "deprecated", "last_update": 7},
                       ("block", (1,)): {"size": 10}}, {})

    tables, _ = load(store)
    assert tables["dataset"] == [(1, "/A/B/RAW", "deprecated", "align", None, 7, 1)]
    assert tables["block"] == [(1, 1, "b1", 10, 0, 1, 0)]


async def test_an_update_of_a_row_the_store_lacks_is_refused_whole(store):
    """Memory holds the object, so the store must hold its row: a missing one is an
    error (the whole transaction undone), never an update silently lost."""
    await store.write({("dataset", (1,)): DATASET}, {"dataset": 2})
    with pytest.raises(StoreError, match="lacks 1 of the 2 rows to update"):
        await store.write({("block", (1,)): block(1, "b1"),
                           ("dataset", (1,)): {"status": "deprecated"},
                           ("dataset", (5,)): {"status": "deprecated"}}, {"block": 2})
    tables, next_ids = load(store)
    assert tables["dataset"] == [DATASET] and tables["block"] == [] and "block" not in next_ids


async def test_a_write_whose_caller_is_cancelled_still_commits(store):
    """A transaction is several steps in the connection's thread; cancelling its caller
    between two of them must neither leave it open nor half done."""
    rows = {("dataset", (1,)): DATASET,
            **{("block", (i,)): block(i, f"b{i}") for i in range(1, 2001)}}
    write = asyncio.ensure_future(store.write(rows, {"dataset": 2, "block": 2001}))
    await asyncio.sleep(0.001)   # past BEGIN
    write.cancel()
    await store.write({("dataset", (1,)): {"status": "production"}}, {})

    tables, next_ids = load(store)
    assert len(tables["block"]) == 2000 and next_ids["block"] == 2001
    assert tables["dataset"][0][2] == "production"


async def test_a_transaction_commits_while_the_event_loop_is_busy(store):
    """The connection's thread takes a transaction from BEGIN to COMMIT by itself: while
    the event loop applies the next change (here: sleeps), the commit goes on, rather
    than waiting for the event loop at each statement (the two would take turns)."""
    rows = {("dataset", (1,)): DATASET,
            **{("block", (i,)): block(i, f"b{i}") for i in range(1, 2001)},
            ("file", (1,)): file(1, 1)}
    write = asyncio.ensure_future(store.write(rows, {"dataset": 2, "block": 2001, "file": 2}))
    for _ in range(5):       # the write starts (its task, then the transaction's)
        await asyncio.sleep(0)
    time.sleep(2)            # the event loop busy: nothing else of it runs meanwhile
    tables, next_ids = load(store)   # another connection: what is committed
    assert len(tables["block"]) == 2000 and next_ids["block"] == 2001
    await write


async def test_writes_at_once_are_one_transaction_after_the_other(store):
    """Two callers (the writer's commit, a repair at start-up) never share a transaction."""
    first = {("dataset", (1,)): DATASET,
             **{("block", (i,)): block(i, f"b{i}") for i in range(1, 1001)}}
    second = {("dataset", (2,)): (2, "/C/D/RAW", *DATASET[2:])}
    await asyncio.gather(store.write(first, {"dataset": 2, "block": 1001}),
                         store.write(second, {"dataset": 3}))
    tables, next_ids = load(store)
    assert [d[0] for d in tables["dataset"]] == [1, 2] and len(tables["block"]) == 1000
    assert next_ids == {"dataset": 3, "block": 1001}


async def test_a_batch_combines_a_row_and_later_columns_of_it(store):
    """The writer merges the submissions of one batch: columns written after a full row
    (an object created, then updated by the next request) go over that row."""
    writer = Writer(store)
    writer.start()
    created = writer.submit({("dataset", (1,)): DATASET}, {"dataset": 2}, lambda: None)
    updated = writer.submit({("dataset", (1,)): {"status": "deprecated"}}, {}, lambda: None)
    twice = writer.submit({("dataset", (1,)): {"last_update": 9}}, {}, lambda: None)
    await asyncio.gather(created, updated, twice)
    await writer.close()

    assert load(store)[0]["dataset"] == [(1, "/A/B/RAW", "deprecated", "unknown", None, 9, 1)]
    assert writer.commits == 1


async def test_a_column_of_many_rows_is_their_updates_and_later_rows_go_over_it(store):
    """The UPDATEs of one column of many rows, given as one list (COLUMNS: a write-back's
    bulk), write each row's column alone; in a batch, a later submission's columns of
    some of the same rows go over them (their values are less than the list's here:
    sorted by key and value, they would go first)."""
    await store.write({("dataset", (1,)): DATASET,
                       **{("block", (i,)): block(i, f"b{i}") for i in range(1, 5)}},
                      {"dataset": 2, "block": 5})
    writer = Writer(store)
    writer.start()
    await asyncio.gather(
        writer.submit({(COLUMNS, ("block", ("last_update",))): [(1, 10), (2, 20), (3, 30)]},
                      {}, lambda: None),
        writer.submit({("block", (2,)): {"last_update": 5}}, {}, lambda: None),
        writer.submit({(COLUMNS, ("block", ("size",))): [(3, 8), (2, 9)]}, {}, lambda: None),
        writer.submit({("block", (3,)): {"size": 1}}, {}, lambda: None))
    await writer.close()
    assert writer.commits == 1
    assert [(b[0], b[3], b[6]) for b in load(store)[0]["block"]] == [
        (1, 0, 10), (2, 9, 5), (3, 1, 30), (4, 0, 0)]
    with pytest.raises(StoreError, match="lacks 1 of the 2 rows to update"):
        await store.write({(COLUMNS, ("block", ("last_update",))): [(4, 1), (9, 1)]}, {})
    assert [b[6] for b in load(store)[0]["block"]] == [10, 5, 30, 0]


def _submit(writer, rows, next_ids, log, name, redo=True):
    """Submit rows whose undo notes `name` in `log` (the order undoes ran in)."""
    return writer.submit(rows, next_ids, lambda: log.append(name), redo=redo)


@pytest.mark.parametrize("bulk", [False, True], ids=["rows", "new-files rows"])
async def test_a_refused_submission_fails_alone_and_those_after_it_go_again(store, bulk):
    """Rows that break the unique index on an LFN refuse the submission that wrote them:
    those before it commit, it is undone and gets Refused, those applied after it are
    undone newest first and told to apply again (Resubmit), and one that is no part of
    the inventory (redo=False) stays pending and commits.  The old writer failed all."""
    from dynamod.store.sqlite import NEW_FILES, Refused
    from dynamod.store.writer import Resubmit

    def files(*rows):
        return ({(NEW_FILES, (1,)): list(rows)} if bulk
                else {("file", (row[0],)): row for row in rows})

    await store.write({("dataset", (1,)): DATASET, ("block", (1,)): block(1, "b1"),
                       ("file", (1,)): file(1, 1)}, {"dataset": 2, "block": 2, "file": 2})
    writer = Writer(store)
    writer.start()
    undone = []
    before = _submit(writer, files(file(2, 1)), {"file": 3}, undone, "before")
    offender = _submit(writer, files((3, 1, file(1, 1)[2], 5, None, None, None)),
                       {"file": 4}, undone, "offender")
    after = _submit(writer, files(file(4, 1)), {"file": 5}, undone, "after")
    other = _submit(writer, {("role", ("admin",)): ("admin",)}, {}, undone, "other",
                    redo=False)
    later = _submit(writer, files(file(5, 1)), {"file": 6}, undone, "later")
    results = await asyncio.gather(before, offender, after, other, later,
                                   return_exceptions=True)
    await writer.close()

    assert results[0] is None and results[3] is None
    assert isinstance(results[1], Refused) and "UNIQUE constraint failed: files.lfn" in str(
        results[1])
    assert isinstance(results[2], Resubmit) and isinstance(results[4], Resubmit)
    assert undone == ["later", "after", "offender"]
    assert [row[0] for row in file_rows(store, 1)] == [1, 2]
    assert load(store)[1]["file"] == 3     # the next ids of the last one committed
    reader = StoreReader(store.path)
    try:
        assert reader.db.execute("SELECT name FROM roles").fetchall() == [("admin",)]
    finally:
        reader.close()


async def test_a_refused_submission_alone_is_rolled_back_whole(store):
    from dynamod.store.sqlite import NEW_FILES, Refused

    await store.write({("dataset", (1,)): DATASET, ("block", (1,)): block(1, "b1"),
                       ("file", (1,)): file(1, 1)}, {"dataset": 2, "block": 2, "file": 2})
    writer = Writer(store)
    writer.start()
    with pytest.raises(Refused):
        await writer.submit({("block", (2,)): block(2, "b2"),
                             (NEW_FILES, (2,)): [file(2, 2), (3, 2, file(1, 1)[2], 1, None,
                                                              None, None)]},
                            {"block": 3, "file": 4}, lambda: None, redo=True)
    await writer.close()
    tables, next_ids = load(store)
    assert [b[0] for b in tables["block"]] == [1] and next_ids["file"] == 2
    assert file_rows(store, 1, 2) == [file(1, 1)]


async def test_submissions_written_each_keep_the_next_ids_of_all(store):
    """New files' rows make the writer write a batch's submissions each in turn; the next
    ids stored are those of the batch, even when its last submission gives none (the
    change log's housekeeping)."""
    from dynamod.store.sqlite import NEW_FILES

    await store.write({("dataset", (1,)): DATASET, ("block", (1,)): block(1, "b1")},
                      {"dataset": 2, "block": 2})
    writer = Writer(store)
    writer.start()
    await asyncio.gather(
        writer.submit({(NEW_FILES, (1,)): [file(1, 1), file(2, 1)]}, {"file": 3}, lambda: None),
        writer.submit({("role", ("admin",)): ("admin",)}, {}, lambda: None))
    await writer.close()
    assert load(store)[1] == {"dataset": 2, "block": 2, "file": 3}
    assert file_rows(store, 1) == [file(1, 1), file(2, 1)]
    assert writer.commits == 1


async def test_many_rows_go_as_json_and_come_back_as_given(store):
    """From JSON_ROWS rows on, a table's inserts and upserts are one JSON array that SQLite
    reads: every value must come back as it was bound (quotes, backslashes, non-ASCII,
    NULL, large integers, text that is JSON itself)."""
    from dynamod.store.sqlite import JSON_ROWS, NEW_FILES

    names = ['/a "quoted" \\ back\\slash', "/ünï/ć∂∂é/🙂", "/[1, 2]", "/null", "/ x\t"]
    rows = [(i, 1, f"{names[i % len(names)]}/{i}", 2**63 - i, "0a1b2c3d" if i % 2 else None,
             None, "f" * 32) for i in range(1, 2 * JSON_ROWS)]
    users = [(f"{names[i % len(names)]} {i}", "" if i % 2 else '{"a": 1}')
             for i in range(2 * JSON_ROWS)]
    await store.write({("dataset", (1,)): DATASET, ("block", (1,)): block(1, "b1"),
                       (NEW_FILES, (1,)): rows[:JSON_ROWS + 3],
                       **{("file", (row[0],)): row for row in rows[JSON_ROWS + 3:]},
                       **{("user", row[:1]): row for row in users}},
                      {"dataset": 2, "block": 2, "file": 2 * JSON_ROWS})
    assert file_rows(store, 1) == rows
    reader = StoreReader(store.path)
    try:
        stored = reader.db.execute("SELECT name, email FROM users").fetchall()
    finally:
        reader.close()
    assert sorted(stored) == sorted(users)
