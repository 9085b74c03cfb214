"""The original Dynamo's object API, as its policy scripts use it, in real applications.

Each script below is written the way a script of the original system was
(`from dynamo.dataformat import ...`, `from dynamo.core.executable import
inventory`), runs through the real `dynamo` against a real daemon, and prints
what every call gave; the test asserts each one.  The inventory: the seed's
sites and dataset, a second block and a group, a partial replica at T3, and a
second dataset with an incomplete block replica.
"""

import collections.abc
import json

import pytest

from dynamod.inventory import objects
from dynamod.inventory.objects import BlockSet, Members
from support.daemon import EXAMPLES

DATASET = "pandaf/010/DoubleMuon+Run2017F-31Mar2018-v1+MINIAOD"
B1 = "48dbe0c6-36fa-11e8-a5e2-ac1f6b05e848"
F1 = ("/store/user/paus/pandaf/010/DoubleMuon+Run2017F-31Mar2018-v1+MINIAOD/"
      "6C7F843A-4837-E811-93AC-14187741208F.root")
F2 = ("/store/user/paus/pandaf/010/DoubleMuon+Run2017F-31Mar2018-v1+MINIAOD/"
      "6EABBD4C-2E37-E811-AB8D-1866DAEA7F94.root")
OTHER = "/Other/Set-v1/RAW"

MORE = {
    "group": [{"name": "AnalysisOps", "olevel": "Dataset"}],
    "dataset": [
        {"name": DATASET, "blocks": [
            {"name": "b2", "last_update": 1528500000, "files": [
                {"name": "/store/b2/one.root", "size": 1000, "adler32": "0A1B2C3D"},
                {"name": "/store/b2/two.root", "size": 2000, "crc32": "99",
                 "md5": "d41d8cd98f00b204e9800998ecf8427e"}]}]},
        {"name": OTHER, "status": "valid", "data_type": "production", "last_update": 1600000000,
         "blocks": [{"name": "r1", "files": [{"name": "/store/o/a.root", "size": 10},
                                             {"name": "/store/o/b.root", "size": 20}]}]},
    ],
    "datasetreplica": [
        {"dataset": DATASET, "site": "T2_US_XYZ",
         "blockreplicas": [{"block": "b2", "last_update": 1528600000}]},
        {"dataset": DATASET, "site": "T3_US_XYZ", "group": "AnalysisOps", "growing": False,
         "blockreplicas": [{"block": B1, "is_custodial": True, "last_update": 1528700000}]},
        {"dataset": OTHER, "site": "T3_US_XYZ",
         "blockreplicas": [{"block": "r1", "files": ["/store/o/a.root"]}]},
    ],
}


@pytest.fixture
def inventory(daemon):
    daemon.inject(EXAMPLES / "mydynamo-storage-sites.json")
    daemon.inject(EXAMPLES / "mydynamo-data.json")
    daemon.inject_json(MORE)
    return daemon


def run(daemon, workdir, text, *args):
    path = workdir / "original.py"
    path.write_text(PRELUDE + text)
    result = daemon.dynamo(path, *args)
    return json.loads(result.stdout.splitlines()[-1])


PRELUDE = f"""\
import json
import sys
from dynamo.core.executable import inventory, authorized
from dynamo.dataformat import (Block, BlockReplica, Dataset, DatasetReplica, File, Group,
                               ObjectError, Site)

D, B1, F1, OTHER = {DATASET!r}, {B1!r}, {F1!r}, {OTHER!r}
out = {{}}

def names(objs):
    return sorted(o.full_name() if isinstance(o, Block) else getattr(o, 'name', o)
                  for o in objs)

def raises(call):
    try:
        call()
    except ObjectError as exc:
        return type(exc).__name__
    return 'no error'
"""

