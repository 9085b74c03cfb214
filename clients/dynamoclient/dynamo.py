"""`dynamo`: run a script as a Dynamo application, or open the console.

    dynamo                                  interactive console (read-only)
    dynamo '<script> [<options>]'           run a script; exits with its exit code
    dynamo '<script>' -W -t TITLE           run it read/write (root authorizes it first)
    dynamo -A '<script>'                    submit without waiting; prints its id
    dynamo --poll ID | --kill ID | --list

The daemon forks the application from its live inventory.  For a synchronous
run this command hands its own standard input, output and error to the
application, so output appears as it is written and a terminal stays a
terminal.  The application runs without a controlling terminal, so Ctrl-C
reaches this command, not the application: for the console it is passed on (a
fresh prompt), for a script it asks whether to kill it.
"""

import _signal
import posix
import sys
import time

from .connection import Client, ConnectionFailed, RemoteError, add_arguments, output_closed

# The value of every option left out: the parser's defaults, and all of `dynamo SCRIPT`.
OMITTED = {"title": "", "write_request": False, "asynchronous": False, "timeout": 0,
           "no_wait": False, "poll": None, "kill": None, "list": False, "user": None,
           "limit": None, "work_dir": None, "auth_request": False, "server": None,
           "socket": None, "cert": None, "key": None, "add_sequence": None,
           "start_sequence": None, "stop_sequence": None, "delete_sequence": None}

LIST_LIMIT = 20   # the applications --list shows unless told

# The original's scheduler of sequences: its options, refused in words (see `_refused`).
# -q and -o without a name meant every sequence.
SEQUENCE_OPTIONS = (("-a", "--add-sequence", {"metavar": "FILE"}),
                    ("-q", "--start-sequence", {"metavar": "NAME", "nargs": "?", "const": ""}),
                    ("-o", "--stop-sequence", {"metavar": "NAME", "nargs": "?", "const": ""}),
                    ("-e", "--delete-sequence", {"metavar": "NAME"}))


class Options:
    """The options of a lone script argument, as argparse's namespace holds them (a class
    of its own: `types.SimpleNamespace` costs 0.3 ms to import, `site` not having done it)."""

    def __init__(self, **values):
        self.__dict__.update(values)


def parse_args(argv=None):
    """The options.  A lone script argument, the common case, skips argparse: importing
    it and building the parser take ~3 ms of a start-up that delays the application."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and not argv[0].startswith("-"):
        return Options(command=argv[0], **OMITTED)
    return build_parser().parse_args(argv)


def _hours(text: str) -> float:
    """-m's value: a finite number (JSON carries no infinity; a negative one is no limit)."""
    import argparse
    import math

    try:
        hours = float(text)
    except ValueError:
        hours = math.nan
    if not math.isfinite(hours):
        raise argparse.ArgumentTypeError(f"HOURS must be a number (0: the server's default; "
                                         f"negative: no limit), not {text!r}")
    return hours


