"""Random injection and deletion requests over a small universe of names (hypothesis
strategies), and the state of an inventory that a rollback must restore."""

from hypothesis import strategies as st

from dynamod.errors import DynamoError
from dynamod.inventory import injection
from dynamod.inventory.changes import ChangeSet
from dynamod.inventory.rows import all_rows

SITES = ["S1", "S2", "S3"]
GROUPS = ["G1", "G2"]
DATASETS = ["/A/B/RAW", "/C/D/AOD"]
BLOCKS = ["b1", "b2"]
LFNS = [f"/store/f{i}.root" for i in range(5)]
SHARED = LFNS[2]   # the one LFN every block may name (see _owned)

maybe = st.booleans()


def _some(strategy, max_size=3, **kw):
    return st.lists(strategy, max_size=max_size, **kw)


def _owned(parent: dict) -> dict:
    """A dataset (or dataset replica) whose blocks' (or block replicas') files have their
    LFNs put under the block's full name, but for SHARED: a file is then mostly named in
    its own block (a file named in another block refuses the whole request, as it did in
    nearly half the documents that named files when every block drew from five LFNs)."""
    dataset = parent.get("dataset", parent.get("name"))
    key = "blocks" if "blocks" in parent else "blockreplicas"
    return {**parent, key: [_block_owned(dataset, b) for b in parent[key]]} \
        if key in parent else parent


def _block_owned(dataset: str, block: dict) -> dict:
    """`_owned` for one block (files as objects) or block replica (files as LFNs)."""
    if "files" not in block:
        return block
    where = f"/store{dataset}/{block.get('block', block.get('name'))}/"
    return {**block, "files": [_lfn(f, where) if isinstance(f, str)
                               else {**f, "name": _lfn(f["name"], where)}
                               for f in block["files"]]}


def _lfn(lfn: str, where: str) -> str:
    return lfn if lfn == SHARED else lfn.replace("/store/", where)


def _mostly(good: list, bad: list):
    """A good value four times out of five (a bad one refuses the whole request)."""
    return st.sampled_from(good * (2 * len(bad)) + bad)


# HUGE: two in a block pass a block's largest size, in two blocks a dataset's
HUGE = 2**62 + 1
files = st.fixed_dictionaries(
    {"name": st.sampled_from(LFNS), "size": _mostly([0, 10, 300, 2000], [-1, HUGE])},
    optional={"site": st.sampled_from(SITES)})
blocks = st.fixed_dictionaries(
    {"name": st.sampled_from(BLOCKS)},
    optional={"files": _some(files, min_size=1, max_size=2, unique_by=lambda f: f["name"]),
              "is_open": maybe, "last_update": st.sampled_from([5, 7.5])})
datasets = st.fixed_dictionaries(
    {"name": st.sampled_from(DATASETS)},
    optional={"blocks": _some(blocks, min_size=1, max_size=2),
              "status": _mostly(["valid", "production", "invalid", "deprecated"], ["bad"])}
).map(_owned)
# A block replica's files: the STARTER's (any other name refuses the whole request).
block_replicas = st.fixed_dictionaries(
    {"block": st.sampled_from(BLOCKS)},
    optional={"group": st.sampled_from(GROUPS), "files": _some(st.sampled_from(LFNS[3:]),
                                                                max_size=1),
              "complete": maybe, "last_update": st.sampled_from([5, 7.5]),
              "is_custodial": maybe})
dataset_replicas = st.fixed_dictionaries(
    {"dataset": st.sampled_from(DATASETS), "site": st.sampled_from(SITES)},
    optional={"growing": maybe, "group": st.sampled_from(GROUPS),
              "blockreplicas": _some(block_replicas)}).map(_owned)
documents = st.fixed_dictionaries({}, optional={
    "site": _some(st.fixed_dictionaries({"name": st.sampled_from(SITES)},
                                        optional={"status": st.sampled_from(["ready", "morgue"])})),
    "group": _some(st.fixed_dictionaries({"name": st.sampled_from(GROUPS)})),
    "dataset": _some(datasets),
    "datasetreplica": _some(dataset_replicas),
})


