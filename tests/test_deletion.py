"""Deletion (`dynamo-inject --delete`, SPEC §2 cascades and §3) on a real dynamod."""

import json
import pytest

from dynamoclient.connection import RemoteError
from support.seed import (BLOCK, DS, FULL, LFN1, LFN2, NOTHING, T2, T3, block_doc, block_of,
                          dataset_doc, refused, replica_at, seed)
from support.views import snapshot


def two_sites_two_blocks(daemon):
    """The seed plus a second block b2 (files /b2/1, /b2/2) and a replica at T3 in group ops.

    T2 holds BLOCK (complete); T3 holds BLOCK (complete) and b2 (only /b2/1).
    """
    seed(daemon)
    daemon.inject_json({"group": [{"name": "ops"}],
                        **dataset_doc(DS, block_doc("b2", ("/b2/1", 100), ("/b2/2", 200))),
                        "datasetreplica": [{"site": T3, "dataset": DS, "group": "ops",
                                            "blockreplicas": [{"block": BLOCK},
                                                              {"block": "b2",
                                                               "files": ["/b2/1"]}]}]})


def delete(daemon, document, *args) -> dict:
    return daemon.inject_json(document, "--delete", *args)


def sound(daemon):
    """The consistency rules of §2, seen through the queries."""
    for d in daemon.call("list_datasets")["datasets"]:
        dataset = daemon.call("get_dataset", name=d["name"])
        for b in dataset["blocks"]:
            block = block_of(daemon, f"{d['name']}#{b['name']}")
            assert block["size"] == sum(f["size"] for f in block["files"])
            assert block["num_files"] == len(block["files"])
            sizes = {f["name"]: f["size"] for f in block["files"]}
            for replica in block["replicas"]:
                held = sizes if replica["complete"] else replica["files"]
                assert replica["size"] == sum(sizes[f] for f in held)
                owner = replica_at(dataset, replica["site"])
                assert b["name"] in [r["block"] for r in owner["blockreplicas"]]


def test_delete_site_cascades_to_its_replicas(daemon):
    two_sites_two_blocks(daemon)
    assert delete(daemon, {"site": [{"name": T3}]}) == {
        "created": {}, "updated": {},
        "deleted": {"sites": 1, "datasetreplicas": 1, "blockreplicas": 2}}
    assert [s["name"] for s in daemon.call("list_sites")["sites"]] == [T2]
    dataset = daemon.call("get_dataset", name=DS)
    assert [r["site"] for r in dataset["replicas"]] == [T2]
    assert dataset["num_blocks"] == 2 and dataset["num_files"] == 4
    assert block_of(daemon, f"{DS}#b2")["replicas"] == []
    with pytest.raises(RemoteError):
        daemon.call("list_site_replicas", site=T3)
    sound(daemon)
    before = snapshot(daemon)
    daemon.restart()
    assert snapshot(daemon) == before


def test_delete_dataset_cascades_to_blocks_files_and_replicas(daemon):
    two_sites_two_blocks(daemon)
    daemon.inject_json({"dataset": [{"name": "/keep", "blocks": [{"name": "k", "files": [
        {"name": "/keep/1", "size": 1}]}]}]})
    assert delete(daemon, {"dataset": [{"name": DS}]}) == {
        "created": {}, "updated": {},
        "deleted": {"datasets": 1, "blocks": 2, "files": 4, "datasetreplicas": 2,
                    "blockreplicas": 3}}
    assert daemon.call("status")["inventory"] == {
        "sites": 2, "groups": 1, "datasets": 1, "blocks": 1, "files": 1,
        "datasetreplicas": 0, "blockreplicas": 0}
    for call, params in [("get_dataset", {"name": DS}), ("get_block", {"name": FULL})]:
        with pytest.raises(RemoteError) as error:
            daemon.call(call, **params)
        assert error.value.code == "not_found"
    assert daemon.call("list_site_replicas", site=T2)["replicas"] == []
    # its files are gone for good: the same LFN can now go to another block
    daemon.inject_json(dataset_doc("/keep", block_doc("k", (LFN1, 5))))
    assert block_of(daemon, "/keep#k")["num_files"] == 2
    daemon.restart()
    assert daemon.call("status")["inventory"]["files"] == 2


def test_delete_block_and_then_the_last_block_with_a_replica(daemon):
    two_sites_two_blocks(daemon)
    assert delete(daemon, dataset_doc(DS, {"name": "b2"})) == {
        "created": {}, "updated": {},
        "deleted": {"blocks": 1, "files": 2, "blockreplicas": 1}}
    dataset = daemon.call("get_dataset", name=DS)
    assert [b["name"] for b in dataset["blocks"]] == [BLOCK]
    assert (dataset["size"], dataset["num_files"]) == (165438, 2)
    assert [r["block"] for r in replica_at(dataset, T3)["blockreplicas"]] == [BLOCK]
    # BLOCK is the last block replica of both dataset replicas: they go with it
    assert delete(daemon, dataset_doc(DS, {"name": BLOCK}))["deleted"] == {
        "blocks": 1, "files": 2, "blockreplicas": 2, "datasetreplicas": 2}
    dataset = daemon.call("get_dataset", name=DS)
    assert dataset["blocks"] == [] and dataset["replicas"] == []
    sound(daemon)


