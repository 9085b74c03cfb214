"""Partitions: the condition parser, and the usage kept per (site, partition).

The usage is kept by ChangeSet as each change applies; after any sequence of
requests (failed ones included), undoes (what a failed commit does) and
restarts it must equal a full recount, and a new definition recounts once.
"""

import asyncio
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynamod.errors import DynamoError, InvalidValue
from dynamod.inventory import injection
from dynamod.inventory import partitions as parts
from dynamod.inventory.changes import ChangeSet
from dynamod.inventory.inventory import Inventory
from dynamod.service import InventoryService
from support.documents import GROUPS, SITES, requests, state

# ------------------------------------------------------------------ parser
names = st.sampled_from(["AnalysisOps", "DataOps", "T2_*", "T3_*", "/A/*", 'we"ird\\', ""])
tests = st.one_of(
    st.tuples(st.just("flag"), st.sampled_from(parts.FLAGS)),
    st.tuples(st.just("cmp"), st.sampled_from(parts.FIELDS), st.sampled_from(["==", "!=", "~", "!~"]),
              names),
    st.tuples(st.just("cmp"), st.just("group"), st.sampled_from(["==", "!="]), st.none()),
)
trees = st.recursive(tests, lambda inner: st.one_of(
    st.tuples(st.just("not"), inner),
    st.tuples(st.sampled_from(["and", "or"]), inner, inner)), max_leaves=8)


def render(tree) -> str:
    """A tree as text, fully parenthesized."""
    how = tree[0]
    if how == "flag":
        return tree[1]
    if how == "not":
        return f"not ({render(tree[1])})"
    if how in ("and", "or"):
        return f"({render(tree[1])}) {how} ({render(tree[2])})"
    _, field, op, value = tree
    shown = "none" if value is None else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{field} {op} {shown}"


@given(trees)
def test_rendered_conditions_parse_back(tree):
    assert parts.parse(render(tree)) == tree


# Random text, conditions, and conditions cut anywhere: random text alone parsed once
# in 100 examples and was refused at its end twice; now 36 to 45 parse and 18 to 25
# are refused at their end.
condition_texts = st.one_of(
    st.text(alphabet='()"\\=!~ andortgupsicemlx*_', max_size=40),
    trees.map(render),
    st.tuples(trees.map(render), st.integers(0, 10**6)).map(
        lambda drawn: drawn[0][:drawn[1] % (len(drawn[0]) + 1)]))


@given(condition_texts)
def test_any_text_parses_or_is_refused_with_a_position(text):
    try:
        parts.parse(text)
    except parts.ConditionError as exc:
        assert 1 <= exc.position <= len(text) + 1
        assert f"at position {exc.position}:" in exc.message


def test_precedence_and_errors():
    assert parts.parse("complete or custodial and not true") == (
        "or", ("flag", "complete"), ("and", ("flag", "custodial"), ("not", ("flag", "true"))))
    with pytest.raises(parts.ConditionError, match="at position 7: unexpected character '='"):
        parts.parse('group = "x"')
    with pytest.raises(parts.ConditionError, match=r"at position 10: expected '\)'"):
        parts.parse("(complete")
    with pytest.raises(parts.ConditionError, match="at position 10: expected 'and', 'or'"):
        parts.parse("complete custodial")
    with pytest.raises(InvalidValue):
        parts.parse(3)


@pytest.mark.parametrize("text, position, told", [
    ('dataset.name == "/A/*"', 1, "'dataset.name' is the original's variable: write 'dataset'"),
    ("group == none and replica.is_complete()", 19,
     "'replica.is_complete' is the original's variable: write 'complete'"),
    ('site.nme == "T2"', 1, "'site.nme': a dotted name (the original's variables) is no test "
                            "here; the fields are group, site, dataset, storage_type"),
    ("dataset ~ /*/*/RAW", 11, 'a value is a string in double quotes: write "/*/*/RAW"'),
    ("site == T2_* or custodial", 9, 'a value is a string in double quotes: write "T2_*"'),
    ("!complete", 1, "unexpected character '!': negate with 'not'"),
    ("complete && custodial", 10, "unexpected character '&': write 'and'"),
    ("complete || custodial", 10, "unexpected character '|': write 'or'"),
])
def test_the_originals_ways_are_told_what_to_write_instead(text, position, told):
    """An operator brings the original's definitions (`dataset.name == /A/*`) and other
    languages' habits: each is refused where it stands, saying what this one writes."""
    with pytest.raises(parts.ConditionError) as refused:
        parts.parse(text)
    assert refused.value.position == position
    assert refused.value.message.startswith(f"condition {text!r}: at position {position}: "
                                            f"{told}"), refused.value.message


