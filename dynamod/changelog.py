"""The change log: one line per inventory change, for operators to grep.

    2026-11-25T18:02:11Z jane connection=12 request=7 created site T2_US_XYZ host='t2.xyz.edu' ...

Every committed change is in it, or nothing is committed: each change set's
lines go into the table `change_log` in the same transaction as the change
itself (a write-back's runs of updates in a compact form, their names and
values as JSON, which the writer makes the same lines of).  The table is a
queue: a process of its own, the writer, appends its entries to the file
(`changes.log`), syncs the file, and only then has the daemon delete them.
A file that cannot be written (a full disk) delays the lines, never loses
them: the daemon says so once, keeps them in the database, and writes them
when it can (at the latest at its next start).  A crash between the sync and
the deletion writes that batch again at the next start: after a crash the
last lines may appear twice; none is ever missing.  A writer killed in the
middle of a write leaves a torn last line, which the next append cuts off
first (that entry, never told, is written again whole).

The writer is a process, not a thread, because making an injection's lines
held the daemon's GIL 2 µs a file, which every other client waited for.
"""

import functools
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import orjson

from . import capabilities
from .inventory.changelines import entry_lines
from .inventory.fields import printable
from .logs import escape
from .store.reader import StoreReader
from .threadname import name_thread

log = logging.getLogger("dynamod")

RETRY_SECONDS = 5.0
STOP_SECONDS = 30.0     # the writer's time to write the last lines at the daemon's end
BATCH = 1000          # entries read at a time, at most
WRITE_BYTES = 16 << 20   # the text of one write, about (an entry is not cut)
ENTRIES = "SELECT seq, time, actor, lines FROM change_log WHERE seq > ? ORDER BY seq LIMIT ?"
# From this many characters on, an entry's lines are stored compressed (zlib, as bytes):
# an injection's are about as large as its rows, which SQLite would write, read back
# for the file and delete again.
COMPRESSED = 64 * 1024


class ChangeLog:
    def __init__(self, path: str | None):
        self.path = path
        self._stopping = False
        self._stopped = threading.Event()
        self._relay = None
        self._process = None
        self._wake = None     # the writers' input: (read end, write end), the daemon's
        self._next = 0        # a key for each entry in a batch of rows (the store numbers it)

    def entry(self, actor: str, lines: str | bytes) -> dict:
        """The row that puts this change set's lines (`changes.journal_entry`) in the change
        log, committed with it."""
        if not self.path or not lines:
            return {}
        self._next += 1
        return {("changelog", (-self._next,)): (
            None, time.time(), actor, _Compressed(lines) if len(lines) >= COMPRESSED else lines)}

    def start(self, database: str, acknowledge):
        """Feed the file from the table by a process of its own; `acknowledge(seq)` (called
        from the thread relaying what it says) has the entries up to `seq` deleted once
        they are safe in the file.  Every writer started reads the same pipe, which only
        `close` closes: a wake-up never goes to a descriptor closed meanwhile."""
        if not self.path:
            return
        self._wake = os.pipe()
        os.set_blocking(self._wake[1], False)
        self._relay = threading.Thread(target=self._run, args=(database, acknowledge),
                                       name="change-log", daemon=True)
        self._relay.start()

    def committed(self):
        """New entries are in the table: a line wakes the writer (a full pipe means it has
        wake-ups enough; a writer being started again reads the table first anyway)."""
        if self._wake is not None:
            try:
                os.write(self._wake[1], b"\n")
            except BlockingIOError:
                pass

    def close(self):
        """Have the writer write what is left (the daemon's last commits), then stop."""
        if self._relay is None:
            return
        self._stopping = True
        self._stopped.set()
        os.close(self._wake[1])   # the end of its input: write the rest, then exit
        self._relay.join(STOP_SECONDS)
        if self._relay.is_alive() and self._process is not None:
            log.error("the change log's writer did not finish in %.0f s; the rest of the "
                      "change log is written at the next start", STOP_SECONDS)
            self._process.kill()
            self._relay.join(STOP_SECONDS)
        os.close(self._wake[0])
        self._relay = self._wake = None

    # ---------------------------------------------- the relay, in the daemon
    def _run(self, database: str, acknowledge):
        """Start the writer, pass on what it says, start it again should it end before it
        is told to (its lines wait in the table meanwhile)."""
        name_thread("dynamod-relay")
        while not self._stopping:
            try:
                process = subprocess.Popen(
                    [sys.executable, "-I", "-c", CHILD, _ROOT, database, self.path],
                    stdin=self._wake[0], stdout=subprocess.PIPE, close_fds=True)
            except OSError as exc:
                log.error("cannot start the change log's writer (%s); the changes are kept "
                          "in the database (table change_log)", exc.strerror or exc)
            else:
                self._process = process
                self._relay_from(process, acknowledge)
                status = process.wait()
                if self._stopping:
                    return
                log.error("the change log's writer (process %d) ended with status %d; its "
                          "lines wait in the database until it is started again",
                          process.pid, status)
            self._stopped.wait(RETRY_SECONDS)

    @staticmethod
    def _relay_from(process, acknowledge):
        for line in process.stdout:
            what, _, text = line.decode("utf-8", "replace").rstrip("\n").partition(" ")
            if what == "logged":
                acknowledge(int(text))
            elif what == "error":
                log.error("%s", text)
            else:
                log.warning("%s", text)
        process.stdout.close()


