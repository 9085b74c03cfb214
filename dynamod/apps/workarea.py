"""Work areas: where an asynchronous application's output goes.

The daemon makes each one, with a name nobody can guess, in a directory only
it may write to (mode 0711: users reach their own area by its name but can
neither list the others nor make any), and hands it to the submitting user
(mode 0700, their uid and gid).  No account can squat another's area.
"""

import os
import secrets
import shutil

from ..errors import DynamoError


class WorkAreas:
    def __init__(self, root: str):
        self.root = root

    def prepare(self):
        """At start-up: the root exists, is the daemon's, and nobody else writes to it."""
        try:
            os.makedirs(self.root, exist_ok=True)
            os.chmod(self.root, 0o711)
        except OSError as exc:
            raise DynamoError(f"cannot make the work areas' directory {self.root} "
                              f"([applications] work_dir): {exc.strerror}") from None

    def create(self, app_id: int, uid: int, gid: int) -> str:
        path = os.path.join(self.root, f"{app_id}-{secrets.token_urlsafe(12)}")
        try:
            os.mkdir(path, 0o700)
            if (uid, gid) != (os.geteuid(), os.getegid()):
                os.chown(path, uid, gid)
        except OSError as exc:
            shutil.rmtree(path, ignore_errors=True)
            raise DynamoError(f"cannot make a work area for application {app_id} as uid "
                                f"{uid}: {exc.strerror}") from None
        return path

    @staticmethod
    def remove(path: str | None):
        """An expired record's area goes with it."""
        if path:
            shutil.rmtree(path, ignore_errors=True)
