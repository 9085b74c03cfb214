"""Injection (SPEC §2–§3): a real dynamod, driven only through the real dynamo-inject.

Every check looks at the inventory through the query methods afterwards, so a
request that is refused must leave every answer exactly as it was.
"""

import json

import pytest

from dynamoclient.connection import RemoteError
from support.daemon import EXAMPLES
from support.seed import (BLOCK, DS, FULL, LFN1, LFN2, NOTHING, T2, T3, block_doc, block_of,
                          dataset_doc, refused, replica_at, seed)
from support.views import snapshot

T2_BACKEND = "gsiftp://t2-storage.xyz.edu:2811/cms"


# ------------------------------------------------------------------ the seed
def test_seed_counts_ids_and_reinjection(daemon):
    sites = daemon.inject_json(_load("mydynamo-storage-sites.json"))
    assert sites == {"created": {"sites": 2}, "updated": {}, "deleted": {}}
    data = daemon.inject_json(_load("mydynamo-data.json"))
    assert data == {"created": {"datasets": 1, "blocks": 1, "files": 2, "datasetreplicas": 1,
                                "blockreplicas": 1}, "updated": {}, "deleted": {}}
    assert daemon.inject_json(_load("mydynamo-storage-sites.json")) == NOTHING
    assert daemon.inject_json(_load("mydynamo-data.json")) == NOTHING

    by_name = {s["name"]: s for s in daemon.call("list_sites")["sites"]}
    assert by_name[T2] == {"name": T2, "id": 1, "host": "t2-storage.xyz.edu",
                           "storage_type": "disk", "backend": T2_BACKEND, "status": "ready"}
    assert by_name[T3]["id"] == 2
    dataset = daemon.call("get_dataset", name=DS)
    assert (dataset["id"], dataset["status"], dataset["data_type"], dataset["software_version"],
            dataset["last_update"], dataset["is_open"]) == (
        1, "production", "unknown", "pandaf/010", 1528406008, True)
    block = block_of(daemon)
    assert (block["id"], block["size"], block["num_files"], block["is_open"],
            block["last_update"]) == (1, 165438, 2, True, 1528406008)
    assert [(f["name"], f["id"], f["size"]) for f in block["files"]] == [
        (LFN1, 1, 57495), (LFN2, 2, 107943)]
    assert block["replicas"] == [{"block": BLOCK, "site": T2, "group": None,
                                  "is_custodial": False, "size": 165438,
                                  "last_update": 1528406008, "complete": True}]
    assert daemon.call("status")["inventory"] == {
        "sites": 2, "groups": 0, "datasets": 1, "blocks": 1, "files": 2,
        "datasetreplicas": 1, "blockreplicas": 1}


def test_ids_per_kind_in_creation_order_and_stable(daemon):
    seed(daemon)
    daemon.inject_json({"site": [{"name": "T1_B"}, {"name": "T1_A"}],
                        "group": [{"name": "ops"}, {"name": "analysis"}],
                        **dataset_doc("/Z/second", block_doc("z1", ("/z/1", 1)),
                                      block_doc("a1", ("/z/2", 2), ("/z/3", 3)))})
    expected = {"sites": {T2: 1, T3: 2, "T1_B": 3, "T1_A": 4},
                "groups": {"ops": 1, "analysis": 2},
                "datasets": {DS: 1, "/Z/second": 2},
                "blocks": {FULL: 1, "/Z/second#z1": 2, "/Z/second#a1": 3},
                "files": {LFN1: 1, LFN2: 2, "/z/1": 3, "/z/2": 4, "/z/3": 5}}
    assert _ids(daemon) == expected
    before = snapshot(daemon)
    daemon.restart()
    assert _ids(daemon) == expected and snapshot(daemon) == before

    # an acknowledged injection survives kill -9 at once, ids included
    assert daemon.inject_json({"site": [{"name": "T9_NEW"}]})["created"] == {"sites": 1}
    daemon.kill9()
    daemon.start()
    assert _ids(daemon)["sites"]["T9_NEW"] == 5

    # ids are never reused, even after the newest object is deleted and the daemon restarts
    daemon.inject_json({"site": [{"name": "T9_NEW"}]}, "--delete")
    daemon.kill9()
    daemon.start()
    daemon.inject_json({"site": [{"name": "T9_NEWER"}],
                        **dataset_doc("/Y/third", block_doc("y", ("/y/1", 1)))})
    ids = _ids(daemon)
    assert "T9_NEW" not in ids["sites"] and ids["sites"]["T9_NEWER"] == 6
    assert ids["datasets"]["/Y/third"] == 3 and ids["blocks"]["/Y/third#y"] == 4
    assert ids["files"]["/y/1"] == 6


