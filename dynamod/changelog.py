"""The change log: one line per inventory change, for operators to grep.

    2026-11-25T18:02:11Z jane request=7 created site T2_US_XYZ host='t2.xyz.edu' ...

Lines are written by a background thread (a logging queue), so the event
loop never waits on the file; they are written only after the change is
committed, so the log never shows a change the store does not have.
"""

import logging
import logging.handlers
import queue
import time


class ChangeLog:
    def __init__(self, path: str | None):
        self.path = path
        self._logger = logging.getLogger("dynamod.changes")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._listener = None
        if path:
            handler = logging.FileHandler(path, encoding="utf-8", delay=True)
            handler.setFormatter(logging.Formatter("%(message)s"))
            records = queue.SimpleQueue()
            self._logger.addHandler(logging.handlers.QueueHandler(records))
            self._listener = logging.handlers.QueueListener(records, handler)
            self._listener.start()

    def write(self, actor: str, lines: list[str]):
        if self._listener is None or not lines:
            return
        # One logging record for the whole change, one line per change in it: a record
        # per line made a write-back of 100,000 changes cost seconds of logging.
        prefix = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {actor} "
        self._logger.info("\n".join([prefix + line for line in lines]))

    def close(self):
        if self._listener is not None:
            self._listener.stop()
            for handler in list(self._logger.handlers):
                self._logger.removeHandler(handler)
            self._listener = None
