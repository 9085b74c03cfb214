"""Injection as the original's operators used it (issue "Operator fidelity", items 2, 3, 4,
10, 11): a real dynamod, the real `dynamo-inject`, and read/write applications through
the real `dynamo` wherever an application can make the same change.
"""

import sqlite3

from support.seed import NOTHING, T2, T3, block_of, refused, replica_at

DS = "/A/B/RAW"
B1 = f"{DS}#b1"


def partial(daemon, *extra_files):
    """Block b1 of /A/B/RAW holds /a/1 (100), /a/2 (200) and `extra_files`; S1 only /a/1."""
    files = [("/a/1", 100), ("/a/2", 200), *extra_files]
    daemon.inject_json({
        "site": [{"name": "S1"}, {"name": "S2"}, {"name": "S3"}],
        "group": [{"name": "G1"}, {"name": "G2"}],
        "dataset": [{"name": DS, "blocks": [{"name": "b1", "files": [
            {"name": lfn, "size": size} for lfn, size in files]}]}],
        "datasetreplica": [{"dataset": DS, "site": "S1", "blockreplicas": [
            {"block": "b1", "files": ["/a/1"]}]}]})


def held(daemon, site, block=B1) -> tuple:
    """(group, complete, size, files listed) of the block's replica at `site`."""
    replica = replica_at(block_of(daemon, block), site)
    return replica["group"], replica["complete"], replica["size"], replica.get("files")


def block_replicas(site, *entries, dataset=DS) -> dict:
    return {"datasetreplica": [{"dataset": dataset, "site": site, "blockreplicas": list(entries)}]}


def writer(daemon, tmp_path, text, title="writer", check=True):
    """Run `text` as an authorized read/write application; its completed process."""
    path = tmp_path / f"{title}.py"
    path.write_text(text)
    daemon.exec_auth("--executable", path, "--title", title)
    return daemon.dynamo(path, "--write-request", "--title", title, check=check)


FIND_B1 = f"b = inventory.datasets[{DS!r}].find_block('b1')\n"


# ------------------------------------------------------- 2: an update keeps contents
def test_an_owner_change_keeps_what_an_incomplete_replica_holds(daemon, tmp_path):
    partial(daemon)
    assert held(daemon, "S1") == (None, False, 100, ["/a/1"])
    result = daemon.inject_json(block_replicas("S1", {"block": "b1", "group": "G1"}))
    assert result == {"created": {}, "updated": {"blockreplicas": 1}, "deleted": {}}
    assert held(daemon, "S1") == ("G1", False, 100, ["/a/1"])

    # the same update from an application follows the same rule, in its copy and after
    done = writer(daemon, tmp_path, FIND_B1 +
                  "inventory.update(BlockReplica(b, 'S1', group='G2'))\n"
                  "r = b.find_replica('S1')\nprint(r.group.name, r.is_complete(), r.size)\n")
    assert done.stdout == "G2 False 100\n"
    assert held(daemon, "S1") == ("G2", False, 100, ["/a/1"])

    # only a new replica given without files is complete, by either path
    daemon.inject_json(block_replicas("S2", {"block": "b1"}))
    assert held(daemon, "S2") == (None, True, 300, None)
    writer(daemon, tmp_path, FIND_B1 + f"inventory.update(DatasetReplica({DS!r}, 'S3'))\n"
           "inventory.update(BlockReplica(b, 'S3', group='G1'))\n", title="new")
    assert held(daemon, "S3") == ("G1", True, 300, None)
    before = block_of(daemon, B1)
    daemon.restart()
    assert block_of(daemon, B1) == before


