"""Methods about the daemon and the connection itself."""

import os
import time

from .. import __version__
from ..auth.policy import Access
from .registry import METHODS, Call, method


@method("ping", Access.PUBLIC)
def ping(call: Call) -> dict:
    """Liveness: answers at once, to anyone connected."""
    return {"pong": True}


@method("whoami", Access.PUBLIC)
def whoami(call: Call) -> dict:
    """The identity the daemon sees on this connection, and why it is refused if it is."""
    identity = call.identity
    return {"uid": identity.peer.uid, "gid": identity.peer.gid, "user": identity.name,
            "superuser": identity.superuser, "dn": identity.dn,
            "roles": call.server.users.roles_of(identity.name) if identity.name else [],
            "refusal": identity.refusal or None}


@method("status", Access.READ)
def status(call: Call) -> dict:
    """The daemon's version, uptime, inventory size and store figures."""
    server = call.server
    return {"version": __version__, "pid": os.getpid(),
            "uptime": round(time.monotonic() - server.started, 3),
            "socket": server.config.socket, "database": server.config.database,
            "connections": len(server.connections), "commits": server.service.writer.commits,
            "inventory": call.inventory.counts()}


@method("list_methods", Access.PUBLIC)
def list_methods(call: Call) -> dict:
    """Every method with its access level, parameters and description."""
    return {"methods": [m.describe() for m in sorted(METHODS.values(), key=lambda m: m.name)]}
