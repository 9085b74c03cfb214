"""Runs of plain updates (a write-back's bulk), applied a run at a time: a write-back
with a bad record anywhere leaves the inventory exactly as it was, a good one is undone
exactly by its rollback (an object may come twice in a run, a run may change nothing),
and the store, reloaded, equals memory: the columns each run wrote are the right ones."""

import asyncio
import io
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynamod.apps import writeback
from dynamod.apps.proxy import ApplicationInventory
from dynamod.errors import DynamoError, InvalidParams, NotFound
from dynamod.inventory import injection
from dynamod.inventory.changelines import entry_lines
from dynamod.inventory.changes import ChangeSet, journal_entry
from dynamod.inventory.inventory import Inventory
from dynamod.inventory.objects import Block, BlockReplica, Dataset, DatasetReplica, Site
from dynamod.inventory.rows import all_rows
from dynamod.inventory.updates import apply_run, record, run_shape
from dynamod.service import InventoryService
from support.documents import STOCK, state, update_runs


def used(inventory) -> dict:
    """The usage kept, copied (its entries change in place)."""
    return {key: list(entry) for key, entry in inventory.usage.table.items()}


def apply_runs(changes, runs):
    for run in runs:
        apply_run(changes, run_shape(run["op"], run["kind"], run["keys"], run["fields"]),
                  run["rows"])
    changes.finish()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(update_runs, st.booleans())
def test_a_refused_write_back_changes_nothing_and_undo_restores(write_backs, partitioned):
    """With a partition defined, changes of a replica's group or custodial flag move its
    usage, and the usage kept follows (a recount agrees), undone too."""
    inventory = Inventory()
    if partitioned:
        ChangeSet(inventory).set_partition("Owned", condition="group != none")
    injection.inject(ChangeSet(inventory, now=1000), STOCK)
    usage, history = inventory.usage, []
    for runs in write_backs:
        before = state(inventory), used(inventory)
        changes = ChangeSet(inventory, now=1000)
        try:
            apply_runs(changes, runs)
        except DynamoError:
            changes.discard()
            assert (state(inventory), used(inventory)) == before
            continue
        assert inventory.problems() == []
        assert usage.table == usage.full_count(inventory)
        history.append((before, changes))
    for before, changes in reversed(history):
        changes.rollback()
        assert (state(inventory), used(inventory)) == before


def committed(path: str, changes: list) -> tuple:
    """STOCK injected, then each of `changes` (functions of a ChangeSet) applied as a
    change of its own (a refused one skipped), through a real service and store: (the
    last one's counts, memory as (state, rows), the store's rows, reloaded from them)."""
    async def scenario():
        service = await InventoryService.open(path, "NORMAL")
        await service.change(lambda changes: injection.inject(changes, STOCK))
        counts = None
        for apply in changes:
            try:
                counts = await service.change(apply)
            except DynamoError:
                pass
        memory = state(service.inventory), all_rows(service.inventory)
        await service.close()
        reloaded = await InventoryService.open(path, "NORMAL", rebuild=True)   # from the rows
        stored = all_rows(reloaded.inventory)
        await reloaded.close()
        return counts, memory, stored

    return asyncio.run(scenario())


