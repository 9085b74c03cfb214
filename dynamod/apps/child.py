"""What runs in an application's child, between fork() and os._exit().

The child never touches the parent's event loop, database connection or
sockets: it closes every descriptor it inherited except the caller's standard
streams, the channel it reads files through (filechannel.py) and (for a
writer) the pipe its changes go back through, takes the
caller's identity when the daemon can, and runs the script synchronously as
`__main__`.  A writer that ends with exit code 0 sends its records, one JSON
object per line, then an end line with their count.
"""

import ctypes
import fcntl
import gc
import logging
import os
import pwd
import signal
import sys
import traceback

import orjson

from .. import executable
from ..inventory import objects
from .filechannel import ChannelSource
from .proxy import ApplicationInventory

# Exit codes the runner itself produces.
EXIT_FAILURE = 1
EXIT_TERMINATED = 2      # SIGTERM (a kill or a time-out) interrupted the script
EXIT_SETUP = 70          # the child could not be prepared (EX_SOFTWARE)

_CLEARED_ENV = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC",
                "WATCHDOG_PID", "DYNAMO_SOCKET")
UPDATES_FD = 3
FILES_FD = 4
_daemon_file_source = None  # kept referenced: freeing it would close the daemon's connection


class _Terminated(BaseException):
    """Raised in the script by SIGTERM, so `finally` blocks still run."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def run(app, inventory, stdio, updates_fd, files_fd, workarea) -> None:
    """Become the application and never return."""
    code = EXIT_SETUP
    daemon = os.getppid()
    try:
        _detach_from_daemon(stdio, updates_fd, files_fd)
        _become(app)
        _die_with(daemon)
        if stdio is None:  # asynchronous: output goes to files of the caller's own
            for target, fd in enumerate(_workarea_streams(workarea)):
                os.dup2(fd, target)
                os.close(fd)
        code = _execute(app, inventory)
    except BaseException:  # nothing may escape into the daemon's code
        try:
            traceback.print_exc()
        except BaseException:
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(code)


def _detach_from_daemon(stdio, updates_fd, files_fd):
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    os.setsid()
    logging.root.handlers.clear()
    for target, fd in enumerate(stdio or ()):
        os.dup2(fd, target)
    # Out of the way of their targets first, so that neither overwrites the other.
    channels = {target: fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, FILES_FD + 1)
                for target, fd in ((UPDATES_FD, updates_fd), (FILES_FD, files_fd))
                if fd is not None}
    for target, fd in channels.items():
        os.dup2(fd, target)
    if updates_fd is None:
        os.closerange(UPDATES_FD, UPDATES_FD + 1)
    os.closerange(FILES_FD + 1, os.sysconf("SC_OPEN_MAX"))


def _workarea_streams(workarea):
    """Created as the caller, after the privileges are gone: the work directory is
    sticky and not listable, so each application can make only its own area."""
    os.mkdir(workarea, 0o700)
    streams = [os.open(os.devnull, os.O_RDONLY)]
    for name in ("stdout", "stderr"):
        path = os.path.join(workarea, name)
        streams.append(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return streams


_PR_SET_PDEATHSIG = 1
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _die_with(daemon: int):
    """Be killed if the daemon dies: nobody would collect the changes or the exit
    code, and the restarted daemon marks the application killed.  Set after the
    uid change, which clears it."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != daemon:  # it died before the request took effect
        os._exit(EXIT_TERMINATED)


def _drop_capabilities():
    """Clear every capability set: a daemon running as its own account with
    CAP_SETUID keeps it across setuid() (only a change away from uid 0 clears
    capabilities), and a script must never hold it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header, data = _CapHeader(_CAPABILITY_VERSION_3, 0), (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    with open("/proc/self/status") as status:
        held = [line.split()[0] for line in status
                if line.startswith(("CapInh", "CapPrm", "CapEff", "CapAmb"))
                and int(line.split()[1], 16)]
    if held:
        raise PermissionError(f"capabilities still held: {', '.join(held)}")


def _become(app):
    """Take the caller's uid, gid and groups (when the daemon may) and environment."""
    try:
        account = pwd.getpwuid(app.uid)
    except KeyError:
        account = None
    if os.geteuid() != app.uid:
        groups = os.getgrouplist(account.pw_name, app.gid) if account else [app.gid]
        os.setgroups(groups)
        os.setgid(app.gid)
        os.setuid(app.uid)
        if os.geteuid() != app.uid or os.getuid() != app.uid:
            raise PermissionError("could not take the caller's uid")
    if app.uid != 0:
        _drop_capabilities()
    home = account.pw_dir if account else "/"
    keep = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TZ", "TERM") if k in os.environ}
    os.environ.clear()
    os.environ.update(keep)
    os.environ.update(HOME=home, USER=app.user, LOGNAME=app.user, DYNAMO_APP_ID=str(app.id))
    for name in _CLEARED_ENV:
        os.environ.pop(name, None)
    for directory in (app.cwd, home, "/"):
        try:
            os.chdir(directory)
            break
        except (OSError, TypeError):
            continue


def _streams():
    """Fresh Python streams on descriptors 0-2: nothing of the daemon's buffers."""
    sys.stdin = open(0, "r", closefd=False, errors="replace")
    sys.stdout = open(1, "w", buffering=1, closefd=False, errors="backslashreplace")
    sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


def _execute(app, inventory) -> int:
    global _daemon_file_source
    _streams()
    _daemon_file_source = inventory.file_cache.source
    inventory.file_cache.source = ChannelSource(FILES_FD)
    proxy = ApplicationInventory(inventory, writable=app.write)
    executable.inventory, executable.authorized, executable.app_id = proxy, app.write, app.id
    namespace = {"__name__": "__main__", "__file__": app.path, "__builtins__": __builtins__,
                 "inventory": proxy}
    namespace.update({cls.__name__: cls for cls in objects.CLASSES})
    sys.argv = [app.path, *app.args]
    script_dir = os.path.dirname(os.path.abspath(app.path))
    if os.path.isdir(script_dir):
        sys.path.insert(0, script_dir)
    gc.enable()
    try:
        code = compile(app.script, app.path, "exec")
        exec(code, namespace)
        exit_code = 0
    except SystemExit as exc:
        exit_code = _exit_code(exc.code)
    except (_Terminated, KeyboardInterrupt):
        print(f"application {app.id} terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except BaseException as exc:
        _print_script_traceback(exc)
        exit_code = EXIT_FAILURE
    sys.stdout.flush()
    if app.write and exit_code == 0:
        _send_records(proxy.records)
    return exit_code


def _exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return EXIT_FAILURE


def _print_script_traceback(exc):
    """The traceback from the script's own frames down (not the runner's)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def _send_records(records):
    if records:
        print(f"Sending {len(records)} change(s) to the daemon.", file=sys.stderr)
    with open(UPDATES_FD, "wb", closefd=True) as pipe:
        for rec in records:
            pipe.write(orjson.dumps(rec) + b"\n")
        pipe.write(orjson.dumps({"end": len(records)}) + b"\n")
