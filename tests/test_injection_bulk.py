"""The bulk of an injection created at once: a dataset's new blocks, a dataset
replica's new complete block replicas, a new block's files kept packed.

Each batch must do exactly what the same objects one by one do: the same rows,
the same change-log lines in the same order, the same order of replicas, the same
error at the same place, and an undo that leaves nothing behind.  A document whose
`last_update` values are given as `1428392977.0` (a time the field truncates to
the same integer) takes the one-by-one path, so the two are compared on the same
content.
"""

import asyncio
import time

import pytest

from dynamod.errors import DynamoError
from dynamod.inventory import injection
from dynamod.changelog import entry_text
from dynamod.inventory.changes import ChangeSet, journal_entry
from dynamod.inventory.inventory import Inventory
from dynamod.service import InventoryService
from support.documents import state
from support.wire import Raw, pipelined


def _document(one_by_one: bool = False, blocks: int = 30, files: int = 4) -> dict:
    """Two sites and groups, a dataset of `blocks` blocks of `files` files, its replica at
    each site: complete ones, and one run holding some files only."""
    when = 1428392977.0 if one_by_one else 1428392977
    names = [f"blk{(i * 7) % blocks:03d}" for i in range(blocks)]   # not in name order
    return {
        "site": [{"name": "T2_A", "host": "a"}, {"name": "T2_B", "host": "b"}],
        "group": [{"name": "ops"}, {"name": "users"}],
        "dataset": [{"name": "/Bulk/ds/RAW", "status": "valid", "blocks": [
            {"name": name, "is_open": i % 2 == 0, "last_update": when + i,
             "size": 10 * files, "num_files": files,
             "files": [{"name": f"/store/bulk/{name}/{j}.root", "size": 10,
                        "adler32": f"{i:04x}{j:04x}"} for j in range(files)]}
            for i, name in enumerate(names)]}],
        "datasetreplica": [
            {"dataset": "/Bulk/ds/RAW", "site": "T2_A", "group": "ops", "blockreplicas": [
                {"block": name, "last_update": when + i, "is_custodial": i % 3 == 0,
                 **({"group": "users"} if i % 4 == 0 else {})}
                for i, name in enumerate(names)]},
            {"dataset": "/Bulk/ds/RAW", "site": "T2_B", "group": "ops", "blockreplicas": [
                *[{"block": name, "last_update": when, "size": 10 * files}
                  for name in names[:10]],
                {"block": names[10], "files": [f"/store/bulk/{names[10]}/0.root"]},
                {"block": names[11], "group": None, "files": []},
                {"block": names[12], "group": None, "size": 10 * files, "files": [
                    f"/store/bulk/{names[12]}/{j}.root" for j in [*range(files), 0]]},
                *[{"block": name, "group": None} for name in names[13:]]]},
        ],
    }


def _inject(document, inventory=None):
    inventory = inventory or Inventory()
    changes = ChangeSet(inventory, now=1000)
    injection.inject(changes, document)
    return inventory, changes


# the lines of new files, blocks, and block replicas whose values do not depend on the
# time of the request (T2_A's, whose last_update `_document` gives)
CREATED = ("created file ", "created block ", "created blockreplica T2_A:")


def lines(changes) -> list[str]:
    """The change log's lines of a ChangeSet, as its file gets them."""
    return entry_text(journal_entry(changes.journal)).split("\n")


def test_new_files_go_to_the_change_log_as_their_columns():
    """The change log's entry of an injection holds its new files', blocks' and block
    replicas' values, not their lines (JSON, which the change log's writer expands): the
    same lines as one by one."""
    bulk, bulk_changes = _inject(_document())
    single, single_changes = _inject(_document(one_by_one=True))
    entry, text = journal_entry(bulk_changes.journal), entry_text(
        journal_entry(single_changes.journal))
    assert type(entry) is bytes   # T2_B's block replicas go one by one (a group None)
    assert not any(line in entry for line in (b"created file", b"created block ",
                                              b"created blockreplica T2_A"))
    assert entry_text(entry) == text and text.count("created file ") == 120
    assert text.count("created block ") == 30 and text.count("created blockreplica ") == 60
    assert ("created file /store/bulk/blk007/3.root size=10 adler32='00010003' crc32=None "
            "md5=None") in text.split("\n")


