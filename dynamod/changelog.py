"""The change log: one line per inventory change, for operators to grep.

    2026-11-25T18:02:11Z jane connection=12 request=7 created site T2_US_XYZ host='t2.xyz.edu' ...

Every committed change is in it, or nothing is committed: each change set's
lines go into the table `change_log` in the same transaction as the change
itself (a write-back's runs of updates in a compact form, their names and
values as JSON, which the thread makes the same lines of).  The table is a
queue: a thread appends its entries to the file (`changes.log`), syncs the
file, and only then has them deleted.  A file that cannot be written (a full
disk) delays the lines, never loses them: the daemon says so once, keeps them
in the database, and writes them when it can (at the latest at its next
start).  A crash between the sync and the deletion writes that batch again at
the next start: after a crash the last lines may appear twice; none is ever
missing.
"""

import functools
import logging
import os
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import orjson

from .inventory.changes import entry_lines
from .inventory.fields import printable
from .logs import escape
from .store.reader import StoreReader
from .threadname import name_thread

log = logging.getLogger("dynamod")

RETRY_SECONDS = 5.0
BATCH = 1000          # entries read at a time
ENTRIES = "SELECT seq, time, actor, lines FROM change_log WHERE seq > ? ORDER BY seq LIMIT ?"
# From this many characters on, an entry's lines are stored compressed (zlib, as bytes):
# an injection's are about as large as its rows, which SQLite would write, read back
# for the file and delete again.
COMPRESSED = 64 * 1024


class ChangeLog:
    def __init__(self, path: str | None):
        self.path = path
        self._wake = threading.Event()
        self._stopping = False
        self._thread = None
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
        """Feed the file from the table; `acknowledge(seq)` (called from the thread) has
        the entries up to `seq` deleted once they are safe in the file."""
        if not self.path:
            return
        self._thread = threading.Thread(target=self._feed, args=(database, acknowledge),
                                        name="change-log", daemon=True)
        self._thread.start()

    def committed(self):
        """New entries are in the table."""
        self._wake.set()

    def close(self):
        """Write what is left (the daemon's last commits), then stop."""
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join(30)
            self._thread = None

    # ------------------------------------------------------- the thread
    def _feed(self, database: str, acknowledge):
        name_thread("dynamod-log")
        reader = StoreReader(database)
        failing = None
        try:
            written = 0
            while True:
                stopping = self._stopping
                try:
                    written = self._write_pending(reader, written, acknowledge)
                except OSError as exc:
                    if failing is None:
                        log.error("cannot write the change log %s: %s; the changes are kept "
                                  "in the database (table change_log) and written when it "
                                  "can be", self.path, exc.strerror or exc)
                    failing = exc
                else:
                    if failing is not None:
                        log.warning("the change log %s is written again, nothing was lost",
                                    self.path)
                        failing = None
                if stopping and failing is None:
                    return
                if stopping:
                    log.error("the change log %s is behind; the rest is written at the next "
                              "start", self.path)
                    return
                self._wake.wait(RETRY_SECONDS if failing else None)
                self._wake.clear()
        except Exception:
            log.exception("the change log stopped")
        finally:
            reader.close()

    def _write_pending(self, reader, written: int, acknowledge) -> int:
        while rows := reader.db.execute(ENTRIES, (written, BATCH)).fetchall():
            text = "".join([_entry(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)), actor,
                                   lines) for _, t, actor, lines in rows])
            self._append(text.encode())
            written = rows[-1][0]
            acknowledge(written)
        return written

    def _append(self, data: bytes):
        """All of `data` or none of it: a failed write is cut back off."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
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


def note(path: str, actor: str, text: str):
    """One line written straight to the change log's file, with no daemon running (the
    restore of a backup, by `dynamod restore`)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ChangeLog(path)._append(_entry(stamp, actor, text).encode())


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
