"""Decoding a large request never kills the daemon when memory is short.

orjson 3.13 writes through the NULL pointer when an object allocation fails
while it decodes, so under an address-space limit a large line used to kill
dynamod with SIGSEGV (docs/upstream-orjson-segv.md).  dynamod now checks the
room left before it decodes a line of 1 MiB or more and answers `busy`
(`reason: memory`) when the decoding might not fit.  These tests check the
bound against orjson itself (in subprocesses under RLIMIT_AS), the protocol
functions, and a real daemon under prlimit sent 17 MiB lines at the margins
that used to kill it.
"""

import resource
import subprocess
import sys
import textwrap

import orjson
import pytest

from dynamod import protocol
from dynamod.errors import Busy, InvalidRequest
from dynamod.protocol import (MEMORY_CHECK_BYTES, LineBuffer, LineNotRead, NotEnoughMemory,
                              check_memory, decode_memory, decode_request, encode_error)
from support.wire import Raw

MiB = 1 << 20
FILE = (b'{"name":"/store/user/paus/pandaf/010/DoubleMuon+Run2017F-31Mar2018-v1+MINIAOD/'
        b'6C7F843A-4837-E811-93AC-%08d.root","size":57495}')


def document(shape: str, size: int) -> bytes:
    """A JSON value of about `size` bytes: an injection's list of files, the worst case
    (arrays nested 1000 deep, over and over), or one long string."""
    if shape == "files":
        return b"[" + b",".join(FILE % i for i in range(size // (len(FILE) - 3))) + b"]"
    if shape == "nested":
        return b"[" + b",".join([b"[" * 1000 + b"]" * 1000] * (size // 2001)) + b"]"
    if shape == "unique_keys":  # dicts nested 1000 deep, every key new: 124 B a token
        level = lambda k: b'{"%06x":' % k
        return b"[" + b",".join(b"".join(map(level, range(j * 1000, j * 1000 + 1000)))
                                + b"0" + b"}" * 1000 for j in range(size // 11001)) + b"]"
    if shape == "wide_string":  # one astral character makes every character 4 bytes
        return b'"\\ud83d\\ude00' + b"a" * (size - 14) + b'"'
    if shape == "empty_dicts":
        return b"[" + b",".join([b"{}"] * (size // 3)) + b"]"
    if shape == "string":
        return b'"' + b"a" * (size - 2) + b'"'
    raise ValueError(shape)


def request(rid, shape: str, size: int, method="ping") -> bytes:
    return b'{"id":%d,"method":"%s","params":{"data":%s}}' % (rid, method.encode(),
                                                             document(shape, size))


# ------------------------------------------------------- the bound against orjson
BOUND_PROBE = textwrap.dedent("""
    import gc, os, resource, sys
    import orjson
    from dynamod.protocol import decode_memory
    line = sys.stdin.buffer.read()
    need = decode_memory(line)
    gc.disable()  # as the daemon does around a large request (collector.py)
    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + need, resource.RLIM_INFINITY))
    orjson.loads(line)
    print(need)
""")


@pytest.mark.parametrize("shape", ["files", "nested", "unique_keys", "wide_string",
                                   "empty_dicts", "string"])
def test_orjson_decodes_within_the_bound(shape):
    """With exactly decode_memory(line) of address space left, orjson.loads succeeds
    (a crash here means the bound is too low for this orjson)."""
    line = request(1, shape, 6 * MiB)
    probe = subprocess.run([sys.executable, "-c", BOUND_PROBE], input=line,
                           capture_output=True, timeout=60)
    assert probe.returncode == 0, (probe.returncode, probe.stderr[-2000:])
    assert int(probe.stdout) == decode_memory(line)


def test_a_line_under_the_check_size_that_misses_its_parse_buffer_is_busy_not_a_parse_error():
    """orjson refuses cleanly when its parse buffer (12 bytes a byte) cannot be had; that is
    valid JSON refused for memory, so `busy`, with the id."""
    probe = textwrap.dedent("""
        import resource, sys
        from dynamod.protocol import decode_request, NotEnoughMemory
        line = b'{"id":5,"method":"ping","params":{"s":"' + b"a" * 900000 + b'"}}'
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + (6 << 20), resource.RLIM_INFINITY))
        try:
            decode_request(line)
        except NotEnoughMemory as exc:
            print(exc.code, exc.details["id"], exc.details["reason"])
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60)
    assert (result.returncode, result.stdout.split()) == (0, ["busy", "5", "memory"]), \
        result.stderr[-2000:]


# ------------------------------------------------------------ protocol functions
def test_small_lines_pay_no_check(monkeypatch):
    def never():
        raise AssertionError("the memory of a small line was checked")
    monkeypatch.setattr(protocol, "memory_headroom", never)
    line = b'{"id":1,"method":"ping","params":{"s":"' + b"a" * (MEMORY_CHECK_BYTES - 60) + b'"}}'
    assert len(line) < MEMORY_CHECK_BYTES
    assert decode_request(line).method == "ping"


def test_no_limit_means_no_refusal(monkeypatch):
    monkeypatch.setattr(protocol, "memory_headroom", lambda: None)
    assert decode_request(request(3, "files", 2 * MiB)).id == 3


@pytest.mark.parametrize("rid, wire", [(42, b"42"), ("job-7", b'"job-7"')])
def test_a_large_line_without_room_is_refused_as_busy_with_its_id(monkeypatch, rid, wire):
    line = request(0, "files", 2 * MiB).replace(b'"id":0', b'"id":' + wire, 1)
    monkeypatch.setattr(protocol, "memory_headroom", lambda: 30 * MiB)
    with pytest.raises(NotEnoughMemory) as caught:
        decode_request(line)
    error = caught.value
    assert isinstance(error, Busy) and error.code == "busy"
    answer = orjson.loads(encode_error(error.details.get("id"), error))
    assert answer["id"] == rid
    assert answer["error"]["reason"] == "memory"
    assert answer["error"]["memory_available"] == 30 * MiB
    assert answer["error"]["memory_needed"] == decode_memory(line, 0, False) > 30 * MiB
    assert "nothing was done" in answer["error"]["message"]


def test_the_count_decides_between_the_least_and_the_most(monkeypatch):
    line = request(1, "files", 2 * MiB)
    need = decode_memory(line)
    assert decode_memory(line, 0, False) < need < decode_memory(line, len(line), True)
    monkeypatch.setattr(protocol, "memory_headroom", lambda: need)
    check_memory(line)
    monkeypatch.setattr(protocol, "memory_headroom", lambda: need - 1)
    with pytest.raises(NotEnoughMemory):
        check_memory(line)


def test_an_id_not_first_is_not_guessed(monkeypatch):
    monkeypatch.setattr(protocol, "memory_headroom", lambda: 0)
    line = b'{"method":"ping","id":9,"params":{"s":"' + b"a" * MEMORY_CHECK_BYTES + b'"}}'
    with pytest.raises(NotEnoughMemory) as caught:
        decode_request(line)
    assert "id" not in caught.value.details
    rest = b',"method":"x","params":{"s":"' + b"a" * MEMORY_CHECK_BYTES + b'"}}'
    for head, rid in ((b'{"id":1e3', None), (b' {\t"id" : "x" ', "x")):
        with pytest.raises(NotEnoughMemory) as caught:
            decode_request(head + rest)
        assert caught.value.details.get("id") == rid


def test_a_tree_returned_with_a_memory_error_set_is_busy(monkeypatch):
    """orjson may return a tree with MemoryError set (CPython raises SystemError): busy;
    a SystemError for any other reason still propagates."""
    line, loads = b'{"id":1,"method":"ping","params":{"pad":"' + b"a" * 40 + b'"}}', orjson.loads

    def loads_out_of_memory(data):
        if len(data) < len(line):
            return loads(data)  # the id, read for the answer
        try:
            raise MemoryError
        except MemoryError as exc:
            raise SystemError("returned a result with an exception set") from exc
    monkeypatch.setattr(protocol.orjson, "loads", loads_out_of_memory)
    with pytest.raises(NotEnoughMemory) as caught:
        decode_request(line)
    assert caught.value.details["id"] == 1

    def loads_broken(data):
        raise SystemError("something else")
    monkeypatch.setattr(protocol.orjson, "loads", loads_broken)
    with pytest.raises(SystemError):
        decode_request(line)


def test_memory_headroom_follows_the_address_space_limit():
    with open("/proc/sys/vm/overcommit_memory") as f:
        if f.read().strip() == "2":
            pytest.skip("strict overcommit: the commit limit may be the lower bound")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + (4 << 30), hard))
    try:
        room = protocol.memory_headroom()
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert 4 * 1024 * MiB - 64 * MiB < room <= 4 * 1024 * MiB


def test_input_that_cannot_be_buffered_ends_the_connection_as_busy():
    """No memory to put a line together from the chunks it came in: the complete lines
    before it are handed over, then LineNotRead (busy) ends the connection, as
    LineTooLong does."""
    probe = textwrap.dedent("""
        import resource
        from dynamod.protocol import LineBuffer, LineNotRead
        buffer = LineBuffer(1 << 30)
        assert buffer.feed(b'{"id":1}\\n{"id":2') == [b'{"id":1}']
        chunk = b"x" * (256 << 20)
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + (64 << 20), resource.RLIM_INFINITY))
        assert buffer.feed(chunk) == [] and buffer.pending == len(chunk) + 7   # as it came
        try:
            buffer.feed(b'"}\\n{"id":3}\\n')
        except LineNotRead as exc:
            print(exc.code, exc.details["reason"], exc.lines, buffer.pending)
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.split() == ["busy", "memory", "[]", "0"], result.stderr[-2000:]
    assert issubclass(LineNotRead, Busy) and not issubclass(LineNotRead, InvalidRequest)
    assert LineBuffer(10).feed(b"a\nb\n") == [b"a", b"b"]


# ---------------------------------------------------------------- a real daemon
def address_space(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


def send(daemon, line: bytes) -> dict:
    """Send one line on a fresh connection and read one answer (the daemon may close
    before the client has sent it all: the answer is then already waiting)."""
    raw = Raw(daemon.socket, timeout=60)
    try:
        try:
            raw.send(line)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return raw.receive()
    finally:
        raw.close()


# (shape, margin in MiB): the first five killed orjson 3.13 in dynamod before the check
# (SIGSEGV; 120 MiB gave a misleading parse_error), the last one leaves room to decode.
MARGINS = [("files", 220), ("files", 240), ("files", 260), ("nested", 400), ("files", 120),
           ("string", 215), ("files", 4), ("files", 1200)]


def test_a_17_mib_line_under_an_address_space_limit_never_kills_the_daemon(
        daemon, seed_sites, seed_data):
    pid = daemon.process.pid
    answers = []
    try:
        for rid, (shape, margin) in enumerate(MARGINS):
            line = request(rid, shape, 17 * MiB) + b"\n"
            resource.prlimit(pid, resource.RLIMIT_AS,
                             (address_space(pid) + margin * MiB, resource.RLIM_INFINITY))
            answer = send(daemon, line)
            answers.append((shape, margin, answer.get("error", {}).get("code")))
            assert daemon.process.poll() is None, (answers, daemon.log()[-2000:])
            assert answer["id"] == rid, answer
            error = answer["error"]
            if error["code"] == "busy":
                assert error["reason"] == "memory"
                assert error["memory_needed"] > error["memory_available"]
            else:  # decoded: ping takes no parameter
                assert error["code"] == "invalid_params", answer
            assert daemon.call("ping") == {"pong": True}  # still under the limit
        codes = [code for *_, code in answers]
        assert codes[:-1] == ["busy"] * (len(MARGINS) - 1), answers
        assert codes[-1] == "invalid_params", answers

        # A line the daemon cannot even buffer (60 MiB with 1 MiB left): busy, then the
        # connection closes; the daemon serves on.
        resource.prlimit(pid, resource.RLIMIT_AS,
                         (address_space(pid) + MiB, resource.RLIM_INFINITY))
        answer = send(daemon, request(99, "string", 60 * MiB) + b"\n")
        assert answer["error"]["code"] == "busy" and answer["error"]["reason"] == "memory"
        assert daemon.process.poll() is None

        # Small requests, an injection among them, under a modest limit.
        resource.prlimit(pid, resource.RLIMIT_AS,
                         (address_space(pid) + 64 * MiB, resource.RLIM_INFINITY))
        assert daemon.call("ping") == {"pong": True}
        assert daemon.call("inject", data=seed_sites)["dry_run"] is False
        assert daemon.call("inject", data=seed_data)["dry_run"] is False
        assert {d["name"] for d in daemon.call("list_datasets")["datasets"]} == {
            d["name"] for d in seed_data["dataset"]}
    finally:
        if daemon.process.poll() is None:
            resource.prlimit(pid, resource.RLIMIT_AS,
                             (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
