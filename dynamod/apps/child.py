"""What runs in an application's child, between fork() and os._exit().

The child is sealed before any user code runs: it unmaps every shared
mapping it could write through to the daemon (seal.py), closes every
descriptor it inherited except the caller's standard streams, the channel it
reads files through (filechannel.py) and (for a writer) the pipe its changes
go back through, drops what the daemon keeps private (users, grants, script
authorizations, other applications' records, who is connected), enters a cgroup of its own,
takes its limits and the caller's identity, and runs the script
synchronously as `__main__`.  A writer imports only what root installed
(`sys.path` as `python3 -I` has it), never the caller's directories.  A
writer that ends with exit code 0 sends its records through its pipe
(writeback.py).
"""

import ctypes
import fcntl
import gc
import logging
import os
import posix
import pwd
import resource
import signal
import sys
import termios
import traceback
import types
from dataclasses import dataclass

from .. import capabilities, executable
from ..inventory import objects
from ..threadname import name_thread
from . import ending, seal, writeback
from .cgroup import AppCgroups
from .filechannel import ChannelSource
from .proxy import ApplicationInventory

# Exit codes the runner itself produces.
EXIT_FAILURE = 1
EXIT_ORPHANED = 2        # the daemon died before the script could start
EXIT_SETUP = 70          # the child could not be prepared (EX_SOFTWARE)

_CLEARED_ENV = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC",
                "WATCHDOG_PID", "DYNAMO_SOCKET")
CONSOLE_PATH = "<console>"   # the path of the interactive console's application
_DAEMON_CODE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
UPDATES_FD = 3
FILES_FD = 4
_daemon_file_source = None  # kept referenced: freeing it would close the daemon's connection


@dataclass
class Plan:
    """Everything the child is handed, decided by the daemon before the fork."""
    app: object
    inventory: object
    stdio: list | None           # the caller's stdin, stdout, stderr; None: asynchronous
    updates_fd: int | None       # a writer's pipe back to the daemon
    files_fd: int                # the socket the child asks for files on
    workarea: str | None         # asynchronous output goes there (made by the daemon)
    cgroup: str | None           # the application's own cgroup
    rlimits: dict                # resource.RLIMIT_* -> soft and hard limit
    memory: int | None           # bytes it may map beyond what it inherits
    forget: object               # drops the daemon's private records in this copy
    isolated_path: list | None   # a writer's sys.path (python3 -I's)
    home: str                    # the caller's home directory (home_of)


class _Terminated(BaseException):
    """Raised in the script by SIGTERM, so `finally` blocks still run."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def run(plan: Plan) -> None:
    """Become the application and never return."""
    code = EXIT_SETUP
    daemon = os.getppid()
    try:
        seal.seal()
        _detach_from_daemon(plan.stdio, plan.updates_fd, plan.files_fd)
        plan.forget()
        if plan.cgroup:
            AppCgroups.enter(plan.cgroup)
        _first_to_go()
        name_thread(f"app-{plan.app.id}")   # for top and ps: `dynamo --kill N`
        _limit(plan.rlimits, plan.memory)
        become(plan.app, plan.home)
        _die_with(daemon)
        if plan.stdio is None:  # asynchronous: output goes to files of the caller's own
            for target, fd in enumerate(_workarea_streams(plan.workarea)):
                os.dup2(fd, target)
                os.close(fd)
        code = _execute(plan)
    except _Terminated:   # killed after its script ended (its changes were too many)
        code = -signal.SIGTERM
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
        _exit(code)


def _exit(code: int):
    """End with exit code `code`, or a negative one: killed by signal -`code`, as the
    script would have been without the handler that let its `finally` blocks run; the
    caller sees the signal, as a shell does (`dynamo` exits 128 + N)."""
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {-code})
        os.kill(os.getpid(), -code)
        code = 128 - code   # not reached: the signal ends the process
    os._exit(code)


def _first_to_go():
    """Short of memory, the kernel kills an application before the daemon."""
    fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
    try:
        os.write(fd, b"1000")
    finally:
        os.close(fd)


def _limit(rlimits: dict, memory: int | None):
    """The configured resource limits; the address space counts from what the child
    inherits (the daemon's whole heap is mapped in it already)."""
    if memory is not None:
        fd = os.open("/proc/self/statm", os.O_RDONLY)
        try:
            inherited = int(os.read(fd, 256).split()[0]) * os.sysconf("SC_PAGE_SIZE")
        finally:
            os.close(fd)
        rlimits = {**rlimits, resource.RLIMIT_AS: inherited + memory}
    for which, value in rlimits.items():
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY and value > hard and os.geteuid() != 0:
            value = hard   # the daemon's own limit is as far as it can go
        resource.setrlimit(which, (value, value))


def _detach_from_daemon(stdio, updates_fd, files_fd):
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    _own_process_group()
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


def _own_process_group():
    """A process group of its own, without a controlling terminal: a Ctrl-C typed at the
    caller's terminal reaches the client, not the application, and job control never
    stops it for using its streams.  Not a session of its own (setsid): the kernel
    makes each new session a scheduling group of its own, which cost 0.5-3 ms of every
    start; and not being a session leader, it can never take a terminal it opens as
    its controlling terminal."""
    os.setpgid(0, 0)
    try:   # the daemon's controlling terminal, when it was started from one
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return   # none (a service has none)
    try:
        fcntl.ioctl(fd, termios.TIOCNOTTY)   # leaves it (this process only: no leader)
    finally:
        os.close(fd)


def _workarea_streams(workarea):
    """Created as the caller, after the privileges are gone, in the area the daemon
    made for this application and handed to the caller."""
    streams = [os.open(os.devnull, os.O_RDONLY)]
    for name in ("stdout", "stderr"):
        path = os.path.join(workarea, name)
        streams.append(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                               0o600))
    return streams


