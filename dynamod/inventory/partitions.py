"""Partitions, quotas and the usage kept per (site, partition).

A **partition** is a name and a condition over block replicas, or a
superpartition: the union of other partitions (as in the original).  The
condition language (README "Partitions and quotas"):

    expr     := or
    or       := and ("or" and)*
    and      := unary ("and" unary)*
    unary    := "not" unary | "(" expr ")" | test
    test     := "complete" | "custodial" | "true" | "false"
              | field ("==" | "!=") (STRING | "none")
              | field ("~" | "!~") STRING          (shell glob, whole value)
    field    := "group" | "site" | "dataset" | "storage_type"

`group == none` is the null group (no owner).  Strings are in double quotes
with backslash escapes for `"` and `\\`.  A condition that does not parse is
refused with the (1-based) position of the error.

**Usage** is kept exactly, per (site, partition): replicas and bytes of the
complete replicas, and replicas, bytes held (physical) and block bytes
(projected) of the incomplete ones.  ChangeSet (changes.py) calls `contribution`
before and after each change of a block replica (or of what a condition
reads), and `move`s the difference: O(partitions) per changed replica, never a
walk of the inventory, except when a definition changes (`recount`, once).
No state is kept per block replica: the counters live in `Usage.table`.  The
partitions of a replica are memoized by what the conditions can read of it (its
site, group and dataset objects, storage type, completeness, custodial flag:
`Usage._prepare`), so a condition is evaluated once per such combination, not per
replica; `full_count` (the tests' check) evaluates every condition on every replica,
reached through the datasets and blocks (`recount` goes through the replicas' table).
"""

import re
import sys
from fnmatch import translate
from operator import itemgetter

from ..errors import Conflict, InvalidValue, NotFound

FIELDS = ("group", "site", "dataset", "storage_type")
FLAGS = ("complete", "custodial", "true", "false")
MAX_CONDITION = 4096
MAX_NAME = 128
NAME = re.compile(r"[A-Za-z0-9_.\-]+")
UNLIMITED = -1   # a quota: no limit (the original's negative quota)
# Entries of `Usage`'s memo of partition names (cleared when full: a bound, not an LRU).
MEMO_LIMIT = 1 << 15
# One counter row: complete replicas, their bytes; incomplete replicas, the bytes they
# hold, the bytes of their blocks.
N_COMPLETE, COMPLETE_BYTES, N_INCOMPLETE, INCOMPLETE_BYTES, PROJECTED_BYTES = range(5)


class ConditionError(InvalidValue):
    """A condition that does not parse; `position` (1-based) says where."""

    def __init__(self, text: str, position: int, what: str):
        shown = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(f"condition {shown!r}: at position {position}: {what}",
                         field="condition", position=position)
        self.position = position