SITE_SCRIPT = """
t2, t3 = inventory.sites['T2_US_XYZ'], inventory.sites['T3_US_XYZ']
dataset, other = inventory.datasets[D], inventory.datasets[OTHER]
b1, b2 = dataset.find_block(B1), dataset.find_block('b2')
out['STAT'] = [Site.STAT_READY, Site.STAT_WAITROOM, Site.STAT_MORGUE, Site.STAT_UNKNOWN]
out['TYPE'] = [Site.TYPE_DISK, Site.TYPE_MSS, Site.TYPE_BUFFER, Site.TYPE_UNKNOWN]
out['ready'] = [s.name for s in inventory.sites.values() if s.status == Site.STAT_READY]
out['status_val'] = [Site.status_val('READY'), Site.status_val(3), Site.status_val('nice')]
out['status_name'] = [Site.status_name(Site.STAT_MORGUE), Site.status_name(2)]
out['storage_type'] = [Site.storage_type_val('MSS'), Site.storage_type_name(1)]
out['dataset_replicas()'] = names(r.dataset for r in t3.dataset_replicas())
for replica in t3.dataset_replicas():  # a copy: deleting while iterating is safe
    inventory.delete(replica)
out['after delete'] = [len(t3.dataset_replicas()), len(t3.dataset_replicas)]
out['find_dataset_replica'] = [t2.find_dataset_replica(dataset) == dataset.find_replica(t2),
                               t2.find_dataset_replica(D) == dataset.find_replica('T2_US_XYZ'),
                               t2.find_dataset_replica(other)]
out['find_dataset_replica must_find'] = raises(lambda: t2.find_dataset_replica(other, True))
out['find_block_replica'] = [t2.find_block_replica(b2) == b2.find_replica(t2),
                             t2.find_block_replica('b2') == b2.find_replica(t2),
                             t2.find_block_replica(D + '#b2') == b2.find_replica(t2),
                             t2.find_block_replica('r1')]
out['find_block_replica must_find'] = raises(lambda: t2.find_block_replica('r1', must_find=True))
out['to_pfn'] = [t2.to_pfn(F1, 'gfal2'), t2.to_pfn(F1)]
out['x509proxy'] = t2.x509proxy
out['str'] = str(t2)
out['repr'] = repr(t2)
print(json.dumps(out))
"""


def test_site(inventory, workdir):
    out = run(inventory, workdir, SITE_SCRIPT)
    assert out["STAT"] == ["ready", "waitroom", "morgue", "unknown"]
    assert out["TYPE"] == ["disk", "mss", "buffer", "unknown"]
    assert out["ready"] == ["T2_US_XYZ", "T3_US_XYZ"]
    assert out["status_val"] == ["ready", "morgue", "nice"]  # unknown names pass, as there
    assert out["status_name"] == ["morgue", "waitroom"]
    assert out["storage_type"] == ["mss", "disk"]
    assert out["dataset_replicas()"] == [OTHER, DATASET]
    assert out["after delete"] == [0, 0]
    assert out["find_dataset_replica"] == [True, True, None]
    assert out["find_dataset_replica must_find"] == "NotFound"
    assert out["find_block_replica"] == [True, True, True, None]
    assert out["find_block_replica must_find"] == "NotFound"
    pfn = "gsiftp://t2-storage.xyz.edu:2811/cms" + F1
    assert out["to_pfn"] == [pfn, pfn]
    assert out["x509proxy"] is None
    assert out["str"] == ("Site T2_US_XYZ (host=t2-storage.xyz.edu, storage_type=disk, "
                          "backend=gsiftp://t2-storage.xyz.edu:2811/cms, status=ready, "
                          "x509=None, id=1)")
    assert out["repr"] == ("Site('T2_US_XYZ','t2-storage.xyz.edu','disk',"
                           "'gsiftp://t2-storage.xyz.edu:2811/cms','ready',1)")
    assert [s["name"] for s in inventory.call("list_sites")["sites"]] == ["T2_US_XYZ",
                                                                          "T3_US_XYZ"]


