"""`dynamod backup`, `dynamod check`, `dynamod restore`: the store's tools; and
`dynamod status`, the running daemon's state.

Each says how far its long work is on standard error, on a terminal or when
asked (`--progress`): a copy's progress about once a second, and every
HEARTBEAT_SECONDS that a check (SQLite's integrity_check has no steps to
count, and takes minutes on a grid's store) is still at it.  A job's standard
error (cron mails it) stays quiet.
"""

import argparse
import os
import sqlite3
import sys
import threading
import time

from .config import ConfigError, build


def backup_main(argv) -> int:
    """`dynamod backup DEST`: ask the running daemon for a consistent copy."""
    from dynamoclient.connection import Client, ConnectionFailed, RemoteError, add_arguments

    parser = _parser("dynamod backup",
                     "Copy the running daemon's database to DEST (a new file) while it keeps "
                     "serving; restore it with dynamod restore DEST, the daemon stopped.",
                     "a copy of more than 1 MiB says how far it is, about once a second, and "
                     "while it is checked",
                     "  dynamod backup /var/backups/dynamo/inventory-$(date +%F).db\n"
                     "  dynamod check --database /var/backups/dynamo/inventory-2026-11-28.db")
    parser.add_argument("dest", metavar="DEST", help="the backup file to create")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        with Client.from_args(args, use_proxy=True) as client, \
                _Telling("dynamod backup", "copying", args) as telling:

            def on_event(event):
                if event.get("event") == "backup":
                    telling.copy_progress(event)
            result = client.call("backup", path=os.path.abspath(args.dest), _on_event=on_event)
    except (ConnectionFailed, RemoteError) as exc:
        print(f"dynamod backup: {exc}", file=sys.stderr)
        return 1
    print(f"backup of {result['bytes']} bytes written to {result['path']} "
          f"in {result['seconds']} s")
    return 0


def status_main(argv) -> int:
    """`dynamod status`: the running daemon's state in a few lines, or an exit status of 1
    when it does not answer (a monitoring probe's use)."""
    from dynamoclient.arguments import ExamplesFormatter
    from dynamoclient.connection import Client, ConnectionFailed, RemoteError, add_arguments

    parser = argparse.ArgumentParser(
        prog="dynamod status",
        description="Show the running daemon's state: its version, pid and uptime, its "
                    "socket and database, connections and commits, the inventory's counts, "
                    "the file cache, the applications and the writer slot, partitions and "
                    "quotas. Exit status 1 when no daemon answers (for monitoring).",
        epilog="Examples:\n"
               "  dynamod status\n"
               "  dynamod status --json | jq .inventory\n"
               "  dynamod status > /dev/null || echo 'dynamod does not answer'",
        formatter_class=ExamplesFormatter)
    parser.add_argument("--json", action="store_true", help="the answer as JSON, one line")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        with Client.from_args(args, use_proxy=True) as client:
            status = client.call("status")
    except (ConnectionFailed, RemoteError) as exc:
        print(f"dynamod status: {exc}", file=sys.stderr)
        return 1
    if args.json:
        import json
        print(json.dumps(status))
        return 0
    for line in _status_lines(status):
        print(line)
    return 0


def _status_lines(status: dict) -> list[str]:
    up = int(status["uptime"])
    counts = ", ".join(f"{n:,} {kind}" for kind, n in status["inventory"].items())
    cache, apps = status["file_cache"], status["applications"]
    writer = apps.get("writer")
    held = (f"held by application {writer['app']} ({writer['title']!r} of {writer['user']}) "
            f"since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(writer['since']))}"
            if writer else "free")
    rows = [("socket", status["socket"]),
            ("database", f"{status['database']} ({status['commits']:,} commits since the "
                         f"start)"),
            ("connections", status["connections"]),
            ("inventory", counts),
            ("file cache", f"{cache['files']:,} files of {cache['blocks']:,} blocks (limit "
                           f"{cache['limit']:,})"),
            ("applications", f"{apps['active']} active; writer slot {held}"),
            ("partitions", f"{', '.join(status['partitions']) or 'none'}; "
                           f"{status['quotas']} quotas set")]
    return [f"dynamod {status['version']}, pid {status['pid']}, up {up // 86400} d "
            f"{up % 86400 // 3600} h {up % 3600 // 60} min",
            *(f"{label:13} {value}" for label, value in rows)]


HEARTBEAT_SECONDS = 10.0


class _Telling:
    """What a tool's long work says on standard error: its own lines, and, when none came
    for HEARTBEAT_SECONDS (SQLite's integrity_check of a grid's store takes minutes and
    has no steps to count), that it is still at it."""

    def __init__(self, prog: str, doing: str, args):
        self.prog, self.doing = prog, doing
        # on a terminal, or asked for: a job's standard error (cron mails it) stays quiet
        self.shown = args.progress or sys.stderr.isatty()
        self._started = self._told = time.monotonic()
        self._over = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self):
        if self.shown:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._over.set()
        if self.shown:
            self._thread.join()

    def say(self, line: str, doing: str | None = None):
        self.doing = doing or self.doing
        self._told = time.monotonic()
        if self.shown:
            print(f"{self.prog}: {line}", file=sys.stderr, flush=True)

    def copy_progress(self, event: dict):
        """A line for a report of `store.sqlite.paced` (a copy's progress, its check)."""
        total = event["total"] / (1 << 20)
        if event.get("checking"):
            self.say(f"copied {total:.1f} MiB, checking the copy", "checking the copy")
        else:
            self.say(f"copied {event['copied'] / (1 << 20):.1f} of {total:.1f} MiB "
                     f"({100 * event['copied'] // max(event['total'], 1)} %)", "copying")

    def _beat(self):
        while not self._over.wait(max(0.0, self._told + HEARTBEAT_SECONDS - time.monotonic())):
            if time.monotonic() - self._told >= HEARTBEAT_SECONDS:
                self.say(f"still {self.doing}, {time.monotonic() - self._started:.0f} s so far")


