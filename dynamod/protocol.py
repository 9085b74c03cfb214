"""The wire protocol, without any I/O: one JSON object per line each way.

Request:  {"id": 7, "method": "inject", "params": {...}}
Answer:   {"id": 7, "result": {...}}
    or    {"id": 7, "error": {"code": "not_found", "message": "...", ...}}

Compact JSON never contains a raw newline, so a newline always ends a message.
Everything here is pure (bytes in, values out) so it is tested byte by byte.
"""

import re
from dataclasses import dataclass, field

import orjson

from .errors import DynamoError, InvalidRequest, ParseError, TooLarge

MAX_ID_LENGTH = 200
MAX_DEPTH = 1024  # orjson's own nesting limit (since 3.9.15; older ones crash on deep input)
REQUEST_KEYS = frozenset(("id", "method", "params"))
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


class LineTooLong(TooLarge):
    """TooLarge that hands over the complete lines before the long one, so they get answers."""

    def __init__(self, message: str, lines: list[bytes]):
        super().__init__(message)
        self.lines = lines


class LineBuffer:
    """Cuts a byte stream into lines; a line longer than `max_line` is refused."""

    def __init__(self, max_line: int):
        self.max_line = max_line
        self._buffer = bytearray()
        self._scanned = 0  # bytes already searched for a newline

    def feed(self, data: bytes) -> list[bytes]:
        if not self._buffer and len(data) <= self.max_line and data.endswith(b"\n"):
            # The usual chunk, whole lines and none over the limit: split it without
            # copying it through the buffer.
            lines = data.split(b"\n")
            lines.pop()
            return lines
        self._buffer += data
        lines = []
        start = 0
        while True:
            end = self._buffer.find(b"\n", max(start, self._scanned))
            if end < 0:
                break
            if end - start > self.max_line:
                raise LineTooLong(f"request line of {end - start} bytes exceeds the limit of "
                                  f"{self.max_line} bytes", lines)
            lines.append(bytes(self._buffer[start:end]))
            start = end + 1
        del self._buffer[:start]
        self._scanned = len(self._buffer)
        if self._scanned > self.max_line:
            raise LineTooLong(f"request line exceeds the limit of {self.max_line} bytes", lines)
        return lines

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line (a half-sent request)."""
        return len(self._buffer)


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
    try:
        message = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise ParseError(f"the request nests arrays and objects deeper than {MAX_DEPTH} "
                             f"levels") from None
        raise ParseError(f"the request is not valid JSON: {exc}") from None
    if _repeats_a_key(line, message):
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
    would silently resolve to the last value: the text then has more key separators
    (colons outside strings) than the parsed objects have keys.

    The colons of the raw line bound the separators from above, and the keys of the
    request and of its params bound the parsed keys from below; when the two bounds
    meet (a request with flat params and no colon in its strings: nearly every query)
    nothing repeats, and neither the strings nor the tree need a scan."""
    if type(message) is dict:
        params = message.get("params")
        shallow = len(message) + (len(params) if type(params) is dict else 0)
    else:
        shallow = 0
    if line.count(b":") == shallow:
        return False
    separators = _STRING.sub(b"", line).count(b":")
    keys, pending = 0, [message]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            keys += len(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return separators != keys


# orjson writes the newline itself: no copy of the answer to append it.
_LINE = orjson.OPT_APPEND_NEWLINE


def encode_result(rid, result) -> bytes:
    return orjson.dumps({"id": rid, "result": result}, option=_LINE)


def encode_error(rid, error: DynamoError) -> bytes:
    details = {k: v for k, v in error.to_dict().items() if k != "id"}
    return orjson.dumps({"id": rid, "error": details}, option=_LINE)


def encode_event(rid, event: dict) -> bytes:
    """A progress message of a request still running; its answer comes later."""
    return orjson.dumps({"id": rid, "event": event}, option=_LINE)
