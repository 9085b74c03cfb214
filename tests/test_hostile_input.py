"""Hostile input against a real dynamod, drawn by hypothesis.

One daemon serves the whole module (seeded with the walk-through's sites and
dataset, a user, a role and a script authorization).  An attacker connection
sends every input; after each one the daemon must have answered with an error
(or closed the connection where PROTOCOL.md says so), a bystander connection
must still be served, and nothing may have reached the store: every table of
the SQLite file, the commit count and the inventory the queries show are what
they were.  `dynamo-inject` gets the same treatment through its `main`, in
process, and as a subprocess for the cases only a real process can give.

DYNAMO_FUZZ_EXAMPLES sets the examples per property (default 80).
"""

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dynamoclient import inject as inject_cli
from dynamod.errors import DynamoError, ParseError
from dynamod.methods import METHODS
from dynamod.protocol import MAX_DEPTH, decode_request
from support.daemon import EXAMPLES, Daemon
from support.seed import BLOCK, DS, LFN1, T2
from support.views import memory_view, store_rows
from support.wire import Raw

EXAMPLES_PER_TEST = int(os.environ.get("DYNAMO_FUZZ_EXAMPLES", "80"))
fuzz = settings(max_examples=EXAMPLES_PER_TEST, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MAX_LINE = 1 << 20  # the target's --max-line-bytes: huge lines stay cheap
ERROR_CODES = {"parse_error", "invalid_request", "method_not_found", "invalid_params",
               "invalid_value", "not_found", "conflict", "not_authorized", "busy",
               "not_configured"}  # every code but too_large, store_error and internal_error


class Target:
    """The daemon under attack, a bystander connection, and the state nothing may change."""

    def __init__(self, daemon: Daemon):
        self.daemon = daemon
        self.attacker = Raw(daemon.socket)
        self.bystander = Raw(daemon.socket)
        self.tried = 0
        self.rebaseline()

    def state(self) -> tuple:
        return store_rows(self.daemon.database), memory_view(self.bystander), self.files()

    def files(self) -> list:
        """The state directory's tree: no name may ever become a file in it."""
        root = self.daemon.state_dir
        return sorted(str(p.relative_to(root)) for p in root.rglob("*"))

    def rebaseline(self):
        """Take the current state as the one to keep (after an accepted change)."""
        self.baseline = self.state()

    def send(self, line: bytes) -> dict:
        """One line from the attacker and its one answer."""
        self.tried += 1
        self.attacker.send(line + b"\n")
        return self.attacker.receive()

    def request(self, method: str, **params) -> dict:
        return self.send(orjson.dumps({"id": "fuzz", "method": method, "params": params}))

    def reconnect(self):
        self.attacker.close()
        self.attacker = Raw(self.daemon.socket)

    def unharmed(self):
        """The daemon serves the bystander and kept everything as it was."""
        assert self.daemon.process.poll() is None, "dynamod died"
        assert self.bystander.ping_works()
        store, memory, files = self.state()
        assert store == self.baseline[0], "a refused input reached the SQLite file"
        assert memory == self.baseline[1], "a refused input changed the inventory in memory"
        assert files == self.baseline[2], "an input created or removed a file"


@pytest.fixture(scope="module")
def target():
    root = Path(tempfile.mkdtemp(prefix="dyn-", dir="/tmp"))
    os.chmod(root, 0o755)
    daemon = Daemon(root / "state", str(root / "dynamod.sock"),
                    ["--max-line-bytes", str(MAX_LINE)]).start()
    for example in ("mydynamo-storage-sites.json", "mydynamo-data.json"):
        daemon.call("inject", data=json.loads((EXAMPLES / example).read_text()))
    daemon.call("inject", data={"group": [{"name": "AnalysisOps"}]})
    daemon.call("set_user", name="jane", dns=["/DC=org/DC=example/CN=Jane"], accounts=["nobody"])
    daemon.call("grant_role", user="jane", role="operator", target="inventory")
    daemon.call("authorize_script", title="cleanup", checksum="0" * 64)
    daemon.change_log_written()   # changes.log made before the state to keep is taken
    attacked = Target(daemon)
    yield attacked
    tried = attacked.tried
    alive = daemon.process.poll() is None
    daemon.stop()
    shutil.rmtree(root, ignore_errors=True)
    print(f"\nhostile input: {tried} inputs sent to one daemon")
    assert alive


def assert_error(answer: dict, *codes) -> dict:
    assert "error" in answer, f"accepted: {answer}"
    error = answer["error"]
    assert error["code"] in (codes or ERROR_CODES), answer
    assert error["message"]
    return error


def expected_by_decoding(line: bytes) -> tuple[str, object] | None:
    """(code, id) the daemon must answer a line with, from the pure decoder; None when the
    line is a well-formed request (then the method decides)."""
    try:
        request = decode_request(line)
    except DynamoError as exc:
        return exc.code, exc.details.get("id")
    if request.method not in METHODS:
        return "method_not_found", request.id
    return None


# -------------------------------------------------------------------- strategies
text = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
json_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
                | st.floats(allow_nan=False, allow_infinity=False) | text)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(text, inner, max_size=4), max_leaves=25)
