"""What operators of the original Dynamo expect of the clients: Ctrl-C on a real
terminal, shell exit codes, the original's option names, and short messages."""

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

from support.daemon import EXAMPLES
from support.terminal import read_until, wait_until_waiting_for_input

DATASET = "pandaf/010/DoubleMuon+Run2017F-31Mar2018-v1+MINIAOD"
BLOCK = "48dbe0c6-36fa-11e8-a5e2-ac1f6b05e848"
LFN = f"/store/user/paus/{DATASET}/6C7F843A-4837-E811-93AC-14187741208F.root"
SLEEPER = "import time\nprint('started', flush=True)\ntime.sleep(60)\nprint('finished')\n"


ORIGINAL_SIZES = f"""
ds = inventory.datasets[{DATASET!r}]
block = next(iter(ds.blocks))
inventory.update(DatasetReplica(ds.name, 'T3_US_XYZ'))
for size in (-1, 0):
    built = BlockReplica(block.full_name(), 'T3_US_XYZ', None, False, size, 5)
    got = inventory.update(built)
    print(repr(built) == repr(eval(repr(built))), got.size, got.is_complete(),
          repr(inventory.update(eval(repr(got)))) == repr(got))
got = inventory.update(BlockReplica(block.full_name(), 'T3_US_XYZ', files=[{LFN!r}]))
print(repr(got).endswith(f",({LFN!r},))"), repr(inventory.update(eval(repr(got)))) == repr(got))
"""


def test_a_block_replica_is_built_and_printed_as_the_original_did(seeded, tmp_path):
    """A size below 0 is a full replica (the block's size), 0 without files an empty
    one; a replica prints as the call that makes it again (an incomplete one with its
    LFNs, a built complete one with size -1)."""
    script = tmp_path / "sizes.py"
    script.write_text(ORIGINAL_SIZES)
    assert seeded.dynamo(script).stdout.splitlines() == [
        "True 165438 True True", "True 0 False True", "True True"]


