"""The clients as users run them: a regular install, and the interpreter's own start.

The editable install the tests use starts slower (its import hook, and every
`.pth` file of the development environment's site-packages), so the start-up
figure runs the `dynamo` command of a regular install in a virtual environment
of its own.  The clients need nothing beyond the standard library, so that
install is made here as pip makes it, without the network: the package copied
into the environment's site-packages, and the `dynamo` script (a plain script,
`script-files` in pyproject.toml) copied into its bin directory with its first
line made the environment's interpreter, as the wheel's `#!python` is by pip.
"""

import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time


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
    with open(os.path.join(repo, "clients", "scripts", "dynamo")) as f:
        _, body = f.read().split("\n", 1)   # the #! line gives way to the interpreter's
    command = os.path.join(venv, "bin", "dynamo")
    with open(command, "w") as f:
        f.write(f"#!{python}\n{body}")
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
