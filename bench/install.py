"""The clients as users run them: a regular install, and the interpreter's own start.

The editable install the tests use starts slower (its import hook, and every
`.pth` file of the development environment's site-packages), so the start-up
figure runs the `dynamo` command of a regular install in a virtual environment
of its own.  The clients need nothing beyond the standard library, so that
install is made here as pip makes it, without the network: the package copied
into the environment's site-packages, and the entry script pip writes for a
console script.
"""

import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time

# What pip writes for `dynamo = "dynamoclient.dynamo:main"` (pyproject.toml).
ENTRY_SCRIPT = """#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from dynamoclient.dynamo import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""


def regular_install(venv: str, repo: str) -> str:
    """The clients of the checkout at `repo` installed (not editable) into a new
    virtual environment at `venv`; returns the path of its `dynamo` command."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    purelib = sysconfig.get_path("purelib", vars={"base": venv, "platbase": venv})
    shutil.copytree(os.path.join(repo, "clients", "dynamoclient"),
                    os.path.join(purelib, "dynamoclient"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    python = os.path.join(venv, "bin", "python")
    subprocess.run([python, "-m", "compileall", "-q", os.path.join(purelib, "dynamoclient")],
                   check=True)   # pip compiles what it installs
    command = os.path.join(venv, "bin", "dynamo")
    with open(command, "w") as f:
        f.write(ENTRY_SCRIPT.format(python=python))
    os.chmod(command, 0o755)
    return command


def interpreter_start(repeat: int) -> float:
    """Median seconds of `python3 -I -S -c pass`: the least any Python command costs."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)
