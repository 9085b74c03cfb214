"""Bad input at the commands an operator types: one line that names the problem, a
non-zero exit, never a Python traceback, and nothing changed."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dynamoclient.connection import Client, ConnectionFailed
from support.daemon import fresh_directory
from support.nobody import as_nobody
from support.views import snapshot


def one_line(result, fragment: str):
    """The command failed with exactly one line on standard error, holding `fragment`."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and fragment in result.stderr, result.stderr


def dynamod(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "dynamod", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_a_script_argument_with_an_unclosed_quote(daemon, tmp_path):
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    before = daemon.dynamo("--list").stdout
    for command in (f"{script} \"one", f"{script} one\\"):
        result = daemon.dynamo(command, check=False)
        one_line(result, f"dynamo: cannot split {command!r} into a script and its options")
        assert result.stdout == ""
    assert daemon.dynamo("--list").stdout == before   # nothing was submitted


@pytest.mark.parametrize("command", ["", "   ", "\t"])
def test_an_empty_script_argument_is_refused(daemon, command):
    """`dynamo ''` opened the console, and `dynamo '' -A` was told it had no script, while
    `dynamo '   '` was refused as empty: a script argument given empty is refused alike."""
    before = daemon.dynamo("--list").stdout
    for args in ([command], [command, "-A"]):
        result = daemon.dynamo(*args, input="", check=False)
        one_line(result, "dynamo: the script is empty")
        assert result.stdout == ""
    assert daemon.dynamo("--list").stdout == before   # nothing was submitted


@pytest.mark.parametrize("option, value", [("--max-line-bytes", "-5"),
                                           ("--max-connections", "0")])
def test_dynamod_refuses_a_count_that_is_not_positive(option, value):
    """As the configuration file refuses it for the same key."""
    result = dynamod(option, value, "--check-config")
    assert result.returncode == 2 and result.stdout == ""
    assert f"argument {option}: must be a positive integer, not {value!r}" in result.stderr


def test_dynamod_names_why_it_cannot_use_a_socket_path():
    root = fresh_directory()
    long_path = root / ("s" * 120 + ".sock")   # beyond the 108 bytes of sun_path
    result = dynamod("--state-dir", root / "state", "--socket", long_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.endswith(f"cannot use socket {long_path}: AF_UNIX path too long"), last


def test_a_socket_the_account_may_not_reach_is_not_called_a_stopped_daemon(daemon):
    """A socket behind a directory closed to the caller: the message says to check the
    permissions, not that the daemon is not running."""
    closed = fresh_directory()
    os.chmod(closed, 0o700)
    path = str(closed / "dynamod.sock")
    os.symlink(daemon.socket, path)

    def connect(where):
        try:
            Client(where).close()
            return "connected"
        except ConnectionFailed as exc:
            return str(exc)

    message = as_nobody(connect, path)
    assert message.startswith(f"cannot connect to dynamod at {path}: Permission denied")
    assert "check the permissions of the socket and of its directories" in message
    assert "is the daemon running" not in message
    assert connect(path) == "connected"   # root may: the daemon is there


@pytest.mark.parametrize("text, kind", [("[]", "an array"), ('"sites"', "a string"),
                                        ("42", "a number"), ("null", "null")])
def test_a_document_that_is_not_an_object(daemon, text, kind):
    before = snapshot(daemon)
    result = daemon.inject("-", input=text, check=False)
    one_line(result, f"dynamo-inject: <stdin>: the document must be a JSON object with the "
                     f"keys site, group, dataset, datasetreplica; it is {kind}")
    assert snapshot(daemon) == before


def test_an_option_repeated_to_dynamo_exec_auth_is_refused(daemon, tmp_path):
    """The original refused several scripts or titles at once; taking the last one
    silently would authorize something other than what was typed."""
    script = tmp_path / "w.py"
    script.write_text("print('w')\n")
    for args, option in ((["-x", script, "-t", "a", "-t", "b"], "-t/--title"),
                         (["-x", script, "-x", script, "-t", "a"], "-x/--executable"),
                         (["-D", "-t", "a", "-u", "root", "-u", "jane"], "-u/--user")):
        result = daemon.exec_auth(*args, check=False)
        assert result.returncode == 2
        one_line(result, f"dynamo-exec-auth: {option} given twice: one script, one title "
                         f"and one user at a time")
    assert daemon.exec_auth("-L").stdout.splitlines()[1:] == []


@pytest.mark.parametrize("hours", ["inf", "-inf", "nan", "1e400"])
def test_a_time_out_that_is_not_a_finite_number(daemon, tmp_path, hours):
    """`-m inf` reads as 'no limit' to a person, but JSON has no infinity: it is refused
    before anything is sent, saying what to write instead."""
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    before = daemon.dynamo("--list").stdout
    result = daemon.dynamo(f"--timeout={hours}", script, check=False)
    assert (result.returncode, result.stdout) == (2, "")
    one_line(result, f"dynamo: argument -m/--timeout: HOURS must be a number (0: the "
                     f"server's default; negative: no limit), not {hours!r} (see --help)")
    assert daemon.dynamo("--list").stdout == before


def test_dynamo_exec_auth_lists_a_scripts_authorizations(daemon, tmp_path):
    """`--list --executable PATH`, as the original took it, shows that script's entries
    only (and --title, --user narrow alike), not every script's."""
    tidy, other = tmp_path / "tidy.py", tmp_path / "other.py"
    tidy.write_text("print('tidy')\n")
    other.write_text("print('other')\n")
    daemon.exec_auth("-x", tidy, "-t", "tidy")
    daemon.exec_auth("-x", tidy, "-t", "tidy", "-u", "root")
    daemon.exec_auth("-x", other, "-t", "other")

    def listed(*args):
        return sorted(line.split()[:2]
                      for line in daemon.exec_auth("-L", *args).stdout.splitlines()[1:])

    assert listed() == [["other", "ALL"], ["tidy", "ALL"], ["tidy", "root"]]
    assert listed("-x", tidy) == [["tidy", "ALL"], ["tidy", "root"]]
    assert listed("-x", other) == [["other", "ALL"]]
    assert listed("-t", "tidy", "-u", "root") == [["tidy", "root"]]
    assert listed("-u", "ALL") == [["other", "ALL"], ["tidy", "ALL"]]
    other.write_text("print('changed')\n")   # its authorization no longer covers it
    assert listed("-x", other) == []
    missing = daemon.exec_auth("-L", "-x", tmp_path / "none.py", check=False)
    one_line(missing, f"dynamo-exec-auth: cannot read {tmp_path / 'none.py'}: No such file")


def test_ctrl_c_ends_dynamo_inject_with_one_line_and_130(daemon):
    """An operator who ran `dynamo-inject -` by mistake, or tires of waiting, presses
    Ctrl-C: one line that says what became of the documents, 128 + SIGINT as shells
    give, no traceback."""
    process = subprocess.Popen([sys.executable, "-m", "dynamoclient.inject", "-"],
                               env=daemon.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while "pipe" not in Path(f"/proc/{process.pid}/wchan").read_text():  # reading stdin
            assert time.monotonic() < deadline, "dynamo-inject never read its standard input"
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.stdin.close()
    assert (process.returncode, out) == (130, "")
    assert err == ("dynamo-inject: interrupted; each document is applied whole or not at all: "
                   "--dry-run shows what is left to do\n")


def test_a_configuration_that_is_not_toml_text(tmp_path):
    binary = tmp_path / "dynamod.toml"
    binary.write_bytes(b"[daemon]\nlog_level = \"\xd0\x00\"\n")
    result = dynamod("--config", binary, "--check-config")
    assert result.returncode == 2
    one_line(result, f"dynamod: {binary}: not UTF-8 text (invalid continuation byte at "
                     f"byte 22), so not a TOML configuration")


def test_the_originals_json_configuration_is_told_apart(tmp_path):
    """An operator of the original points --config at its server_config.json."""
    original = tmp_path / "server_config.json"
    original.write_text('{\n  "user": "dynamo",\n  "logging": {"level": "info"}\n}\n')
    result = dynamod("--config", original, "--check-config")
    assert result.returncode == 2
    one_line(result, "; it looks like JSON, as the original's server_config.json was: "
                     "dynamod reads TOML, and systemd/dynamod.toml.example shows every key")


def test_sighup_with_a_configuration_that_is_not_text(start_daemon):
    """The reload is refused with one line in the log, the daemon goes on serving: no
    traceback from the signal's callback."""
    daemon = start_daemon(config={"daemon": {"log_level": "INFO"}})
    config = daemon.state_dir.parent / "dynamod.toml"
    config.write_bytes(b"\xd0\x00 not text")
    daemon.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "reload refused" not in daemon.log():
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)
    assert f"reload refused, nothing changed: {config}: not UTF-8 text" in daemon.log()
    assert "Traceback" not in daemon.log()
    assert daemon.call("ping") is not None


@pytest.mark.parametrize("size, message", [
    ("inf", "not a size: 'inf' (say 500TB, 12000000 or unlimited)"),
    ("1e30", "'1e30' is more than a quota holds (9.2 EB at most; no limit is 'unlimited')"),
    ("-1", "a quota is not negative: '-1' (the original's negative quota, no limit, is "
           "'unlimited' here)")])
def test_a_quota_that_is_no_size(daemon, size, message):
    """`inf` and a size beyond 64 bits were tracebacks; the original's negative quota
    (no limit) is told its name here."""
    result = daemon.client_command("site_usage", "--set-quota", "T2_US_XYZ", "AnalysisOps",
                                   size, check=False)
    assert (result.returncode, result.stdout) == (2, "")
    assert "Traceback" not in result.stderr
    one_line(result, f"dynamo-site-usage: {message} (see --help)")


def test_a_key_without_its_certificate_is_refused(daemon, tmp_path):
    """`--key` alone was ignored: the command went on as the Unix account (or the
    default proxy) as if the key had been used."""
    key = tmp_path / "userkey.pem"
    key.write_text("not read\n")
    key.chmod(0o600)
    before = snapshot(daemon)
    for tool, args in (("dynamo", ["--list"]), ("inject", ["--site", "T2_NEW"]),
                       ("exec_auth", ["-L"]), ("user_auth", ["-L"]),
                       ("site_usage", ["--partitions"])):
        result = daemon.client_command(tool, *args, "-k", key, check=False)
        assert result.returncode == 1, (tool, result.stdout)
        one_line(result, f": --key {key} needs --cert FILE, the certificate it belongs to")
    assert snapshot(daemon) == before


@pytest.mark.parametrize("args, message", [
    (["--user", "jane"], "dynamo: --user goes with --list\n"),
    (["--limit", "5"], "dynamo: --limit goes with --list\n"),
    (["--list", "--limit", "0"],
     "dynamo: --limit 0: give a number of applications, from 1 to 2^63 - 1\n"),
    (["--list", "--limit", str(2**63)],
     f"dynamo: --limit {2**63}: give a number of applications, from 1 to 2^63 - 1\n")])
def test_dynamo_list_options_alone_or_out_of_range(daemon, tmp_path, args, message):
    """`--user` and `--limit` narrow --list only: with a script they were ignored (the
    script ran), `--limit 0` listed nothing, as if there were no applications, and a
    limit past 64 bits was refused in the protocol's terms."""
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    result = daemon.dynamo(*args, *([] if "--list" in args else [script]), check=False)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message)


def test_a_dn_that_does_not_parse_says_which_forms_do(daemon):
    result = daemon.client_command("user_auth", "--user", "jane", "--dn", "Jane Doe", "--yes",
                                   check=False)
    one_line(result, "dynamo-user-auth: invalid DN 'Jane Doe': give it in slash form "
                     "(/DC=org/DC=example/CN=Jane Doe) or comma form (CN=Jane Doe,DC=example,"
                     "DC=org) [invalid_params]")
    assert "jane" not in daemon.client_command("user_auth", "--list").stdout


@pytest.mark.parametrize("email", ["jane example.org", "jane", "jane@", "@example.org",
                                   "jane@@example.org", "jane@exa mple.org", "jane@example\x07"])
def test_an_e_mail_address_that_is_not_one(daemon, email):
    """A typo in an e-mail address was stored as it was typed."""
    result = daemon.client_command("user_auth", "--user", "jane", "--email", email, "--yes",
                                   check=False)
    one_line(result, f"dynamo-user-auth: invalid e-mail address {email!r}: name@domain, "
                     f"or \"\" for none [invalid_params]")
    assert "jane" not in daemon.client_command("user_auth", "--list").stdout
    daemon.client_command("user_auth", "--user", "jane", "--email", "jane@example.org", "--yes")
    result = daemon.client_command("user_auth", "--user", "jane", "--email", email,
                                   check=False)
    assert result.returncode != 0
    assert "jane@example.org" in daemon.client_command("user_auth", "--user", "jane").stdout


def test_dynamod_detach_with_a_state_directory_it_cannot_make(tmp_path):
    """As in the foreground, one line: --detach made the directory and opened its log
    before it said anything, and a failure there was a traceback (twice: the
    background child's too)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = dynamod("--state-dir", blocker / "state", "--detach")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"dynamod: state directory {blocker / 'state'} is not writable: "
                             f"Not a directory\n")


def test_dynamod_check_of_a_directory_says_so(tmp_path):
    result = dynamod("check", "--database", tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"dynamod check: {tmp_path}: a directory, not a database file\n"


def test_authorizing_the_same_script_again_changes_nothing(daemon, tmp_path):
    """As the original meant to (its check compared hex digits in two cases, so it
    always recorded again): the same content for the same title and user is
    'already authorized', the entry and its date untouched; new content replaces it."""
    script = tmp_path / "tidy.py"
    script.write_text("print('tidy')\n")
    first = daemon.exec_auth("-x", script, "-t", "tidy").stdout
    assert first.startswith(f"authorized: {script} (sha256 ")
    listed = daemon.exec_auth("-L").stdout
    time.sleep(1.1)   # a new entry would show a later date
    again = daemon.exec_auth("-x", script, "-t", "tidy").stdout
    assert again == "already " + first
    assert daemon.exec_auth("-L").stdout == listed
    script.write_text("print('tidier')\n")
    assert daemon.exec_auth("-x", script, "-t", "tidy").stdout.startswith("replaced: ")


def test_dynamo_site_usage_says_when_no_partition_is_defined(daemon):
    """`--partitions` printed nothing at all, and the usage's note named a protocol
    method as if it were a command."""
    how = ("the superuser defines partitions in the configuration's [partitions] or with "
           "the protocol's set_partition")
    listed = daemon.client_command("site_usage", "--partitions")
    assert (listed.stdout, listed.stderr) == ("", f"no partition is defined ({how})\n")
    usage = daemon.client_command("site_usage")
    assert (usage.stdout, usage.stderr) == ("", f"no partition is defined ({how})\n")


def test_dynamo_site_usage_says_which_glob_matches_nothing(daemon):
    """It said that no partition was defined when the site's glob matched no site."""
    daemon.inject("--site", "T2_A")
    daemon.call("set_partition", name="Ops", condition='group == "AnalysisOps"')
    for args, said in (
            (["--site", "nomatch"], "no site matches 'nomatch'"),
            (["--partition", "Nope*"], "no partition matches 'Nope*' (dynamo-site-usage "
                                       "--partitions lists them)")):
        result = daemon.client_command("site_usage", *args)
        assert (result.stdout, result.stderr) == ("", said + "\n")
    assert daemon.client_command("site_usage", "--site", "T2_*").stdout.count("T2_A") == 1


@pytest.mark.parametrize("option, spec, most", [
    ("--site", "S1,h,disk,b,ready,extra", "5: name,host,storage_type,backend,status"),
    ("--group", "G,Block,x", "2: name,olevel"),
    ("--dataset", "/a/b/RAW,valid,data,x", "3: name,status,data_type")])
def test_dynamo_inject_refuses_a_field_too_many(daemon, option, spec, most):
    """The last field took the rest: the daemon then refused a status of 'ready,extra'."""
    before = snapshot(daemon)
    result = daemon.inject(option, spec, check=False)
    assert result.returncode == 1
    one_line(result, f"dynamo-inject: {option} {spec!r}: too many fields, "
                     f"{spec.count(',') + 1} (at most {most})")
    assert snapshot(daemon) == before


def test_dynamo_user_auth_options_that_did_nothing(daemon):
    """A target without a role, and a user's details given to --revoke, were dropped
    without a word (exit 0); `--user NAME` alone printed nothing; `--list --target`
    listed every target."""
    def user_auth(*args, check=True):
        return daemon.client_command("user_auth", *args, check=check)

    user_auth("-u", "jane", "-m", "jane@example.org", "-r", "operator", "-g", "inventory",
              "-y")
    user_auth("-u", "jane", "-r", "admin", "-g", "application", "-y")
    before = user_auth("-L").stdout
    for args, message in (
            (["-u", "jane", "-g", "inventory"],
             "--target needs --role ROLE (the role granted or revoked on it)"),
            (["-u", "jane", "-m", "new@example.org", "-r", "admin", "-R"],
             "--revoke only takes a role back: change the user's e-mail, DNs or accounts in "
             "a command of its own")):
        result = user_auth(*args, check=False)
        assert (result.returncode, result.stderr) == (2, f"dynamo-user-auth: {message}\n")
    assert user_auth("-L").stdout == before
    assert user_auth("-u", "jane").stdout == "user jane: e-mail jane@example.org; DNs -; " \
                                             "accounts -\n"
    assert [line.split() for line in user_auth("-L", "-g", "inventory").stdout.splitlines()] \
        == [["USER", "ROLE", "TARGET"], ["jane", "operator", "inventory"]]


def test_dynamo_exec_auth_all_users_goes_with_delete_alone(daemon, tmp_path):
    script = tmp_path / "w.py"
    script.write_text("print('w')\n")
    for args, message in (
            (["-x", script, "-t", "w", "--all-users"],
             "--all-users goes with --delete (every authorization of the title)"),
            (["-D", "-t", "w", "--all-users", "-u", "root"],
             "--delete takes --user USER or --all-users, not both")):
        result = daemon.exec_auth(*args, check=False)
        assert (result.returncode, result.stderr) == (2, f"dynamo-exec-auth: {message}\n")
    assert daemon.exec_auth("-L").stdout.splitlines()[1:] == []
    # the original's habit of naming the script when revoking: it need not exist any more
    daemon.exec_auth("-x", script, "-t", "w")
    script.unlink()
    assert daemon.exec_auth("-D", "-t", "w", "-x", script).stdout == "revoked: w for ALL\n"


@pytest.mark.parametrize("args, message", [
    (["-W", "-t", "tidy"], "--write-request needs a script: the console is read-only and "
                           "interactive"),
    (["-A"], "--asynchronous needs a script: the console is read-only and interactive"),
    (["--poll", "1", "--kill", "1"], "--poll and --kill: one at a time"),
    (["--list", "SCRIPT"], "--list takes no script: run 'SCRIPT' in a command of its own")])
def test_dynamo_options_it_would_drop(daemon, tmp_path, args, message):
    """-W or -A without a script opened the read-only console, or started one nobody
    could type into; of --poll, --kill and --list only the first counted, and a script
    beside them was not run."""
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    args = [str(script) if a == "SCRIPT" else a for a in args]
    message = message.replace("SCRIPT", str(script))
    before = daemon.dynamo("--list").stdout
    result = daemon.dynamo(*args, input="", check=False)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"dynamo: {message}\n")
    assert daemon.dynamo("--list").stdout == before