def _one(strategy):
    return st.lists(strategy, min_size=1, max_size=1)


def _named(names, key="name", **optional):
    return st.fixed_dictionaries({key: st.sampled_from(names)}, optional=optional)


deletions = st.one_of(
    st.fixed_dictionaries({"site": _one(_named(SITES))}),
    st.fixed_dictionaries({"group": _one(_named(GROUPS))}),
    st.fixed_dictionaries({"dataset": _one(_named(DATASETS, blocks=_one(
        _named(BLOCKS, files=_one(_named(LFNS))))).map(_owned))}),
    st.fixed_dictionaries({"datasetreplica": _one(st.fixed_dictionaries(
        {"dataset": st.sampled_from(DATASETS), "site": st.sampled_from(SITES)},
        optional={"blockreplicas": _one(_named(BLOCKS, key="block", files=st.lists(
            st.sampled_from(LFNS), max_size=2)))}).map(_owned))}),
)
# Every site, group, dataset and block, two files in each block of the first dataset,
# and a block replica: four sequences in five start with it, so that what they do
# reaches replicas and files (by chance alone, one sequence in forty made a dataset
# replica and none a block replica: each named something missing).  Its files are the
# last names, which the lists draw least, and the documents' lists are short and never
# empty (a file named twice refuses the request): before, of 150 sequences drawn, 0
# deleted a file and 0 to 7 made one; now 8 to 32 delete one and 5 to 23 make one.
# (Filtering out empty documents would shorten the sequences: a list stops early when
# its elements are rejected.)
STARTER = {"site": [{"name": s} for s in SITES], "group": [{"name": g} for g in GROUPS],
           "dataset": [_owned({"name": DATASETS[0], "blocks": [
                           {"name": b, "files": [{"name": f, "size": 10} for f in LFNS[3:]]}
                           for b in BLOCKS]}),
                       {"name": DATASETS[1], "blocks": [{"name": b} for b in BLOCKS]}],
           "datasetreplica": [{"dataset": DATASETS[0], "site": SITES[0],
                               "blockreplicas": [{"block": BLOCKS[0]}]}]}
requests = st.tuples(_mostly([True], [False]), st.lists(
    st.one_of(st.tuples(st.just("inject"), documents),
              st.tuples(st.just("delete"), deletions)),
    min_size=1, max_size=19)).map(
    lambda drawn: [("inject", STARTER)] * drawn[0] + drawn[1])


def totals(inventory) -> dict:
    """Each dataset's block totals as the inventory keeps them: name -> (size,
    num_files, blocks)."""
    return {name: dataset.totals() for name, dataset in inventory.datasets.items()}


def state(inventory):
    """Everything a rollback must restore: the rows, the next ids, the datasets' block
    totals, the order in which the dicts list their objects (creation order, as after a
    reload) and the order of the block replicas of each block and of each dataset
    replica, and of the dataset replicas of each dataset and of each site."""
    blocks = [b for d in inventory.datasets.values() for b in d.blocks]
    order = (list(inventory.sites), list(inventory.groups), list(inventory.datasets),
             [list(b.files_by_lfn) for b in sorted(blocks, key=lambda b: b.id)],
             [[r.site.name for r in b.replicas] for b in blocks],
             [[r.block.name for r in dr.block_replicas] for d in inventory.datasets.values()
              for dr in d.replicas],
             [[r.site.name for r in d.replicas] for d in inventory.datasets.values()],
             [[r.dataset.name for r in s.dataset_replicas] for s in inventory.sites.values()])
    return all_rows(inventory), dict(inventory.next_ids), totals(inventory), order


def undo_restores(inventory, sequence):
    """Apply the requests one after the other: a refused one must leave the inventory as
    it was, an applied one consistent; then undo the applied ones, newest first, each
    back to the state before it.  Returns their ChangeSets."""
    history = []
    for kind, document in sequence:
        before = state(inventory)
        changes = apply(inventory, kind, document)
        if changes is None:
            assert state(inventory) == before
        else:
            assert inventory.problems() == []
            history.append((before, changes))
    for before, changes in reversed(history):
        changes.rollback()
        assert state(inventory) == before
    return [changes for _, changes in history]


