"""Who is on the other end of a connection.

A peer is first known by its Unix credentials (SO_PEERCRED, as of connect
time); an Authenticator turns that into an Identity.  Until users are
registered, root and the daemon's own account are the administrators and
every other account is unidentified.
"""

import os
import socket
import struct
from dataclasses import dataclass, field

_CREDENTIALS = struct.Struct("3i")


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int

    @classmethod
    def of(cls, sock) -> "Peer":
        """The credentials of the process that connected `sock`."""
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
        return cls(*_CREDENTIALS.unpack(raw))


@dataclass
class Identity:
    peer: Peer
    name: str | None = None          # the Dynamo user, None when unidentified
    admin: bool = False              # may do everything
    roles: set = field(default_factory=set)  # (role, target) pairs
    refusal: str = ""                # why the peer is unidentified

    def describe(self) -> str:
        who = self.name or "unidentified peer"
        return f"{who} (uid {self.peer.uid})"


class Authenticator:
    def __init__(self, daemon_uid: int | None = None):
        self.daemon_uid = os.getuid() if daemon_uid is None else daemon_uid

    def identify(self, peer: Peer) -> Identity:
        if peer.uid == 0:
            return Identity(peer, "root", admin=True)
        if peer.uid == self.daemon_uid:
            return Identity(peer, _account_name(peer.uid), admin=True)
        return Identity(peer, refusal=f"uid {peer.uid} is not mapped to any Dynamo user")


def _account_name(uid: int) -> str:
    try:
        import pwd
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"
