"""Dynamo users, roles and grants, persisted with the inventory.

A user has a name, an e-mail, any number of X.509 DNs and local accounts. A
role (`admin` and `operator` exist from the start) is granted to a user on a
target: `inventory`, `application`, or `all`.  Changes take effect at once:
authorization looks the grants up for every request.
"""

import logging
import re
from dataclasses import dataclass, field
from functools import partial

from ..errors import Conflict, InvalidParams, NotFound
from ..store.tables import BY_KIND
from ..tables import RowTable, Undo
from .dn import normalize_dn

log = logging.getLogger("dynamod.auth")

TARGETS = ("inventory", "application", "all")
BUILTIN_ROLES = ("admin", "operator")
_NAME = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")
# An e-mail address as an operator types one: a local part and a domain around one @,
# no spaces or control characters ("" clears it).  Enough to catch a typo, not RFC 5322.
_EMAIL = re.compile(r"[^\s@]{1,64}@[^\s@]+")


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
    """Users, DNs, accounts, roles and grants: one RowTable per stored table, with the
    lookups authorization needs kept from them.  A change is computed as row operations
    first (`set_user`, `create_role`, `grant`, `revoke` check and return them), then
    applied by `apply`, which returns their undo."""

    def __init__(self):
        self.users: dict[str, User] = {}
        self.by_dn: dict[str, User] = {}
        self.by_account: dict[str, User] = {}
        self.tables = {
            "user": RowTable("user", self._user_changed),
            "user_dn": RowTable("user_dn", partial(self._link_changed, "dns", self.by_dn)),
            "user_account": RowTable("user_account",
                                     partial(self._link_changed, "accounts", self.by_account)),
            "role": RowTable("role"),
            "grant": RowTable("grant"),
        }
        self.grants = self.tables["grant"]   # (user, role, target) -> the same tuple
        # counts every change of who is who (a user, a DN, an account; applied or undone):
        # a connection identified before a change is identified again (connection.py)
        self.mappings = 0

    def load(self, tables: dict):
        for kind, table in self.tables.items():
            width = len(BY_KIND[kind].key)
            table.load(tables[kind], lambda row: tuple(row[:width]))

    def apply(self, ops: dict) -> Undo:
        """Apply row operations (what the methods below return); the undo puts them back."""
        return Undo().apply(self.tables, ops)

    def _user_changed(self, key, old, new):
        self.mappings += 1
        if new is None:
            del self.users[key[0]]
        elif old is None:
            self.users[key[0]] = User(*new)
        else:
            self.users[key[0]].email = new[1]

    def _link_changed(self, attribute: str, index: dict, key, old, new):
        """A DN or an account gained (`new`) or lost (`old`) by a user."""
        self.mappings += 1
        if old is not None:
            getattr(self.users[old[1]], attribute).discard(old[0])
            del index[old[0]]
        if new is not None:
            user = self.users[new[1]]
            getattr(user, attribute).add(new[0])
            index[new[0]] = user

    def forget(self):
        """In an application's child: no user, account, DN or grant stays reachable."""
        for table in (*self.tables.values(), self.users, self.by_dn, self.by_account):
            table.clear()

    # -------------------------------------------------------------- lookups
    @property
    def roles(self) -> set:
        return {*BUILTIN_ROLES, *(name for (name,) in self.tables["role"].keys())}

    def has_role(self, user: str, roles, target: str) -> bool:
        return any((user, role, t) in self.grants for role in roles for t in (target, "all"))

    def roles_of(self, user: str) -> list:
        return sorted([r, t] for u, r, t in self.grants.keys() if u == user)

    def user(self, name) -> User:
        try:
            return self.users[name]
        except KeyError:
            raise NotFound(f"unknown user {name!r}", field="user") from None

    # ------------------------------------------------------------- changes
    # Each checks and returns the row operations: {(kind, key): row or None}.
    def set_user(self, name, email=None, dns=(), accounts=()) -> tuple[bool, dict]:
        """Add a user or add to one: e-mail replaced, DNs and accounts added."""
        _check_name(name, "user")
        dns = [self._free_dn(normalize_dn_checked(dn), name) for dn in dns]
        accounts = [self._free_account(_check_name(a, "account"), name) for a in accounts]
        created = name not in self.users
        if email is None:
            email = "" if created else self.users[name].email
        elif email and not (len(email) <= 254 and _EMAIL.fullmatch(email) and email.isprintable()):
            raise InvalidParams(f"invalid e-mail address {email!r}: name@domain, or \"\" "
                                f"for none", field="email")
        ops = {("user", (name,)): (name, email)}
        ops.update({("user_dn", (dn,)): (dn, name) for dn in dns})
        ops.update({("user_account", (account,)): (account, name) for account in accounts})
        log.info("user %s %s: email %r, dns +%s, accounts +%s", name,
                 "added" if created else "updated", email, sorted(dns), sorted(accounts))
        return created, ops

    def remove(self, name, dns=(), accounts=()) -> tuple[None, dict]:
        """Take DNs and accounts from a user (each must be the user's)."""
        user = self.user(name)
        dns = [normalize_dn_checked(dn) for dn in dns]
        for value, held, what in ((dns, user.dns, "DN"), (accounts, user.accounts, "account")):
            for missing in [v for v in value if v not in held]:
                raise NotFound(f"user {name} has no {what} {missing}", field=what.lower())
        log.info("user %s updated: dns -%s, accounts -%s", name, sorted(dns), sorted(accounts))
        return None, {**{("user_dn", (dn,)): None for dn in dns},
                      **{("user_account", (a,)): None for a in accounts}}

    def delete_user(self, name) -> tuple[dict, dict]:
        """Remove a user with its DNs, accounts and grants; returns what it was."""
        user = self.user(name)
        grants = [g for g in self.grants.keys() if g[0] == name]
        log.info("user %s deleted, with dns %s, accounts %s and %d grant(s)", name,
                 sorted(user.dns), sorted(user.accounts), len(grants))
        view = {**user.view(), "roles": self.roles_of(name)}
        return view, {**{("grant", g): None for g in grants},
                      **{("user_dn", (dn,)): None for dn in user.dns},
                      **{("user_account", (a,)): None for a in user.accounts},
                      ("user", (name,)): None}

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
        log.info("grant %s: role %s on %s to user %s", "added" if new else "kept", role, target,
                 name)
        return new, {("grant", (name, role, target)): (name, role, target)}

    def revoke(self, name, role, target=None) -> tuple[list, dict]:
        """Take back the grants of `role` to the user (on `target`, or on every target)."""
        found = sorted(g for g in self.grants.keys()
                       if g[0] == name and g[1] == role and target in (None, g[2]))
        if not found:
            raise NotFound(f"user {name} has no grant of role {role}"
                           + (f" on {target}" if target else ""))
        for entry in found:
            log.info("grant revoked: role %s on %s from user %s", entry[1], entry[2], name)
        return found, {("grant", g): None for g in found}

    def listing(self, user=None, role=None) -> list:
        rows = [{"user": u, "role": r, "target": t} for u, r, t in sorted(self.grants.keys())
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
        raise InvalidParams(f"invalid DN {dn!r}: give it in slash form (/DC=org/DC=example/"
                            f"CN=Jane Doe) or comma form (CN=Jane Doe,DC=example,DC=org)",
                            field="dn") from None
