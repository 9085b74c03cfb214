"""Applications: run, poll, kill, list; and the script authorizations (root only)."""

import logging
import re
from importlib import resources

from .. import descriptors
from ..apps.child import CONSOLE_PATH
from ..apps.runner import parse_timeout
from ..auth.policy import Access
from ..errors import DynamoError, InvalidParams, NotAuthorized, NotFound
from .registry import Call, method, strings

MAX_SCRIPT_BYTES = 16 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
CONSOLE = resources.files("dynamod.apps").joinpath("console.py")
log = logging.getLogger("dynamod.apps")


def _manager(call: Call):
    return call.server.apps


@method("run_application", Access.APPLICATION)
async def run_application(call: Call, script: str = "", path: str = "<script>", args: list = [],
                          title: str = "", write: bool = False, attach: bool = True,
                          timeout: float | int = 0, no_wait: bool = False,
                          cwd: str | None = None, console: bool = False) -> dict:
    """Run a script as an application, forked from the live inventory.

    `console` runs the interactive console instead of a script (read-only).

    With `attach` (the default) the client is sent a `send_fds` event and must
    then pass its standard input, output and error (SCM_RIGHTS); the answer
    comes when the application ends.  Without it, the answer comes once the
    record is committed, and the output goes to files in the application's
    work area.  Title, path and arguments are bounded, and so are the
    applications active per user and in all (`[applications]` settings).
    """
    if len(script.encode()) > MAX_SCRIPT_BYTES:
        raise InvalidParams(f"the script exceeds {MAX_SCRIPT_BYTES} bytes", field="script")
    strings(args=args)
    if cwd is not None and ("\0" in cwd or len(cwd.encode()) > 4096):
        raise InvalidParams("cwd must be at most 4096 bytes, with no NUL character",
                            field="cwd")
    if console:
        if write:
            raise InvalidParams("the console is read-only", field="write")
        script, path = CONSOLE.read_text(), CONSOLE_PATH
    if write and not title:
        raise InvalidParams("a read/write application needs a title", field="title")
    identity = call.identity
    manager = _manager(call)
    config = call.server.config
    default = min(config.app_timeout, config.writer_max_time if write else config.app_max_time)
    seconds = parse_timeout(timeout, default)
    manager.admit(identity, title or path, path, args, write, seconds)
    app = manager.create(identity, title=title or path, path=path, args=args, write=write,
                         timeout=seconds, script=script, cwd=cwd)
    # the record holds them now; this frame, suspended while the application runs, holds
    # none (an application forked meanwhile forgets the records not its own: records.py)
    script = args = title = path = cwd = None
    committed = manager.records.persist(app)   # its id is told only once it is committed
    stdio, failed = await _descriptors(call, attach and app.status != "authfailed")
    try:
        await committed
    except BaseException:
        descriptors.close_later(stdio, call.identity.peer.uid)
        raise
    if failed is not None:  # the caller left, or sent no descriptors: end the record
        manager.kill(app.id, failed.message)
        raise failed
    if app.status == "authfailed":
        raise NotAuthorized(app.message, app=app.id, uid=identity.peer.uid, dn=identity.dn)
    waiting = manager.slot.waiting_event(app=app.id) if write else None
    manager.start(app, stdio, no_wait)
    if not attach:
        return app.view()
    if waiting is not None:
        call.connection.send_event(call.request_id, waiting)
    await app.started_event.wait()
    if app.pid:
        call.connection.send_event(call.request_id, {"event": "started", "app": app.id,
                                                     "pid": app.pid})
    await app.ended_event.wait()
    return app.view()


async def _descriptors(call: Call, attach: bool) -> tuple[list | None, DynamoError | None]:
    """The caller's standard input, output and error when attached, asked for while the
    record commits (a round trip less before the fork); or why they did not come."""
    if not attach:
        return None, None
    try:
        return await call.connection.receive_fds(3, call.request_id), None
    except DynamoError as exc:
        return None, exc


def _visible(call: Call, id: int):
    """The record, if the caller may see it: their own, or anyone's for an admin."""
    manager = _manager(call)
    app = manager.records.get(id)
    if not manager.visible_to(call.identity, app):
        raise NotFound(f"unknown application {id}")   # others' ids are not confirmed either
    return app