def _app_id(text: str) -> int:
    """--poll's and --kill's value: an application's id, a whole number from 1 to what
    the daemon's integers hold (a larger one was an error in the protocol's terms)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 0 < value < 2**63:
        raise argparse.ArgumentTypeError(f"ID must be an application's number (1 or more, as "
                                         f"dynamo --list shows), not {text!r}")
    return value


def build_parser():
    from .arguments import Parser

    parser = Parser(
        prog="dynamo",
        description="Run a Python script as a Dynamo application (forked from the daemon's "
                    "inventory), or with no script open an interactive console.",
        epilog="The script and its options go in one argument: dynamo 'detox.py --dry-run'.  "
               "Ctrl-C while a script runs asks whether to kill it (a second Ctrl-C kills it); "
               "in the console it interrupts the current line or statement.  The exit code is "
               "the script's, or 128 + N when signal N killed it.\n"
               "\n"
               "Examples:\n"
               "  dynamo                                  # the console (read-only)\n"
               "  dynamo 'detox.py --dry-run'             # read-only\n"
               "  dynamo cleanup.py --write-request --title cleanup   # after dynamo-exec-auth\n"
               "  dynamo -A report.py                     # prints the id; output in its work area\n"
               "  dynamo --list; dynamo --poll 12; dynamo --kill 12",
    )
    parser.add_argument("command", nargs="?", metavar="'SCRIPT [OPTIONS]'",
                        help="the script to run and its arguments, quoted as one argument")
    parser.add_argument("-t", "--title", help="application title (needed with -W)")
    parser.add_argument("-W", "--write-request", action="store_true",
                        help="run read/write: the script's changes are kept (it must be "
                             "authorized for TITLE with dynamo-exec-auth)")
    parser.add_argument("-A", "--asynchronous", action="store_true",
                        help="submit and return at once; output goes to the work area")
    parser.add_argument("-m", "--timeout", type=_hours, metavar="HOURS",
                        help="kill the application after HOURS (0: server default; "
                             "negative: never)")
    parser.add_argument("-n", "--no-wait", action="store_true",
                        help="with -W: fail instead of waiting for another writer")
    parser.add_argument("-d", "--work-dir", metavar="DIR",
                        help="the application's working directory (default: the current one; "
                             "-A output still goes to the application's work area)")
    parser.add_argument("-H", "--auth-request", action="store_true",
                        help="the original's 'auth' level: accepted, with a note, and without "
                             "effect (every application runs with your own privileges)")
    parser.add_argument("-s", "--server", metavar="HOST[:PORT]",
                        help="refused: dynamod is reached through a local Unix socket, not a "
                             "network port (use --socket)")
    for short, long, kwargs in SEQUENCE_OPTIONS:
        parser.add_argument(short, long, **kwargs,
                            help="refused: the original's sequences are not kept here (run "
                                 "scripts from cron or a systemd timer)")
    parser.add_argument("-p", "--poll", type=_app_id, metavar="ID", help="show an application")
    parser.add_argument("-x", "--kill", type=_app_id, metavar="ID", help="kill an application")
    parser.add_argument("--list", action="store_true", help="list recent applications")
    parser.add_argument("--user", help="with --list: only this user's applications")
    parser.add_argument("--limit", type=int, help="with --list: at most this many (default: "
                                                   f"{LIST_LIMIT})")
    add_arguments(parser)
    parser.set_defaults(**OMITTED)
    return parser


def _when(stamp) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"


def _exit_code(code) -> str:
    """The record's exit code, a signal's (-N) named as the shell's 128 + N is what
    `dynamo` itself exited with: `-15 (SIGTERM; dynamo exits 143)`."""
    if code is None:
        return "-"
    if code >= 0:
        return str(code)
    import signal

    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"{code} ({name}; dynamo exits {128 - code})"


def format_app(app: dict) -> str:
    code = _exit_code(app["exit_code"])
    lines = [f"application {app['id']}: {app['title']} ({app['mode']}) by {app['user']}",
             f"  status {app['status']}, exit code {code}",
             f"  submitted {_when(app['submitted'])}, started {_when(app['started'])}, "
             f"ended {_when(app['ended'])}"]
    if app.get("message"):
        lines.append(f"  {app['message']}")
    if app.get("workarea"):
        lines.append(f"  output in {app['workarea']}/stdout and stderr")
    return "\n".join(lines)


def format_list(apps: list) -> str:
    from .table import format_table

    rows = [("ID", "TITLE", "USER", "MODE", "STATUS", "EXIT", "STARTED", "ENDED")]
    for a in apps:
        rows.append((str(a["id"]), a["title"], a["user"], a["mode"], a["status"],
                     "-" if a["exit_code"] is None else str(a["exit_code"]),
                     _when(a["started"]), _when(a["ended"])))
    return format_table(rows)


def connect(args) -> Client:
    """A connection for this command: its messages are small, so lightjson serves them
    and the start-up imports neither orjson nor the json module (see `connection._codec`)."""
    return Client.from_args(args, use_proxy=True, fast_json=False)


_BLANKS = str.maketrans("\t\r\n", "   ")   # shlex's whitespace, besides the space


def split_command(command: str) -> list[str]:
    """The words of `'SCRIPT [OPTIONS]'` as a POSIX shell splits them (`shlex.split`).
    Without quotes or backslashes that is a split on blanks: the common case skips
    importing shlex, which imports `re` (~5 ms of a start that delays the application)."""
    if any(c in command for c in "'\"\\"):
        import shlex

        return shlex.split(command)
    return [w for w in command.translate(_BLANKS).split(" ") if w]


def _absolute(work_dir: str | None) -> str:
    """The application's working directory: the current one (`posix`: the client does
    not import `os`, see paths.py), or `work_dir` made absolute."""
    if work_dir is None:
        return posix.getcwd()
    import os

    return os.path.abspath(work_dir)


def read_script(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8")
    except OSError as exc:
        raise SystemExit(f"dynamo: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SystemExit(f"dynamo: {path} is not UTF-8 text") from None


def run(args, client: Client) -> int:
    """Submit the application and follow it to its end; returns its exit code."""
    params = {"attach": not args.asynchronous, "timeout": args.timeout,
              "no_wait": args.no_wait, "cwd": _absolute(args.work_dir)}
    if args.command is not None:   # '' too: a script argument, empty (refused below)
        try:
            words = split_command(args.command)
        except ValueError as exc:   # an unclosed quote, a backslash at the end
            raise SystemExit(f"dynamo: cannot split {args.command!r} into a script and its "
                             f"options: {str(exc).lower()}") from None
        if not words:
            raise SystemExit("dynamo: the script is empty")
        params.update(script=read_script(words[0]), path=words[0], args=words[1:],
                      title=args.title, write=args.write_request)
    else:
        params["console"] = True
    rid = client.send("run_application", params)
    app_id, interrupted = None, False
    _signal.pthread_sigmask(_signal.SIG_BLOCK, _SIGINT)
    try:
        while True:
            try:
                if interrupted and app_id is not None:
                    interrupted = False
                    with _Interruptible():
                        _on_interrupt(args, app_id)
                with _Interruptible():
                    client.wait()
                answer = client.receive()
                if answer.get("id") != rid:
                    continue
                if "event" in answer:
                    app_id = _on_event(answer["event"], client, app_id)
                    continue
            except KeyboardInterrupt:
                # Handled once the application has an id; never fatal: the application
                # may be reading the terminal, which must not go back to the shell under it.
                interrupted = True
                continue
            if "error" in answer:
                raise RemoteError(answer["error"])
            return _finish(answer["result"], args)
    finally:
        try:
            _signal.pthread_sigmask(_signal.SIG_UNBLOCK, _SIGINT)
        except KeyboardInterrupt:
            pass   # a Ctrl-C as the application ended: nothing left to interrupt


_SIGINT = {_signal.SIGINT}


class _Interruptible:
    """Where a Ctrl-C may land while an application runs: SIGINT is blocked elsewhere, so
    that its KeyboardInterrupt never strikes half-way through reading or handling an
    answer (the event that tells the application's id would be lost, and with it every
    later Ctrl-C)."""

    def __enter__(self):
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, _SIGINT)

    def __exit__(self, *exc):
        _signal.pthread_sigmask(_signal.SIG_BLOCK, _SIGINT)


def _on_event(event: dict, client: Client, app_id):
    kind = event.get("event")
    if kind == "send_fds":
        client.send_fds([0, 1, 2])
    elif kind == "waiting":
        from .writer import describe_writer

        print(f"dynamo: application {event['app']} waits for {describe_writer(event)} "
              f"to finish", file=sys.stderr)
    return event.get("app", app_id)


def _finish(app: dict, args) -> int:
    """The exit code a shell would give: the script's, or 128 + N for signal N."""
    if args.asynchronous:
        print(f"application {app['id']} submitted ({app['status']})")
        return 0
    if app["status"] == "done":
        return 0
    print(f"dynamo: application {app['id']} {app['status']}: {app['message']}", file=sys.stderr)
    code = app["exit_code"]
    if not code:
        return 1   # it never ran, or its changes could not be applied
    return 128 - code if code < 0 else code


