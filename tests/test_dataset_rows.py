"""Datasets and dataset replicas as rows of tables: views that read the same after an
undo, deleted rows that are in no list (nor found by name), lists that undo back into
their order, and the memory each takes."""

import gc
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynamod.inventory.inventory import Inventory
from support.documents import SITES, apply, state

DATASETS = ["/A/B/RAW", "/C/D/AOD", "/E/F/USER"]


def applied(inventory, kind, document):
    changes = apply(inventory, kind, document)
    assert changes is not None, document
    return changes


def traced(work) -> int:
    """The bytes that `work()` leaves allocated (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        work()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def replicated() -> Inventory:
    """Three datasets of one block, each with a replica at each of three sites."""
    inventory = Inventory()
    applied(inventory, "inject", {
        "site": [{"name": s} for s in SITES],
        "group": [{"name": "G1"}],
        "dataset": [{"name": d, "blocks": [{"name": "b1"}]} for d in DATASETS],
        "datasetreplica": [{"dataset": d, "site": s, "group": "G1",
                            "blockreplicas": [{"block": "b1"}]}
                           for d in DATASETS for s in SITES]})
    return inventory


def test_an_undone_deletion_puts_each_dataset_replica_back_in_its_place():
    """Dataset replicas first, last and in the middle of their dataset's and their
    site's lists are deleted, one request each, then every request is undone, newest
    first: each step restores both lists' order exactly."""
    inventory = replicated()
    history = []
    for dataset, site in [("/C/D/AOD", "S2"), ("/A/B/RAW", "S1"), ("/E/F/USER", "S3"),
                          ("/A/B/RAW", "S3"), ("/C/D/AOD", "S1"), ("/C/D/AOD", "S3")]:
        before = state(inventory)
        history.append((before, applied(inventory, "delete", {
            "datasetreplica": [{"dataset": dataset, "site": site}]})))
        assert inventory.problems() == []
    assert [r.site.name for r in inventory.datasets["/C/D/AOD"].replicas] == []
    assert [r.dataset.name for r in inventory.sites["S1"].dataset_replicas] == ["/E/F/USER"]
    for before, changes in reversed(history):
        changes.rollback()
        assert state(inventory) == before
        assert inventory.problems() == []
    assert [r.site.name for r in inventory.datasets["/C/D/AOD"].replicas] == SITES
    assert [r.dataset.name for r in inventory.sites["S2"].dataset_replicas] == DATASETS


def test_a_deleted_dataset_replica_is_in_no_list_and_its_view_reads_it_back_after_undo():
    inventory = replicated()
    dataset, site = inventory.datasets["/C/D/AOD"], inventory.sites["S2"]
    replica = dataset.find_replica(site)
    changes = applied(inventory, "delete", {"datasetreplica": [{"dataset": dataset.name,
                                                              "site": "S2"}]})
    # the dead row still reads as the replica it was
    assert (replica.dataset, replica.site, replica.group.name) == (dataset, site, "G1")
    assert replica not in site.dataset_replicas and replica not in dataset.replicas
    assert len(site.dataset_replicas) == 2 and len(site.dataset_replicas()) == 2
    assert dataset.find_replica(site) is None and site.find_dataset_replica(dataset) is None
    assert len(replica.block_replicas) == 0
    changes.rollback()
    assert replica.dataset == dataset and replica in site.dataset_replicas
    assert dataset.find_replica(site) == replica and replica in dataset.replicas
    assert [r.block.name for r in replica.block_replicas] == ["b1"]
    assert repr(replica) == "DatasetReplica('/C/D/AOD','S2',True,'G1')"


def test_an_undone_creation_leaves_no_trace_and_a_view_compares_by_row():
    inventory = replicated()
    site = inventory.sites["S1"]
    before = state(inventory)
    changes = applied(inventory, "inject", {
        "dataset": [{"name": "/G/H/RAW", "blocks": [{"name": "b1"}]}],
        "datasetreplica": [{"dataset": "/G/H/RAW", "site": "S1",
                            "blockreplicas": [{"block": "b1"}]}]})
    created = inventory.datasets["/G/H/RAW"].find_replica(site)
    assert created in site.dataset_replicas and len(site.dataset_replicas) == 4
    # a view is made on each access: equal to another view of the same row, not the same
    assert created == site.find_dataset_replica("/G/H/RAW")
    assert created is not site.find_dataset_replica("/G/H/RAW")
    assert hash(created) == hash(site.find_dataset_replica("/G/H/RAW"))
    changes.rollback()
    assert state(inventory) == before and inventory.problems() == []
    assert created not in site.dataset_replicas and len(site.dataset_replicas) == 3
    assert inventory.counts()["datasetreplicas"] == 9


