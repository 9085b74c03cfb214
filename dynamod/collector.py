"""Pausing Python's cyclic garbage collector around bulk work.

The inventory is millions of long-lived objects.  Work that allocates a lot
(a document of 50,000 files: decoded, applied, turned into rows, committed)
would trigger collections that walk what it allocated, and full ones that
walk the whole inventory, to find next to nothing: what such work drops,
reference counting frees.  So the collector waits until the work is over (a
large request: until its answer).  What survived it is then moved straight to
the oldest generation, unwalked: otherwise the first collection after the pause
would walk all of it (at start-up, the whole inventory) only to promote it.
Holds may overlap (requests run concurrently); the last release resumes.

The price of promoting without a walk: objects a change deletes sit in the
oldest generation, and those that form cycles only a full collection frees,
which the collector's own thresholds then seldom start (datasets, blocks and
replicas are columns, not objects: most of what a change drops is not in it).  So deleted objects are counted, and once
`full_every` of them have piled up a full collection runs (at cms scale, one
of about a second per half a million deletions; memory held meanwhile: a tenth
of the inventory at most).  It runs once the event loop's ready callbacks have
run, so the answer of the change that crossed the line is not held up by it.
"""

import asyncio
import gc
from contextlib import contextmanager

_holds = 0
_resume = False
_dropped = 0
full_every = 50_000    # deleted objects between two full collections (see `scale`)


def hold():
    global _holds, _resume
    if _holds == 0:
        _resume = gc.isenabled()
        gc.disable()
    _holds += 1


def release():
    global _holds
    _holds -= 1
    if _holds == 0:
        gc.freeze()    # every tracked object to the permanent generation, then all of
        gc.unfreeze()  # it to the oldest: promoted without a walk (both are list splices)
        if _resume:
            gc.enable()


@contextmanager
def paused():
    hold()
    try:
        yield
    finally:
        release()


def scale(objects: int):
    """Set the pace of full collections for an inventory of `objects` objects."""
    global full_every
    full_every = max(50_000, objects // 10)


def dropped(count: int):
    """`count` inventory objects left memory (a committed deletion)."""
    global _dropped
    _dropped += count
    if _dropped >= full_every and _holds == 0:
        _dropped = 0
        try:
            asyncio.get_running_loop().call_soon(gc.collect)
        except RuntimeError:   # no event loop in this thread
            gc.collect()
