"""The wire protocol without any I/O: framing, request decoding, answer encoding.

Every test feeds bytes to dynamod/protocol.py and looks at what comes out;
no socket, no daemon.  PROTOCOL.md is checked against the method table here
too, so a method cannot be added without being documented.
"""

import re
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamod.auth.policy import Access
from dynamod.errors import (DynamoError, InvalidParams, InvalidRequest, NotAuthorized, NotFound,
                            ParseError, TooLarge)
from dynamod.methods import METHODS, registry
from dynamod.protocol import (MAX_DEPTH, MAX_ID_LENGTH, LineBuffer, decode_request, encode_error,
                              encode_result)

PROTOCOL_MD = Path(__file__).parent.parent / "PROTOCOL.md"


# ----------------------------------------------------------------- framing
def feed_all(buffer: LineBuffer, chunks) -> list[bytes]:
    lines = []
    for chunk in chunks:
        lines += buffer.feed(chunk)
    return lines


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` split at the given offsets (in any order, repeats allowed)."""
    points = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[a:b] for a, b in zip(points, points[1:])]


# Lines of the longest length allowed, 40 bytes, too: drawn among shorter ones, none of
# 200 examples held one; now 137 to 165 do.
line_bodies = (st.binary(max_size=40) | st.binary(min_size=40, max_size=40)).map(
    lambda b: b.replace(b"\n", b" "))
cut_points = st.lists(st.integers(0, 10**6), max_size=20)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(line_bodies, max_size=12), line_bodies, cut_points, st.sampled_from([None, 1, 8]))
def test_lines_survive_any_chunking(lines, tail, cuts, gather):
    """Whatever the chunks, and whether small ones are gathered or not (`gather`: a
    GATHER small enough for these lines to cross it)."""
    stream = b"".join(line + b"\n" for line in lines) + tail
    buffer = LineBuffer(max_line=40)
    if gather is not None:
        buffer.GATHER = gather
    assert feed_all(buffer, cut(stream, cuts)) == lines
    assert buffer.pending == len(tail)


def test_a_line_sent_a_byte_at_a_time_costs_its_bytes_not_an_object_each():
    """A peer trickling a large request one byte per read: the unfinished line's memory
    stays near its size (a part per byte would cost some 40 bytes each)."""
    import tracemalloc
    buffer = LineBuffer(max_line=1 << 20)
    byte = b"x"
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(200_000):
            buffer.feed(byte)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert buffer.pending == 200_000
    assert held < 2 * 200_000
    assert buffer.feed(b"\n") == [b"x" * 200_000] and buffer.pending == 0


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(line_bodies, max_size=6), st.integers(41, 120), st.lists(line_bodies, max_size=3),
       cut_points)
def test_a_long_line_raises_at_any_chunking_and_keeps_the_lines_before_it(before, long, after,
                                                                          cuts):
    stream = b"".join(line + b"\n" for line in [*before, b"x" * long, *after])
    buffer = LineBuffer(max_line=40)
    got = []
    with pytest.raises(TooLarge) as raised:
        for chunk in cut(stream, cuts):
            got += buffer.feed(chunk)
    assert raised.value.code == "too_large"
    assert got + raised.value.lines == before


def test_line_one_byte_at_a_time():
    buffer = LineBuffer(max_line=100)
    got = feed_all(buffer, (bytes([b]) for b in b'{"id":1}\n\n{"id":2}\r\n'))
    assert got == [b'{"id":1}', b"", b'{"id":2}\r']
    assert buffer.pending == 0


def test_line_at_the_limit_is_accepted_complete_and_partial():
    buffer = LineBuffer(max_line=10)
    assert buffer.feed(b"a" * 10) == []
    assert buffer.pending == 10
    assert buffer.feed(b"\n" + b"b" * 10 + b"\n") == [b"a" * 10, b"b" * 10]


def test_complete_line_over_the_limit_raises():
    with pytest.raises(TooLarge, match="11 bytes exceeds the limit of 10"):
        LineBuffer(max_line=10).feed(b"a" * 11 + b"\n")


def test_partial_line_over_the_limit_raises_before_its_newline():
    buffer = LineBuffer(max_line=10)
    buffer.feed(b"a" * 6)
    with pytest.raises(TooLarge, match="limit of 10 bytes"):
        buffer.feed(b"a" * 5)


def test_long_line_after_good_lines_in_one_chunk_hands_them_over():
    with pytest.raises(TooLarge) as raised:
        LineBuffer(max_line=10).feed(b"one\ntwo\n" + b"x" * 11)
    assert raised.value.lines == [b"one", b"two"]


def test_many_short_lines_are_not_limited_as_a_whole():
    buffer = LineBuffer(max_line=10)
    assert len(buffer.feed(b"123456789\n" * 1000)) == 1000


# ---------------------------------------------------------------- requests
def error_of(line: bytes) -> DynamoError:
    with pytest.raises(DynamoError) as raised:
        decode_request(line)
    return raised.value


def test_a_good_request():
    request = decode_request(b'{"id": 7, "method": "list_sites", "params": {"pattern": "T2_*"}}')
    assert (request.id, request.method, request.params) == (7, "list_sites", {"pattern": "T2_*"})


def test_params_default_to_an_empty_object_and_ids_may_be_strings():
    request = decode_request(b'{"method": "ping", "id": "a-1"}')
    assert (request.id, request.method, request.params) == ("a-1", "ping", {})


@pytest.mark.parametrize("rid", [0, -1, 2**53, -(2**53), "", "x" * MAX_ID_LENGTH, "é✓"])
def test_valid_ids(rid):
    assert decode_request(orjson.dumps({"id": rid, "method": "ping"})).id == rid


@pytest.mark.parametrize("line", [
    b"", b"   ", b"{", b'{"id": 1, "method": "ping"', b"{'id': 1}", b"nul\x00",
    b'{"id": 1, "method": "ping"}\x00', b'{"id": 1, "method": "pi\x00ng"}',
    b'{"id": 1, "method": "\xff\xfe"}', b'{"id": 1, "method": "\xc3"}',
    b'{"id": 1, "method": "\\ud800"}', b'{"id": NaN, "method": "ping"}',
    b'{"id": 1, "method": "ping"} {"id": 2, "method": "ping"}',
    b"[" * 2000 + b"]" * 2000,
])
def test_not_json_is_a_parse_error_without_id(line):
    error = error_of(line)
    assert isinstance(error, ParseError) and error.code == "parse_error"
    assert "id" not in error.details


@pytest.mark.parametrize("line, repeated", [
    (b'{"id":1,"method":"m","params":{"a":1}}', False),
    (b'{"id":"a:b","method":"m","params":{"a":"x:y"}}', False),
    (b'{"id":1,"method":"m","params":{"a":{"b":1},"c":[{"b":2}]}}', False),
    (b'{"id":1,"id":2,"method":"m"}', True),
    (b'{"id":1,"method":"m","params":{"a":1,"a":2}}', True),
    (b'{"id":1,"method":"m","params":{"a":"x:y","a":2}}', True),
    (b'{"id":1,"method":"m","params":{"a":{"b":1,"b":2}}}', True),
    (b'{"id":1,"method":"m","params":{"a":1},"params":{"b":2,"c":3}}', True),
    (b'[{"a":1,"a":2}]', True),
    # a colon written as an escape is one (here it would hide the separator lost)
    (b'{"id":1,"method":"m","params":{"a":1,"a":"\\u003a"}}', True),
    (b'{"id":1,"method":"m","params":{"\\u003a":1,"a":"\\u003A"}}', False),
    # an escaped backslash before `u003a` is not an escape of a colon
    (b'{"id":1,"method":"m","params":{"a":{"b":"\\\\u003a"}}}', False),
    (b'{"id":1,"method":"m","params":{"a":"\\\\\\u003a","a":":"}}', True),
    # the line as orjson writes its tree (compared whole) or not (its colons counted)
    (b'{"id":1,"method":"m","params":{"a":{"b":{"c":[{"d":1,"e":2}]}}}}', False),
    (b'{"id":1,"method":"m","params":{"a":{"b":{"c":[{"d":1,"d":1}]}}}}', True),
    (b'{"id":1,"method":"m","params":{"a":{"b":{"c":[{"d":1,"e":2}]},"b":{"c":[{"d":1,"e":2}]}}}}',
     True),
    (b'{"id" : 1, "method" : "m", "params" : {"a" : 1}}', False),
    (b'{"id" : 1, "method" : "m", "params" : {"a" : 1, "a" : 1}}', True),
    (b'{"id":1,"method":"m","params":{"a":1.0e0,"b":1E+2}}', False),
    # as long as the text of its tree (1e15 is written 1000000000000000.0), not the same
    (b'{"id":1,"method":"m","params":{"a":1e15,     "a":1e15}}', True),
    # keys alike once their escapes are read
    (rb'{"id":1,"method":"m","params":{"a":1,"\u0061":1}}', True),
    (b'{"id":1,"method":"m","params":{"\\u00e9":1,"\\u00c9":1,"\xc3\xa9x":1}}', False),
    (b'{"id":1,"method":"m","params":{"\\u00e9":1,"\xc3\xa9":1}}', True),
    (rb'{"id":1,"method":"m","params":{"\"":1,"\u0022":2}}', True),
    # colons and quotes inside strings, keys and values
    (rb'{"id":1,"method":"m","params":{"\":":"\":\"","\"":":"}}', False),
    (rb'{"id":1,"method":"m","params":{"\":":"\":\"","\":":":"}}', True),
    (rb'{"id":1,"method":"m","params":{"a":"\",\"a\":\"","b":"\\"}}', False),
    (rb'{"id":1,"method":"m","params":{"a":"\\","a":"\\\":"}}', True),
    # deeper than orjson writes: the tree is counted instead
    (b'{"id":1,"method":"m","params":{"v":' + b"[" * 300 + b'{"a":"x:y","b":1}'
     + b"]" * 300 + b"}}", False),
    (b'{"id":1,"method":"m","params":{"v":' + b"[" * 300 + b'{"a":"x:y","a":1}'
     + b"]" * 300 + b"}}", True),
])
def test_a_repeated_key_is_found_whatever_the_request_shape(line, repeated):
    """A line as orjson writes its tree is settled by one comparison; no request with a
    repeated key may slip through that shortcut, nor through the count of colons of the
    others (spaces, other number forms, escaped keys alike once read, colons and quotes
    in strings, escaped backslashes, trees too deep to write)."""
    if repeated:
        error = error_of(line)
        assert error.code == "parse_error" and "twice" in error.message
    else:
        assert decode_request(line).method == "m"


@pytest.mark.parametrize("line", [b"[]", b'[{"id": 1, "method": "ping"}]', b'"ping"', b"1",
                                  b"null", b"true"])
def test_not_an_object_is_invalid(line):
    error = error_of(line)
    assert isinstance(error, InvalidRequest) and "id" not in error.details
    assert "JSON object" in error.message


@pytest.mark.parametrize("rid", [None, True, False, 1.0, 1.5, 2**53 + 1, -(2**53) - 1, 2**63,
                                 "x" * (MAX_ID_LENGTH + 1), [1], {"a": 1}])
def test_bad_ids_are_invalid_requests(rid):
    error = error_of(orjson.dumps({"id": rid, "method": "ping"}))
    assert error.code == "invalid_request" and "'id'" in error.message
    assert "id" not in error.details


@pytest.mark.parametrize("raw", [b"99999999999999999999999", b"1e3", b"-0.0"])
def test_numbers_beyond_integers_are_bad_ids(raw):
    assert error_of(b'{"id": ' + raw + b', "method": "ping"}').code == "invalid_request"


def test_missing_id_is_invalid():
    assert error_of(b'{"method": "ping"}').code == "invalid_request"


@pytest.mark.parametrize("message, words", [
    ({"id": 3}, "'method'"),
    ({"id": 3, "method": ""}, "'method'"),
    ({"id": 3, "method": 5}, "'method'"),
    ({"id": 3, "method": None}, "'method'"),
    ({"id": 3, "method": "ping", "params": []}, "'params'"),
    ({"id": 3, "method": "ping", "params": None}, "'params'"),
    ({"id": 3, "method": "ping", "params": "x"}, "'params'"),
    ({"id": 3, "method": "ping", "jsonrpc": "2.0"}, "'jsonrpc'"),
    ({"id": 3, "method": "ping", "result": 1}, "'result'"),
])
def test_bad_requests_with_a_readable_id_keep_it(message, words):
    error = error_of(orjson.dumps(message))
    assert error.code == "invalid_request" and words in error.message
    assert error.details["id"] == 3
    answer = orjson.loads(encode_error(error.details["id"], error))
    assert answer == {"id": 3, "error": {"code": "invalid_request", "message": error.message}}


def test_string_id_is_kept_in_errors():
    assert error_of(b'{"id": "abc", "method": 1}').details["id"] == "abc"


# ----------------------------------------------------------------- nesting
tricky_text = st.text(alphabet='[]{}"\\ab\n\u00e9', max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | tricky_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky_text, inner, max_size=4),
    max_leaves=20)


def depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


@settings(max_examples=200, deadline=None, database=None)
@given(json_values, st.integers(-2, 2), st.booleans(), tricky_text)
def test_nesting_limit_is_exact_whatever_the_strings_hold(value, margin, use_objects, key):
    """Wrap a value until the request nests exactly MAX_DEPTH + margin levels deep
    (built as text: the encoders themselves stop far below the limit)."""
    line, key_json = orjson.dumps(value), orjson.dumps(key)
    for _ in range(MAX_DEPTH + margin - 2 - depth(value)):
        line = (b"{" + key_json + b":" + line + b',"s":' + key_json + b"}" if use_objects
                else b"[" + key_json + b"," + line + b"," + key_json + b"]")
    line = b'{"id":1,"method":"m","params":{"v":' + line + b"}}"
    if margin <= 0:
        assert "v" in decode_request(line).params
    else:
        assert error_of(line).code == "parse_error"


def test_a_million_brackets_are_refused_before_parsing():
    assert "deeper than" in error_of(b"[" * 10**6 + b"]" * 10**6).message
    assert "deeper than" in error_of(b'{"a": "\\\\", "b": ' + b"[" * 10**6).message


def test_brackets_inside_strings_do_not_count():
    value = "[" * 1000 + "\\" + "{" * 1000 + '\"'
    assert decode_request(orjson.dumps({"id": 1, "method": "m", "params": {"v": [value]}}))


# ----------------------------------------------------------------- answers
@pytest.mark.parametrize("rid", [1, "x", None])
def test_encode_result_is_one_line(rid):
    data = encode_result(rid, {"text": "a\nb\r\u2028", "list": [1, 2.5, None, True]})
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert orjson.loads(data) == {"id": rid,
                                  "result": {"text": "a\nb\r\u2028", "list": [1, 2.5, None, True]}}


def test_encode_error_is_one_line_with_code_message_and_details():
    data = encode_error(9, NotFound("unknown site 'X\nY'", field="site"))
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert orjson.loads(data) == {"id": 9, "error": {"code": "not_found",
                                                     "message": "unknown site 'X\nY'",
                                                     "field": "site"}}


def test_an_error_naming_what_json_cannot_hold_is_still_answered():
    """A name with a lone surrogate (a script's string) in the message or the details:
    written escaped, never an answer lost to the encoder."""
    data = encode_error(3, NotFound("unknown dataset '/a\udcff'", field="dataset",
                                    name="/a\udcff", also=["\ud800"]))
    assert orjson.loads(data) == {"id": 3, "error": {
        "code": "not_found", "message": "unknown dataset '/a\\udcff'", "field": "dataset",
        "name": "/a\\udcff", "also": ["\\ud800"]}}


def test_encode_error_takes_the_id_from_the_call_not_the_details():
    data = encode_error(None, InvalidRequest("bad", id=4))
    assert orjson.loads(data) == {"id": None, "error": {"code": "invalid_request",
                                                        "message": "bad"}}
    data = encode_error(5, NotAuthorized("refused", uid=65534))
    assert orjson.loads(data)["error"] == {"code": "not_authorized", "message": "refused",
                                           "uid": 65534}


# ------------------------------------------------- parameters (registry)
def test_parameter_types_follow_json_not_python(monkeypatch):
    monkeypatch.setattr(registry, "METHODS", {})  # keep the real table clean

    @registry.method("probe", Access.PUBLIC)
    def probe(call, ratio: float, count: int = 0, label: str | None = None) -> dict:
        return {}

    method = registry.METHODS["probe"]
    assert method.bind({"ratio": 1}) == {"ratio": 1}
    assert method.bind({"ratio": 0.5, "count": 3, "label": None})
    for bad in ({"ratio": True}, {"ratio": "1"}, {"ratio": 1, "count": 1.0},
                {"ratio": 1, "count": False}, {"ratio": 1, "label": 5}, {}, {"ratio": 1, "x": 0}):
        with pytest.raises(InvalidParams):
            method.bind(bad)
    params = method.describe()["params"]
    assert params["ratio"] == {"types": ["a number"], "required": True}
    assert params["label"] == {"types": ["a string", "null"], "required": False}


# ------------------------------------------------------------ PROTOCOL.md
def protocol_sections() -> dict[str, str]:
    """`### name` heading -> the text up to the next heading of any level."""
    text = PROTOCOL_MD.read_text()
    parts = re.split(r"^(#{1,6} .*)$", text, flags=re.M)
    return {heading[4:].strip().strip("`"): body
            for heading, body in zip(parts[1::2], parts[2::2]) if heading.startswith("### ")}


def test_every_method_is_documented():
    sections = protocol_sections()
    missing = sorted(set(METHODS) - set(sections))
    assert not missing, f"PROTOCOL.md has no '### <name>' heading for {missing}"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_documentation_names_its_access_and_params(name):
    section = protocol_sections().get(name, "")
    method = METHODS[name]
    assert f"Access: **{method.access.name.lower()}**" in section, name
    for param in method.params:
        assert f"`{param}`" in section, f"PROTOCOL.md does not describe {name}'s {param!r}"
    if not method.params:
        assert "Parameters: none" in section, name


def test_every_error_code_is_documented():
    import dynamod.errors as errors

    codes = {cls.code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, DynamoError)}
    text = PROTOCOL_MD.read_text()
    assert not [c for c in codes if f"| `{c}` |" not in text]
