"""`hatoba user add|passwd|apop|quota|forward|remove|list`: the mailbox owners; the login is the full address.

A password never travels on the command line (other local users can read
it in the process list): it is typed twice at a terminal prompt, or read as
one line from standard input with --password-stdin.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from hatoba.cli.common import CliError
from hatoba.i18n import T, refusal
from hatoba.cli.domain import missing_action, open_directory
from hatoba.store.api import DirectoryError
from hatoba.store.directory import check_password


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("user", help="add, remove or list users, or change a password")
    missing_action(p, "add|passwd|apop|quota|forward|remove|list")
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    add = actions.add_parser("add", help="create a user (prompts for the password)")
    add.add_argument("address", metavar="ADDRESS", help="the full address, which is also the login")
    _password_stdin_flag(add)
    add.set_defaults(func=run_add)

    passwd = actions.add_parser("passwd", help="change a user's password")
    passwd.add_argument("address", metavar="ADDRESS")
    _password_stdin_flag(passwd)
    passwd.set_defaults(func=run_passwd)

    remove = actions.add_parser("remove", help="delete a user (its stored mail is left in place)")
    remove.add_argument("address", metavar="ADDRESS")
    remove.set_defaults(func=run_remove)

    apop = actions.add_parser(
        "apop", help="turn APOP on (with its own secret) or off for a user; POP3S is the better protection"
    )
    apop.add_argument("address", metavar="ADDRESS")
    switch = apop.add_mutually_exclusive_group(required=True)
    switch.add_argument("--enable", action="store_true", help="set an APOP secret (prompts, or --password-stdin)")
    switch.add_argument("--disable", action="store_true", help="forget the APOP secret")
    _password_stdin_flag(apop)
    apop.set_defaults(func=run_apop)

    quota = actions.add_parser("quota", help="set a user's own storage limit, or go back to imap.quota_mb")
    quota.add_argument("address", metavar="ADDRESS")
    quota.add_argument("limit", metavar="MIB|none|default",
                       help="MiB across all folders; none = no limit; default = imap.quota_mb")
    quota.set_defaults(func=run_quota)

    forward = actions.add_parser(
        "forward", help="forward a user's mail to other addresses (keeping a copy unless --no-copy), or --off")
    forward.add_argument("address", metavar="ADDRESS")
    forward.add_argument("targets", metavar="TARGET[,TARGET...]", nargs="*",
                         help="where the mail goes; no targets shows the forwarding")
    forward.add_argument("--no-copy", action="store_true", help="keep no copy in the user's own mailbox")
    forward.add_argument("--off", action="store_true", help="stop forwarding")
    forward.set_defaults(func=run_forward)

    listing = actions.add_parser("list", help="print the users, one a line")
    listing.add_argument("domain", metavar="DOMAIN", nargs="?", help="only the users of this domain")
    listing.set_defaults(func=run_list)


def _password_stdin_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password as one line from standard input (for scripts)",
    )


def read_password(args: argparse.Namespace, address: str) -> str:
    """The new password: one stdin line with --password-stdin, else typed twice at a terminal."""
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise CliError(T("no password on standard input; write it as one line"))
        return line.removesuffix("\n").removesuffix("\r")
    if not sys.stdin.isatty():
        raise CliError(T("standard input is not a terminal: use --password-stdin and write the password to it"))
    first = getpass.getpass(f"Password for {address}: ")
    try:
        check_password(first)  # say so now, not after the second prompt
    except DirectoryError as exc:
        raise CliError(refusal(exc)) from None
    if getpass.getpass("Repeat the password: ") != first:
        raise CliError(T("the two passwords differ; nothing was changed, try again"))
    return first


def run_add(args: argparse.Namespace) -> int:
    with open_directory(args) as directory:
        # Refuse a bad address before asking for a password.
        address = directory.check_new_user(args.address)
        password = read_password(args, address)
        address = directory.add_user(args.address, password)
    print(f"added user {address}")
    return 0


def run_passwd(args: argparse.Namespace) -> int:
    with open_directory(args) as directory:
        if not directory.user_exists(args.address):
            raise CliError(T("no user %(address)s; see `hatoba user list`", address=args.address))
        password = read_password(args, args.address)
        address = directory.set_password(args.address, password)
    print(f"changed the password of {address}")
    return 0


def run_apop(args: argparse.Namespace) -> int:
    from hatoba.cli.common import load_config
    from hatoba.store.secretbox import SecretBox, SecretBoxError

    with open_directory(args) as directory:
        if not directory.user_exists(args.address):
            raise CliError(T("no user %(address)s; see `hatoba user list`", address=args.address))
        if args.disable:
            address = directory.set_apop_secret(args.address, None)
            print(f"APOP is off for {address}")
            return 0
        secret = read_password(args, args.address)
        if directory.verify_password(args.address, secret):
            raise CliError(T(
                "use a secret other than the login password: APOP keeps it readable by the server "
                "and sends an MD5 digest of it"
            ))
        try:
            box = SecretBox(load_config(args).paths.secrets_key)
        except (SecretBoxError, OSError) as exc:
            raise CliError(refusal(exc)) from None
        address = directory.set_apop_secret(args.address, box.seal(secret))
    print(f"APOP is on for {address}; mail programs must use this secret with APOP (POP3S is still better)")
    return 0


def run_quota(args: argparse.Namespace) -> int:
    text = args.limit.strip().lower()
    if text == "default":
        megabytes = None
    elif text == "none":
        megabytes = 0
    elif text.isdigit():
        megabytes = int(text)
    else:
        raise CliError(T("%(limit)s is not a size in MiB, 'none' or 'default'", limit=repr(args.limit)))
    with open_directory(args) as directory:
        address = directory.set_quota(args.address, megabytes)
    if megabytes is None:
        print(f"{address} now has the server's limit (imap.quota_mb)")
    elif megabytes == 0:
        print(f"{address} has no storage limit")
    else:
        print(f"{address} may store {megabytes} MiB; new mail waits in the queue while the mailbox is full")
    return 0


def run_forward(args: argparse.Namespace) -> int:
    targets = [t.strip() for arg in args.targets for t in arg.split(",") if t.strip()]
    if args.off and targets:
        raise CliError("give either targets or --off, not both")
    with open_directory(args) as directory:
        if args.off or targets:
            address = directory.set_forwards(args.address, targets, keep_copy=not args.no_copy)
        else:
            address = args.address
        now, keep = directory.forwards(args.address)
    if not now:
        print(f"{address}: no forwarding; mail stays in the mailbox")
    else:
        print(f"{address} -> {', '.join(now)}" + ("" if keep else " (no copy kept)"))
    return 0


def run_remove(args: argparse.Namespace) -> int:
    with open_directory(args) as directory:
        address = directory.remove_user(args.address)
    print(f"removed user {address} (its stored mail was left in place)")
    return 0


def run_list(args: argparse.Namespace) -> int:
    with open_directory(args) as directory:
        users = directory.list_users(args.domain)
    for user in users:
        print(user)
    return 0