DATA_SCRIPT = """
import dynamo.core.executable
dataset, other = inventory.datasets[D], inventory.datasets[OTHER]
b1, b2 = dataset.find_block(B1), dataset.find_block('b2')
t2, t3 = inventory.sites['T2_US_XYZ'], inventory.sites['T3_US_XYZ']
# executable
out['executable'] = [authorized, dynamo.core.executable.read_only,
                     dynamo.core.executable.authorizer]
# Group
ops = inventory.groups['AnalysisOps']
out['null_group'] = [Group.null_group is inventory.groups[None], Group.null_group.name,
                     b1.find_replica(t2).group is Group.null_group]
out['OL'] = [Group.OL_DATASET, Group.OL_BLOCK, Group.olevel_val('dataset'), Group.olevel_name(2)]
out['group str'] = [str(ops), str(Group.null_group)]
# Dataset
out['Dataset.STAT'] = [Dataset.STAT_UNKNOWN, Dataset.STAT_DELETED, Dataset.STAT_DEPRECATED,
                       Dataset.STAT_INVALID, Dataset.STAT_PRODUCTION, Dataset.STAT_VALID,
                       Dataset.STAT_IGNORED]
out['Dataset.TYPE'] = [Dataset.TYPE_UNKNOWN, Dataset.TYPE_PRODUCTION, Dataset.TYPE_TEST]
out['valid'] = [d.name for d in inventory.datasets.values() if d.status == Dataset.STAT_VALID]
out['dataset enums'] = [Dataset.status_val('VALID'), Dataset.status_name(5),
                        Dataset.data_type_val('Test'), Dataset.data_type_name(2)]
out['files'] = sorted(f.lfn for f in dataset.files)
out['files type'] = [repr(dataset.files).startswith('set([File('), len(other.files)]
out['find_file'] = [dataset.find_file(F1).block == b1, dataset.find_file('/store/o/a.root'),
                    other.find_file('/store/o/a.root').size, dataset.find_file('/nope')]
out['find_file must_find'] = raises(lambda: dataset.find_file('/nope', must_find=True))
out['find_block'] = [dataset.find_block('nope'), raises(lambda: dataset.find_block('x', True))]
out['find_replica'] = [dataset.find_replica(t3).site.name,
                       dataset.find_replica('T3_US_XYZ').group.name,
                       raises(lambda: other.find_replica(t2, must_find=True))]
out['size'] = [dataset.size, dataset.num_files, other.size, other.num_files]
dataset.attr['seen'] = 1
out['attr'] = [dataset.attr, other.attr]
out['format_software_version'] = Dataset.format_software_version('pandaf/010')
out['name_pattern'] = [Dataset.name_pattern, Block.name_pattern]
out['dataset str'] = str(dataset)
# Block
out['block names'] = [b1.real_name(), b2.full_name(), Block.to_full_name(D, 'b2'),
                      list(Block.from_full_name(D + '#b2')), Block.to_internal_name('b2'),
                      Block.to_real_name('b2')]
out['from_full_name error'] = raises(lambda: Block.from_full_name('nohash'))
out['block find_file'] = [b1.find_file(F1).size, b1.find_file('/store/b2/one.root'),
                          raises(lambda: b2.find_file(F1, must_find=True))]
out['block find_replica'] = [b1.find_replica('T3_US_XYZ').site.name, b2.find_replica(t3),
                             raises(lambda: b2.find_replica(t3, must_find=True))]
out['block str'] = str(b1)
out['block files'] = [sorted(f.lfn for f in b1.files), b1.num_files, b1.size, b1.is_open,
                      b1.last_update, b1.id, b1.dataset == dataset]
# File
one, two = b2.find_file('/store/b2/one.root'), b2.find_file('/store/b2/two.root')
out['checksum'] = [File.checksum_algorithms, one.checksum, two.checksum]
out['file str'] = str(two)
out['file'] = [one.lfn, one.block == b2, one.size, one.id > 0]
# DatasetReplica
full, partial = dataset.find_replica(t2), dataset.find_replica(t3)
incomplete = other.find_replica(t3)
out['is_full'] = [full.is_full(), partial.is_full(), incomplete.is_full()]
out['is_partial'] = [full.is_partial(), partial.is_partial(), incomplete.is_partial()]
out['is_complete'] = [full.is_complete(), partial.is_complete(), incomplete.is_complete()]
out['is_last_copy'] = [full.is_last_copy(), incomplete.is_last_copy()]
out['last_block_created'] = [full.last_block_created(), partial.last_block_created()]
out['dr size'] = [full.size(), incomplete.size(), incomplete.size(physical=False)]
out['dr find_block_replica'] = [full.find_block_replica(b2) == b2.find_replica(t2),
                                full.find_block_replica('b2') == b2.find_replica(t2),
                                partial.find_block_replica(b2),
                                raises(lambda: partial.find_block_replica('b2', True))]
out['dr'] = [full.growing, partial.group.name, full.group is Group.null_group,
             names(r.block for r in full.block_replicas)]
out['dr str'] = [str(full), str(partial)]
# BlockReplica
r1 = other.find_block('r1')
held, custodial = r1.find_replica(t3), b1.find_replica(t3)
a, b = r1.find_file('/store/o/a.root'), r1.find_file('/store/o/b.root')
out['num_files'] = [held.num_files, custodial.num_files, b2.find_replica(t2).num_files]
out['has_file'] = [held.has_file(a), held.has_file(b), held.has_file('/store/o/a.root'),
                   custodial.has_file(dataset.find_file(F1)), custodial.has_file(a)]
out['br'] = [held.is_complete(), custodial.is_complete(), custodial.is_custodial,
             custodial.group.name, held.size, held.last_update > 0,
             sorted(f.lfn for f in held.files()), len(held.file_ids)]
out['br str'] = str(custodial)
# inventory
out['inventory.find_file'] = inventory.find_file('/store/o/b.root').block == r1
made = inventory.make_object(repr(t2))
out['make_object'] = [type(made).__name__, repr(made), made is t2,
                      repr(inventory.make_object(repr(b1))), repr(inventory.make_object(repr(one))),
                      repr(inventory.make_object(repr(custodial))),
                      raises(lambda: inventory.make_object(repr(held)))]
print(json.dumps(out))
"""


