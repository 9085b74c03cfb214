"""The wire protocol, without any I/O: one JSON object per line each way.

Request:  {"id": 7, "method": "inject", "params": {...}}
Answer:   {"id": 7, "result": {...}}
    or    {"id": 7, "error": {"code": "not_found", "message": "...", ...}}

Compact JSON never contains a raw newline, so a newline always ends a message.
Everything here is pure (bytes in, values out) so it is tested byte by byte,
except the memory check of large lines, which reads the process's limits.
"""

import os
import re
import resource
from dataclasses import dataclass, field

import orjson

from .errors import Busy, DynamoError, InvalidRequest, ParseError, TooLarge

MAX_ID_LENGTH = 200
MAX_DEPTH = 1024  # orjson's own nesting limit (since 3.9.15; older ones crash on deep input)
REQUEST_KEYS = frozenset(("id", "method", "params"))

# orjson (3.13 and before) does not check the objects it allocates while decoding: when
# malloc returns NULL (an address-space or data limit, strict overcommit) it writes through
# the NULL pointer and the daemon dies of SIGSEGV (docs/upstream-orjson-segv.md).  So a line
# from this size is decoded only when the memory its decoding can take is there to take.
MEMORY_CHECK_BYTES = 1 << 20  # as connection.LARGE_REQUEST; smaller lines are unchecked
TOKEN_BYTES = 160         # at most per `[ { , :` of the line: the container, key or value it
                          # opens (measured up to 124: nested dicts with unique keys)
DECODE_SLACK = 16 << 20   # allocator granularity (1 MiB pymalloc arenas), other threads
_TOKENS = b"[{,:"
_PAGE = os.sysconf("SC_PAGE_SIZE")
_UNLIMITED = resource.RLIM_INFINITY
_ID = re.compile(rb'\s*\{\s*"id"\s*:\s*(-?[0-9]{1,16}|"[^"\\]{0,200}")\s*[,}]')


class LineTooLong(TooLarge):
    """TooLarge that hands over the complete lines before the long one, so they get answers."""

    def __init__(self, message: str, lines: list[bytes]):
        super().__init__(message)
        self.lines = lines


class LineNotRead(Busy):
    """`busy`: no memory to buffer the input; hands over the complete lines before it."""

    def __init__(self, message: str, lines: list[bytes]):
        super().__init__(message, reason="memory")
        self.lines = lines


class LineBuffer:
    """Cuts a byte stream into lines; a line longer than `max_line` is refused.

    An unfinished line is kept as the chunks it came in, joined once its newline
    arrives: a request of megabytes is copied once, not appended to a buffer and
    then cut out of it.  Small chunks (a peer sending a byte at a time) are gathered
    into one bytearray up to `GATHER` bytes, so a part costs no more than its bytes'
    worth of memory, whatever the chunks' size."""

    GATHER = 1 << 16

    def __init__(self, max_line: int):
        self.max_line = max_line
        self._parts = []   # the chunks of the unfinished line
        self.pending = 0   # their bytes (a half-sent request)

    def feed(self, data: bytes) -> list[bytes]:
        if not self._parts and len(data) <= self.max_line and data.endswith(b"\n"):
            # The usual chunk, whole lines and none over the limit: split it without
            # copying it through the buffer.
            try:
                lines = data.split(b"\n")
            except MemoryError:
                raise self._not_read([]) from None
            lines.pop()
            return lines
        if self.pending + len(data) > self.max_line and b"\n" not in data:
            # Refused before it is kept: the buffer never grows past the limit.
            raise LineTooLong(f"request line exceeds the limit of {self.max_line} bytes", [])
        lines = []
        try:
            start = 0
            while (end := data.find(b"\n", start)) >= 0:
                size = self.pending + end - start
                if size > self.max_line:
                    raise LineTooLong(f"request line of {size} bytes exceeds the limit "
                                      f"of {self.max_line} bytes", lines)
                if self._parts:
                    lines.append(b"".join([*self._parts, data[start:end]]))
                    self._parts, self.pending = [], 0
                else:
                    lines.append(data[start:end])
                start = end + 1
            if start < len(data):
                self._keep(data[start:] if start else data)
        except MemoryError:
            raise self._not_read(lines) from None
        if self.pending > self.max_line:
            raise LineTooLong(f"request line exceeds the limit of {self.max_line} bytes", lines)
        return lines

    def _keep(self, piece: bytes):
        """Add a piece of the unfinished line: large, as it is; small, to the last part
        while that is a bytearray below GATHER bytes."""
        parts = self._parts
        if len(piece) >= self.GATHER:
            parts.append(piece)
        elif parts and type(parts[-1]) is bytearray and len(parts[-1]) < self.GATHER:
            parts[-1] += piece
        else:
            parts.append(bytearray(piece))
        self.pending += len(piece)

    def drop(self):
        """Forget the unfinished line: the stream is cut here, so the connection ends."""
        self._parts, self.pending = [], 0

    def _not_read(self, lines: list[bytes]) -> "LineNotRead":
        """No memory to hold the input."""
        self.drop()
        return LineNotRead("dynamod lacks the memory to read the rest of this connection's "
                           "input now; the requests not answered were not done: try again "
                           "later or send smaller requests", lines)


