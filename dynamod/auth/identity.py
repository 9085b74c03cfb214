"""Who is on the other end of a connection.

A peer is first known by its Unix credentials (SO_PEERCRED, as of connect
time): uid 0 is the superuser, and so is the daemon's own account (so that a
daemon started by a user with no configuration serves that user fully); any
other account is the Dynamo user it is mapped to, or unidentified.  A client
may instead prove an X.509 identity on the connection (methods/auth.py).
"""

import pwd
import socket
import struct
from dataclasses import dataclass

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
    name: str | None = None          # the Dynamo user; None when unidentified
    superuser: bool = False          # may do everything, including user administration
    dn: str | None = None            # the X.509 subject it proved, if any
    refusal: str = ""                # why the peer is unidentified

    def describe(self) -> str:
        who = self.name or "unidentified peer"
        via = f"DN {self.dn}" if self.dn else f"uid {self.peer.uid}"
        return f"{who} ({via})"


def account_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


class Authenticator:
    def __init__(self, users, daemon_uid: int):
        self.users = users
        self.daemon_uid = daemon_uid
        self.daemon_name = account_name(daemon_uid) or f"uid{daemon_uid}"

    def identify(self, peer: Peer) -> Identity:
        account = account_name(peer.uid)
        if peer.uid == 0:
            return Identity(peer, "root", superuser=True)
        if peer.uid == self.daemon_uid:
            return Identity(peer, self.daemon_name, superuser=True)
        user = self.users.by_account.get(account) if account else None
        if user is not None:
            return Identity(peer, user.name)
        seen = f"uid {peer.uid}" + (f" (account {account})" if account else "")
        return Identity(peer, refusal=f"{seen} is not mapped to any Dynamo user; the superuser "
                                      f"maps it with dynamo-user-auth --user NAME --account "
                                      f"{account or 'LOGIN'}")

    def superuser_names(self) -> tuple[str, str]:
        """The names the superuser acts under (root, the daemon's account): records and
        script authorizations are its by these names, so no registered user may bear
        one (it would see, kill and run what is the superuser's)."""
        return ("root", self.daemon_name)

    def is_known(self, name: str) -> bool:
        """Whether a connection can act as `name`: a registered user, or the superuser
        (root, the daemon's account)."""
        return name in self.users.users or name in self.superuser_names()

    def again(self, identity: Identity) -> Identity:
        """`identity` as the users now map it: a DN or an account moved, taken back or
        its user deleted since it was proved (the superuser stays what it is)."""
        if identity.superuser:
            return identity
        if identity.dn is not None:
            found = self.identify_dn(identity.peer, identity.dn)
            if found.name is not None:
                return found
        return self.identify(identity.peer)

    def identify_dn(self, peer: Peer, dn: str) -> Identity:
        user = self.users.by_dn.get(dn)
        if user is None:
            return Identity(peer, dn=dn, refusal=f"DN {dn} is not registered to any Dynamo "
                                                 f"user (dynamo-user-auth --user NAME --dn ...)")
        return Identity(peer, user.name, dn=dn)