def test_a_batch_equals_the_same_objects_one_by_one():
    bulk, bulk_changes = _inject(_document())
    single, single_changes = _inject(_document(one_by_one=True))
    assert state(bulk) == state(single)
    assert lines(bulk_changes) == lines(single_changes)
    assert bulk_changes.counts() == single_changes.counts() == {
        "created": {"sites": 2, "groups": 2, "datasets": 1, "blocks": 30, "files": 120,
                    "datasetreplicas": 2, "blockreplicas": 60},
        "updated": {}, "deleted": {}}
    replica = bulk.datasets["/Bulk/ds/RAW"].find_replica("T2_B")
    assert [r.group.name for r in replica.block_replicas][9:12] == ["ops", "ops", None]
    for changes, inventory in ((bulk_changes, bulk), (single_changes, single)):
        changes.rollback()
        assert state(inventory) == state(Inventory())


@pytest.mark.parametrize("where, fault, message", [
    (("dataset", 0, "blocks", 3), {"num_files": 5},
     "block /Bulk/ds/RAW#blk021: num_files is 5 in the request but 4 by its files"),
    (("dataset", 0, "blocks", 5), {"size": 41},
     "block /Bulk/ds/RAW#blk005: size is 41 in the request but 40 by its files"),
    (("datasetreplica", 1, "blockreplicas", 2), {"size": 7},
     "size is 7 in the request but 40 by its files"),
    # a replica that lists its files
    (("datasetreplica", 1, "blockreplicas", 10), {"size": 11},
     "size is 11 in the request but 10 by its files"),
    (("datasetreplica", 1, "blockreplicas", 10), {"files": ["/store/bulk/blk010/9.root"]},
     "file '/store/bulk/blk010/9.root' is not in block"),
    (("datasetreplica", 1, "blockreplicas", 11), {"files": "/store/bulk/blk010/0.root"},
     "files must be a list of LFNs"),
    (("datasetreplica", 0, "blockreplicas", 4), {"group": "nobody"}, "nobody"),
    (("datasetreplica", 0, "blockreplicas", 6), {"block": "blk999"}, "blk999"),
    (("dataset", 0, "blocks", 7), {"is_open": "yes"}, "Block.is_open must be true or false"),
    (("datasetreplica", 0, "blockreplicas", 8), {"is_custodial": 1},
     "BlockReplica.is_custodial must be true or false"),
    # a control character anywhere in the LFNs of the batch, ASCII or not
    (("dataset", 0, "blocks", 2, "files", 1), {"name": "/store/bulk/x\x7f.root"},
     "free of control characters"),
    (("dataset", 0, "blocks", 29, "files", 3), {"name": "/store/bulk/x.root\x00"},
     "free of control characters"),
    (("dataset", 0, "blocks", 0, "files", 0), {"name": "\x1f/store/bulk/x.root"},
     "free of control characters"),
    (("dataset", 0, "blocks", 9, "files", 2), {"name": "/store/bulk/\u00e9\x1b.root"},
     "free of control characters"),
])
def test_a_batch_with_a_fault_is_refused_as_one_by_one(where, fault, message):
    """The batch that would hold the fault is not made (or is undone): the error is the
    one-by-one path's, located at the same object, and nothing stays."""
    _refused_alike(_document, where, fault, message)


def _refused_alike(make, where: tuple, fault: dict, message: str):
    """The document `make(one_by_one)` with `fault` put into the object at `where` is
    refused with the same error, batch or not, at that object; nothing stays."""
    errors = []
    for one_by_one in (False, True):
        document = make(one_by_one)
        item = document
        for step in where:
            item = item[step]
        item.update(fault)
        inventory = Inventory()
        changes = ChangeSet(inventory, now=1000)
        with pytest.raises(DynamoError) as caught:
            injection.inject(changes, document)
        changes.rollback()
        assert state(inventory) == state(Inventory())
        errors.append((caught.value.message, caught.value.details.get("path")))
    assert errors[0] == errors[1]
    assert message in errors[0][0]
    assert errors[0][1] == ".".join(f"{where[i]}[{where[i + 1]}]" for i in range(0, len(where), 2))


def _replicas_document(one_by_one: bool = False) -> dict:
    """Two datasets of four blocks, their replicas at two sites given in turn, and the
    first one's at T2_A given twice (its other blocks the second time): every block
    replica plain and new, so all of them one batch."""
    when = 1428392977.0 if one_by_one else 1428392977
    datasets = ["/Bulk/one/RAW", "/Bulk/two/RAW"]
    blocks = [f"b{i}" for i in range(4)]

    def replica(dataset, site, names):
        return {"dataset": dataset, "site": site, "group": "ops", "blockreplicas": [
            {"block": name, "last_update": when + i, "is_custodial": i % 2 == 0,
             **({"group": "users"} if i % 3 == 0 else {})} for i, name in enumerate(names)]}
    return {
        "site": [{"name": "T2_A", "host": "a"}, {"name": "T2_B", "host": "b"}],
        "group": [{"name": "ops"}, {"name": "users"}],
        "dataset": [{"name": dataset, "blocks": [
            {"name": name, "files": [{"name": f"/store{dataset}/{name}/{j}.root", "size": 5}
                                     for j in range(3)]} for name in blocks]}
            for dataset in datasets],
        "datasetreplica": [
            replica(datasets[0], "T2_A", blocks[:2]), replica(datasets[1], "T2_A", blocks),
            {"dataset": datasets[1], "site": "T2_B"}, replica(datasets[0], "T2_B", blocks[::-1]),
            replica(datasets[0], "T2_A", blocks[2:])],
    }