class NotEnoughMemory(Busy):
    """`busy`: the daemon lacks the memory to decode this line now; nothing was done."""

    def __init__(self, size: int, needed: int, available: int, id=None):
        super().__init__(f"dynamod lacks the memory to decode this {size >> 10} KiB request "
                         f"now (about {needed >> 20} MiB needed, {max(available, 0) >> 20} MiB "
                         f"free under its memory limits); nothing was done: try again later "
                         f"or send smaller requests", id=id, reason="memory",
                         memory_needed=needed, memory_available=max(available, 0))


def memory_headroom() -> int | None:
    """Bytes this process can still map before an allocation fails (malloc returns NULL),
    or None when nothing bounds it: the soft RLIMIT_AS less the address space in use, the
    soft RLIMIT_DATA less the data segment, and under strict overcommit
    (vm.overcommit_memory = 2) the system's CommitLimit less Committed_AS.  A cgroup's
    memory.max is not one of these: there the kernel reclaims or kills, malloc never fails."""
    rooms = []
    space = resource.getrlimit(resource.RLIMIT_AS)[0]
    data = resource.getrlimit(resource.RLIMIT_DATA)[0]
    try:
        if space != _UNLIMITED or data != _UNLIMITED:
            with open("/proc/self/statm", "rb") as f:
                statm = f.read().split()
            if space != _UNLIMITED:
                rooms.append(space - int(statm[0]) * _PAGE)
            if data != _UNLIMITED:
                rooms.append(data - int(statm[5]) * _PAGE)  # data + stack: more than counted
        with open("/proc/sys/vm/overcommit_memory", "rb") as f:
            strict = f.read().strip() == b"2"
        if strict:
            with open("/proc/meminfo", "rb") as f:
                info = dict(line.split(b":", 1) for line in f.read().splitlines())
            rooms.append((int(info[b"CommitLimit"].split()[0])
                          - int(info[b"Committed_AS"].split()[0])) * 1024)
    except (OSError, LookupError, ValueError):
        pass  # no /proc: the limits are all that can be read
    return min(rooms) if rooms else None


def decode_memory(line: bytes, tokens: int | None = None, wide: bool | None = None) -> int:
    """Most address space orjson.loads(line) can take (measured: docs/upstream-orjson-segv.md):
    its parse buffer (12 bytes a byte of input, allocated at once), the objects (each opened
    by one of `[ { , :`), the text of the strings (4 bytes a character when one of them may
    be wider than Latin-1) and a slack.  `tokens` and `wide` default to counting the line."""
    size = len(line)
    if tokens is None:
        tokens = size - len(line.translate(None, _TOKENS))
    if wide is None:
        wide = not line.isascii() or b"\\" in line
    return _parse_buffer(size) + TOKEN_BYTES * tokens + (4 if wide else 1) * size + DECODE_SLACK