def _load(name) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def _ids(daemon) -> dict:
    datasets = daemon.call("list_datasets")["datasets"]
    blocks = [block_of(daemon, f"{d['name']}#{b['name']}") for d in datasets
              for b in daemon.call("get_dataset", name=d["name"])["blocks"]]
    return {"sites": {s["name"]: s["id"] for s in daemon.call("list_sites")["sites"]},
            "groups": {g["name"]: g["id"] for g in daemon.call("list_groups")["groups"]},
            "datasets": {d["name"]: d["id"] for d in datasets},
            "blocks": {f"{b['dataset']}#{b['name']}": b["id"] for b in blocks},
            "files": {f["name"]: f["id"] for b in blocks for f in b["files"]}}


# ------------------------------------------------------------------ updates
def test_updates_are_counted_only_when_something_changes(daemon):
    seed(daemon)
    assert daemon.inject_json({"site": [{"name": T2, "status": "waitroom"}]}) == {
        "created": {}, "updated": {"sites": 1}, "deleted": {}}
    assert daemon.call("list_sites", pattern=T2)["sites"][0]["status"] == "waitroom"
    assert daemon.inject_json({"site": [{"name": T2, "status": "waitroom"}]}) == NOTHING
    # a field left out keeps its value
    assert daemon.inject_json({"site": [{"name": T2, "host": "new.xyz.edu"}]})["updated"] == {
        "sites": 1}
    site = daemon.call("list_sites", pattern=T2)["sites"][0]
    assert (site["host"], site["status"], site["backend"]) == (
        "new.xyz.edu", "waitroom", T2_BACKEND)

    assert daemon.inject_json({"dataset": [{"name": DS, "status": "valid"}]})["updated"] == {
        "datasets": 1}
    assert daemon.inject_json(dataset_doc(DS, {"name": BLOCK, "is_open": False}))["updated"] == {
        "blocks": 1}
    assert block_of(daemon)["is_open"] is False

    # a file's new size moves the block's size and its complete replica's size with it
    result = daemon.inject_json(dataset_doc(DS, block_doc(BLOCK, (LFN1, 57500))))
    assert result == {"created": {}, "updated": {"files": 1, "blocks": 1, "blockreplicas": 1},
                      "deleted": {}}
    block = block_of(daemon)
    assert block["size"] == 57500 + 107943 and block["num_files"] == 2
    assert replica_at(block, T2)["size"] == block["size"]
    assert replica_at(block, T2)["complete"] is True
    assert daemon.restart() and block_of(daemon) == block

    # checksums are fields of the file too: stored in lower case, updated when they change
    result = daemon.inject_json(dataset_doc(DS, block_doc(BLOCK, (LFN2, 107943, {
        "adler32": "0A1B2C3D", "md5": "d41d8cd98f00b204e9800998ecf8427e"}))))
    assert result == {"created": {}, "updated": {"files": 1}, "deleted": {}}
    assert block_of(daemon)["files"][1] == {
        "name": LFN2, "id": 2, "size": 107943, "adler32": "0a1b2c3d",
        "md5": "d41d8cd98f00b204e9800998ecf8427e"}
    assert daemon.inject_json(dataset_doc(DS, block_doc(BLOCK, (LFN2, 107943, {
        "adler32": "0a1b2c3d"})))) == NOTHING


