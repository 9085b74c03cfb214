"""`dynamod`: build the Config from defaults, file and options, and run the server;
`dynamod backup|check|restore` are the store's tools, `dynamod status` the running
daemon's state (tools.py)."""

import argparse
import logging
import os
import sys

from . import __version__
from . import logs
from dynamoclient.arguments import ExamplesFormatter

from .config import (LOG_LEVELS, SYNCHRONOUS, ConfigError, build, file_key, from_settings,
                     positive_int, read_file)
from .server import StartupError, load_trust_or_say_why, make_state_dir, run
from .tools import TOOLS


def _positive_int(text: str) -> int:
    """An option's count, checked as the configuration file's key of the same name."""
    try:
        value = int(text)
    except ValueError:
        value = text   # refused below, in the check's words
    try:
        return positive_int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, not {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynamod",
        description="The Dynamo inventory daemon: holds the inventory in memory, serves it "
                    "on a Unix socket, persists every change to SQLite. With no options it "
                    "keeps its state in $XDG_STATE_HOME/dynamo, else ~/.local/state/dynamo. "
                    "SIGHUP re-reads the configuration; SIGTERM stops it cleanly.",
        epilog="Commands (each with its own --help):\n"
               "  dynamod backup DEST     copy the running daemon's database to DEST\n"
               "  dynamod check           check a database file (read-only)\n"
               "  dynamod restore COPY    make a backup the database of a stopped daemon\n"
               "  dynamod status          the running daemon's state (exit 1: no answer)\n"
               "\n"
               "Examples:\n"
               "  dynamod                                   # foreground, logs to stderr\n"
               "  dynamod --detach                          # background; STATE_DIR/dynamod.log\n"
               "  dynamod --config /etc/dynamo/dynamod.toml --check-config\n"
               "  kill -HUP $(cat STATE_DIR/dynamod.pid)    # detached: re-read the configuration",
        formatter_class=ExamplesFormatter,
    )
    parser.add_argument("--config", metavar="FILE",
                        help="TOML configuration (default: /etc/dynamo/dynamod.toml when run "
                             "by root and present)")
    parser.add_argument("--check-config", action="store_true",
                        help="validate the configuration, print the effective settings, exit")
    parser.add_argument("--state-dir", metavar="DIR",
                        help="directory for the database, socket and work areas")
    parser.add_argument("--socket", metavar="PATH",
                        help="socket path (default: DIR/dynamod.sock)")
    parser.add_argument("--database", metavar="FILE",
                        help="SQLite file (default: DIR/inventory.db)")
    parser.add_argument("--synchronous", choices=SYNCHRONOUS, type=str.upper,
                        help="SQLite durability of each commit (default: FULL)")
    parser.add_argument("--max-line-bytes", type=_positive_int, metavar="N",
                        help="longest request line accepted (default: 64 MiB)")
    parser.add_argument("--max-connections", type=_positive_int, metavar="N",
                        help="connections served at once (default: 1024)")
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS,
                        help="(default: INFO)")
    parser.add_argument("--rebuild", action="store_true",
                        help="load the inventory from the tables' rows, not from the snapshot "
                             "(after editing the database by hand)")
    parser.add_argument("--detach", action="store_true",
                        help="run in the background: return once the daemon is ready, "
                             "logging to STATE_DIR/dynamod.log")
    parser.add_argument("--version", action="version", version=f"dynamod {__version__}")
    return parser


