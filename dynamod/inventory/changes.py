"""ChangeSet: the one place where the inventory changes.

Every change of a request goes through a ChangeSet, which
- keeps the consistency rules (block sums, replica file lists, cascades),
- remembers how to undo each step, so a request that fails half-way (or whose
  commit fails) leaves the inventory exactly as it was, and
- records which objects to write or delete in the store and what to count.

Callers pass names already resolved to objects; the messages name objects the
way an operator wrote them.
"""

import time
from collections import Counter
from contextlib import nullcontext
from functools import partial
from itertools import accumulate, compress, count, pairwise, repeat
from operator import attrgetter, itemgetter, ne

import orjson

from .. import collector
from ..errors import Conflict, InvalidValue, NotFound
from ..store.sqlite import NEW_FILES
from ..tables import Undo
from . import partitions as parts
from .columns import repeated
from .fields import MAX_COUNT, MAX_TEXT, printable
from .inventory import PLURAL
from .objects import Block, BlockReplica, Dataset, DatasetReplica, File, Group, Site
from .changelines import FILE_LINE, entry_lines
from .packedfiles import packed_runs


_new_view = tuple.__new__   # a view (table, row) of a table's row (columns.py)


def _defaults(cls, *names) -> dict:
    """What these fields of a new `cls` hold unless given."""
    return {name: cls.__dict__[name].default for name in names}


_DATASET_DEFAULTS = _defaults(Dataset, "status", "data_type", "software_version", "is_open")
_BLOCK_DEFAULTS = _defaults(Block, "size", "num_files", "is_open")
_BLOCK_REPLICA_DEFAULTS = _defaults(BlockReplica, "is_custodial", "size")
_TOTALS = ("size", "num_files")   # the fields of a block its files add up to


class _Keep:
    """`ChangeSet.block_replica`'s default: the files a replica holds are not changed."""

    __slots__ = ()

    def __repr__(self):
        return "KEEP"


KEEP = _Keep()


def store_key(obj) -> tuple:
    """The object's identity in the store: (kind, primary key)."""
    cls = type(obj)   # the classes are not subclassed
    if cls is BlockReplica:
        return "blockreplica", obj[0].key_at(obj[1])
    if cls is DatasetReplica:
        return "datasetreplica", (obj.dataset.id, obj.site.id)
    return obj.kind, (obj.id,)


def store_keys(objects: list) -> list:
    """`store_key` of each object (all of one class, held by the inventory): block
    replicas' read column by column (a write-back's run names 100,000)."""
    if type(objects[0]) is BlockReplica:
        keys = objects[0][0].keys_at(list(map(_SECOND, objects)))
        return list(zip(repeat("blockreplica"), keys))
    return list(map(store_key, objects))


_FIRST, _SECOND = itemgetter(0), itemgetter(1)


def checked(cls, name, value):
    """`value` as field `name` of `cls` would store it (raises InvalidValue)."""
    return cls.__dict__[name].check(value)


def describe(obj) -> str:
    """How the change log names an object: `site T2_US_XYZ`, `blockreplica T2_X:ds#blk`."""
    cls = type(obj)  # the classes are not subclassed; `is` is cheaper than isinstance
    if cls is BlockReplica:
        return "blockreplica " + obj[0].label_at(obj[1])
    if cls is DatasetReplica:
        return f"{obj.kind} {obj.site.name}:{obj.dataset.name}"
    if cls is Block:
        return f"{obj.kind} {obj.full_name()}"
    return f"{obj.kind} {obj.name}"


def _restore(obj, changed: dict):
    """Undo `ChangeSet._set`: the old values back."""
    for name, (old, _) in changed.items():
        setattr(obj, name, old)


def _restore_many(objects: list, names: tuple, old: list):
    """Undo `ChangeSet.update_many`: each object's old values back, newest first (an
    object may come twice in a run)."""
    for obj, values in zip(reversed(objects), reversed(old)):
        for name, value in zip(names, values):
            setattr(obj, name, value)


class Updates:
    """The journal's entry for a run of updates (`ChangeSet.update_many`): the objects it
    changed that existed before, their store keys, the fields and, per object, the old
    and the new values (tuples in the order of `names`)."""

    __slots__ = ("objects", "keys", "names", "old", "new")

    def __init__(self, names: tuple, objects: list, keys: list, old: list, new: list):
        self.objects, self.keys, self.names, self.old, self.new = objects, keys, names, old, new

    def compact(self):
        """The run's change-log lines in the compact form `entry_lines` expands: the
        objects' names and the shown values, not yet the lines (see `journal_entry`)."""
        names, objects = self.names, self.objects
        if len(names) == 1:   # the bulk of a write-back: one field, every value changed
            old, new = list(map(_FIRST, self.old)), list(map(_FIRST, self.new))
        else:
            old, new = list(map(list, self.old)), list(map(list, self.new))
        if "group" in names:   # shown by name (the only field of a run that is not plain)
            old, new = _shown_rows(old, len(names)), _shown_rows(new, len(names))
        run = {"names": names, "old": old, "new": new}
        if type(objects[0]) is BlockReplica:
            table = objects[0][0]
            run.update(_replica_names(table, *_blocks_and_sites(table, map(_SECOND, objects))))
        else:
            run["labels"] = list(map(describe, objects))
        return run


class ColumnUpdate:
    """The journal's entry for a run of updates of one raw column (`ChangeSet.update_column`):
    a table's rows, the column's old and new values, lists side by side.  The objects and
    their store keys, which a ChangeSet keeps per object, are made only when something
    asks for them (`ChangeSet._spill`); a write-back's bulk goes to the store and the
    change log as these columns (`rows.change_rows`, `compact`)."""

    __slots__ = ("cls", "table", "rows", "name", "old", "new", "spilled", "_placed")

    def __init__(self, cls, table, rows: list, name: str, old: list, new: list):
        self.cls, self.table, self.rows, self.name = cls, table, rows, name
        self.old, self.new = old, new
        self.spilled = False   # its objects are in the ChangeSet's `ops` (see `_spill`)
        self._placed = None    # block replicas: `_blocks_and_sites` of the rows

    @property
    def names(self) -> tuple:
        return (self.name,)

    @property
    def objects(self) -> list:
        return list(map(_new_view, repeat(self.cls), zip(repeat(self.table), self.rows)))

    @property
    def keys(self) -> list:
        return store_keys(self.objects)

    def store_rows(self) -> list:
        """Each row's store key followed by its new value, as tuples: the parameters of
        the column's UPDATE (store/tables.py `update_sql`).  The values are the column's
        now: nothing changed these objects since (a change of one of them, or a run of
        the column at one of the rows, comes after `ChangeSet._spill`)."""
        if self.cls is BlockReplica:
            blocks, sites = self._blocks_and_sites()
            return list(zip(map(self.table.blocks.id.__getitem__, blocks), sites, self.new))
        return list(zip(map(self.table.id.__getitem__, self.rows), self.new))

    def compact(self):
        """As `Updates.compact` (the values of a raw column are shown as they are)."""
        run = {"names": self.names, "old": self.old, "new": self.new}
        if self.cls is BlockReplica:
            run.update(_replica_names(self.table, *self._blocks_and_sites()))
        else:
            run["labels"] = list(map(describe, self.objects))
        return run

    def _blocks_and_sites(self) -> tuple:
        """The block replicas' blocks and sites, read once for their store keys and their
        names."""
        if self._placed is None:
            self._placed = _blocks_and_sites(self.table, self.rows)
        return self._placed


