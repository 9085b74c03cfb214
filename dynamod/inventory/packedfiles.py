"""A block's files packed into a few flat objects while they sit in the file cache.

As Python objects a cached file costs about 460 bytes (the File, its LFN and
checksum strings, its integers, its entries in its block's dict and in the LFN
index): half a million of them were a quarter of a gigabyte.  Packed, a block's
files are a handful of objects however many they are: the LFNs as their common
directory and the rest of each in one string, the sizes and ids as integer
arrays (a range when the ids follow each other, as they do for files added
together), the checksums as their bytes.  `FileMap` reads them as the block's dict of `File`
objects, made when asked for.
"""

from array import array
from collections.abc import Mapping
from operator import itemgetter

from .objects import File

SEPARATOR = "\n"  # before and after each name: never in an LFN (fields.Text)
_DIGITS = {name: File.__dict__[name].digits for name in ("adler32", "crc32", "md5")}


def _ints(values):
    """Non-negative integers: a range when they follow each other, else the narrowest
    array that holds them."""
    if type(values) is range and values.step == 1:   # the ids of new files
        return values
    if values:
        span = range(values[0], values[0] + len(values))
        if values[-1] == span[-1] and tuple(values) == tuple(span):
            return span
    return array("I" if 0 <= min(values, default=0) and max(values, default=0) < 2**32
                 else "q", values)


def _checksums(values, digits: int):
    """None when no file has this checksum; their bytes when each is `digits` lower-case
    hexadecimal digits (as the field stores them); else the strings, as they are.
    (Counted, joined and measured in C: a block may hold thousands of files.)"""
    if values.count(None) == len(values):
        return None
    try:
        text = "".join(values)
    except TypeError:  # some are None
        return tuple(values)
    if set(map(len, values)) == {digits}:
        try:
            packed = bytes.fromhex(text)
        except ValueError:
            return tuple(values)
        if packed.hex() == text:
            return packed
    return tuple(values)


def _directory(lfns) -> str:
    """The longest directory (up to a `/`) that holds every LFN: the common start of the
    least and the greatest, found from the least's directory upwards (in C, where
    os.path.commonprefix compares each character in Python)."""
    low, high = min(lfns), max(lfns)
    prefix = low[:low.rfind("/") + 1]
    while not high.startswith(prefix):
        prefix = prefix[:prefix.rfind("/", 0, len(prefix) - 1) + 1]
    return prefix


def _checksum(column, digits: int, i: int):
    if column is None:
        return None
    if type(column) is tuple:
        return column[i]
    width = digits // 2
    return column[i * width:(i + 1) * width].hex()


def _all_checksums(column, digits: int, n: int) -> list:
    if column is None:
        return [None] * n
    if type(column) is tuple:
        return list(column)
    text = column.hex()
    return [text[i:i + digits] for i in range(0, len(text), digits)]