def _block_replica_batches(changes) -> int:
    return sum(how == "created many" and type(obj[0]).__name__ == "BlockReplica"
               for how, obj, _ in changes.journal)


@pytest.mark.parametrize("twice", [False, True])
def test_the_block_replicas_of_a_document_are_one_batch_equal_to_one_by_one(twice):
    """Every new block replica of the document, whatever its dataset replica, in one
    batch: the same rows, lines, counts and order of replicas as one by one, undone
    whole.  A block replica given twice (the same values again: two values would be
    refused) leaves the document to the dataset replicas' own batches."""
    documents = [_replicas_document(), _replicas_document(one_by_one=True)]
    for document in documents if twice else ():
        replicas = document["datasetreplica"]
        replicas[4]["blockreplicas"][1] = dict(replicas[0]["blockreplicas"][0])
    bulk, bulk_changes = _inject(documents[0])
    single, single_changes = _inject(documents[1])
    assert _block_replica_batches(bulk_changes) == (3 if twice else 1)
    assert _block_replica_batches(single_changes) == 0
    assert state(bulk) == state(single)
    assert lines(bulk_changes) == lines(single_changes)
    assert bulk_changes.counts()["created"]["blockreplicas"] == (11 if twice else 12)
    assert bulk_changes.counts() == single_changes.counts()
    for inventory in (bulk, single):
        replica = inventory.datasets["/Bulk/one/RAW"].find_replica("T2_A")
        assert [(r.block.name, r.group.name) for r in replica.block_replicas] == (
            [("b0", "users"), ("b1", "ops"), ("b2", "users")] if twice else
            [("b0", "users"), ("b1", "ops"), ("b2", "users"), ("b3", "ops")])
        assert [r.site.name for r in inventory.block("/Bulk/two/RAW", "b3").replicas] \
            == ["T2_A"]
    for changes, inventory in ((bulk_changes, bulk), (single_changes, single)):
        changes.rollback()
        assert state(inventory) == state(Inventory())


@pytest.mark.parametrize("where, fault, message", [
    ((3, 2), {"block": "b9"}, "b9"),
    ((1, 3), {"group": "nobody"}, "nobody"),
    ((3, 0), {"size": 16}, "size is 16 in the request but 15 by its files"),
    ((1, 0), {"is_custodial": "no"}, "BlockReplica.is_custodial must be true or false"),
])
def test_a_document_batch_with_a_fault_is_refused_as_one_by_one(where, fault, message):
    """A fault in any dataset replica of the document: no batch, the one-by-one
    path's error at the same place, and nothing stays."""
    _refused_alike(_replicas_document, ("datasetreplica", where[0], "blockreplicas", where[1]),
                   fault, message)


def test_undone_batches_with_a_store_leave_memory_as_the_store(tmp_path):
    """With a store, a new block's files are kept packed: a refused document (its
    dataset's total wrong, found once everything is applied) changes nothing, a later
    change that needs them as objects gets them, and a reload equals memory."""
    path = str(tmp_path / "inventory.db")
    document = _document()

    async def scenario():
        service = await InventoryService.open(path, "NORMAL", file_cache=50)
        empty = state(service.inventory)
        wrong = {**document, "dataset": [{**document["dataset"][0], "num_files": 1}]}
        with pytest.raises(DynamoError, match="num_files is 1 in the request but 120"):
            await service.change(lambda c: injection.inject(c, wrong))
        assert state(service.inventory) == empty
        await service.change(lambda c: injection.inject(c, document))
        loaded = state(service.inventory)
        # a file of a packed block updated, another removed, in one change
        await service.change(lambda c: injection.inject(c, {"dataset": [{
            "name": "/Bulk/ds/RAW", "blocks": [{"name": "blk007", "files": [
                {"name": "/store/bulk/blk007/1.root", "size": 10, "adler32": "abcd"}]}]}]}))
        await service.change(lambda c: injection.delete(c, {"dataset": [{
            "name": "/Bulk/ds/RAW", "blocks": [{"name": "blk014", "files": [
                {"name": "/store/bulk/blk014/2.root"}]}]}]}))
        after = state(service.inventory)
        await service.close()
        reloaded = await InventoryService.open(path, "NORMAL", rebuild=True)   # from the rows
        again = state(reloaded.inventory)
        await reloaded.close()
        return loaded, after, again

    loaded, after, again = asyncio.run(scenario())
    assert loaded[0]["file"] != after[0]["file"]
    assert again == after