def _blocks_and_sites(table, rows) -> tuple[list, list]:
    """(the block row, the site id) of each block replica at `rows` of `table`, as lists."""
    rows = list(rows)
    return list(map(table.block.__getitem__, rows)), list(map(table.site.__getitem__, rows))


def _shown_rows(values: list, width: int) -> list:
    if width == 1:
        return list(map(_shown, values))
    return [list(map(_shown, row)) for row in values]


def _replica_names(table, block_rows: list, site_ids: list) -> dict:
    """The names (`describe`) of block replicas of `table`, given their blocks' rows and
    their sites' ids, in parts, each site, dataset and block once: a write-back's run
    names a block's replicas one after the other, and most of a line is its dataset's and
    block's names."""
    blocks = table.blocks
    block_rows, site_ids = _numbered(block_rows), _numbered(site_ids)
    dataset_rows = _numbered(map(blocks.dataset.__getitem__, block_rows[0]))
    return {"sites": [table.sites[s].name for s in site_ids[0]],
            "datasets": blocks.datasets.names_at(dataset_rows[0]),
            "blocks": blocks.names_at(block_rows[0]), "of": dataset_rows[1],
            "block": block_rows[1], "site": site_ids[1]}


def _numbered(values) -> tuple[list, list]:
    """(the distinct values in order, the number of each value among them)."""
    values = list(values)
    number = dict(zip(dict.fromkeys(values), count()))
    return list(number), list(map(number.__getitem__, values))


def _shown(value):
    cls = type(value)
    if cls is Group:
        return value.name
    if cls is tuple:
        return f"{len(value)} files"
    return value


# The keys of a plain new file in a document, and the checks its columns pass.
_PLAIN_FILE_KEYS = frozenset(("name", "size", "adler32", "crc32", "md5"))
_NAME, _SIZE = itemgetter("name"), itemgetter("size")
_CHECKSUMS = tuple((name, File.__dict__[name].digits) for name in ("adler32", "crc32", "md5"))
_HEX = "0123456789abcdef"


def _file_columns(items) -> tuple | None:
    """(lfns, sizes, adler32s, crc32s, md5s) of a list of plain new files, each column
    checked as File's fields check a value, in passes of C over the column; None when
    anything is unusual (not a list of such objects, a value a field would refuse or
    change, such as an upper-case checksum): the files then go one by one."""
    if type(items) is not list or not items or set(map(type, items)) != {dict}:
        return None
    if not _PLAIN_FILE_KEYS.issuperset(set().union(*items)):
        return None
    try:
        lfns, sizes = list(map(_NAME, items)), list(map(_SIZE, items))
    except KeyError:
        return None
    if set(map(type, lfns)) != {str} or set(map(type, sizes)) != {int}:
        return None
    lengths = list(map(len, lfns))
    if (min(lengths) == 0 or max(lengths) > MAX_TEXT or not printable("".join(lfns))
            or min(sizes) < 0 or max(sizes) > MAX_COUNT):
        return None
    columns = [lfns, sizes]
    for name, digits in _CHECKSUMS:
        values = list(map(dict.get, items, repeat(name)))
        given = list(filter(None, values))
        if len(given) + values.count(None) != len(values):   # an empty string
            return None
        if given:
            if set(map(type, given)) != {str} or max(map(len, given)) > digits:
                return None
            text = "".join(given)
            if text.strip(_HEX):   # not only lower-case hexadecimal digits
                return None
        columns.append(values)
    return tuple(columns)


def _plain_names(names: list) -> bool:
    """Whether every name is a string that Text(required) takes as it is, and none is
    given twice (checked in C over the list)."""
    if not names or set(map(type, names)) != {str} or len(set(names)) != len(names):
        return False
    lengths = list(map(len, names))
    return min(lengths) > 0 and max(lengths) <= MAX_TEXT and printable("".join(names))


def _counts(values: list) -> bool:
    """Whether every value is one Count (and Time) takes as it is."""
    return (not values or set(map(type, values)) == {int}
            and min(values) >= 0 and max(values) <= MAX_COUNT)


def _uncount(usage, contributions):
    """Undo `ChangeSet.new_block_replicas`' counting of its replicas in the usage."""
    for contribution in reversed(contributions):
        usage.add(contribution, -1)


def _totals_conflict(obj, total, expected, actual, parts) -> Conflict:
    return Conflict(f"{describe(obj)}: {total} is {expected} in the request but {actual} by "
                    f"its {parts}", field=total)


# The change log's line of a new file (most lines of an injection): (lfn, size, adler32,
# crc32, md5) -> str by `%`, mapped over the columns' rows without a Python frame (a
# third cheaper than str.format's parsing of its fields for each line).


def journal_entry(journal) -> str | bytes:
    """The change log's entry of a ChangeSet's journal (one line per change): the lines
    as text, or, when it holds runs of updates (a write-back) or new files, blocks or
    block replicas in bulk (an injection), the compact form the change log's writer expands (`entry_lines`), as
    JSON: a write-back's 100,000 lines, or an injection's, are neither formatted nor
    committed in full before its commit, only the names and values they are made of.
    Values JSON cannot hold as they are (a lone surrogate, a huge number) leave the
    entry as text."""
    entry, lines = [], []
    for how, obj, detail in journal:
        if how in ("updates", "column", "files", "created many"):
            entry += lines
            entry.append(_compact(how, obj))
            lines = []
        else:
            _add_lines(lines, how, obj, detail)
    if not entry:
        return "\n".join(lines)
    entry += lines
    try:
        return orjson.dumps(entry)
    except orjson.JSONEncodeError:
        return "\n".join(entry_lines(entry))


def _compact(how: str, obj) -> dict:
    """A run of the journal in the compact form `entry_lines` expands: updates (`Updates`,
    `ColumnUpdate`), new files' columns, new blocks' or block replicas' (`_created_many`)."""
    if how == "files":
        return {"files": obj}
    if how == "created many":
        return _CREATED[type(obj[0])](obj[0][0], list(map(_SECOND, obj)))
    return obj.compact()


def _add_lines(lines: list, how: str, obj, detail):
    if how == "created" and type(obj) is File:
        lines.append(FILE_LINE % File.values(obj)[1:])
        return
    if how == "updated":
        text = " ".join([f"{n}: {_shown(old)!r} -> {_shown(new)!r}"
                         for n, (old, new) in detail.items()])
    elif how == "created":
        text = " ".join([f"{n}={_shown(getattr(obj, n))!r}" for n in type(obj).FIELDS])
    else:
        text = ""
    lines.append(f"{how} {describe(obj)} {text}".rstrip())


def _created_blocks(table, rows: list) -> dict:
    """New blocks (rows of their table) in the compact form of their change-log lines
    (`entry_lines`): their values column by column, each dataset's name once."""
    datasets = _numbered(map(table.dataset.__getitem__, rows))
    return {"created": "block", "datasets": table.datasets.names_at(datasets[0]),
            "of": datasets[1], "names": table.names_at(rows),
            **_columns(table, rows, ("size", "num_files", "is_open", "last_update"))}