def test_a_dataset_replica_takes_few_bytes():
    """10,000 dataset replicas (each a row of numbers, no object) take at most 80 traced
    bytes each (as objects, with a set at their site and a tuple in their dataset's
    replicas, they took 243 at medium scale)."""
    inventory = Inventory()
    sites = [f"T2_S{i}" for i in range(10)]
    datasets = [f"/D{i}/R/RAW" for i in range(1000)]
    applied(inventory, "inject", {"site": [{"name": s} for s in sites],
                                "dataset": [{"name": d} for d in datasets]}).release()
    grown = traced(lambda: applied(inventory, "inject", {"datasetreplica": [
        {"dataset": d, "site": s} for d in datasets for s in sites]}).release())
    assert inventory.counts()["datasetreplicas"] == 10_000
    assert len(inventory.sites["T2_S3"].dataset_replicas) == 1000
    assert grown / 10_000 <= 80, grown / 10_000


def test_datasets_by_name_follow_creations_deletions_and_undos():
    inventory = replicated()
    datasets = inventory.datasets
    assert list(datasets) == DATASETS and len(datasets) == 3
    raw = datasets["/C/D/AOD"]
    changes = applied(inventory, "delete", {"dataset": [{"name": "/C/D/AOD"}]})
    assert "/C/D/AOD" not in datasets and datasets.get("/C/D/AOD") is None
    assert list(datasets) == ["/A/B/RAW", "/E/F/USER"] and len(datasets) == 2
    # the dead row still reads as the dataset it was, with no blocks nor replicas left
    assert (raw.name, raw.id, len(raw.blocks), len(raw.replicas)) == ("/C/D/AOD", 2, 0, 0)
    created = applied(inventory, "inject", {"dataset": [{"name": "/B/B/RAW"}]})
    assert list(datasets) == ["/A/B/RAW", "/E/F/USER", "/B/B/RAW"]
    assert [d.name for d in datasets.values()] == list(datasets)
    assert dict(datasets.items()) == {name: datasets[name] for name in datasets}
    created.rollback()
    changes.rollback()
    assert list(datasets) == DATASETS and datasets["/C/D/AOD"] == raw
    assert [r.site.name for r in raw.replicas] == SITES and len(raw.blocks) == 1
    assert "/B/B/RAW" not in datasets and inventory.problems() == []
    assert repr(datasets).startswith("{'/A/B/RAW': Dataset('/A/B/RAW',")
    for name in ("/A/B/RA", "/A/B/RAW/", "", None, 3):
        assert name not in datasets and datasets.get(name, "none") == "none"


# Enough names that the index by name grows, fills with freed slots and is rebuilt; some
# the start of others, some of one length.
MANY = [f"/P{i % 7}/R{i}/{tier}" for i in range(24) for tier in ("RAW", "RAW2")]
_NAMES = st.lists(st.sampled_from(MANY), min_size=1, max_size=12, unique=True)
_STEPS = st.lists(st.one_of(st.tuples(st.just("inject"), _NAMES, st.booleans()),
                            st.tuples(st.just("delete"), _NAMES, st.just(False)),
                            st.tuples(st.just("undo"), st.integers(1, 3), st.just(False))),
                  min_size=1, max_size=30)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_STEPS)
def test_every_live_dataset_and_no_other_is_found_by_name_after_changes_and_undos(steps):
    """Datasets created, deleted, refused half-way (the last one of an injection has a
    bad status: the ones before it are made, then undone) and undone, a few requests at
    a time: after each step, each name finds the live dataset of that name, or none."""
    inventory, live, history = Inventory(), set(), []
    for kind, names, refused in steps:
        if kind == "undo":
            for _ in range(min(names, len(history))):
                live, changes = history.pop()
                changes.rollback()
        else:
            # a deletion names the live datasets among those drawn, if any (the names
            # drawn alone each named one that was not: 2 to 8 of 100 deleted any, now
            # 11 to 18 do)
            if kind == "delete":
                names = [n for n in names if n in live] or names
            documents = [{"name": name} for name in names]
            if refused:
                documents[-1]["status"] = "nice"
            changes = apply(inventory, kind, {"dataset": documents})
            if changes is not None:
                history.append((set(live), changes))
                live = live | set(names) if kind == "inject" else live - set(names)
            else:
                assert refused or not live.issuperset(names)
        found = {name: inventory.datasets.get(name) for name in MANY}
        assert {name for name, dataset in found.items() if dataset is not None} == live
        assert all(found[name].name == name for name in live)
        assert sorted(inventory.datasets) == sorted(live) and len(inventory.datasets) == len(live)
        assert inventory.problems() == []