def test_delete_files_adjusts_block_and_replicas(daemon):
    two_sites_two_blocks(daemon)
    # /b2/2 is not at T3: T3's incomplete replica now holds every file, so it is complete
    result = delete(daemon, dataset_doc(DS, {"name": "b2", "files": [{"name": "/b2/2"}]}))
    assert result == {"created": {}, "updated": {"blocks": 1, "blockreplicas": 1},
                      "deleted": {"files": 1}}
    block = block_of(daemon, f"{DS}#b2")
    assert (block["size"], block["num_files"]) == (100, 1)
    assert replica_at(block, T3) | {"last_update": 0} == {
        "block": "b2", "site": T3, "group": "ops", "is_custodial": False, "size": 100,
        "last_update": 0, "complete": True}

    # a file of a block with complete replicas: their sizes follow the block's
    delete(daemon, dataset_doc(DS, {"name": BLOCK, "files": [{"name": LFN1}]}))
    block = block_of(daemon)
    assert (block["size"], block["num_files"]) == (107943, 1)
    assert [f["name"] for f in block["files"]] == [LFN2]
    for site in (T2, T3):
        assert replica_at(block, site)["size"] == 107943
        assert replica_at(block, site)["complete"] is True
    sound(daemon)
    before = snapshot(daemon)
    daemon.kill9()
    daemon.start()
    assert snapshot(daemon) == before


def test_delete_file_held_by_an_incomplete_replica(daemon):
    seed(daemon)
    daemon.inject_json({"datasetreplica": [{"site": T3, "dataset": DS, "blockreplicas": [
        {"block": BLOCK, "files": [LFN1]}]}]})
    delete(daemon, dataset_doc(DS, {"name": BLOCK, "files": [{"name": LFN1}]}))
    block = block_of(daemon)
    assert replica_at(block, T3)["size"] == 0 and replica_at(block, T3)["complete"] is False
    assert replica_at(block, T3)["files"] == []
    assert replica_at(block, T2)["size"] == 107943
    sound(daemon)


def test_delete_dataset_replica_and_block_replicas(daemon):
    two_sites_two_blocks(daemon)
    assert delete(daemon, {"datasetreplica": [{"site": T3, "dataset": DS}]}) == {
        "created": {}, "updated": {}, "deleted": {"datasetreplicas": 1, "blockreplicas": 2}}
    assert [r["site"] for r in daemon.call("get_dataset", name=DS)["replicas"]] == [T2]
    assert daemon.call("list_site_replicas", site=T3)["replicas"] == []

    two_sites_back = {"datasetreplica": [{"site": T3, "dataset": DS, "blockreplicas": [
        {"block": BLOCK}, {"block": "b2"}]}]}
    daemon.inject_json(two_sites_back)
    # one of two block replicas: the dataset replica stays
    assert delete(daemon, {"datasetreplica": [{"site": T3, "dataset": DS, "blockreplicas": [
        {"block": "b2"}]}]})["deleted"] == {"blockreplicas": 1}
    assert [r["block"] for r in replica_at(daemon.call("get_dataset", name=DS), T3)[
        "blockreplicas"]] == [BLOCK]
    assert [r["site"] for r in block_of(daemon, f"{DS}#b2")["replicas"]] == []
    # the last one: the dataset replica goes with it
    assert delete(daemon, {"datasetreplica": [{"site": T3, "dataset": DS, "blockreplicas": [
        {"block": BLOCK}]}]})["deleted"] == {"blockreplicas": 1, "datasetreplicas": 1}
    assert [r["site"] for r in daemon.call("get_dataset", name=DS)["replicas"]] == [T2]
    sound(daemon)


def test_delete_group_hands_its_replicas_to_the_null_group(daemon):
    two_sites_two_blocks(daemon)
    daemon.inject_json({"group": [{"name": "other"}],
                        "datasetreplica": [{"site": T2, "dataset": DS, "blockreplicas": [
                            {"block": BLOCK, "group": "ops"}, {"block": "b2", "group": "other"}]}]})
    assert delete(daemon, {"group": [{"name": "ops"}]}) == {
        "created": {}, "updated": {"datasetreplicas": 1, "blockreplicas": 3},
        "deleted": {"groups": 1}}
    assert [g["name"] for g in daemon.call("list_groups")["groups"]] == ["other"]
    dataset = daemon.call("get_dataset", name=DS)
    owners = {(r["site"], b["block"]): b["group"]
              for r in dataset["replicas"] for b in r["blockreplicas"]}
    assert owners == {(T2, BLOCK): None, (T2, "b2"): "other", (T3, BLOCK): None,
                      (T3, "b2"): None}
    assert replica_at(dataset, T3)["group"] is None
    daemon.restart()
    assert daemon.call("get_dataset", name=DS) == dataset
    # the name is free again; a new group of that name is a new group
    assert daemon.inject_json({"group": [{"name": "ops"}]})["created"] == {"groups": 1}
    assert {g["name"]: g["id"] for g in daemon.call("list_groups")["groups"]}["ops"] == 3


