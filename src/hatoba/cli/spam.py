"""`hatoba spam allow|block|remove|list ACCOUNT [SENDER]`: a user's own sender lists.

"allow" keeps a sender's mail out of the user's Junk when only its score put
it there (a forged From is never let in by it); "block" sends a sender's mail
to Junk. SENDER is an address or @domain (subdomains included).
"""

from __future__ import annotations

import argparse

from hatoba.cli.common import CliError
from hatoba.i18n import T, refusal
from hatoba.cli.domain import missing_action, open_directory
from hatoba.store.spamlists import SpamListError, SpamLists


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("spam", help="a user's sender allow and block lists (Junk)")
    missing_action(p, "allow|block|remove|list")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    for kind, text in (("allow", "never send this sender's mail to Junk for its score"),
                       ("block", "send this sender's mail to Junk")):
        one = actions.add_parser(kind, help=text)
        one.add_argument("account", metavar="ACCOUNT", help="the user, by full address")
        one.add_argument("sender", metavar="SENDER", help="an address, or @domain (subdomains too)")
        one.set_defaults(func=run_set, kind=kind)
    remove = actions.add_parser("remove", help="take a sender off the user's lists")
    remove.add_argument("account", metavar="ACCOUNT")
    remove.add_argument("sender", metavar="SENDER")
    remove.set_defaults(func=run_remove)
    listing = actions.add_parser("list", help='print the user\'s lists, one a line: "allow|block SENDER"')
    listing.add_argument("account", metavar="ACCOUNT")
    listing.set_defaults(func=run_list)


def _lists(args: argparse.Namespace) -> tuple[str, SpamLists]:
    with open_directory(args) as directory:  # opening it brings an older database up to date
        if not directory.user_exists(args.account):
            raise CliError(T("%(account)s is not a user here (see hatoba user list)", account=args.account))
        path = directory.path
    try:
        return args.account.strip().lower(), SpamLists(path)
    except SpamListError as exc:
        raise CliError(refusal(exc)) from None


def run_set(args: argparse.Namespace) -> int:
    account, lists = _lists(args)
    try:
        entry = lists.set(account, args.sender, args.kind)
    except SpamListError as exc:
        raise CliError(refusal(exc)) from None
    finally:
        lists.close()
    print(f"{account}: {args.kind} {entry}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    account, lists = _lists(args)
    try:
        removed = lists.remove(account, args.sender)
    except SpamListError as exc:
        raise CliError(refusal(exc)) from None
    finally:
        lists.close()
    if not removed:
        raise CliError(T("%(sender)s is not on the lists of %(account)s", sender=args.sender, account=account))
    print(f"{account}: removed {args.sender.strip().lower()}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    account, lists = _lists(args)
    try:
        for kind, sender in lists.entries(account):
            print(f"{kind} {sender}")
    except SpamListError as exc:
        raise CliError(refusal(exc)) from None
    finally:
        lists.close()
    return 0