# --------------------------------------- 3: files add; --delete removes; complete: true
def test_files_add_to_an_existing_replica_and_leave_it_through_delete(daemon, tmp_path):
    partial(daemon, ("/a/3", 400))
    one_more = block_replicas("S1", {"block": "b1", "files": ["/a/3"]})
    assert daemon.inject_json(one_more)["updated"] == {"blockreplicas": 1}
    assert held(daemon, "S1") == (None, False, 500, ["/a/1", "/a/3"])
    assert daemon.inject_json(one_more) == NOTHING

    # --delete with files: they leave the replica, not the block; the replica stays
    gone = daemon.inject_json(block_replicas("S1", {"block": "b1", "files": ["/a/1"]}),
                              "--delete")
    assert gone == {"created": {}, "updated": {"blockreplicas": 1}, "deleted": {}}
    assert held(daemon, "S1") == (None, False, 400, ["/a/3"])
    assert block_of(daemon, B1)["num_files"] == 3
    refused(daemon, block_replicas("S1", {"block": "b1", "files": ["/a/2"]}),
            "block replica S1:/A/B/RAW#b1", "file '/a/2' is not at S1", args=["--delete"])
    refused(daemon, block_replicas("S1", {"block": "b1", "files": ["/a/9"]}),
            "'/a/9' is not in block /A/B/RAW#b1", args=["--delete"])

    # an explicit way to say "this replica is now complete"
    refused(daemon, block_replicas("S1", {"block": "b1", "complete": True, "files": ["/a/2"]}),
            "give files or complete: true, not both")
    refused(daemon, block_replicas("S1", {"block": "b1", "complete": "yes"}),
            "complete must be true or false")
    assert daemon.inject_json(block_replicas("S1", {"block": "b1", "complete": True}))[
        "updated"] == {"blockreplicas": 1}
    assert held(daemon, "S1") == (None, True, 700, None)
    # files reported for a complete replica change nothing; complete: false takes none away
    assert daemon.inject_json(one_more) == NOTHING
    refused(daemon, block_replicas("S1", {"block": "b1", "complete": False}),
            "holds every file of its block", "--delete")
    daemon.inject_json(block_replicas("S1", {"block": "b1", "files": ["/a/2"]}), "--delete")
    assert held(daemon, "S1") == (None, False, 500, ["/a/1", "/a/3"])
    # a new replica with complete: false and no files holds nothing yet
    daemon.inject_json(block_replicas("S2", {"block": "b1", "complete": False}))
    assert held(daemon, "S2") == (None, False, 0, [])

    # an application states what a replica holds: files=None is complete, a list is exact
    writer(daemon, tmp_path, FIND_B1 + "inventory.update(BlockReplica(b, 'S1', files=None))\n"
           "inventory.update(BlockReplica(b, 'S2', files=['/a/2']))\n")
    assert held(daemon, "S1") == (None, True, 700, None)
    assert held(daemon, "S2") == (None, False, 200, ["/a/2"])
    before = block_of(daemon, B1)
    daemon.restart()
    assert block_of(daemon, B1) == before