class PackedFiles:
    """The files of one block, in id order (the order their dict lists them in)."""

    __slots__ = ("prefix", "names", "sizes", "ids", "adler32", "crc32", "md5")

    def __init__(self, ids, lfns, sizes, adler32, crc32, md5):
        """One sequence per column, a value per file."""
        self.prefix = prefix = _directory(lfns) if lfns else ""
        cut = len(prefix)
        self.names = "".join([SEPARATOR + lfn[cut:] for lfn in lfns]) + SEPARATOR
        self.sizes, self.ids = _ints(sizes), _ints(ids)
        self.adler32 = _checksums(adler32, _DIGITS["adler32"])
        self.crc32 = _checksums(crc32, _DIGITS["crc32"])
        self.md5 = _checksums(md5, _DIGITS["md5"])

    @classmethod
    def of_rows(cls, rows) -> "PackedFiles":
        """From the store's rows (id, block id, lfn, size, adler32, crc32, md5)."""
        if not rows:
            return cls((), (), (), (), (), ())
        ids, _, lfns, sizes, adler32, crc32, md5 = zip(*rows)
        return cls(ids, lfns, sizes, adler32, crc32, md5)

    @classmethod
    def of_files(cls, files) -> "PackedFiles":
        """From File objects."""
        values = list(map(File.values, files))
        if not values:
            return cls((), (), (), (), (), ())
        return cls(*zip(*values))

    def __len__(self):
        return len(self.sizes)

    def lfns(self) -> list:
        prefix = self.prefix
        return [prefix + name for name in self.names.split(SEPARATOR)[1:-1]]

    def index(self, lfn) -> int:
        """The position of `lfn` among the files, or -1 (a search of one string, in C)."""
        if not isinstance(lfn, str) or not lfn.startswith(self.prefix):
            return -1
        name = lfn[len(self.prefix):]
        if SEPARATOR in name:
            return -1
        at = self.names.find(SEPARATOR + name + SEPARATOR)
        return -1 if at < 0 else self.names.count(SEPARATOR, 0, at)

    def fields(self, i: int) -> tuple:
        """File number `i`'s values after its LFN, as File.stored takes them:
        (size, id, adler32, crc32, md5)."""
        return (self.sizes[i], self.ids[i], _checksum(self.adler32, _DIGITS["adler32"], i),
                _checksum(self.crc32, _DIGITS["crc32"], i),
                _checksum(self.md5, _DIGITS["md5"], i))

    def rows(self):
        """Every file as File.stored takes it, in order: (lfn, size, id, adler32, crc32,
        md5)."""
        n = len(self)
        return zip(self.lfns(), self.sizes, self.ids,
                   _all_checksums(self.adler32, _DIGITS["adler32"], n),
                   _all_checksums(self.crc32, _DIGITS["crc32"], n),
                   _all_checksums(self.md5, _DIGITS["md5"], n))


def packed_runs(first: int, columns, bounds: list) -> list:
    """The PackedFiles of runs of new files: `columns` (lfns, sizes, adler32s, crc32s,
    md5s) of them all, a run per (start, end) of `bounds`, the ids from `first` on.
    Each holds what PackedFiles(...) of its run holds, its sizes always an array: a
    checksum column's form is decided once for all the runs (each run's bytes then a
    slice of the column's), and a run's parts are made in passes of C (an injection's
    blocks hold about a dozen files each, so what is paid per block counts)."""
    lfns, sizes, *checksums = columns
    forms = []   # (the column's form, its values, digits) per checksum
    for values, name in zip(checksums, ("adler32", "crc32", "md5")):
        digits = _DIGITS[name]
        forms.append((_checksums(values, digits), values, digits))
    made = []
    new = PackedFiles.__new__
    for start, end in bounds:
        packed = new(PackedFiles)
        run, run_sizes = lfns[start:end], sizes[start:end]
        packed.prefix = prefix = _directory(run)
        packed.names = SEPARATOR + SEPARATOR.join(
            map(itemgetter(slice(len(prefix), None)), run)) + SEPARATOR
        packed.sizes = array("I" if max(run_sizes) < 2**32 else "q", run_sizes)
        packed.ids = range(first + start, first + end)
        packed.adler32, packed.crc32, packed.md5 = [
            whole if whole is None
            else whole[start * (digits // 2):end * (digits // 2)] if type(whole) is bytes
            else _checksums(values[start:end], digits)
            for whole, values, digits in forms]
        made.append(packed)
    return made


class FileMap(Mapping):
    """A packed block's files as its dict by LFN: each File made when asked for (equal,
    not identical, to the one made the time before).  Read-only: a change holds the
    block, and works on File objects (filecache.py)."""

    __slots__ = ("block", "packed")

    def __init__(self, block, packed: PackedFiles):
        self.block = block
        self.packed = packed

    def __getitem__(self, lfn):
        i = self.packed.index(lfn)
        if i < 0:
            raise KeyError(lfn)
        return File.stored(self.block, lfn, *self.packed.fields(i))

    def get(self, lfn, default=None):
        i = self.packed.index(lfn)
        return default if i < 0 else File.stored(self.block, lfn, *self.packed.fields(i))

    def __contains__(self, lfn):
        return self.packed.index(lfn) >= 0

    def __iter__(self):
        return iter(self.packed.lfns())

    def __len__(self):
        return len(self.packed)

    def values(self) -> list:
        stored, block = File.stored, self.block
        return [stored(block, *row) for row in self.packed.rows()]

    def items(self) -> list:
        return [(f.lfn, f) for f in self.values()]

    def __repr__(self):
        return repr(dict(self.items()))
