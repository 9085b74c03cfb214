"""`dynamo`'s light start: its JSON codec and its command splitting match what they
replace (orjson, shlex), and a plain run imports none of the slow modules."""

import os
import shlex
import subprocess
import sys

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dynamoclient
from dynamoclient import lightjson
from dynamoclient.dynamo import split_command

# What orjson reads and writes: strings (no lone surrogates: not UTF-8), 64-bit integers,
# finite floats, and nests of them.
TEXT = st.text(st.characters(blacklist_categories=("Cs",)))
SCALARS = (st.none() | st.booleans() | TEXT | st.integers(-2**63, 2**64 - 1)
           | st.floats(allow_nan=False, allow_infinity=False))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(TEXT, inner, max_size=4), max_leaves=20)


@given(VALUES)
def test_lightjson_reads_what_orjson_writes(value):
    assert lightjson.loads(orjson.dumps(value)) == value


@given(VALUES)
def test_orjson_reads_what_lightjson_writes(value):
    assert orjson.loads(lightjson.dumps(value)) == value


@pytest.mark.parametrize("text", ['{"a": [1, -2, 3.5e-3, -0.0, 1E+2], "b": {}, "c": []}',
                                  '"\\ud83d\\ude00 \\u00e9 \\/ \\"\\\\\\b\\f\\n\\r\\t"',
                                  ' [ true , false , null ] ', '"\\udc80"'])
def test_lightjson_reads_any_json_as_the_json_module_does(text):
    import json

    assert lightjson.loads(text.encode()) == json.loads(text)


@pytest.mark.parametrize("text", ['{"a" 1}', "[1, 2", '"open', "tru", "[1] 2", '"\\x"', ""])
def test_lightjson_refuses_what_is_not_json(text):
    with pytest.raises(ValueError):
        lightjson.loads(text.encode())


@given(st.text(st.sampled_from(" \t\r\nab.-='\"\\#$é")))
def test_a_command_splits_as_shlex_splits_it(command):
    try:
        expected = shlex.split(command)
    except ValueError as exc:   # an unclosed quote or a trailing backslash
        with pytest.raises(ValueError, match=str(exc)):
            split_command(command)
    else:
        assert split_command(command) == expected


def test_a_plain_run_imports_none_of_the_slow_modules(daemon, tmp_path):
    """`dynamo SCRIPT` starts a process per application, and its imports delay the
    application's first output: no argparse, orjson or X.509 code when no certificate is
    used, and none of re, json, socket, shlex or enum (the interpreter's own `_socket`
    and the light codec serve).  Run without site (`-S`), which may import some itself."""
    path = tmp_path / "app.py"
    path.write_text("print('hi')\n")
    slow = ("argparse", "orjson", "dynamoclient.x509", "re", "json", "socket", "shlex", "enum")
    code = ("import sys; from dynamoclient.dynamo import main; code = main(sys.argv[1:]); "
            f"print([m for m in {slow!r} if m in sys.modules], file=sys.stderr); sys.exit(code)")
    clients = os.path.dirname(os.path.dirname(dynamoclient.__file__))
    result = subprocess.run([sys.executable, "-S", "-c", code, f"{path} --an-option"],
                            capture_output=True, text=True, timeout=60,
                            env={**daemon.env, "X509_USER_PROXY": str(tmp_path / "none"),
                                 "PYTHONPATH": clients})
    assert (result.returncode, result.stdout, result.stderr) == (0, "hi\n", "[]\n")
