"""Script authorizations: which exact script (SHA-256) may write, under which title,
for which user ('' for all users).  Only the superuser changes them."""

import asyncio
import logging
import time

from ..errors import NotFound

log = logging.getLogger("dynamod.apps")


class ScriptAuthorizations:
    def __init__(self, writer):
        self.writer = writer
        self.entries: dict[tuple, tuple] = {}   # (title, user) -> (checksum, created)

    def load(self, rows):
        for title, user, digest, created in rows:
            self.entries[(title, user)] = (digest, created)

    def allows(self, title: str, user: str, digest: str) -> bool:
        return any(self.entries.get((title, who), ("",))[0] == digest for who in (user, ""))

    def authorize(self, title: str, user: str, digest: str) -> tuple[bool, asyncio.Future]:
        """Record `digest` for (title, user); whether it replaced one, and the commit."""
        key = (title, user)
        before = self.entries.get(key)
        self.entries[key] = (digest, time.time())
        log.info("script authorization %s for title %r, user %s: %s",
                 "replaced" if before else "added", title, user or "ALL", digest)
        return before is not None, self._persist({key: before})

    def revoke(self, title: str, user: str | None) -> tuple[list, asyncio.Future]:
        """Remove (title, user), or with `user` None every entry of the title."""
        keys = [k for k in self.entries if k[0] == title and (user is None or k[1] == user)]
        if not keys:
            raise NotFound(f"no authorization for title {title!r}"
                           + (f" and user {user or 'ALL'}" if user is not None else ""))
        before = {key: self.entries.pop(key) for key in keys}
        for title_, user_ in keys:
            log.info("script authorization revoked: title %r, user %s", title_, user_ or "ALL")
        return keys, self._persist(before)

    def _persist(self, before: dict) -> asyncio.Future:
        """Commit the entries `before` names as they are now; a failed commit puts back
        what they were."""
        def undo():
            for key, entry in before.items():
                if entry is None:
                    self.entries.pop(key, None)
                else:
                    self.entries[key] = entry

        rows = {("authorization", key): (*key, *self.entries[key]) if key in self.entries
                else None for key in before}
        return self.writer.submit(rows, {}, undo)

    def forget(self):
        """In a child: nothing of the authorizations stays reachable."""
        self.entries.clear()
