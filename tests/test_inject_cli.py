"""The dynamo-inject command line (SPEC §3): options, output, usage errors, FILE:LINE."""

import errno
import json
import os
import subprocess
import sys
import time

import pytest

from support.daemon import EXAMPLES
from support.seed import BLOCK, DS, LFN1, T2, T3, block_of, replica_at, seed
from support.views import snapshot


def run(daemon, *args, input=None):
    return daemon.inject(*args, input=input, check=False)


def usage_error(daemon, *args, fragment, input=None):
    """The command must fail with `fragment` in its message and change nothing."""
    before = snapshot(daemon)
    result = run(daemon, *args, input=input)
    assert result.returncode != 0, result.stdout
    assert fragment in result.stderr, result.stderr
    assert snapshot(daemon) == before
    return result


def test_site_group_dataset_options(daemon):
    out = daemon.inject("--site", "T2_A,se.a.edu,mss,davs://se.a.edu/cms,waitroom",
                        "--site", "T2_B", "--site", "T2_C,,,root://c.edu/store,ready",
                        "--group", "AnalysisOps,Dataset", "--group", "DataOps").stdout
    assert out.splitlines() == ["created  sites: 3, groups: 2", "updated  nothing",
                                "deleted  nothing"]
    sites = {s["name"]: s for s in daemon.call("list_sites")["sites"]}
    assert sites["T2_A"] == {"name": "T2_A", "id": 1, "host": "se.a.edu", "storage_type": "mss",
                             "backend": "davs://se.a.edu/cms", "status": "waitroom"}
    assert (sites["T2_B"]["storage_type"], sites["T2_B"]["status"], sites["T2_B"]["host"]) == (
        "disk", "unknown", "")
    assert (sites["T2_C"]["backend"], sites["T2_C"]["status"]) == ("root://c.edu/store", "ready")
    assert daemon.call("lfn_to_pfn", site="T2_C", lfn="/store/x")["pfn"] == (
        "root://c.edu/store/store/x")
    assert daemon.call("list_groups")["groups"] == [
        {"name": "AnalysisOps", "id": 1, "olevel": "Dataset"},
        {"name": "DataOps", "id": 2, "olevel": "Block"}]

    out = daemon.inject("--dataset", "/A/B/RAW,valid,test", "--block", "b1",
                        "--file", "/store/a/1.root,1000", "--file", "/store/a/2.root,234").stdout
    assert "created  datasets: 1, blocks: 1, files: 2" in out
    dataset = daemon.call("get_dataset", name="/A/B/RAW")
    assert (dataset["status"], dataset["data_type"], dataset["size"]) == ("valid", "test", 1234)
    # an existing site, updated from the options
    out = daemon.inject("--site", "T2_B,,,,ready").stdout
    assert "updated  sites: 1" in out
    assert daemon.call("list_sites", pattern="T2_B")["sites"][0]["status"] == "ready"


def test_replica_options_and_files_at_a_site(daemon):
    seed(daemon)
    daemon.inject("--group", "ops")
    out = daemon.inject("--dataset-replica", f"{T3}:{DS},ops",
                        "--block-replica", f"{BLOCK}").stdout
    assert "created  datasetreplicas: 1, blockreplicas: 1" in out
    at_t3 = replica_at(block_of(daemon), T3)
    assert (at_t3["group"], at_t3["complete"]) == ("ops", True)
    daemon.inject("--dataset-replica", f"{T2}:{DS}", "--block-replica", f"{BLOCK},ops")
    assert replica_at(block_of(daemon), T2)["group"] == "ops"

    # a file of a replicated block: without a site it is refused, with one it is placed
    result = usage_error(daemon, "--dataset", DS, "--block", BLOCK, "--file", "/store/new,10",
                         fragment="say at which site")
    assert "file /store/new" in result.stderr
    daemon.inject("--dataset", DS, "--block", BLOCK, "--file", f"/store/new,10,{T3}")
    block = block_of(daemon)
    assert replica_at(block, T3)["complete"] is True
    assert replica_at(block, T2)["complete"] is False
    assert (block["size"], block["num_files"]) == (165448, 3)


