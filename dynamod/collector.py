"""Pausing Python's cyclic garbage collector around bulk work.

The inventory is millions of long-lived objects.  Work that allocates a lot
(decoding a document of 50,000 files, applying it, loading the store) would
trigger full collections, each walking the whole inventory to find next to
nothing: what such work drops, reference counting frees.  So the collector
waits until the work is over; cycles left behind are found by the next
collection after it.
"""

import gc
from contextlib import contextmanager


@contextmanager
def paused():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