def test_enum_values_outside_the_allowed_set_are_errors(daemon):
    seed(daemon)
    refused(daemon, {"site": [{"name": T2, "status": "broken"}]},
            "site T2_US_XYZ", "Site.status", "ready, waitroom, morgue, unknown", "'broken'")
    refused(daemon, {"site": [{"name": "T2_NEW", "storage_type": "tape"}]},
            "site T2_NEW", "Site.storage_type", "disk, mss, buffer, unknown", "'tape'")
    refused(daemon, {"dataset": [{"name": DS, "status": "gone"}]},
            f"dataset {DS}", "Dataset.status",
            "unknown, deleted, deprecated, invalid, production, valid, ignored")
    refused(daemon, {"dataset": [{"name": "/new/ds", "data_type": "mc"}]},
            "dataset /new/ds", "Dataset.data_type", "unknown, production, test")
    refused(daemon, {"group": [{"name": "ops", "olevel": "File"}]},
            "group ops", "Group.olevel", "Dataset, Block")
    refused(daemon, {"site": [{"name": T2, "status": 1}]}, "Site.status")
    # allowed values are taken in any case and stored in the canonical one
    daemon.inject_json({"site": [{"name": T3, "status": "MORGUE", "storage_type": "Mss"}],
                        "group": [{"name": "ops", "olevel": "dataset"}]})
    site = daemon.call("list_sites", pattern=T3)["sites"][0]
    assert (site["status"], site["storage_type"]) == ("morgue", "mss")
    assert daemon.call("list_groups")["groups"] == [{"name": "ops", "id": 1, "olevel": "Dataset"}]


def test_software_version_list_of_one_is_its_element(daemon):
    daemon.inject_json({"dataset": [{"name": "/a", "software_version": ["CMSSW_10_2"]},
                                    {"name": "/b", "software_version": "CMSSW_9"}]})
    assert daemon.call("get_dataset", name="/a")["software_version"] == "CMSSW_10_2"
    assert daemon.call("get_dataset", name="/b")["software_version"] == "CMSSW_9"
    assert daemon.inject_json({"dataset": [{"name": "/a", "software_version": "CMSSW_10_2"}]}) \
        == NOTHING
    refused(daemon, {"dataset": [{"name": "/a", "software_version": ["v1", "v2"]}]},
            "dataset /a", "software_version")


# -------------------------------------------------------- block totals
def test_block_totals_must_match_its_files(daemon):
    seed(daemon)
    refused(daemon, dataset_doc("/new/ds", block_doc("b", ("/f/1", 10), ("/f/2", 20), size=31)),
            "block /new/ds#b", "size", "31", "30")
    refused(daemon, dataset_doc("/new/ds", block_doc("b", ("/f/1", 10), num_files=3)),
            "block /new/ds#b", "num_files", "3", "1")
    # given for an existing block, the totals are those after the whole request
    refused(daemon, dataset_doc(DS, {"name": BLOCK, "size": 165438 + 5, "num_files": 2,
                                     "files": [{"name": "/f/3", "size": 5, "site": T2}]}),
            "num_files", "2", "3")
    refused(daemon, dataset_doc(DS, {"name": BLOCK, "size": 1}), "size", "1", "165438")
    result = daemon.inject_json(dataset_doc(DS, {
        "name": BLOCK, "size": 165438 + 5, "num_files": 3,
        "files": [{"name": "/f/3", "size": 5, "site": T2}]}))
    assert result["created"] == {"files": 1}
    block = block_of(daemon)
    assert (block["size"], block["num_files"]) == (165443, 3)
    # an empty new block with zero totals is fine
    daemon.inject_json(dataset_doc("/new/ds", {"name": "empty", "size": 0, "num_files": 0}))
    assert block_of(daemon, "/new/ds#empty")["files"] == []


