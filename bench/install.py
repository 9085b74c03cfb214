"""The clients as users run them: a regular install, and the interpreter's own start.

The editable install the tests use starts slower (its import hook, and every
`.pth` file of the development environment's site-packages), so the start-up
figure runs the `dynamo` command of a regular install in a virtual environment
of its own.  The clients need nothing beyond the standard library, so the
project is installed without its dependencies (pip still fetches the build
backend the project names, setuptools, as any install does).
"""

import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def regular_install(venv: str) -> str:
    """Install this checkout (not editable) into a new virtual environment at `venv`;
    returns the path of its `dynamo` command."""
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "--quiet",
                    "--no-deps", REPO],
                   check=True, capture_output=True)
    return os.path.join(venv, "bin", "dynamo")


def interpreter_start(repeat: int) -> float:
    """Median seconds of `python3 -I -S -c pass`: the least any Python command costs."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)