def test_a_changed_dataset_reads_back_and_an_undo_restores_its_fields():
    inventory = replicated()
    dataset = inventory.datasets["/A/B/RAW"]
    before = state(inventory)
    changes = applied(inventory, "inject", {"dataset": [{
        "name": "/A/B/RAW", "status": "VALID", "data_type": "test", "software_version": "V_1",
        "is_open": False}]})
    assert (dataset.status, dataset.data_type, dataset.software_version, dataset.is_open) == (
        "valid", "test", "V_1", False)
    assert inventory.datasets["/E/F/USER"].software_version is None
    changes.rollback()
    assert state(inventory) == before
    assert (dataset.status, dataset.data_type, dataset.software_version, dataset.is_open) == (
        "unknown", "unknown", None, True)


def test_a_dataset_takes_few_bytes():
    """4,000 datasets of 4 distinct versions (rows of numbers and a name in a buffer) take
    at most 120 traced bytes each (as objects, 288 here; 692 loaded at medium scale,
    each string of a row its own object)."""
    inventory = Inventory()
    document = {"dataset": [{"name": f"/Dataset{i:05d}/Run2018A-v1/MINIAOD", "status": "valid",
                             "data_type": "production", "software_version": f"CMSSW_{i % 4}",
                             "last_update": 1_600_000_000 + i} for i in range(4000)]}
    grown = traced(lambda: applied(inventory, "inject", document).release())
    assert len(inventory.datasets) == 4000
    assert grown / 4000 <= 120, grown / 4000


def test_a_dataset_s_blocks_stay_sorted_as_it_grows_and_shrinks_and_undo_restores_them():
    """Blocks injected out of name order into two datasets in turn (their runs of rows
    move as they grow, past each other), some deleted, then every request undone."""
    inventory = Inventory()
    applied(inventory, "inject", {"dataset": [{"name": d} for d in DATASETS[:2]]})
    history = []
    for i in (5, 1, 9, 3, 7, 0, 8, 2, 6, 4, 11, 10):
        before = state(inventory)
        history.append((before, applied(inventory, "inject", {"dataset": [
            {"name": d, "blocks": [{"name": f"b{i:02d}"}, {"name": f"c{i:02d}"}]}
            for d in DATASETS[:2]]})))
        assert inventory.problems() == []
    for name in ("b00", "c11", "b05"):
        before = state(inventory)
        history.append((before, applied(inventory, "delete", {"dataset": [
            {"name": DATASETS[1], "blocks": [{"name": name}]}]})))
    first, second = (inventory.datasets[d].blocks for d in DATASETS[:2])
    assert sorted(b.name for b in first) == [f"{c}{i:02d}" for c in "bc" for i in range(12)]
    assert len(second) == 21 and second.find("b05") is None and second.find("b06").name == "b06"
    assert inventory.problems() == []
    for before, changes in reversed(history):
        changes.rollback()
        assert state(inventory) == before
        assert inventory.problems() == []


def _block(name, *sizes, lfns=None):
    lfns = lfns or [f"/store/{name}/{i}.root" for i in range(len(sizes))]
    return {"name": name, "files": [{"name": lfn, "size": size}
                                    for lfn, size in zip(lfns, sizes)]}


def test_a_datasets_totals_follow_its_blocks_through_changes_and_undos():
    """A dataset's size, files and blocks (kept, not summed when asked) follow each
    change of its blocks, in bulk or one by one, and each undo, newest first; a
    dataset whose blocks would add up past 2^63 - 1 bytes is refused, changing
    nothing."""
    inventory = Inventory()
    name = "/A/B/RAW"
    steps = [   # (kind, document, the dataset's totals after it)
        ("inject", {"dataset": [{"name": name, "blocks": [_block("b1", 10, 20),
                                                          _block("b2", 5)]}]}, (35, 3, 2)),
        ("inject", {"dataset": [{"name": name, "blocks": [_block("b1", 7, lfns=["/x/7"]),
                                                          _block("b3")]}]}, (42, 4, 3)),
        ("delete", {"dataset": [{"name": name, "blocks": [
            {"name": "b1", "files": [{"name": "/store/b1/1.root"}]}]}]}, (22, 3, 3)),
        ("delete", {"dataset": [{"name": name, "blocks": [{"name": "b2"}]}]}, (17, 2, 2)),
    ]
    history = []
    for kind, document, expected in steps:
        before = state(inventory)
        history.append((before, applied(inventory, kind, document)))
        assert inventory.datasets[name].totals() == expected
        assert (inventory.datasets[name].size, inventory.datasets[name].num_files) == \
            expected[:2]
        assert inventory.problems() == []
    before = state(inventory)
    big = 2**63 - 1 - 17   # fits the block, not the dataset with its other blocks
    assert apply(inventory, "inject", {"dataset": [{"name": name, "blocks": [
        _block("b4", big, 1)]}]}) is None
    assert state(inventory) == before
    for before, changes in reversed(history):
        changes.rollback()
        assert state(inventory) == before and inventory.problems() == []