# ------------------------------------------- 4: one document describes everything
def test_files_may_name_the_sites_of_replicas_of_the_same_document(daemon):
    # the original's one-document form, its sections in any order
    document = {
        "datasetreplica": [{"dataset": DS, "site": T2, "group": "ops",
                            "blockreplicas": [{"block": "b"}]},
                           {"dataset": DS, "site": T3}],
        "dataset": [{"name": DS, "blocks": [{"name": "b", "files": [
            {"name": "/s/1", "size": 10, "site": T2},
            {"name": "/s/2", "size": 20, "site": T2}]}]}],
        "group": [{"name": "ops"}],
        "site": [{"name": T2}, {"name": T3}]}
    assert daemon.inject_json(document)["created"] == {
        "sites": 2, "groups": 1, "datasets": 1, "blocks": 1, "datasetreplicas": 2, "files": 2,
        "blockreplicas": 1}
    assert held(daemon, T2, f"{DS}#b") == ("ops", True, 30, None)
    replicas = {r["site"]: r for r in daemon.call("get_dataset", name=DS)["replicas"]}
    assert {s: (r["growing"], r["group"]) for s, r in replicas.items()} == {
        T2: (False, "ops"), T3: (True, None)}
    assert daemon.inject_json(document) == NOTHING

    # a file at T3 makes a replica there that holds it; a replica the document lists
    # without files is new to the request, so complete
    daemon.inject_json({"dataset": [{"name": DS, "blocks": [{"name": "c", "files": [
        {"name": "/c/1", "size": 1, "site": T2}, {"name": "/c/2", "size": 2, "site": T3}]}]}],
        "datasetreplica": [{"dataset": DS, "site": T2, "blockreplicas": [{"block": "c"}]}]})
    assert held(daemon, T2, f"{DS}#c") == ("ops", True, 3, None)
    assert held(daemon, T3, f"{DS}#c") == (None, False, 2, ["/c/2"])

    # files at two sites, one a new dataset replica of the same document: each holds its own
    daemon.inject_json({
        "dataset": [{"name": DS, "blocks": [{"name": "b2", "files": [
            {"name": "/s/3", "size": 3, "site": T3}, {"name": "/s/4", "size": 4, "site": "T1"}]}]}],
        "site": [{"name": "T1"}],
        "datasetreplica": [{"dataset": DS, "site": "T1", "growing": False}]})
    assert held(daemon, T3, f"{DS}#b2") == (None, False, 3, ["/s/3"])
    assert held(daemon, "T1", f"{DS}#b2") == (None, False, 4, ["/s/4"])
    # a site with no dataset replica, here or before, is still an error
    refused(daemon, {"site": [{"name": "T9"}], "dataset": [{"name": DS, "blocks": [
        {"name": "b2", "files": [{"name": "/s/5", "size": 5, "site": "T9"}]}]}]},
            "file /s/5", f"dataset {DS} has no replica at site T9")


# ---------------------------------------------------- 10: JSON the original accepted
def test_json_the_original_accepted_and_close_misspellings(daemon, tmp_path):
    document = {
        "comment": "exported 2018-06-07",
        "site": [{"name": "S1"}],
        "dataset": [{"name": DS, "last_update": 1528406008.0, "size": 300, "num_files": 2,
                     "blocks": [{"name": "b1", "last_update": 1528406008.9, "files": [
                         {"name": "/a/1", "size": 100}, {"name": "/a/2", "size": 200}]}]}],
        "datasetreplica": [{"dataset": DS, "site": "S1", "blockreplicas": [
            {"block": "b1", "last_update": 1528406009.0}]}]}
    assert daemon.inject_json(document)["created"]["files"] == 2
    assert daemon.call("get_dataset", name=DS)["last_update"] == 1528406008
    assert block_of(daemon, B1)["last_update"] == 1528406008   # truncated, as int(time)
    assert held(daemon, "S1")[1:3] == (True, 300)
    assert replica_at(block_of(daemon, B1), "S1")["last_update"] == 1528406009
    assert daemon.inject_json(document) == NOTHING

    # a dataset's size and num_files are checked like a block's: the sums after the request
    refused(daemon, {"dataset": [{"name": DS, "size": 301}]},
            f"dataset {DS}", "size is 301 in the request but 300 by its blocks")
    refused(daemon, {"dataset": [{"name": DS, "num_files": 2, "blocks": [
        {"name": "b2", "files": [{"name": "/a/3", "size": 1}]}]}]},
            "num_files is 2 in the request but 3 by its blocks")
    daemon.inject_json({"dataset": [{"name": DS, "num_files": 3, "size": 301, "blocks": [
        {"name": "b2", "files": [{"name": "/a/3", "size": 1}]}]}]})
    refused(daemon, {"dataset": [{"name": DS, "last_update": -1.5}]}, "Dataset.last_update")
    # truly unknown keys are refused with the nearest valid name
    refused(daemon, {"site": [{"name": "S1", "stauts": "ready"}]},
            "unknown key 'stauts' (did you mean 'status'?")
    refused(daemon, {"datasets": []}, "unknown section 'datasets' (did you mean 'dataset'?")
    refused(daemon, {"comments": "x"}, "did you mean 'comment'?")
    refused(daemon, block_replicas("S1", {"block": "b1", "completed": True}),
            "did you mean 'complete'?")

    # a script sets times from time.time()
    writer(daemon, tmp_path, "import time\n" + FIND_B1 +
           "b.last_update = time.time() - 0.5\ninventory.update(b)\n")
    assert isinstance(block_of(daemon, B1)["last_update"], int)
    assert block_of(daemon, B1)["last_update"] > 1528406008