@pytest.mark.parametrize("option", ["--poll", "--kill"])
@pytest.mark.parametrize("value", ["0", "-3", "x", str(2**63)])
def test_dynamo_poll_and_kill_take_an_application_number(daemon, option, value):
    """An id that no application can have is refused before anything is sent: past 64
    bits it was an error in the protocol's terms."""
    result = daemon.dynamo(option, value, check=False)
    assert result.returncode == 2 and result.stdout == ""
    one_line(result, f"dynamo: argument {'-p/--poll' if option == '--poll' else '-x/--kill'}: "
                     f"ID must be an application's number (1 or more, as dynamo --list "
                     f"shows), not {value!r} (see --help)")


@pytest.mark.parametrize("tool, args, message", [
    ("dynamo", ["--poll", "0"], "argument -p/--poll: ID must be an application's number"),
    ("dynamo", ["-m", "abc", "s.py"], "argument -m/--timeout: HOURS must be a number"),
    ("dynamo", ["--limit", "many", "--list"], "argument --limit: invalid int value: 'many'"),
    ("user_auth", ["-u", "jane", "-g", "history"], "argument -g/--target: invalid choice: "
                                                   "'history'"),
    ("exec_auth", ["--bogus"], "unrecognized arguments: --bogus"),
    ("inject", ["--site"], "argument -s/--site: expected one argument"),
    ("site_usage", ["--set-quota", "T2", "Ops"], "argument --set-quota: expected 3 arguments"),
])
def test_an_argument_error_is_one_line_with_exit_code_2(tool, args, message, tmp_path):
    """argparse's own refusals, as the commands' own are: `PROG: what is wrong`, not
    the usage block above an error line; before looking for a daemon."""
    result = subprocess.run([sys.executable, "-m", f"dynamoclient.{tool}", *args],
                            env={**os.environ, "DYNAMO_SOCKET": str(tmp_path / "none.sock")},
                            capture_output=True, text=True, timeout=30)
    prog = "dynamo" if tool == "dynamo" else f"dynamo-{tool.replace('_', '-')}"
    assert (result.returncode, result.stdout) == (2, "")
    one_line(result, f"{prog}: {message}")
    assert result.stderr.startswith(f"{prog}: ") and \
        result.stderr.endswith(" (see --help)\n"), result.stderr