_PR_SET_PDEATHSIG = 1


def _die_with(daemon: int):
    """Be killed if the daemon dies: nobody would collect the changes or the exit
    code, and the restarted daemon marks the application killed.  Set after the
    uid change, which clears it."""
    capabilities.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != daemon:  # it died before the request took effect
        os._exit(EXIT_ORPHANED)


def home_of(app) -> str:
    """The caller's home directory ("/" without an account), looked up by the daemon
    before the fork: in the child the name service would touch pages it shares with
    the daemon (copy-on-write faults before the script)."""
    try:
        return pwd.getpwuid(app.uid).pw_dir
    except KeyError:
        return "/"


def _groups(app) -> list[int]:
    try:
        return os.getgrouplist(pwd.getpwuid(app.uid).pw_name, app.gid)
    except KeyError:
        return [app.gid]


def become(app, home: str | None = None):
    """Take the caller's uid, gid and groups (when the daemon may) and environment;
    `home`: what `home_of(app)` gives (looked up here if not given)."""
    home = home_of(app) if home is None else home
    if os.geteuid() != app.uid:
        os.setgroups(_groups(app))   # here: a slow name service must not hold the daemon
        os.setgid(app.gid)
        os.setuid(app.uid)
        if os.geteuid() != app.uid or os.getuid() != app.uid:
            raise PermissionError("could not take the caller's uid")
    if app.uid != 0:
        capabilities.drop_all()   # CAP_SETUID, kept across setuid() when ambient
    keep = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TZ", "TERM") if k in os.environ}
    _overwrite_environment()
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


def _overwrite_environment():
    """Zeros over the daemon's environment in this child's memory, before os.environ lets
    go of it: the values Python read (freed, they would stay in memory as they are) and
    the strings the kernel put on the stack at exec (unsetenv leaves them there, and
    /proc/PID/environ reads them).  A script that reads its own memory finds none of the
    service's settings (its unit's Environment=).  Bytes of one character are Python's
    shared singletons, and left."""
    offset = bytes.__basicsize__ - 1   # where a bytes object's characters start
    for value in posix.environ.values():   # os.environ's own (os.environb's too)
        if len(value) > 1:
            ctypes.memset(id(value) + offset, 0, len(value))
    start, end = _STACK_ENVIRONMENT
    if 0 < start < end:
        ctypes.memset(start, 0, end - start)


def _stack_environment() -> tuple[int, int]:
    """Where the kernel put the environment's strings at exec (env_start and env_end of
    /proc/PID/stat, man 5 proc): read once, in the daemon, for every child."""
    with open("/proc/self/stat", "rb") as stat:
        fields = stat.read().rpartition(b")")[2].split()
    return int(fields[50 - 3]), int(fields[51 - 3])   # counted from field 3


_STACK_ENVIRONMENT = _stack_environment()


