"""Policy scripts of the original Dynamo, as their authors wrote them, run through the
real `dynamo` against a real daemon: what a script takes for granted of Python (its
own `__main__`, its end) and of the original's API (`inventory.delete` gives back
what it removed), and what a read-only or read/write run tells its author."""

import pytest

from support.daemon import EXAMPLES

DATASET = "pandaf/010/DoubleMuon+Run2017F-31Mar2018-v1+MINIAOD"


@pytest.fixture
def seeded(daemon):
    daemon.inject(EXAMPLES / "mydynamo-storage-sites.json")
    daemon.inject(EXAMPLES / "mydynamo-data.json")
    return daemon


DELETE = f"""
from dynamo.core.executable import inventory
replica = inventory.datasets[{DATASET!r}].find_replica('T2_US_XYZ')
print('deleted', inventory.delete(replica))
"""


def test_delete_returns_what_it_removed(seeded, workdir):
    """As the original's `inventory.delete`, which scripts logged or counted."""
    script = workdir / "delete.py"
    script.write_text(DELETE)
    result = seeded.dynamo(script)
    assert result.stdout == (f"deleted DatasetReplica T2_US_XYZ:{DATASET} (growing: False, "
                             "0 block_replicas)\n")
