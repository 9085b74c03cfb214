"""The walk-through's seed (examples/): its names, loading it, and documents around it."""

from .daemon import EXAMPLES
from .views import snapshot

DS = "pandaf/010/DoubleMuon+Run2017F-31Mar2018-v1+MINIAOD"
BLOCK = "48dbe0c6-36fa-11e8-a5e2-ac1f6b05e848"
FULL = f"{DS}#{BLOCK}"
LFN1 = f"/store/user/paus/{DS}/6C7F843A-4837-E811-93AC-14187741208F.root"
LFN2 = f"/store/user/paus/{DS}/6EABBD4C-2E37-E811-AB8D-1866DAEA7F94.root"
T2, T3 = "T2_US_XYZ", "T3_US_XYZ"
NOTHING = {"created": {}, "updated": {}, "deleted": {}}


def seed(daemon):
    """The seed's two steps: its two sites, then its dataset replicated at T2_US_XYZ."""
    daemon.inject(EXAMPLES / "mydynamo-storage-sites.json")
    daemon.inject(EXAMPLES / "mydynamo-data.json")


def block_of(daemon, full_name=FULL) -> dict:
    return daemon.call("get_block", name=full_name)


def replica_at(view: dict, site: str) -> dict:
    """The replica at `site` in a get_block or get_dataset answer."""
    found = [r for r in view["replicas"] if r["site"] == site]
    assert len(found) == 1, view["replicas"]
    return found[0]


def dataset_doc(name, *blocks, **fields) -> dict:
    return {"dataset": [{"name": name, **fields, "blocks": list(blocks)}]}


def block_doc(name, *files, **fields) -> dict:
    """A block with files given as (lfn, size) or (lfn, size, {extra keys})."""
    return {"name": name, **fields,
            "files": [{"name": f[0], "size": f[1], **(f[2] if len(f) > 2 else {})}
                      for f in files]}


def refused(daemon, document, *fragments, args=()) -> str:
    """Inject a document that must be refused as a whole; return the error text."""
    before = snapshot(daemon)
    result = daemon.inject_json(document, *args, check=False)
    assert not isinstance(result, dict), f"accepted {document}: {result}"
    assert result.returncode == 1 and result.stdout == ""
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in {result.stderr!r}"
    assert snapshot(daemon) == before, f"refused request changed the inventory: {result.stderr}"
    return result.stderr
