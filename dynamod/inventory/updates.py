"""`inventory.update(obj)` / `inventory.delete(obj)` as plain records, kept in runs.

An application changes its copy of the inventory through these calls; each
call becomes a record: an operation on a kind of object, its identity by
names instead of object links, and the fields given.  Consecutive records of
the same shape (op, kind, identity keys, field names) form a run, which names
the shape once and holds one row of values per record:

    {"op": "update", "kind": "blockreplica", "keys": ["dataset", "block", "site"],
     "fields": ["last_update"], "rows": [["/A/B/RAW", "b1", "T2_X", 1528406008], ...]}

The same rules apply a record to the application's copy (so the script sees
its own changes) and a read/write application's runs, once it ended well, to
the daemon's inventory, so both sides follow one set of rules.  An update of
objects that exist, of fields that change nothing else (a replica's
`last_update`, a site's status: the bulk of a write-back), is applied a run
at a time; anything else record by record, in order.

Such a plain update of a block or a block replica that existed when the
application started is recorded by the object's row in its table instead of
its names (`plain_updater`; `replica_updater` makes such a record of a built
block replica at once), the key "row":

    {"op": "update", "kind": "blockreplica", "keys": ["row"],
     "fields": ["last_update"], "rows": [[18204, 1528406008], ...]}

The daemon applies a writer's records with the inventory as it was at the fork
(the writer holds the gate, and compaction waits for it), so a row names there
what it named in the copy; a run of them is found and checked in passes of C
over its rows instead of three names looked up per record.  A row that holds no
such object is refused like an unknown name.
"""

from itertools import repeat
from operator import itemgetter

from ..errors import InvalidParams, InvalidValue, NotFound
from . import partitions as parts
from .changes import KEEP, ChangeSet, set_many
from .objects import (NO_ROW, Block, BlockReplica, Dataset, DatasetReplica, DetachedBlockReplica,
                      File, Group, Site, changed_fields)

_new_view = tuple.__new__   # _new_view(Block, (table, row)): a view, all in C
_FIRST, _SECOND = itemgetter(0), itemgetter(1)
_CLASSES = {cls.kind: cls for cls in (Site, Group, Dataset, Block, File, DatasetReplica,
                                       BlockReplica)}
# The fields a record may give, per kind (a replica's files come as `files`, by LFN).
_SETTABLE = {kind: frozenset(cls.FIELDS) - {"file_ids"} for kind, cls in _CLASSES.items()}
# The keys a record may name an object by (and a file's site, a replica's files).
_KEYS = {"site": {"name"}, "group": {"name"}, "dataset": {"name"},
         "block": {"dataset", "name", "row"}, "file": {"name", "dataset", "block", "site"},
         "datasetreplica": {"dataset", "site"},
         "blockreplica": {"dataset", "block", "site", "files", "row"}}
_BY_ROW = ("row",)   # the keys of a record by row (see the module's docstring)
# The fields whose update of an existing object changes that object alone (no sums to
# check, no files to hold): these runs go in bulk.
_PLAIN = {"site": _SETTABLE["site"], "group": _SETTABLE["group"],
          "dataset": _SETTABLE["dataset"], "block": frozenset(("is_open", "last_update")),
          "datasetreplica": _SETTABLE["datasetreplica"],
          "blockreplica": frozenset(("group", "is_custodial", "last_update"))}


def _name(link):
    return link if isinstance(link, str) or link is None else link.name


def _block_names(block) -> tuple[str, str]:
    if isinstance(block, str) and "#" in block:   # as a script most often names it
        dataset, name = block.split("#", 1)
        return dataset, name
    if isinstance(block, Block):
        return _name(block.dataset), block.name
    raise InvalidValue(f"a block is given as a Block or as 'dataset#block', not {block!r}",
                       field="block")


def _lfns(replica: BlockReplica):
    if replica.file_ids is None:
        return None
    if isinstance(replica.block, Block):
        by_id = {f.id: f.lfn for f in replica.block.files_by_lfn.values()}
        return [by_id.get(i, i) for i in replica.file_ids]
    return list(replica.file_ids)