# ------------------------------------------------------------------- usage
DEFINITIONS = [
    ("All", "true"),
    ("Owned", "group != none"),
    ("G1", 'group == "G1" and not site ~ "S3"'),
    ("Done", "complete or custodial"),
    ("Raw", 'dataset ~ "*/RAW" and storage_type == "disk"'),
    ("Mix", ["G1", "Done"]),
    ("Bad", "group == "),      # refused: does not parse
    ("Loop", ["Loop"]),        # refused: a cycle
    ("Owned", "not complete"),  # a redefinition
]
partition_changes = st.tuples(st.just("partition"), st.sampled_from(DEFINITIONS))
quota_changes = st.tuples(st.just("quota"), st.tuples(
    st.sampled_from(SITES), st.sampled_from(["All", "G1", "Mix", "Nope"]),
    st.sampled_from([0, 10, "unlimited", -3])))


BASE = {
    "site": [{"name": "S1"}, {"name": "S2"}, {"name": "S3", "storage_type": "mss"}],
    "group": [{"name": "G1"}, {"name": "G2"}],
    "dataset": [{"name": name, "blocks": [
        {"name": block, "files": [{"name": f"/store/{tag}{block}{i}.root", "size": 100 * i + 7}
                                  for i in range(2)]} for block in ("b1", "b2")]}
        for name, tag in (("/A/B/RAW", "a"), ("/C/D/AOD", "c"))],
    "datasetreplica": [
        {"dataset": "/A/B/RAW", "site": "S1", "group": "G1", "blockreplicas": [
            {"block": "b1"}, {"block": "b2", "files": ["/store/ab20.root"]}]},
        {"dataset": "/A/B/RAW", "site": "S3", "blockreplicas": [
            {"block": "b1", "is_custodial": True}]},
        {"dataset": "/C/D/AOD", "site": "S2", "group": "G2", "blockreplicas": [
            {"block": "b1", "complete": False}, {"block": "b2", "group": "G1"}]}],
}
# What the base makes likely: flags and storage types changing under the partitions.
flips = st.one_of(
    st.fixed_dictionaries({"site": st.lists(st.fixed_dictionaries(
        {"name": st.sampled_from(SITES),
         "storage_type": st.sampled_from(["disk", "mss"])}), min_size=1, max_size=1)}),
    st.fixed_dictionaries({"datasetreplica": st.lists(st.fixed_dictionaries(
        {"dataset": st.sampled_from(["/A/B/RAW", "/C/D/AOD"]), "site": st.sampled_from(SITES),
         "blockreplicas": st.lists(st.fixed_dictionaries(
             {"block": st.sampled_from(["b1", "b2"])},
             optional={"is_custodial": st.booleans(), "group": st.sampled_from(GROUPS),
                       "complete": st.just(True),
                       "files": st.lists(st.sampled_from(
                           [f"/store/{t}{b}{i}.root" for t in "ac" for b in ("b1", "b2")
                            for i in range(2)]), max_size=2, unique=True)}),
             min_size=1, max_size=2)}), min_size=1, max_size=1)}),
)
BASE_LFNS = [f"/store/{t}{b}{i}.root" for t in "ac" for b in ("b1", "b2") for i in range(2)]
_blocks = st.sampled_from([("/A/B/RAW", "b1"), ("/A/B/RAW", "b2"), ("/C/D/AOD", "b1"),
                           ("/C/D/AOD", "b2")])
# Files arriving at one site or leaving a block: the block's size moves under the
# replicas elsewhere (their projected bytes).
file_changes = st.one_of(
    st.tuples(_blocks, st.sampled_from(SITES), st.integers(0, 3)).map(
        lambda t: ("inject", {"dataset": [{"name": t[0][0], "blocks": [{"name": t[0][1], "files": [
            {"name": f"/store/new{t[2]}.root", "size": 50 + t[2], "site": t[1]}]}]}]})),
    st.tuples(_blocks, st.sampled_from(BASE_LFNS + ["/store/new0.root"])).map(
        lambda t: ("delete", {"dataset": [{"name": t[0][0], "blocks": [{"name": t[0][1], "files": [
            {"name": t[1]}]}]}]})),
)
steps = st.lists(st.one_of(requests.flatmap(lambda r: st.just(("requests", r))),
                           st.tuples(st.just("flip"), flips),
                           file_changes.map(lambda r: ("requests", [r])),
                           partition_changes, quota_changes), min_size=1, max_size=10)


