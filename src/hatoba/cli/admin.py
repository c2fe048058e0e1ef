"""`hatoba admin grant|revoke|list`: who administers the server or a domain in the web admin.

A server administrator manages everything; a domain administrator only the
users, aliases and DKIM key of their domains. An administrator logs in as
the user it is, with that user's password (store/roles.py).
"""

from __future__ import annotations

import argparse

from hatoba.cli.common import CliError
from hatoba.i18n import refusal
from hatoba.cli.domain import missing_action, open_directory
from hatoba.store.api import DirectoryError
from hatoba.store.roles import Roles


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("admin", help="let a user administer the server or a domain (web admin)")
    missing_action(p, "grant|revoke|list")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    for name, func, text in (("grant", run_grant, "make a user an administrator of the server or of a domain"),
                             ("revoke", run_revoke, "take that role back")):
        one = actions.add_parser(name, help=text)
        one.add_argument("address", metavar="ADDRESS", help="the user, by full address")
        one.add_argument("scope", metavar="server|DOMAIN", help="server = everything; DOMAIN = that domain only")
        one.set_defaults(func=func)
    actions.add_parser("list", help='print the roles, one a line: "ADDRESS server|DOMAIN"').set_defaults(func=run_list)


def _roles(args: argparse.Namespace) -> Roles:
    with open_directory(args) as directory:  # opening it brings an older database up to date
        path = directory.path
    try:
        return Roles(path)
    except DirectoryError as exc:
        raise CliError(refusal(exc)) from None


def _what(scope: str) -> str:
    return "the server" if scope == "*" else scope


def _change(args: argparse.Namespace, grant: bool) -> int:
    roles = _roles(args)
    try:
        account, scope = (roles.grant if grant else roles.revoke)(args.address, args.scope)
    except DirectoryError as exc:
        raise CliError(refusal(exc)) from None
    finally:
        roles.close()
    print(f"{account} {'now administers' if grant else 'no longer administers'} {_what(scope)}")
    return 0


def run_grant(args: argparse.Namespace) -> int:
    return _change(args, grant=True)


def run_revoke(args: argparse.Namespace) -> int:
    return _change(args, grant=False)


def run_list(args: argparse.Namespace) -> int:
    roles = _roles(args)
    try:
        for account, scope in roles.listing():
            print(f"{account} {scope}")
    finally:
        roles.close()
    return 0
