"""An object given twice in one injection document with two values for one field.

A document may name an object more than once, and the entries add up: a dataset
again with more blocks, a dataset replica again with more block replicas (two
documents pasted together).  But two entries of one object that give one field
two values are refused, naming both: applied in turn, the later value would win
without a word, and such a pair is a slip (two versions of a line kept), not a
wish.  (An LFN is refused on any second occurrence: `injection._files`.)
"""

from itertools import repeat

from ..errors import Conflict

SECTIONS = ("site", "group", "dataset")
NESTED = frozenset(("blocks", "files", "blockreplicas"))   # entries of their own, not values


def refuse_conflicting_repeats(document: dict, located):
    """Raise Conflict, at the later entry (`located(path, what)` names it), for the
    first object of the document whose entries give one field two values."""
    if not _may_repeat(document):
        return   # the usual document: no object named twice, told at C speed
    objects = []   # (identity, item, path parts) of every entry that has a usable name
    for kind in SECTIONS:
        objects += [((kind, item["name"]), item, ("", kind, i))
                    for i, item in _entries(document, kind) if _named(item, "name")]
    for d, dataset in _entries(document, "dataset"):
        if _named(dataset, "name"):
            objects += [(("block", dataset["name"], item["name"]), item,
                         (f"dataset[{d}].", "blocks", i))
                        for i, item in _entries(dataset, "blocks") if _named(item, "name")]
    for r, replica in _entries(document, "datasetreplica"):
        if not _named(replica, "dataset", "site"):
            continue
        dataset, site = replica["dataset"], replica["site"]
        objects.append((("datasetreplica", dataset, site), replica, ("", "datasetreplica", r)))
        objects += [(("blockreplica", dataset, site, item["block"]), item,
                     (f"datasetreplica[{r}].", "blockreplicas", i))
                    for i, item in _entries(replica, "blockreplicas") if _named(item, "block")]
    first = {}
    for identity, item, where in objects:
        earlier = first.setdefault(identity, (item, where))
        for field, value in item.items() if earlier[0] is not item else ():
            old = earlier[0].get(field, value)
            if field not in NESTED and not _same(old, value):
                path = _path(where)
                with located(path, _what(identity)):
                    raise Conflict(
                        f"{field} given twice in one document with different values: "
                        f"{old!r} at {_path(earlier[1])}, {value!r} at {path}", field=field)


def _may_repeat(document: dict) -> bool:
    """Whether some list of the document holds one name twice (or holds anything but
    objects with names, which the full walk sorts out); a dataset or dataset replica
    given twice may list one block or block replica in each of its entries."""
    try:
        if any(_twice(document.get(kind) or (), "name") for kind in SECTIONS):
            return True
        replicas = document.get("datasetreplica") or ()
        if _twice(replicas, "dataset", "site"):
            return True
        return any(_twice(item.get(key) or (), name)
                   for section, key, name in (("dataset", "blocks", "name"),
                                              ("datasetreplica", "blockreplicas", "block"))
                   for item in document.get(section) or ())
    except (TypeError, AttributeError):   # not a list of objects, a name that is no string
        return True


def _twice(items, *keys) -> bool:
    names = (list(map(dict.get, items, repeat(keys[0]))) if len(keys) == 1 else
             list(zip(*(map(dict.get, items, repeat(key)) for key in keys))))
    return len(set(names)) != len(names)


def _entries(container: dict, key: str):
    """(index, item) of the objects listed in `container[key]`; anything else is left to
    the checks that follow, which name it."""
    value = container.get(key)
    return [(i, item) for i, item in enumerate(value) if type(item) is dict] \
        if type(value) is list else []


def _named(item: dict, *keys) -> bool:
    return all(type(item.get(key)) is str for key in keys)


def _same(a, b) -> bool:
    """Equal and of one type, but for numbers: 1528406008 and 1528406008.0 are one time
    (a fraction is truncated anyway); true and 1 are not one flag."""
    numbers = (int, float)
    return a == b and (type(a) is type(b) or type(a) in numbers and type(b) in numbers)


def _path(where) -> str:
    prefix, key, index = where
    return f"{prefix}{key}[{index}]"


def _what(identity) -> str:
    kind, *names = identity
    if kind == "block":
        return f"block {names[0]}#{names[1]}"
    if kind == "datasetreplica":
        return f"dataset replica {names[1]}:{names[0]}"
    if kind == "blockreplica":
        return f"block replica {names[1]}:{names[0]}#{names[2]}"
    return f"{kind} {names[0]}"
