"""Rows in memory, keyed as the store keys them, and the one undo log.

A change of the daemon's state is a set of operations `(kind, key) -> row` (None
deletes), the same the writer commits.  A `RowTable` applies one and gives back
the row it replaced: the inverse operation.  `Undo` keeps those inverses (and,
for the inventory's object graph, the steps `ChangeSet` records), newest last,
so a change that is refused or whose commit fails leaves memory exactly as the
committed store has it, whichever registry it touched.
"""


class RowTable:
    """The rows of one kind.  `changed(key, old, new)` keeps an owner's indexes."""

    __slots__ = ("kind", "rows", "changed")

    def __init__(self, kind: str, changed=None):
        self.kind = kind
        self.rows = {}
        self.changed = changed

    def __len__(self):
        return len(self.rows)

    def __contains__(self, key):
        return key in self.rows

    def get(self, key, default=None):
        return self.rows.get(key, default)

    def keys(self):
        return self.rows.keys()

    def values(self):
        return self.rows.values()

    def apply(self, key, row):
        """Set the row (None: delete it); returns the row it replaced (None: there was
        none), which applied in turn undoes this."""
        old = self.rows.get(key)
        if row is None:
            self.rows.pop(key, None)
        else:
            self.rows[key] = row
        if self.changed is not None and old != row:
            self.changed(key, old, row)
        return old

    def clear(self):
        """Forget every row (an application's child keeps none of some tables)."""
        self.rows.clear()

    def load(self, rows, key_of):
        """Fill from the store's rows; `key_of(row)` is the row's key."""
        for row in rows:
            self.apply(key_of(row), tuple(row))


class Undo:
    """Inverses of applied steps, undone newest first by `rollback`."""

    __slots__ = ("steps",)

    def __init__(self):
        self.steps = []

    def __bool__(self):
        return bool(self.steps)

    def apply(self, tables: dict, ops: dict) -> "Undo":
        """Apply `{(kind, key): row}` to `tables` (kind -> RowTable), recording inverses."""
        for (kind, key), row in ops.items():
            table = tables[kind]
            self.steps.append((table.apply, key, table.apply(key, row)))
        return self

    def call(self, step, *args):
        """Record a step that undoes something done by other means."""
        self.steps.append((step, *args))

    def rollback(self):
        steps = self.steps
        while steps:
            step, *args = steps.pop()
            step(*args)

    def clear(self):
        self.steps.clear()