_REPLICA_KEYS = ("dataset", "block", "site")


def record(op: str, obj, site=None) -> tuple[tuple, list]:
    """The record of `inventory.<op>(obj)` as (shape, row): identity by names, the
    fields given."""
    fields = changed_fields(obj) if op == "update" else {}
    cls = type(obj)
    if cls is BlockReplica:
        keys, row = _REPLICA_KEYS, [*_block_names(obj.block), _name(obj.site)]
        if "file_ids" in fields:
            del fields["file_ids"]
            keys += ("files",)
            row.append(_lfns(obj))
    elif cls is Site or cls is Group or cls is Dataset:
        keys, row = ("name",), [obj.name]
    elif cls is Block:
        keys, row = ("dataset", "name"), [_name(obj.dataset), obj.name]
    elif cls is File:
        keys, row = ("dataset", "block", "name"), [*_block_names(obj.block), obj.lfn]
        if site is not None:
            keys += ("site",)
            row.append(_name(site))
    elif cls is DatasetReplica:
        keys, row = ("dataset", "site"), [_name(obj.dataset), _name(obj.site)]
    else:
        raise InvalidValue(f"not an inventory object: {obj!r}")
    if "group" in fields:
        fields["group"] = _name(fields["group"])
    row += fields.values()
    return (op, cls.kind, keys, tuple(fields)), row


class Runs:
    """Records in the order they were made, consecutive ones of a shape in one run."""

    def __init__(self):
        self.runs = []   # [(shape, rows)]
        self.shape = self.rows = None   # the last run's

    def add(self, shape: tuple, row: list):
        if shape == self.shape:
            self.rows.append(row)
        else:
            self.shape, self.rows = shape, [row]
            self.runs.append((shape, self.rows))

    def __len__(self):
        return sum(len(rows) for _, rows in self.runs)

    def __iter__(self):
        return iter(self.runs)


_CHECKED = {}   # well-formed shape -> its finder (see `_finder`); a few thousand at most


def run_shape(op, kind, keys, fields) -> tuple:
    """A run's shape from what a pipe sent, checked like any request: a malformed one is
    an InvalidParams error, never a crash."""
    if not all(isinstance(part, list) and all(type(n) is str for n in part)
               for part in (keys, fields)):
        raise InvalidParams(f"a run's keys and fields are lists of names, not {keys!r} and "
                            f"{fields!r}")
    if type(op) is not str or type(kind) is not str:
        raise InvalidParams(f"unknown update {op!r} of kind {kind!r}")
    shape = (op, kind, tuple(keys), tuple(fields))
    _check(shape)
    return shape


def _check(shape: tuple):
    """Raise unless the shape is well-formed; returns its finder (see `_finder`)."""
    try:
        return _CHECKED[shape]
    except KeyError:
        pass
    op, kind, keys, fields = shape
    settable = _SETTABLE.get(kind)
    if op not in ("update", "delete") or settable is None:
        raise InvalidParams(f"unknown update {op!r} of kind {kind!r}")
    if not settable.issuperset(fields):
        raise InvalidParams(f"{kind} has no field {sorted(set(fields) - settable)[0]!r}")
    if not _KEYS[kind].issuperset(keys):
        raise InvalidParams(f"a {kind} is not named by {sorted(set(keys) - _KEYS[kind])[0]!r}")
    if len(set(keys)) != len(keys) or len(set(fields)) != len(fields):
        raise InvalidParams(f"a record names a key or a field twice: {keys!r}, {fields!r}")
    finder = _finder(shape)
    if "row" in keys and finder is None:
        raise InvalidParams(f"a {kind} is named by its row alone, in a plain update only "
                            f"({', '.join(sorted(_PLAIN[kind]))}), not {keys!r} {op} {fields!r}")
    _CHECKED[shape] = finder
    return finder


