"""Methods about the daemon and the connection itself."""

import asyncio
import errno
import os
import sqlite3
import time

from .. import __version__
from ..auth.identity import account_name
from ..auth.policy import Access
from ..errors import InvalidParams, StoreError
from ..store.sqlite import paced
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
    """The daemon's version, uptime, inventory size and store figures; the applications
    active and who holds the writer slot."""
    server = call.server
    return {"version": __version__, "pid": os.getpid(),
            "uptime": round(time.monotonic() - server.started, 3),
            "socket": server.config.socket, "database": server.config.database,
            "connections": len(server.connections), "commits": server.service.writer.commits,
            "inventory": call.inventory.counts(), "file_cache": call.inventory.file_cache.stats(),
            "partitions": {n: p.definition for n, p in call.inventory.usage.partitions.items()},
            "quotas": len(call.inventory.usage.quotas),
            "applications": {"active": len(server.apps.records.active()),
                             "writer": server.apps.slot.describe()}}


def _reporter(call: Call):
    """`progress(copied, total)` for the backup's thread: its reports (`paced`) as
    `backup` events to the caller."""
    if call.connection is None:
        return None
    loop, send = asyncio.get_running_loop(), call.connection.send_event
    return paced(lambda event: loop.call_soon_threadsafe(
        send, call.request_id, {"event": "backup", **event}))


@method("list_methods", Access.PUBLIC)
def list_methods(call: Call) -> dict:
    """Every method with its access level, parameters and description."""
    return {"methods": [m.describe() for m in sorted(METHODS.values(), key=lambda m: m.name)]}


def _not_writable_hint(exc, path: str) -> str:
    """The copy is written by the daemon, not by whoever asked (root, usually): a
    directory only root may write to, or one outside the service's sandbox, is
    refused to the daemon's account, which the bare errno did not say."""
    if getattr(exc, "errno", None) not in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ""
    uid = os.geteuid()
    who = f"{account_name(uid) or 'an account with no name'} (uid {uid})"
    return (f"; the daemon writes the copy as its own account, {who}: "
            f"{os.path.dirname(path)} must be writable by it (under systemd, also listed "
            f"in ReadWritePaths, as /var/backups is)")


@method("backup", Access.SUPERUSER)
async def backup(call: Call, path: str) -> dict:
    """Copy the database, consistently, to `path` (absolute, new) while serving.

    The copy holds every change acknowledged before the call; restoring is
    starting dynamod on the copy (`--database`).  `backup` events say how far the
    copy is (`copied` of `total` bytes; `checking`: the check of the copy began), at
    most once a second (`store.sqlite.paced`).
    """
    if not os.path.isabs(path) or "\0" in path:
        raise InvalidParams("the backup path must be absolute, with no NUL character",
                            field="path")
    if os.path.lexists(path):
        raise InvalidParams(f"{path} exists; a backup never overwrites", field="path")
    started = time.monotonic()
    try:
        await call.service.store.backup(path, _reporter(call))
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"backup to {path} failed: {getattr(exc, 'strerror', None) or exc}"
                         f"{_not_writable_hint(exc, path)}") from None
    return {"path": path, "bytes": os.path.getsize(path),
            "seconds": round(time.monotonic() - started, 3)}