# ---------------------------------------------------------------- parser
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<op>==|!=|!~|~|\(|\))
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
""", re.VERBOSE)


def _tokens(text: str) -> list:
    """[(kind, value, position)], ending with ("end", None, len + 1)."""
    found, at = [], 0
    while at < len(text):
        m = _TOKEN.match(text, at)
        if m is None:
            _refuse(text, at, found)
        kind = m.lastgroup
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", m.group()[1:-1])
            found.append(("string", value, at + 1))
        elif kind != "space":
            found.append((kind, m.group(), at + 1))
        at = m.end()
    found.append(("end", None, len(text) + 1))
    return found


# The original's policy variables an operator may bring (its partition definitions read
# `dataset.name == /A/*` and the like), and what this language writes instead.
_ORIGINAL = {"dataset.name": "dataset", "site.name": "site", "group.name": "group",
             "replica.owner": "group", "replica.group": "group", "site.storage_type":
             "storage_type", "replica.is_complete": "complete", "replica.is_custodial":
             "custodial", "replica.site": "site", "block.dataset": "dataset"}
_ATTRIBUTE = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)(?:\(\))?")


def _refuse(text: str, at: int, found: list):
    """The error of a character no token begins with, in the words most useful there:
    an unquoted value after a comparison (a glob) with its quoted form, `=`, `!`, `&`
    and `|` with what this language writes, a dotted name of the original's
    (`dataset.name`) with the field or flag that says it here."""
    char = text[at]
    if char == '"':
        raise ConditionError(text, at + 1, "an unterminated string")
    start = at   # of an unquoted value (a glob, most often), after a comparison
    if len(found) > 1 and found[-1][0] == "word" and found[-2][:2] in _COMPARISONS:
        start = found[-1][2] - 1
    if start < at or (found and found[-1][:2] in _COMPARISONS):
        value = re.match(r'[^\s()"]*', text[start:]).group()
        raise ConditionError(text, start + 1, f"a value is a string in double quotes: "
                                              f"write \"{value}\"")
    if char in _INSTEAD:
        raise ConditionError(text, at + 1, f"unexpected character {char!r}: {_INSTEAD[char]}")
    dotted = _ATTRIBUTE.match(text, at)
    if dotted and found and found[-1][0] == "word":
        word, position = found[-1][1], found[-1][2]
        name = f"{word}.{dotted.group(1)}"
        instead = _ORIGINAL.get(name)
        raise ConditionError(text, position, (
            f"{name!r} is the original's variable: write {instead!r} here" if instead else
            f"{name!r}: a dotted name (the original's variables) is no test here; the "
            f"fields are {', '.join(FIELDS)}, the flags {', '.join(FLAGS)}"))
    raise ConditionError(text, at + 1, f"unexpected character {char!r}")


_COMPARISONS = {("op", op) for op in ("==", "!=", "~", "!~")}
_INSTEAD = {"=": "compare with '==' (or '~' for a shell glob)",
            "!": "negate with 'not' (or compare with '!=', '!~')",
            "&": "write 'and'", "|": "write 'or'"}


class _Parser:
    """Recursive descent over the tokens; builds a tree of tuples:
    ("or", a, b), ("and", a, b), ("not", a), ("flag", name), ("cmp", field, op, value)."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self):
        return self.tokens[self.at]

    def take(self):
        token = self.tokens[self.at]
        self.at += 1
        return token

    def fail(self, expected: str):
        kind, value, position = self.peek()
        found = "the end" if kind == "end" else repr(value)
        raise ConditionError(self.text, position, f"expected {expected}, found {found}")

    def parse(self):
        tree = self.expr()
        if self.peek()[0] != "end":
            self.fail("'and', 'or' or the end")
        return tree

    def expr(self):
        tree = self.conjunction()
        while self.peek()[:2] == ("word", "or"):
            self.take()
            tree = ("or", tree, self.conjunction())
        return tree

    def conjunction(self):
        tree = self.unary()
        while self.peek()[:2] == ("word", "and"):
            self.take()
            tree = ("and", tree, self.unary())
        return tree

    def unary(self):
        kind, value, _ = self.peek()
        if (kind, value) == ("word", "not"):
            self.take()
            return ("not", self.unary())
        if (kind, value) == ("op", "("):
            self.take()
            tree = self.expr()
            if self.peek()[:2] != ("op", ")"):
                self.fail("')'")
            self.take()
            return tree
        if kind == "word" and value in FLAGS:
            self.take()
            return ("flag", value)
        if kind == "word" and value in FIELDS:
            self.take()
            op_kind, op, _ = self.peek()
            if op_kind != "op" or op not in ("==", "!=", "~", "!~"):
                self.fail(f"'==', '!=', '~' or '!~' after {value!r}")
            self.take()
            v_kind, v, _ = self.peek()
            if v_kind == "string":
                self.take()
                return ("cmp", value, op, v)
            if (v_kind, v) == ("word", "none") and op in ("==", "!=") and value == "group":
                self.take()
                return ("cmp", value, op, None)
            self.fail("a string in double quotes" + (" or none" if value == "group"
                                                      and op in ("==", "!=") else ""))
        self.fail(f"a test ({', '.join(FIELDS)}, {', '.join(FLAGS)}), 'not' or '('")


def parse(text) -> tuple:
    """The tree of a condition (raises ConditionError)."""
    if not isinstance(text, str):
        raise InvalidValue(f"a condition is a string, not {text!r}", field="condition")
    if len(text) > MAX_CONDITION:
        raise InvalidValue(f"a condition is at most {MAX_CONDITION} characters",
                           field="condition")
    return _Parser(text).parse()


# Readers of the replica, by field: the null group's name is None.
_READ = {
    "group": lambda r: r.group.name,
    "site": lambda r: r.site.name,
    "dataset": lambda r: r.block.dataset.name,
    "storage_type": lambda r: r.site.storage_type,
}