def on_terminal(daemon, *args):
    """The real `dynamo` on a new pseudo-terminal (its controlling terminal, as in a
    shell): (pid, master fd)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["DYNAMO_SOCKET"] = daemon.socket
        os.execv(sys.executable, [sys.executable, "-m", "dynamoclient.dynamo", *args])
    return pid, fd


def exit_code(pid, timeout=30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError("dynamo did not end")


def drain(fd) -> bytes:
    """What is left to read on the terminal once its process ended."""
    data = b""
    while select.select([fd], [], [], 0.2)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: no process has the terminal any more
            break
        if not chunk:
            break
        data += chunk
    return data


def latest(daemon) -> dict:
    return daemon.call("list_applications", limit=1)["applications"][0]


def sleeping(daemon, tmp_path):
    """The real `dynamo` (no terminal) running SLEEPER, once it has started: (the
    process, the application's id)."""
    path = tmp_path / "sleeper.py"
    path.write_text(SLEEPER)
    runner = subprocess.Popen([sys.executable, "-m", "dynamoclient.dynamo", str(path)],
                              env=daemon.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    assert runner.stdout.readline() == "started\n"
    return runner, latest(daemon)["id"]


# ------------------------------------------------------------------ Ctrl-C
def test_ctrl_c_in_the_console_interrupts_the_line_and_the_statement(seeded):
    pid, fd = on_terminal(seeded)
    read_until(fd, b">>> ")
    os.write(fd, b"1 +")
    read_until(fd, b"1 +")
    wait_until_waiting_for_input(latest(seeded)["pid"])
    os.write(fd, b"\x03")
    assert b"KeyboardInterrupt" in read_until(fd, b">>> ")
    os.write(fd, b"6 * 7\n")
    assert b"42" in read_until(fd, b">>> ")

    os.write(fd, b"import time; print('a' + 'sleep'); time.sleep(60)\n")
    read_until(fd, b"asleep\r\n")   # the statement runs (the line is no longer being read)
    started = time.monotonic()
    os.write(fd, b"\x03")
    output = read_until(fd, b">>> ")
    assert b"KeyboardInterrupt" in output and time.monotonic() - started < 10
    assert b"Kill application" not in output

    os.write(fd, b"sorted(inventory.sites)\n")
    assert b"['T2_US_XYZ', 'T3_US_XYZ']" in read_until(fd, b">>> ")
    assert latest(seeded)["status"] == "run"
    os.write(fd, b"\x04")
    assert exit_code(pid) == 0
    assert latest(seeded)["status"] == "done"


def test_ctrl_c_on_a_script_asks_before_killing(seeded, tmp_path):
    path = tmp_path / "sleeper.py"
    path.write_text(SLEEPER)
    pid, fd = on_terminal(seeded, str(path))
    read_until(fd, b"started")
    app_id = latest(seeded)["id"]
    os.write(fd, b"\x03")
    read_until(fd, f"Kill application {app_id}? [y/N] ".encode())
    os.write(fd, b"n\n")
    time.sleep(0.3)
    assert seeded.call("poll_application", id=app_id)["status"] == "run"

    os.write(fd, b"\x03")
    read_until(fd, b"[y/N] ")
    os.write(fd, b"y\n")
    assert exit_code(pid) == 128 + signal.SIGTERM   # the signal the daemon's kill sends
    assert seeded.call("poll_application", id=app_id)["status"] == "killed"
    assert b"finished" not in drain(fd)


def test_a_second_ctrl_c_at_the_question_kills(seeded, tmp_path):
    path = tmp_path / "sleeper.py"
    path.write_text(SLEEPER)
    pid, fd = on_terminal(seeded, str(path))
    read_until(fd, b"started")
    os.write(fd, b"\x03")
    read_until(fd, b"[y/N] ")
    os.write(fd, b"\x03")
    assert exit_code(pid) == 128 + signal.SIGTERM
    assert latest(seeded)["status"] == "killed"


def test_interrupt_application_is_the_submitters_or_an_admins(seeded, tmp_path):
    """The daemon's side of the console's Ctrl-C: SIGINT, status unchanged; a script
    without a handler dies of it (exit code 128 + 2 from `dynamo`)."""
    runner, app_id = sleeping(seeded, tmp_path)
    assert seeded.call("interrupt_application", id=app_id) == {
        "id": app_id, "interrupted": True, "status": "run"}
    assert runner.wait(30) == 130
    assert "killed by signal 2 (SIGINT)" in runner.stderr.read()
    assert seeded.call("interrupt_application", id=app_id)["interrupted"] is False


# -------------------------------------------------------------- exit codes
@pytest.mark.parametrize("name", ["SIGKILL", "SIGUSR1", "SIGTERM", "SIGINT"])
def test_a_script_killed_by_a_signal_exits_128_plus_its_number(seeded, tmp_path, name):
    """SIGTERM, which the child turns into an exception so that the script's `finally`
    blocks run, and SIGINT, which Python's handler turns into KeyboardInterrupt, end it
    as the signal would: not with an exit code of the runner's own."""
    number = signal.Signals[name].value
    path = tmp_path / "suicide.py"
    path.write_text(f"import os, signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)"
                    f"\nos.kill(os.getpid(), signal.{name})\n")
    result = seeded.dynamo(path, check=False)
    assert result.returncode == 128 + number
    assert f"killed by signal {number} ({name})" in result.stderr
    record = latest(seeded)
    assert (record["status"], record["exit_code"]) == ("failed", -number)
    assert f"killed by signal {number} ({name})" in seeded.dynamo("--poll", record["id"]).stdout


def test_dynamo_kill_ends_the_waiting_dynamo_with_128_plus_sigterm(seeded, tmp_path):
    runner, app_id = sleeping(seeded, tmp_path)
    assert seeded.dynamo("--kill", app_id).stdout == f"application {app_id}: killed\n"
    assert runner.wait(30) == 128 + signal.SIGTERM
    said = runner.stderr.read().splitlines()[-1]
    assert said.startswith(f"dynamo: application {app_id} killed: by ") and \
        said.count("killed") == 1, said
    assert latest(seeded)["exit_code"] == -signal.SIGTERM
    # --poll names the signal, and the code dynamo exited with (the record holds -15)
    assert "  status killed, exit code -15 (SIGTERM; dynamo exits 143)\n" in \
        seeded.dynamo("--poll", app_id).stdout


@pytest.mark.parametrize("ignores_sigterm", [False, True])
def test_a_time_out_exits_128_plus_the_signal_that_ended_it(start_daemon, tmp_path,
                                                            ignores_sigterm):
    """The daemon's SIGTERM; or, for a script that ignores it, the SIGKILL that follows
    after kill_grace.  The message says `killed` once."""
    daemon = start_daemon(config={"applications": {"kill_grace": 0.5}})
    path = tmp_path / "sleeper.py"
    path.write_text(("import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                     if ignores_sigterm else "") + SLEEPER)
    result = daemon.dynamo("-m", "0.0002", path, check=False)   # 0.72 s
    number = signal.SIGKILL if ignores_sigterm else signal.SIGTERM
    assert result.returncode == 128 + number, result.stderr
    record = latest(daemon)
    assert (record["status"], record["exit_code"]) == ("killed", -number)
    assert result.stderr.splitlines()[-1] == (
        f"dynamo: application {record['id']} killed: time-out after 0.72 s")


# ---------------------------------------------------------------- messages
@pytest.mark.parametrize("body, line", [
    ("Site('X', status='nice')\n", 2),
    ("site = inventory.sites['T2_US_XYZ']\nsite.status = 'nice'\ninventory.update(site)\n", 3),
])
def test_a_bad_value_shows_the_scripts_frames_only(seeded, tmp_path, body, line):
    path = tmp_path / "bad.py"
    path.write_text("x = 1\n" + body)
    result = seeded.dynamo(path, check=False)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[:3] == ["Traceback (most recent call last):",
                         f'  File "{path}", line {line}, in <module>',
                         f"    {body.splitlines()[line - 2]}"]
    assert lines[-2:] == [
        "dynamod.errors.InvalidValue: Site.status must be one of ready, waitroom, morgue, "
        "unknown, not 'nice'",
        "dynamo: application 1 failed: exit code 1; nothing was changed"]
    assert "File" not in "".join(lines[3:])   # no frame of the daemon's own code


def test_the_console_shows_the_input_frames_only(seeded):
    result = seeded.dynamo(input="Site('X', status='nice')\n")
    assert "Site.status must be one of" in result.stderr
    assert result.stderr.splitlines()[1:4] == [
        "Traceback (most recent call last):",
        '  File "<console>", line 1, in <module>',
        "dynamod.errors.InvalidValue: Site.status must be one of ready, waitroom, morgue, "
        "unknown, not 'nice'"]


def test_the_console_shows_the_inventory_and_its_classes_alone(seeded):
    """dir() and tab completion: none of the console's own names (code, readline,
    history, Console, ...) to trip over or to shadow."""
    names = seeded.dynamo(input="[n for n in dir() if not n.startswith('__')]\n").stdout
    assert eval(names) == ["Block", "BlockReplica", "Dataset", "DatasetReplica", "File",
                           "Group", "Site", "inventory"]


def test_a_change_in_the_console_says_once_that_it_is_discarded(seeded):
    result = seeded.dynamo(input="inventory.update(Site('T2_NEW'))\n"
                                 "inventory.delete(inventory.sites['T2_US_XYZ'])\n"
                                 "sorted(inventory.sites)\n")
    assert result.stdout.splitlines()[-1] == "['T2_NEW', 'T3_US_XYZ']"   # its own copy
    assert result.stderr.count("the console is read-only: inventory.update and "
                               "inventory.delete change this session's copy only") == 1
    assert seeded.call("list_sites")["sites"][0]["name"] == "T2_US_XYZ"


@pytest.mark.parametrize("inject, banner", [
    (False, "holds 0 sites, 0 datasets;"),
    (True, "holds 2 sites, 1 dataset;"),
])
def test_the_console_banner_counts_in_good_english(daemon, inject, banner):
    if inject:
        daemon.inject(EXAMPLES / "mydynamo-storage-sites.json")
        daemon.inject(EXAMPLES / "mydynamo-data.json")
    assert banner in daemon.dynamo(input="").stderr


@pytest.mark.parametrize("tool, args, message", [
    ("exec_auth", ["-x", "s.py"], "dynamo-exec-auth: --executable needs --title TITLE"),
    ("exec_auth", ["--title", "t"], "dynamo-exec-auth: --title needs --executable PATH"),
    ("exec_auth", ["-D"], "dynamo-exec-auth: --delete needs --title TITLE"),
    ("exec_auth", ["-u", "jane"], "dynamo-exec-auth: nothing to do: give --executable PATH"),
    ("user_auth", ["-r", "admin"], "dynamo-user-auth: --user NAME is needed"),
    ("user_auth", ["-u", "jane", "-R"], "dynamo-user-auth: --revoke needs --role ROLE"),
])
def test_an_incomplete_command_says_what_it_lacks(tool, args, message, tmp_path):
    """In one line, exit code 2, before looking for a daemon."""
    result = subprocess.run([sys.executable, "-m", f"dynamoclient.{tool}", *args],
                            env={**os.environ, "DYNAMO_SOCKET": str(tmp_path / "none.sock")},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr


# --------------------------------------------------- the original's options
def test_dynamo_user_auth_takes_the_original_short_options(daemon):
    def user_auth(*args):
        return daemon.client_command("user_auth", *args)

    created = user_auth("-u", "jane", "-n", "/DC=org/DC=example/CN=Jane Doe",
                        "-m", "jane@example.org", "-r", "admin", "-g", "inventory", "-Y")
    assert "created user jane: e-mail jane@example.org; DNs /DC=org/DC=example/CN=Jane Doe" \
        in created.stdout
    assert "granted: role admin on inventory to jane" in created.stdout
    listing = user_auth("-L", "-u", "jane").stdout.splitlines()
    assert listing[1].split() == ["jane", "admin", "inventory"]
    user_auth("-u", "ops", "-r", "operator", "-Y")   # on all: application among them
    listing = user_auth("-L", "-g", "application").stdout.splitlines()
    assert [line.split() for line in listing[1:]] == [["ops", "operator", "all"]]
    revoked = user_auth("-u", "jane", "-r", "admin", "-g", "inventory", "-R")
    assert "revoked: role admin on inventory from jane" in revoked.stdout


def test_dynamo_user_auth_takes_dns_and_accounts_back_and_deletes_users(daemon):
    """A DN or account given by mistake is taken back, a user deleted as a whole (its DN
    and account free for another); a user a script authorization names stays until it is
    revoked; `--user NAME` of no user says so rather than offer to create one."""
    def user_auth(*args, check=True):
        return daemon.client_command("user_auth", *args, check=check)

    dn = "/DC=org/DC=example/CN=Jane Doe"
    user_auth("-u", "jane", "-n", dn, "--account", "daemon", "--account", "j4ne-typo",
              "-r", "admin", "-Y")
    assert "note: j4ne-typo is not a local account here" in user_auth(
        "-u", "jane", "--account", "j4ne-typo").stderr
    removed = user_auth("-u", "jane", "--remove-account", "j4ne-typo", "--remove-dn", dn)
    assert "updated user jane: e-mail -; DNs -; accounts daemon" in removed.stdout
    missing = user_auth("-u", "jane", "--remove-account", "j4ne-typo", check=False)
    assert (missing.returncode, missing.stderr) == (
        1, "dynamo-user-auth: user jane has no account j4ne-typo [not_found]\n")
    unknown = user_auth("-u", "jnae", check=False)
    assert unknown.returncode == 1 and "unknown user jnae" in unknown.stderr
    daemon.call("authorize_script", title="tidy", checksum="0" * 64, user="jane")
    held = user_auth("-u", "jane", "--delete", "-y", check=False)
    assert held.returncode == 1 and "dynamo-exec-auth --delete --user jane" in held.stderr
    daemon.call("revoke_script_authorization", title="tidy", user="jane")
    unasked = user_auth("-u", "jane", "--delete", check=False)   # no terminal to ask
    assert unasked.returncode == 1 and "Not confirmed" in unasked.stderr
    deleted = user_auth("-u", "jane", "--delete", "--yes")
    assert deleted.stdout == ("deleted user jane: e-mail -; DNs -; accounts daemon; grants: "
                              "admin on all\n")
    assert user_auth("-L").stdout.split("\n")[1:] == [""]
    user_auth("-u", "john", "--account", "daemon", "-Y")   # the account is free again
    both = user_auth("-u", "john", "--delete", "-r", "admin", check=False)
    assert both.returncode == 2 and "--delete takes only --user" in both.stderr


def test_dynamo_exec_auth_takes_list_and_delete_as_minus_l_and_d(daemon, tmp_path):
    path = tmp_path / "w.py"
    path.write_text("print('w')\n")
    daemon.exec_auth("-x", path, "-t", "tidy")
    assert "tidy" in daemon.exec_auth("-L").stdout
    assert daemon.exec_auth("-D", "-t", "tidy").stdout == "revoked: tidy for ALL\n"
    assert "tidy" not in daemon.exec_auth("-L").stdout


def test_dynamo_inject_raw_and_block_replica_files(seeded):
    partial = ["-p", f"T3_US_XYZ:{DATASET}", "-r", BLOCK, "-e", LFN]
    counts = json.loads(seeded.inject("-A", *partial).stdout)
    assert counts["created"] == {"datasetreplicas": 1, "blockreplicas": 1}
    assert json.loads(seeded.inject("--raw", *partial).stdout)["created"] == {}
    replicas = seeded.call("get_block", name=f"{DATASET}#{BLOCK}")["replicas"]
    at_t3 = [r for r in replicas if r["site"] == "T3_US_XYZ"]
    assert [(r["complete"], r["files"]) for r in at_t3] == [(False, [LFN])]

    refused = seeded.inject("-p", f"T3_US_XYZ:{DATASET}", "-e", LFN, check=False)
    assert refused.returncode == 1
    assert refused.stderr == "dynamo-inject: --block-replica-file needs exactly one " \
                             "--block-replica\n"


def test_dynamo_inject_refuses_a_host(seeded):
    result = seeded.inject("-o", "dynamo.example.org", EXAMPLES / "mydynamo-data.json",
                           check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("dynamo-inject: -o/--host: dynamod is reached through a "
                                    "local Unix socket")


def test_dynamo_work_dir_auth_request_and_server(seeded, tmp_path):
    path = tmp_path / "where.py"
    path.write_text("import os\nprint(os.getcwd())\n")
    here = tmp_path / "here"
    here.mkdir()
    assert seeded.dynamo(path, "-d", here).stdout == f"{here}\n"

    noted = seeded.dynamo(path, "-H")
    assert noted.stdout == f"{os.getcwd()}\n"
    assert noted.stderr.startswith("dynamo: note: -H/--auth-request has no effect here")

    missing = seeded.dynamo(path, "-d", tmp_path / "nowhere", check=False)
    assert (missing.returncode, missing.stderr) == (
        2, f"dynamo: --work-dir {tmp_path / 'nowhere'}: no such directory\n")
    server = seeded.dynamo(path, "-s", "dynamo.example.org:39626", check=False)
    assert server.returncode == 2
    assert server.stderr.startswith("dynamo: -s/--server: dynamod is reached through a local "
                                    "Unix socket")


@pytest.mark.parametrize("args, option", [(["-a", "nightly.seq"], "-a/--add-sequence"),
                                          (["-q"], "-q/--start-sequence"),
                                          (["-o", "nightly"], "-o/--stop-sequence"),
                                          (["-e", "nightly"], "-e/--delete-sequence")])
def test_dynamo_sequence_options_say_what_to_use_instead(seeded, args, option):
    """The original's scheduler of sequences is not kept: its options get one line
    that says so and what to do, not argparse's `unrecognized arguments`."""
    result = seeded.dynamo(*args, check=False)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (f"dynamo: {option}: this Dynamo has no scheduler of sequences; "
                             f"run each step from cron or a systemd timer: dynamo 'SCRIPT "
                             f"[OPTIONS]' (-W -t TITLE to write)\n")


def test_dynamo_user_auth_takes_the_original_log_level(daemon):
    result = daemon.client_command("user_auth", "-l", "DEBUG", "-L")
    assert result.stdout.startswith("USER")
    assert result.stderr == ("dynamo-user-auth: note: -l/--log-level has no effect here: the "
                             "daemon logs every change of users and grants\n")


def test_dynamo_inject_several_objects_after_one_option(seeded):
    """The original's `-s A B` took two sites; here B would be a document, and the
    message says to repeat the option instead."""
    before = seeded.call("list_sites")
    result = seeded.inject("-s", "T2_A", "T2_B", check=False)
    assert result.returncode == 1
    assert result.stderr == ("dynamo-inject: give either JSON documents or object options, "
                             "not both: 'T2_B' would be read as a document (an option takes "
                             "one object: repeat it for more, as in -f A,1 -f B,2)\n")
    assert seeded.call("list_sites") == before


def test_every_client_takes_minus_c_and_minus_k_for_the_certificate(seeded, tmp_path):
    for tool, args in (("dynamo", ["--list"]), ("inject", ["--site", "X"]),
                       ("exec_auth", ["-L"]), ("user_auth", ["-L"])):
        result = seeded.client_command(tool, *args, "-c", tmp_path / "none.pem",
                                       "-k", tmp_path / "none.key", check=False)
        assert result.returncode == 1
        assert result.stderr.endswith(f": cannot read the certificate {tmp_path / 'none.pem'}: "
                                      f"No such file or directory\n"), result.stderr


def test_a_certificate_or_key_that_cannot_be_read_is_named_in_words(seeded, tmp_path):
    """Not as `[Errno 2] No such file or directory: '...'`."""
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")
    for args, said in (
            (["-c", tmp_path / "none.pem"],
             f"cannot read the certificate {tmp_path / 'none.pem'}: No such file or directory"),
            (["-c", cert, "-k", tmp_path / "none.key"],
             f"cannot read the key {tmp_path / 'none.key'}: No such file or directory"),
            (["-c", tmp_path], f"cannot read the certificate {tmp_path}: Is a directory")):
        result = seeded.dynamo("--list", *args, check=False)
        assert (result.returncode, result.stderr) == (1, f"dynamo: {said}\n")


@pytest.mark.parametrize("tool, options", [
    ("dynamo", ["-d DIR, --work-dir", "-H, --auth-request", "-s HOST[:PORT], --server",
                "-a FILE, --add-sequence", "-q [NAME], --start-sequence"]),
    ("inject", ["-A, --raw", "-e LFN, --block-replica-file", "-o HOST, --host", "-c FILE"]),
    ("exec_auth", ["-L, --list", "-D, --delete"]),
    ("user_auth", ["-u USER, --user", "-n DN, --dn", "-m EMAIL, --email", "-r ROLE, --role",
                   "-g {", "-R, --revoke", "-L, --list", "-y, -Y, --yes",
                   "-l LEVEL, --log-level"]),
])
def test_help_names_the_original_options(tool, options):
    result = subprocess.run([sys.executable, "-m", f"dynamoclient.{tool}", "--help"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for option in options:
        assert option in result.stdout, (option, result.stdout)


@pytest.mark.parametrize("module, prog", [
    ("dynamoclient.dynamo", "dynamo"), ("dynamoclient.inject", "dynamo-inject"),
    ("dynamoclient.exec_auth", "dynamo-exec-auth"), ("dynamoclient.user_auth", "dynamo-user-auth"),
    ("dynamoclient.site_usage", "dynamo-site-usage"), ("dynamod", "dynamod"),
    ("dynamod backup", "dynamod backup"), ("dynamod check", "dynamod check"),
    ("dynamod restore", "dynamod restore")])
def test_every_help_ends_with_examples_as_typed(module, prog):
    """--help of every command and subcommand shows how it is used: example commands,
    each on its own line as typed (not wrapped into the prose), after `Examples:`."""
    result = subprocess.run([sys.executable, "-m", *module.split(), "--help"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "\nExamples:\n" in result.stdout, result.stdout
    examples = result.stdout.split("\nExamples:\n", 1)[1].splitlines()
    assert examples and all(line.startswith("  ") for line in examples), examples
    assert any(line.startswith(f"  {prog} ") for line in examples), (prog, examples)


def test_dynamod_names_its_commands():
    """A mistyped command is named with the nearest one, not `unrecognized arguments`;
    --help lists the commands."""
    result = subprocess.run([sys.executable, "-m", "dynamod", "backups", "/tmp/x.db"],
                            capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("dynamod: unknown command 'backups' (did you mean 'backup'? "
                             "commands: backup, check, restore, status; see --help)\n")
    helped = subprocess.run([sys.executable, "-m", "dynamod", "--help"],
                            capture_output=True, text=True, timeout=30).stdout
    for line in ("  dynamod backup DEST", "  dynamod check ", "  dynamod restore COPY",
                 "  dynamod status "):
        assert line in helped


@pytest.mark.parametrize("tool", ["inject", "exec_auth", "user_auth"])
def test_a_tool_run_bare_prints_its_help(tool):
    """The tools that only act on what they are told explain themselves when run bare,
    as with --help, instead of failing on a missing option or reaching the daemon."""
    bare, asked = (subprocess.run([sys.executable, "-m", f"dynamoclient.{tool}", *args],
                                  capture_output=True, text=True, timeout=30,
                                  stdin=subprocess.DEVNULL,   # as on a terminal: no input
                                  env={**os.environ, "DYNAMO_SOCKET": "/nonexistent/socket"})
                   for args in ([], ["--help"]))
    assert bare.returncode == asked.returncode == 0, bare.stderr
    assert bare.stdout == asked.stdout and bare.stdout.startswith("usage: "), bare.stdout


def test_a_document_piped_to_a_bare_inject_is_not_taken_for_nothing(seeded, tmp_path):
    """`cat doc.json | dynamo-inject` (no -): the help and exit code 0 would tell a
    script that the document went in; one line says to name standard input instead,
    exit 1, and nothing changes.  From a file (< doc.json) alike; with - it goes in."""
    document = '{"site": [{"name": "T2_PIPED"}]}'
    path = tmp_path / "doc.json"
    path.write_text(document)
    said = ("dynamo-inject: nothing named to inject: to read the document on standard "
            "input, give - (... | dynamo-inject -; see --help)\n")
    assert seeded.inject(input=document, check=False).stderr == said
    with open(path) as stdin:
        result = seeded.inject(stdin=stdin, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", said)
    assert "T2_PIPED" not in [s["name"] for s in seeded.call("list_sites")["sites"]]
    assert seeded.inject("-", input=document).stdout.startswith("created  sites: 1")
