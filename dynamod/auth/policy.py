"""What each kind of method needs: the one place to read and audit access.

Every protocol method declares one Access level (methods/registry.py); this
module decides whether an identity has it.
"""

import enum

from ..errors import NotAuthorized
from .identity import Identity


class Access(enum.Enum):
    PUBLIC = "anyone connected"               # ping, whoami
    READ = "any identified user"              # queries
    INVENTORY = "admin or operator on inventory"
    APPLICATION = "admin or operator on application"
    SUPERUSER = "the superuser"


_ROLE_TARGET = {Access.INVENTORY: "inventory", Access.APPLICATION: "application"}


def authorize(identity: Identity, access: Access, method: str):
    """Raise NotAuthorized, naming what is missing, unless `identity` has `access`."""
    if access is Access.PUBLIC or identity.admin:
        return
    if identity.name is None:
        raise NotAuthorized(f"{method} refused: {identity.refusal}", uid=identity.peer.uid)
    if access is Access.READ:
        return
    target = _ROLE_TARGET.get(access)
    if target and any(role in ("admin", "operator") and t in (target, "all")
                      for role, t in identity.roles):
        return
    raise NotAuthorized(f"{method} refused: {identity.describe()} lacks {access.value}",
                        uid=identity.peer.uid, needs=access.name.lower())