@pytest.mark.parametrize("tool, args", [("dynamo", ["--list"]), ("user_auth", ["--list"])])
def test_a_tool_whose_output_is_closed_ends_quietly(daemon, tool, args):
    """`dynamo --list | head -1`: the reader gone, the tool ends with 128 + SIGPIPE and
    nothing on standard error (it was a BrokenPipeError traceback)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "wb") as closed:
        result = subprocess.run([sys.executable, "-m", f"dynamoclient.{tool}", *args],
                                stdout=closed, stderr=subprocess.PIPE, text=True,
                                env=daemon.env, timeout=60)
    assert (result.returncode, result.stderr) == (141, "")


@pytest.mark.parametrize("args", [["check"], ["--check-config"], ["backup", "{dest}"]])
def test_dynamod_whose_output_is_closed_ends_quietly(daemon, args, tmp_path):
    """`dynamod check | head -0` and `dynamod --check-config | head -0`: 141 and nothing
    on standard error, as the clients (it was a BrokenPipeError traceback)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    args = [arg.format(dest=tmp_path / "copy.db") for arg in args]
    with os.fdopen(write_end, "wb") as closed:
        result = subprocess.run([sys.executable, "-m", "dynamod", *args,
                                 *([] if args[0] == "backup" else
                                   ["--state-dir", str(daemon.state_dir)])],
                                stdout=closed, stderr=subprocess.PIPE, text=True,
                                env=daemon.env, timeout=60)
    assert (result.returncode, result.stderr) == (141, "")