def test_delete_with_options(daemon):
    seed(daemon)
    daemon.inject("--dataset-replica", f"{T3}:{DS}", "--block-replica", BLOCK)
    out = daemon.inject("--delete", "--dataset-replica", f"{T3}:{DS}").stdout
    assert out.splitlines() == ["created  nothing", "updated  nothing",
                                "deleted  datasetreplicas: 1, blockreplicas: 1"]
    # a file to delete is named by its LFN alone
    out = daemon.inject("--delete", "--dataset", DS, "--block", BLOCK, "--file", LFN1).stdout
    assert "deleted  files: 1" in out
    assert block_of(daemon)["num_files"] == 1
    out = daemon.inject("-X", "--dataset-replica", f"{T2}:{DS}", "--block-replica", BLOCK).stdout
    assert "deleted  datasetreplicas: 1, blockreplicas: 1" in out
    daemon.inject("--group", "ops")
    assert "deleted  groups: 1" in daemon.inject("--delete", "--group", "ops").stdout
    assert "deleted  sites: 1" in daemon.inject("--delete", "--site", T3).stdout
    out = daemon.inject("--delete", "--dataset", DS).stdout
    assert "deleted  datasets: 1, blocks: 1, files: 1" in out
    assert daemon.call("status")["inventory"] == {
        "sites": 1, "groups": 0, "datasets": 0, "blocks": 0, "files": 0,
        "datasetreplicas": 0, "blockreplicas": 0}