# ------------------------------------------------------------ the writer
# Its program (`python -I -c CHILD PACKAGE_ROOT DATABASE PATH`): `main` below, found from
# the daemon's own package (an isolated interpreter has no current directory or
# environment on its path).
CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); "
         "from dynamod.changelog import main; main(sys.argv[2], sys.argv[3])")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(database: str, path: str):
    """The writer: the table's entries appended to the file, synced, then told on standard
    output (`logged SEQ`) so that the daemon has them deleted; woken by a line on
    standard input, and told to write the rest and stop by its end.  A process of its
    own, so that formatting an injection's lines takes the daemon's GIL from nobody;
    it holds none of the daemon's capabilities and ignores the signals meant for the
    daemon (a Ctrl-C in its terminal, SIGTERM, SIGHUP): the daemon's end ends it."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    capabilities.drop_all()
    name_thread("dynamod-log")
    try:
        _write(database, path, sys.stdout)
    except BrokenPipeError:   # the daemon is gone (a crash): its next start writes the rest
        os._exit(0)


def _write(database: str, path: str, out):
    reader = StoreReader(database)
    failing = None
    written = 0
    stopping = False
    while True:
        try:
            written = _write_pending(path, reader, written, out)
        except BrokenPipeError:   # the daemon's end, not the file's
            raise
        except OSError as exc:
            if failing is None:
                _say(out, "error", f"cannot write the change log {path}: "
                     f"{exc.strerror or exc}; the changes are kept in the database (table "
                     f"change_log) and written when it can be")
            failing = exc
        else:
            if failing is not None:
                _say(out, "warning", f"the change log {path} is written again, nothing "
                     f"was lost")
                failing = None
        if stopping:
            if failing is not None:
                _say(out, "error", f"the change log {path} is behind; the rest is written "
                     f"at the next start")
            return
        ready, _, _ = select.select([0], [], [], RETRY_SECONDS if failing else None)
        if ready and not os.read(0, 65536):
            stopping = True


def _say(out, what: str, text: str):
    out.write(f"{what} {text.replace(chr(10), ' ')}\n")
    out.flush()


def _write_pending(path: str, reader, written: int, out) -> int:
    """The entries after `written` appended, in writes of about WRITE_BYTES of text each
    (entries read one at a time: a backlog of large injections' entries, left by a
    full disk, is never held whole); the last entry written."""
    while True:
        parts, size, last = [], 0, written
        for seq, t, actor, lines in reader.db.execute(ENTRIES, (written, BATCH)):
            parts.append(_entry(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)), actor,
                                lines))
            size, last = size + len(parts[-1]), seq
            if size >= WRITE_BYTES:
                break
        if not parts:
            return written
        _append(path, "".join(parts).encode())
        written = last
        _say(out, "logged", str(written))


def _append(path: str, data: bytes):
    """All of `data` or none of it: a failed write is cut back off."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        size = _whole(fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def _whole(fd: int) -> int:
    """The file's size, a torn last line cut off first: a writer killed in the middle
    of a write (the OOM killer; systemd killing the daemon's whole group) left part of
    an entry it had not told, still in the table and written again whole after it,
    so that one line held two (the second not at a line's start, which grep misses)."""
    size = end = os.fstat(fd).st_size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        if end == size and chunk.endswith(b"\n"):
            return size
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            end = start + cut + 1
            break
        end = start
    os.ftruncate(fd, end)
    return end