def test_deleting_what_does_not_exist_changes_nothing(daemon):
    two_sites_two_blocks(daemon)
    cases = [
        ({"site": [{"name": "T9_NO"}]}, ["unknown site 'T9_NO'"]),
        ({"group": [{"name": "nogroup"}]}, ["unknown group 'nogroup'"]),
        ({"dataset": [{"name": "/no/such"}]}, ["unknown dataset '/no/such'"]),
        (dataset_doc(DS, {"name": "b9"}), ["unknown block 'b9'"]),
        (dataset_doc(DS, {"name": BLOCK, "files": [{"name": "/b2/1"}]}),
         ["file /b2/1", f"not in block {FULL}"]),
        ({"datasetreplica": [{"site": "T9_NO", "dataset": DS}]}, ["unknown site 'T9_NO'"]),
        ({"site": [{"name": "T1_NEW"}], "datasetreplica": [{"site": T2, "dataset": DS,
                                                             "blockreplicas": [{"block": "b2"}]}]},
         ["block replica T2_US_XYZ:" + DS + "#b2", "no replica at T2_US_XYZ"]),
        ({"group": [{"name": None}]}, ["group name must be a non-empty string"]),
        ({"group": [{"name": ""}]}, ["group name must be a non-empty string"]),
        ({"site": [{"name": T2, "status": "ready", "nonsense": 1}]}, ["unknown key 'nonsense'"]),
    ]
    for document, fragments in cases:
        refused(daemon, document, *fragments, args=["--delete"])
    # a valid deletion next to an unknown name: nothing is deleted
    refused(daemon, {"datasetreplica": [{"site": T3, "dataset": DS}],
                     "dataset": [{"name": DS}], "site": [{"name": T2}, {"name": "T9_NO"}]},
            "site T9_NO", "unknown site", args=["--delete"])
    # the null group cannot be deleted (nor changed) under any spelling
    refused(daemon, {"group": [{"name": None}]}, "group name", args=["--delete"])
    refused(daemon, {"group": [{"name": None, "olevel": "Dataset"}]}, "group name")
    # the same object twice in one deletion is an error too (it no longer exists)
    refused(daemon, {"site": [{"name": T3}, {"name": T3}]}, "unknown site 'T3_US_XYZ'",
            args=["--delete"])


def test_delete_dry_run_reports_and_changes_nothing(daemon):
    two_sites_two_blocks(daemon)
    before = snapshot(daemon)
    result = delete(daemon, {"dataset": [{"name": DS}]}, "--dry-run")
    assert result["deleted"] == {"datasets": 1, "blocks": 2, "files": 4, "datasetreplicas": 2,
                                 "blockreplicas": 3}
    assert snapshot(daemon) == before
    assert daemon.inject_json({"site": [{"name": "T1_X"}]}, "--dry-run") == {
        "created": {"sites": 1}, "updated": {}, "deleted": {}}
    assert snapshot(daemon) == before
    daemon.restart()
    assert snapshot(daemon) == before
    # a deletion then an injection of the same object: a new object with a new id
    delete(daemon, {"site": [{"name": T3}]})
    assert daemon.inject_json({"site": [{"name": T3}]}) == {
        "created": {"sites": 1}, "updated": {}, "deleted": {}}
    assert daemon.call("list_sites", pattern=T3)["sites"][0]["id"] == 3
    assert delete(daemon, {}) == NOTHING


COUNT_OBJECTS = ("import gc, collections, json\ngc.unfreeze()\n"
                 "print(json.dumps(collections.Counter(type(o).__name__ "
                 "for o in gc.get_objects())))\n")


def test_deleted_objects_leave_memory(daemon, tmp_path):
    """Deleted datasets and blocks are freed: neither the undo log of a committed change,
    nor the file cache, nor the cycles between a dataset and its blocks keep them (a
    full collection runs once enough objects were deleted: collector.dropped)."""
    counter = tmp_path / "count.py"
    counter.write_text(COUNT_OBJECTS)

    def doc(n):
        return {"dataset": [{"name": f"/Gone/{n}/RAW", "blocks": [
            {"name": f"b{b}", "files": [{"name": f"/store/gone/{n}/{b}", "size": 1}]}
            for b in range(500)]}]}

    with daemon.client() as client:
        for n in range(60):
            client.call("inject", data=doc(n))
            client.call("delete", data={"dataset": [{"name": f"/Gone/{n}/RAW"}]})
    alive = json.loads(daemon.dynamo(counter).stdout)
    assert (alive.get("Dataset", 0), alive.get("Block", 0)) == (0, 0)
