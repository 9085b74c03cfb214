"""Pausing Python's cyclic garbage collector around bulk work.

The inventory is millions of long-lived objects.  Work that allocates a lot
(a document of 50,000 files: decoded, applied, turned into rows, committed)
would trigger collections that walk what it allocated, and full ones that
walk the whole inventory, to find next to nothing: what such work drops,
reference counting frees.  So the collector waits until the work is over (a
large request: until its answer), and then sees only what survived it.
Holds may overlap (requests run concurrently); the last release resumes.
"""

import gc
from contextlib import contextmanager

_holds = 0
_resume = False


def hold():
    global _holds, _resume
    if _holds == 0:
        _resume = gc.isenabled()
        gc.disable()
    _holds += 1


def release():
    global _holds
    _holds -= 1
    if _holds == 0 and _resume:
        gc.enable()


@contextmanager
def paused():
    hold()
    try:
        yield
    finally:
        release()