def note(path: str, actor: str, text: str):
    """One line written straight to the change log's file, with no daemon running (the
    restore of a backup, by `dynamod restore`)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    _append(path, _entry(stamp, actor, text).encode())


def _stored(entry: str | bytes) -> str | bytes:
    """An entry as stored (`changes.journal_entry`), decompressed: its text, or a
    write-back's or an injection's compact form (JSON bytes: a list, so its first byte
    is `[`, where a line of text starts with a word).  Either is compressed (zlib) from
    COMPRESSED bytes on."""
    if type(entry) is str:
        return entry
    if entry[:1] != b"[":
        entry = zlib.decompress(entry)
        if entry[:1] != b"[":
            return entry.decode()
    return entry


def entry_text(entry: str | bytes) -> str:
    """An entry's lines (`changes.journal_entry`), as stored: text."""
    entry = _stored(entry)
    return entry if type(entry) is str else "\n".join(entry_lines(orjson.loads(entry)))


def _entry(stamp: str, actor: str, entry: str | bytes) -> str:
    """An entry's lines as the file holds them: each after the time and the actor, with
    its control characters written out.  An entry without any (nearly all: fields hold
    none) is written in a few passes over its whole text, not one per line; a compact
    one whose JSON is plain (`_plain_json`) has each line made with its time and actor."""
    prefix = f"{stamp} {escape(actor)} "
    entry = _stored(entry)
    if type(entry) is bytes:
        if _plain_json(entry):
            return "".join(entry_lines(orjson.loads(entry), prefix, "\n"))
        entry = "\n".join(entry_lines(orjson.loads(entry)))
    if printable(entry.replace("\n", "")):
        return prefix + entry.replace("\n", "\n" + prefix) + "\n"
    return "".join([f"{prefix}{escape(line)}\n" for line in entry.split("\n")])


def _plain_json(data: bytes) -> bool:
    """Whether every string in this JSON is printable ASCII, and so is every line made of
    them: JSON writes a control character inside a string as an escape, which begins
    with a backslash (as does any escape: such an entry takes the general way), and
    DEL is the only other control character of ASCII."""
    return data.isascii() and b"\\" not in data and b"\x7f" not in data


class _Compressed:
    """An entry, compressed (zlib) by the compressing thread from when it is made: while
    the event loop prepares the commit and the store's thread writes the rows before it
    (zlib gives up the GIL while it works).  sqlite3 takes the result through
    `__conform__` when it binds the value, waiting for it if need be (a failure raised
    there, as if it compressed then)."""

    __slots__ = ("_result",)

    def __init__(self, entry: str | bytes):
        self._result = _compressor().submit(_compress, entry)

    def __conform__(self, protocol):
        return self._result.result()


def _compress(entry: str | bytes) -> bytes:
    return zlib.compress(entry if type(entry) is bytes else entry.encode(), 1)


@functools.cache
def _compressor() -> ThreadPoolExecutor:
    """One thread, started with the first large entry, for all of them."""
    return ThreadPoolExecutor(1, thread_name_prefix="dynamod-compress",
                              initializer=name_thread, initargs=("dynamod-zlib",))