# --------------------------------------------------------- all or nothing
def test_one_bad_object_anywhere_changes_nothing(daemon):
    seed(daemon)
    good = {"site": [{"name": "T1_NEW", "backend": "davs://t1"}],
            "group": [{"name": "ops"}],
            "dataset": [{"name": "/new/ds", "blocks": [
                {"name": "b1", "files": [{"name": "/n/1", "size": 1}, {"name": "/n/2", "size": 2}]},
                {"name": "b2", "files": [{"name": "/n/3", "size": 3}]}]}],
            "datasetreplica": [{"site": "T1_NEW", "dataset": "/new/ds", "group": "ops",
                                "blockreplicas": [{"block": "b1"}]},
                               {"site": T3, "dataset": DS, "blockreplicas": [{"block": BLOCK}]}]}
    cases = {
        "unknown site in a dataset replica": (
            lambda d: d["datasetreplica"].append({"site": "T9_NOWHERE", "dataset": "/new/ds"}),
            ["dataset replica T9_NOWHERE:/new/ds", "unknown site 'T9_NOWHERE'"]),
        "negative file size": (
            lambda d: d["dataset"][0]["blocks"][1]["files"].append({"name": "/n/bad", "size": -1}),
            ["file /n/bad", "File.size", "-1"]),
        "bad site status": (
            lambda d: d["site"].append({"name": "T1_BAD", "status": "online"}),
            ["site T1_BAD", "Site.status", "'online'"]),
        "block without name": (
            lambda d: d["dataset"][0]["blocks"].append({"files": []}),
            ["dataset[0].blocks[2]", "missing 'name'"]),
        "unknown key in a file": (
            lambda d: d["dataset"][0]["blocks"][0]["files"].append(
                {"name": "/n/x", "size": 1, "checksum": "abc"}),
            ["file /n/x", "unknown key 'checksum'"]),
        "unknown key in a site": (
            lambda d: d["site"][0].update(stauts="ready"),
            ["site T1_NEW", "unknown key 'stauts'"]),
        "unknown block in a block replica": (
            lambda d: d["datasetreplica"][0]["blockreplicas"].append({"block": "b9"}),
            ["block replica T1_NEW:/new/ds#b9", "unknown block 'b9'"]),
        "unknown group in a block replica": (
            lambda d: d["datasetreplica"][0]["blockreplicas"].append({"block": "b2",
                                                                      "group": "nogroup"}),
            ["block replica T1_NEW:/new/ds#b2", "unknown group 'nogroup'"]),
        "unknown file in a block replica's files": (
            lambda d: d["datasetreplica"][0]["blockreplicas"].append({"block": "b2",
                                                                      "files": ["/n/1"]}),
            ["block replica T1_NEW:/new/ds#b2", "'/n/1'", "not in block /new/ds#b2"]),
        "file already in another block": (
            lambda d: d["dataset"][0]["blocks"][1]["files"].append({"name": LFN1, "size": 57495}),
            [f"file {LFN1}", f"belongs to block {FULL}"]),
        "bad checksum": (
            lambda d: d["dataset"][0]["blocks"][0]["files"][0].update(adler32="xyz"),
            ["file /n/1", "adler32"]),
        "bad checksum on a later file of the block (0x is no hex digit)": (
            lambda d: d["dataset"][0]["blocks"][0]["files"][-1].update(adler32="0x12"),
            ["adler32", "hexadecimal"]),
        "control character in an LFN": (
            lambda d: d["dataset"][0]["blocks"][0]["files"].append({"name": "/n/\x01", "size": 1}),
            ["free of control characters"]),
        "file without a size": (
            lambda d: d["dataset"][0]["blocks"][1]["files"].append({"name": "/n/nosize"}),
            ["file /n/nosize", "needs a size"]),
        "unknown section": (
            lambda d: d.update(datasets=[]), ["unknown section 'datasets'"]),
        "section not a list": (
            lambda d: d.update(group={"name": "x"}), ["group must be a list"]),
        "dataset name not a string": (
            lambda d: d["dataset"].append({"name": 7}), ["dataset[1]", "non-empty string"]),
        "file name a list": (
            lambda d: d["dataset"][0]["blocks"][0]["files"].append({"name": ["/n/x"], "size": 1}),
            ["dataset[0].blocks[0].files[2]", "non-empty string"]),
        "file name an object": (
            lambda d: d["dataset"][0]["blocks"][1]["files"].insert(0, {"name": {}, "size": 1}),
            ["dataset[0].blocks[1].files[0]", "non-empty string"]),
        "file not an object": (
            lambda d: d["dataset"][0]["blocks"][1]["files"].append(["/n/x", 1]),
            ["dataset[0].blocks[1].files[1]", "must be an object"]),
    }
    for case, (spoil, fragments) in cases.items():
        document = _copy(good)
        spoil(document)
        try:
            refused(daemon, document, *fragments)
        except AssertionError as exc:
            raise AssertionError(f"case {case!r}: {exc}") from None
    # the same document without the bad object is accepted as a whole
    result = daemon.inject_json(good)
    assert result["created"] == {"sites": 1, "groups": 1, "datasets": 1, "blocks": 2, "files": 3,
                                 "datasetreplicas": 2, "blockreplicas": 2}
    # a refused request is not persisted either
    before = snapshot(daemon)
    refused(daemon, {"site": [{"name": "T1_OTHER"}, {"name": "T1_BAD", "status": "x"}]})
    daemon.kill9()
    daemon.start()
    assert snapshot(daemon) == before