# ------------------------------------------------------- 11: names and duplicates
def test_dataset_names_with_a_hash_are_refused(daemon, tmp_path):
    refused(daemon, {"dataset": [{"name": "/H/2#x", "blocks": [{"name": "b"}]}]},
            "dataset /H/2#x", "contains '#'", "dataset#block")
    option = daemon.inject("--dataset", "/H/2#x", check=False)
    assert option.returncode == 1 and "contains '#'" in option.stderr
    failed = writer(daemon, tmp_path, "inventory.update(Dataset('/H/2#x'))\n", check=False)
    assert failed.returncode == 1 and "contains '#'" in failed.stderr
    assert daemon.call("list_datasets")["datasets"] == []


def test_a_stored_dataset_name_with_a_hash_stays_usable(daemon):
    """A store written before the rule may hold one: it loads, and can be updated, given
    blocks and files (by dataset and block name) and deleted; only the full block name
    `dataset#block` cannot reach its blocks."""
    daemon.inject_json({"dataset": [{"name": "/H/2_x"}]})
    daemon.stop()
    with sqlite3.connect(daemon.database) as db:
        db.execute("UPDATE datasets SET name = '/H/2#x'")
        db.execute("DELETE FROM snapshot_stamp")   # a value edited by hand (README)
    db.close()
    daemon.start()
    result = daemon.inject_json({"dataset": [{"name": "/H/2#x", "status": "valid", "blocks": [
        {"name": "b", "files": [{"name": "/h/1", "size": 1}]}]}]})
    assert result["updated"] == {"datasets": 1} and result["created"]["files"] == 1
    assert daemon.call("get_dataset", name="/H/2#x")["status"] == "valid"
    assert daemon.inject_json({"dataset": [{"name": "/H/2#x"}]}, "--delete")["deleted"] == {
        "datasets": 1, "blocks": 1, "files": 1}


def test_an_lfn_twice_in_one_document_is_refused_naming_both(daemon, tmp_path):
    text = ('{"dataset": [{"name": "/D/1", "blocks": [{"name": "b", "files": [\n'
            '  {"name": "/d/1", "size": 1},\n'
            '  {"name": "/d/2", "size": 2},\n'
            '  {"name": "/d/1", "size": 3}\n'
            ']}]}]}\n')
    path = tmp_path / "twice.json"
    path.write_text(text)
    result = daemon.inject(path, check=False)
    assert result.returncode == 1
    assert result.stderr == (
        f"dynamo-inject: {path}:4: file /d/1: given twice in one document, at "
        "dataset[0].blocks[0].files[0] and at dataset[0].blocks[0].files[2] [invalid_params]\n")
    assert daemon.call("list_datasets")["datasets"] == []
    # in two blocks, or in a block given twice; files with a site too; and once created
    daemon.inject_json({"site": [{"name": "S1"}], "dataset": [{"name": DS}],
                        "datasetreplica": [{"dataset": DS, "site": "S1"}]})
    two_blocks = {"dataset": [{"name": DS, "blocks": [
        {"name": "b1", "files": [{"name": "/x/1", "size": 1}]},
        {"name": "b2", "files": [{"name": "/x/1", "size": 1, "site": "S1"}]}]}]}
    refused(daemon, two_blocks, "file /x/1: given twice", "dataset[0].blocks[0].files[0]",
            "dataset[0].blocks[1].files[0]")
    block_twice = {"dataset": [
        {"name": DS, "blocks": [{"name": "b1", "files": [{"name": "/x/1", "size": 1}]}]},
        {"name": DS, "blocks": [{"name": "b1", "files": [{"name": "/x/1", "size": 2}]}]}]}
    refused(daemon, block_twice, "dataset[0].blocks[0].files[0] and at "
            "dataset[1].blocks[0].files[0]")
    daemon.inject_json({"dataset": [{"name": DS, "blocks": [{"name": "b1", "files": [
        {"name": "/x/1", "size": 1}]}]}]})
    refused(daemon, block_twice, "given twice")