def _base(inventory):
    """Two partitions and an inventory with replicas from the start."""
    parts.load(inventory, [("All", "true"), ("Owned", "group != none"),
                           ("Disk", 'storage_type == "disk" and not custodial')], [])
    changes = ChangeSet(inventory, now=1000)
    injection.inject(changes, BASE)


def _apply(inventory, step):
    kind, what = step
    changes = ChangeSet(inventory, now=1000)
    try:
        if kind == "partition":
            name, definition = what
            if isinstance(definition, list):
                changes.set_partition(name, subpartitions=definition)
            else:
                changes.set_partition(name, condition=definition)
        elif kind == "quota":
            site, partition, quota = what
            if site not in inventory.sites:
                raise DynamoError("no site")
            changes.set_quota(inventory.sites[site], partition, quota)
        elif kind == "flip":
            injection.inject(changes, what)
        else:
            getattr(injection, what[0])(changes, what[1])
    except DynamoError:
        changes.rollback()
        return None
    return changes


def _usage_state(inventory):
    usage = inventory.usage
    return ({k: list(v) for k, v in usage.table.items()}, dict(usage.partitions),
            dict(usage.quotas))


def _flatten(sequence):
    for kind, what in sequence:
        if kind == "requests":
            yield from (("request", r) for r in what)
        else:
            yield kind, what


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_kept_usage_equals_a_recount_through_changes_and_undoes(sequence):
    inventory = Inventory()
    _base(inventory)
    usage = inventory.usage
    history = []
    for kind, what in _flatten(sequence):
        before = _usage_state(inventory), state(inventory)
        recounts = usage.recounts
        changes = _apply(inventory, (kind, what))
        if changes is None:
            assert (_usage_state(inventory), state(inventory)) == before
        else:
            history.append((before, changes))
            # a definition recounts once; nothing else ever does
            assert usage.recounts - recounts == (1 if kind == "partition" and changes.ops else 0)
        assert usage.table == usage.full_count(inventory)
    for before, changes in reversed(history):   # what failed commits do, newest first
        changes.rollback()
        assert (_usage_state(inventory), state(inventory)) == before
        assert usage.table == usage.full_count(inventory)


