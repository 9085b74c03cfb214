"""A table's live rows found by name: open addressing in one array.

A name is asked for on every request that names a dataset, and a write-back
finds one per record.  A bisection of the rows sorted by name paid a Python
key function (a slice of the names buffer) at each of its ~18 steps; a dict
{name: row} answers in one step but holds a bytes object and an int per row
(some 160 B at cms scale, where the whole inventory has 80 B per object to
spend), objects an application forked from the daemon would copy page by page
as it reads them.  Here the rows sit in one `array` of slots, at the hash of
their name (`hash` of its UTF-8 bytes: keyed per process, so names chosen to
collide cannot be made), probed linearly; a row found is checked against the
table's names buffer.  At most half the slots are in use (a freed slot counts
until the next rebuild), which keeps a search to a probe or two; a rebuild
leaves a third or less in use: 3 to 6 slots of 4 bytes per name then.

The index is not stored: a load or a snapshot's restore builds it from the
names (tens of milliseconds at cms scale, and it checks that they are distinct).
"""

from array import array
from itertools import islice

from .columns import SnapshotError
from .objects import NO_ROW

EMPTY = -1   # a slot never used since the last rebuild: a search stops there
FREED = -2   # a slot whose row left: a search goes on past it
_FIRST = 8   # the slots of an empty index


class NameIndex:
    """The rows of `table` (a columns.Names) by name, for the rows the owner adds."""

    __slots__ = ("table", "slots", "used", "live")

    def __init__(self, table):
        self.table = table
        self.slots = array("i", [EMPTY]) * _FIRST
        self.used = 0   # slots that are not EMPTY
        self.live = 0   # rows held

    def __len__(self):
        return self.live

    def find(self, raw: bytes) -> int:
        """The row named `raw` (UTF-8), or NO_ROW."""
        table, slots = self.table, self.slots
        names, offsets, mask, size = table.names, table.offsets, len(slots) - 1, len(raw)
        at = hash(raw) & mask
        while (row := slots[at]) != EMPTY:
            if (row >= 0 and offsets[row + 1] - offsets[row] == size
                    and names.startswith(raw, offsets[row])):
                return row
            at = (at + 1) & mask
        return NO_ROW

    def add(self, row):
        """Index `row`, whose name no indexed row has."""
        if 2 * (self.used + 1) > len(self.slots):
            self._rebuild(self.live + 1)
        slots, mask = self.slots, len(self.slots) - 1
        at = hash(bytes(self.table.raw_name(row))) & mask
        while slots[at] >= 0:
            at = (at + 1) & mask
        if slots[at] == EMPTY:
            self.used += 1
        slots[at] = row
        self.live += 1

    def remove(self, row):
        """Forget `row` (indexed, its name still in the table; a KeyError if it is not
        there, which would be a bug: never a search without end)."""
        slots, mask = self.slots, len(self.slots) - 1
        at = hash(bytes(self.table.raw_name(row))) & mask
        while (found := slots[at]) != row:
            if found == EMPTY:
                raise KeyError(f"row {row} is not in the index by name")
            at = (at + 1) & mask
        slots[at] = FREED
        self.live -= 1

    def fill(self, n: int):
        """Index the table's first `n` rows (an empty index, loading): a pass in C but
        for the placing.  Raises SnapshotError when two have one name."""
        data, offsets = bytes(self.table.names), self.table.offsets
        self._empty(n)
        self._place(range(n), map(hash, map(data.__getitem__, map(
            slice, islice(offsets, n), islice(offsets, 1, n + 1)))))
        self.used = self.live = n

    def _rebuild(self, wanted: int):
        """Slots for `wanted` rows, a third of them used, holding the rows held."""
        rows = array("i", filter((0).__le__, self.slots))
        self._empty(wanted)
        raw_name = self.table.raw_name
        self._place(rows, (hash(bytes(raw_name(row))) for row in rows))
        self.used = len(rows)

    def _empty(self, wanted: int):
        size = _FIRST
        while size < 3 * wanted:
            size *= 2
        self.slots = array("i", [EMPTY]) * size

    def _place(self, rows, hashes):
        table, slots = self.table, self.slots
        names, offsets, mask = table.names, table.offsets, len(slots) - 1
        for row, at in zip(rows, hashes):
            at &= mask
            while (other := slots[at]) != EMPTY:
                if names[offsets[other]:offsets[other + 1]] == names[offsets[row]:
                                                                     offsets[row + 1]]:
                    raise SnapshotError(f"two rows named {table.name_at(row)!r}")
                at = (at + 1) & mask
            slots[at] = row