def _on_interrupt(args, app_id: int):
    """Ctrl-C reached this command only (the application has no controlling terminal):
    the console takes it as its own Ctrl-C; a script is killed if the user says so."""
    console = args.command is None
    if not console and not _confirm_kill(app_id):
        return
    try:
        with connect(args) as other:
            if console:
                other.call("interrupt_application", id=app_id)
            else:
                other.call("kill_application", id=app_id)
    except (ConnectionFailed, RemoteError) as exc:
        print(f"dynamo: could not reach application {app_id}: {exc}", file=sys.stderr)


def _confirm_kill(app_id: int) -> bool:
    """Ask on the terminal (not standard input, which the application has).  A second
    Ctrl-C means yes; with no terminal to ask, an interrupt means stop."""
    try:
        tty = open("/dev/tty", "rb+", buffering=0)
    except OSError:
        return True
    with tty:
        try:   # a Ctrl-C any time after the question is shown means yes
            tty.write(f"\nKill application {app_id}? [y/N] ".encode())
            answer = tty.readline()
        except KeyboardInterrupt:
            tty.write(b"\n")
            return True
    return answer.strip().lower() in (b"y", b"yes")


def _refused(args) -> str | None:
    """Why the original's options that mean nothing here cannot be honoured (None: fine)."""
    if args.server is not None:
        return ("-s/--server: dynamod is reached through a local Unix socket, not HOST:PORT; "
                "use --socket PATH or $DYNAMO_SOCKET")
    actions = [name for name, given in (("--poll", args.poll is not None),
                                        ("--kill", args.kill is not None), ("--list", args.list))
               if given]
    if len(actions) > 1:
        return f"{actions[0]} and {actions[1]}: one at a time"
    if actions and args.command is not None:
        return f"{actions[0]} takes no script: run {args.command!r} in a command of its own"
    if not actions and args.command is None and (args.write_request or args.asynchronous):
        option = "--write-request" if args.write_request else "--asynchronous"
        return f"{option} needs a script: the console is read-only and interactive"
    if not args.list and (args.user is not None or args.limit is not None):
        return f"{'--user' if args.user is not None else '--limit'} goes with --list"
    if args.limit is not None and not 0 < args.limit < 2**63:
        return f"--limit {args.limit}: give a number of applications, from 1 to 2^63 - 1"
    for short, long, _ in SEQUENCE_OPTIONS:
        if getattr(args, long[2:].replace("-", "_")) is not None:
            return (f"{short}/{long}: this Dynamo has no scheduler of sequences; run each "
                    f"step from cron or a systemd timer: dynamo 'SCRIPT [OPTIONS]' "
                    f"(-W -t TITLE to write)")
    if args.work_dir is not None:
        import os   # here only (see _absolute)

        if not os.path.isdir(args.work_dir):
            return f"--work-dir {args.work_dir}: no such directory"
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    refusal = _refused(args)
    if refusal:
        print(f"dynamo: {refusal}", file=sys.stderr)
        return 2
    if args.auth_request:
        print("dynamo: note: -H/--auth-request has no effect here: every application runs with "
              "your own privileges (-W makes it read/write)", file=sys.stderr)
    try:
        with connect(args) as client:
            if args.poll is not None:
                print(format_app(client.call("poll_application", id=args.poll)))
                return 0
            if args.kill is not None:
                result = client.call("kill_application", id=args.kill)
                print(f"application {args.kill}: "
                      + ("killed" if result["killed"] else f"already {result['status']}"))
                return 0
            if args.list:
                params = {"limit": LIST_LIMIT if args.limit is None else args.limit,
                          **({"user": args.user} if args.user else {})}
                listing = client.call("list_applications", **params)
                print(format_list(listing["applications"]))
                if listing.get("writer"):
                    from .writer import describe_writer

                    print(f"writer slot: held by {describe_writer(listing['writer'])}")
                return 0
            if args.write_request and not args.title:
                print("dynamo: --write-request needs --title", file=sys.stderr)
                return 2
            return run(args, client)
    except BrokenPipeError:   # `dynamo --list | head`: the rest goes nowhere, quietly
        output_closed()
        return 141
    except (ConnectionFailed, RemoteError) as exc:
        print(f"dynamo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
