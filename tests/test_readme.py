"""The README's walk-through as it is written: each command of its console blocks run
in a shell from the project's root against a real daemon, with the installed
commands, and what it prints compared with what the README shows."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT = ">>> "


def walkthrough() -> list[tuple[str, list[str]]]:
    """(command, the lines the README shows it print) of every console block of the
    section "Walk-through", in order."""
    section = (ROOT / "README.md").read_text().split("\n## Walk-through", 1)[1]
    section = section.split("\n## ", 1)[0]
    steps = []
    for block in re.findall(r"```console\n(.*?)```", section, re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
    return steps


def test_the_walkthrough_prints_what_the_readme_shows(daemon):
    steps = walkthrough()
    assert [command.split()[0] for command, _ in steps] == [
        "dynamo-inject", "dynamo-inject", "dynamo-inject", "dynamo", "printf"]
    env = {**daemon.env, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    for command, shown in steps:
        given = None
        if command == "dynamo":   # the console, typed into: its lines from a pipe
            banner, *shown = shown
            given = "".join(line[len(PROMPT):] + "\n" for line in shown
                            if line.startswith(PROMPT))
            shown = [line for line in shown if not line.startswith(PROMPT)]
        result = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, input=given,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.splitlines() == shown, command
        if given is not None:
            assert result.stderr.splitlines() == [banner]
