"""The list queries: names in order for glob patterns, `limit`, and answers kept while
memory does not change.

A kept answer must never outlive the memory it was made from.  Through a real
daemon, after each kind of change (an injection, a deletion, a dry run, a refused
request, an application's write-back, and a commit that fails while queries read
its changes), every list answer asked before the change equals one the daemon
has never been asked for (the same question in other words: `*` written `**`),
which it must make afresh.
"""

import json
import os
import random
import threading
import time
from fnmatch import fnmatchcase

import orjson
import pytest

from dynamoclient.connection import RemoteError
from dynamod.inventory.changes import ChangeSet
from dynamod.inventory.inventory import Inventory
from dynamod.inventory.names import SortedNames
from dynamod.methods.answers import Answers
from support.apps import checksum, wait_for_end
from support.faults import lock

TOP = "\U0010ffff"   # the last code point: a prefix ending with it has no successor
NAMES = ["/A/x/RAW", "/A/y/RAW", "/A/y/AOD", "/Ab/z/RAW", "/B/x/RAW", "/B[1]/x/RAW",
         "/a/x/RAW", "/é/x/RAW", f"/{TOP}/x/RAW", f"/{TOP}{TOP}/y/RAW", f"/A{TOP}/x/RAW"]
PATTERNS = ["*", "/A*", "/A/*", "/A/?/RAW", "/A/[xy]/*", "/A/[!x]/*", "*RAW", "*/x/*", "/B[*",
            "/B[[]1]*", "/B[1]*", "[", "/A", "/A/x/RAW", "", "?*", f"/{TOP}*", f"/{TOP}{TOP}*",
            f"/A{TOP}*", "/é*", "/Z*", "**", "*?", "/[AB]*/RAW"]
LIMITS = [None, 0, 1, 2, 5, 100]


def expected(names, pattern, limit):
    found = sorted(n for n in names if fnmatchcase(n, pattern))
    return found[:limit], limit is not None and len(found) > limit


def datasets(*names) -> dict:
    return {"dataset": [{"name": n} for n in names]}


def check_every_pattern(daemon, names):
    with daemon.client() as client:
        for pattern in PATTERNS:
            for limit in LIMITS:
                answer = client.call("list_datasets", pattern=pattern, limit=limit)
                assert ([d["name"] for d in answer["datasets"]], answer["truncated"]) == \
                    expected(names, pattern, limit), (pattern, limit)


def test_patterns_and_limits_as_a_filter_and_a_sort_would_answer(daemon):
    """Every pattern and limit answers the names a full filter and sort would, as the
    datasets come and go (deleted, made again, refused)."""
    daemon.call("inject", data=datasets(*NAMES))
    names = set(NAMES)
    check_every_pattern(daemon, names)

    daemon.call("delete", data=datasets("/A/y/RAW", f"/{TOP}/x/RAW"))
    names -= {"/A/y/RAW", f"/{TOP}/x/RAW"}
    check_every_pattern(daemon, names)

    daemon.call("inject", data=datasets("/A/y/RAW", "/A/w/RAW", "/Aa"))  # one made again
    names |= {"/A/y/RAW", "/A/w/RAW", "/Aa"}
    check_every_pattern(daemon, names)

    with pytest.raises(RemoteError):  # a new dataset, then a deletion that fails: undone
        daemon.call("inject", data={"dataset": [{"name": "/A/v/RAW"},
                                                {"name": "/A/u/RAW", "status": "bogus"}]})
    check_every_pattern(daemon, names)

    for params, field in (({"limit": -1}, "limit"), ({"pattern": "*" * 1025}, "pattern")):
        with pytest.raises(RemoteError) as refused:
            daemon.call("list_datasets", **params)
        assert (refused.value.code, refused.value.details["field"]) == ("invalid_params", field)


def test_sorted_names_follow_changes_and_undos(random_seed):
    """The index of names against the table itself, read at random moments (between
    changes, and while a change is applied and not yet kept or undone)."""
    rng = random.Random(random_seed)
    inventory = Inventory()
    index = SortedNames("dataset", "datasets")
    letters = ["a", "b", "/", TOP]

    def check():
        assert index.current(inventory) == sorted(inventory.datasets)
        pattern = "".join(rng.choice(letters + ["*", "?"]) for _ in range(rng.randint(0, 3)))
        limit = rng.choice([None, 0, 1, 3])
        assert index.matching(inventory, pattern, limit) == expected(
            inventory.datasets, pattern, limit)[0], (pattern, limit)

    for _ in range(600):
        changes = ChangeSet(inventory)
        # now and then more new names than are merged one by one
        burst = rng.random() < 0.05
        for _ in range(100 if burst else rng.randint(1, 2)):
            length = rng.randint(0, 5 if burst else 3)
            name = "/" + "".join(rng.choice(letters) for _ in range(length))
            found = inventory.datasets.get(name)
            if found is None:
                changes.dataset(name, {})
            else:
                changes.delete_dataset(found)
        changes.finish()
        if rng.random() < 0.3:
            check()
        if rng.random() < 0.2:
            changes.rollback()
        changes.release()
        if rng.random() < 0.5:
            check()


