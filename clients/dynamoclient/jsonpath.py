"""Find the line of a JSON document where a path like `dataset[0].blocks[2]` starts.

The daemon names a bad object by its path; the client, which has the text,
turns that into a line number an operator can open in an editor.
"""

import json
import re

_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_SPACE = re.compile(r"[ \t\n\r]*")
_decoder = json.JSONDecoder()


def _steps(path: str) -> list:
    return [int(index) if index else key for key, index in _TOKEN.findall(path)]


def _skip_space(text, pos):
    return _SPACE.match(text, pos).end()


def line_of(text: str, path: str) -> int | None:
    """1-based line where the value at `path` begins, or None if it is not there."""
    pos = _skip_space(text, 0)
    try:
        for step in _steps(path):
            pos = _child(text, pos, step)
            if pos is None:
                return None
    except (ValueError, IndexError):
        return None
    return text.count("\n", 0, pos) + 1


def _child(text, pos, step):
    """Position of member `step` (a key or an index) of the container at `pos`."""
    opener = text[pos]
    if (opener == "{") != isinstance(step, str) or opener not in "{[":
        return None
    pos = _skip_space(text, pos + 1)
    index = 0
    while text[pos] not in "}]":
        if opener == "{":
            key, pos = json.decoder.scanstring(text, pos + 1)
            pos = _skip_space(text, _skip_space(text, pos) + 1)  # past ':'
            found = key == step
        else:
            found = index == step
        if found:
            return pos
        _, pos = _decoder.raw_decode(text, pos)
        pos = _skip_space(text, pos)
        if text[pos] == ",":
            pos = _skip_space(text, pos + 1)
        index += 1
    return None