def test_dataset_block_file_replicas_and_groups(inventory, workdir):
    out = run(inventory, workdir, DATA_SCRIPT)
    assert out["executable"] == [False, True, None]
    # Group
    assert out["null_group"] == [True, None, True]
    assert out["OL"] == ["Dataset", "Block", "Dataset", "Block"]
    assert out["group str"] == ["Group AnalysisOps (olevel=Dataset, id=1)",
                                "Group None (olevel=Block, id=0)"]
    # Dataset
    assert out["Dataset.STAT"] == ["unknown", "deleted", "deprecated", "invalid", "production",
                                   "valid", "ignored"]
    assert out["Dataset.TYPE"] == ["unknown", "production", "test"]
    assert out["valid"] == [OTHER]
    assert out["dataset enums"] == ["valid", "production", "test", "production"]
    assert out["files"] == sorted([F1, F2, "/store/b2/one.root", "/store/b2/two.root"])
    assert out["files type"] == [True, 2]
    assert out["find_file"] == [True, None, 10, None]
    assert out["find_file must_find"] == "NotFound"
    assert out["find_block"] == [None, "NotFound"]
    assert out["find_replica"] == ["T3_US_XYZ", "AnalysisOps", "NotFound"]
    assert out["size"] == [165438 + 3000, 4, 30, 2]
    assert out["attr"] == [{"seen": 1}, {}]
    assert out["format_software_version"] == "pandaf/010"
    assert out["name_pattern"] == [None, None]
    assert out["dataset str"] == (
        f"Dataset {DATASET} (status=production, data_type=unknown, software_version=pandaf/010, "
        "last_update=2018-06-07 21:13:28 UTC, is_open=True, id=1, size 168438, 2 blocks, "
        "4 files, replicas [T2_US_XYZ,T3_US_XYZ])")
    # Block
    assert out["block names"] == [B1, f"{DATASET}#b2", f"{DATASET}#b2", [DATASET, "b2"], "b2",
                                  "b2"]
    assert out["from_full_name error"] == "InvalidValue"
    assert out["block files"] == [[F1, F2], 2, 165438, True, 1528406008, 1, True]
    assert out["block find_file"] == [57495, None, "NotFound"]
    assert out["block find_replica"] == ["T3_US_XYZ", None, "NotFound"]
    assert out["block str"] == (
        f"Block {DATASET}#{B1} (size=165438, num_files=2, is_open=True, "
        "last_update=2018-06-07 21:13:28 UTC, replicas=[T2_US_XYZ,T3_US_XYZ], id=1)")
    # File
    assert out["checksum"] == [["adler32", "crc32", "md5"], ["0a1b2c3d", None, None],
                               [None, "99", "d41d8cd98f00b204e9800998ecf8427e"]]
    assert out["file str"] == (f"File /store/b2/two.root (block={DATASET}#b2, size=2000, "
                               "checksum=(None, '99', 'd41d8cd98f00b204e9800998ecf8427e'), id=4)")
    assert out["file"] == ["/store/b2/one.root", True, 1000, True]
    # DatasetReplica
    assert out["is_full"] == [True, False, False]
    assert out["is_partial"] == [False, True, False]
    assert out["is_complete"] == [True, True, False]
    assert out["is_last_copy"] == [False, True]
    assert out["last_block_created"] == [1528600000, 1528700000]
    assert out["dr size"] == [168438, 10, 30]
    assert out["dr find_block_replica"] == [True, True, None, "NotFound"]
    assert out["dr"] == [False, "AnalysisOps", True, [f"{DATASET}#{B1}", f"{DATASET}#b2"]]
    assert out["dr str"] == [f"DatasetReplica T2_US_XYZ:{DATASET} (growing: False, "
                             "2 block_replicas)",
                             f"DatasetReplica T3_US_XYZ:{DATASET} (growing: False, "
                             "1 block_replicas)"]
    # BlockReplica
    assert out["num_files"] == [1, 2, 2]
    assert out["has_file"] == [True, False, True, True, False]
    assert out["br"] == [False, True, True, "AnalysisOps", 10, True, ["/store/o/a.root"], 1]
    assert out["br str"] == (f"BlockReplica T3_US_XYZ:{DATASET}#{B1} (group=AnalysisOps, "
                             "size=165438, last_update=2018-06-11 06:53:20 UTC)")
    # inventory
    assert out["inventory.find_file"] is True
    assert out["make_object"] == [
        "Site", "Site('T2_US_XYZ','t2-storage.xyz.edu','disk',"
        "'gsiftp://t2-storage.xyz.edu:2811/cms','ready',1)", False,
        f"Block('{B1}','{DATASET}',165438,2,True,1528406008,1,False)",
        f"File('/store/b2/one.root','{DATASET}#b2',1000,3,adler32='0a1b2c3d')",
        f"BlockReplica('{DATASET}#{B1}','T3_US_XYZ','AnalysisOps',True,165438,1528700000,None)",
        "InvalidValue"]