def compile_tree(tree):
    """A function replica -> bool for a parsed condition."""
    how = tree[0]
    if how == "or":
        a, b = compile_tree(tree[1]), compile_tree(tree[2])
        return lambda r: a(r) or b(r)
    if how == "and":
        a, b = compile_tree(tree[1]), compile_tree(tree[2])
        return lambda r: a(r) and b(r)
    if how == "not":
        a = compile_tree(tree[1])
        return lambda r: not a(r)
    if how == "flag":
        return {"complete": lambda r: r.file_ids is None,
                "custodial": lambda r: r.is_custodial,
                "true": lambda r: True, "false": lambda r: False}[tree[1]]
    _, field, op, value = tree
    read = _READ[field]
    if op in ("==", "!="):
        if op == "==":
            return lambda r: read(r) == value
        return lambda r: read(r) != value
    match = re.compile(translate(value)).match
    if op == "~":
        return lambda r: (v := read(r)) is not None and match(v) is not None
    return lambda r: (v := read(r)) is None or match(v) is None


def reads(tree) -> frozenset:
    """The fields and flags a parsed condition reads ("group", "complete", ...)."""
    how = tree[0]
    if how in ("or", "and"):
        return reads(tree[1]) | reads(tree[2])
    if how == "not":
        return reads(tree[1])
    return frozenset((tree[1],))


def evaluate(tree, replica) -> bool:
    """The tree evaluated directly (the tests' reference for `compile_tree`)."""
    how = tree[0]
    if how == "or":
        return evaluate(tree[1], replica) or evaluate(tree[2], replica)
    if how == "and":
        return evaluate(tree[1], replica) and evaluate(tree[2], replica)
    if how == "not":
        return not evaluate(tree[1], replica)
    if how == "flag":
        return {"complete": replica.file_ids is None, "custodial": replica.is_custodial,
                "true": True, "false": False}[tree[1]]
    _, field, op, value = tree
    actual = _READ[field](replica)
    if op == "==":
        return actual == value
    if op == "!=":
        return actual != value
    matched = actual is not None and re.fullmatch(translate(value), actual) is not None
    return matched if op == "~" else not matched


# ------------------------------------------------------------- partitions
class Partition:
    """A partition: `condition` text, or `subpartitions` (names) for a superpartition."""

    __slots__ = ("name", "condition", "subpartitions", "_test", "origin", "reads")
    kind = "partition"

    def __init__(self, name: str, condition: str | None = None, subpartitions=None,
                 origin: str = "store"):
        self.name = name
        self.condition = condition
        self.subpartitions = tuple(subpartitions) if subpartitions is not None else None
        self.origin = origin   # "store" (set_partition) or "config"
        tree = None if condition is None else parse(condition)
        self._test = None if tree is None else compile_tree(tree)
        self.reads = frozenset() if tree is None else reads(tree)  # what the memo keys on

    @property
    def definition(self) -> str:
        """As stored and shown: the condition, or `[A, B]` for a superpartition."""
        if self.subpartitions is not None:
            return "[" + ", ".join(self.subpartitions) + "]"
        return self.condition

    def __repr__(self):
        return f"Partition({self.name!r},{self.definition!r})"

    def __lt__(self, other):
        """By name: `sorted(site.partitions)`."""
        return self.name < other.name if type(other) is Partition else NotImplemented

    def contains(self, replica) -> bool:
        """Whether the block replica is in this partition (the original's API)."""
        test = CURRENT.usage.tests.get(self.name) if CURRENT.usage else None
        return bool(test and test(replica))

    def view(self) -> dict:
        view = {"name": self.name, "origin": self.origin}
        if self.subpartitions is not None:
            view["subpartitions"] = list(self.subpartitions)
        else:
            view["condition"] = self.condition
        return view


def from_definition(name: str, definition: str, origin: str = "store") -> Partition:
    """A partition from its stored text: `[A, B]` or a condition."""
    text = definition.strip()
    if text.startswith("["):
        if not text.endswith("]"):
            raise InvalidValue(f"partition {name}: a superpartition is [A, B, ...]",
                               field="subpartitions")
        parts = [p.strip() for p in text[1:-1].split(",") if p.strip()]
        return Partition(name, subpartitions=parts, origin=origin)
    return Partition(name, condition=definition, origin=origin)


def check_name(name) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise InvalidValue(f"a partition name is 1 to {MAX_NAME} letters, digits, '_', '.' "
                           f"or '-', not {name!r}", field="name")
    return name


