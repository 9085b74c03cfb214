"""`dynamo-user-auth` (root only): users, their DNs and accounts, roles and grants.

    dynamo-user-auth --user NAME [--dn DN] [--email ADDR] [--account LOGIN] [--yes]
    dynamo-user-auth --user NAME --role ROLE [--target inventory|application|all]
    dynamo-user-auth --user NAME --role ROLE [--target T] --revoke
    dynamo-user-auth --list [--user NAME] [--role ROLE] [--target T]
    dynamo-user-auth --user NAME [--remove-dn DN] [--remove-account LOGIN]
    dynamo-user-auth --user NAME --delete [--yes]  (with its DNs, accounts and grants)
    dynamo-user-auth --user NAME                 (shows the user)

DNs may be given in slash form (/DC=ch/DC=cern/OU=Users/CN=Jane Doe) or in
comma form (CN=Jane Doe,OU=Users,DC=cern,DC=ch); they are stored in slash
form.  The daemon checks that the caller is the superuser.  Only a Unix
account is ever the superuser, so no default proxy is tried: root's grid proxy
would make root act as the proxy's (non-super) user.
"""

import pwd
import sys

from .arguments import Parser
from .connection import (Client, ConnectionFailed, RemoteError, add_arguments, interruptible,
                         parse_arguments)
from .table import format_table

TARGETS = ("inventory", "application", "all")


def build_parser() -> Parser:
    parser = Parser(
        prog="dynamo-user-auth",
        description="Add and update Dynamo users, grant and revoke roles, list grants "
                    "(superuser only).  --user alone shows the user.",
        epilog="Examples:\n"
               "  dynamo-user-auth --user jane --email jane@example.org \\\n"
               "      --dn '/DC=org/DC=example/OU=Users/CN=Jane Doe' --role admin --yes\n"
               "  dynamo-user-auth --user ops --account ops --role operator --target inventory "
               "--yes\n"
               "  dynamo-user-auth --list --role operator\n"
               "  dynamo-user-auth --user ops --role operator --target inventory --revoke\n"
               "  dynamo-user-auth --user ops --delete --yes")
    parser.add_argument("-u", "--user", help="the user to add, update, grant to or revoke from")
    parser.add_argument("-n", "--dn", action="append", default=[],
                        help="an X.509 subject of the user")
    parser.add_argument("-m", "--email", help="the user's e-mail address")
    parser.add_argument("--account", action="append", default=[],
                        help="a local (Unix) account that acts as the user")
    parser.add_argument("--remove-dn", action="append", default=[], metavar="DN",
                        help="take this X.509 subject from the user")
    parser.add_argument("--remove-account", action="append", default=[], metavar="LOGIN",
                        help="take this local account from the user")
    parser.add_argument("--delete", action="store_true",
                        help="delete the user, with its DNs, accounts and grants")
    parser.add_argument("-r", "--role", help="grant this role (or revoke it with --revoke)")
    parser.add_argument("-g", "--target", choices=TARGETS,
                        help="what the role applies to (default: all; with --revoke: every "
                             "target)")
    parser.add_argument("-R", "--revoke", action="store_true", help="take the role back")
    parser.add_argument("-L", "--list", action="store_true",
                        help="list users, roles and targets (those of --user, --role and "
                             "--target when given; a grant on all holds for every target)")
    parser.add_argument("-y", "-Y", "--yes", action="store_true",
                        help="do not ask before creating a user or a role")
    parser.add_argument("-l", "--log-level", metavar="LEVEL",
                        help="the original's: accepted, with a note, and without effect (the "
                             "daemon logs every change of users and grants)")
    add_arguments(parser)
    return parser