def test_an_object_given_twice_with_two_values_is_refused_naming_both(daemon, tmp_path):
    """Entries of one object add up (a dataset again with more blocks), but two values
    of one field are refused at the second's line, naming both: applied in turn, the
    later would win without a word.  Equal values, and numbers equal as times, pass."""
    text = ('{"site": [\n'
            ' {"name": "T2_DUP", "host": "a.example", "status": "ready"},\n'
            ' {"name": "T2_DUP", "host": "b.example", "status": "ready"}\n'
            ']}\n')
    path = tmp_path / "twice.json"
    path.write_text(text)
    result = daemon.inject(path, check=False)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"dynamo-inject: {path}:3: site T2_DUP: host given twice in one document with "
        "different values: 'a.example' at site[0], 'b.example' at site[1] [conflict]\n")
    assert daemon.call("list_sites")["sites"] == []
    daemon.inject_json({"site": [{"name": "S1"}], "group": [{"name": "G1"}]})
    refused(daemon, {"dataset": [{"name": DS, "status": "valid"},
                                 {"name": DS, "status": "invalid"}]},
            "dataset /A/B/RAW: status given twice", "'valid' at dataset[0], 'invalid' at "
            "dataset[1]")
    refused(daemon, {"dataset": [{"name": DS, "blocks": [{"name": "b1", "is_open": True}]},
                                 {"name": DS, "blocks": [{"name": "b1", "is_open": False}]}]},
            "block /A/B/RAW#b1: is_open given twice", "at dataset[1].blocks[0]")
    two_owners = {"dataset": [{"name": DS, "blocks": [{"name": "b1", "files": [
        {"name": "/x/1", "size": 1}]}]}], "datasetreplica": [
        {"dataset": DS, "site": "S1", "blockreplicas": [{"block": "b1", "group": "G1"},
                                                        {"block": "b1", "group": None}]}]}
    refused(daemon, two_owners, "block replica S1:/A/B/RAW#b1: group given twice",
            "'G1' at datasetreplica[0].blockreplicas[0], None at "
            "datasetreplica[0].blockreplicas[1]")
    # entries that add up, or repeat a value (a time with a fraction is the same time)
    result = daemon.inject_json({"dataset": [
        {"name": DS, "status": "valid", "last_update": 5, "blocks": [
            {"name": "b1", "files": [{"name": "/x/1", "size": 1}]}]},
        {"name": DS, "status": "valid", "last_update": 5.0, "blocks": [
            {"name": "b2", "files": [{"name": "/x/2", "size": 2}]}]}]})
    assert result["created"] == {"datasets": 1, "blocks": 2, "files": 2}


def test_a_reference_of_the_wrong_type_is_called_that(daemon, seed_sites, seed_data):
    """`"group": 5` is not a name that was not found: it is not a name at all."""
    daemon.inject_json(seed_sites)
    daemon.inject_json(seed_data)
    dataset = seed_data["dataset"][0]["name"]
    block = seed_data["dataset"][0]["blocks"][0]["name"]
    for document in (
            {"datasetreplica": [{"dataset": dataset, "site": "T2_US_XYZ", "blockreplicas": [
                {"block": block, "group": 5}]}]},
            {"datasetreplica": [{"dataset": dataset, "site": "T2_US_XYZ", "group": 5}]},
            {"datasetreplica": [{"dataset": dataset, "site": 7}]}):
        refused = daemon.inject_json(document, check=False)
        assert refused.returncode == 1
        assert "is named by a string" in refused.stderr and "[invalid_value]" in refused.stderr
