"""What each kind of method needs: the one place to read and audit access.

Every protocol method declares one Access level (methods/registry.py); this
module decides, at every request, whether an identity has it, so a grant
revoked a moment ago already counts for the next request.
"""

import enum
import logging

from ..errors import NotAuthorized
from ..logs import RateLimited
from .identity import Identity

log = logging.getLogger("dynamod.auth")
refusals = RateLimited(log)   # a peer that keeps asking cannot flood the log


class Access(enum.Enum):
    PUBLIC = "anyone connected"               # ping, whoami, authentication
    READ = "any identified user"              # queries
    INVENTORY = "the admin or operator role on inventory"
    APPLICATION = "the admin or operator role on application"
    SUPERUSER = "the superuser (root)"


_TARGET = {Access.INVENTORY: "inventory", Access.APPLICATION: "application"}


def authorize(identity: Identity, access: Access, method: str, users):
    """Raise NotAuthorized, naming what is missing, unless `identity` has `access`."""
    if access is Access.PUBLIC or identity.superuser:
        return
    if identity.name is None:
        _refuse(identity, method, identity.refusal, None)
    if access is Access.READ:
        return
    target = _TARGET.get(access)
    if target and users.has_role(identity.name, ("admin", "operator"), target):
        return
    missing = "is not" if access is Access.SUPERUSER else "lacks"
    _refuse(identity, method, f"{identity.describe()} {missing} {access.value}", access)


def _refuse(identity, method, why, access):
    refusals.warning(identity.describe(), "refused %s: %s", method, why)
    raise NotAuthorized(f"{method} refused: {why}", uid=identity.peer.uid, dn=identity.dn,
                        needs=access.name.lower() if access else "identity")
