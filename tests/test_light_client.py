"""`dynamo`'s light start: its JSON codec and its command splitting match what they
replace (orjson, shlex), and a plain run imports none of the slow modules."""

import ast
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
# finite floats, and nests of them.  Strings of what JSON escapes, and the integers at the
# edges, drawn besides: any character alone put a quote or a backslash in 3 of 100
# examples, and an integer past 2**53 in 8; now 38 to 41, and 23 to 26, do.
TEXT = (st.text(st.characters(blacklist_categories=("Cs",)))
        | st.text(st.sampled_from('"\\/\b\f\n\r\t\x00\x1f\x7fa\u2028\U0001f600')))
SCALARS = (st.none() | st.booleans() | TEXT | st.integers(-2**63, 2**64 - 1)
           | st.sampled_from([2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, -2**63])
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
    used, and none of re, json, socket, shlex, enum, types or os (the interpreter's own
    `_socket` and `posix` and the light codec serve).  Run without site (`-S`), which
    may import some itself."""
    path = tmp_path / "app.py"
    path.write_text("print('hi')\n")
    slow = ("argparse", "orjson", "dynamoclient.x509", "re", "json", "socket", "shlex", "enum",
            "types", "os")
    code = ("import sys; from dynamoclient.dynamo import main; code = main(sys.argv[1:]); "
            f"print([m for m in {slow!r} if m in sys.modules], file=sys.stderr); sys.exit(code)")
    clients = os.path.dirname(os.path.dirname(dynamoclient.__file__))
    result = subprocess.run([sys.executable, "-S", "-c", code, f"{path} --an-option"],
                            capture_output=True, text=True, timeout=60,
                            env={**daemon.env, "X509_USER_PROXY": str(tmp_path / "none"),
                                 "PYTHONPATH": clients})
    # the proxy $X509_USER_PROXY names is not there: said, and no X.509 code is loaded
    assert (result.returncode, result.stdout, result.stderr) == (
        0, "hi\n", f"warning: proxy {tmp_path / 'none'} ($X509_USER_PROXY) not used: no such "
                   f"file; continuing as the Unix account\n[]\n")


SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(dynamoclient.__file__))),
                      "scripts", "dynamo")
SITE_PACKAGES = f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"


def _install(tmp_path, bin_dir: str, packages: str):
    """The `dynamo` script copied to `bin_dir` and the package linked into `packages`."""
    for directory in (bin_dir, packages):
        (tmp_path / directory).mkdir(parents=True)
    with open(SCRIPT) as f:
        (tmp_path / bin_dir / "dynamo").write_text(f.read())
    (tmp_path / packages / "dynamoclient").symlink_to(os.path.dirname(dynamoclient.__file__))
    app = tmp_path / "app.py"
    app.write_text("print('hi')\n")
    return tmp_path / bin_dir / "dynamo", app


def _run_without_site(daemon, tmp_path, script, app, **env):
    """The script as its #! line runs it (`python3 -S`), PYTHONPATH unset."""
    env = {**{k: v for k, v in daemon.env.items() if k != "PYTHONPATH"},
           "X509_USER_PROXY": str(tmp_path / "none"), **env}
    return subprocess.run([sys.executable, "-S", "-X", "importtime", str(script), str(app)],
                          capture_output=True, text=True, timeout=60, env=env)


def _imported(stderr: str) -> set:
    return {line.rpartition("|")[2].strip() for line in stderr.splitlines()
            if line.startswith("import time:")}


def test_the_script_finds_its_package_next_to_it_without_site(daemon, tmp_path):
    """Installed in a prefix (a virtual environment): {prefix}/bin/dynamo finds
    {prefix}/lib/pythonX.Y/site-packages itself, and `site` is never imported."""
    script, app = _install(tmp_path, "prefix/bin", f"prefix/{SITE_PACKAGES}")
    result = _run_without_site(daemon, tmp_path, script, app)
    assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr
    imported = _imported(result.stderr)
    assert "dynamoclient.dynamo" in imported and "site" not in imported


def test_the_script_installed_elsewhere_sets_up_site(daemon, tmp_path):
    """Not beside its package (here: the package in the user's site directory), the
    script sets `site` up as the interpreter would have, and runs as usual."""
    script, app = _install(tmp_path, "elsewhere", f"userbase/{SITE_PACKAGES}")
    result = _run_without_site(daemon, tmp_path, script, app,
                               PYTHONUSERBASE=str(tmp_path / "userbase"))
    assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr
    assert "site" in _imported(result.stderr)


def test_the_script_exits_with_the_applications_code(daemon, tmp_path):
    """The script ends with os._exit: the exit code and every line of output still
    come through."""
    script, app = _install(tmp_path, "prefix/bin", f"prefix/{SITE_PACKAGES}")
    app.write_text("import sys\nprint('\\n'.join(map(str, range(2000))))\nsys.exit(7)\n")
    result = _run_without_site(daemon, tmp_path, script, app)
    assert result.returncode == 7, result.stderr
    assert "failed: exit code 7" in result.stderr
    assert result.stdout.splitlines() == [str(i) for i in range(2000)]


def _paths_with_os(env: dict) -> list:
    """The rule of dynamoclient.paths as os.path writes it."""
    def get(name):
        return env.get(name)

    home = get("HOME")
    if home is None:
        import pwd

        home = pwd.getpwuid(os.getuid()).pw_dir
    home = home.rstrip("/") or "/"
    state = os.path.join(get("XDG_STATE_HOME") or os.path.join(home, ".local", "state"),
                         "dynamo")
    personal = os.path.join(state, "dynamod.sock")
    socket = get("DYNAMO_SOCKET") or (
        personal if os.path.exists(personal) or not os.path.exists("/run/dynamo/dynamod.sock")
        else "/run/dynamo/dynamod.sock")
    proxy = get("X509_USER_PROXY")
    if not proxy:
        proxy = f"/tmp/x509up_u{os.getuid()}"
        proxy = proxy if os.path.isfile(proxy) else None
    return [state, socket, proxy]


@pytest.mark.parametrize("env", [
    {}, {"HOME": ""}, {"HOME": "/"}, {"HOME": "/home/jane/"}, {"HOME": "rel"},
    {"HOME": "/h", "XDG_STATE_HOME": ""}, {"HOME": "/h", "XDG_STATE_HOME": "/x//"},
    {"HOME": "/h", "XDG_STATE_HOME": "/"}, {"HOME": "/h", "XDG_STATE_HOME": "st"},
    {"HOME": "/h", "DYNAMO_SOCKET": "/s/d.sock"}, {"HOME": "/h", "DYNAMO_SOCKET": ""},
    {"HOME": "/h\udcff", "X509_USER_PROXY": "/etc/hostname"},
    {"HOME": "/h", "X509_USER_PROXY": "/etc"}, {"HOME": "/h", "X509_USER_PROXY": "/no/such"}])
def test_the_paths_without_os_follow_the_rule_as_os_path_writes_it(env, tmp_path):
    """dynamoclient.paths reads the environment and the files through `posix` when `os`
    is not loaded (as in `dynamo`): the same answers as os.path gives."""
    code = ("import sys; from dynamoclient import paths; "
            "print(repr([paths.state_dir(), paths.client_socket(), paths.default_proxy(), "
            "'os' in sys.modules]))")
    clients = os.path.dirname(os.path.dirname(dynamoclient.__file__))
    env = {key: os.fsencode(value) for key, value in env.items()}
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True,
                            timeout=60, cwd=tmp_path, env={**env, b"PYTHONPATH": clients.encode()})
    assert result.returncode == 0, result.stderr
    decoded = {os.fsdecode(key): os.fsdecode(value) for key, value in env.items()}
    assert ast.literal_eval(result.stdout.decode(errors="surrogateescape")) == \
        [*_paths_with_os(decoded), False]
