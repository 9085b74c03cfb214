"""Where the daemon's socket and state live, and the proxy file, when nobody says otherwise.

Shared by the daemon and the clients so both follow one rule: a per-user
state directory (`$XDG_STATE_HOME/dynamo`, else `~/.local/state/dynamo`) with
the socket inside; a client that finds no socket there uses the system
service's `/run/dynamo/dynamod.sock`.  Written with `posix`, the interpreter's
built-in core of `os`: `dynamo` runs without `site`, and importing `os` (with
`posixpath`, `stat` and `_collections_abc`) would cost it about 1 ms of every
start; pathlib would cost a few.
"""

import posix
import sys

SOCKET_NAME = "dynamod.sock"
SYSTEM_SOCKET = "/run/dynamo/dynamod.sock"
_S_IFMT, _S_IFREG = 0o170000, 0o100000


def _environ(name: str) -> str | None:
    """`os.environ.get(name)`: os.environ itself once `os` is loaded (a program may have
    changed it; `posix.environ` is the environment the process started with)."""
    if "os" in sys.modules:
        return sys.modules["os"].environ.get(name)
    value = posix.environ.get(name.encode())
    if value is None:
        return None
    return value.decode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())


def _home() -> str:
    """`os.path.expanduser("~")`: $HOME, else the account's home directory."""
    home = _environ("HOME")
    if home is None:
        import pwd

        try:
            home = pwd.getpwuid(posix.getuid()).pw_dir
        except KeyError:
            return "~"
    return home.rstrip("/") or "/"


def _mode(path: str) -> int | None:
    """The file's type and mode bits (None: it does not exist), following links."""
    try:
        return posix.stat(path).st_mode
    except (OSError, ValueError):
        return None


def _join(directory: str, name: str) -> str:
    """`os.path.join(directory, name)` for a relative `name`."""
    return directory + name if not directory or directory.endswith("/") else f"{directory}/{name}"


def state_dir() -> str:
    """The per-user state directory (`$XDG_STATE_HOME/dynamo`, else
    `~/.local/state/dynamo`), as a string, found without `os` (see the module)."""
    base = _environ("XDG_STATE_HOME") or _join(_join(_home(), ".local"), "state")
    return _join(base, "dynamo")


def default_state_dir():
    """The per-user state directory, as a `pathlib.Path`."""
    from pathlib import Path

    return Path(state_dir())


def client_socket(explicit: str | None = None) -> str:
    """The socket a client talks to: --socket, then $DYNAMO_SOCKET, then the defaults."""
    if explicit:
        return explicit
    if _environ("DYNAMO_SOCKET"):
        return _environ("DYNAMO_SOCKET")
    personal = _join(state_dir(), SOCKET_NAME)
    if _mode(personal) is not None or _mode(SYSTEM_SOCKET) is None:
        return personal
    return SYSTEM_SOCKET


def default_proxy() -> str | None:
    """The grid proxy file a user has by convention: `$X509_USER_PROXY` when it is set,
    whatever it names (a proxy the user asked for that is not there is reported, see
    `file_problem`, not passed over in silence), else `/tmp/x509up_u<uid>` if there is
    one."""
    path = _environ("X509_USER_PROXY")
    if path:
        return path
    path = f"/tmp/x509up_u{posix.getuid()}"
    return None if file_problem(path) else path


def file_problem(path: str) -> str | None:
    """Why `path` cannot be read as a file ("no such file", "not a regular file"), or None."""
    mode = _mode(path)
    if mode is None:
        return "no such file"
    return None if mode & _S_IFMT == _S_IFREG else "not a regular file"
