"""A short run of the crash suite (tests/reliability/crash.py): three SIGKILL cycles.

The full run is `python -m tests.reliability.crash --cycles 50`; see RELIABILITY.md.
"""

import random

from reliability import crash


def test_sigkill_cycles_keep_every_acknowledged_change():
    seed = random.randrange(2**32)
    summary = crash.run(cycles=3, seed=seed, workers=3, log=lambda line: None)
    assert summary.violations == [], f"seed {seed}:\n{summary.text()}"
    assert summary.cycles == 3
    assert summary.acknowledged > 0 and summary.found == summary.acknowledged