def confirm(question: str, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        print(f"dynamo-user-auth: {question} Not confirmed: no terminal to ask (use --yes)",
              file=sys.stderr)
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def format_grants(rows: list) -> str:
    table = [("USER", "ROLE", "TARGET")] + [(r["user"], r["role"] or "-", r["target"] or "-")
                                           for r in rows]
    return format_table(table)


def _user(client, name) -> dict | None:
    """The user's record (get_user), None if there is no such user."""
    try:
        return client.call("get_user", name=name)
    except RemoteError as exc:
        if exc.code == "not_found":
            return None
        raise


def format_user(user: dict) -> str:
    return (f"user {user['name']}: e-mail {user['email'] or '-'}; DNs "
            f"{', '.join(user['dns']) or '-'}; accounts {', '.join(user['accounts']) or '-'}")


def run(args, client) -> int:
    if args.list:
        params = {k: v for k, v in (("user", args.user), ("role", args.role)) if v}
        grants = client.call("list_grants", **params)["grants"]
        # a grant on all holds for every target: it answers "who may act on TARGET"
        print(format_grants([g for g in grants if args.target in (None, g["target"])
                             or g["target"] == "all"]))
        return 0
    if args.revoke:
        params = {"user": args.user, "role": args.role}
        if args.target:
            params["target"] = args.target
        for g in client.call("revoke_role", **params)["revoked"]:
            print(f"revoked: role {g['role']} on {g['target']} from {g['user']}")
        return 0
    known = _user(client, args.user)
    changes = args.dn or args.email is not None or args.account or args.role
    if known is None and not (changes or args.yes and not args.delete):
        print(f"dynamo-user-auth: unknown user {args.user} (to add it, give --email, --dn, "
              f"--account or --role, or --yes to add it with none)", file=sys.stderr)
        return 1
    if args.delete:
        return _delete(client, known, args.yes)
    if args.remove_dn or args.remove_account:
        known = client.call("remove_from_user", name=args.user, dns=args.remove_dn,
                            accounts=args.remove_account)
        print(f"updated {format_user(known)}")
        if not changes:
            return 0
    _note_unknown_accounts(args.account)
    if known is None and not confirm(f"Create new user {args.user}?", args.yes):
        return 1
    if known is None or args.dn or args.email is not None or args.account:
        user = client.call("set_user", name=args.user, email=args.email, dns=args.dn,
                           accounts=args.account)
        print(f"{'created' if user['created'] else 'updated'} {format_user(user)}")
    elif not args.role:   # nothing to change: show what there is
        print(format_user(known))
    if args.role:
        if args.role not in client.call("list_grants", user=args.user)["roles"]:
            if not confirm(f"Role {args.role} does not exist. Create it?", args.yes):
                return 1
            client.call("create_role", role=args.role)
        target = args.target or "all"
        grant = client.call("grant_role", user=args.user, role=args.role, target=target)
        print(f"{'granted' if grant['new'] else 'already granted'}: role {args.role} on "
              f"{target} to {args.user}")
    return 0


def _delete(client, user: dict, assume_yes: bool) -> int:
    grants = ", ".join(f"{role} on {target}" for role, target in user["roles"]) or "none"
    if not confirm(f"Delete user {user['name']} (grants: {grants})?", assume_yes):
        return 1
    gone = client.call("delete_user", name=user["name"])
    print(f"deleted {format_user(gone)}; grants: {grants}")
    return 0


def _note_unknown_accounts(accounts: list):
    """An account the daemon's host does not know maps nobody until it exists: say so (a
    typo, most likely), and go on."""
    for account in accounts:
        try:
            pwd.getpwnam(account)
        except KeyError:
            print(f"dynamo-user-auth: note: {account} is not a local account here; it maps "
                  f"to the user once it exists", file=sys.stderr)


@interruptible("dynamo-user-auth")
def main(argv=None) -> int:
    args = parse_arguments(build_parser(), argv)
    if args is None:
        return 0
    lacking = None
    if not args.list and not args.user:
        lacking = "--user NAME is needed (the user to add, update, grant to or revoke from)"
    elif args.revoke and not args.role:
        lacking = "--revoke needs --role ROLE (the role to take back)"
    elif args.revoke and (args.dn or args.email is not None or args.account):
        lacking = ("--revoke only takes a role back: change the user's e-mail, DNs or "
                   "accounts in a command of its own")
    elif args.target and not args.role and not args.list:
        lacking = "--target needs --role ROLE (the role granted or revoked on it)"
    elif args.delete and (args.list or args.revoke or args.role or args.dn or args.account
                          or args.email is not None or args.remove_dn or args.remove_account):
        lacking = "--delete takes only --user NAME (and --yes): the user goes as a whole"
    elif (args.remove_dn or args.remove_account) and (args.list or args.revoke):
        lacking = "--remove-dn and --remove-account change a user: not with --list or --revoke"
    if lacking:
        print(f"dynamo-user-auth: {lacking}", file=sys.stderr)
        return 2
    if args.log_level is not None:
        print("dynamo-user-auth: note: -l/--log-level has no effect here: the daemon logs "
              "every change of users and grants", file=sys.stderr)
    try:
        with Client.from_args(args) as client:
            return run(args, client)
    except (ConnectionFailed, RemoteError) as exc:
        print(f"dynamo-user-auth: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