@settings(max_examples=20, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(steps)
def test_usage_after_restart_equals_memory(tmp_path_factory, sequence):
    path = str(tmp_path_factory.mktemp("store") / "inventory.db")

    async def scenario():
        service = await InventoryService.open(path, "NORMAL", file_cache=2,
                                              partitions={"Conf": 'site ~ "S1"'})
        await service.change(lambda c: c.set_partition("Owned", condition="group != none"))
        await service.change(lambda c: injection.inject(c, BASE))
        for step in _flatten(sequence):
            try:
                await service.change(lambda c: _raise_if_refused(_apply_in(c, step)))
            except DynamoError:
                pass
        usage = service.inventory.usage
        expected = _usage_state(service.inventory)
        try:
            assert usage.table == usage.full_count(service.inventory)
        finally:
            await service.close()
        reloaded = await InventoryService.open(path, "NORMAL", rebuild=True,   # from the rows
                                               partitions={"Conf": 'site ~ "S1"'})
        got = _usage_state(reloaded.inventory)
        await reloaded.close()
        return expected, got

    expected, got = asyncio.run(scenario())
    assert got[0] == expected[0]
    assert {n: p.definition for n, p in got[1].items()} == {
        n: p.definition for n, p in expected[1].items()}
    assert got[2] == expected[2]


def _raise_if_refused(result):
    return result


def _apply_in(changes, step):
    kind, what = step
    if kind == "partition":
        name, definition = what
        key = "subpartitions" if isinstance(definition, list) else "condition"
        changes.set_partition(name, **{key: definition})
    elif kind == "quota":
        site, partition, quota = what
        changes.set_quota(changes.inventory.site(site), partition, quota)
    elif kind == "flip":
        injection.inject(changes, what)
    else:
        getattr(injection, what[0])(changes, what[1])


def test_memo_follows_storage_types_flags_and_definitions():
    """The memo of partitions by what conditions read: warm, then a site's storage type,
    a replica's flag and a definition change (and are undone) under it."""
    inventory = Inventory()
    _base(inventory)
    usage = inventory.usage
    replicas = [r for d in inventory.datasets.values() for b in d.blocks for r in b.replicas]
    warm = [usage.contribution(replica) for replica in replicas]
    again = [usage.contribution(replica) for replica in replicas]
    # warm: the second pass takes each replica's partitions from the memo, the same tuple
    assert any(warm) and all(w is None or w[0] is a[0] for w, a in zip(warm, again))
    steps = [("flip", {"site": [{"name": "S1", "storage_type": "mss"}]}),
             ("flip", {"datasetreplica": [{"dataset": "/A/B/RAW", "site": "S1",
                                           "blockreplicas": [{"block": "b1",
                                                              "is_custodial": True}]}]}),
             ("partition", ("Disk", 'storage_type == "mss" or complete'))]
    done = []
    for step in steps:
        done.append(_apply(inventory, step))
        assert done[-1] is not None
        assert usage.table == usage.full_count(inventory)
    for changes in reversed(done):
        changes.rollback()
        assert usage.table == usage.full_count(inventory)


def test_quota_rules_and_occupancy():
    inventory = Inventory()
    parts.load(inventory, [("A", "true"), ("B", "complete"), ("AB", "[A, B]")], [])
    changes = ChangeSet(inventory)
    injection.inject(changes, {"site": [{"name": "S1"}], "dataset": [{"name": "/A/B/RAW",
                     "blocks": [{"name": "b1", "files": [{"name": "/f1", "size": 100}]}]}],
                     "datasetreplica": [{"dataset": "/A/B/RAW", "site": "S1",
                                         "blockreplicas": [{"block": "b1"}]}]})
    usage = inventory.usage
    assert usage.used("S1", "A") == 100 and usage.used("S1", "AB") == 100
    assert usage.occupancy_fraction("S1", "A") == sys.float_info.max   # quota 0
    changes.set_quota(inventory.sites["S1"], "A", 400)
    changes.set_quota(inventory.sites["S1"], "B", 100)
    assert usage.quota("S1", "AB") == 500
    assert usage.occupancy_fraction("S1", "A") == 0.25
    changes.set_quota(inventory.sites["S1"], "B", "unlimited")
    assert usage.quota("S1", "AB") == parts.UNLIMITED
    assert usage.occupancy_fraction("S1", "AB") == 0.0
    with pytest.raises(InvalidValue, match="superpartition"):
        changes.set_quota(inventory.sites["S1"], "AB", 5)
    with pytest.raises(InvalidValue, match="quota"):
        changes.set_quota(inventory.sites["S1"], "A", -5)
    with pytest.raises(DynamoError, match="subpartition of AB"):
        changes.delete_partition("A")
    changes.delete_site(inventory.sites["S1"])
    assert usage.quotas == {} and usage.table == {}


@settings(max_examples=20, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(steps, st.booleans()), min_size=1, max_size=4))
def test_failed_commits_restore_the_usage(tmp_path_factory, batches):
    """A commit that fails undoes its changes in the writer (memory never ahead of the
    store): the usage with them."""
    from dynamod.errors import StoreError

    path = str(tmp_path_factory.mktemp("store") / "inventory.db")

    async def scenario():
        service = await InventoryService.open(path, "NORMAL")
        await service.change(lambda c: c.set_partition("Owned", condition="group != none"))
        await service.change(lambda c: c.set_partition(
            "Disk", condition='storage_type == "disk" and not complete'))
        await service.change(lambda c: injection.inject(c, BASE))
        real = service.store.write
        failing = [False]

        async def write(rows, next_ids):
            if failing[0]:
                raise StoreError("injected: the disk is full")
            return await real(rows, next_ids)
        service.store.write = write
        usage = service.inventory.usage
        try:
            for sequence, fail in batches:
                before = _usage_state(service.inventory)
                failing[0] = fail
                for step in _flatten(sequence):
                    try:
                        await service.change(lambda c: _apply_in(c, step))
                    except DynamoError:
                        pass
                if fail:
                    assert _usage_state(service.inventory) == before
                assert usage.table == usage.full_count(service.inventory)
            failing[0] = False
            expected = _usage_state(service.inventory)
        finally:
            failing[0] = False
            await service.close()
        reloaded = await InventoryService.open(path, "NORMAL", rebuild=True)   # from the rows
        got = _usage_state(reloaded.inventory)
        await reloaded.close()
        return expected, got

    expected, got = asyncio.run(scenario())
    assert got[0] == expected[0] and got[2] == expected[2]