class Record:
    """What the store holds of a partition or a quota (changes.py puts it in `ops`)."""

    __slots__ = ("kind", "name", "row")

    def __init__(self, kind: str, name: str, row: tuple):
        self.kind, self.name, self.row = kind, name, row


# ------------------------------------------------------------------ usage
class Usage:
    """The partitions, the quotas and the usage counters of one inventory."""

    def __init__(self):
        self.partitions = {}   # name -> Partition, in definition order
        self.quotas = {}       # (site name, partition name) -> bytes (UNLIMITED: none)
        self.table = {}        # (site name, partition name) -> [5 counters]
        self.tests = {}        # name -> test of every partition, subpartitions resolved
        self.recounts = 0      # how many full recounts ran (the tests read it)
        # The memo: the table keys of a replica's partitions, by what the conditions can
        # read of it (see `_prepare`); valid for the `tests` it was made for.
        self._memo = {}
        self._memo_tests = None
        self._key = None          # what the memo's key takes of a replica's facts
        self._key_storage = False  # whether the key holds the site's storage type

    @property
    def active(self) -> bool:
        return bool(self.tests)

    def state(self) -> tuple:
        """What `define` and `recount` replace, for `restore` (the undo of a redefinition)."""
        return self.partitions, self.tests, self.table

    def restore(self, state: tuple):
        self.partitions, self.tests, self.table = state

    # ------------------------------------------------- definitions
    def check(self, partitions: dict):
        """Raise unless every superpartition names existing partitions, without cycles."""
        for partition in partitions.values():
            seen, stack = set(), [partition.name]
            while stack:
                name = stack.pop()
                sub = partitions.get(name)
                if sub is None:
                    raise NotFound(f"partition {partition.name}: unknown subpartition "
                                   f"{name!r}", field="subpartitions")
                if sub.subpartitions is None:
                    continue
                if name in seen:
                    raise Conflict(f"partition {partition.name}: its subpartitions make a "
                                   f"cycle through {name}", field="subpartitions")
                seen.add(name)
                stack.extend(sub.subpartitions)

    def define(self, partitions: dict):
        """Take these definitions (checked) and recount the usage once."""
        self.check(partitions)
        self.partitions = partitions
        self.tests = {p.name: self._test(p, partitions) for p in partitions.values()}

    def _test(self, partition, partitions):
        if partition.subpartitions is None:
            return partition._test
        tests = [self._test(partitions[n], partitions) for n in partition.subpartitions]
        return lambda r: any(t(r) for t in tests)

    def recount(self, inventory, memo: bool = True):
        """The usage from scratch: every block replica, from the replicas' table (with
        `memo=False`, through the datasets and their blocks, every condition evaluated
        on every replica, the memo neither read nor filled)."""
        self.recounts += 1
        self.table = {}
        if not self.tests:
            return
        if memo:
            for replica in inventory.block_replicas.views():
                self.add(self.contribution(replica))
            return
        for dataset in inventory.datasets.values():
            for block in dataset.blocks:
                for replica in block.replicas:
                    self.add(self._uncached(replica))

    def full_count(self, inventory) -> dict:
        """A recount into a new table, leaving the kept one alone (for checks): without
        the memo, so that it checks the memo too."""
        kept, recounts = self.table, self.recounts
        try:
            self.recount(inventory, memo=False)
            return self.table
        finally:
            self.table, self.recounts = kept, recounts

    # ----------------------------------------------------- counters
    def _keys(self, replica) -> tuple:
        """The table keys (site name, partition name) of the replica's partitions."""
        site = replica.site.name
        return tuple([(site, name) for name, test in self.tests.items() if test(replica)])

    def _uncached(self, replica):
        keys = self._keys(replica)
        if not keys:
            return None
        return keys, replica.file_ids is None, replica.size, replica.block.size

    def _prepare(self):
        """A new memo for the current definitions.  What a condition can read of a block
        replica is its site (name, storage_type), its group (whose name is frozen), its
        dataset (name frozen), whether it is complete and whether it is custodial: the
        memo's key is the objects and values among these that some condition reads, so
        that equal keys mean equal partitions.  The mutable values (storage_type,
        custodial, complete) are in the key themselves, so no change needs to clear
        it; a new definition (or its undo) replaces `tests`, and with it the memo."""
        read = set()
        for partition in self.partitions.values():
            read |= partition.reads
        # the positions in `usage_facts` (columns.py): site, group, dataset, custodial,
        # complete; the site always (the table's keys hold its name)
        taken = [0] + [at for at, what in ((1, "group"), (2, "dataset"), (3, "custodial"),
                                           (4, "complete")) if what in read]
        self._key = itemgetter(*taken, 0)   # the site twice: a tuple even when alone
        self._key_storage = "storage_type" in read
        self._memo = {}
        self._memo_tests = self.tests

    def contribution(self, replica):
        """What the replica adds: (table keys of its partitions, complete, physical,
        projected), or None when it is in no partition.  The partitions come from the
        memo when a replica with the same key (see `_prepare`) was seen."""
        if self._memo_tests is not self.tests:
            self._prepare()
        facts = replica.usage_facts()
        key = self._key(facts)
        if self._key_storage:
            key = (key, facts[0].storage_type)
        memo = self._memo
        keys = memo.get(key)
        if keys is None:
            keys = self._keys(replica)
            if len(memo) >= MEMO_LIMIT:
                memo.clear()
            memo[key] = keys
        if not keys:
            return None
        return keys, facts[4], facts[5], facts[6]

    def add(self, contribution, sign=1):
        if contribution is None:
            return
        keys, complete, physical, projected = contribution
        table = self.table
        # The row's indexes as literals (N_COMPLETE ... PROJECTED_BYTES): no global look-ups.
        for key in keys:
            row = table.get(key)
            if row is None:
                row = table[key] = [0, 0, 0, 0, 0]
            if complete:
                row[0] += sign
                row[1] += sign * physical
            else:
                row[2] += sign
                row[3] += sign * physical
                row[4] += sign * projected
            if not row[0] and not row[2]:
                del table[key]

    def count(self, replica, sign=1):
        """`add` the replica's contribution (1: it enters, -1: it leaves); returns it."""
        contribution = self.contribution(replica)
        if contribution is not None:
            self.add(contribution, sign)
        return contribution

    def sub(self, contribution):
        self.add(contribution, -1)

    def move(self, old, new):
        if old != new:
            self.sub(old)
            self.add(new)

    # ------------------------------------------------------- quotas
    def quota(self, site: str, partition: str) -> int:
        """Bytes; UNLIMITED (-1) for no limit; 0 (the default) for none allowed.  A
        superpartition's is the sum of its parts' (unlimited when one is)."""
        found = self.partitions.get(partition)
        if found is None or found.subpartitions is None:
            return self.quotas.get((site, partition), 0)
        total = 0
        for name in found.subpartitions:
            part = self.quota(site, name)
            if part == UNLIMITED:
                return UNLIMITED
            total += part
        return total

    def used(self, site: str, partition: str, physical: bool = True) -> int:
        row = self.table.get((site, partition))
        if row is None:
            return 0
        incomplete = row[INCOMPLETE_BYTES] if physical else row[PROJECTED_BYTES]
        return row[COMPLETE_BYTES] + incomplete

    def occupancy_fraction(self, site: str, partition: str, physical: bool = True) -> float:
        """The original's: used / quota; the largest float for a quota of 0; 0 for an
        unlimited one."""
        quota = self.quota(site, partition)
        if quota == 0:
            return sys.float_info.max
        if quota < 0:
            return 0.0
        return self.used(site, partition, physical) / quota

    def row_view(self, site: str, partition: str) -> dict:
        row = self.table.get((site, partition)) or [0, 0, 0, 0, 0]
        quota = self.quota(site, partition)
        used = row[COMPLETE_BYTES] + row[INCOMPLETE_BYTES]
        projected = row[COMPLETE_BYTES] + row[PROJECTED_BYTES]
        return {"site": site, "partition": partition,
                "complete_replicas": row[N_COMPLETE], "complete_bytes": row[COMPLETE_BYTES],
                "incomplete_replicas": row[N_INCOMPLETE],
                "incomplete_bytes": row[INCOMPLETE_BYTES],
                "incomplete_projected_bytes": row[PROJECTED_BYTES],
                "used": used, "projected": projected,
                "quota": "unlimited" if quota == UNLIMITED else quota,
                "occupancy": None if quota <= 0 else used / quota,
                "projected_occupancy": None if quota <= 0 else projected / quota}