def finder(shape: tuple, inventory):
    """What finds the existing objects a run of this (checked) shape names in `inventory`,
    or None (records of this shape go one by one).  A caller that applies runs of one
    shape after the other, with nothing else in between, may keep it for all of them:
    such runs create or delete no dataset or block, which is all a finder remembers."""
    factory = _check(shape)
    return None if factory is None else factory(inventory)


def apply_run(changes: ChangeSet, shape: tuple, rows: list, find=None):
    """Apply a run's records in order, as one by one; returns the last one's object.
    `find`: the run's `finder`, when the caller keeps one.  The rows are left as they
    are (an application keeps them to send later).

    Updates of existing objects with plain fields are gathered and set together; any
    other record (a creation, an unknown name, a malformed row) first lets the gathered
    ones apply, then goes alone, so that every error is the one that record alone
    gives."""
    if find is None:
        find = finder(shape, changes.inventory)
    names, gathered, values, last = shape[3], [], [], None
    if shape[2] == _BY_ROW and (found := _found_by_rows(changes.inventory, shape, rows)):
        cls, table, numbers = found
        if not (len(names) == 1 and changes.update_column(cls, table, numbers, names[0],
                                                          list(map(_SECOND, rows)))):
            changes.update_many(list(map(_new_view, repeat(cls), zip(repeat(table), numbers))),
                                names, [row[1:] for row in rows])
        return _new_view(cls, (table, numbers[-1]))
    for row in rows:
        if find is not None:
            found = _found(find, shape, row, changes.inventory.groups)
            if found is not None:
                gathered.append(found[0])
                values.append(found[1])
                continue
        changes.update_many(gathered, names, values)
        gathered, values = [], []
        last = _one(changes, shape, row)
    changes.update_many(gathered, names, values)
    return gathered[-1] if gathered else last


def plain_updater(inventory, shape: tuple, find, runs: Runs, fork_rows=None):
    """What applies a record of a plain update of an existing object (of this checked
    shape; `find`: its `finder`) straight in `inventory`, without a ChangeSet, and adds
    it to `runs`: what an application's copy does with most of its calls, the rules
    being the fields' checks alone, which the values passed when they were set on the
    object the record was made of (`record`).  An object whose row is below `fork_rows`
    (one of a kind that may be named by row, which existed at the fork) is recorded by
    its row (see the module's docstring).  None: records of this shape are not plain
    (apply them with `apply_run`).  The function returns the object set; None: not such
    a record (apply it with `apply_run`), nothing done."""
    if find is None:
        return None
    op, kind, keys, names = shape
    usage, groups, add = inventory.usage, inventory.groups, runs.add
    moves, put = parts.may_move(kind, names), _putter(inventory, kind, names)
    count = len(keys)
    row_shape = (op, kind, _BY_ROW, names)
    if kind not in _BY_ROW_KINDS:
        fork_rows = None

    def update(row):
        if moves and usage.active:   # what the usage counts moves: not plain then
            return None
        found = _found(find, shape, row, groups)
        if found is None:
            return None
        obj, values = found
        put(obj, values)
        if fork_rows is not None and obj[1] < fork_rows:
            add(row_shape, [obj[1], *row[count:]])   # the group by its name, as given
        else:
            add(shape, row)
        return obj
    return update


def _putter(inventory, kind: str, names: tuple):
    """What sets the checked values of the plain fields `names` of an object of `kind`
    (one in the inventory), counting it as applied."""
    if len(names) != 1:
        def put(obj, values):
            set_many([obj], names, [values])
            inventory.applied += 1
    elif (field := getattr(_CLASSES[kind], names[0])).raw:   # see fields.Column
        name = names[0]

        def put(obj, values):   # most calls: one number, the element of a column
            getattr(obj[0], name)[obj[1]] = values[0]
            inventory.applied += 1
    else:
        def put(obj, values):
            field.put(obj, values[0])
            inventory.applied += 1
    return put


