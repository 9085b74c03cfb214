"""Dynamo users, roles and grants, persisted with the inventory.

A user has a name, an e-mail, any number of X.509 DNs and local accounts. A
role (`admin` and `operator` exist from the start) is granted to a user on a
target: `inventory`, `application`, or `all`.  Changes take effect at once:
authorization looks the grants up for every request.
"""

import logging
import re
from dataclasses import dataclass, field

from ..errors import Conflict, InvalidParams, NotFound
from .x509 import normalize_dn

log = logging.getLogger("dynamod.auth")

TARGETS = ("inventory", "application", "all")
BUILTIN_ROLES = ("admin", "operator")
_NAME = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")


@dataclass
class User:
    name: str
    email: str = ""
    dns: set = field(default_factory=set)
    accounts: set = field(default_factory=set)

    def view(self) -> dict:
        return {"name": self.name, "email": self.email, "dns": sorted(self.dns),
                "accounts": sorted(self.accounts)}


def _check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidParams(f"invalid {what} {value!r}: letters, digits and _.@+- only, "
                            f"at most 64", field=what)
    return value


class UserRegistry:
    def __init__(self):
        self.users: dict[str, User] = {}
        self.by_dn: dict[str, User] = {}
        self.by_account: dict[str, User] = {}
        self.roles: set[str] = set(BUILTIN_ROLES)
        self.grants: set[tuple] = set()    # (user, role, target)

    def load(self, tables: dict):
        for name, email in tables["user"]:
            self.users[name] = User(name, email)
        for dn, name in tables["user_dn"]:
            self.users[name].dns.add(dn)
            self.by_dn[dn] = self.users[name]
        for account, name in tables["user_account"]:
            self.users[name].accounts.add(account)
            self.by_account[account] = self.users[name]
        self.roles.update(name for (name,) in tables["role"])
        self.grants.update(tables["grant"])

    def forget(self):
        """In an application's child: no user, account, DN or grant stays reachable."""
        for table in (self.users, self.by_dn, self.by_account, self.grants):
            table.clear()

    # -------------------------------------------------------------- lookups
    def has_role(self, user: str, roles, target: str) -> bool:
        return any((user, role, t) in self.grants for role in roles for t in (target, "all"))

    def roles_of(self, user: str) -> list:
        return sorted([r, t] for u, r, t in self.grants if u == user)

    def user(self, name) -> User:
        try:
            return self.users[name]
        except KeyError:
            raise NotFound(f"unknown user {name!r}", field="user") from None

    # ------------------------------------------------------------- changes
    # Each returns the rows to persist: {(kind, key): row or None}.
    def set_user(self, name, email=None, dns=(), accounts=()) -> tuple[bool, dict]:
        """Add a user or add to one: e-mail replaced, DNs and accounts added."""
        _check_name(name, "user")
        dns = [self._free_dn(normalize_dn_checked(dn), name) for dn in dns]
        accounts = [self._free_account(_check_name(a, "account"), name) for a in accounts]
        created = name not in self.users
        user = self.users.setdefault(name, User(name))
        if email is not None:
            user.email = email
        rows = {("user", (name,)): (name, user.email)}
        for dn in dns:
            user.dns.add(dn)
            self.by_dn[dn] = user
            rows[("user_dn", (dn,))] = (dn, name)
        for account in accounts:
            user.accounts.add(account)
            self.by_account[account] = user
            rows[("user_account", (account,))] = (account, name)
        log.info("user %s %s: email %r, dns %s, accounts %s", name,
                 "added" if created else "updated", user.email, sorted(user.dns),
                 sorted(user.accounts))
        return created, rows

    def _free_dn(self, dn, name):
        owner = self.by_dn.get(dn)
        if owner is not None and owner.name != name:
            raise Conflict(f"DN {dn} already belongs to user {owner.name}", field="dn")
        return dn

    def _free_account(self, account, name):
        owner = self.by_account.get(account)
        if owner is not None and owner.name != name:
            raise Conflict(f"account {account} is already mapped to user {owner.name}",
                           field="account")
        return account

    def create_role(self, role) -> dict:
        _check_name(role, "role")
        self.roles.add(role)
        log.info("role %s created", role)
        return {("role", (role,)): (role,)}

    def grant(self, name, role, target) -> tuple[bool, dict]:
        self.user(name)
        if role not in self.roles:
            raise NotFound(f"unknown role {role!r} (create it first)", field="role")
        if target not in TARGETS:
            raise InvalidParams(f"target must be one of {', '.join(TARGETS)}, not {target!r}",
                                field="target")
        new = (name, role, target) not in self.grants
        self.grants.add((name, role, target))
        log.info("grant %s: role %s on %s to user %s", "added" if new else "kept", role, target,
                 name)
        return new, {("grant", (name, role, target)): (name, role, target)}

    def revoke(self, name, role, target=None) -> tuple[list, dict]:
        """Take back the grants of `role` to the user (on `target`, or on every target)."""
        found = sorted(g for g in self.grants
                       if g[0] == name and g[1] == role and target in (None, g[2]))
        if not found:
            raise NotFound(f"user {name} has no grant of role {role}"
                           + (f" on {target}" if target else ""))
        for entry in found:
            self.grants.discard(entry)
            log.info("grant revoked: role %s on %s from user %s", entry[1], entry[2], name)
        return found, {("grant", g): None for g in found}

    def listing(self, user=None, role=None) -> list:
        rows = [{"user": u, "role": r, "target": t} for u, r, t in sorted(self.grants)
                if user in (None, u) and role in (None, r)]
        granted = {g["user"] for g in rows}
        if role is None:
            rows += [{"user": name, "role": None, "target": None} for name in sorted(self.users)
                     if name not in granted and user in (None, name)]
        return rows


def normalize_dn_checked(dn) -> str:
    try:
        return normalize_dn(dn)
    except (ValueError, AttributeError):
        raise InvalidParams(f"invalid DN {dn!r}", field="dn") from None