SAMPLES = ("x", 7, 2.5, True, None, [1], {"a": 1})  # one value of each JSON type
# Each method's parameters as `list_methods` describes them: {"types": [...], "required"}.
DESCRIBED = {name: method.describe()["params"] for name, method in sorted(METHODS.items())}
PARAMS = [(name, param) for name, params in DESCRIBED.items() for param in params]
# The type names a JSON value answers to there (an integer is a number too, a boolean is not).
TYPE_NAMES = {str: {"a string"}, int: {"an integer", "a number"}, float: {"a number"},
              bool: {"true or false"}, dict: {"an object"}, list: {"a list"},
              type(None): {"null"}}
FILLER = {"a string": "x", "an integer": 1, "a number": 1, "true or false": False,
          "an object": {}, "a list": [], "null": None}


def takes(param: dict, value) -> bool:
    """Whether a parameter (as described) takes `value`."""
    return not TYPE_NAMES[type(value)].isdisjoint(param["types"])


def filled(method) -> dict:
    """A value of the right type for each required parameter of `method`."""
    return {p: FILLER[d["types"][0]] for p, d in DESCRIBED[method].items() if d["required"]}


def wrong_for(method, param):
    """Values of a JSON type the parameter does not take."""
    return json_values.filter(lambda v: not takes(DESCRIBED[method][param], v))


def new_objects() -> st.SearchStrategy:
    """Requests that would create or delete something if they were applied."""
    names = st.text(alphabet="ABCXYZ_0123456789", min_size=1, max_size=8)
    injection = st.builds(lambda n, size: {"site": [{"name": f"T9_{n}", "status": "ready"}],
                                           "dataset": [{"name": f"/new/{n}/RAW", "blocks": [
                                               {"name": "b1", "files": [
                                                   {"name": f"/store/new/{n}", "size": size}]}]}]},
                          names, st.integers(0, 10**6))
    return st.one_of(
        injection.map(lambda d: {"id": 1, "method": "inject", "params": {"data": d}}),
        st.just({"id": 2, "method": "delete", "params": {"data": {"dataset": [{"name": DS}]}}}),
        st.just({"id": 3, "method": "delete", "params": {"data": {"site": [{"name": T2}]}}}),
        names.map(lambda n: {"id": 4, "method": "set_user", "params": {"name": f"u{n}"}}),
        names.map(lambda n: {"id": 5, "method": "authorize_script",
                             "params": {"title": n, "checksum": "1" * 64}}))


# ------------------------------------------------------------------- raw lines
@fuzz
@given(st.binary(max_size=300))
def test_random_bytes_get_the_error_the_decoder_gives(target, data):
    line = data.replace(b"\n", b"")
    expected = expected_by_decoding(line)
    assume(expected is not None)
    answer = target.send(line)
    assert (assert_error(answer)["code"], answer["id"]) == expected, line
    target.unharmed()


@fuzz
@given(st.lists(st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")), min_size=1,
                max_size=12))
def test_every_line_of_a_random_stream_gets_its_own_answer(target, lines):
    expected = [expected_by_decoding(line) for line in lines]
    assume(None not in expected)
    target.tried += len(lines)
    target.attacker.send(b"".join(line + b"\n" for line in lines))
    answers = [target.attacker.receive() for _ in lines]
    assert [(a["error"]["code"], a["id"]) for a in answers] == expected
    target.unharmed()


@fuzz
@given(st.one_of(json_values, st.dictionaries(
    st.sampled_from(["id", "method", "params", "param", "jsonrpc"]) | text,
    json_values | text, max_size=5)))
def test_json_that_is_not_a_request_is_refused(target, message):
    line = orjson.dumps(message)
    expected = expected_by_decoding(line)
    assume(expected is not None)
    answer = target.send(line)
    assert (assert_error(answer)["code"], answer["id"]) == expected
    target.unharmed()


@fuzz
@given(text.filter(lambda m: m and m not in METHODS),
       st.dictionaries(text, json_values, max_size=3))