def _streams():
    """Fresh Python streams on descriptors 0-2: nothing of the daemon's buffers."""
    sys.stdin = open(0, "r", closefd=False, errors="replace")
    sys.stdout = open(1, "w", buffering=1, closefd=False, errors="backslashreplace")
    sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


def _execute(plan: Plan) -> int:
    global _daemon_file_source
    app, inventory = plan.app, plan.inventory
    _streams()
    ending.forget_daemon()
    _daemon_file_source = inventory.file_cache.source
    inventory.file_cache.source = ChannelSource(FILES_FD)
    proxy = ApplicationInventory(inventory, writable=app.write)
    executable.inventory, executable.authorized, executable.app_id = proxy, app.write, app.id
    namespace = script_module(app.path, {"inventory": proxy})
    namespace.update({cls.__name__: cls for cls in objects.CLASSES})
    sys.argv = [app.path, *app.args]
    if plan.isolated_path is not None:
        sys.path[:] = plan.isolated_path
    else:
        script_dir = os.path.dirname(os.path.abspath(app.path))
        if os.path.isdir(script_dir):
            sys.path.insert(0, script_dir)
    gc.enable()
    try:
        try:
            code = compile(app.script, app.path, "exec")
            exec(code, namespace)
            exit_code = 0
        except SystemExit as exc:
            exit_code = _exit_code(exc.code)
        except (_Terminated, KeyboardInterrupt):
            raise
        except BaseException as exc:
            print_script_traceback(exc)
            _explain_missing_module(exc, app)
            exit_code = EXIT_FAILURE
        ending.finish(namespace)
    except (_Terminated, KeyboardInterrupt) as exc:
        print(f"application {app.id} terminated", file=sys.stderr)
        return -(signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT)
    sys.stdout.flush()
    if app.write and exit_code == 0:
        _send_records(proxy.records)
    elif exit_code == 0 and proxy.records and app.path != CONSOLE_PATH:
        _note_discarded(app, len(proxy.records))
    return exit_code


def script_module(path: str, names: dict) -> dict:
    """The namespace of a new `__main__` module, put in `sys.modules` as Python does for
    a script: `pickle` finds the script's classes and functions there, and `import
    __main__` is the script (not the daemon's entry point, which the child inherits)."""
    module = types.ModuleType("__main__")
    module.__file__ = path
    module.__builtins__ = __builtins__
    module.__dict__.update(names)
    sys.modules["__main__"] = module
    return module.__dict__


def _explain_missing_module(exc: BaseException, app):
    """A writer imports only what root installed: a module next to the script, which
    the same script run read-only imports, is not found.  Say why."""
    if not (app.write and isinstance(exc, ModuleNotFoundError) and exc.name):
        return
    top = exc.name.partition(".")[0]
    for directory in {os.path.dirname(os.path.abspath(app.path)), os.getcwd()}:
        if any(os.path.exists(os.path.join(directory, top + suffix))
               for suffix in ("", ".py")):
            print(f"note: a read/write application imports only installed modules (sys.path "
                  f"as python3 -I has it), never one next to its script or in its working "
                  f"directory: install {top!r} where root installs packages (the script's "
                  f"authorization covers the script alone)", file=sys.stderr)
            return


def _note_discarded(app, count: int):
    """A read-only application's changes are discarded: say so, and how to keep them."""
    print(f"application {app.id} is read-only: its {count} change(s) (inventory.update, "
          f"inventory.delete) are discarded; to apply them, root authorizes the script "
          f"(dynamo-exec-auth --executable {os.path.basename(app.path)} --title TITLE) and "
          f"it runs with --write-request --title TITLE", file=sys.stderr)


def _exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return EXIT_FAILURE


def print_script_traceback(exc: BaseException):
    """The traceback without the daemon's own frames (the runner's, the inventory's:
    files of the dynamod package): the script's lines and the message are what its
    author can act on."""
    report = traceback.TracebackException.from_exception(exc)
    pending = [report]
    while pending:
        part = pending.pop()
        part.stack = traceback.StackSummary.from_list(
            [frame for frame in part.stack if not frame.filename.startswith(_DAEMON_CODE)])
        pending += [p for p in (part.__cause__, part.__context__) if p is not None]
        pending += part.exceptions or []
    sys.stderr.write("".join(report.format()))


def _send_records(records):
    if records:
        print(f"Sending {len(records)} change(s) to the daemon.", file=sys.stderr)
    with open(UPDATES_FD, "wb", closefd=True) as pipe:
        writeback.send(pipe, records)
