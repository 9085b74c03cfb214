"""Coverage-guided fuzzing of what a client controls: request lines and injection documents.

atheris is not a dependency of the project; install it where you fuzz, for instance
in a virtual environment that sees the installed project, and run from the checkout:

    python3 -m venv --system-site-packages /tmp/fuzz && /tmp/fuzz/bin/pip install atheris
    /tmp/fuzz/bin/python -m tests.reliability.fuzz_protocol -max_total_time=300 [CORPUS_DIR]

(any libFuzzer option works: -runs=N, -max_len=N, -artifact_prefix=DIR/, ...; besides
libFuzzer's own lines, ending with `Done N runs in S second(s)`, it prints the outcomes
by error code at every power of two executions.)

The first byte of an input chooses the target, the rest is its data:

- a request line for `dynamod.protocol.decode_request`;
- a document (the data as JSON, or built by the fuzzer's data provider from names
  and values the walk-through's inventory knows) applied through a ChangeSet with
  `injection.inject` or `injection.delete` to that inventory.

What must hold: only DynamoError escapes; a refused document leaves the
inventory exactly as it was (every row, every next id, the order of every listing)
after the ChangeSet's rollback; an accepted one keeps the consistency rules
(`Inventory.problems`), gives the rows the store would write, has answers JSON can
carry (a dataset's size is a sum), and its rollback restores the inventory too.
"""

import collections
import json
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import orjson

    from dynamod.errors import DynamoError
    from dynamod.inventory import injection
    from dynamod.inventory.changes import ChangeSet
    from dynamod.inventory.inventory import Inventory
    from dynamod.inventory.rows import all_rows, change_rows
    from dynamod.methods.inventory import dataset_view, site_view
    from dynamod.protocol import decode_request

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
NOW = 1_700_000_000
refusals = collections.Counter()
executions = 0


def seed() -> Inventory:
    inventory = Inventory()
    changes = ChangeSet(inventory, now=NOW)
    for name in ("mydynamo-storage-sites.json", "mydynamo-data.json"):
        injection.inject(changes, json.loads((EXAMPLES / name).read_text()))
    injection.inject(changes, {"group": [{"name": "AnalysisOps"}]})
    return inventory


INVENTORY = seed()
DATASET = next(iter(INVENTORY.datasets))
BLOCK = next(iter(INVENTORY.datasets[DATASET].blocks)).name
LFN = next(iter(INVENTORY.file_cache.by_lfn))
NAMES = [DATASET, BLOCK, LFN, "T2_US_XYZ", "T3_US_XYZ", "AnalysisOps", "/new/a/RAW", "b1",
         "/store/new/1", "T9_NEW", "", "../../etc", "a\x00b", None]
KEYS = sorted({*injection.SITE_KEYS, *injection.GROUP_KEYS, *injection.DATASET_KEYS,
               *injection.BLOCK_KEYS, *injection.FILE_KEYS, *injection.DATASET_REPLICA_KEYS,
               *injection.BLOCK_REPLICA_KEYS, "x"})
NESTED = {"blocks", "files", "blockreplicas"}


def state(inventory) -> tuple:
    """Every row, the next ids, and the order the dicts list their objects in."""
    listing = [list(inventory.sites), list(inventory.groups), list(inventory.datasets),
               [list(b.files_by_lfn) for d in inventory.datasets.values()
                for b in sorted(d.blocks, key=lambda b: b.id)]]
    return all_rows(inventory), dict(inventory.next_ids), listing


BEFORE = state(INVENTORY)


def value(provider, depth):
    """A JSON value of any type, often one the inventory knows."""
    kind = provider.ConsumeIntInRange(0, 9)
    if kind <= 2:
        return NAMES[provider.ConsumeIntInRange(0, len(NAMES) - 1)]
    if kind == 3:
        return provider.ConsumeIntInRange(-2, 3) + (
            2**63 if provider.ConsumeBool() else 0) * provider.ConsumeIntInRange(-1, 2)
    if kind == 4:
        return provider.ConsumeBool()
    if kind == 5:
        return provider.ConsumeUnicodeNoSurrogates(12)
    if kind == 6:
        return provider.ConsumeRegularFloat()
    if kind == 7 and depth < 4:
        return [item(provider, depth + 1) for _ in range(provider.ConsumeIntInRange(0, 3))]
    if kind == 8 and depth < 4:
        return item(provider, depth + 1)
    return None


def item(provider, depth):
    """An object with keys of the document format (and the odd unknown one)."""
    obj = {}
    for _ in range(provider.ConsumeIntInRange(0, 5)):
        key = KEYS[provider.ConsumeIntInRange(0, len(KEYS) - 1)]
        obj[key] = ([item(provider, depth + 1) for _ in range(provider.ConsumeIntInRange(0, 3))]
                    if key in NESTED and depth < 4 else value(provider, depth))
    return obj


def document(provider):
    sections = {}
    for section in injection.SECTIONS:
        if provider.ConsumeBool():
            sections[section] = [item(provider, 1) for _ in range(provider.ConsumeIntInRange(0, 3))]
    return sections


def check_document(doc, delete: bool):
    """Apply the document to the inventory, check, and leave the inventory as it was."""
    changes = ChangeSet(INVENTORY, now=NOW)
    try:
        (injection.delete if delete else injection.inject)(changes, doc)
    except DynamoError as exc:
        refusals[exc.code] += 1
        changes.rollback()
        assert state(INVENTORY) == BEFORE, f"a refused document changed the inventory: {doc!r}"
        return
    try:
        assert not INVENTORY.problems(), (INVENTORY.problems(), doc)
        change_rows(changes)
        orjson.dumps([dataset_view(d) for d in INVENTORY.datasets.values()]
                     + [site_view(s) for s in INVENTORY.sites.values()])
    finally:
        changes.rollback()
    refusals["accepted"] += 1
    assert state(INVENTORY) == BEFORE, f"the rollback did not restore the inventory: {doc!r}"


def test_one_input(data: bytes):
    global executions
    executions += 1
    if executions & (executions - 1) == 0:
        print(f"outcomes after {executions} executions: {dict(refusals.most_common())}",
              file=sys.stderr)
    if not data:
        return
    target, rest = data[0] % 4, data[1:]
    if target == 0:
        try:
            decode_request(rest)
        except DynamoError as exc:
            refusals[exc.code] += 1
        return
    if target == 1:
        try:
            doc = orjson.loads(rest)
        except orjson.JSONDecodeError:
            return
    else:
        doc = document(atheris.FuzzedDataProvider(rest))
    check_document(doc, delete=target == 3)


def main():
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