def test_kept_answers_are_bounded_and_made_again_after_a_change():
    inventory = Inventory()
    answers = Answers(budget=400, count=3)
    made = []

    def ask(key, size=10):
        return orjson.dumps(answers.get(inventory, key,
                                        lambda: made.append(key) or "x" * size))

    assert ask("a") == b'"xxxxxxxxxx"'
    ask("a"), ask("b"), ask("c")
    assert made == ["a", "b", "c"]
    ask("d")                      # over the count: the oldest, "a", goes
    ask("b"), ask("a")
    assert made == ["a", "b", "c", "d", "a"]
    ask("big", 101), ask("big", 101)   # over a quarter of the bytes: never kept
    assert made.count("big") == 2

    made.clear()
    changes = ChangeSet(inventory)
    changes.site("T2_NEW", {"host": "h"})
    ask("c"), ask("c")            # a change applied: made again, then kept
    changes.rollback()
    ask("c")                      # undone: made again
    assert made == ["c", "c"]


# ------------------------------------------------------------ through the daemon
SITES = [{"name": n, "host": f"{n.lower()}.example.org", "backend": f"davs://{n}/store"}
         for n in ("T1_US_X_Disk", "T2_US_A", "T2_CH_B", "T3_IT_C")]


def replicated(name, *sites, group=None) -> dict:
    """A dataset of two blocks, each of one file, complete at `sites`."""
    blocks = [{"name": b, "files": [{"name": f"/store{name}/{b}.root", "size": 100 + len(b)}]}
              for b in ("b1", "b2")]
    replicas = [{"dataset": name, "site": s, "group": group,
                 "blockreplicas": [{"block": "b1"}, {"block": "b2"}]} for s in sites]
    return {"dataset": [{"name": name, "blocks": blocks}], "datasetreplica": replicas}


# Questions whose answers are kept; each has a `*`, which fresh() writes `**...*`.
QUESTIONS = [("list_sites", {"pattern": "*"}), ("list_sites", {"pattern": "T2_*"}),
             ("list_datasets", {"pattern": "*"}), ("list_datasets", {"pattern": "/D/*"}),
             ("list_datasets", {"pattern": "/D/*", "limit": 2}),
             ("list_datasets", {"pattern": "*/RAW", "limit": 1})]


def kept(daemon, whole=True) -> dict:
    """The answers to QUESTIONS and to list_groups; `whole`: also to list_site_replicas
    of every site and to get_dataset of every dataset."""
    with daemon.client() as client:
        answers = {"questions": [client.call(method, **params) for method, params in QUESTIONS],
                   "groups": [g["name"] for g in client.call("list_groups")["groups"]]}
        if whole:
            answers["replicas"] = [client.call("list_site_replicas", site=s["name"])
                                   for s in SITES]
            answers["datasets"] = [client.call("get_dataset", name=d["name"])
                                   for d in client.call("list_datasets")["datasets"]]
    return answers


# What a read-only application sees of every dataset, in get_dataset's form: the answers
# made afresh from the objects, by another code than the queries'.
SHOWN = """\
import json
from dynamod.executable import inventory

def replica(r):
    held = [{"block": br.block.name, "site": br.site.name, "group": br.group.name,
             "is_custodial": br.is_custodial, "size": br.size, "last_update": br.last_update,
             "complete": br.is_complete()} for br in r.block_replicas]
    return {"dataset": r.dataset.name, "site": r.site.name, "growing": r.growing,
            "group": r.group.name, "blockreplicas": sorted(held, key=lambda v: v["block"])}

def dataset(d):
    blocks = sorted(d.blocks, key=lambda b: b.name)
    return {"name": d.name, "id": d.id, "status": d.status, "data_type": d.data_type,
            "software_version": d.software_version, "last_update": d.last_update,
            "is_open": d.is_open, "size": sum(b.size for b in blocks),
            "num_files": sum(b.num_files for b in blocks), "num_blocks": len(blocks),
            "blocks": [{"name": b.name, "dataset": d.name, "id": b.id, "size": b.size,
                        "num_files": b.num_files, "is_open": b.is_open,
                        "last_update": b.last_update} for b in blocks],
            "replicas": sorted((replica(r) for r in d.replicas), key=lambda v: v["site"])}

print(json.dumps([dataset(inventory.datasets[n]) for n in sorted(inventory.datasets)]))
"""


