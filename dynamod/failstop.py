"""Fail-stop: the daemon never serves memory that may differ from the store.

Memory is changed first and the store after; an undo puts memory back when a
change is refused or its commit fails.  When that cannot be trusted — an undo
that raised, an unexpected exception (MemoryError above all) while a change
was being applied or prepared for its commit, when a step may have been half
done with no undo recorded — the daemon logs why and exits at once with
status 70, without committing anything more: the service manager restarts it
and it loads the committed store, the only state it can vouch for.  Every
acknowledged change is already committed, so nothing acknowledged is lost.

Undoes run with a reserve of address space released (an anonymous mapping
that touches no page), so that running short of memory in a change does not
make its undo run short too.
"""

import contextlib
import logging
import mmap
import os

log = logging.getLogger("dynamod")

EXIT_STATUS = 70            # EX_SOFTWARE: restarted from the store
EXIT_DAMAGED = 65           # EX_DATAERR: the store itself is damaged; a restart cannot help
RESERVE_BYTES = 64 << 20

_reserve = None
_on_stop = []               # callables run before the exit (e.g. remove the socket file)


def hold_reserve():
    """Take the reserve (at start-up, and again after each undo that used it)."""
    global _reserve
    if _reserve is None:
        _reserve = mmap.mmap(-1, RESERVE_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def on_stop(callback):
    _on_stop.append(callback)


def stop(reason: str):
    """Log why and exit now; never returns."""
    _stop(f"fail-stop: {reason}; memory may differ from the store, so dynamod stops without "
          f"committing anything more (the service manager restarts it from the store)",
          EXIT_STATUS)


def damaged(line: str):
    """The store is damaged (found while serving): say so and exit for good; systemd does
    not restart it (RestartPreventExitStatus=65), an operator recovers the store."""
    _stop(line, EXIT_DAMAGED)


def _stop(message: str, status: int):
    global _reserve
    try:
        if _reserve is not None:   # room for the last words
            _reserve.close()
            _reserve = None
        log.critical("%s", message)
        for callback in _on_stop:
            callback()
        for handler in logging.getLogger().handlers:
            handler.flush()
    finally:
        os._exit(status)


@contextlib.contextmanager
def undoing(what: str):
    """Run an undo with the reserve released; an undo that fails stops the daemon."""
    global _reserve
    if _reserve is not None:
        _reserve.close()
        _reserve = None
    try:
        yield
    except BaseException as exc:
        stop(f"{what} failed: {exc!r}")
    try:
        hold_reserve()
    except (MemoryError, OSError) as exc:
        stop(f"cannot take back the memory reserve after {what}: {exc!r}")
