"""New files whose LFN the store already holds: left to the store's unique index.

A block's new files are not looked up in the store one block at a time; an LFN
that a committed file of another block holds makes the store refuse the rows.
The daemon then fails that request alone, with the error the lookup gave (the
LFN, both blocks, the line of the file), commits the requests before it in the
same transaction and applies again those after it.  A real dynamod, through
the real dynamo-inject and raw pipelined requests; memory is compared with the
store by restarting the daemon.
"""

import json
import subprocess
import sys

from support.seed import DS, FULL, LFN1, T2, block_doc, dataset_doc, refused, seed
from support.views import snapshot
from support.wire import pipelined


def _new_dataset(name, lfns, size=10):
    return dataset_doc(name, block_doc("b1", *[(lfn, size) for lfn in lfns]))


def test_a_committed_lfn_in_a_new_block_is_refused_with_its_line(daemon, tmp_path):
    seed(daemon)
    document = _new_dataset("/New/ds/RAW", [f"/new/{i}.root" for i in range(5)] + [LFN1])
    path = tmp_path / "data.json"
    text = json.dumps(document, indent=1)
    path.write_text(text)
    line = _object_line(text, LFN1)
    before = snapshot(daemon)
    for args in ((), ("--dry-run",)):
        result = daemon.inject(*args, path, check=False)
        assert result.returncode == 1, result
        assert result.stderr.strip() == (
            f"dynamo-inject: {path}:{line}: file {LFN1} belongs to block {FULL}, not "
            f"/New/ds/RAW#b1 [conflict]")
        assert snapshot(daemon) == before
    # the same file in its own block is an update, not a duplicate
    assert daemon.inject_json(dataset_doc(DS, block_doc("b2", ("/b2/1.root", 1))))[
        "created"] == {"blocks": 1, "files": 1}


def test_one_refused_in_a_group_commit_and_the_others_commit(daemon):
    """Three injections pipelined on one connection are applied before the writer runs,
    so they share one transaction: the first commits, the second (an LFN of the seed's
    committed block) is refused alone, the third is applied again and commits."""
    seed(daemon)
    first = _new_dataset("/First/ds/RAW", [f"/first/{i}.root" for i in range(200)])
    offender = _new_dataset("/Bad/ds/RAW", ["/bad/0.root", LFN1, "/bad/2.root"])
    third = _new_dataset("/Third/ds/RAW", [f"/third/{i}.root" for i in range(3)])
    answers = pipelined(daemon.socket, first, offender, third)

    assert answers[0]["result"]["created"]["files"] == 200
    assert answers[1]["error"]["code"] == "conflict"
    assert answers[1]["error"]["message"] == (f"file {LFN1} belongs to block {FULL}, not "
                                              f"/Bad/ds/RAW#b1")
    assert answers[1]["error"]["path"] == "dataset[0].blocks[0].files[1]"
    assert answers[2]["result"]["created"]["files"] == 3
    assert "refused by the database, 1 change(s) applied after it" in daemon.log()
    _same_after_restart(daemon, files=2 + 200 + 3)
    assert "/Bad/ds/RAW" not in [d["name"] for d in daemon.call("list_datasets")["datasets"]]


def test_two_dynamo_injects_at_once_one_refused(daemon, tmp_path):
    """Two dynamo-inject processes at once (their commits may or may not share a
    transaction): the one with the LFN of a committed file is refused with its line,
    the other commits, and memory is the store."""
    seed(daemon)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_new_dataset("/Good/ds/RAW",
                                            [f"/good/{i}.root" for i in range(2000)])))
    bad = tmp_path / "bad.json"
    text = json.dumps(_new_dataset("/Bad/ds/RAW", ["/bad/0.root", LFN1]), indent=1)
    bad.write_text(text)
    line = _object_line(text, LFN1)
    runs = [subprocess.Popen([sys.executable, "-m", "dynamoclient.inject", path],
                             env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for path in (good, bad)]
    (good_out, good_err), (_, bad_err) = [run.communicate(timeout=60) for run in runs]
    assert runs[0].returncode == 0, good_err
    assert "files: 2000" in good_out
    assert runs[1].returncode == 1
    assert bad_err.strip() == (f"dynamo-inject: {bad}:{line}: file {LFN1} belongs to block "
                               f"{FULL}, not /Bad/ds/RAW#b1 [conflict]")
    _same_after_restart(daemon, files=2 + 2000)


def test_a_change_that_built_on_the_refused_one_is_applied_again_without_it(daemon):
    """The request after the refused one named the dataset the refused one created: applied
    again, it finds no such dataset and says so; the one after both commits."""
    seed(daemon)
    offender = _new_dataset("/Bad/ds/RAW", [LFN1])
    dependent = {"datasetreplica": [{"dataset": "/Bad/ds/RAW", "site": T2}]}
    last = _new_dataset("/Last/ds/RAW", ["/last/0.root"])
    answers = pipelined(daemon.socket, offender, dependent, last)

    assert answers[0]["error"]["code"] == "conflict" and LFN1 in answers[0]["error"]["message"]
    assert answers[1]["error"]["code"] == "not_found", answers[1]
    assert "/Bad/ds/RAW" in answers[1]["error"]["message"]
    assert answers[2]["result"]["created"] == {"datasets": 1, "blocks": 1, "files": 1}
    _same_after_restart(daemon, files=3)


def test_a_duplicate_within_one_document_is_found_before_the_store(daemon):
    seed(daemon)
    document = dataset_doc("/Twice/ds/RAW", block_doc("b1", ("/t/1.root", 1)),
                           block_doc("b2", ("/t/2.root", 1), ("/t/1.root", 1)))
    refused(daemon, document, "file /t/1.root", "given twice in one document",
            "dataset[0].blocks[0].files[0]", "dataset[0].blocks[1].files[1]")
    assert "refused by the database" not in daemon.log()


def _object_line(text: str, lfn: str) -> int:
    """The line that opens the object of the file `lfn` (indented JSON: the line before
    its name's), the line dynamo-inject names."""
    return next(number for number, line in enumerate(text.splitlines(), 1) if lfn in line) - 1


def _same_after_restart(daemon, files: int):
    before = snapshot(daemon)
    assert before["counts"]["files"] == files
    daemon.restart()
    assert snapshot(daemon) == before


def test_files_of_a_request_refused_half_way_leave_no_trace(daemon):
    """The second block's sum is refused after the first block's files were added: the
    undo takes every file back, so the same LFNs can be injected next."""
    seed(daemon)
    big = 2**63 - 1
    lfns = ["/half/0.root", "/half/1.root", "/half/2.root"]
    document = dataset_doc("/Half/ds/RAW", block_doc("b0", (lfns[0], 1)),
                           block_doc("b1", (lfns[1], big), (lfns[2], 1)))
    refused(daemon, document, "Block.size")
    assert daemon.inject_json(dataset_doc("/Half/ds/RAW", block_doc("b0", *[
        (lfn, 1) for lfn in lfns])))["created"] == {"datasets": 1, "blocks": 1, "files": 3}
    _same_after_restart(daemon, files=5)
