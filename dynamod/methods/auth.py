"""Proving an X.509 identity on a connection, and the user administration (root only)."""

import base64
import logging
import os

from ..auth.policy import Access, refusals
from ..auth.users import TARGETS
from ..errors import Conflict, InvalidParams, NotAuthorized, NotConfigured
from .registry import Call, method, strings

log = logging.getLogger("dynamod.auth")
CHALLENGE_PREFIX = b"dynamo-x509-challenge:"


def _trust(call: Call):
    """The CA directory (it may have gone with a SIGHUP since the challenge)."""
    if not call.server.trust:
        raise NotConfigured("X.509 authentication is not configured on this daemon "
                            "(no CA certificates: set ca_path in the [auth] table)")
    return call.server.trust


@method("auth_challenge", Access.PUBLIC)
def auth_challenge(call: Call) -> dict:
    """A fresh random challenge for this connection, to sign for `authenticate`.

    The client signs `dynamo-x509-challenge:` followed by the decoded bytes.
    """
    _trust(call)
    call.connection.challenge = os.urandom(32)
    return {"challenge": base64.b64encode(call.connection.challenge).decode()}


@method("authenticate", Access.PUBLIC)
def authenticate(call: Call, chain: str, signature: str) -> dict:
    """Prove a certificate (PEM chain, leaf first) by the signature of this connection's
    challenge (base64); on success the connection acts as the user the DN maps to.

    The chain is checked against the CA directory: dates, signatures, CRLs and the
    CAs' namespace policies (auth/x509.py, loaded at the first authentication)."""
    from ..auth.x509 import (MAX_CHAIN, CertificateRefused, parse_chain, verify_chain,
                             verify_possession)
    limit = call.server.config.max_unidentified_line_bytes  # all a peer sends before identity
    blocks = chain.count("-----BEGIN", 0, limit)  # counted, not parsed: parsing takes long
    if len(chain) > limit or blocks > MAX_CHAIN:
        why = (f"the certificate chain was not read: it may hold {MAX_CHAIN} certificates in "
               f"{limit} bytes, not {len(chain)} bytes with {blocks} PEM blocks")
        refusals.warning(call.identity.describe(), "refused authenticate: %s", why)
        raise CertificateRefused(why, uid=call.identity.peer.uid, needs="identity")
    connection = call.connection
    challenge, connection.challenge = connection.challenge, None  # one attempt per challenge
    peer = call.identity.peer
    try:
        if challenge is None:
            raise CertificateRefused("ask for a challenge (auth_challenge) first")
        certificates = parse_chain(chain)
        if not certificates:
            raise CertificateRefused("no certificate in the chain")
        try:
            proof = base64.b64decode(signature, validate=True)
        except ValueError:
            raise InvalidParams("signature must be base64", field="signature") from None
        verify_possession(certificates[0], CHALLENGE_PREFIX + challenge, proof)
        dn = verify_chain(certificates, _trust(call))
    except NotAuthorized as exc:
        refusals.warning(f"uid {peer.uid}", "X.509 authentication refused for uid %d: %s",
                         peer.uid, exc.message)
        exc.details.update(uid=peer.uid, needs="identity")  # like every other refusal
        raise
    identity = call.server.authenticator.identify_dn(peer, dn)
    if identity.name is None:
        refusals.warning(f"uid {peer.uid}", "X.509 authentication refused for uid %d: %s",
                         peer.uid, identity.refusal)
        raise NotAuthorized(identity.refusal, dn=dn, uid=peer.uid, needs="identity")
    connection.identity = identity
    log.info("uid %d authenticated as %s by DN %s", peer.uid, identity.name, dn)
    return {"user": identity.name, "dn": dn}


# ------------------------------------------------------------ administration
async def _persist(call: Call, change):
    """Check `change()`'s row operations, apply them to the user registry and commit them;
    their undo runs if the commit fails."""
    result, ops = change()
    undo = call.server.users.apply(ops)
    await call.service.writer.submit(ops, {}, undo.rollback)
    return result


@method("get_user", Access.SUPERUSER)
def get_user(call: Call, name: str) -> dict:
    """One user: name, e-mail, DNs, accounts and grants."""
    users = call.server.users
    return {**users.user(name).view(), "roles": users.roles_of(name)}


@method("set_user", Access.SUPERUSER)
async def set_user(call: Call, name: str, email: str | None = None, dns: list = [],
                   accounts: list = []) -> dict:
    """Add a user, or add DNs and accounts to one (and replace its e-mail)."""
    strings(dns=dns, accounts=accounts)
    if name in call.server.authenticator.superuser_names():
        raise InvalidParams(f"the user name {name!r} names the superuser (root and the "
                            f"daemon's account act under their account names): choose "
                            f"another", field="name")
    created = await _persist(call, lambda: call.server.users.set_user(name, email, dns, accounts))
    return {**call.server.users.user(name).view(), "created": created}


@method("remove_from_user", Access.SUPERUSER)
async def remove_from_user(call: Call, name: str, dns: list = [], accounts: list = []) -> dict:
    """Take DNs and accounts from a user."""
    strings(dns=dns, accounts=accounts)
    await _persist(call, lambda: call.server.users.remove(name, dns, accounts))
    return call.server.users.user(name).view()


@method("delete_user", Access.SUPERUSER)
async def delete_user(call: Call, name: str) -> dict:
    """Remove a user with its DNs, accounts and grants (not while a script authorization
    names it: it would hold again for a new user of the same name)."""
    held = sorted(t for t, u, _, _ in call.server.apps.authorizations.listing() if u == name)
    if held:
        raise Conflict(f"user {name} holds script authorizations (titles {', '.join(held)}): "
                       f"revoke them first (dynamo-exec-auth --delete --user {name})",
                       field="user")
    return await _persist(call, lambda: call.server.users.delete_user(name))


@method("create_role", Access.SUPERUSER)
async def create_role(call: Call, role: str) -> dict:
    """Create a role (admin and operator always exist)."""
    await _persist(call, lambda: (None, call.server.users.create_role(role)))
    return {"role": role}


@method("grant_role", Access.SUPERUSER)
async def grant_role(call: Call, user: str, role: str, target: str = "all") -> dict:
    """Grant `role` to `user` on `target` (inventory, application or all)."""
    new = await _persist(call, lambda: call.server.users.grant(user, role, target))
    return {"user": user, "role": role, "target": target, "new": new}


@method("revoke_role", Access.SUPERUSER)
async def revoke_role(call: Call, user: str, role: str, target: str | None = None) -> dict:
    """Take back `role` from `user` on `target`, or on every target when none is given."""
    if target is not None and target not in TARGETS:
        raise InvalidParams(f"target must be one of {', '.join(TARGETS)}", field="target")
    revoked = await _persist(call, lambda: call.server.users.revoke(user, role, target))
    return {"revoked": [{"user": u, "role": r, "target": t} for u, r, t in revoked]}


@method("list_grants", Access.SUPERUSER)
def list_grants(call: Call, user: str | None = None, role: str | None = None) -> dict:
    """Grants as (user, role, target) rows; users without a grant appear with null role."""
    users = call.server.users
    return {"grants": users.listing(user, role), "roles": sorted(users.roles)}
