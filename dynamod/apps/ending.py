"""A script's end, as Python's own at the end of a program.

The child leaves with `os._exit` (it must never run the daemon's clean-up), which
skips what the interpreter does when a script ends: waiting for the threads it
started, running its `atexit` handlers, and freeing its objects (a file written and
never closed is flushed then).  Without them a script's last lines in a file it
left open were lost, and so were its threads' work.  The daemon's own `atexit`
handlers are dropped at the fork (`forget_daemon`): they are not the script's.
"""

import atexit
import gc
import threading


def forget_daemon():
    """The daemon's `atexit` handlers, inherited with its memory, are not the script's."""
    atexit._clear()


def finish(namespace: dict):
    """What the interpreter does at a script's end, in its order: join the threads that
    are not daemons, run the `atexit` handlers, free the script's objects."""
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    namespace.clear()
    gc.collect()