@settings(max_examples=25, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(update_runs)
def test_store_after_reload_equals_memory(tmp_path_factory, write_backs):
    _, (_, expected), got = committed(
        str(tmp_path_factory.mktemp("store") / "inventory.db"),
        [lambda changes, runs=runs: apply_runs(changes, runs) for runs in write_backs])
    assert got == expected


def test_a_run_is_logged_compact_unless_json_cannot_hold_it():
    """A run's change-log entry is the compact JSON the log's writer expands, or, with a
    value JSON cannot hold (a lone surrogate), the same lines as text."""
    inventory = Inventory()
    changes = ChangeSet(inventory)
    for name in ("S1", "S\ud800"):
        changes.site(name, {"host": "h"})
    changes.finish()
    changes.keep()
    lines = {}
    for name, host in (("S1", "x"), ("S\ud800", "x\ud800")):
        apply_run(changes, run_shape("update", "site", ["name"], ["host"]),
                  [[name, host], ["S1", "y"]])
        lines[name] = journal_entry(changes.journal)
        changes.keep()
    assert entry_lines(orjson.loads(lines["S1"])) == [
        "updated site S1 host: 'h' -> 'x'", "updated site S1 host: 'x' -> 'y'"]
    assert lines["S\ud800"] == "updated site S\ud800 host: 'h' -> 'x\\ud800'"


def _call(kind: str, record: dict):
    """The object an application passes to `inventory.update` for a record of `kind`."""
    fields = {n: v for n, v in record.items() if n not in ("dataset", "block", "site", "name")}
    if kind == "blockreplica":
        return BlockReplica(f"{record['dataset']}#{record['block']}", record["site"], **fields)
    if kind == "datasetreplica":
        return DatasetReplica(record["dataset"], record["site"], **fields)
    if kind == "block":
        return Block(record["name"], record["dataset"], **fields)
    return {"site": Site, "dataset": Dataset}[kind](record["name"], **fields)


def _sent(write_back, deleted, partitioned=False) -> tuple:
    """(the application's copy, the records it sends) once an application's calls (the
    records of `write_back`'s runs, one call each, some refused in the copy, the block
    `deleted` first or not, a partition defined or not) changed a copy of STOCK: plain
    updates of blocks and block replicas that existed at the start go by row, the rest
    by names."""
    copy = Inventory()
    if partitioned:
        ChangeSet(copy).set_partition("Owned", condition="group != none")
    injection.inject(ChangeSet(copy, now=1000), STOCK)
    application = ApplicationInventory(copy, writable=True)
    with mock.patch("time.time", return_value=1000.0):   # the copy's calls' `now`
        if deleted is not None:
            application.delete(application.find_block("#".join(deleted)))
        for run in (run for runs in write_back for run in runs):
            for row in run["rows"]:
                try:
                    application.update(_call(run["kind"], dict(zip(run["keys"] + run["fields"],
                                                                    row))))
                except DynamoError:
                    pass
    pipe = io.BytesIO()
    writeback.send(pipe, application.records)
    return copy, pipe.getvalue()


DELETED = st.sampled_from([None, ("/A/B/RAW", "b1"), ("/C/D/AOD", "b2")])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(update_runs, DELETED, st.booleans())
def test_the_daemon_ends_where_the_applications_copy_did(write_back, deleted, partitioned):
    """An application's calls, sent as the child sends them and applied as the daemon
    does, leave the daemon's inventory as they left the copy, and its rollback as it
    was.  With a partition defined, a replica's group or custodial flag moves its usage,
    in the copy as in the daemon."""
    copy, sent = _sent(write_back, deleted, partitioned)
    daemon = Inventory()
    if partitioned:
        ChangeSet(daemon).set_partition("Owned", condition="group != none")
    injection.inject(ChangeSet(daemon, now=1000), STOCK)
    before = state(daemon), used(daemon)
    changes = ChangeSet(daemon, now=1000)
    writeback.apply_runs(changes, writeback.parse(sent))
    changes.finish()
    assert state(daemon) == state(copy)
    assert used(daemon) == used(copy)
    assert daemon.problems() == [] and copy.problems() == []
    changes.rollback()
    assert (state(daemon), used(daemon)) == before


@settings(max_examples=25, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(update_runs, DELETED)
def test_a_write_back_sent_by_row_is_stored_as_memory_holds_it(tmp_path_factory, write_back,
                                                              deleted):
    """The records as the child sends them, applied and committed by the daemon's service
    (a run of one column by row set and written as columns, the objects of the change
    known one by one once another record touches them): the store, reloaded, equals
    memory."""
    sent = _sent(write_back, deleted)[1]

    def apply(changes):
        writeback.apply_runs(changes, writeback.parse(sent))
        changes.finish()

    _, (_, expected), got = committed(str(tmp_path_factory.mktemp("store") / "inventory.db"),
                                      [apply])
    assert got == expected


def test_a_record_by_row_names_a_live_object_or_is_refused():
    """A row that holds no block replica (out of the table, deleted by an earlier record
    of the same write-back, not a whole number) refuses the run with the row named; the
    same rows alive apply as the names would."""
    inventory = Inventory()
    injection.inject(ChangeSet(inventory, now=1000), STOCK)
    shape = run_shape("update", "blockreplica", ["row"], ["last_update"])
    by_names = run_shape("update", "blockreplica", ["dataset", "block", "site"],
                         ["last_update"])
    rows = len(inventory.block_replicas)
    before = state(inventory)
    for bad in (-1, rows, "0", 0.0, True, None):
        changes = ChangeSet(inventory, now=1000)
        with pytest.raises(NotFound, match=f"no blockreplica at row {bad!r}"):
            apply_run(changes, shape, [[0, 5], [bad, 5], [1, 5]])
        changes.discard()
        assert state(inventory) == before
    changes = ChangeSet(inventory, now=1000)
    apply_run(changes, by_names, [["/A/B/RAW", "b1", "S1", 7]])
    replica = inventory.block("/A/B/RAW#b1").find_replica(inventory.site("S1"))
    changes.delete_block_replica(replica)
    with pytest.raises(NotFound, match="no blockreplica at row"):
        apply_run(changes, shape, [[row, 5] for row in range(rows)])
    changes.discard()
    assert state(inventory) == before
    twin = Inventory()
    injection.inject(ChangeSet(twin, now=1000), STOCK)
    for target, run, records in (
            (inventory, shape, [[row, 1234] for row in range(rows)]),
            (twin, by_names, [[r.block.dataset.name, r.block.name, r.site.name, 1234]
                              for r in twin.block_replicas.views()])):
        changes = ChangeSet(target, now=1000)
        apply_run(changes, run, records)
        changes.finish()
        assert entry_lines(orjson.loads(journal_entry(changes.journal))) and \
            changes.counts()["updated"] == {"blockreplicas": rows}
    assert state(inventory) == state(twin)


@pytest.mark.parametrize("op, keys, fields", [
    ("update", ["row", "site"], ["last_update"]),
    ("update", ["row"], ["size"]),
    ("delete", ["row"], []),
    ("update", ["row"], ["files"]),
])
def test_a_record_by_row_is_a_plain_update_only(op, keys, fields):
    with pytest.raises(InvalidParams):
        run_shape(op, "blockreplica", keys, fields)
    with pytest.raises(InvalidParams, match="not named by 'row'"):
        run_shape("update", "site", ["row"], ["status"])


def test_detached_objects_each_hold_what_was_set_and_record_it_in_field_order():
    """A built object reads its kind's defaults until a field is set, and setting a field
    of one never shows in another (the defaults are shared by the kind); `update` records
    the fields set, in the order of the kind's fields whatever the order of setting, and
    sets them in the copy; a bad value is refused where it is set."""
    inventory = Inventory()
    injection.inject(ChangeSet(inventory, now=1000), STOCK)
    application = ApplicationInventory(inventory, writable=True)
    one, two = BlockReplica("/A/B/RAW#b1", "S1"), BlockReplica("/A/B/RAW#b1", "S2")
    one.last_update = 50
    one.group = "G2"
    assert (one.last_update, one.group, one.size, one.is_custodial) == (50, "G2", 0, False)
    assert (two.last_update, two.group, two.size, two.file_ids) == (0, None, 0, None)
    # its size not given: the block's, written -1 as the original writes it (and reads it)
    assert repr(two) == "BlockReplica('/A/B/RAW#b1','S2',None,False,-1,0,None)"
    two.is_custodial = True
    dataset = Dataset("/A/B/RAW", status="VALID")
    assert (dataset.status, dataset.data_type, dataset.is_open, dataset.id) == \
        ("valid", "unknown", True, 0)
    assert Dataset("/A/B/RAW").status == "unknown"
    with pytest.raises(DynamoError, match=r"BlockReplica\.last_update must be a time"):
        BlockReplica("/A/B/RAW#b1", "S1", last_update=-1)
    with pytest.raises(DynamoError, match=r"Block\.name cannot be changed"):
        Block("b1", "/A/B/RAW").name = "b2"
    for obj in (one, two, dataset):
        application.update(obj)
    assert [(shape[2:], [row[1:] for row in rows]) for shape, rows in application.records] == [
        ((("row",), ("group", "last_update")), [["G2", 50]]),
        ((("row",), ("is_custodial",)), [[True]]),
        ((("name",), ("status",)), [["valid"]])]
    found = application.find_block("/A/B/RAW#b1").find_replica("S1")
    assert (found.group.name, found.last_update) == ("G2", 50)
    assert application.find_block("/A/B/RAW#b1").find_replica("S2").is_custodial


def test_an_update_after_a_deletion_finds_what_is_left():
    """Updates of a dataset's block replicas, a deletion of one of its blocks, then an
    update of a replica of that block: refused as unknown, never set in the deleted
    rows; the others still applied."""
    inventory = Inventory()
    injection.inject(ChangeSet(inventory, now=1000), STOCK)
    application = ApplicationInventory(inventory, writable=True)
    for block in ("b1", "b2", "b1"):
        application.update(BlockReplica(f"/A/B/RAW#{block}", "S1", last_update=7))
    with mock.patch("time.time", return_value=1000.0):
        application.delete(application.find_block("/A/B/RAW#b1"))
    with pytest.raises(DynamoError, match="b1"):
        application.update(BlockReplica("/A/B/RAW#b1", "S1", last_update=8))
    application.update(BlockReplica("/A/B/RAW#b2", "S1", last_update=9))
    assert application.find_block("/A/B/RAW#b1") is None
    assert application.find_block("/A/B/RAW#b2").find_replica("S1").last_update == 9
    assert application.memory.problems() == []


def _scenarios(inventory) -> dict:
    """Write-backs as (shape, rows by row, the same rows by names) runs: a run of a column
    left pending beside other changes at the commit; and runs of a column followed by
    records that touch the same objects one by one (other fields, a deletion, the same
    column again), with runs of another table's column between them."""
    replicas = [(r[1], [r.block.dataset.name, r.block.name, r.site.name])
                for r in inventory.block_replicas.views()]
    blocks = [(b[1], [d.name, b.name]) for d in inventory.datasets.values() for b in d.blocks]

    def run(kind, fields, objects, values):
        keys = {"blockreplica": ["dataset", "block", "site"], "block": ["dataset", "name"]}
        return ((kind, fields, keys[kind]), [[row, *v] for (row, _), v in zip(objects, values)],
                [[*names, *v] for (_, names), v in zip(objects, values)])

    stamps = run("blockreplica", ["last_update"], replicas,
                 [[4000 + i] for i in range(len(replicas))])
    return {
        "pending": [(("site", ["status"], ["name"]), None, [["S1", "morgue"]]), stamps,
                    run("block", ["last_update"], blocks, [[77]] * len(blocks))],
        "touched again": [
            stamps,
            run("blockreplica", ["group"], replicas[:3], [["G2"]] * 3),
            run("block", ["last_update"], blocks, [[5 + i] for i in range(len(blocks))]),
            (("blockreplica", [], ["dataset", "block", "site"]), None, [replicas[5][1]]),
            run("blockreplica", ["last_update"], replicas[:5] + replicas[6:10],
                [[9]] * 9),
            run("block", ["last_update"], blocks[:4], [[6]] * 4)]}


def _send(runs, by_row: bool) -> list:
    """The runs of a scenario as a pipe gives them (parsed), by row where they can be."""
    pipe = io.BytesIO()
    for (kind, fields, keys), rows, named in runs:
        op = "update" if fields else "delete"
        keys, rows = (["row"], rows) if by_row and rows is not None else (keys, named)
        pipe.write(orjson.dumps({"op": op, "kind": kind, "keys": keys, "fields": fields,
                                 "rows": rows}) + b"\n")
    pipe.write(orjson.dumps({"end": len(runs)}) + b"\n")
    return writeback.parse(pipe.getvalue())


@pytest.mark.parametrize("scenario", ["pending", "touched again"])
def test_runs_of_a_column_by_row_end_as_the_same_records_by_names(tmp_path, scenario):
    """A write-back whose runs set a column of many rows in bulk ends as the same records
    by names, which go object by object: the inventory, the counts, the change log's
    lines; the store, reloaded, equals memory; a rollback restores everything."""
    twin = Inventory()
    injection.inject(ChangeSet(twin, now=1000), STOCK)
    before = state(twin)
    runs = _scenarios(twin)[scenario]
    named = ChangeSet(twin, now=1000)
    writeback.apply_runs(named, _send(runs, by_row=False))
    named.finish()
    assert not named.columns   # what the by-row records are compared with
    seen = {}

    def apply(changes):
        writeback.apply_runs(changes, _send(runs, by_row=True))
        changes.finish()
        seen["lines"] = entry_lines(orjson.loads(journal_entry(changes.journal)))
        seen["bulk"] = len(changes.columns)

    with mock.patch("time.time", return_value=1000.0):
        counts, (memory, rows), stored = committed(str(tmp_path / "inventory.db"), [apply])
    assert seen["bulk"] == (2 if scenario == "pending" else 0)
    assert memory == state(twin) and stored == rows
    assert counts == named.counts()
    assert seen["lines"] == entry_lines(orjson.loads(journal_entry(named.journal)))
    named.rollback()
    assert state(twin) == before
    changes = ChangeSet(twin, now=1000)
    writeback.apply_runs(changes, _send(runs, by_row=True))
    changes.rollback()
    assert state(twin) == before


def test_a_write_back_refused_after_a_run_of_a_column_leaves_nothing():
    """A record refused after a run of a column set in bulk: the whole write-back is
    undone, the column's old values back, and nothing is left to write."""
    inventory = Inventory()
    injection.inject(ChangeSet(inventory, now=1000), STOCK)
    before = state(inventory)
    runs = [_scenarios(inventory)["touched again"][0],
            (("site", ["status"], ["name"]), None, [["S1", "morgue"], ["S2", "nice"]])]
    changes = ChangeSet(inventory, now=1000)
    with pytest.raises(DynamoError, match="nice"):
        writeback.apply_runs(changes, _send(runs, by_row=True))
    assert changes.columns   # the bulk went as a column
    changes.discard()
    assert state(inventory) == before
    assert not changes.columns and not changes.ops and changes.counts()["updated"] == {}


# A built block replica as a script may build it: its block by full name (known, an
# unknown block or dataset, no '#') or as a Block; its site by name (one without the
# dataset, an unknown one) or as a Site; its fields (a group by name or as a Group,
# unknown too) given to the constructor or set after it, in any order.
_BUILT_BLOCKS = ["/A/B/RAW#b1", "/A/B/RAW#b2", "/C/D/AOD#b2", "/A/B/RAW#b9", "/X/Y/Z#b1",
                 "/A/B/RAW", ("/C/D/AOD", "b1")]
_BUILT_FIELDS = {"group": ["G1", "G2", None, "G9", ("G2",)], "is_custodial": [True, False],
                 "last_update": [5, 7.5, 10**9], "size": [3]}
built_calls = st.lists(st.tuples(
    st.sampled_from(_BUILT_BLOCKS), st.sampled_from(["S1", "S2", "S3", "S9", ("S2",)]),
    st.lists(st.sampled_from(sorted(_BUILT_FIELDS)), max_size=3, unique=True).flatmap(
        lambda names: st.tuples(*(st.sampled_from(_BUILT_FIELDS[n]) for n in names)).map(
            lambda values, names=names: list(zip(names, values)))),
    st.integers(0, 3)), min_size=1, max_size=12)


def _built(inventory, block, site, fields, given_to_constructor):
    """The BlockReplica of a `built_calls` call; a tuple stands for the inventory's
    object of that name."""
    if isinstance(block, tuple):
        block = inventory.block(*block)
    site = inventory.site(site[0]) if isinstance(site, tuple) else site
    fields = [(n, inventory.group(v[0]) if isinstance(v, tuple) else v) for n, v in fields]
    replica = BlockReplica(block, site, **dict(fields[:given_to_constructor]))
    for name, value in fields[given_to_constructor:]:
        setattr(replica, name, value)
    return replica


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(built_calls, st.booleans())
def test_an_update_of_a_built_replica_does_what_its_record_does(calls, partitioned):
    """However a script builds a block replica, `update` of it in an application's copy
    sets what its record (`record`), applied alone, sets in a twin, or is refused with
    the same error; and the records the copy keeps, applied by the daemon, end there
    as the copy did."""
    def stocked():
        inventory = Inventory()
        if partitioned:
            ChangeSet(inventory).set_partition("Owned", condition="group != none")
        injection.inject(ChangeSet(inventory, now=1000), STOCK)
        return inventory

    copy, twin, daemon = stocked(), stocked(), stocked()
    application = ApplicationInventory(copy, writable=True)
    with mock.patch("time.time", return_value=1000.0):
        for call in calls:
            outcome = []
            for target in (copy, twin):
                replica = _built(target, *call)
                try:
                    if target is copy:
                        application.update(replica)
                    else:
                        changes = ChangeSet(twin, now=1000)
                        try:
                            shape, row = record("update", replica)
                            apply_run(changes, shape, [row])
                            changes.finish()
                        except DynamoError:
                            changes.discard()
                            raise
                    outcome.append(None)
                except DynamoError as error:
                    outcome.append((type(error), str(error)))
            assert outcome[0] == outcome[1], call
            assert state(copy) == state(twin), call
    pipe = io.BytesIO()
    writeback.send(pipe, application.records)
    changes = ChangeSet(daemon, now=1000)
    writeback.apply_runs(changes, writeback.parse(pipe.getvalue()))
    changes.finish()
    assert (state(daemon), used(daemon)) == (state(copy), used(copy))
    assert daemon.problems() == [] and copy.problems() == []
