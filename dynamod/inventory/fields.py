"""Validated attributes for the inventory objects.

A field checks a value once, when it is set, so that a bad status or a
negative size is refused where it is written (naming the field and what is
allowed) instead of surfacing later in the store.  A field that was never set
on a detached object reads as its default; `given_fields` tells which were
set, so `inventory.update(obj)` copies only what the caller gave.  A `Column` is
the same check for a view, whose values live in a table (columns.py).
"""

import re

from ..errors import InvalidValue

MAX_TEXT = 4096
MAX_COUNT = 2**63 - 1
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_HEX_DIGITS = "0123456789abcdefABCDEF"
_ASCII_CONTROLS = bytes(range(0x20)) + b"\x7f"


def printable(text: str) -> bool:
    """`text.isprintable()`, a few times faster for ASCII text (nearly all: names, file
    lists, change-log entries), whose only characters that are not printable are the
    controls: deleting those bytes in one pass in C rather than looking up each
    character's Unicode properties."""
    if text.isascii():
        return len(text.encode("ascii").translate(None, _ASCII_CONTROLS)) == len(text)
    return text.isprintable()


class Field:
    """Base descriptor: stores the checked value in the slot `_<name>`."""

    raw = False   # see Column

    def __init__(self, default=None, *, frozen=False):
        self.default = default
        self.frozen = frozen

    def __set_name__(self, owner, name):
        self.name = name
        self.label = f"{owner.__name__}.{name}"
        self.slot = "_" + name
        self.member = owner.__dict__[self.slot]

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        try:
            return self.member.__get__(obj, owner)
        except AttributeError:
            return self.default

    def __set__(self, obj, value):
        if self.frozen and self.is_set(obj):
            raise InvalidValue(f"{self.label} cannot be changed", field=self.name)
        self.member.__set__(obj, self.check(value))

    def put(self, obj, value):
        """Set a value already checked (of a field that is not frozen)."""
        self.member.__set__(obj, value)

    def is_set(self, obj) -> bool:
        return hasattr(obj, self.slot)   # no exception raised in Python: `update` asks often

    def fail(self, value, expected: str):
        raise InvalidValue(f"{self.label} must be {expected}, not {value!r}", field=self.name)

    def check(self, value):
        return value


class Text(Field):
    """A printable string (no control characters); `required` forbids empty."""

    def __init__(self, default="", *, required=False, frozen=False):
        super().__init__(default, frozen=frozen)
        self.required = required

    def check(self, value):
        if not isinstance(value, str):
            self.fail(value, "a string")
        if self.required and not value:
            self.fail(value, "a non-empty string")
        if len(value) > MAX_TEXT:
            self.fail(value[:40] + "...", f"at most {MAX_TEXT} characters")
        if not value.isprintable() and _CONTROL.search(value):  # printable: no control
            self.fail(value, "free of control characters")
        return value


class Count(Field):
    """A non-negative integer that fits SQLite's INTEGER (sizes, times, counts)."""

    def __init__(self, default=0):
        super().__init__(default)

    def check(self, value):
        if type(value) is not int or not 0 <= value <= MAX_COUNT:
            self.fail(value, f"an integer from 0 to {MAX_COUNT}")
        return value


class Time(Field):
    """A Unix time in whole seconds.  A number with a fraction (`time.time()` in a
    script, `1528406008.0` in JSON) is truncated, as the original stored int(time)."""

    def __init__(self):
        super().__init__(0)

    def check(self, value):
        seconds = int(value) if type(value) is float and 0 <= value < 2**63 else value
        if type(seconds) is not int or not 0 <= seconds <= MAX_COUNT:
            self.fail(value, f"a time in seconds, a number from 0 to {MAX_COUNT}")
        return seconds


class Flag(Field):
    def check(self, value):
        if type(value) is not bool:
            self.fail(value, "true or false")
        return value


class Choice(Field):
    """One of a fixed set of names; given in any case, stored in the canonical one."""

    def __init__(self, values, default):
        super().__init__(default)
        self.values = tuple(values)
        self.lookup = {v.lower(): v for v in values}

    def check(self, value):
        if isinstance(value, str) and value.lower() in self.lookup:
            return self.lookup[value.lower()]
        raise InvalidValue(
            f"{self.label} must be one of {', '.join(self.values)}, not {value!r}",
            field=self.name,
        )


class Version(Text):
    """A software version string; a one-element list is taken as its element."""

    def __init__(self):
        super().__init__(None)

    def check(self, value):
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        if value is None:
            return None
        return super().check(value)


class Checksum(Field):
    """A hexadecimal checksum of at most `digits` digits, stored in lower case."""

    def __init__(self, digits):
        super().__init__(None)
        self.digits = digits

    def check(self, value):
        if value is None:
            return None
        if not (isinstance(value, str) and 0 < len(value) <= self.digits
                and not value.strip(_HEX_DIGITS)):
            self.fail(value, f"a hexadecimal string of at most {self.digits} digits")
        return value.lower()


class Column(property):
    """A field of a view `(table, row)` (objects.py), whose value lives in its table:
    `get(view)` reads it (one index into a column, in a property: no Python-level
    descriptor call beyond the getter's), a write goes through the field's check to
    `table.store(name, row, value)`, or to `put(table, row, value)` for a link.
    `raw`: the value (a Count or a Time) is, as it is, the element at the row of the
    table's column `name` (an array of integers) and nothing else moves with it, so that
    a run of updates of the inventory's objects may read and set it there directly
    (changes.set_many)."""

    def __init__(self, name: str, field: Field, get, put=None, raw=False):
        check = field.check
        if field.frozen:
            def write(view, value):
                raise InvalidValue(f"{field.label} cannot be changed", field=name)
        elif put is None:   # the table's `store`, called straight: a script sets many
            def write(view, value):
                view[0].store(name, view[1], check(value))
        else:
            def write(view, value):
                put(view[0], view[1], check(value))
        if put is None:
            def put_checked(view, value):
                view[0].store(name, view[1], value)
        else:
            def put_checked(view, value):
                put(view[0], view[1], value)

        super().__init__(get, write)
        self.name, self.field, self.check, self.default = name, field, check, field.default
        self.put = put_checked   # a value already checked (of a field that is not frozen)
        self.raw = raw

    def __set_name__(self, owner, name):
        self.field.name = name
        self.field.label = f"{owner.__name__}.{name}"

    def is_set(self, view) -> bool:
        return view[0].is_set(self.name)


def given_fields(obj, names) -> dict:
    """The fields among `names` that were explicitly set on `obj`."""
    cls = type(obj)
    return {n: getattr(obj, n) for n in names if getattr(cls, n).is_set(obj)}
