"""`dynamo-exec-auth` (root only): authorize scripts to run read/write.

    dynamo-exec-auth --executable PATH --title TITLE [--user USER]
    dynamo-exec-auth --list
    dynamo-exec-auth --delete --title TITLE [--user USER | --all-users]

An authorization is the SHA-256 of the script's exact content: any change to
the script needs a new one.  The daemon checks that the caller is root.  An
authorized script runs read/write with the standard library and the installed
packages only (`sys.path` as `python3 -I` has it): never modules from its own
directory, the caller's working directory or PYTHONPATH, which the checksum
does not cover.
"""

import argparse
import hashlib
import sys
import time

from .arguments import Parser
from .connection import (Client, ConnectionFailed, RemoteError, add_arguments, interruptible,
                         parse_arguments)
from .table import format_table


def build_parser() -> Parser:
    parser = Parser(
        prog="dynamo-exec-auth",
        description="Authorize a script to run as a read/write Dynamo application "
                    "(root only), list authorizations, or revoke them.",
        epilog="The authorization covers the script's exact bytes (SHA-256).  A read/write "
               "application imports only the standard library and the installed packages "
               "(as python3 -I would): never modules from the script's directory, the "
               "caller's working directory or PYTHONPATH.  A queued writer is checked "
               "again when its turn comes, and every writer once more when it ends (a "
               "revocation while it runs applies none of its changes).\n"
               "\n"
               "Examples:\n"
               "  dynamo-exec-auth --executable cleanup.py --title cleanup          # all users\n"
               "  dynamo-exec-auth --executable cleanup.py --title cleanup --user jane\n"
               "  dynamo-exec-auth --list --title cleanup\n"
               "  dynamo-exec-auth --delete --title cleanup --user jane    # or --all-users")
    parser.add_argument("-x", "--executable", metavar="PATH", action=_Once,
                        help="the script to authorize")
    parser.add_argument("-t", "--title", action=_Once, help="the application title it runs under")
    parser.add_argument("-u", "--user", action=_Once,
                        help="only this Dynamo user (default: all users)")
    parser.add_argument("-L", "--list", action="store_true",
                        help="list the authorizations (only those of --executable, --title "
                             "and --user when given)")
    parser.add_argument("-D", "--delete", action="store_true", help="revoke (with --title)")
    parser.add_argument("--all-users", action="store_true",
                        help="with --delete: every authorization of the title")
    add_arguments(parser)
    parser.set_defaults(repeated=None)
    return parser


class _Once(argparse.Action):
    """An option that takes one value: a second one is noted (`repeated`) rather than
    silently replacing the first, as the original refused several scripts or titles."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest) is not None and namespace.repeated is None:
            namespace.repeated = "/".join(self.option_strings)
        setattr(namespace, self.dest, values)


def format_list(entries: list) -> str:
    rows = [("TITLE", "USER", "CHECKSUM", "DATE")]
    rows += [(e["title"], e["user"] or "ALL", e["checksum"][:16],
              time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["created"])))
             for e in entries]
    return format_table(rows)


def checksum(path: str) -> str:
    """The SHA-256 of the script's exact bytes, as authorizations hold it."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _selected(entry: dict, args, digest: str | None) -> bool:
    """Whether --list shows `entry`: the original listed a script's authorizations when
    given the script (`digest`, its checksum); a title and a user narrow the list alike."""
    return ((digest is None or entry["checksum"] == digest)
            and (args.title is None or entry["title"] == args.title)
            and (args.user is None or (entry["user"] or "ALL") == args.user))


def _missing(args) -> str | None:
    """What an incomplete command lacks, in one line (None: nothing)."""
    if args.repeated:
        return (f"{args.repeated} given twice: one script, one title and one user at a time "
                f"(run the command once for each)")
    if args.all_users and not args.delete:
        return "--all-users goes with --delete (every authorization of the title)"
    if args.all_users and args.user:
        return "--delete takes --user USER or --all-users, not both"
    if args.list:
        return None
    if args.delete:
        return None if args.title else "--delete needs --title TITLE (the title to revoke)"
    if args.executable and not args.title:
        return "--executable needs --title TITLE (the application title it runs under)"
    if args.title and not args.executable:
        return "--title needs --executable PATH (the script to authorize), or --delete"
    if not args.executable:
        return "nothing to do: give --executable PATH --title TITLE, --list, or --delete"
    return None


@interruptible("dynamo-exec-auth")
def main(argv=None) -> int:
    args = parse_arguments(build_parser(), argv)
    if args is None:
        return 0
    lacking = _missing(args)
    if lacking:
        print(f"dynamo-exec-auth: {lacking}", file=sys.stderr)
        return 2
    try:   # a revocation goes by title and user: its script may be gone
        digest = None if args.executable is None or args.delete else checksum(args.executable)
    except OSError as exc:
        print(f"dynamo-exec-auth: cannot read {args.executable}: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        with Client.from_args(args) as client:
            if args.list:
                entries = client.call("list_script_authorizations")["authorizations"]
                print(format_list([e for e in entries if _selected(e, args, digest)]))
            elif args.delete:
                params = {"title": args.title, "all_users": args.all_users}
                if args.user:
                    params["user"] = args.user
                for entry in client.call("revoke_script_authorization", **params)["revoked"]:
                    print(f"revoked: {entry['title']} for {entry['user'] or 'ALL'}")
            else:
                entries = client.call("list_script_authorizations")["authorizations"]
                held = {(e["title"], e["user"], e["checksum"]) for e in entries}
                if (args.title, args.user, digest) in held:   # the original: nothing to redo
                    how = "already authorized"
                else:
                    params = {"title": args.title, "checksum": digest}
                    if args.user:
                        params["user"] = args.user
                    result = client.call("authorize_script", **params)
                    how = "replaced" if result["replaced"] else "authorized"
                print(f"{how}: {args.executable} (sha256 {digest[:16]}) as {args.title!r} for "
                      f"{args.user or 'ALL'}")
    except (ConnectionFailed, RemoteError) as exc:
        print(f"dynamo-exec-auth: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
