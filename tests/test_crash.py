"""A short run of the crash suite (tests/reliability/crash.py): three SIGKILL cycles.

The full run is `python -m tests.reliability.crash --cycles 50`; see RELIABILITY.md.
"""

from reliability import crash


def test_sigkill_cycles_keep_every_acknowledged_change(random_seed):
    summary = crash.run(cycles=3, seed=random_seed, workers=3, log=lambda line: None)
    assert summary.violations == [], f"seed {random_seed}:\n{summary.text()}"
    assert summary.cycles == 3
    assert summary.acknowledged > 0 and summary.found == summary.acknowledged