def _parse_buffer(size: int) -> int:
    """orjson's yyjson pool for `size` bytes of input (its buffer_capacity_to_allocate)."""
    return ((size // 2) * 24 + 256 + 4095) & ~4095


def check_memory(line: bytes):
    """Raise NotEnoughMemory unless decoding `line` fits in the memory left now.  Costs one
    getrlimit pair, a read of /proc/self/statm and /proc/sys/vm/overcommit_memory, and a
    pass over the line (translate, 0.4-0.8 ms a MiB) only when the room is between the least
    and the most that decoding can take."""
    room = memory_headroom()
    if room is None:
        return
    worst = decode_memory(line, len(line), True)
    if room >= worst:
        return
    needed = decode_memory(line, 0, False)  # the least it can take
    if room >= needed:
        try:
            needed = decode_memory(line)
        except MemoryError:  # not even room for the count
            needed = worst
    if needed > room:
        raise NotEnoughMemory(len(line), needed, room, id=_peek_id(line))


def _peek_id(line: bytes):
    """The request's id when it comes first in the line (as dynamoclient writes it)."""
    match = _ID.match(line, 0, 256)
    if match is None:
        return None
    try:
        rid = orjson.loads(match.group(1))
    except orjson.JSONDecodeError:
        return None
    return rid if _valid_id(rid) else None


@dataclass(slots=True)
class Request:
    id: object
    method: str
    params: dict = field(default_factory=dict)


def _valid_id(value) -> bool:
    if isinstance(value, str):
        return len(value) <= MAX_ID_LENGTH
    return type(value) is int and -(2**53) <= value <= 2**53


def decode_request(line: bytes) -> Request:
    """Parse one line; errors carry the request id when one could be read."""
    if len(line) >= MEMORY_CHECK_BYTES:
        check_memory(line)
    try:
        message = orjson.loads(line)
        repeats = _repeats_a_key(line, message)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise ParseError(f"the request nests arrays and objects deeper than {MAX_DEPTH} "
                             f"levels") from None
        if "Not enough memory" in str(exc):  # its parse buffer: valid JSON, refused cleanly
            raise NotEnoughMemory(len(line), decode_memory(line, 0, False),
                                  memory_headroom() or 0, id=_peek_id(line)) from None
        raise ParseError(f"the request is not valid JSON: {exc}") from None
    except (MemoryError, SystemError) as exc:
        # SystemError: orjson returned a tree with an exception (MemoryError) set, when a
        # failed allocation did not happen to be written through; the tree is dropped.
        if isinstance(exc, SystemError) and not isinstance(exc.__cause__, MemoryError):
            raise
        raise NotEnoughMemory(len(line), decode_memory(line, 0, False), memory_headroom() or 0,
                              id=_peek_id(line)) from None
    if repeats:
        raise ParseError("the request names the same key twice in one object")
    if not isinstance(message, dict):
        raise InvalidRequest("a request must be a JSON object")
    rid = message.get("id")
    if not _valid_id(rid):
        raise InvalidRequest(f"a request needs an 'id': an integer or a string of at most "
                             f"{MAX_ID_LENGTH} characters")
    if not REQUEST_KEYS.issuperset(message):
        unknown = sorted(set(message) - REQUEST_KEYS)[0]
        raise InvalidRequest(f"unknown request key {unknown!r}", id=rid)
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise InvalidRequest("a request needs a 'method' string", id=rid)
    params = message.get("params", {})
    if not isinstance(params, dict):
        raise InvalidRequest("'params' must be a JSON object", id=rid)
    return Request(rid, method, params)


def _repeats_a_key(line: bytes, message) -> bool:
    """Whether an object of the (valid JSON) line names a key twice, which the parser
    would silently resolve to the last value.

    The parsed tree's objects hold each key once, and orjson writes the tree again
    in a pass in C.  When that text is the line itself (every client that writes
    compact JSON with orjson sends such lines), each object of the line is one of
    the tree's, so its keys are distinct: one comparison settles it.  Otherwise the
    colons are counted: every colon of the line separates a key from its value or
    is a character of a string, and so is every colon of the tree's text; the two
    counts agree exactly when no key repeats (a repeated key's separator, and the
    colons of the pair it lost, are missing from the tree).  A colon written as an
    escape (`\\u003a`) counts as one.  (A scan of the line's strings in Python
    would cost more than the decoding.)"""
    # The write takes at most 4.5 bytes a byte of the line (`1e15` is written
    # 1000000000000000.0): less than the parse buffer the decoding has freed.
    try:
        written = orjson.dumps(message)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (254 levels)
        tree_colons = _colons_of(message)
    else:
        if written == line:
            return False
        tree_colons = written.count(b":")
    return line.count(b":") + _escaped_colons(line) != tree_colons


def _escaped_colons(line: bytes) -> int:
    """The colons the line's strings write as `\\u003a`.  Without its escaped backslashes
    (the pairs, left to right, as the parser reads them) every backslash left starts
    an escape.  (`in` finds one byte with memchr, a pair of bytes far more slowly.)"""
    if b"\\" not in line:
        return 0
    if b"\\\\" in line:
        line = line.replace(b"\\\\", b"")
    return line.count(b"\\u003a") + line.count(b"\\u003A")


def _colons_of(message) -> int:
    """The colons orjson would write for `message`: one per key, and those of its strings."""
    colons, pending = 0, [message]
    while pending:
        value = pending.pop()
        if type(value) is dict:
            colons += len(value) + sum(key.count(":") for key in value)
            pending.extend(value.values())
        elif type(value) is list:
            pending.extend(value)
        elif type(value) is str:
            colons += value.count(":")
    return colons


# orjson writes the newline itself: no copy of the answer to append it.
_LINE = orjson.OPT_APPEND_NEWLINE


def encode_result(rid, result) -> bytes:
    return orjson.dumps({"id": rid, "result": result}, option=_LINE)


def encode_error(rid, error: DynamoError) -> bytes:
    details = {k: v for k, v in error.to_dict().items() if k != "id"}
    try:
        return orjson.dumps({"id": rid, "error": details}, option=_LINE)
    except TypeError:   # a string JSON cannot hold (a lone surrogate): written escaped
        return orjson.dumps({"id": rid, "error": _escaped(details)}, option=_LINE)


def _escaped(value):
    """`value` with each string's lone surrogates written as escapes (\\udcff)."""
    if type(value) is str:
        return value.encode("utf-8", "backslashreplace").decode()
    if type(value) is dict:
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return [_escaped(v) for v in value]
    return value


def encode_event(rid, event: dict) -> bytes:
    """A progress message of a request still running; its answer comes later."""
    return orjson.dumps({"id": rid, "event": event}, option=_LINE)