def _created_block_replicas(table, rows: list) -> dict:
    """New block replicas (rows of their table) in the compact form of their change-log
    lines (`entry_lines`): their names in parts (`_replica_names`), their values column
    by column."""
    groups = table.group.__getitem__
    names = {group: table.groups[group].name for group in set(map(groups, rows))}
    held = map(table.files.get, rows)
    return {"created": "blockreplica", **_replica_names(table, *_blocks_and_sites(table, rows)),
            "group": list(map(names.__getitem__, map(groups, rows))),
            **_columns(table, rows, ("is_custodial", "size", "last_update")),
            "file_ids": [None if ids is None else f"{len(ids)} files" for ids in held]}


def _columns(table, rows: list, names: tuple) -> dict:
    """{name: the values of the column at `rows`} (flags as true or false)."""
    columns = {name: list(map(getattr(table, name).__getitem__, rows)) for name in names}
    for flag in {"is_open", "is_custodial"}.intersection(names):
        columns[flag] = list(map(bool, columns[flag]))
    return columns


_CREATED = {Block: _created_blocks, BlockReplica: _created_block_replicas}
def _set_column(objects: list, column, check, values: list) -> tuple[list, list, list]:
    """`set_many` of one raw field (fields.Column) of inventory objects: `column` is the
    field's column of their table.  A run of distinct objects whose values are whole
    numbers the field takes as they are (the bulk of a write-back) is checked, compared
    and set in passes of C over the run; any other, value by value."""
    rows = list(map(_SECOND, objects))
    if not (_counts(values) and len(set(rows)) == len(rows)):
        values = list(map(check, values))
        changed, old_values, new_values = [], [], []
        for obj, row, value in zip(objects, rows, values):
            old = column[row]
            if old != value:
                changed.append(obj)
                old_values.append((old,))
                new_values.append((value,))
                column[row] = value
        return changed, old_values, new_values
    _, old, values, objects = _put_column(column, rows, values, objects)
    return objects, list(zip(old)), list(zip(values))


def _put_column(column, rows: list, values: list, *more) -> list:
    """Set column[row] to its value for each of the (distinct) rows, in passes of C:
    [rows, old values, new values, *more] of those whose value changed (`more`: lists
    along `rows`)."""
    parts = [rows, list(map(column.__getitem__, rows)), values, *more]
    differ = list(map(ne, parts[1], values))
    if not all(differ):
        parts = [list(compress(part, differ)) for part in parts]
    list(map(column.__setitem__, parts[0], parts[2]))
    return parts


def _restore_column(column, rows: list, old: list):
    """Undo `ChangeSet.update_column`."""
    list(map(column.__setitem__, rows, old))


def set_many(objects: list, names: tuple, values: list) -> tuple[list, list, list]:
    """Set the fields `names` of each object (all of one class, held by the inventory) to
    its row of `values`, in order: (the objects whose values changed, their old values,
    their new values, tuples in the order of `names`).  Every value is checked before any
    is set; a value the object's table refuses as it is set (a block's size or num_files
    its dataset's sum refuses, datasets.py) puts the old values back and is raised.  What
    `ChangeSet.update_many` and an application's plain updates (apps/proxy.py) set.
    No names (`inventory.update(Site('S1'))` of an existing site) change nothing."""
    if not names:
        return [], [], []
    fields = [type(objects[0]).__dict__[n] for n in names]
    changed, old_values, new_values = [], [], []
    try:
        if len(names) == 1:   # the bulk of a write-back: one field
            field = fields[0]
            check, get, put = field.check, attrgetter(names[0]), field.put
            new = [value for value, in values]
            if field.raw:   # straight in the table's column (one table: the inventory's)
                return _set_column(objects, getattr(objects[0][0], names[0]), check, new)
            new = list(map(check, new))
            for obj, value in zip(objects, new):
                old = get(obj)
                if old is not value and old != value:
                    changed.append(obj)
                    old_values.append((old,))
                    new_values.append((value,))
                    put(obj, value)
        else:
            new = [tuple([f.check(v) for f, v in zip(fields, row)]) for row in values]
            get = attrgetter(*names)
            for obj, row in zip(objects, new):
                old = get(obj)
                if old == row:   # as `_set`: each field is the same object or an equal one
                    continue
                changed.append(obj)
                old_values.append(old)
                new_values.append(row)
                for field, value in zip(fields, row):
                    field.put(obj, value)
    except InvalidValue:
        _restore_many(changed, names, old_values)
        raise
    return changed, old_values, new_values


