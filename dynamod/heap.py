"""Giving the heap's free pages back to the system.

Loading the inventory (the rows of every table, or the snapshot's parts) and
writing a snapshot allocate tens of MiB for a moment.  glibc's malloc keeps much
of what such work frees in its heap: after a start from the snapshot the daemon
stayed 16 MiB above what it holds (88 against 72 MiB resident at medium scale).
`malloc_trim` returns those pages.  Where the C library has none, nothing is
done.
"""

import ctypes


def give_back():
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except AttributeError:
        return
    trim(0)
