"""get_dataset and list_site_replicas: the answers, read from the column tables (a
chain of block replicas in creation order, sorted by block name), must be byte for
byte the documented JSON (PROTOCOL.md: keys in their order, blocks by name, replicas
by site or dataset, block replicas by block name) of what the objects hold.

The reference is made from the objects' public API (support/views.py) and encoded
with orjson.  It is compared over random histories of requests with compactions at
random points (rows renumbered, chains rebuilt), and over one history made to hold
what an answer must not confuse: block replicas created together (their rows follow
one another) or one at a time, in and out of name order, incomplete ones, several
sites and groups, a dataset without replicas and a replica without blocks, objects
deleted and made again, and names JSON must escape.
"""

import random
import types

import orjson
from hypothesis import HealthCheck, given, settings, strategies as st

from dynamod.inventory import snapshot
from dynamod.inventory.inventory import Inventory
from dynamod.methods import METHODS
from dynamod.methods.registry import Call
from support.documents import apply
from support.seed import block_doc, dataset_doc
from support.views import dataset_shown, site_replicas_shown

TOP = "\U0010ffff"


def answers(inventory) -> dict:
    """The methods' encoded answers for every dataset and every site, as the daemon
    sends them (the handlers' results, encoded by orjson)."""
    call = Call(server=types.SimpleNamespace(service=types.SimpleNamespace(
        inventory=inventory)), identity=None)
    get_dataset, site_replicas = (METHODS[m].handler for m in
                                  ("get_dataset", "list_site_replicas"))
    return {**{("dataset", n): orjson.dumps(get_dataset(call, name=n))
               for n in inventory.datasets},
            **{("site", n): orjson.dumps(site_replicas(call, site=n))
               for n in inventory.sites}}


def expected(inventory) -> dict:
    return {**{("dataset", n): orjson.dumps(dataset_shown(d))
               for n, d in inventory.datasets.items()},
            **{("site", n): orjson.dumps(site_replicas_shown(s))
               for n, s in inventory.sites.items()}}


def check(inventory):
    found, wanted = answers(inventory), expected(inventory)
    assert found.keys() == wanted.keys()
    for key in wanted:
        assert found[key] == wanted[key], key


def compact(inventory):
    """What an idle daemon does: a snapshot's parts made, then the tables from them."""
    snapshot.compact(inventory, snapshot.take(inventory)())


# Random histories over a few names, drawn so that most requests apply: datasets with
# blocks, replicas holding some of them (complete or not, at several sites, in
# several groups), and deletions of each kind, with compactions between them.
DATASETS = ["/A/x/RAW", '/B/"q"/AOD', "/C/\u00e9/RAW"]
BLOCKS = ["b1", "b2", "b3", "a\u00e9", "b\\", "c"]
SITE_NAMES = ["S1", "S2", "S3"]
GROUP_NAMES = ["G1", "G2"]


def _lfns(dataset, block):
    return [f"/store{dataset}/{block}/{i}.root" for i in range(2)]


def _blocks(dataset, blocks) -> dict:
    return dataset_doc(dataset, *(block_doc(b, *((f, 10) for f in _lfns(dataset, b)))
                                  for b in blocks))


some_blocks = st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=4, unique=True)
groups = st.sampled_from(GROUP_NAMES + [None])
held = st.lists(st.tuples(st.sampled_from(BLOCKS), st.booleans(), st.booleans(), groups),
                min_size=1, max_size=4, unique_by=lambda t: t[0])
steps = st.one_of(
    st.tuples(st.just("blocks"), st.sampled_from(DATASETS), some_blocks),
    st.tuples(st.just("replica"), st.sampled_from(DATASETS), st.sampled_from(SITE_NAMES),
              groups, st.booleans(), held),
    st.tuples(st.just("unhold"), st.sampled_from(DATASETS), st.sampled_from(SITE_NAMES),
              some_blocks),
    st.tuples(st.just("unreplicate"), st.sampled_from(DATASETS), st.sampled_from(SITE_NAMES)),
    st.tuples(st.just("delete"), st.sampled_from(DATASETS)),
    st.tuples(st.just("unblock"), st.sampled_from(DATASETS), some_blocks))


def _replica(inventory, dataset, site) -> tuple:
    """The drawn replica (dataset, site) if there is one, else one of the dataset's,
    else any (with the drawn names alone, of 150 histories 0 to 1 removed a block
    replica and 3 a dataset replica, the others naming none; now 14 to 18 and 13 to 17
    do)."""
    found = inventory.datasets.get(dataset)
    held = [(d.name, r.site.name) for d in ([found] if found is not None else [])
            + list(inventory.datasets.values()) for r in d.replicas]
    return (dataset, site) if not held or (dataset, site) in held else held[0]


def _held(inventory, dataset, site) -> set:
    """The names of the blocks the replica holds (none if there is no such replica)."""
    found = inventory.datasets.get(dataset)
    return {r.block.name for d in ([found] if found is not None else [])
            for dr in d.replicas if dr.site.name == site for r in dr.block_replicas}