class ChangeSet:
    def __init__(self, inventory, now: int | None = None):
        self.inventory = inventory
        self.now = int(time.time()) if now is None else now
        self._undo = Undo()    # the one undo log's kind (tables.py): steps, newest last
        self._unsorted = {}    # id -> dict an undone removal put an entry back into
        self._checks = []
        self.ops = {}          # (kind, key) -> object to write, or None to delete
        self._seen = {}        # (kind, key) -> "created" | "updated"
        self._seen_kinds = set()   # the kinds of the keys `_seen` was given
        self.deleted = Counter()
        self.journal = []      # (how, object, {field: (old, new)}) for the change log;
                               # ("updates", Updates, None) for a run of updates,
                               # ("column", ColumnUpdate, None) for one of a column,
                               # ("created many", [objects], None) for _created_many
        self.held = {}         # block -> its id: blocks whose files this change uses
                               # (filecache.py; the id read before an undo takes the row)
        self._net = Counter()  # kind -> objects created less objects deleted, for `totals`
        self.bulk_files = 0    # files `new_files` created (not in `_seen`)
        self.unchecked = []    # (LFNs, block name, where) of new_files, for `in_store`
        self.columns = []      # the ColumnUpdates whose objects are not in `ops` (`_spill`)

    # ----------------------------------------------------------- bookkeeping
    def _touch(self, obj, how) -> str:
        """Write `obj` at the commit; returns what this ChangeSet did to it ("created" wins)."""
        key = store_key(obj)
        self._seeing(key[0])
        self.ops[key] = obj
        self.inventory.applied += 1
        if how != "created":
            return self._seen.setdefault(key, how)
        self._seen[key] = how
        self.journal.append(("created", obj, None))
        self._tally(obj.kind, 1)
        return how

    def _tally(self, kind, n: int):
        """The inventory holds `n` more objects of `kind` (`rollback` takes them back)."""
        self.inventory.totals[kind] += n
        self._net[kind] += n

    def _gone(self, obj):
        if self.columns:
            self._spill()
        key = store_key(obj)
        self.ops[key] = None
        self.inventory.applied += 1
        self.journal.append(("deleted", obj, None))
        self._tally(obj.kind, -1)
        if self._seen.pop(key, None) != "created":
            self.deleted[PLURAL[obj.kind]] += 1

    def _files(self, block) -> dict:
        """The block's files, held in memory until `release`."""
        if block not in self.held:
            self.held[block] = block.id
            return self.inventory.file_cache.hold(block)
        return self.inventory.file_cache.editable(block)

    def discard(self):
        """Give the change up: undo it, and let its files go."""
        self.rollback()
        self.release()

    def release(self):
        """Once committed or undone: the files this change used may leave memory, and the
        undo log goes (its closures hold every object the change removed)."""
        held, self.held = self.held, {}
        self.inventory.file_cache.release(held)
        self._undo.clear()
        self._unsorted.clear()
        self._net.clear()
        if self.deleted:
            collector.dropped(sum(self.deleted.values()))

    def keep(self):
        """Keep what was applied as it is, for good, and start afresh: what an application's
        copy does after each of its calls (a copy that is never committed; the files its
        changes use stay held until it ends)."""
        self._undo.clear()
        self._forget_applied()
        self.held = {}

    def _forget_applied(self):
        """Clear the record of what was applied: the rows, the journal, the counts (not
        the undo log, nor `unchecked`, which a refusal reads after the rollback)."""
        self._unsorted.clear()
        self._net.clear()
        self._checks.clear()
        self.ops.clear()
        self._seen.clear()
        self._seen_kinds.clear()
        self.columns.clear()
        self.bulk_files = 0
        self.deleted.clear()
        self.journal.clear()

    def created(self, obj) -> bool:
        """True for an object this ChangeSet created (it had no state before the request)."""
        return self._seen.get(store_key(obj)) == "created"

    def _set(self, obj, values: dict) -> bool:
        """Set checked field values; True when something changed.  Every value is checked
        before any is set: a bad one must not leave the others set without an undo (nor
        may a block's size or num_files that its dataset's sum refuses, datasets.py)."""
        fields = type(obj).__dict__
        changed = {}  # name -> (old, new): the undo's and the change log's
        checked_values = [(n, fields[n].check(v)) for n, v in values.items()]
        usage = self.inventory.usage
        # `usage.active` and the kinds `affected` may name, read inline: this runs for
        # every object a request touches
        if usage.tests and obj.kind in parts.COUNTED_KINDS:
            tracked = parts.affected(obj, values)
            before = [usage.contribution(r) for r in tracked]
        else:
            tracked = ()
        try:
            for name, value in checked_values:
                current = getattr(obj, name)
                if current is not value and current != value:
                    setattr(obj, name, value)
                    changed[name] = (current, value)
        except InvalidValue:
            _restore(obj, changed)
            raise
        if not changed:
            return False
        self._undo.call(partial(_restore, obj, changed))
        if tracked:
            self._move_usage(tracked, before)
        if self._touch(obj, "updated") != "created":
            self.journal.append(("updated", obj, changed))
        return True

    def update_many(self, objects: list, names: tuple, values: list):
        """Set the fields `names` of each object (all of one class, held by the inventory)
        to its row of `values`, in order, as an update of each would: fields that change
        nothing else (no sums to check, no files).  A write-back's runs of updates come
        this way, checked and applied in one pass with one undo step and one journal
        entry for the run.  Every value is checked before any is set; a block's size or
        num_files its dataset's sum refuses (datasets.py) leaves the run unapplied."""
        if not objects:
            return
        cls = type(objects[0])
        if self.inventory.usage.tests and parts.may_move(cls.kind, names):
            for obj, row in zip(objects, values):   # usage moves object by object
                self._set(obj, dict(zip(names, row)))
            return
        changed, old_values, new_values = set_many(objects, names, values)
        if not changed:
            return
        self._undo.call(_restore_many, changed, names, old_values)
        self._touch_many(changed, names, old_values, new_values)

    def _touch_many(self, objects: list, names: tuple, old: list, new: list):
        """`_touch` of each updated object, journaled as one `Updates` entry (an object
        created by this ChangeSet is journaled as created only)."""
        self._seeing(objects[0].kind)
        keys = store_keys(objects)
        self.ops.update(zip(keys, objects))
        self.inventory.applied += len(objects)
        seen = list(map(self._seen.setdefault, keys, repeat("updated")))
        if "created" in seen:
            kept = [i for i, how in enumerate(seen) if how != "created"]
            objects, keys, old, new = ([column[i] for i in kept]
                                       for column in (objects, keys, old, new))
        if objects:
            self.journal.append(("updates", Updates(names, objects, keys, old, new), None))

    def update_column(self, cls, table, rows: list, name: str, values: list) -> bool:
        """`update_many` of one raw field (fields.Column) of the objects at `rows` of the
        inventory's `table` (live ones), set in passes of C over the run and journaled as
        one ColumnUpdate: the bulk of a write-back, which goes to the store and the change
        log as columns, not object by object.  False, nothing done, unless every value is
        one the field takes as it is, the rows are distinct, no object of their kind is
        known one by one to this ChangeSet yet (none was created: each row holds an object
        that existed before) and none of the rows is in another such run; the caller then
        goes object by object."""
        if (cls.kind in self._seen_kinds or not cls.__dict__[name].raw or not _counts(values)
                or len(set(rows)) != len(rows)
                or self.inventory.usage.tests and parts.may_move(cls.kind, (name,))
                or any(run.table is table and not set(run.rows).isdisjoint(rows)
                       for run in self.columns)):
            return False
        column = getattr(table, name)
        rows, old, values = _put_column(column, rows, values)
        if rows:
            self._undo.call(_restore_column, column, rows, old)
            run = ColumnUpdate(cls, table, rows, name, old, values)
            self.columns.append(run)
            self.journal.append(("column", run, None))
            self.inventory.applied += len(rows)
        return True

    def _seeing(self, kind):
        """Before `_seen` is given objects of `kind`: the pending column runs' objects go
        first (`_spill`), and a run of a column of `kind` now goes object by object."""
        if self.columns:
            self._spill()
        self._seen_kinds.add(kind)

    def _spill(self):
        """Put the objects of the pending column runs in `ops` and `_seen`, as
        `_touch_many` would have: before anything else touches an object (one of theirs,
        maybe), so that an object is written and counted once, as its last change left
        it."""
        for run in self.columns:
            self._seen_kinds.add(run.cls.kind)
            objects = run.objects
            keys = store_keys(objects)
            self.ops.update(zip(keys, objects))
            self._seen.update(dict.fromkeys(keys, "updated"))
            run.spilled = True
        self.columns.clear()

    def _move_usage(self, replicas, before):
        """The replicas' usage moves from `before` to what they are now (undoably)."""
        usage = self.inventory.usage
        moves = []
        for replica, old in zip(replicas, before):
            new = usage.contribution(replica)
            if new != old:
                usage.move(old, new)
                moves.append((old, new))
        if moves:
            def undo():
                for old, new in reversed(moves):
                    usage.move(new, old)
            self._undo.call(undo)

    def _count(self, replica, sign: int):
        """A replica enters (1) or leaves (-1) the usage, undoably."""
        usage = self.inventory.usage
        if not usage.tests:   # no partition (`usage.active`)
            return
        contribution = usage.count(replica, sign)
        if contribution is not None:
            self._undo.call(partial(usage.add, contribution, -sign))

    def _new_id(self, kind) -> int:
        ids = self.inventory.next_ids
        new = ids[kind]
        ids[kind] = new + 1
        self._undo.call(lambda: ids.__setitem__(kind, new))
        return new

    def _add(self, container: dict, key, value):
        """Insert into a dict, undoably."""
        container[key] = value
        self._undo.call(lambda: container.pop(key))

    def _remove(self, container: dict, key):
        value = container.pop(key)
        self._undo.call(lambda: self._put_back(container, key, value))

    def _put_back(self, container: dict, key, value):
        """Undo a removal.  The dicts list objects in creation order, which is id order
        (as the loader builds them): `rollback` sorts the ones an entry went back into,
        so that a failed request leaves no trace (the LFN index, never listed, is spared)."""
        container[key] = value
        if container is not self.inventory.file_cache.by_lfn:
            self._unsorted[id(container)] = container

    def check_later(self, check):
        """Run `check` (which raises on failure) once the whole request is applied."""
        self._checks.append(check)

    def finish(self):
        for check in self._checks:
            check()
        self._checks.clear()

    def rollback(self):
        """Undo every step, newest first: the inventory is as before the ChangeSet."""
        self.inventory.undone += 1
        self._undo.rollback()
        for kind, n in self._net.items():
            self.inventory.totals[kind] -= n
        for container in self._unsorted.values():
            entries = sorted(container.items(), key=lambda entry: entry[1].id)
            container.clear()
            container.update(entries)
        self._forget_applied()

    def counts(self) -> dict:
        counts = {"created": {}, "updated": {}, "deleted": dict(self.deleted)}
        # Counted in C (a write-back may have seen 100,000 objects), in order of appearance.
        tally = Counter(zip(self._seen.values(), map(itemgetter(0), self._seen)))
        for run in self.columns:   # after everything in `_seen` (`_seeing`)
            tally["updated", run.cls.kind] += len(run.rows)
        if self.bulk_files:
            tally["created", "file"] += self.bulk_files
        for (how, kind), n in tally.items():
            counts[how][PLURAL[kind]] = n
        return counts

    # --------------------------------------------------- create or update
    def _by_name(self, table: dict, cls, name, fields: dict, defaults=None):
        """Create (with `defaults` under the given fields) or update a site or a group:
        the objects the inventory keeps in a dict by name."""
        obj = table.get(name)
        if obj is None:
            obj = cls(name, **{**(defaults or {}), **fields})
            obj.id = self._new_id(cls.kind)
            self._add(table, name, obj)
            # the replicas' columns hold sites and groups by id
            replicas = self.inventory.block_replicas
            self._add(replicas.sites if cls is Site else replicas.groups, obj.id, obj)
            self._touch(obj, "created")
        else:
            self._set(obj, fields)
        return obj

    def site(self, name, fields: dict) -> Site:
        return self._by_name(self.inventory.sites, Site, name, fields)

    def group(self, name, fields: dict) -> Group:
        if name is None:
            raise InvalidValue("the null group cannot be changed", field="name")
        return self._by_name(self.inventory.groups, Group, name, fields)

    def dataset(self, name, fields: dict) -> Dataset:
        if isinstance(name, str) and "#" in name and name not in self.inventory.datasets:
            raise InvalidValue(f"dataset name {name!r} contains '#', which separates the "
                               f"dataset from the block in a block's name (dataset#block)",
                               field="name")
        dataset = self.inventory.datasets.get(name)
        if dataset is not None:
            self._set(dataset, fields)
            return dataset
        name = checked(Dataset, "name", name)
        values = {n: checked(Dataset, n, v) for n, v in
                  {**_DATASET_DEFAULTS, "last_update": self.now, **fields}.items()}
        dataset, undo = self.inventory.dataset_table.add(self._new_id("dataset"), name,
                                                         **values)
        self._undo.call(undo)
        self._touch(dataset, "created")
        return dataset

    def block(self, dataset: Dataset, name, fields: dict, where=nullcontext) -> Block:
        """Create or update a block; a given size or num_files is checked at the end
        (see `expect_totals`)."""
        fields = dict(fields)
        totals = {total: fields.pop(total) for total in ("size", "num_files") if total in fields}
        block = dataset.find_block(name)
        if block is not None:
            self._set(block, fields)
        else:
            values = {n: checked(Block, n, v)
                      for n, v in {**_BLOCK_DEFAULTS, "last_update": self.now, **fields}.items()}
            name = checked(Block, "name", name)
            block, undo = self.inventory.blocks.add(self._new_id("block"), dataset, name,
                                                    **values)
            self._undo.call(undo)
            self.inventory.file_cache.created(block)
            self._touch(block, "created")
            for replica in list(dataset.replicas):
                if replica.growing:
                    self._new_block_replica(replica, block, replica.group, files=())
        self.expect_totals(block, totals, where)
        return block

    def expect_totals(self, obj: Block | Dataset, totals: dict, where=nullcontext):
        """Check, once the whole request is applied, that the `size` and `num_files` it
        gave for a block (or a dataset) are the sums over its files (or blocks); inside
        `where()`, so that the error can still say where they were given."""
        for total, value in totals.items():
            if type(value) is not int or not 0 <= value <= MAX_COUNT:
                raise InvalidValue(f"{type(obj).__name__}.{total} must be an integer from 0 "
                                   f"to {MAX_COUNT}, not {value!r}", field=total)
        parts = "files" if type(obj) is Block else "blocks"

        def check():
            for total, expected in totals.items():
                actual = getattr(obj, total)
                if actual != expected:
                    with where():
                        raise _totals_conflict(obj, total, expected, actual, parts)
        if totals:
            self.check_later(check)

    def new_blocks(self, dataset: Dataset, names: list, is_open: list, last_update: list,
                   sizes: list, num_files: list, where) -> list | None:
        """Create these blocks of `dataset` at once, empty (the blocks of a dataset in an
        injection): one undo step, their rows appended to the columns together.

        One list per field, a value per block (None: not given); `sizes` and `num_files`
        are checked at the end as `expect_totals` does, inside `where(i)`.  Returns the
        Blocks, or None, having changed nothing, unless every value is one the fields
        take as it is, every name is new in the dataset and given once, and the dataset
        has no replica (which would give a new block replicas): the caller then goes
        block by block through `block`, which says precisely what is wrong where."""
        if dataset.replicas or not _plain_names(names):
            return None
        is_open = [_BLOCK_DEFAULTS["is_open"] if v is None else v for v in is_open]
        last_update = [self.now if v is None else v for v in last_update]
        if (not {bool}.issuperset(map(type, is_open)) or not _counts(last_update)
                or not _counts([v for v in sizes if v is not None])
                or not _counts([v for v in num_files if v is not None])):
            return None
        if len(dataset.blocks) and any(map(dataset.blocks.find, names)):
            return None
        table, ids = self.inventory.blocks, self.inventory.next_ids
        first = ids["block"]
        ids["block"] = first + len(names)
        self._undo.call(ids.__setitem__, "block", first)
        rows, undo = table.add_many(first, dataset, names, is_open, last_update)
        self._undo.call(undo)
        blocks = list(map(_new_view, repeat(Block), zip(repeat(table), rows)))
        for block in blocks:
            self.inventory.file_cache.created(block)
        self._created_many("block", blocks,
                           list(zip(repeat("block"), zip(range(first, first + len(names))))))

        def check():   # expect_totals' check of each block, in order
            for i, given in enumerate(zip(sizes, num_files, map(table.size.__getitem__, rows),
                                          map(table.num_files.__getitem__, rows))):
                for total, expected, actual in (("size", given[0], given[2]),
                                                ("num_files", given[1], given[3])):
                    if expected is not None and expected != actual:
                        with where(i):
                            raise _totals_conflict(blocks[i], total, expected, actual, "files")
        if sizes.count(None) + num_files.count(None) < 2 * len(sizes):
            self.check_later(check)
        return blocks

    def new_block_replicas(self, owners: list, counts: list, blocks: list, groups: list,
                           is_custodial: list, last_update: list, sizes: list,
                           files: list) -> list | None:
        """Create replicas of these blocks at once, the block replicas of an injection:
        `counts[i]` of them (at least one) of blocks of `owners[i]`'s dataset at its site,
        in that order; one undo step, their rows appended to the columns together.

        One list per field, a value per replica (None: not given; a group is a Group of
        the inventory, None for the owner's; files, None: complete, else the LFNs it
        holds, of a block whose new files this change holds packed: `_packed_files`).
        Returns the BlockReplicas, or None, having changed nothing, unless every block
        is given once per site and has no replica at that site yet, every value is one
        the fields take as it is, and each size given is the replica's by its files:
        the caller then goes replica by replica through `block_replica`."""
        rows = [block[1] for block in blocks]
        site_ids = repeated([owner.site.id for owner in owners], counts)
        table = self.inventory.block_replicas
        if (len(set(zip(rows, site_ids))) != len(rows)
                or any(map(table.at_site, rows, site_ids))):
            return None
        is_custodial = [_BLOCK_REPLICA_DEFAULTS["is_custodial"] if v is None else v
                        for v in is_custodial]
        last_update = [self.now if v is None else v for v in last_update]
        if not {bool}.issuperset(map(type, is_custodial)) or not _counts(last_update):
            return None
        held = [None if lfns is None else self._packed_files(block, lfns)
                for block, lfns in zip(blocks, files)]
        if held.count(None) != files.count(None):
            return None
        block_sizes = self.inventory.blocks.size
        replica_sizes = [block_sizes[row] if found is None else found[1]
                         for found, row in zip(held, rows)]
        if any(size is not None and size != actual
               for size, actual in zip(sizes, replica_sizes)):
            return None
        defaults = repeated([owner.group.id for owner in owners], counts)
        group_ids = [default if group is None else group.id
                     for group, default in zip(groups, defaults)]
        added, undo = table.add_many([owner[1] for owner in owners], counts, rows, group_ids,
                                     is_custodial, last_update, replica_sizes,
                                     {i: found[0] for i, found in enumerate(held)
                                      if found is not None and found[0] is not None})
        self._undo.call(undo)
        replicas = list(map(_new_view, repeat(BlockReplica), zip(repeat(table), added)))
        ids = self.inventory.blocks.id
        self._created_many("blockreplica", replicas,
                           list(zip(repeat("blockreplica"),
                                    zip(map(ids.__getitem__, rows), site_ids))))
        usage = self.inventory.usage
        if usage.tests:   # partitions are defined (`usage.active`)
            counted = list(filter(None, map(usage.count, replicas)))
            if counted:
                self._undo.call(_uncount, usage, counted)
        return replicas

    def _packed_files(self, block, lfns) -> tuple | None:
        """(file ids, size) of a new replica of `block` holding the files `lfns`, as
        `block_replica` would store them (ids sorted, None when it holds them all), for
        a block whose files this change holds packed as `new_files` added them; None
        when not so, or an LFN is not one of them."""
        packed = self.inventory.file_cache.packed(block) if type(lfns) is list else None
        if packed is None:
            return None
        at = set(map(packed.index, lfns))
        if -1 in at:
            return None
        size = sum(map(packed.sizes.__getitem__, at))
        if len(at) == len(packed):
            return None, size
        return tuple(sorted(map(packed.ids.__getitem__, at))), size

    def _created_many(self, kind, objects: list, keys: list):
        """`_touch` of each of these objects, all just created."""
        self._seeing(kind)
        self.ops.update(zip(keys, objects))
        self._seen.update(dict.fromkeys(keys, "created"))
        self.journal.append(("created many", objects, None))
        self.inventory.applied += len(objects)
        self._tally(kind, len(objects))

    def file(self, block: Block, lfn, fields: dict, site: Site | None = None) -> File:
        cache = self.inventory.file_cache
        existing = cache.find(lfn)
        if existing is not None:
            if existing.block != block:
                raise Conflict(f"file {lfn} belongs to block {existing.block.full_name()}, "
                               f"not {block.full_name()}", field="name")
            return self._update_file(existing, fields)
        if "size" not in fields:
            raise InvalidValue(f"file {lfn}: a new file needs a size", field="size")
        if site is None and block.replicas and not self.created(block):
            sites = ", ".join(sorted(r.site.name for r in block.replicas))
            raise InvalidValue(
                f"file {lfn}: block {block.full_name()} already has replicas (at {sites}); "
                f"say at which site the new file is present (a document's file: \"site\"; "
                f"an application: inventory.update(file, site=NAME))", field="site")
        new = File(lfn, block, **fields)
        target = None
        if site is not None:
            target = block.find_replica(site) or self._file_replica(block, site)
        files = self._files(block)
        complete = [r for r in block.replicas if r != target and r.is_complete()]
        previous = tuple(sorted(f.id for f in files.values())) if complete else ()
        new.id = self._new_id("file")
        self._add(files, lfn, new)
        self._add(cache.by_lfn, lfn, new)
        self._touch(new, "created")
        self._set(block, {"size": block.size + new.size, "num_files": block.num_files + 1})
        for replica in complete:
            self._set(replica, {"file_ids": previous})
        if target is not None:
            self._put_files(target, (*self._present(target), new.id))
        return new

    def new_files(self, batches: list) -> list | None:
        """Add the new files of blocks without replicas at once, the bulk of an injection.

        `batches` are (block, the document's file objects ({"name": lfn, "size": ...}),
        `where(i)` locating its item i in errors).  Returns the LFNs of each, or None,
        having changed nothing, unless every file is new, with a size and valid fields
        (checked a column at a time over all the batches, _file_columns), its LFN given
        once and held by no block in memory, and no block has replicas: the caller then
        takes fewer, or the files one by one through `file`, which says precisely what
        is wrong where (or handles the replicas and updates).  A file of another block
        in the store is left to the store's unique index: a commit it refuses is then
        explained by `in_store`.  The files go to the store as rows (NEW_FILES), to the
        change log as lines, and to their block packed when it is one this change
        created and the store will have them (packed_runs, FileCache.add_new), else as
        File objects.
        """
        if not all([type(items) is list and items and not block.replicas
                    for block, items, _ in batches]):
            return None
        columns = _file_columns([item for _, items, _ in batches for item in items])
        if columns is None:
            return None
        lfns = columns[0]
        cache = self.inventory.file_cache
        held = [self._files(block) for block, _, _ in batches]  # indexed in by_lfn now
        if len(set(lfns)) != len(lfns) or not cache.by_lfn.keys().isdisjoint(lfns):
            return None
        once = len({block[1] for block, _, _ in batches}) == len(batches)
        packed = [once and cache.source is not None and not files and self.created(block)
                  for (block, _, _), files in zip(batches, held)]
        ids = self.inventory.next_ids
        bounds = list(pairwise(accumulate([len(items) for _, items, _ in batches],
                                          initial=0)))
        runs = packed_runs(ids["file"], columns, list(compress(bounds, packed)))
        totals = list(accumulate(columns[1], initial=0))   # a block's size: a difference
        first = ids["file"]
        ids["file"] = first + len(lfns)
        added = [lfns[start:end] for start, end in bounds]   # each block's LFNs

        def undo():   # first: a block's sum may be refused half-way
            ids["file"] = first
            for (block, _, _), files, lfns, kept in zip(batches, held, added, packed):
                if kept:
                    cache.forget_new(block)
                    continue
                for lfn in lfns:
                    files.pop(lfn, None)
                    cache.by_lfn.pop(lfn, None)
        self._undo.call(undo)
        cache.add_new([block for (block, _, _), kept in zip(batches, packed) if kept],
                      list(compress(added, packed)), runs)
        sums = {}   # block -> the size and num_files its new files add
        for (block, _, where), files, kept, run, (start, end) in zip(batches, held, packed,
                                                                     added, bounds):
            if not kept:
                self._add_files(block, files, first + start,
                                *[column[start:end] for column in columns])
            size, n = sums.get(block, (0, 0))
            sums[block] = size + totals[end] - totals[start], n + end - start
            self.unchecked.append((run, block.full_name(), where))
        # the rows and the change log's lines of every batch at once, in order
        block_ids = repeated([block.id for block, _, _ in batches], list(map(len, added)))
        self.ops[NEW_FILES, (first,)] = list(zip(range(first, first + len(lfns)), block_ids,
                                                 *columns))
        self.journal.append(("files", columns, None))   # their lines made after the commit
        self._add_to_sums(sums, packed if once else [])
        self.bulk_files += len(lfns)
        self.inventory.applied += 1
        self._tally("file", len(lfns))
        return added

    def _add_to_sums(self, sums: dict, created: list):
        """Grow the blocks' size and num_files by `sums` ({block: what its new files
        add}): those `created` by this change (flags in the same order) as columns, with
        one undo and no journal entry (their lines say what they hold: BlockTable.grow);
        the others, or all of them when that refuses a value, through `update_many`,
        which journals them and raises what a block or its dataset refuses."""
        blocks = list(sums)
        new = list(compress(blocks, created))
        if new and not (self.inventory.usage.tests and parts.may_move(Block.kind, _TOTALS)):
            undo = self.inventory.blocks.grow([block[1] for block in new],
                                              *zip(*map(sums.__getitem__, new)))
            if undo is not None:
                self._undo.call(undo)
                blocks = [block for block, made in zip(blocks, created) if not made]
        self.update_many(blocks, _TOTALS, [(block.size + size, block.num_files + n)
                                           for block, (size, n) in zip(blocks, map(
                                               sums.__getitem__, blocks))])

    def _add_files(self, block, files: dict, first: int, lfns, sizes, adler32, crc32, md5):
        """`new_files` in memory for one block whose `files` are held as File objects,
        its ids from `first` on; the undo, the sums, the rows and the lines are the
        caller's."""
        new = dict(zip(lfns, map(File.stored, repeat(block), lfns, sizes,
                                 range(first, first + len(lfns)), adler32, crc32, md5)))
        files.update(new)
        self.inventory.file_cache.by_lfn.update(new)

    def in_store(self):
        """The error for the first new file (of `new_files`) whose LFN a file of another
        block holds in the store, located in the document; None when there is none.
        For a commit the store refused, and for a dry run (which commits nothing)."""
        for lfns, block_name, where in self.unchecked:
            found = self.inventory.file_cache.stored(lfns)
            if found is not None:
                i, other = found
                try:
                    with where(i):
                        raise Conflict(f"file {lfns[i]} belongs to block {other}, not "
                                       f"{block_name}", field="name")
                except Conflict as exc:
                    return exc
        return None

    def _file_replica(self, block, site):
        """The (new, empty) replica at the site a new file names."""
        owner = block.dataset.find_replica(site)
        if owner is None:
            raise NotFound(f"dataset {block.dataset.name} has no replica at site {site.name}, "
                           f"where a file of block {block.name} is said to be", field="site")
        return self._new_block_replica(owner, block, owner.group, files=())

    def _present(self, replica) -> tuple:
        if replica.file_ids is None:
            return tuple(f.id for f in self._files(replica.block).values())
        return replica.file_ids

    def _put_files(self, replica, file_ids):
        """Give the replica these files; it becomes complete when it has all of them."""
        ids = set(file_ids)
        by_id = {f.id: f for f in self._files(replica.block).values()}
        size = sum(by_id[i].size for i in ids)
        stored = None if len(ids) == len(by_id) else tuple(sorted(ids))
        self._set(replica, {"file_ids": stored, "size": size})

    def _update_file(self, f: File, fields: dict) -> File:
        f = self._files(f.block)[f.lfn]  # the object held in memory (`f` may be a dropped one)
        old_size = f.size
        if not self._set(f, fields) or f.size == old_size:
            return f
        block = f.block
        delta = f.size - old_size
        self._set(block, {"size": block.size + delta})
        for replica in block.replicas:
            if replica.file_ids is None or f.id in replica.file_ids:
                self._set(replica, {"size": replica.size + delta})
        return f

    def dataset_replica(self, dataset: Dataset, site: Site, fields: dict) -> DatasetReplica:
        replica = dataset.find_replica(site)
        if replica is not None:
            self._set(replica, fields)
            return replica
        values = {n: checked(DatasetReplica, n, v) for n, v in
                  {"growing": bool(dataset.replicas), "group": self.inventory.groups[None],
                   **fields}.items()}
        replica, undo = self.inventory.dataset_replicas.add(dataset, site, **values)
        self._undo.call(undo)
        self._touch(replica, "created")
        return replica

    def block_replica(self, owner: DatasetReplica, block: Block, fields: dict, files=KEEP,
                      adding=False) -> BlockReplica:
        """Create or update a block replica.  `files`: KEEP, a new replica is complete and
        an existing one keeps what it holds; None, it is complete; LFNs, it holds those
        (with `adding`, those as well as what it held).  A given size must agree."""
        if block.dataset != owner.dataset:
            raise Conflict(f"block {block.full_name()} is not a block of dataset "
                           f"{owner.dataset.name}", field="block")
        fields = dict(fields)
        size = fields.pop("size", None)
        file_ids = () if files is KEEP or files is None else self._file_ids(block, files)
        replica = block.find_replica(owner.site)
        if replica is None and (files is KEEP or files is None):
            # complete from the start (its size is the block's): counted in the usage once,
            # not counted empty and then moved
            replica = self._new_block_replica(owner, block, fields.pop("group", owner.group),
                                              files=None, size=block.size, **fields)
            files = KEEP
        elif replica is None:
            replica = self._new_block_replica(owner, block, fields.pop("group", owner.group),
                                              files=(), **fields)
        else:
            self._set(replica, fields)
            if adding and replica.file_ids is None:
                files = KEEP  # it holds them all already
            elif adding:
                file_ids += replica.file_ids
        if files is None:  # complete: its size is the block's, no need to load the files
            self._set(replica, {"file_ids": None, "size": block.size})
        elif files is not KEEP:
            self._put_files(replica, file_ids)
        if size is not None and checked(BlockReplica, "size", size) != replica.size:
            raise Conflict(f"block replica {block.full_name()} at {owner.site.name}: size is "
                           f"{size} in the request but {replica.size} by its files", field="size")
        return replica

    def remove_replica_files(self, replica: BlockReplica, lfns):
        """The files leave the replica (not the block): `--delete` with its `files`."""
        drop = set(self._file_ids(replica.block, lfns))
        present = self._present(replica)
        missing = drop.difference(present)
        if missing:
            lfn = next(f.lfn for f in self._files(replica.block).values() if f.id in missing)
            raise NotFound(f"file {lfn!r} is not at {replica.site.name}", field="files")
        self._put_files(replica, [i for i in present if i not in drop])

    def _file_ids(self, block, lfns) -> tuple:
        ids = []
        files = self._files(block)
        for lfn in lfns:
            f = files.get(lfn) if isinstance(lfn, str) else None
            if f is None:
                raise NotFound(f"file {lfn!r} is not in block {block.full_name()}", field="files")
            ids.append(f.id)
        return tuple(ids)

    def _new_block_replica(self, owner, block, group, files, **fields) -> BlockReplica:
        values = {n: checked(BlockReplica, n, v) for n, v in
                  {**_BLOCK_REPLICA_DEFAULTS, "last_update": self.now, **fields}.items()}
        replica, undo = self.inventory.block_replicas.add(owner, block, owner.site, group,
                                                          file_ids=files, **values)
        self._undo.call(undo)
        self._touch(replica, "created")
        self._count(replica, 1)
        return replica

    # ------------------------------------------------------------ delete
    def delete_site(self, site: Site):
        for replica in list(site.dataset_replicas):
            self.delete_dataset_replica(replica)
        self._drop_quotas(site=site.name)
        self._remove(self.inventory.sites, site.name)
        self._gone(site)

    def delete_group(self, group: Group):
        if group.name is None:
            raise InvalidValue("the null group cannot be deleted", field="name")
        null, inventory = self.inventory.groups[None], self.inventory
        for replicas in (inventory.dataset_replicas.of_group(group.id),
                         inventory.block_replicas.of_group(group.id)):
            self.update_many(replicas, ("group",), [(null,)] * len(replicas))
        self._remove(self.inventory.groups, group.name)
        self._gone(group)

    def delete_dataset(self, dataset: Dataset):
        for replica in list(dataset.replicas):
            self.delete_dataset_replica(replica)
        for block in reversed(list(dataset.blocks)):   # from the run's end: nothing shifts
            self.delete_block(block)
        self._undo.call(self.inventory.dataset_table.delete(dataset))
        self._gone(dataset)

    def delete_block(self, block: Block):
        for replica in list(block.replicas):
            self.delete_block_replica(replica)
        if self.inventory.file_cache.unload(block):  # all committed: the store deletes them
            self.ops["blockfiles", (block.id,)] = None
            if block.num_files:   # a count of 0 would show as "files": 0 in the answer
                self.deleted["files"] += block.num_files
                self._tally("file", -block.num_files)
        else:
            for f in list(self._files(block).values()):
                self._drop_file(f)
        self._undo.call(self.inventory.blocks.delete(block))
        self._gone(block)

    def delete_file(self, f: File):
        block = f.block
        f = self._files(block)[f.lfn]  # the object held in memory (`f` may be a copy)
        self._drop_file(f)
        self._set(block, {"size": block.size - f.size, "num_files": block.num_files - 1})
        for replica in block.replicas:
            if replica.file_ids is None:
                self._set(replica, {"size": replica.size - f.size})
            else:
                self._put_files(replica, [i for i in replica.file_ids if i != f.id])

    def _drop_file(self, f: File):
        self._remove(self._files(f.block), f.lfn)
        self._remove(self.inventory.file_cache.by_lfn, f.lfn)
        self._gone(f)

    def delete_dataset_replica(self, replica: DatasetReplica):
        for block_replica in list(replica.block_replicas):
            self._unlink_block_replica(replica, block_replica)
        self._undo.call(self.inventory.dataset_replicas.delete(replica))
        self._gone(replica)

    def delete_block_replica(self, block_replica: BlockReplica):
        """Remove it; the dataset replica goes too when this was its last block replica."""
        owner = block_replica.block.dataset.find_replica(block_replica.site)
        self._unlink_block_replica(owner, block_replica)
        if not owner.block_replicas:
            self.delete_dataset_replica(owner)

    def _unlink_block_replica(self, owner, block_replica):
        self._count(block_replica, -1)
        self._undo.call(self.inventory.block_replicas.delete(block_replica, owner))
        self._gone(block_replica)

    # ------------------------------------------------ partitions and quotas
    def _redefine(self, partitions: dict):
        """New partition definitions, the usage recounted once; undoably."""
        usage = self.inventory.usage
        saved = usage.state()
        usage.define(partitions)
        usage.recount(self.inventory)
        self._undo.call(lambda: usage.restore(saved))

    def _partition_record(self, partition) -> "parts.Record":
        return parts.Record("partition", partition.name, (partition.name, partition.definition))

    def set_partition(self, name, condition=None, subpartitions=None) -> bool:
        """Define (or redefine) a partition: a condition, or a list of subpartitions.
        Returns False when the definition is the one already there."""
        parts.check_name(name)
        usage = self.inventory.usage
        existing = usage.partitions.get(name)
        if existing is not None and existing.origin == "config":
            raise Conflict(f"partition {name} is defined in the configuration file; change "
                           f"it there", field="name")
        if (condition is None) == (subpartitions is None):
            raise InvalidValue("a partition has either a condition or subpartitions",
                               field="condition")
        if subpartitions is not None:
            if (not isinstance(subpartitions, list) or not subpartitions
                    or not all(isinstance(p, str) for p in subpartitions)):
                raise InvalidValue("subpartitions is a non-empty list of partition names",
                                   field="subpartitions")
            for sub in subpartitions:
                parts.check_name(sub)
            new = parts.Partition(name, subpartitions=subpartitions)
        else:
            new = parts.Partition(name, condition=condition)
        if existing is not None and existing.definition == new.definition:
            return False
        if existing is not None and (existing.subpartitions is None) != (new.subpartitions
                                                                          is None):
            self._drop_quotas(name)
        self._redefine({**usage.partitions, name: new})
        record = self._partition_record(new)
        self.ops["partition", (name,)] = record
        old = None if existing is None else existing.definition
        self.journal.append(("updated", record, {"definition": (old, new.definition)}))
        return True

    def delete_partition(self, name):
        usage = self.inventory.usage
        existing = usage.partitions.get(name)
        if existing is None:
            raise NotFound(f"unknown partition {name!r}", field="name")
        if existing.origin == "config":
            raise Conflict(f"partition {name} is defined in the configuration file; remove "
                           f"it there", field="name")
        for other in usage.partitions.values():
            if other.subpartitions and name in other.subpartitions:
                raise Conflict(f"partition {name} is a subpartition of {other.name}",
                               field="name")
        self._drop_quotas(name)
        self._redefine({n: p for n, p in usage.partitions.items() if n != name})
        record = self._partition_record(existing)
        self.ops["partition", (name,)] = None
        self.journal.append(("deleted", record, None))

    def _drop_quotas(self, partition=None, site=None):
        quotas = self.inventory.usage.quotas
        for key in [k for k in quotas if k[1] == partition or k[0] == site]:
            self._set_quota_value(key, None)

    def _set_quota_value(self, key, value):
        quotas = self.inventory.usage.quotas
        old = quotas.get(key)
        if value is None:
            del quotas[key]
        else:
            quotas[key] = value
        self._undo.call(lambda: quotas.pop(key) if old is None
                        else quotas.__setitem__(key, old))
        record = parts.Record("quota", f"{key[0]}:{key[1]}", (*key, value))
        self.ops["quota", key] = None if value is None else record
        shown = {None: 0, parts.UNLIMITED: "unlimited"}   # none set: the default, 0
        self.journal.append(("updated", record, {"quota": (shown.get(old, old),
                                                           shown.get(value, value))}))

    def set_quota(self, site: Site, partition: str, quota) -> bool:
        """The quota of `partition` at `site`, in bytes or parts.UNLIMITED."""
        usage = self.inventory.usage
        found = usage.partitions.get(partition)
        if found is None:
            raise NotFound(f"unknown partition {partition!r}", field="partition")
        if found.subpartitions is not None:
            raise InvalidValue(f"partition {partition} is a superpartition: its quota is the "
                               f"sum of its parts' ({', '.join(found.subpartitions)})",
                               field="partition")
        quota = parts.check_quota(quota)
        key = (site.name, partition)
        if usage.quotas.get(key, 0) == quota and key in usage.quotas:
            return False
        self._set_quota_value(key, quota)
        return True