def _copy(document):
    return json.loads(json.dumps(document))


# --------------------------------------------------- files of replicated blocks
def test_files_added_to_a_replicated_block(daemon):
    seed(daemon)
    daemon.inject_json({"site": [{"name": "T1_NOREP"}],
                        "datasetreplica": [{"site": T3, "dataset": DS,
                                            "blockreplicas": [{"block": BLOCK}]}]})
    error = refused(daemon, dataset_doc(DS, block_doc(BLOCK, ("/f/new", 10))),
                    "file /f/new", "site", T2, T3)
    assert error.count("file /f/new") == 1, "the object is named once"
    refused(daemon, dataset_doc(DS, block_doc(BLOCK, ("/f/new", 10, {"site": "T1_NOREP"}))),
            "file /f/new", "no replica at site T1_NOREP")
    refused(daemon, dataset_doc(DS, block_doc(BLOCK, ("/f/new", 10, {"site": "T9_UNKNOWN"}))),
            "file /f/new", "unknown site 'T9_UNKNOWN'")

    result = daemon.inject_json(dataset_doc(DS, block_doc(BLOCK, ("/f/new", 10, {"site": T3}))))
    assert result == {"created": {"files": 1}, "updated": {"blocks": 1, "blockreplicas": 2},
                      "deleted": {}}
    block = block_of(daemon)
    assert (block["size"], block["num_files"]) == (165448, 3)
    at_t3 = replica_at(block, T3)
    assert at_t3["complete"] is True and at_t3["size"] == 165448 and "files" not in at_t3
    at_t2 = replica_at(block, T2)
    assert at_t2["complete"] is False and at_t2["size"] == 165438
    assert at_t2["files"] == [LFN1, LFN2]

    # a second new file named at T2 joins T2's list; T3 (complete) loses completeness
    daemon.inject_json(dataset_doc(DS, block_doc(BLOCK, ("/f/newer", 5, {"site": T2}))))
    block = block_of(daemon)
    assert replica_at(block, T2)["files"] == ["/f/newer", LFN1, LFN2]
    assert replica_at(block, T3)["files"] == ["/f/new", LFN1, LFN2]
    assert replica_at(block, T3)["size"] == 165448
    assert daemon.restart() and block_of(daemon) == block


def test_file_at_a_site_without_a_block_replica_creates_one(daemon):
    seed(daemon)
    daemon.inject_json({**dataset_doc(DS, block_doc("b2", ("/b2/1", 100))),
                        "datasetreplica": [{"site": T3, "dataset": DS, "growing": False,
                                            "blockreplicas": [{"block": BLOCK}]},
                                           {"site": T2, "dataset": DS,
                                            "blockreplicas": [{"block": "b2"}]}]})
    assert [r["site"] for r in block_of(daemon, f"{DS}#b2")["replicas"]] == [T2]
    result = daemon.inject_json(dataset_doc(DS, block_doc("b2", ("/b2/2", 7, {"site": T3}))))
    assert result["created"] == {"files": 1, "blockreplicas": 1}
    block = block_of(daemon, f"{DS}#b2")
    assert replica_at(block, T3) == {
        "block": "b2", "site": T3, "group": None, "is_custodial": False, "size": 7,
        "last_update": replica_at(block, T3)["last_update"], "complete": False,
        "files": ["/b2/2"]}
    assert replica_at(block, T2)["files"] == ["/b2/1"] and replica_at(block, T2)["size"] == 100


