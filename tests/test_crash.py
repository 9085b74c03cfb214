"""A short run of the crash suite (tests/reliability/crash.py): three SIGKILL cycles.

The full run is `python -m tests.reliability.crash --cycles 50`; see RELIABILITY.md.
"""

from reliability import crash


def test_sigkill_cycles_keep_every_acknowledged_change(random_seed):
    summary = crash.run(cycles=3, seed=random_seed, workers=3, log=lambda line: None)
    assert summary.violations == [], f"seed {random_seed}:\n{summary.text()}"
    assert summary.cycles == 3
    assert summary.acknowledged > 0 and summary.found == summary.acknowledged


def test_sigkill_after_pauses_restarts_from_the_snapshot(random_seed):
    """Every kill after the clients paused long enough for the snapshot to be written
    (or while it is): the restarts that use it keep every acknowledged change too."""
    summary = crash.run(cycles=3, seed=random_seed, workers=2, log=lambda line: None,
                        quiet_kills=1.0)
    assert summary.violations == [], f"seed {random_seed}:\n{summary.text()}"
    assert summary.quiet_kills == 3 and summary.snapshot_starts >= 1, summary.text()
    assert summary.acknowledged > 0 and summary.found == summary.acknowledged