def replica_updater(inventory, runs: Runs, fork_rows: int):
    """What applies the bulk of a write-back, `inventory.update(BlockReplica(
    'dataset#block', site, last_update=t))` of a replica that existed at the fork (its
    row below `fork_rows`) with plain fields only, straight from the object: found,
    set and recorded by row (as `plain_updater` would the call's record), without the
    record by names made first, then taken apart and checked again (over a third less
    time per call).  Fields set in another order than the class's go the usual way
    (`record` puts them in order).
    The function returns the replica; None: not such a call, nothing done (its record
    goes the usual way).  It keeps what it looked up (a dataset's blocks, as `finder`
    does): make it anew after any other call."""
    row_of, at_site = _block_rows(inventory), inventory.block_replicas.at_site
    sites, usage, groups = inventory.sites, inventory.usage, inventory.groups
    plans = {}   # the names of the fields given -> (their shape by row, what sets them, ...)
    # a script names the replicas of a block one after the other: the last block named
    # ('dataset#block') and its row are kept
    last_block, last_row = _NONE, NO_ROW

    def plan(names):
        if (not names or not _PLAIN["blockreplica"].issuperset(names)
                or names != tuple(n for n in BlockReplica.FIELDS if n in names)):
            return None
        return (("update", "blockreplica", _BY_ROW, names),
                _putter(inventory, "blockreplica", names),
                parts.may_move("blockreplica", names),
                names.index("group") if "group" in names else None)

    def update(obj):
        nonlocal last_block, last_row
        if type(obj) is not BlockReplica or type(obj[0]) is not DetachedBlockReplica:
            return None
        block, site, given = obj[0].as_built()
        names = tuple(given)
        planned = plans.get(names, _NONE)
        if planned is _NONE:
            planned = plans[names] = plan(names)
        if planned is None:
            return None
        shape, put, moves, group = planned
        if moves and usage.active:
            return None
        if type(site) is not str:
            if type(site) is not Site:
                return None   # named otherwise: as `record` names it, or refuses it
            site = site.name
        try:
            if block != last_block:
                if type(block) is not str:
                    return None
                dataset, sep, name = block.partition("#")
                if not sep:
                    return None
                last_row, last_block = row_of(dataset, name), block
            found = None if last_row == NO_ROW else at_site(last_row, sites[site].id)
            if found is None or found[1] >= fork_rows:
                return None
            record = [found[1], *given.values()]   # a group by its name, as given
            values = record[1:]
            if group is not None:
                record[group + 1] = _name(values[group])
                values[group] = groups[record[group + 1]]
        except (KeyError, TypeError, AttributeError):   # an unknown, unhashable name
            return None
        put(found, values)
        runs.add(shape, record)
        return found
    return update


def _found(find, shape: tuple, row, groups):
    """(the existing object a record of a plain update names, its new values: a group by
    its Group), or None: an unknown name, a malformed row, anything else."""
    keys, names = shape[2], shape[3]
    count = len(keys)
    if type(row) is not list or len(row) != count + len(names):
        return None
    new = row[count:]   # a copy: the record keeps the group's name
    try:
        obj = find(*row[:count])
        if "group" in names:
            at = names.index("group")
            new[at] = groups[new[at]]
    except (KeyError, TypeError):   # an unknown or unhashable name
        return None
    return None if obj is None else (obj, new)


# The tables whose objects a record may name by row, given the inventory.
_ROW_TABLES = {"block": lambda inv: inv.blocks, "blockreplica": lambda inv: inv.block_replicas}
_BY_ROW_KINDS = frozenset(_ROW_TABLES)


def row_tables(inventory) -> dict:
    """{kind: table} of the objects a record may name by row."""
    return {kind: table_of(inventory) for kind, table_of in _ROW_TABLES.items()}