# ------------------------------------------------------------- replicas
def test_block_replica_files_and_group_defaults(daemon):
    seed(daemon)
    daemon.inject_json({"group": [{"name": "AnalysisOps"}, {"name": "DataOps"}],
                        **dataset_doc(DS, block_doc("b2", ("/b2/1", 1), ("/b2/2", 2)),
                                      block_doc("b3", ("/b3/1", 3)))})
    result = daemon.inject_json({"datasetreplica": [
        {"site": T3, "dataset": DS, "group": "AnalysisOps", "blockreplicas": [
            {"block": BLOCK, "files": [LFN2]},
            {"block": "b2", "group": "DataOps", "files": ["/b2/1", "/b2/2"]},
            {"block": "b3", "is_custodial": True}]}]})
    assert result["created"] == {"datasetreplicas": 1, "blockreplicas": 3}
    dataset = daemon.call("get_dataset", name=DS)
    at_t3 = replica_at(dataset, T3)
    assert at_t3["group"] == "AnalysisOps"
    views = {r["block"]: r for r in at_t3["blockreplicas"]}
    assert (views[BLOCK]["group"], views[BLOCK]["complete"], views[BLOCK]["size"]) == (
        "AnalysisOps", False, 107943)
    assert replica_at(block_of(daemon), T3)["files"] == [LFN2]
    # listing every file of the block is the same as a complete replica
    assert (views["b2"]["group"], views["b2"]["complete"], views["b2"]["size"]) == (
        "DataOps", True, 3)
    assert (views["b3"]["complete"], views["b3"]["is_custodial"], views["b3"]["size"]) == (
        True, True, 3)
    # the dataset replica without a group: its block replicas belong to the null group
    daemon.inject_json({"datasetreplica": [{"site": T2, "dataset": DS,
                                            "blockreplicas": [{"block": "b2"}]}]})
    assert replica_at(block_of(daemon, f"{DS}#b2"), T2)["group"] is None
    assert replica_at(daemon.call("get_dataset", name=DS), T2)["group"] is None

    # a replica's size, when given, must agree with its files after the request
    refused(daemon, {"datasetreplica": [{"site": T3, "dataset": DS, "blockreplicas": [
        {"block": BLOCK, "size": 165438}]}]}, "size", "165438", "107943")
    # changing its group is an update that keeps what it holds (test_injection_fidelity.py)
    result = daemon.inject_json({"datasetreplica": [{"site": T3, "dataset": DS, "blockreplicas": [
        {"block": BLOCK, "group": "DataOps", "size": 107943}]}]})
    assert result == {"created": {}, "updated": {"blockreplicas": 1}, "deleted": {}}
    replica = replica_at(block_of(daemon), T3)
    assert (replica["complete"], replica["group"], replica["size"]) == (False, "DataOps", 107943)