def test_a_pipelined_request_sees_the_packed_files_of_the_one_before(daemon):
    """The second request reuses an LFN of the first's new block while the first is not
    committed yet (both sent at once): refused, naming the first's block."""
    first = _document()
    second = {"dataset": [{"name": "/Other/ds/RAW", "blocks": [{"name": "b1", "files": [
        {"name": "/store/bulk/blk007/2.root", "size": 10}]}]}]}
    answers = pipelined(daemon.socket, first, second)
    assert answers[0]["result"]["created"]["files"] == 120
    assert answers[1]["error"]["message"] == (
        "file /store/bulk/blk007/2.root belongs to block /Bulk/ds/RAW#blk007, not "
        "/Other/ds/RAW#b1")
    assert answers[1]["error"]["path"] == "dataset[0].blocks[0].files[0]"


def test_a_large_entry_of_the_change_log_reaches_its_file_whole(daemon):
    """An injection's change-log entry of hundreds of KiB (kept compressed in the store
    until the file holds it): every line of its files and blocks, in order."""
    document = _document(blocks=300, files=5)
    assert daemon.inject_json(document)["created"]["files"] == 1500
    _, changes = _inject(document)
    wanted = [line for line in lines(changes) if line.startswith(CREATED)]
    change_log, deadline = daemon.state_dir / "changes.log", time.monotonic() + 30
    while True:
        text = change_log.read_text() if change_log.exists() else ""
        written = [line[line.index(" created ") + 1:] for line in text.splitlines()
                   if any(f" {created}" in line for created in CREATED)]
        if len(written) >= len(wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert written == wanted


def test_the_change_log_file_frames_each_line_of_a_bulk_entry(daemon):
    """A bulk entry's lines written to the file each after the time and the request's
    actor, with what JSON escapes in a name (a quote, a backslash) and format braces and
    percent signs in the request id and the names: the lines of the same objects one by
    one, each framed alike."""
    plain = _document(blocks=40, files=5)
    odd = {"dataset": [{"name": "/Odd/ds/RAW", "blocks": [{
        "name": "b\"1'\\{0}%s", "last_update": 7,
        "files": [{"name": f"/store/odd/it's\\{{{i}}}%s%%.root", "size": 1}
                  for i in range(200)]}]}]}
    client = Raw(daemon.socket, timeout=60)
    try:
        for rid, document in (("{0}}%s", plain), ("{x}\\%%", odd)):
            assert "result" in client.request(rid, "inject", data=document)
    finally:
        client.close()
    wanted = lines(_inject(plain)[1]) + lines(_inject(odd)[1])
    wanted = [line for line in wanted if line.startswith(CREATED)]
    change_log, deadline = daemon.state_dir / "changes.log", time.monotonic() + 30
    while True:
        text = change_log.read_text() if change_log.exists() else ""
        written = [line for line in text.splitlines()
                   if any(f" {created}" in line for created in CREATED)]
        if len(written) >= len(wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(written) == len(wanted) == 200 + 200 + 1 + 40 + 40
    actors = [line.split(" ")[3] for line in written]
    assert actors == ["request={0}}%s"] * 280 + ["request={x}\\%%"] * 201
    assert [line.split(" ", 4)[4] for line in written] == wanted


def test_the_lfns_of_a_released_block_are_free_once_it_is_deleted(daemon):
    """A new block's packed files leave the LFN index when its injection is committed:
    once the block is deleted, its LFNs are free for a new block of another dataset
    (an index that kept them would find the deleted block's files there)."""
    first = _document(blocks=20, files=6)
    assert daemon.inject_json(first)["created"]["files"] == 120
    reused = [f"/store/bulk/{block['name']}/{j}.root"
              for block in first["dataset"][0]["blocks"] for j in range(6)]
    again = {"dataset": [{"name": "/Again/ds/RAW", "blocks": [{"name": "b1", "files": [
        {"name": name, "size": 3} for name in reused]}]}]}
    refused = daemon.inject_json(again, check=False)
    assert refused.returncode != 0 and "belongs to block /Bulk/ds/RAW#" in refused.stderr
    deleted = daemon.inject_json({"dataset": [{"name": "/Bulk/ds/RAW"}]}, "--delete")
    assert deleted["deleted"]["files"] == 120
    assert daemon.inject_json(again)["created"]["files"] == 120