def test_unknown_methods_are_refused_by_name(target, name, params):
    answer = target.send(orjson.dumps({"id": 9, "method": name, "params": params}))
    assert answer["id"] == 9
    assert assert_error(answer, "method_not_found")["message"] == f"unknown method {name!r}"
    target.unharmed()


# ---------------------------------------------------------- every parameter
def test_every_parameter_of_every_method_refuses_every_wrong_type(target):
    """Exhaustively: each parameter with a value of each JSON type it does not take, the
    others valid; each missing required parameter; an unknown parameter.  Pipelined."""
    cases = []
    for name, params in DESCRIBED.items():
        valid = filled(name)
        for param, described in params.items():
            for value in SAMPLES:
                if not takes(described, value):
                    cases.append((name, {**valid, param: value}, param))
            if described["required"]:
                cases.append((name, {p: v for p, v in valid.items() if p != param}, param))
        cases.append((name, {**valid, "no_such_param": 1}, "no_such_param"))
    lines = [orjson.dumps({"id": i, "method": name, "params": params})
             for i, (name, params, _) in enumerate(cases)]
    target.tried += len(lines)
    target.attacker.send(b"".join(line + b"\n" for line in lines))
    answers = {a["id"]: a for a in (target.attacker.receive() for _ in lines)}
    for i, (name, params, param) in enumerate(cases):
        error = assert_error(answers[i], "invalid_params")
        assert error["field"] == param, (name, params, error)
    assert len(cases) > 200
    target.unharmed()


@fuzz
@given(st.sampled_from(PARAMS), st.data())
def test_any_wrong_value_of_any_parameter_is_refused(target, method_param, data):
    name, param = method_param
    value = data.draw(wrong_for(name, param))
    error = assert_error(target.request(name, **{**filled(name), param: value}), "invalid_params")
    assert error["field"] == param
    target.unharmed()


@fuzz
@given(st.sampled_from([("run_application", "args", {"attach": False}),
                        ("set_user", "dns", {"name": "mallory"}),
                        ("set_user", "accounts", {"name": "mallory"})]),
       st.lists(json_values, min_size=1, max_size=4).filter(
           lambda items: not all(isinstance(i, str) for i in items)))
def test_list_parameters_take_only_strings(target, case, items):
    name, param, others = case
    error = assert_error(target.request(name, **others, **{param: items}), "invalid_params")
    assert error["field"] == param
    target.unharmed()


# ------------------------------------------------------------- broken lines
@fuzz
@given(new_objects(), st.data())
def test_a_truncated_request_is_a_parse_error_and_applies_nothing(target, request, data):
    line = orjson.dumps(request)
    cut = data.draw(st.integers(0, len(line) - 1))
    answer = target.send(line[:cut])
    assert_error(answer, "parse_error")
    assert answer["id"] is None
    target.unharmed()


