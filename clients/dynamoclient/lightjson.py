"""JSON for a command's few small messages, in plain Python.

`dynamo` starts a process per application, and that start delays the
application's first output.  The json module imports `re` (and with it
`enum`, `functools`...: about 5 ms), orjson more (see `connection._codec`);
the messages of a run are a request and a few short answers, which this
module writes and reads in well under a millisecond.  It writes what orjson
writes for the same values (NaN and infinities as null) and reads any JSON.
"""

_ESCAPED = {i: f"\\u{i:04x}" for i in range(0x20)}
_ESCAPED.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("\b"): "\\b", ord("\f"): "\\f",
                 ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
_UNESCAPED = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
              "t": "\t"}
_WORDS = {"true": True, "false": False, "null": None}
_SPACE = " \t\n\r"
_NUMBER = frozenset("+-0123456789.eE")


def dumps(obj) -> bytes:
    return _text(obj).encode()


def _text(obj) -> str:
    if isinstance(obj, str):
        return '"' + obj.translate(_ESCAPED) + '"'
    if obj is None or obj is True or obj is False:
        return "null" if obj is None else "true" if obj else "false"
    if isinstance(obj, int):
        return int.__repr__(obj)
    if isinstance(obj, float):
        finite = obj - obj == 0   # NaN and infinities give NaN
        return float.__repr__(obj) if finite else "null"
    if isinstance(obj, dict):
        return "{" + ",".join(_key(k) + ":" + _text(v) for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(_text(v) for v in obj) + "]"
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _key(key) -> str:
    if not isinstance(key, str):
        raise TypeError("dict keys must be strings")
    return _text(key)


def loads(data: bytes | str):
    text = data.decode() if isinstance(data, (bytes, bytearray)) else data
    value, end = _value(text, _skip(text, 0))
    if _skip(text, end) != len(text):
        raise ValueError(f"extra data at character {end} of a JSON message")
    return value


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in _SPACE:
        at += 1
    return at


def _value(text: str, at: int):
    """(the value that starts at `at`, the index after it)"""
    first = text[at:at + 1]
    if first == '"':
        return _string(text, at + 1)
    if first == "{":
        return _object(text, _skip(text, at + 1))
    if first == "[":
        return _array(text, _skip(text, at + 1))
    for word, value in _WORDS.items():
        if text.startswith(word, at):
            return value, at + len(word)
    end = at
    while end < len(text) and text[end] in _NUMBER:
        end += 1
    number = text[at:end]
    if not number:
        raise ValueError(f"no JSON value at character {at}")
    if number.isdigit() or (number[0] == "-" and number[1:].isdigit()):
        return int(number), end
    return float(number), end


def _string(text: str, at: int) -> tuple[str, int]:
    parts = []
    while True:
        quote, escape = text.find('"', at), text.find("\\", at)
        if quote < 0:
            raise ValueError("unterminated JSON string")
        if escape < 0 or quote < escape:
            parts.append(text[at:quote])
            return "".join(parts), quote + 1
        parts.append(text[at:escape])
        kind = text[escape + 1:escape + 2]
        if kind == "u":
            code, at = int(text[escape + 2:escape + 6], 16), escape + 6
            if 0xD800 <= code < 0xDC00 and text.startswith("\\u", at):
                low = int(text[at + 2:at + 6], 16)
                if 0xDC00 <= low < 0xE000:
                    code, at = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00), at + 6
            parts.append(chr(code))
        elif kind in _UNESCAPED:
            parts.append(_UNESCAPED[kind])
            at = escape + 2
        else:
            raise ValueError(f"invalid escape in a JSON string at character {escape}")


def _object(text: str, at: int) -> tuple[dict, int]:
    result = {}
    if text[at:at + 1] == "}":
        return result, at + 1
    while True:
        if text[at:at + 1] != '"':
            raise ValueError(f"expected a key at character {at}")
        key, at = _string(text, at + 1)
        at = _skip(text, at)
        if text[at:at + 1] != ":":
            raise ValueError(f"expected ':' at character {at}")
        result[key], at = _value(text, _skip(text, at + 1))
        ended, at = _next_item(text, at, "}")
        if ended:
            return result, at


def _array(text: str, at: int) -> tuple[list, int]:
    result = []
    if text[at:at + 1] == "]":
        return result, at + 1
    while True:
        value, at = _value(text, at)
        result.append(value)
        ended, at = _next_item(text, at, "]")
        if ended:
            return result, at


def _next_item(text: str, at: int, close: str) -> tuple[bool, int]:
    """After an item: (whether `close` ends the container, where the next part starts)."""
    at = _skip(text, at)
    if text[at:at + 1] == close:
        return True, at + 1
    if text[at:at + 1] != ",":
        raise ValueError(f"expected ',' or '{close}' at character {at}")
    return False, _skip(text, at + 1)