def check_quota(value) -> int:
    """A quota as given: bytes (an integer >= 0) or "unlimited"."""
    if value == "unlimited":
        return UNLIMITED
    if type(value) is not int or not 0 <= value <= 2 ** 63 - 1:
        raise InvalidValue(f"a quota is a number of bytes (0 to 2^63-1) or \"unlimited\", "
                           f"not {value!r}", field="quota")
    return value


_COUNTED = frozenset(("group", "is_custodial", "size", "file_ids"))  # what usage reads
COUNTED_KINDS = frozenset(("blockreplica", "block", "site"))   # those `affected` can name


def may_move(kind: str, names) -> bool:
    """Whether changing the fields `names` of an object of `kind` may move usage."""
    if kind == "blockreplica":
        return not _COUNTED.isdisjoint(names)
    return (kind == "block" and "size" in names) or (kind == "site" and "storage_type" in names)


def affected(obj, values: dict) -> tuple:
    """The block replicas whose contribution a change of `values` on `obj` may change."""
    kind = obj.kind
    if not may_move(kind, values):
        return ()
    if kind == "blockreplica":
        return (obj,)
    if kind == "block":
        return tuple(obj.replicas)
    return tuple(r for dr in obj.dataset_replicas for r in dr.block_replicas)


def load(inventory, partition_rows, quota_rows, configured: dict | None = None):
    """At start-up: the stored partitions, then those of the configuration (which win
    over a stored one of the same name), the quotas, and one count of the usage."""
    usage = inventory.usage
    stored = {name: from_definition(name, definition) for name, definition in partition_rows}
    usage.define(with_configured(stored, configured or {}))
    usage.quotas = {(site, partition): quota for site, partition, quota in quota_rows}
    usage.recount(inventory)