SET_SCRIPT = """
import collections.abc
dataset = inventory.datasets[D]
b1, b2 = dataset.find_block(B1), dataset.find_block('b2')
t2, t3 = inventory.sites['T2_US_XYZ'], inventory.sites['T3_US_XYZ']
blocks, replicas = dataset.blocks, dataset.replicas
full = dataset.find_replica(t2)
out['blocks ops'] = [names(blocks - {b1}), names(blocks | set()), names(blocks & {b2, 'x'}),
                     names(blocks ^ {b1}), names({b1, 'x'} - blocks), names(set() | blocks)]
out['blocks compare'] = [blocks == {b1, b2}, {b1, b2} == blocks, blocks == frozenset({b1}),
                         blocks != {b1}, blocks <= {b1, b2, 1}, blocks < {b1, b2}, {b1} < blocks,
                         blocks.isdisjoint({1}), b1 in blocks, 'x' in blocks, [] in blocks]
out['blocks type'] = [isinstance(blocks, collections.abc.Set), repr(blocks - {b2}),
                      repr(blocks).startswith('set([Block('), len(blocks)]
out['replicas ops'] = [names(r.site for r in replicas - {full}), replicas == set(replicas),
                       set(replicas) == replicas, replicas == frozenset(replicas),
                       replicas != set(), replicas >= {full}, {full} <= replicas,
                       isinstance(replicas, collections.abc.Set),
                       repr(replicas).startswith('set(['),
                       hash(replicas) == hash(frozenset(replicas)),
                       len(replicas | b1.replicas)]
out['block_replicas ops'] = [names(r.block for r in full.block_replicas - {b1.find_replica(t2)}),
                             full.block_replicas == {b1.find_replica(t2), b2.find_replica(t2)},
                             names(r.site for r in b1.replicas & {b1.find_replica(t3)}),
                             repr(b2.replicas - b2.replicas)]
out['site set'] = [isinstance(t2.dataset_replicas, collections.abc.Set),
                   t2.dataset_replicas == {full},
                   t2.dataset_replicas() == t2.dataset_replicas,
                   repr(t2.dataset_replicas()).startswith('set([DatasetReplica(')]
print(json.dumps(out))
"""


def test_collections_printed_as_sets_behave_as_sets(inventory, workdir):
    """Item 5: `dataset.blocks`, `.replicas`, `block_replicas` and `site.dataset_replicas`
    take set operators and comparisons; results print as the seed's `set([...])`."""
    out = run(inventory, workdir, SET_SCRIPT)
    both = [f"{DATASET}#{B1}", f"{DATASET}#b2"]
    assert out["blocks ops"] == [[f"{DATASET}#b2"], both, [f"{DATASET}#b2"], [f"{DATASET}#b2"],
                                 ["x"], both]
    assert out["blocks compare"] == [True, True, False, True, True, False, True, True, True,
                                     False, False]
    assert out["blocks type"] == [True, f"set([Block('{B1}','{DATASET}',165438,2,True,"
                                        "1528406008,1,False)])", True, 2]
    assert out["replicas ops"] == [["T3_US_XYZ"], True, True, True, True, True, True, True, True,
                                   True, 4]
    assert out["block_replicas ops"] == [[f"{DATASET}#b2"], True, ["T3_US_XYZ"], "set([])"]
    assert out["site set"] == [True, True, True, True]