def command():
    """The `dynamod` command (and `python -m dynamod`).  When `main` returns, what the
    daemon or the tool had to do is done: committed, closed and logged.  The process
    then ends without the interpreter's teardown, which freed every object one by one
    (two thirds of an empty daemon's stop, more with an inventory in memory); the logs
    and the standard streams are flushed first.  Usage errors and --help end as usual."""
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a reader that went away (`| head`), a closed stream
            pass
    os._exit(code)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    tool = TOOLS.get(argv[0] if argv else None)
    if tool is not None:
        try:
            return tool(argv[1:])
        except KeyboardInterrupt:   # one line and 128 + SIGINT, as the clients
            print(f"dynamod {argv[0]}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            return _output_closed()
    if argv and not argv[0].startswith("-"):   # dynamod takes no other word
        print(f"dynamod: {_unknown_command(argv[0])}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    options = {"state_dir": os.path.abspath(args.state_dir) if args.state_dir else None,
               "socket": args.socket, "database": args.database,
               "synchronous": args.synchronous, "max_line_bytes": args.max_line_bytes,
               "max_connections": args.max_connections, "log_level": args.log_level,
               "rebuild": args.rebuild or None}
    config_file = os.path.abspath(args.config) if args.config else None  # as logged
    try:
        config = build(config_file, options)
    except ConfigError as exc:
        print(f"dynamod: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        try:
            load_trust_or_say_why(config.ca_path)   # the start's own check
        except StartupError as exc:
            print(f"dynamod: {config.config_file or 'the options'}: {exc}", file=sys.stderr)
            return 2
        try:
            print(f"# effective configuration (file: {config.config_file or 'none'})")
            print(config.effective(), flush=True)
        except BrokenPipeError:
            return _output_closed()
        return 0
    reread = _rereading(config.config_file or None, options)   # the file build found

    if args.detach:
        return _detach(config, reread)
    logs.setup(config.log_level)
    return _serve(config, reread)


def _unknown_command(word: str) -> str:
    """`dynamod backups x` named a command, not an option argparse would call unknown."""
    import difflib

    close = difflib.get_close_matches(word, TOOLS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown command {word!r} ({hint}commands: {', '.join(TOOLS)}; see --help)"


def _output_closed() -> int:
    """Standard output's reader went away (`dynamod check | head -0`): end quietly with
    141 (128 + SIGPIPE), as the clients do, not with a traceback; what is still
    buffered for it goes nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


def _rereading(config_file: str | None, options: dict):
    """What SIGHUP calls: the configuration built again from the file the start used
    (`config_file`: the one given, or the system's that `build` took).  A setting the
    command line gives stays as it says, whatever the file now holds: such a setting
    changed in the file since it was last read is named in the log, rather than
    silently kept."""
    pinned = sorted(name for name, value in options.items() if value is not None)
    last = [read_file(config_file) if config_file else {}]

    def reread():
        now = read_file(config_file) if config_file else {}   # once: it may change meanwhile
        fresh = from_settings(now, config_file, options)
        for name in pinned:
            if now.get(name) != last[0].get(name):
                logging.getLogger("dynamod").warning(
                    "reload: %s changed in %s, but the command line sets it (%r): kept",
                    file_key(name), config_file, getattr(fresh, name))
        last[0] = now
        return fresh
    return reread


def _serve(config, reread, on_ready=None) -> int:
    import uvloop

    from . import capabilities

    capabilities.keep_from_programs()   # before any thread: each inherits the cleared set
    return uvloop.run(run(config, on_ready, reread))


def _detach(config, reread) -> int:
    """Fork a background daemon and wait until it listens (or says why it could not)."""
    log_path = os.path.join(config.state_dir, "dynamod.log")
    try:   # here, while there is a terminal to say so: the log is in the state directory
        make_state_dir(config.state_dir)
        os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    except OSError as exc:
        print(f"dynamod: state directory {config.state_dir} is not writable: {exc.strerror}",
              file=sys.stderr)
        return 1
    logged = os.path.getsize(log_path)   # what the log held before this start
    read_end, write_end = os.pipe()
    if os.fork() > 0:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as ready:
            status = ready.read()
        if status.startswith(b"ready"):
            print(f"dynamod {status[6:].decode()} listening on {config.socket}; log: {log_path}")
            return 0
        print(f"dynamod failed to start: {_why(log_path, logged)}\n(log: {log_path})",
              file=sys.stderr)
        return 1
    os.close(read_end)
    os.setsid()
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    logs.detach_to(log_path)   # reopened on SIGHUP, for logrotate
    logs.setup(config.log_level)

    pid_path = os.path.join(config.state_dir, "dynamod.pid")
    written = []

    def ready(server):
        with open(pid_path, "w") as pid_file:   # for `kill -HUP` (logrotate) and `kill`
            pid_file.write(f"{os.getpid()}\n")
        written.append(pid_path)
        os.write(write_end, f"ready pid {os.getpid()}".encode())
        os.close(write_end)

    code = _serve(config, reread, ready)
    if written:   # a start refused (another daemon serves the socket) leaves its file be
        _remove_own(pid_path)
    os._exit(code)


def _remove_own(pid_path: str):
    """Remove the pid file if it still names this process."""
    try:
        with open(pid_path) as pid_file:
            if pid_file.read().strip() == str(os.getpid()):
                os.unlink(pid_path)
    except OSError:
        pass


def _why(log_path: str, since: int) -> str:
    """Why a detached start failed, from what it wrote to the log: its errors (the
    last lines, when it wrote none)."""
    try:
        with open(log_path, "rb") as log_file:
            log_file.seek(since)
            lines = log_file.read().decode(errors="replace").splitlines()
    except OSError as exc:
        return f"its log cannot be read: {exc.strerror}"
    errors = [line.partition(": ")[2] for line in lines
              if " ERROR " in line or " CRITICAL " in line]
    return "\n".join(errors or lines[-5:]) or "it exited without a word"
