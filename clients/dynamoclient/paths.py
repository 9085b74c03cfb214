"""Where the daemon's socket and state live when nobody says otherwise.

Shared by the daemon and the clients so both follow one rule: a per-user
state directory (`$XDG_STATE_HOME/dynamo`, else `~/.local/state/dynamo`) with
the socket inside; a client that finds no socket there uses the system
service's `/run/dynamo/dynamod.sock`.
"""

import os
from pathlib import Path

SOCKET_NAME = "dynamod.sock"
SYSTEM_SOCKET = "/run/dynamo/dynamod.sock"


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "dynamo"


def client_socket(explicit: str | None = None) -> str:
    """The socket a client talks to: --socket, then $DYNAMO_SOCKET, then the defaults."""
    if explicit:
        return explicit
    if os.environ.get("DYNAMO_SOCKET"):
        return os.environ["DYNAMO_SOCKET"]
    personal = default_state_dir() / SOCKET_NAME
    if personal.exists() or not os.path.exists(SYSTEM_SOCKET):
        return str(personal)
    return SYSTEM_SOCKET