def _found_by_rows(inv, shape: tuple, rows) -> tuple | None:
    """(the objects' class, their table, their rows) of a run of records by row, found and
    checked over the whole run in passes of C; None when anything is unusual (a malformed
    record, a row that holds no object, a group to look up): the records then go one by
    one."""
    _, kind, _, names = shape
    table = _ROW_TABLES[kind](inv)
    alive = table.alive
    if ("group" in names or type(rows) is not list or set(map(type, rows)) != {list}
            or set(map(len, rows)) != {1 + len(names)}):
        return None
    numbers = list(map(_FIRST, rows))
    if (set(map(type, numbers)) != {int} or min(numbers) < 0 or max(numbers) >= len(alive)
            or not all(map(alive.__getitem__, numbers))):
        return None
    return _CLASSES[kind], table, numbers


def _rows(kind: str):
    """The finder of records of `kind` by row: the live object at the row, or None."""
    cls, table_of = _CLASSES[kind], _ROW_TABLES[kind]

    def factory(inv):
        table = table_of(inv)

        def find(row):
            if type(row) is int and 0 <= row < len(table.alive) and table.alive[row]:
                return _new_view(cls, (table, row))
            return None
        return find
    return factory


def _one(changes, shape: tuple, row):
    """One record, checked, through the ChangeSet's rules for its kind."""
    op, kind, keys, names = shape
    if type(row) is not list or len(row) != len(keys) + len(names):
        raise InvalidParams(f"a {kind} record has {len(keys) + len(names)} values "
                            f"({', '.join(keys + names)}), not {row!r}")
    if keys == _BY_ROW:   # not found (`apply_run`)
        raise NotFound(f"no {kind} at row {row[0]!r} (a record by row names an object "
                       f"that existed when the application started)", field="row")
    rec = dict(zip(keys, row))
    fields = dict(zip(names, row[len(keys):]))
    try:
        return _apply(changes, op, kind, fields, rec)
    except KeyError as exc:
        raise InvalidParams(f"update record of a {kind} lacks {exc.args[0]!r}") from None


def _finder(shape: tuple):
    """How to find the existing object an update of this shape names, when its fields
    are plain; None: records of this shape go one by one."""
    op, kind, keys, names = shape
    if op != "update" or not _PLAIN.get(kind, frozenset()).issuperset(names):
        return None
    if keys == _BY_ROW:
        return _rows(kind) if kind in _BY_ROW_KINDS else None
    return _FINDERS[kind] if keys == _FINDER_KEYS.get(kind) else None


def _sites(inv):
    return inv.sites.get


def _groups(inv):
    groups = inv.groups
    return lambda name: None if name is None else groups.get(name)


def _datasets(inv):
    return inv.datasets.get


def _blocks(inv):
    row_of, table = _block_rows(inv), inv.blocks

    def find(dataset, name):
        row = row_of(dataset, name)
        return None if row == NO_ROW else _new_view(Block, (table, row))
    return find


def _block_rows(inv):
    """(dataset name, block name) -> the block's row (NO_ROW: none; a KeyError: no such
    dataset).  A run names the blocks of a dataset one after the other, most of them in
    a write-back, as does a script walking the inventory: a dict of the dataset's blocks
    by name is made (`BlockSet.by_name`) once one in 32 of them have been asked for, at
    once for fewer than 32, which costs at most some 32 names decoded per look-up before
    it; those before it are bisected for (`BlockSet.find`)."""
    datasets = inv.datasets
    # the dataset's name, its blocks, look-ups left before the dict, the dict
    name, blocks, left, by_name = _NONE, None, 0, None

    def row_of(dataset, block):
        nonlocal name, blocks, left, by_name
        if dataset != name:
            blocks = datasets[dataset].blocks
            name, left, by_name = dataset, len(blocks) // 32, None
        if by_name is None:
            if left > 0:
                left -= 1
                found = blocks.find(block)
                return NO_ROW if found is None else found[1]
            by_name = blocks.by_name()
        return by_name.get(block, NO_ROW)
    return row_of


def _dataset_replicas(inv):
    datasets, sites = inv.datasets, inv.sites
    return lambda dataset, site: datasets[dataset].find_replica(sites[site])