def test_make_standard_logger(inventory, workdir):
    """`make_standard_logger(level)`: the level and above to standard output, errors
    also to standard error."""
    path = workdir / "logs.py"
    path.write_text("import logging\n"
                    "from dynamo.core.executable import make_standard_logger\n"
                    "LOG = make_standard_logger('info')\n"
                    "logging.getLogger('policy').debug('hidden')\n"
                    "logging.getLogger('policy').info('kept')\n"
                    "LOG.error('broken')\n")
    result = inventory.dynamo(path)
    assert [line.split(":", 3)[3:] for line in result.stdout.splitlines()] == [
        ["INFO:policy: kept"], ["ERROR:root: broken"]]
    assert result.stderr.splitlines()[-1].endswith(":ERROR:root: broken")


WRITER = """
site = inventory.sites['T3_US_XYZ']
site.status = Site.STAT_MORGUE
inventory.register_update(site)
dataset = inventory.datasets[OTHER]
dataset.status = Dataset.STAT_DEPRECATED
inventory.register_update(dataset)
inventory.update(Group('DataOps', Group.OL_DATASET))
print(json.dumps({'authorized': authorized, 'status': site.status}))
"""


def test_an_original_writer_runs_isolated_and_its_changes_commit(inventory, workdir):
    """A read/write application imports `dynamo.dataformat` from the installed packages
    (its sys.path is python3 -I's), sets fields to the original's constants and records
    them with `register_update`."""
    path = workdir / "original.py"
    path.write_text(PRELUDE + WRITER)
    inventory.exec_auth("--executable", path, "--title", "original")
    result = inventory.dynamo(path, "--write-request", "--title", "original")
    assert json.loads(result.stdout) == {"authorized": True, "status": "morgue"}
    sites = {s["name"]: s["status"] for s in inventory.call("list_sites")["sites"]}
    assert sites == {"T2_US_XYZ": "ready", "T3_US_XYZ": "morgue"}
    assert inventory.call("get_dataset", name=OTHER)["status"] == "deprecated"
    groups = {g["name"]: g["olevel"] for g in inventory.call("list_groups")["groups"]}
    assert groups == {"AnalysisOps": "Dataset", "DataOps": "Dataset"}


def test_the_set_collections_cost_no_memory_per_object():
    """The set behaviour is in the classes: a Members is still a bare tuple, a BlockSet
    and a site's SiteReplicas have their slots, a dataset, block or replica is a bare
    tuple (a view of its row), and no inventory object has a __dict__."""
    assert Members.__basicsize__ == tuple.__basicsize__
    assert Members.__itemsize__ == tuple.__itemsize__
    assert isinstance(Members(), collections.abc.Set)
    assert isinstance(BlockSet(), collections.abc.Set)
    assert BlockSet.__slots__ == ("table", "owner") and not hasattr(BlockSet(), "__dict__")
    assert not hasattr(objects.SiteReplicas(), "__dict__")
    for cls in (objects.Dataset, objects.Block, objects.DatasetReplica, objects.BlockReplica):
        assert cls.__basicsize__ == tuple.__basicsize__
    for cls in objects.CLASSES:
        assert not hasattr(cls(*["x"] * (2 if cls.kind.endswith("replica") else 1)), "__dict__")


def test_a_new_file_of_a_replicated_block_is_told_where_it_is(inventory, workdir):
    """The refusal says how to say it, in a document and in an application: an
    application that read only "say at which site" had no way to know of `site=`."""
    got = run(inventory, workdir, """
block = inventory.datasets[D].find_block(B1)
new = File('/store/user/paus/new.root', block.full_name(), 1000)
try:
    inventory.update(new)
except ObjectError as exc:
    out['refused'] = str(exc)
added = inventory.update(new, site='T2_US_XYZ')
out['added'] = [added.lfn, block.num_files, block.find_replica('T2_US_XYZ').is_complete(),
                block.find_replica('T3_US_XYZ').is_complete()]
print(json.dumps(out))
""")
    assert got["refused"].endswith(
        "already has replicas (at T2_US_XYZ, T3_US_XYZ); say at which site the new file is "
        "present (a document's file: \"site\"; an application: inventory.update(file, "
        "site=NAME))")
    assert got["added"] == ["/store/user/paus/new.root", 3, True, False]