def test_growing_defaults_and_new_blocks_follow_growing_replicas(daemon):
    seed(daemon)
    daemon.inject_json({"site": [{"name": "T1_TAPE", "storage_type": "mss"}],
                        "group": [{"name": "ops"}],
                        "datasetreplica": [{"site": T3, "dataset": DS, "group": "ops",
                                            "blockreplicas": [{"block": BLOCK}]},
                                           {"site": "T1_TAPE", "dataset": DS, "growing": False,
                                            "blockreplicas": [{"block": BLOCK}]}]})
    replicas = {r["site"]: r for r in daemon.call("get_dataset", name=DS)["replicas"]}
    assert {s: r["growing"] for s, r in replicas.items()} == {
        T2: False, T3: True, "T1_TAPE": False}
    daemon.inject_json({"dataset": [{"name": "/other", "blocks": [{"name": "x"}]}],
                        "datasetreplica": [{"site": T3, "dataset": "/other"}]})
    assert replica_at(daemon.call("get_dataset", name="/other"), T3)["growing"] is False

    # a new block: an empty block replica at the growing replica (T3) only, in its group;
    # its files need no site since nothing but those empty replicas holds the block yet
    result = daemon.inject_json(dataset_doc(DS, block_doc("b2", ("/b2/1", 11), ("/b2/2", 22))))
    assert result["created"] == {"blocks": 1, "files": 2, "blockreplicas": 1}
    block = block_of(daemon, f"{DS}#b2")
    assert [r["site"] for r in block["replicas"]] == [T3]
    assert replica_at(block, T3) == {
        "block": "b2", "site": T3, "group": "ops", "is_custodial": False, "size": 0,
        "last_update": replica_at(block, T3)["last_update"], "complete": False, "files": []}
    # once the block exists with that replica, a further file must name its site
    refused(daemon, dataset_doc(DS, block_doc("b2", ("/b2/3", 33))), "file /b2/3", "site", T3)
    daemon.inject_json(dataset_doc(DS, block_doc("b2", ("/b2/3", 33, {"site": T3}))))
    assert replica_at(block_of(daemon, f"{DS}#b2"), T3)["files"] == ["/b2/3"]
    # the transfer completes: the replica is declared complete
    daemon.inject_json({"datasetreplica": [{"site": T3, "dataset": DS,
                                            "blockreplicas": [{"block": "b2",
                                                               "complete": True}]}]})
    assert replica_at(block_of(daemon, f"{DS}#b2"), T3)["complete"] is True
    # switching growing off stops it
    daemon.inject_json({"datasetreplica": [{"site": T3, "dataset": DS, "growing": False}]})
    daemon.inject_json(dataset_doc(DS, {"name": "b3"}))
    assert block_of(daemon, f"{DS}#b3")["replicas"] == []


def test_names_that_do_not_exist_are_errors(daemon):
    seed(daemon)
    refused(daemon, {"datasetreplica": [{"site": T3, "dataset": "/no/such"}]},
            "unknown dataset '/no/such'")
    refused(daemon, {"datasetreplica": [{"site": "T9_NO", "dataset": DS}]},
            "unknown site 'T9_NO'")
    refused(daemon, {"datasetreplica": [{"site": T3, "dataset": DS, "group": "nogroup"}]},
            "unknown group 'nogroup'")
    refused(daemon, {"datasetreplica": [{"site": T3, "dataset": DS,
                                         "blockreplicas": [{"block": "nob"}]}]},
            "unknown block 'nob'")
    refused(daemon, {"datasetreplica": [{"site": T2, "dataset": DS, "blockreplicas": [
        {"block": BLOCK, "group": "nogroup"}]}]}, "unknown group 'nogroup'")
    refused(daemon, {"datasetreplica": [{"dataset": DS}]}, "missing 'site'")
    refused(daemon, {"datasetreplica": [{"site": T3}]}, "missing 'dataset'")
    refused(daemon, {"datasetreplica": [{"site": T3, "dataset": DS,
                                         "blockreplicas": [{"files": []}]}]}, "missing 'block'")
    # the group and site sections create; only references must exist
    assert daemon.inject_json({"group": [{"name": "ops"}]})["created"] == {"groups": 1}


# ------------------------------------------------------------------ PFN
def test_lfn_to_pfn_is_backend_plus_lfn(daemon):
    seed(daemon)
    assert daemon.call("lfn_to_pfn", site=T2, lfn=LFN1) == {
        "site": T2, "lfn": LFN1, "pfn": T2_BACKEND + LFN1}
    assert daemon.call("lfn_to_pfn", site=T3, lfn=LFN2)["pfn"] == (
        "srm://t3-storage.xyz.edu:8443/srm/v2/server?SFN=/mnt/hadoop/cms" + LFN2)
    with pytest.raises(RemoteError) as error:
        daemon.call("lfn_to_pfn", site="T9_NO", lfn=LFN1)
    assert error.value.code == "not_found" and "T9_NO" in error.value.message
