#!/bin/sh
# Set up Dynamo from this checkout and start the daemon: a virtual environment in
# .venv (Debian and Ubuntu refuse pip installs into their own Python, PEP 668)
# with the project installed editable and its test tools, then `dynamod --detach`.
# PYTHON=python3.12 ./install.sh picks another interpreter (3.11 or later).
set -eu
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

say() { echo "install.sh: $*" >&2; }

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    say "$PYTHON not found: install Python 3.11 or later (Debian/Ubuntu: apt-get install python3)"
    exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    say "$("$PYTHON" -V 2>&1) is too old: Dynamo needs Python 3.11 or later (set PYTHON=...)"
    exit 1
fi

# Debian and Ubuntu ship venv's pip bootstrap (ensurepip) in a package of its own.
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    package=$("$PYTHON" -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])')
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing $package (the venv module's pip bootstrap)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
    else
        say "$PYTHON cannot make a virtual environment: install $package" \
            "(sudo apt-get install $package), then run ./install.sh again"
        exit 1
    fi
fi

# A .venv left half-made (no pip) by an earlier failure is made again.
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    "$PYTHON" -m venv --clear .venv
fi
.venv/bin/python -m pip install --quiet --editable '.[test]'
# An editable install leaves the modules uncompiled: compiled now, the daemon and the
# clients do not compile them at each start where PYTHONDONTWRITEBYTECODE is set.
.venv/bin/python -m compileall -q dynamod clients >/dev/null
say "installed in .venv (. .venv/bin/activate puts dynamod, dynamo and dynamo-* on your PATH)"

# Run again (after an update, say): a daemon already serving the default socket is left alone.
if running=$(.venv/bin/python -c '
import os
from dynamoclient.connection import Client
from dynamoclient.paths import SOCKET_NAME, default_state_dir
with Client(os.path.join(default_state_dir(), SOCKET_NAME), timeout=5) as daemon:
    status = daemon.call("status")
print(status["pid"], status["socket"])' 2>/dev/null); then
    set -- $running
    say "dynamod already runs (pid $1, $2); kill $1, then .venv/bin/dynamod --detach" \
        "restarts it with this code"
    exit 0
fi
exec .venv/bin/dynamod --detach
