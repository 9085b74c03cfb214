"""Logging to standard error, as the journal or a terminal wants it.

Under systemd (JOURNAL_STREAM names our stderr) each line starts with its
syslog priority (`<3>` for errors) and carries no time stamp, since the
journal adds its own; elsewhere lines carry a time stamp and the level name.

Every message is escaped: a newline or another control character that came
from a peer (a request id, a DN, a name) is written as `\n`, `\x1b`..., so
no peer can forge a line (nor turn one around: `\u202e`).  Refusals are rate-limited per peer
(`RateLimited`).  A detached daemon's log file is reopened on SIGHUP, for
logrotate.
"""

import logging
import os
import re
import sys
import time

# Controls, line and paragraph separators, and the invisible format characters that
# reorder or hide what a line shows (bidirectional overrides and isolates, zero-width
# marks and joiners, the byte order mark): a name holding U+202E showed its line
# backwards in a terminal.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e"
                      "\u2060-\u2064\u2066-\u206f\ufeff]")
_detached_log = None   # the log file of a detached daemon (fds 1 and 2)


def escape(text: str) -> str:
    """`text` with every control character written out (`\n`, `\x1b`)."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def _escape_record(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    if _CONTROL.search(message):
        record.msg, record.args = escape(message), None
    return True

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    def format(self, record):
        priority = _PRIORITY.get(record.levelno, 6)
        return f"<{priority}>{record.name}: {super().format(record)}"


def stderr_is_journal() -> bool:
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(x) for x in stream.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


def setup(level: str):
    handler = logging.StreamHandler(sys.stderr)
    if stderr_is_journal():
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_escape_record)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiosqlite logs every statement it runs, with its parameters (names, DNs, e-mails),
    # twice, at DEBUG: at any scale that drowns the daemon's own DEBUG lines.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)


def detach_to(path: str):
    """Send standard output and error (the log) to `path`, reopened by `reopen`."""
    global _detached_log
    _detached_log = path
    reopen()


def reopen():
    """Open the detached log file again (after logrotate moved it away)."""
    if _detached_log is None:
        return
    fd = os.open(_detached_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


class RateLimited:
    """At most `burst` lines per peer in `window` seconds; the rest are counted, and one
    line says how many were suppressed when the peer's next window opens (or when it
    is swept: peers are forgotten once their window is over)."""

    def __init__(self, logger: logging.Logger, burst: int = 5, window: float = 10.0):
        self.logger, self.burst, self.window = logger, burst, window
        self.peers = {}   # key -> [window start, lines logged, lines suppressed]

    def warning(self, key: str, message: str, *args):
        now = time.monotonic()
        entry = self.peers.get(key)
        if entry is None or now - entry[0] >= self.window:
            if entry is not None:
                self._summary(key, entry)
            elif len(self.peers) >= 1024:
                self.sweep(now)
            entry = self.peers[key] = [now, 0, 0]
        if entry[1] < self.burst:
            entry[1] += 1
            self.logger.warning(message, *args)
        else:
            entry[2] += 1

    def sweep(self, now: float | None = None):
        now = time.monotonic() if now is None else now
        for key, entry in list(self.peers.items()):
            if now - entry[0] >= self.window:
                self._summary(key, entry)
                del self.peers[key]

    def _summary(self, key, entry):
        if entry[2]:
            self.logger.warning("%s: %d more refusal(s) suppressed in %g s", key, entry[2],
                                self.window)