def test_json_output_and_dry_run(daemon):
    result = run(daemon, "--json", EXAMPLES / "mydynamo-storage-sites.json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"created": {"sites": 2}, "updated": {}, "deleted": {}}

    before = snapshot(daemon)
    out = daemon.inject("--dry-run", EXAMPLES / "mydynamo-data.json").stdout
    assert out.splitlines() == [
        "dry run: nothing was changed; the request would give",
        "created  datasets: 1, blocks: 1, files: 2, datasetreplicas: 1, blockreplicas: 1",
        "updated  nothing", "deleted  nothing"]
    assert snapshot(daemon) == before
    result = run(daemon, "-n", "--json", "--site", f"{T2},,,,morgue")
    assert json.loads(result.stdout) == {"created": {}, "updated": {"sites": 1}, "deleted": {}}
    assert snapshot(daemon) == before
    # a dry run validates like the real thing
    usage_error(daemon, "--dry-run", "--site", "T2_X,,,,broken", fragment="Site.status")
    # and the next real injection takes the ids the dry run did not keep
    daemon.inject(EXAMPLES / "mydynamo-data.json")
    assert daemon.call("get_dataset", name=DS)["id"] == 1
    assert block_of(daemon)["files"][0]["id"] == 1


def test_usage_errors(daemon, tmp_path):
    seed(daemon)
    document = tmp_path / "doc.json"
    document.write_text(json.dumps({"site": [{"name": "T2_NEW"}]}))
    cases = [
        (["--block", "b1"], "--block needs exactly one --dataset"),
        (["--dataset", "/a", "--dataset", "/b", "--block", "b1"],
         "--block needs exactly one --dataset"),
        (["--dataset", "/a", "--file", "/f,1"], "--file needs exactly one --block"),
        (["--dataset", "/a", "--block", "b", "--file", "/f"], "expected lfn,size[,site]"),
        (["--dataset", "/a", "--block", "b", "--file", "/f,1,T2,extra"],
         "expected lfn,size[,site]"),
        (["--dataset", "/a", "--block", "b", "--file", "/f,big"], "size 'big' is not an integer"),
        (["--dataset", "/a", "--block", "b", "--file", ",10"], "expected lfn,size[,site]"),
        (["--dataset-replica", "T2_US_XYZ"], "expected site:dataset[,group]"),
        (["--dataset-replica", ":/a"], "expected site:dataset[,group]"),
        (["--dataset-replica", "T2:/a,group,more"], "expected site:dataset[,group]"),
        (["--dataset-replica", "T2:/a", "--block-replica", "b,group,more"],
         "--block-replica 'b,group,more': too many fields, 3 (at most 2: block,group)"),
        (["--block-replica", "b"], "--block-replica needs exactly one --dataset-replica"),
        (["--site", ",host"], "--site ',host': the name is empty"),
        ([document, "--site", "T2_OTHER"], "either JSON documents or object options"),
        (["-", document, "-"], "standard input (-) can be read once"),
        ([tmp_path / "missing.json"], "cannot read"),
        (["--dry-run"], "nothing to do"),
        (["--delete"], "nothing to do"),
    ]
    for args, fragment in cases:
        usage_error(daemon, *args, fragment=fragment)
    # argparse's own errors: unknown option, option without its value
    usage_error(daemon, "--sites", "X", fragment="unrecognized arguments")
    usage_error(daemon, "--site", fragment="expected one argument")


def test_several_documents_each_its_own_transaction_in_order(daemon, tmp_path):
    """Pipelined, applied in order; a refused one (FILE:LINE) does not stop the others."""
    docs = [tmp_path / f"{n}.json" for n in range(4)]
    docs[0].write_text(json.dumps({"site": [{"name": "T2_ONE"}]}))
    docs[1].write_text('{"site": [\n  {"name": "T2_TWO"},\n  {"name": "T2_BAD", "status": "nice"}\n]}')
    docs[2].write_text(json.dumps({"dataset": [{"name": "/A/B/RAW", "blocks": [
        {"name": "b1", "files": [{"name": "/store/a/1.root", "size": 5}]}]}]}))
    docs[3].write_text(json.dumps({"datasetreplica": [{"dataset": "/A/B/RAW", "site": "T2_ONE",
                                                      "blockreplicas": [{"block": "b1"}]}]}))
    result = daemon.inject(*docs, check=False)
    assert result.returncode == 1
    assert f"{docs[1]}:3: site T2_BAD: Site.status must be one of" in result.stderr
    assert result.stdout.count("created") == 3 and f"{docs[3]}:\ncreated  datasetreplicas: 1" \
        in result.stdout
    sites = [s["name"] for s in daemon.call("list_sites")["sites"]]
    assert "T2_ONE" in sites and "T2_TWO" not in sites and "T2_BAD" not in sites
    replicas = daemon.call("get_dataset", name="/A/B/RAW")["replicas"]
    assert [r["site"] for r in replicas] == ["T2_ONE"]
    out = daemon.inject("--json", docs[0], docs[2], "--dry-run").stdout.splitlines()
    assert [json.loads(line)["document"] for line in out] == [str(docs[0]), str(docs[2])]


def _sites(count: int, directory) -> list:
    docs = [directory / f"d{n}.json" for n in range(count)]
    for n, doc in enumerate(docs):
        doc.write_text(json.dumps({"site": [{"name": f"T2_DOC{n}"}]}))
    return docs


def test_a_closed_output_stops_and_says_what_was_applied(daemon, tmp_path):
    """`dynamo-inject *.json | head -1`: the reader of its output gone, it sends no more
    and says on standard error which documents were applied unreported and which were
    not sent, rather than a traceback with nothing said."""
    docs = _sites(5, tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "wb") as closed:
        result = subprocess.run([sys.executable, "-m", "dynamoclient.inject", *map(str, docs)], stdout=closed,
                                stderr=subprocess.PIPE, text=True, env=daemon.env, timeout=60)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("dynamo-inject: standard output closed: stopped; applied, "
                               "not reported there: "), lines
    applied = lines[0].rpartition(": ")[2].split()
    unsent = lines[1].removeprefix("dynamo-inject: not sent: ").split()
    assert applied + unsent == [str(doc) for doc in docs] and applied, lines
    sites = {s["name"] for s in daemon.call("list_sites")["sites"]}
    assert sites == {f"T2_DOC{n}" for n in range(len(applied))}


def test_a_daemon_gone_mid_command_is_told_with_what_is_left(daemon, tmp_path):
    """The daemon killed while documents are on their way: the answers it sent are
    reported, and what had none, or was never sent, is named."""
    docs = _sites(3, tmp_path)
    docs[1].unlink()
    os.mkfifo(docs[1])   # the command waits to read it, with the first document sent
    command = subprocess.Popen([sys.executable, "-m", "dynamoclient.inject", *map(str, docs)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=daemon.env)
    # The first document's line in the change log: committed, and so answered (a read of
    # the inventory could see the change applied, not yet committed nor answered; the
    # change log's writer is woken after the answer is on its way).
    change_log = daemon.state_dir / "changes.log"
    deadline = time.monotonic() + 30
    while "created site T2_DOC0" not in (change_log.read_text() if change_log.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    daemon.kill9()
    docs[1].write_text(json.dumps({"site": [{"name": "T2_DOC1"}]}))   # opens the FIFO
    out, err = command.communicate(timeout=60)
    assert command.returncode == 1
    assert out == f"{docs[0]}:\ncreated  sites: 1\nupdated  nothing\ndeleted  nothing\n"
    assert err == (f"dynamo-inject: dynamod closed the connection\n"
                   f"dynamo-inject: not sent: {docs[1]} {docs[2]}\n"), err


def test_an_unknown_section_is_named_with_its_file_and_line(daemon, tmp_path):
    """As every other refusal of a document is, alone or among several."""
    docs = [tmp_path / f"{n}.json" for n in range(3)]
    for doc in docs:
        doc.write_text(json.dumps({"site": [{"name": f"T2_{doc.stem}"}]}))
    docs[1].write_text('{"group": [],\n "comment": "x",\n "sites": [{"name": "T2_X"}]}\n')
    said = f"dynamo-inject: {docs[1]}:3: unknown section 'sites' (did you mean 'site'? "
    result = daemon.inject(*docs, check=False)
    assert result.returncode == 1
    assert said in result.stderr and result.stderr.count("\n") == 1, result.stderr
    usage_error(daemon, docs[1], fragment=said)
    usage_error(daemon, "-", input=docs[1].read_text(),
                fragment="dynamo-inject: <stdin>:3: unknown section 'sites'")


def test_a_document_given_before_what_it_needs_is_told_so(daemon, tmp_path):
    """`dynamo-inject examples/*.json` on an empty daemon: the data sorts before the
    sites it names, and is refused; dynamo-inject says which later document creates
    the site, and the data goes in when given again."""
    docs = sorted(str(path) for path in EXAMPLES.glob("*.json"))
    data, sites = docs
    assert data.endswith("mydynamo-data.json")
    result = daemon.inject(*docs, check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"dynamo-inject: {data}: the site 'T2_US_XYZ' is created by {sites}, which comes "
        f"after it (documents are applied in the order given): inject {data} again now")
    assert daemon.inject(data).stdout.startswith("created  datasets: 1, blocks: 1, files: 2")
    # one that cannot be read in between: the others keep their places
    needs, makes = tmp_path / "needs.json", tmp_path / "makes.json"
    needs.write_text(json.dumps({"datasetreplica": [{"dataset": DS, "site": "T2_NEXT"}]}))
    makes.write_text(json.dumps({"site": [{"name": "T2_NEXT"}]}))
    result = daemon.inject(needs, tmp_path / "none.json", makes, check=False)
    assert result.stderr.splitlines()[-1] == (
        f"dynamo-inject: {needs}: the site 'T2_NEXT' is created by {makes}, which comes "
        f"after it (documents are applied in the order given): inject {needs} again now")
    # a dry run creates nothing, and says nothing of the kind
    needs.write_text(json.dumps({"datasetreplica": [{"dataset": DS, "site": "T2_DRY"}]}))
    makes.write_text(json.dumps({"site": [{"name": "T2_DRY"}]}))
    dry = daemon.inject("--dry-run", needs, makes, check=False)
    assert dry.returncode == 1 and "unknown site 'T2_DRY'" in dry.stderr
    assert "comes after it" not in dry.stderr
    # a site that only a refused later document would have created: no such line
    refused = tmp_path / "refused.json"
    needs.write_text(json.dumps({"datasetreplica": [{"dataset": DS, "site": "T2_LATER"}]}))
    refused.write_text(json.dumps({"site": [{"name": "T2_LATER", "status": "nice"}]}))
    result = daemon.inject(needs, refused, check=False)
    assert result.returncode == 1 and "unknown site 'T2_LATER'" in result.stderr
    assert "comes after it" not in result.stderr


def test_the_next_document_is_read_while_an_answer_is_awaited(daemon, tmp_path):
    """With two documents sent, dynamo-inject reads the third before it waits for the
    first's answer, so that the daemon has it as soon as it can take it.  (The third
    is a pipe: it is opened for reading when the client gets to it.)"""
    docs = [tmp_path / f"{n}.json" for n in range(3)]
    docs[0].write_text(json.dumps({"site": [{"name": "T2_ONE"}]}))
    docs[1].write_text(json.dumps({"site": [{"name": "T2_TWO"}]}))
    os.mkfifo(docs[2])
    client = subprocess.Popen([sys.executable, "-m", "dynamoclient.inject", *map(str, docs)],
                              env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:   # until the client opens the third document
            try:
                fd = os.open(docs[2], os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as exc:   # ENXIO: no reader yet
                assert exc.errno == errno.ENXIO and time.monotonic() < deadline
                time.sleep(0.01)
        os.set_blocking(client.stdout.fileno(), False)
        with pytest.raises(BlockingIOError):   # nothing reported yet, not even the first
            os.read(client.stdout.fileno(), 4096)
        os.write(fd, json.dumps({"site": [{"name": "T2_THREE"}]}).encode())
        os.close(fd)
        os.set_blocking(client.stdout.fileno(), True)
        out, err = client.communicate(timeout=30)
    finally:
        client.kill()
        client.wait()
    assert client.returncode == 0, err
    assert out.decode().count("created  sites: 1") == 3


def test_help(daemon):
    for args in ([], ["--help"], ["-h"]):
        result = run(daemon, *args)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("usage: dynamo-inject")
        for option in ("--site", "--group", "--dataset", "--block", "--file",
                       "--dataset-replica", "--block-replica", "--delete", "--dry-run", "--json"):
            assert option in result.stdout
    assert daemon.call("status")["inventory"]["sites"] == 0


def test_errors_point_at_the_file_line(daemon, tmp_path):
    seed(daemon)
    broken = tmp_path / "broken.json"
    broken.write_text('{"site": [\n  {"name": "T2_A"},\n  {"name": "T2_B",,}\n]}\n')
    usage_error(daemon, broken, fragment=f"{broken}:3: invalid JSON")

    document = {"site": [{"name": "T1_NEW"}],
                "dataset": [{"name": "/new", "blocks": [
                    {"name": "b", "size": 5, "files": [{"name": "/n/1", "size": 1},
                                                       {"name": "/n/2", "size": -2}]}]}],
                "datasetreplica": [{"site": "T1_NEW", "dataset": "/new"}]}
    cases = [
        (lambda d: None, '"/n/2"', "file /n/2: File.size"),
        (lambda d: d["dataset"][0]["blocks"][0]["files"][1].update(size=2), '"b"',
         "block /new#b: size is 5 in the request but 3 by its files"),
        (lambda d: d["datasetreplica"][0].update(group="nogroup"), '"nogroup"',
         "dataset replica T1_NEW:/new: unknown group 'nogroup'"),
        (lambda d: d["site"][0].update(host=7), '"T1_NEW"', "site T1_NEW: Site.host"),
    ]
    path = tmp_path / "doc.json"
    for spoil, marker, fragment in cases:
        spoil(document)
        text = json.dumps(document, indent=2)
        path.write_text(text)
        result = usage_error(daemon, path,
                             fragment=f"{path}:{_object_line(text, marker)}: {fragment}")
        assert result.stdout == ""
    # standard input is named too
    text = json.dumps(document, indent=2)
    line = _object_line(text, '"T1_NEW"')
    usage_error(daemon, "-", input=text, fragment=f"<stdin>:{line}: site T1_NEW: Site.host")


def _object_line(text, marker) -> int:
    """The line of the opening brace of the (indented) object whose member holds `marker`."""
    rows = text.splitlines()
    line = next(i for i, row in enumerate(rows) if marker in row)
    while rows[line].strip() != "{":
        line -= 1
    return line + 1

def test_no_daemon_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dynamoclient.inject",
                             "--socket", str(tmp_path / "none.sock"), "--site", "X"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "cannot connect to dynamod" in result.stderr and "none.sock" in result.stderr



def test_a_document_is_refused_before_sending_with_what_and_where(daemon, tmp_path):
    """What orjson would read differently from the text (a key given twice, an integer
    beyond 64 bits) or not at all (NaN, a lone surrogate) is refused by the client,
    with the file's line where there is one; the daemon sees none of it."""
    seed(daemon)
    path = tmp_path / "doc.json"
    site = '{\n  "site": [\n    {"name": "T2_NEW", %s}\n  ]\n}\n'
    cases = [
        ('"host": "a", "host": "b"', f"{path}: invalid JSON: the key 'host' appears twice"),
        ('"host": "a", "h\\u006fst": "b"', "the key 'host' appears twice"),
        ('"id": 18446744073709551616', f"{path}:3: the integer 18446744073709551616 does "
                                       f"not fit in 64 bits"),
        ('"id": -9223372036854775809', "does not fit in 64 bits"),
        ('"host": NaN', f"{path}:3: nan is not a JSON number"),
        ('"host": "\\udc00x"', f"{path}:3: '\\udc00x' is not valid Unicode"),
    ]
    for fields, fragment in cases:
        path.write_text(site % fields)
        usage_error(daemon, path, fragment=fragment)


def test_a_document_goes_as_orjson_reads_it(daemon, tmp_path):
    """Whitespace, escapes, line ends and number forms of the text do not matter: the
    daemon gets what it says (a comment nested deeper than orjson writes included)."""
    path = tmp_path / "doc.json"
    path.write_bytes(b'{"site": [{"name": "T2_\\u00c9T\\u00c9",\r\n "host": "se.\\/x"},\r\n'
                     b'  {"name": "T2_N", "storage_type": "disk"}], "comment": [1.50, -0, '
                     b'1E2, 18446744073709551615, ' + b"[" * 300 + b"]" * 300 + b']}')
    assert daemon.inject(path).stdout.splitlines()[0] == "created  sites: 2"
    sites = {s["name"]: s for s in daemon.call("list_sites")["sites"]}
    assert sites["T2_ÉTÉ"]["host"] == "se./x" and sites["T2_N"]["storage_type"] == "disk"
    path.write_bytes(b'{"site": [\r{"name": "T2_N", "status": "nice"}]}')
    usage_error(daemon, path, fragment=f"{path}:2: site T2_N: Site.status")


def test_a_byte_order_mark_is_read_past(daemon, tmp_path):
    """A document saved by a Windows editor starts with a UTF-8 byte order mark, which
    JSON readers may ignore (RFC 8259): it goes in, from a file or standard input, and
    an error in it keeps its line (it was `Unexpected UTF-8 BOM (decode using
    utf-8-sig)`, Python's words)."""
    path = tmp_path / "bom.json"
    path.write_bytes(b'\xef\xbb\xbf{"site": [{"name": "T2_BOM"}]}')
    assert daemon.inject(path).stdout.splitlines()[0] == "created  sites: 1"
    with open(path, "rb") as stdin:
        assert daemon.inject("-", stdin=stdin).stdout.splitlines()[0] == "created  nothing"
    path.write_bytes(b'\xef\xbb\xbf{"site": [\n{"name": "T2_BOM", "status": "nice"}]}')
    usage_error(daemon, path, fragment=f"{path}:2: site T2_BOM: Site.status")


def test_a_document_over_the_line_limit_is_told_what_to_do(start_daemon, tmp_path):
    """Over max_line_bytes the daemon refuses the request whole: the operator is told
    the document's size and the two ways out (split it, or raise the limit)."""
    daemon = start_daemon("--max-line-bytes", "4096")
    path = tmp_path / "large.json"
    path.write_text(json.dumps({"site": [{"name": f"T2_S{i}", "host": "x" * 50}
                                         for i in range(200)]}))
    result = daemon.inject(path, check=False)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"dynamo-inject: {path}: request line ")
    assert result.stderr.endswith(
        f"exceeds the limit of 4096 bytes [too_large]; the document is "
        f"{path.stat().st_size} bytes: split it into several (dynamo-inject a.json b.json "
        "... applies each as its own transaction), or raise max_line_bytes ([daemon] of "
        "the daemon's configuration)\n")


def test_a_document_over_the_line_limit_among_several_is_named(start_daemon, tmp_path):
    """Among several documents, the one over max_line_bytes is named with what to do,
    those before it reported applied, and those after it named not applied (the daemon
    reads nothing after a line over its limit); it was 'dynamod closed the connection',
    the large one listed as not answered or not sent."""
    daemon = start_daemon("--max-line-bytes", "4096")
    small, large, after = (tmp_path / name for name in ("small.json", "large.json",
                                                         "after.json"))
    small.write_text(json.dumps({"site": [{"name": "T2_SMALL"}]}))
    large.write_text(json.dumps({"site": [{"name": f"T2_S{i}", "host": "x" * 50}
                                          for i in range(200)]}))
    after.write_text(json.dumps({"site": [{"name": "T2_AFTER"}]}))
    result = daemon.inject(small, large, after, check=False)
    assert result.returncode == 1
    assert result.stdout == f"{small}:\ncreated  sites: 1\nupdated  nothing\ndeleted  nothing\n"
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"dynamo-inject: {large}: request line "), lines
    assert "split it into several" in lines[0], lines
    assert lines[1:] == [f"dynamo-inject: not applied: {after} (the daemon reads nothing "
                         f"after a document over its limit)"], lines
    assert {s["name"] for s in daemon.call("list_sites")["sites"]} == {"T2_SMALL"}


def test_a_document_far_over_the_line_limit_among_several_is_named(start_daemon, tmp_path):
    """The same when the daemon refuses the document while it is still being sent."""
    daemon = start_daemon("--max-line-bytes", "4096")
    large, after = tmp_path / "large.json", tmp_path / "after.json"
    large.write_text(json.dumps({"site": [{"name": f"T2_S{i}", "host": "x" * 50}
                                          for i in range(100_000)]}))
    after.write_text(json.dumps({"site": [{"name": "T2_AFTER"}]}))
    result = daemon.inject(large, after, check=False)
    assert (result.returncode, result.stdout) == (1, "")
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"dynamo-inject: {large}: request line "), lines
    assert lines[1:] == [f"dynamo-inject: not applied: {after} (the daemon reads nothing "
                         f"after a document over its limit)"], lines
