"""The unprivileged account, uid/gid 65534 (`nobody`): run code as it, map it to a user."""

import os
import subprocess
import sys

import orjson

NOBODY = 65534


def as_nobody(work, *args):
    """Run `work(*args)` in a forked child as uid/gid 65534; its (JSON) return value."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest, no exceptions escaping
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(write_end, orjson.dumps(work(*args)))
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged child failed"
    return orjson.loads(data)


def map_nobody(daemon, *role):
    """`dynamo-user-auth`: uid 65534's account is the user `guest`, with `role` if given
    (a role and its target)."""
    args = ["--user", "guest", "--account", "nobody"]
    if role:
        args += ["--role", role[0], "--target", role[1]]
    daemon.client_command("user_auth", *args, "--yes")


def nobody_runs_dynamod() -> bool:
    """Whether uid 65534 can start this interpreter with the daemon's package (setpriv):
    not where either lies in a directory only root reads (an interpreter under /root)."""
    try:
        return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                               "--clear-groups", sys.executable, "-c", "import dynamod.server"],
                              capture_output=True, timeout=60, cwd="/").returncode == 0
    except OSError:   # no setpriv
        return False
