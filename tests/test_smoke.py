"""The seed's walk-through, end to end through the real dynamo-inject."""

from support.daemon import EXAMPLES


def test_seed_injection_counts_and_restart(daemon):
    out = daemon.inject(EXAMPLES / "mydynamo-storage-sites.json").stdout
    assert "created  sites: 2" in out
    out = daemon.inject(EXAMPLES / "mydynamo-data.json").stdout
    assert ("created  datasets: 1, blocks: 1, files: 2, datasetreplicas: 1, blockreplicas: 1"
            in out)
    again = daemon.inject(EXAMPLES / "mydynamo-data.json").stdout
    assert "created  nothing" in again and "updated  nothing" in again
    before = daemon.call("list_sites")
    daemon.restart()
    assert daemon.call("list_sites") == before
    assert daemon.call("status")["inventory"]["files"] == 2
