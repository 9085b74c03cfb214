"""Names in order, and the glob patterns matched against them.

A query with a pattern (`list_datasets`, `list_sites`) answers the matching
names sorted.  Filtering every name and sorting the matches costs tens of
milliseconds at grid scale; a `SortedNames` keeps a table's names sorted, so
that the pattern's literal prefix (what comes before its first `*`, `?` or
`[`) bounds the names to try by bisection, and the walk stops at the limit.

The list follows the table without being told of each change.  Unless a
change was undone since the last read (`Inventory.undone` counts the undos),
the table has only lost names and gained objects with ids from the `next_ids`
of that read, which it lists after the older entries: the new names are
read from its end, and its length tells how many went.  An undo, or anything
that does not add up, rebuilds the list (a sort: about 0.1 s at 240,000
datasets).
"""

import functools
import re
from bisect import bisect_left, insort
from fnmatch import translate
from itertools import islice

from ..errors import InvalidParams

MAX_PATTERN = 1024
GLOB_CACHE = 256   # compiled patterns kept: the few that scripts and operators repeat
MERGE_SORT = 64    # more new names than this are merged by a sort, fewer one by one
_SPECIAL = re.compile(r"[*?\[]")


class Glob:
    """A shell-style pattern: the literal prefix every match starts with, and the match."""

    __slots__ = ("prefix", "match", "everything")

    def __init__(self, pattern: str):
        special = _SPECIAL.search(pattern)
        self.prefix = pattern if special is None else pattern[:special.start()]
        self.match = re.compile(translate(pattern)).match
        # prefix + "*": every name with the prefix matches, none needs trying
        self.everything = pattern == self.prefix + "*"

    def bounds(self, names: list) -> tuple[int, int]:
        """The slice of sorted `names` that starts with the prefix."""
        low = bisect_left(names, self.prefix)
        above = _above(self.prefix)
        return low, len(names) if above is None else bisect_left(names, above, low)


def glob(pattern: str) -> Glob:
    """The Glob of `pattern`.  Long patterns are refused: translating one takes time
    quadratic in its length (a few thousand `[` stall the daemon for seconds)."""
    if len(pattern) > MAX_PATTERN:
        raise InvalidParams(f"pattern is longer than {MAX_PATTERN} characters", field="pattern")
    return _compiled(pattern)


@functools.lru_cache(maxsize=GLOB_CACHE)
def _compiled(pattern: str) -> Glob:
    """Translating a pattern costs more than the rest of a small query: the recent
    ones are kept."""
    return Glob(pattern)


def _above(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix` (None: no such
    string, every name from the prefix on qualifies)."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            return prefix[:-1] + chr(last + 1)
        prefix = prefix[:-1]
    return None


def matching(pattern: str, names) -> list:
    """The names (any iterable) that match the glob `pattern`, sorted."""
    return sorted(filter(glob(pattern).match, names))


class SortedNames:
    """The names of one of the inventory's tables by name (`sites`, `datasets`), sorted."""

    def __init__(self, kind: str, table: str):
        self.kind = kind        # its key in `next_ids`
        self.table = table      # the Inventory attribute
        self.names = []
        self._of = None         # the table the names are of
        self._stamp = None      # (its length, next id, undone) when last read

    def matching(self, inventory, pattern: str, limit: int | None = None) -> list:
        """The names that match the glob `pattern`, sorted; the first `limit` of them."""
        found = glob(pattern)
        names = self.current(inventory)
        low, high = found.bounds(names)
        if found.everything:
            return names[low:high if limit is None else min(high, low + limit)]
        tried = filter(found.match, map(names.__getitem__, range(low, high)))
        return list(tried if limit is None else islice(tried, limit))

    def current(self, inventory) -> list:
        """The sorted names, brought up to date with the table."""
        table = getattr(inventory, self.table)
        stamp = (len(table), inventory.next_ids[self.kind], inventory.undone)
        last, self._stamp = self._stamp, stamp
        if table is self._of and last == stamp:
            return self.names
        if table is not self._of or last[2] != stamp[2] or not self._follow(table, *last[:2]):
            self._of, self.names = table, sorted(table)
        return self.names

    def _follow(self, table, length: int, next_id: int) -> bool:
        """Apply what changed since the table had `length` names, all of ids below
        `next_id`: the objects appended since, and the names deleted.  False when that
        does not account for the table (the caller then rebuilds)."""
        new = []
        for name in reversed(table):
            if table[name].id < next_id:
                break
            new.append(name)
        gone = length + len(new) - len(table)
        names = self.names
        if gone:
            names = self.names = list(filter(table.__contains__, names))
            # a name deleted and made again is still in the list
            new = [name for name in new if not _has(names, name)]
        if len(new) > MERGE_SORT:
            names += new
            names.sort()
        else:
            for name in new:
                insort(names, name)
        return len(names) == len(table)


def _has(names: list, name: str) -> bool:
    i = bisect_left(names, name)
    return i < len(names) and names[i] == name