def _request(step, inventory) -> tuple:
    """The request of a step; a replica holds only blocks its dataset has (else the
    whole request would be refused), and a replica removed, or its blocks, are ones
    there are if there are any."""
    kind, dataset, *rest = step
    if kind in ("unhold", "unreplicate"):
        dataset, rest[0] = _replica(inventory, dataset, rest[0])
    if kind == "blocks":
        return "inject", _blocks(dataset, rest[0])
    if kind == "replica":
        site, group, growing, held = rest
        found = inventory.datasets.get(dataset)
        held = [h for h in held if found is not None and found.find_block(h[0])]
        return "inject", {"datasetreplica": [{
            "dataset": dataset, "site": site, "group": group, "growing": growing,
            "blockreplicas": [{"block": b, "is_custodial": custodial, "group": g,
                               **({"files": _lfns(dataset, b)[:1]} if part else {})}
                              for b, custodial, part, g in held]}]}
    if kind == "unhold":
        held = _held(inventory, dataset, rest[0])
        return "delete", {"datasetreplica": [{"dataset": dataset, "site": rest[0],
                                              "blockreplicas": [{"block": b} for b in (
                                                  [b for b in rest[1] if b in held]
                                                  or rest[1])]}]}
    if kind == "unreplicate":
        return "delete", {"datasetreplica": [{"dataset": dataset, "site": rest[0]}]}
    if kind == "delete":
        return "delete", dataset_doc(dataset)
    return "delete", {"dataset": [{"name": dataset, "blocks": [{"name": b}
                                                                for b in rest[0]]}]}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(steps, st.booleans()), min_size=1, max_size=25))
def test_answers_are_the_documented_json_of_the_objects_over_random_histories(history):
    inventory = Inventory()
    apply(inventory, "inject", {"site": [{"name": s} for s in SITE_NAMES],
                                "group": [{"name": g} for g in GROUP_NAMES]})
    for dataset in DATASETS:
        apply(inventory, "inject", _blocks(dataset, BLOCKS[:4]))
    for step, compacting in history:
        apply(inventory, *_request(step, inventory))
        if compacting:
            compact(inventory)
        check(inventory)


SITES = ["T1_A", "T2_B", "T2_C", 'T3_"q"\\']
GROUPS = ["AnalysisOps", "DataOps", "g\u00e9"]


def _files(dataset, block, n=2):
    return [(f"/store{dataset}/{block}/{i}.root", 10 + i) for i in range(n)]


def test_answers_are_the_documented_json_of_a_made_up_history(random_seed):
    rng = random.Random(random_seed)
    inventory = Inventory()
    names = ["/A/x/RAW", '/B/"q"/AOD', "/C/\\/RAW", f"/{TOP}/\u00e9/RAW", "/E/alone/RAW"]
    blocks = [f"b{i:02d}" for i in range(12)] + ["b\u00e9", f"b{TOP}", 'b"', "b\\"]
    assert apply(inventory, "inject", {"site": [{"name": s} for s in SITES + ["T2_Empty"]],
                                       "group": [{"name": g} for g in GROUPS]})
    for name in names:   # blocks made in a shuffled order, some together, some alone
        order = rng.sample(blocks, len(blocks))
        half = len(order) // 2
        assert apply(inventory, "inject", dataset_doc(
            name, *(block_doc(b, *_files(name, b)) for b in order[:half])))
        for b in order[half:]:
            assert apply(inventory, "inject", dataset_doc(name, block_doc(b, *_files(name, b))))
    for name in names[:-1]:   # the last has no replica
        for site in rng.sample(SITES, rng.randint(1, len(SITES))):
            held = rng.sample(blocks, rng.randint(0, len(blocks)))
            together, alone = held[:len(held) // 2], held[len(held) // 2:]

            def replica(block):
                view = {"block": block, "is_custodial": rng.random() < 0.3,
                        "group": rng.choice(GROUPS + [None])}
                if rng.random() < 0.3:   # incomplete: one file of two
                    view["files"] = [_files(name, block)[0][0]]
                return view

            assert apply(inventory, "inject", {"datasetreplica": [
                {"dataset": name, "site": site, "group": rng.choice(GROUPS + [None]),
                 "growing": rng.random() < 0.5,
                 "blockreplicas": [replica(b) for b in together]}]})
            for block in alone:
                assert apply(inventory, "inject", {"datasetreplica": [
                    {"dataset": name, "site": site, "blockreplicas": [replica(block)]}]})
    assert apply(inventory, "inject", {"datasetreplica": [   # a replica without blocks
        {"dataset": names[3], "site": "T2_Empty", "blockreplicas": []}]})
    check(inventory)
    # deletions, and the same names made again: new rows, after dead ones
    assert apply(inventory, "delete", dataset_doc(names[0]))
    assert apply(inventory, "inject", dataset_doc(names[0], *(
        block_doc(b, *_files(names[0], b)) for b in reversed(blocks[:5]))))
    assert apply(inventory, "inject", {"datasetreplica": [
        {"dataset": names[0], "site": SITES[1],
         "blockreplicas": [{"block": b} for b in blocks[2:5]]}]})
    replicas = inventory.datasets[names[1]].replicas
    site = sorted(r.site.name for r in replicas)[0]
    assert apply(inventory, "delete", {"datasetreplica": [{"dataset": names[1], "site": site}]})
    assert apply(inventory, "inject", {"datasetreplica": [
        {"dataset": names[1], "site": site,
         "blockreplicas": [{"block": b} for b in rng.sample(blocks, 6)]}]})
    check(inventory)
    compact(inventory)
    check(inventory)
    assert apply(inventory, "inject", {"datasetreplica": [
        {"dataset": names[2], "site": SITES[0], "blockreplicas": [{"block": blocks[0]}]}]})
    check(inventory)
    # the history held what it was made to: a dataset without replicas, a replica
    # without blocks, incomplete block replicas, chains of several
    shown = [orjson.loads(a) for key, a in answers(inventory).items() if key[0] == "dataset"]
    assert any(not d["replicas"] for d in shown)
    held = [r for d in shown for dr in d["replicas"] for r in dr["blockreplicas"]]
    assert any(not r["complete"] for r in held) and any(r["complete"] for r in held)
    assert any(len(dr["blockreplicas"]) > 1 for d in shown for dr in d["replicas"])
    assert any(not dr["blockreplicas"] for d in shown for dr in d["replicas"])