def _parser(prog: str, description: str, progress: str,
            examples: str) -> argparse.ArgumentParser:
    """A tool's parser, with --progress; `progress`: what it says of its progress (and,
    every HEARTBEAT_SECONDS, that it is still at it)."""
    from dynamoclient.arguments import ExamplesFormatter

    parser = argparse.ArgumentParser(
        prog=prog, description=f"{description} On a terminal (or with --progress), "
                               f"{progress} every {HEARTBEAT_SECONDS:.0f} s, on standard error.",
        epilog=f"Examples:\n{examples}", formatter_class=ExamplesFormatter)
    parser.add_argument("--progress", action="store_true",
                        help="say how far it is on standard error also when that is not a "
                             "terminal (on one it always does)")
    return parser


def _with_database(parser, what: str) -> argparse.ArgumentParser:
    """The options that name the daemon's database, as dynamod takes them."""
    parser.add_argument("--config", metavar="FILE", help="as for dynamod")
    parser.add_argument("--state-dir", metavar="DIR", help="as for dynamod")
    parser.add_argument("--database", metavar="FILE",
                        help=f"{what} (default: the daemon's, STATE_DIR/inventory.db)")
    return parser


def _config(args):
    options = {"state_dir": os.path.abspath(args.state_dir) if args.state_dir else None,
               "database": os.path.abspath(args.database) if args.database else None}
    return build(args.config, options)



def check_main(argv) -> int:
    """`dynamod check`: is the database file sound?  Read-only, also while a daemon runs."""
    from .store import check

    parser = _parser("dynamod check",
                     "Check a database file (SQLite integrity_check and foreign_key_check), "
                     "read-only, also while a daemon serves it. Prints ok, or each problem "
                     "and how to recover; exits 0 if sound, 1 if not.",
                     "a long check (minutes for a large store) says it goes on",
                     "  dynamod check                          # the daemon's database\n"
                     "  dynamod check --config /etc/dynamo/dynamod.toml\n"
                     "  dynamod check --database /var/backups/dynamo/inventory-2026-11-28.db")
    args = _with_database(parser, "the file to check").parse_args(argv)
    try:
        path = _config(args).database
    except ConfigError as exc:
        print(f"dynamod check: {exc}", file=sys.stderr)
        return 2
    if not os.path.isfile(path):
        why = "a directory, not a database file" if os.path.isdir(path) else "no such file"
        print(f"dynamod check: {path}: {why}", file=sys.stderr)
        return 1
    try:
        with _Telling("dynamod check", f"checking {path} ({_mib(path)})", args):
            found, summary = check.check_file(path)
            if summary is None:
                summary = check.schema_problem(path)
                found = [summary] if summary else found
    except sqlite3.Error as exc:
        print(f"dynamod check: cannot read the database {path}: {exc}", file=sys.stderr)
        return 1
    if summary is None:
        print(f"{path}: ok")
        return 0
    for problem in found:
        print(problem)
    print(f"dynamod check: {summary}", file=sys.stderr)
    return 1


def _mib(path: str) -> str:
    try:
        return f"{os.path.getsize(path) / (1 << 20):.1f} MiB"
    except OSError:
        return "size unknown"


def restore_main(argv) -> int:
    """`dynamod restore COPY`: make a backup the database, with no daemon running."""
    from .errors import StoreError
    from .store.restore import restore
    from .store.sqlite import paced

    parser = _parser("dynamod restore",
                     "Make COPY (a file of dynamod backup) the daemon's database, while no "
                     "daemon runs on it: the copy is checked and written beside the "
                     "database, the current database (its -wal checkpointed into it) is "
                     "kept as DATABASE.replaced-TIME, and the copy renamed into its place.",
                     "it says how far the writing is, about once a second, and while it checks",
                     "  systemctl stop dynamod\n"
                     "  dynamod restore /var/backups/dynamo/inventory-2026-11-28.db   "
                     "# reads /etc/dynamo/dynamod.toml\n"
                     "  systemctl start dynamod\n"
                     "  dynamod restore --state-dir ~/.local/state/dynamo COPY   # a per-user daemon")
    parser.add_argument("copy", metavar="COPY", help="the backup to restore")
    args = _with_database(parser, "the database to replace").parse_args(argv)
    copy = os.path.abspath(args.copy)
    try:
        config = _config(args)
        path = config.database
        with _Telling("dynamod restore", f"checking {copy} ({_mib(copy)})", args) as telling:
            aside = restore(copy, path, paced(telling.copy_progress))
    except (ConfigError, StoreError) as exc:
        print(f"dynamod restore: {exc}", file=sys.stderr)
        return 1
    replaced = f"; the database it replaced is {aside}" if aside else ""
    print(f"{args.copy} restored to {path}{replaced}")
    _note_restore(config.change_log, copy, replaced)
    return 0


def _note_restore(change_log: str, copy: str, replaced: str):
    """The change log says so: the lines above it since the copy was taken no longer
    hold (the daemon's own log says where the inventory was loaded from)."""
    from .auth.identity import account_name
    from .changelog import note

    text = (f"restored the database from {copy}{replaced}: the changes after the copy "
            f"was taken, logged above, are not in it")
    try:
        note(change_log, account_name(os.getuid()) or f"uid{os.getuid()}", text)
    except OSError as exc:
        print(f"dynamod restore: cannot note it in the change log {change_log}: "
              f"{exc.strerror}", file=sys.stderr)


TOOLS = {"backup": backup_main, "check": check_main, "restore": restore_main,
         "status": status_main}