def fresh(daemon, round_: list, groups, whole=True) -> dict:
    """The same answers made afresh: QUESTIONS in words not asked before; the datasets,
    and each site's replicas from them, as a read-only application sees them (whose
    record is a commit); list_groups has no other words: the groups the test made."""
    round_.append(None)
    stars = "*" * (len(round_) + 1)
    with daemon.client() as client:
        questions = [client.call(method, **{**params, "pattern": params["pattern"].replace(
            "*", stars, 1)}) for method, params in QUESTIONS]
    if not whole:
        return {"questions": questions, "groups": sorted(groups)}
    app = daemon.call("run_application", script=SHOWN, path="shown.py", attach=False)
    ended = wait_for_end(daemon, app["id"])
    assert ended["status"] == "done", ended
    with open(os.path.join(ended["workarea"], "stdout")) as f:
        shown = json.load(f)
    return {"questions": questions, "groups": sorted(groups),
            "replicas": [{"site": s["name"],
                          "replicas": sorted((r for d in shown for r in d["replicas"]
                                              if r["site"] == s["name"]),
                                             key=lambda r: r["dataset"])} for s in SITES],
            "datasets": shown}


WRITER = """\
from dynamod.executable import inventory, BlockReplica, Site
inventory.update(Site('T2_US_A', status='morgue'))
inventory.update(BlockReplica('/D/three/RAW#b1', 'T2_US_A', last_update=1234567890))
inventory.delete(inventory.datasets['/D/one/RAW'].find_replica('T2_CH_B'))
"""


def test_kept_answers_follow_every_kind_of_change(daemon):
    round_, groups = [], {"AnalysisOps", "DataOps"}
    daemon.call("inject", data={"site": SITES, "group": [{"name": g} for g in groups]})
    daemon.call("inject", data=replicated("/D/one/RAW", "T2_US_A", "T2_CH_B"))
    daemon.call("inject", data=replicated("/D/two/AOD", "T1_US_X_Disk", group="DataOps"))
    before = kept(daemon)
    assert before == fresh(daemon, round_, groups)

    daemon.call("inject", data={**replicated("/D/three/RAW", "T2_US_A", group="AnalysisOps"),
                                "site": [{"name": "T2_CH_B", "status": "waitroom"}],
                                "group": [{"name": "Newcomers"}]})
    groups.add("Newcomers")
    assert kept(daemon) == fresh(daemon, round_, groups) != before

    kept(daemon)
    daemon.call("delete", data={"dataset": [{"name": "/D/two/AOD"}],
                                "group": [{"name": "DataOps"}]})
    groups.remove("DataOps")
    assert kept(daemon) == fresh(daemon, round_, groups)

    before = kept(daemon)
    daemon.call("inject", data=replicated("/D/four/RAW", "T3_IT_C"), dry_run=True)
    daemon.call("delete", data={"dataset": [{"name": "/D/one/RAW"}]}, dry_run=True)
    assert kept(daemon) == fresh(daemon, round_, groups) == before

    with pytest.raises(RemoteError):   # applied in part, then refused: undone
        daemon.call("inject", data={**replicated("/D/five/RAW", "T2_US_A"),
                                    "site": [{"name": "T3_IT_C", "status": "bogus"}]})
    assert kept(daemon) == fresh(daemon, round_, groups) == before

    daemon.call("authorize_script", title="queries", checksum=checksum(WRITER))
    app = daemon.call("run_application", script=WRITER, path="writer.py", title="queries",
                      write=True, attach=False)
    assert wait_for_end(daemon, app["id"])["status"] == "done"
    assert kept(daemon) == fresh(daemon, round_, groups) != before


def test_answers_read_during_a_commit_that_fails_are_not_kept(daemon):
    """Queries see a change as soon as it is applied, before its commit; when the commit
    fails the change is undone without any commit: what was read meanwhile must go."""
    round_ = []
    daemon.call("inject", data={"site": SITES})
    daemon.call("inject", data=replicated("/D/one/RAW", "T2_US_A"))
    before = kept(daemon)
    holder = lock(daemon.database)   # the commit waits 2 s (busy_timeout), then fails
    try:
        failed = {}

        def change():
            try:
                daemon.call("inject", data={**replicated("/D/two/RAW", "T2_CH_B"),
                                            "site": [{"name": "T2_US_A", "status": "morgue"}]})
            except RemoteError as exc:
                failed["code"] = exc.code

        thread = threading.Thread(target=change)
        thread.start()
        deadline = time.monotonic() + 10
        while kept(daemon) == before:   # until the change is applied
            assert time.monotonic() < deadline, "the change was never applied"
        # (the application that makes the datasets afresh would wait for the lock)
        assert kept(daemon, whole=False) == fresh(daemon, round_, (), whole=False)
        thread.join(30)
        assert failed == {"code": "store_error"}
    finally:
        holder.communicate("\n", timeout=30)
    assert kept(daemon) == fresh(daemon, round_, ()) == before
