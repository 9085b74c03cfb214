"""Where the daemon's socket and state live, and the proxy file, when nobody says otherwise.

Shared by the daemon and the clients so both follow one rule: a per-user
state directory (`$XDG_STATE_HOME/dynamo`, else `~/.local/state/dynamo`) with
the socket inside; a client that finds no socket there uses the system
service's `/run/dynamo/dynamod.sock`.  Plain `os.path` on the clients' path
(pathlib costs a short command a few ms to import).
"""

import os

SOCKET_NAME = "dynamod.sock"
SYSTEM_SOCKET = "/run/dynamo/dynamod.sock"


def _state_dir() -> str:
    base = (os.environ.get("XDG_STATE_HOME")
            or os.path.join(os.path.expanduser("~"), ".local", "state"))
    return os.path.join(base, "dynamo")


def default_state_dir():
    """The per-user state directory, as a `pathlib.Path`."""
    from pathlib import Path

    return Path(_state_dir())


def client_socket(explicit: str | None = None) -> str:
    """The socket a client talks to: --socket, then $DYNAMO_SOCKET, then the defaults."""
    if explicit:
        return explicit
    if os.environ.get("DYNAMO_SOCKET"):
        return os.environ["DYNAMO_SOCKET"]
    personal = os.path.join(_state_dir(), SOCKET_NAME)
    if os.path.exists(personal) or not os.path.exists(SYSTEM_SOCKET):
        return personal
    return SYSTEM_SOCKET


def default_proxy() -> str | None:
    """The grid proxy file a user has by convention (`$X509_USER_PROXY`, else
    `/tmp/x509up_u<uid>`), if there is one."""
    path = os.environ.get("X509_USER_PROXY") or f"/tmp/x509up_u{os.getuid()}"
    return path if os.path.isfile(path) else None
