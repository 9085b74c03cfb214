"""Script authorizations: which exact script (SHA-256) may write, under which title,
for which user ('' for all users).  Only the superuser changes them."""

import asyncio
import logging
import time

from ..errors import NotFound
from ..tables import RowTable, Undo

log = logging.getLogger("dynamod.apps")


class ScriptAuthorizations:
    """The stored authorizations as a RowTable: (title, user) -> (title, user, checksum,
    created)."""

    def __init__(self, writer):
        self.writer = writer
        self.table = RowTable("authorization")

    def load(self, rows):
        self.table.load(rows, lambda row: (row[0], row[1]))

    def listing(self) -> list:
        """Every authorization's row, by title and user."""
        return sorted(self.table.values())

    def allows(self, title: str, user: str, digest: str) -> bool:
        """Whether `digest` is authorized under `title` for `user`, or for all users."""
        for who in (user, ""):
            row = self.table.get((title, who))
            if row is not None and row[2] == digest:
                return True
        return False

    def authorize(self, title: str, user: str, digest: str) -> tuple[bool, asyncio.Future]:
        """Record `digest` for (title, user); whether it replaced one, and the commit."""
        key = (title, user)
        replaced = key in self.table
        log.info("script authorization %s for title %r, user %s: %s",
                 "replaced" if replaced else "added", title, user or "ALL", digest)
        return replaced, self._commit({key: (title, user, digest, time.time())})

    def revoke(self, title: str, user: str | None) -> tuple[list, asyncio.Future]:
        """Remove (title, user), or with `user` None every entry of the title."""
        keys = [k for k in self.table.keys() if k[0] == title and (user is None or k[1] == user)]
        if not keys:
            raise NotFound(f"no authorization for title {title!r}"
                           + (f" and user {user or 'ALL'}" if user is not None else ""))
        for title_, user_ in keys:
            log.info("script authorization revoked: title %r, user %s", title_, user_ or "ALL")
        return keys, self._commit(dict.fromkeys(keys))

    def _commit(self, rows: dict) -> asyncio.Future:
        """Apply {key: row or None} and commit it; a failed commit undoes it."""
        ops = {("authorization", key): row for key, row in rows.items()}
        undo = Undo().apply({"authorization": self.table}, ops)
        return self.writer.submit(ops, {}, undo.rollback)

    def forget(self):
        """In a child: nothing of the authorizations stays reachable."""
        self.table.clear()