def apply(inventory, kind, document):
    """Apply an injection (`kind` "inject") or a deletion ("delete") document as one
    request: its ChangeSet, or None when it was refused (and undone)."""
    changes = ChangeSet(inventory, now=1000)
    try:
        getattr(injection, kind)(changes, document)
    except DynamoError:
        changes.rollback()
        return None
    return changes


# Runs of plain updates as a write-back sends them (dynamod.inventory.updates): a shape,
# then rows that name objects of `STOCK` (or not) and give values (good, or not).
STOCK = {
    "site": [{"name": s} for s in SITES],
    "group": [{"name": g} for g in GROUPS],
    "dataset": [{"name": d, "blocks": [{"name": b, "files": [{"name": f"{d}/{b}/f",
                                                              "size": 10}]}
                                       for b in BLOCKS]} for d in DATASETS],
    "datasetreplica": [{"dataset": d, "site": s, "group": "G1",
                        "blockreplicas": [{"block": b} for b in BLOCKS]}
                       for d in DATASETS for s in SITES[:2]],
}


_VALUES = {   # (good values, bad ones)
    "status": (["ready", "morgue", "waitroom"], ["nice"]),
    "host": (["h1", "h2"], ["bad\x01"]),
    "group": (GROUPS + [None], ["G9"]),
    "is_custodial": ([True, False], ["yes"]),
    "growing": ([True, False], [1]),
    "last_update": ([5, 7.5, 10**9], [-1]),
    "is_open": ([True, False], []),
    # "bad" is no dataset status: as a good value it refused one dataset run in three
    "dataset_status": (["valid", "production", "invalid"], ["bad"]),
}
_SHAPES = [   # (kind, keys, their values, fields)
    ("site", ["name"], [SITES + ["S9"]], ["status"]),
    ("site", ["name"], [SITES], ["host", "status"]),
    ("dataset", ["name"], [DATASETS], ["status", "last_update"]),
    ("block", ["dataset", "name"], [DATASETS, BLOCKS + ["b9"]], ["is_open", "last_update"]),
    ("block", ["dataset", "name"], [DATASETS, BLOCKS + ["b9"]], ["last_update"]),
    ("datasetreplica", ["dataset", "site"], [DATASETS, SITES[:2]], ["group", "growing"]),
    ("blockreplica", ["dataset", "block", "site"], [DATASETS, BLOCKS, SITES[:2]],
     ["last_update"]),
    ("blockreplica", ["dataset", "block", "site"], [DATASETS, BLOCKS, SITES[:2]],
     ["group", "is_custodial", "last_update"]),
    ("blockreplica", ["dataset", "block", "site"], [DATASETS, BLOCKS, SITES], ["group"]),
    # `inventory.update(obj)` with no field set: nothing to change, or a new object
    ("site", ["name"], [SITES + ["S9"]], []),
    ("blockreplica", ["dataset", "block", "site"], [DATASETS, BLOCKS, SITES], []),
]


@st.composite
def _run(draw):
    """A run; four in five have good values only (with a bad value possible in every
    row, of 150 examples 0 to 16 ever updated a dataset; now 47 to 57 do)."""
    kind, keys, names, fields = draw(st.sampled_from(_SHAPES))
    clean = draw(_mostly([True], [False]))
    values = [st.sampled_from(good) if clean or not bad else _mostly(good, bad)
              for good, bad in (_VALUES["dataset_status" if (kind, f) == ("dataset", "status")
                                        else f] for f in fields)]
    rows = draw(st.lists(st.tuples(*map(st.sampled_from, names), *values).map(list),
                         min_size=1, max_size=8))
    return {"op": "update", "kind": kind, "keys": keys, "fields": fields, "rows": rows}


update_runs = st.lists(st.lists(_run(), min_size=1, max_size=4), min_size=1, max_size=6)