_NONE = object()


def _block_replicas(inv):
    """A run names the replicas of a block one after the other, and the blocks of a
    dataset: the block is looked up once for each."""
    row_of, sites, at_site = _block_rows(inv), inv.sites, inv.block_replicas.at_site
    last_dataset = last_block = _NONE   # the last names asked for, and their block's row
    last_row = NO_ROW

    def find(dataset, block, site):
        nonlocal last_dataset, last_block, last_row
        if block != last_block or dataset != last_dataset:
            last_row = row_of(dataset, block)
            last_dataset, last_block = dataset, block
        return None if last_row == NO_ROW else at_site(last_row, sites[site].id)
    return find


# What finds the existing objects of a run of plain updates, given the inventory:
# (the names) -> the object, None or a lookup error: not one.
_FINDERS = {"site": _sites, "group": _groups, "dataset": _datasets, "block": _blocks,
            "datasetreplica": _dataset_replicas, "blockreplica": _block_replicas}
_FINDER_KEYS = {"site": ("name",), "group": ("name",), "dataset": ("name",),
                "block": ("dataset", "name"), "datasetreplica": ("dataset", "site"),
                "blockreplica": ("dataset", "block", "site")}


def _apply(changes, op, kind, fields, rec):
    inv = changes.inventory
    if op == "delete":
        target = _find(inv, kind, rec)
        getattr(changes, f"delete_{_METHOD[kind]}")(target)
        return None
    if kind == "blockreplica":
        block, site = inv.block(rec["dataset"], rec["block"]), inv.site(rec["site"])
        owner = block.dataset.find_replica(site)
        if owner is None:
            raise NotFound(f"dataset {block.dataset.name} has no replica at {site.name}; "
                           f"update the dataset replica first", field="site")
        # files not given: a new replica is complete, an existing one keeps what it holds
        files = rec.get("files", KEEP)
        if files is not None and files is not KEEP and not isinstance(files, list):
            raise InvalidParams(f"a block replica's files are a list of LFNs, not {files!r}")
        return changes.block_replica(owner, block, _with_group(inv, fields), files)
    if kind == "site":
        return changes.site(rec["name"], fields)
    if kind == "group":
        return changes.group(rec["name"], fields)
    if kind == "dataset":
        return changes.dataset(rec["name"], fields)
    if kind == "block":
        return changes.block(inv.dataset(rec["dataset"]), rec["name"], fields)
    if kind == "file":
        block = inv.block(rec["dataset"], rec["block"])
        site = inv.site(rec["site"]) if rec.get("site") else None
        return changes.file(block, rec["name"], fields, site)
    if kind == "datasetreplica":
        fields = _with_group(inv, fields)
        return changes.dataset_replica(inv.dataset(rec["dataset"]), inv.site(rec["site"]), fields)


def _with_group(inv, fields: dict) -> dict:
    """`fields` with a group name resolved to the Group (a new dict: the record stays)."""
    return {**fields, "group": inv.group(fields["group"])} if "group" in fields else fields


_METHOD = {"site": "site", "group": "group", "dataset": "dataset", "block": "block",
           "file": "file", "datasetreplica": "dataset_replica", "blockreplica": "block_replica"}


def _find(inv, kind, rec):
    if kind == "site":
        return inv.site(rec["name"])
    if kind == "group":
        return inv.group(rec["name"])
    if kind == "dataset":
        return inv.dataset(rec["name"])
    if kind == "block":
        return inv.block(rec["dataset"], rec["name"])
    if kind == "file":
        return inv.file(rec["name"])
    if kind in ("datasetreplica", "blockreplica"):
        site = inv.site(rec["site"])
        holder = inv.dataset(rec["dataset"]) if kind == "datasetreplica" else \
            inv.block(rec["dataset"], rec["block"])
        replica = holder.find_replica(site)
        if replica is None:
            raise NotFound(f"no replica of {rec['dataset']} at {site.name}")
        return replica