@pytest.mark.parametrize("ending", ["half-close", "close"])
def test_input_ending_inside_a_request_applies_nothing(target, ending):
    line = orjson.dumps({"id": 1, "method": "delete",
                         "params": {"data": {"dataset": [{"name": DS}]}}})
    for cut in (1, len(line) // 2, len(line) - 1):
        client = Raw(target.daemon.socket)
        client.send(b'{"id": 0, "method": "ping"}\n' + line[:cut])
        if ending == "half-close":
            client.sock.shutdown(socket.SHUT_WR)
            answers = client.rest()
            assert answers[0] == {"id": 0, "result": {"pong": True}}
            assert len(answers) == 2 and answers[1]["id"] is None
            assert "ended inside a request" in assert_error(answers[1], "parse_error")["message"]
        client.close()
        target.tried += 1
    target.unharmed()


@fuzz
@given(new_objects(), st.data(),
       st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3", b"\xc0\x80", b"\xed\xa0\x80",
                        b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x00", b"\x80"]))
def test_invalid_utf8_and_nul_bytes_anywhere_are_parse_errors(target, request, data, bad):
    line = orjson.dumps(request)
    at = data.draw(st.integers(0, len(line)))
    answer = target.send(line[:at] + bad + line[at:])
    assert_error(answer, "parse_error")
    assert answer["id"] is None
    target.unharmed()


@fuzz
@given(st.integers(MAX_DEPTH - 3, MAX_DEPTH + 3) | st.sampled_from([5000, 10**5]),
       st.sampled_from(["[", '{"k":']), st.sampled_from(["id", "params", "data", "doc"]))
def test_deep_nesting_anywhere_is_refused(target, depth, opener, where):
    closer = b"]" if opener == "[" else b"}"
    inner = opener.encode() * depth + b"1" + closer * depth
    line = {"id": b'{"id":' + inner + b',"method":"ping"}',
            "params": b'{"id":1,"method":"list_sites","params":{"pattern":' + inner + b"}}",
            "data": b'{"id":1,"method":"inject","params":{"data":' + inner + b"}}",
            "doc": b'{"id":1,"method":"inject","params":{"data":{"site":[{"name":"X","host":'
                   + inner + b"}]}}}"}[where]
    answer = target.send(line)
    expected = expected_by_decoding(line)
    if expected is not None:
        assert (assert_error(answer)["code"], answer["id"]) == expected
    else:
        assert_error(answer, "invalid_params", "invalid_value")
    target.unharmed()


def test_lines_at_and_over_the_limit(target):
    """At the limit a line is read and answered; over it (complete, or still being sent),
    too_large and the close PROTOCOL.md announces, with nothing of it applied."""
    head, tail = b'{"id":1,"method":"lfn_to_pfn","params":{"site":"T9","lfn":"', b'"}}'
    at_limit = head + b"x" * (MAX_LINE - len(head) - len(tail)) + tail
    assert assert_error(target.send(at_limit), "not_found")["field"] == "site"
    sites = [{"name": f"T9_HUGE_{i:06d}"} for i in range(50000)]
    over = orjson.dumps({"id": 2, "method": "inject", "params": {"data": {"site": sites}}})
    assert len(over) > MAX_LINE
    for data in (at_limit + b"x\n", over + b"\n", over[:MAX_LINE + 1]):
        client = Raw(target.daemon.socket)
        try:
            client.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon refused before the end; the answer waits in the buffer
        answers = client.rest()
        client.close()
        target.tried += 1
        assert len(answers) == 1 and answers[0]["id"] is None
        assert str(MAX_LINE) in assert_error(answers[0], "too_large")["message"]
        target.unharmed()


def test_a_huge_injection_is_answered_while_the_others_are_served(target):
    """A line near the limit holding 30000 blocks of one dataset: answered as a whole, in
    time linear in its size (a scan per block once made such requests run for minutes,
    and every other client waited), then deleted as a whole."""
    blocks = [{"name": f"b{i:05d}"} for i in range(30000)]
    document = {"dataset": [{"name": "/huge/one/RAW", "blocks": blocks}]}
    answers = {}

    def inject():
        with target.daemon.client(timeout=120) as client:
            answers["inject"] = client.call("inject", data=document)

    worker = threading.Thread(target=inject)
    worker.start()
    started = time.monotonic()
    with target.daemon.client(timeout=60) as other:
        while worker.is_alive():
            assert other.call("ping") == {"pong": True}
            time.sleep(0.05)
    worker.join()
    assert time.monotonic() - started < 60, "the daemon stalled its other clients"
    assert answers["inject"]["created"] == {"datasets": 1, "blocks": 30000}
    assert target.daemon.call("delete", data={"dataset": [{"name": "/huge/one/RAW"}]})[
        "deleted"] == {"datasets": 1, "blocks": 30000}
    target.rebaseline()


# ----------------------------------------------------------- duplicate keys
def _dumps_with_duplicate(value, target: int, duplicate, counter: list) -> str:
    """JSON text of `value` in which the `target`-th object (pre-order) repeats its first
    key, with `duplicate` as the repeated key's value."""
    if isinstance(value, dict):
        index = counter[0]
        counter[0] += 1
        items = [f"{json.dumps(k)}:{_dumps_with_duplicate(v, target, duplicate, counter)}"
                 for k, v in value.items()]
        if index == target and value:
            items.append(f"{json.dumps(next(iter(value)))}:{json.dumps(duplicate)}")
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dumps_with_duplicate(v, target, duplicate, counter)
                              for v in value) + "]"
    return json.dumps(value)


def _objects(value) -> int:
    if isinstance(value, dict):
        return 1 + sum(map(_objects, value.values()))
    if isinstance(value, list):
        return sum(map(_objects, value))
    return 0


@fuzz
@given(new_objects() | st.just({"id": 7, "method": "list_sites", "params": {"pattern": "*"}}),
       st.data(), json_scalars)
def test_a_key_named_twice_in_any_object_is_refused(target, request, data, duplicate):
    which = data.draw(st.integers(0, _objects(request) - 1))
    line = _dumps_with_duplicate(request, which, duplicate, [0]).encode()
    answer = target.send(line)
    assert "twice" in assert_error(answer, "parse_error")["message"]
    assert answer["id"] is None
    target.unharmed()


def _pairs_text(value, compact: bool) -> str:
    """JSON text of a value whose objects are lists of (key, value) pairs (keys may repeat;
    some are written with escapes); `compact` writes no blanks (as orjson would)."""
    colon, comma = (":", ",") if compact else (" :\t", " , ")
    if isinstance(value, tuple):
        kind, items = value
        if kind == "object":
            return "{" + ",".join(f"{k}{colon}{_pairs_text(v, compact)}"
                                  for k, v in items) + "}"
        return "[" + comma.join(_pairs_text(v, compact) for v in items) + "]"
    return json.dumps(value, ensure_ascii=False)


SPELLINGS = [['"a"', '"\\u0061"'], ['"é"', '"\\u00e9"'], ['":"', '"\\u003a"', '"\\u003A"'],
             ['"b"'], ['"a:b"'], ['"\\"a\\""'], ['"\\\\"'], ['"\\\\u003a"']]   # by key
keys = st.sampled_from([spelling for key in SPELLINGS for spelling in key])


def _respelled(items: list, again: bool) -> list:
    """The pairs, and with `again` the first one's key once more, spelled otherwise if
    it can be: with keys drawn alone, 19 to 24 of 300 examples named a key under two
    spellings in one object, and 9 to 24 repeated one at depth two; now 94 to 100 and
    31 do."""
    if not (again and items):
        return items
    key, value = items[0]
    spellings = next(s for s in SPELLINGS if key in s)
    return [*items, (spellings[(spellings.index(key) + 1) % len(spellings)], value)]


pair_values = st.recursive(
    st.none() | st.integers() | st.text(alphabet='a:"\\{}[],é ', max_size=6),
    lambda inner: st.tuples(st.just("object"), st.builds(
        _respelled, st.lists(st.tuples(keys, inner), max_size=4), st.booleans()))
    | st.tuples(st.just("array"), st.lists(inner, max_size=4)), max_leaves=12)


@settings(max_examples=300, deadline=None, database=None)
@given(pair_values, st.booleans())
def test_repeated_keys_are_found_exactly_whatever_the_strings_hold(value, compact):
    line = _pairs_text(value, compact).encode()
    repeated = []

    def pairs_hook(pairs):
        repeated.append(len({k for k, _ in pairs}) != len(pairs))
        return dict(pairs)

    json.loads(line, object_pairs_hook=pairs_hook)
    request = b'{"id":1,"method":"m","params":{"v":' + line + b"}}"
    if any(repeated):
        assert "twice" in pytest.raises(ParseError, decode_request, request).value.message
    else:
        assert decode_request(request).params["v"] == orjson.loads(line)


# -------------------------------------------------- names, globs and numbers
NAME_PARTS = list("/\\.'\"`$;|&*?[]{}~ #:%") + [
    "..", "../", "/etc/passwd", "\x00", "\x01", "\n", "\r", "\t", "\x1b[31m", "\x7f", "\u2028",
    "\ufeff", "é", "✓"]
hostile_names = (st.lists(st.sampled_from(NAME_PARTS), max_size=12).map("".join)
                 | st.sampled_from(["", "x" * 4097, "../../etc", "/", "..", "$(touch /tmp/pwned)"]))


def _valid_name(name: str) -> bool:
    return 0 < len(name) <= 4096 and not any(ord(c) < 32 or c == "\x7f" for c in name)


@fuzz
@given(hostile_names, st.sampled_from(["site", "group", "dataset", "block", "file"]))
def test_hostile_names_are_refused_or_kept_verbatim(target, name, kind):
    document = {
        "site": {"site": [{"name": name}]},
        "group": {"group": [{"name": name}]},
        "dataset": {"dataset": [{"name": name}]},
        "block": {"dataset": [{"name": "/names/test/RAW", "blocks": [{"name": name}]}]},
        "file": {"dataset": [{"name": "/names/test/RAW", "blocks": [
            {"name": "b", "files": [{"name": name, "size": 1}]}]}]},
    }[kind]
    answer = target.request("inject", data=document)
    if not _valid_name(name) or (kind == "dataset" and "#" in name):  # '#': dataset#block
        assert_error(answer, "invalid_value", "invalid_params")
        target.unharmed()
        return
    assert "result" in answer, answer
    shown = {"site": lambda: [s["name"] for s in target.daemon.call("list_sites")["sites"]],
             "group": lambda: [g["name"] for g in target.daemon.call("list_groups")["groups"]],
             "dataset": lambda: [target.daemon.call("get_dataset", name=name)["name"]],
             "block": lambda: [b["name"] for b in target.daemon.call(
                 "get_dataset", name="/names/test/RAW")["blocks"]],
             "file": lambda: [f["name"] for f in target.daemon.call(
                 "get_block", name="/names/test/RAW#b")["files"]]}[kind]()
    assert name in shown
    removal = {"site": {"site": [{"name": name}]}, "group": {"group": [{"name": name}]},
               "dataset": {"dataset": [{"name": name}]}}.get(
        kind, {"dataset": [{"name": "/names/test/RAW"}]})
    target.daemon.call("delete", data=removal)
    _, memory, files = target.state()
    assert memory["counts"] == target.baseline[1]["counts"]
    assert files == target.baseline[2], "a name became a file"
    target.rebaseline()


@fuzz
@given(st.text(alphabet="[]!*?-^\\aT2_", max_size=40) | st.sampled_from(
    ["[" * 5000, "[!" * 3000, "*a" * 2000, "?" * 100000, "[" * 1024, "[]" * 600]),
    st.sampled_from(["list_sites", "list_datasets"]))
def test_hostile_globs_are_answered_at_once(target, pattern, method):
    started = time.monotonic()
    answer = target.request(method, pattern=pattern)
    if len(pattern) > 1024:
        assert assert_error(answer, "invalid_params")["field"] == "pattern"
    else:
        assert "result" in answer, answer
    assert time.monotonic() - started < 10, "a glob stalled the daemon"
    target.unharmed()


NUMBERS = [b"-1", b"-9223372036854775808", b"-9223372036854775809", b"9223372036854775807",
           b"9223372036854775808", b"18446744073709551615", b"18446744073709551616",
           b"1" + b"0" * 30, b"-0", b"-0.0", b"0.5", b"1e308", b"1E2", b"0"]
NUMERIC_FIELDS = {
    "file size": {"dataset": [{"name": "/num/test/RAW", "blocks": [
        {"name": "b", "files": [{"name": "/store/num/1", "size": "N"}]}]}]},
    "block size": {"dataset": [{"name": "/num/test/RAW", "blocks": [
        {"name": "b", "size": "N", "files": [{"name": "/store/num/1", "size": 0}]}]}]},
    "block num_files": {"dataset": [{"name": "/num/test/RAW", "blocks": [
        {"name": "b", "num_files": "N"}]}]},
    "block last_update": {"dataset": [{"name": "/num/test/RAW", "blocks": [
        {"name": "b", "last_update": "N"}]}]},
    "dataset last_update": {"dataset": [{"name": "/num/test/RAW", "last_update": "N"}]},
    "block replica size": {"datasetreplica": [{"dataset": DS, "site": "T3_US_XYZ",
                                               "blockreplicas": [{"block": BLOCK,
                                                                  "size": "N"}]}]},
    "block replica last_update": {"datasetreplica": [{"dataset": DS, "site": "T3_US_XYZ",
                                                      "blockreplicas": [{"block": BLOCK,
                                                                         "last_update": "N"}]}]},
}


def _with_number(document: dict, number: bytes) -> bytes:
    line = orjson.dumps({"id": "n", "method": "inject", "params": {"data": document}})
    return line.replace(b'"N"', number)


@fuzz
@given(st.sampled_from(NUMBERS), st.sampled_from(sorted(NUMERIC_FIELDS)))
def test_negative_and_overflowing_numbers_in_documents(target, number, field):
    answer = target.send(_with_number(NUMERIC_FIELDS[field], number))
    in_range = number.lstrip(b"-").isdigit() and 0 <= int(number) <= 2**63 - 1
    if "last_update" in field and not number.lstrip(b"-").isdigit():
        in_range = 0 <= float(number) < 2**63  # a time: its fraction is dropped
    if not in_range:
        assert_error(answer, "invalid_value")
        target.unharmed()
        return
    if "error" in answer:  # in range, but the sums disagree: refused whole
        assert_error(answer, "conflict")
        target.unharmed()
        return
    target.daemon.call("delete", data={"dataset": [{"name": "/num/test/RAW"}]}
                       if "replica" not in field else
                       {"datasetreplica": [{"dataset": DS, "site": "T3_US_XYZ"}]})
    target.rebaseline()


@fuzz
@given(st.sampled_from(NUMBERS), st.sampled_from([
    ("list_datasets", "limit"), ("list_applications", "limit"), ("poll_application", "id"),
    ("kill_application", "id")]))
def test_negative_and_overflowing_numbers_in_parameters(target, number, method_param):
    name, param = method_param
    line = b'{"id":"n","method":"%s","params":{"%s":%s}}' % (
        name.encode(), param.encode(), number)
    answer = target.send(line)
    integer = number.lstrip(b"-").isdigit() and -(2**63) <= int(number) < 2**64
    if not integer:
        assert assert_error(answer, "invalid_params")["field"] == param
    elif param == "id":
        assert assert_error(answer, "not_found")["message"] == f"unknown application {int(number)}"
    elif name == "list_datasets" and int(number) < 0:
        assert assert_error(answer, "invalid_params")["field"] == "limit"
    else:
        assert "result" in answer, answer
    target.unharmed()


UPDATES = {  # an existing object: its identity, fields it takes, values its fields refuse
    "site": ({"name": T2}, {"host": "evil.example", "storage_type": "mss",
                              "backend": "davs://evil/", "status": "morgue"},
             {"host": None, "storage_type": "tape", "backend": "a\nb", "status": 5}),
    "group": ({"name": "AnalysisOps"}, {"olevel": "Dataset"}, {"olevel": "Site"}),
    "dataset": ({"name": DS}, {"status": "valid", "data_type": "test", "software_version": "x",
                               "last_update": 1, "is_open": False},
                {"status": 1, "data_type": None, "software_version": ["a", "b"],
                 "last_update": -1, "is_open": "no"}),
    "block": ({"name": BLOCK}, {"is_open": False, "last_update": 2},
              {"is_open": 1, "last_update": -2.5}),
    "file": ({"name": LFN1}, {"adler32": "0a0b0c0d", "crc32": "01020304", "md5": "ab" * 16},
             {"adler32": "xyz", "crc32": "1" * 9, "md5": 5}),
    "datasetreplica": ({"dataset": DS, "site": T2}, {"growing": True}, {"growing": "yes"}),
}


def _update_document(kind: str, fields: dict) -> dict:
    identity = UPDATES[kind][0]
    if kind in ("site", "group", "dataset", "datasetreplica"):
        return {kind: [{**identity, **fields}]}
    block = {"name": BLOCK, **(fields if kind == "block" else {})}
    if kind == "file":
        block["files"] = [{**identity, **fields}]
    return {"dataset": [{"name": DS, "blocks": [block]}]}


@fuzz
@given(st.sampled_from(sorted(UPDATES)), st.data())
def test_an_update_with_one_bad_field_changes_no_field(target, kind, data):
    _, good, bad = UPDATES[kind]
    fields = data.draw(st.dictionaries(st.sampled_from(sorted(good)), st.none(), max_size=5))
    fields = {name: good[name] for name in fields}
    wrong = data.draw(st.sampled_from(sorted(bad)))
    fields[wrong] = bad[wrong]
    answer = target.request("inject", data=_update_document(kind, fields))
    assert assert_error(answer, "invalid_value")["field"] == wrong
    target.unharmed()


def test_sums_past_64_bits_are_refused(target):
    """Each size fits, their sum would not: a block's, and a dataset's (whose size every
    answer about it carries, so it would make those answers impossible for everyone)."""
    big = 2**63 - 1
    block = {"dataset": [{"name": "/num/sum/RAW", "blocks": [{"name": "b", "files": [
        {"name": "/store/sum/1", "size": big}, {"name": "/store/sum/2", "size": 1}]}]}]}
    assert "Block.size" in assert_error(target.request("inject", data=block),
                                        "invalid_value")["message"]
    dataset = {"dataset": [{"name": "/num/sum/RAW", "blocks": [
        {"name": f"b{i}", "files": [{"name": f"/store/sum/{i}", "size": big}]}
        for i in range(3)]}]}
    assert "over 9223372036854775807" in assert_error(target.request("inject", data=dataset),
                                                      "invalid_value")["message"]
    target.unharmed()


# ---------------------------------------------------------------- dynamo-inject
def run_cli(*argv: str) -> tuple[int, str, str]:
    """`dynamo-inject` in process: exit code, standard output, standard error."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = inject_cli.main(list(argv))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def cli_refused(target, code: int, err: str):
    """Refused with a one-line message of its own, never a traceback; nothing changed."""
    assert code != 0
    assert "Traceback" not in err
    assert err.startswith("dynamo-inject: ") and "usage: " not in err, err
    target.tried += 1
    target.unharmed()


@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("documents")


@fuzz
@given(json_values | st.binary(max_size=200) | text)
def test_inject_cli_random_documents(target, documents, document):
    path = documents / "random.json"
    if isinstance(document, bytes):
        path.write_bytes(document)
    else:
        path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    code, out, err = run_cli("--socket", target.daemon.socket, str(path))
    if code == 0:  # an empty or all-empty document: nothing to do
        assert "created  nothing" in out
        target.unharmed()
        return
    cli_refused(target, code, err)


SEED_TEXT = (EXAMPLES / "mydynamo-data.json").read_text()
MUTATIONS = [
    ('"size": 165438', '"size": 18446744073709551616'),
    ('"size": 165438', '"size": 1e400'),
    ('"size": 165438', '"size": -1'),
    ('"size": 165438', '"size": NaN'),
    ('"size": 165438', '"size": Infinity'),
    ('"size": 165438', '"size": ' + "9" * 5000),
    ('"size": 57495', '"size": 57495, "size": 1'),
    ('"dataset":', '"site": [{"name": "T9_DUP"}], "site": [], "dataset":'),
    ('"name": "pandaf', '"name": "\\ud800pandaf'),
    ('"name": "pandaf', '"name": "\\u0000pandaf'),
    ('"is_open": true', '"is_open": 1'),
    ('"status": "production"', '"status": "production\\n"'),
    ("[", "[" * 5000),
    ("}", ""),
    ('"blocks"', '"blocks\\u0000"'),
    ('"block": "48', '"block": "../../etc/48'),
]


@pytest.mark.parametrize("old, new", MUTATIONS, ids=[m[1][:30] for m in MUTATIONS])
def test_inject_cli_refuses_hostile_variants_of_the_walkthrough(target, documents, old, new):
    path = documents / "variant.json"
    path.write_text(SEED_TEXT.replace(old, new, 1))
    for mode in ([], ["--dry-run"]):  # (a deletion ignores the fields, so some would apply)
        code, _, err = run_cli("--socket", target.daemon.socket, *mode, str(path))
        cli_refused(target, code, err)


OPTIONS = ["--site", "--group", "--dataset", "--dataset-replica", "--block-replica", "--file",
           "--block"]
spec_text = st.lists(st.sampled_from(list(",:/#.-_ '\"\\x0123") + [
    "\x00", "\x01", "\n", "\udcff", "é", "T2_US_XYZ", DS, BLOCK, "99999999999999999999999",
    "-5", "ready", "disk", "nonsense"]), max_size=8).map("".join)


# Well-formed options too, of objects there are and of new ones: with random specs alone,
# 2 of 80 examples were accepted (as a dry run); now 10 to 16 are.
WELL_FORMED = [("--site", T2), ("--site", "T9_NEW,t9.edu,disk,,ready"), ("--group", "G9"),
               ("--dataset", DS), ("--dataset", "/new/spec/RAW,valid"),
               ("--dataset-replica", f"{T2}:{DS}")]


@fuzz
@given(st.lists(st.tuples(st.sampled_from(OPTIONS), spec_text) | st.sampled_from(WELL_FORMED),
                min_size=1, max_size=4),
       st.sampled_from([["--dry-run"], ["--delete", "--dry-run"]]))
def test_inject_cli_spec_strings(target, options, mode):
    argv = [arg for option, spec in options for arg in (option, spec)]
    code, out, err = run_cli("--socket", target.daemon.socket, *mode, *argv)
    if code == 0:
        assert out.startswith("dry run: nothing was changed")
        target.unharmed()
        return
    cli_refused(target, code, err)


@pytest.mark.parametrize("case", ["not UTF-8", "argument not UTF-8", "deep", "huge integer",
                                  "repeated key", "directory", "empty"])
def test_inject_cli_as_a_process_refuses_without_a_traceback(target, documents, case):
    path = documents / f"{case.replace(' ', '-')}.json"
    args = [str(path)]
    if case == "not UTF-8":
        path.write_bytes(b'{"site": [{"name": "T9_\xff\xfe"}]}')
    elif case == "argument not UTF-8":
        args = [b"--site", b"T9_\xff\xfe,host"]
    elif case == "deep":
        path.write_text("[" * 100000 + "]" * 100000)
    elif case == "huge integer":
        path.write_text('{"dataset": [{"name": "/a/b/c", "last_update": 18446744073709551616}]}')
    elif case == "repeated key":
        path.write_text('{"site": [{"name": "T9_A"}],\n "site": [{"name": "T9_B"}]}')
    elif case == "directory":
        args = [str(documents)]
    else:
        path.write_text("")
    result = subprocess.run([sys.executable, "-m", "dynamoclient.inject", "--socket",
                             target.daemon.socket, *args], capture_output=True, timeout=60)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 1, stderr
    assert "Traceback" not in stderr and stderr.startswith("dynamo-inject: "), stderr
    assert stderr.count("\n") == 1, stderr
    target.tried += 1
    target.unharmed()