def with_configured(partitions: dict, configured: dict) -> dict:
    """The partitions not from the configuration, then the configuration's `configured`
    ({name: definition}), which win over one of the same name."""
    merged = {n: p for n, p in partitions.items() if p.origin != "config"}
    for name, definition in configured.items():
        merged[name] = from_definition(check_name(name), definition, origin="config")
    return merged


# ------------------------------------------------------- in applications
class _Current:
    """The usage of the process's inventory (the daemon's, forked into applications):
    what `site.partitions` reads, with no round trip."""

    usage = None


CURRENT = _Current()


class SitePartition:
    """A partition at a site, as the original's: `quota` (bytes; -1 unlimited),
    `occupancy_fraction()`, `replicas` and the usage counters."""

    __slots__ = ("site", "partition", "_usage")

    def __init__(self, usage, site, partition):
        self.site, self.partition, self._usage = site, partition, usage

    @property
    def quota(self) -> int:
        return self._usage.quota(self.site.name, self.partition.name)

    def occupancy_fraction(self, physical: bool = True) -> float:
        return self._usage.occupancy_fraction(self.site.name, self.partition.name, physical)

    def usage(self) -> dict:
        """The counters of `site_usage` (PROTOCOL.md) for this site and partition."""
        return self._usage.row_view(self.site.name, self.partition.name)

    @property
    def replicas(self) -> dict:
        """{DatasetReplica: None when all its block replicas here are in the partition,
        else the set of those that are}; only dataset replicas with one in it."""
        test = self._usage.tests[self.partition.name]
        found = {}
        for owner in self.site.dataset_replicas:
            inside = [r for r in owner.block_replicas if test(r)]
            if inside:
                found[owner] = None if len(inside) == len(owner.block_replicas) else set(inside)
        return found

    def __repr__(self):
        return f"SitePartition({self.site.name!r},{self.partition.name!r},{self.quota})"


class SitePartitions(dict):
    """{Partition: SitePartition} of a site, as the original's `site.partitions` (so
    `for partition, sp in site.partitions.items(): partition.name` works), which also
    takes a partition's name: `site.partitions['Physics']`."""

    def __init__(self, items=()):
        super().__init__(items)
        self._named = {partition.name: partition for partition in self}

    def _key(self, key):
        name = key.name if type(key) is Partition else key
        return self._named.get(name, key) if type(name) is str else key

    def __getitem__(self, key):
        return super().__getitem__(self._key(key))

    def get(self, key, default=None):
        return super().get(self._key(key), default)

    def __contains__(self, key):
        return super().__contains__(self._key(key))


def site_partitions(site) -> SitePartitions:
    """{Partition: SitePartition} of a site of the inventory."""
    usage = CURRENT.usage
    if usage is None:
        return SitePartitions()
    return SitePartitions({p: SitePartition(usage, site, p) for p in usage.partitions.values()})