@method("poll_application", Access.APPLICATION)
def poll_application(call: Call, id: int) -> dict:
    """The record of one application (the caller's own; an administrator: anyone's)."""
    return _visible(call, id).view()


def _controlled(call: Call, id: int, verb: str):
    """The record, if the caller may stop it: its submitter, or an administrator."""
    manager = _manager(call)
    app = manager.records.get(id)
    identity = call.identity
    if not (app.user == identity.name or manager.is_admin(identity)):
        log.warning("refused %s_application: application %d belongs to %s; only its "
                    "submitter or an administrator may %s it, not %s", verb, id, app.user,
                    verb, identity.describe())
        # as poll_application: another user's application is not confirmed, nor its owner
        # named (an operator going through the ids learned who ran what)
        raise NotFound(f"unknown application {id}")
    return app


@method("kill_application", Access.APPLICATION)
def kill_application(call: Call, id: int) -> dict:
    """Stop an application (its submitter, or an administrator): SIGTERM, then SIGKILL."""
    app = _controlled(call, id, "kill")
    killed = _manager(call).kill(id, f"by {call.identity.describe()}")
    return {"id": id, "killed": killed, "status": app.status, "exit_code": app.exit_code}


@method("interrupt_application", Access.APPLICATION)
def interrupt_application(call: Call, id: int) -> dict:
    """Send SIGINT to a running application (its submitter, or an administrator): the
    Ctrl-C `dynamo` receives on the console's behalf."""
    app = _controlled(call, id, "interrupt")
    interrupted = _manager(call).interrupt(id)
    return {"id": id, "interrupted": interrupted, "status": app.status}


@method("list_applications", Access.APPLICATION)
def list_applications(call: Call, limit: int = 20, user: str | None = None) -> dict:
    """The most recent applications, newest first: the caller's own (an administrator:
    everyone's, or `user`'s); and who holds the writer slot."""
    manager = _manager(call)
    apps = sorted(manager.records.apps.values(), key=lambda a: a.id, reverse=True)
    apps = [a for a in apps if (user is None or a.user == user)
            and manager.visible_to(call.identity, a)]
    return {"applications": [a.view() for a in apps[:max(limit, 0)]],
            "writer": manager.slot.describe()}


@method("authorize_script", Access.SUPERUSER)
async def authorize_script(call: Call, title: str, checksum: str, user: str | None = None) -> dict:
    """Allow a script (by SHA-256) to run read/write under `title`, for `user` (a registered
    user, or the superuser's name) or all users."""
    if not title:
        raise InvalidParams("the title is empty", field="title")
    if not _SHA256.fullmatch(checksum):
        raise InvalidParams("checksum must be 64 lower-case hexadecimal digits", field="checksum")
    if user and not call.server.authenticator.is_known(user):
        log.warning("refused authorize_script for title %r: unknown user %r", title, user)
        raise NotFound(f"unknown user {user!r}: no Dynamo user has this name "
                       f"(dynamo-user-auth --list shows them)", field="user")
    replaced, committed = _manager(call).authorizations.authorize(title, user or "", checksum)
    await committed
    return {"title": title, "user": user, "checksum": checksum, "replaced": replaced}


@method("list_script_authorizations", Access.SUPERUSER)
def list_script_authorizations(call: Call) -> dict:
    """Every authorization: title, user (null: all users), checksum, date."""
    return {"authorizations": [{"title": t, "user": u or None, "checksum": c, "created": d}
                               for t, u, c, d in _manager(call).authorizations.listing()]}


@method("revoke_script_authorization", Access.SUPERUSER)
async def revoke_script_authorization(call: Call, title: str, user: str | None = None,
                                      all_users: bool = False) -> dict:
    """Remove the authorization of `title` for `user` (or the all-users one);
    with `all_users` every authorization of the title."""
    keys, committed = _manager(call).authorizations.revoke(title,
                                                           None if all_users else (user or ""))
    await committed
    return {"revoked": [{"title": t, "user": u or None} for t, u in keys]}
