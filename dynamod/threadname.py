"""Kernel names for the daemon's threads, so that `top -H`, `ps -L` and `/proc` tell
them apart (Python names its threads for itself only: each would show as the
process's name): the store's connection, the relay of the change log's writer,
the store check, the change log's compressor; and for the daemon's processes,
the change log's writer and each application's, `app-N` (a fork of the daemon,
it would show as a second one)."""


def name_thread(name: str):
    """Name the calling thread for the kernel (15 bytes at most); a kernel that refuses
    leaves it unnamed, which is no reason to stop."""
    try:
        with open("/proc/thread-self/comm", "w") as comm:
            comm.write(name[:15])
    except OSError:
        pass
