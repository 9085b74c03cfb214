"""The packed files an injection makes for many blocks at once (`packed_runs`) hold
what the files of each block packed alone hold: the same LFNs in order, each found
at its place, the same values read back, whatever mix of checksums (absent, full,
short, given for some files only) and sizes (above 2**32 in another block) the
columns hold."""

from hypothesis import given
from hypothesis import strategies as st

from dynamod.inventory.packedfiles import PackedFiles, packed_runs

_DIRS = st.sampled_from(["/store/a/", "/store/a/b/", "/store/", "/", "/store/a/b/a/b/"])
_NAMES = st.sampled_from(["", "f", "a/b/", "a/b/f", "x.root", "a%s{}"])


def _checksum(digits):
    return st.one_of(st.none(), st.text("0123456789abcdef", min_size=1, max_size=digits),
                     st.text("0123456789abcdef", min_size=digits, max_size=digits))


_FILE = st.tuples(_DIRS, _NAMES, st.integers(0, 2**40), _checksum(8), _checksum(8),
                  _checksum(32))


@st.composite
def _columns_and_runs(draw):
    files = draw(st.lists(_FILE, min_size=1, max_size=40))
    lfns = [d + name + str(i) for i, (d, name, *_) in enumerate(files)]
    every = st.sampled_from([None, "0000000a", "ffffffff"])   # one form in a column
    columns = [lfns, [f[2] for f in files]]
    for i in (3, 4, 5):
        if draw(st.booleans()):
            columns.append([f[i] for f in files])
        else:
            value = draw(every)
            columns.append([value if value is None or i < 5 else value * 4] * len(files))
    cuts = sorted(draw(st.sets(st.integers(0, len(files)), max_size=6)) - {0} | {0, len(files)})
    return tuple(columns), list(zip(cuts, cuts[1:]))


@given(_columns_and_runs(), st.integers(1, 2**31))
def test_each_run_holds_what_its_files_packed_alone_hold(drawn, first):
    columns, bounds = drawn
    runs = packed_runs(first, columns, bounds)
    assert len(runs) == len(bounds)
    for (start, end), packed in zip(bounds, runs):
        alone = PackedFiles(range(first + start, first + end),
                            *[column[start:end] for column in columns])
        assert len(packed) == end - start
        assert packed.lfns() == alone.lfns() == columns[0][start:end]
        assert list(packed.rows()) == list(alone.rows())
        for i, lfn in enumerate(columns[0][start:end]):
            assert packed.index(lfn) == alone.index(lfn) == i
            assert packed.fields(i) == alone.fields(i)
        assert (packed.prefix, packed.names, packed.adler32, packed.crc32, packed.md5) == \
               (alone.prefix, alone.names, alone.adler32, alone.crc32, alone.md5)
