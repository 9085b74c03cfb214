"""The writer slot: one read/write application at a time, visible to everyone.

It is the service's gate (service.py), held by a writer from before its fork
until its changes are committed, so nothing changes under it between what it
read and what it writes: injections wait.  Who holds it, whose it is and
since when are shown by `status`, `dynamo --list`, a waiting `dynamo` and a
waiting `dynamo-inject`; a writer's run time is bounded (runner.py).
"""

import contextlib
import time


class WriterSlot:
    def __init__(self, gate):
        self.gate = gate
        self.holder = None       # the Application holding it
        self.since: float | None = None

    @contextlib.asynccontextmanager
    async def hold(self, app):
        async with self.gate:
            self.holder, self.since = app, time.time()
            try:
                yield
            finally:
                self.holder = self.since = None

    def waiting_event(self, **more) -> dict | None:
        """The event telling a held-back request whom it waits for; None when free."""
        holder = self.describe()
        if holder is None:
            return None
        return {"event": "waiting", "behind": holder["app"], "behind_title": holder["title"],
                "behind_user": holder["user"], "since": holder["since"], **more}

    def describe(self) -> dict | None:
        """Who holds the slot, for answers and events; None when it is free."""
        app = self.holder
        if app is None:
            return None
        return {"app": app.id, "title": app.title, "user": app.user, "since": self.since}
