"""Applications as a test submits them: the checksum an authorization names, the end of
an asynchronous run."""

import hashlib
import time


def checksum(script: str) -> str:
    """What `authorize_script` takes for this script."""
    return hashlib.sha256(script.encode()).hexdigest()


def wait_for_end(daemon, app_id: int, timeout=30.0) -> dict:
    """The application's record once it ended (any status past new, waiting and run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app = daemon.call("poll_application", id=app_id)
        if app["status"] not in ("new", "waiting", "run"):
            return app
        time.sleep(0.05)
    raise AssertionError(f"application {app_id} did not end: {app}")
