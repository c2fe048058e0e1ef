"""`hatoba alias add|remove|list`: addresses that lead to users or elsewhere.

`alias list` prints one alias a line as "SOURCE TARGET,TARGET", the same
form `alias add` takes, so its output can be fed back in.
"""

from __future__ import annotations

import argparse

from hatoba.cli.common import CliError
from hatoba.cli.domain import missing_action, open_directory
from hatoba.i18n import T


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("alias", help="add, remove or list aliases (and catch-alls, written @DOMAIN)")
    missing_action(p, "add|remove|list")
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    add = actions.add_parser("add", help="add targets to an alias (created if new)")
    add.add_argument(
        "source", metavar="SOURCE", help="an address in a local domain, or @DOMAIN for the domain's catch-all"
    )
    add.add_argument(
        "targets", metavar="TARGET[,TARGET...]", nargs="+",
        help="users, other aliases or addresses elsewhere, separated by commas",
    )
    add.set_defaults(func=run_add)

    remove = actions.add_parser("remove", help="remove one target of an alias, or the whole alias")
    remove.add_argument("source", metavar="SOURCE")
    remove.add_argument("target", metavar="TARGET", nargs="?")
    remove.set_defaults(func=run_remove)

    listing = actions.add_parser("list", help='print the aliases, one a line: "SOURCE TARGET,TARGET"')
    listing.set_defaults(func=run_list)


def run_add(args: argparse.Namespace) -> int:
    targets = [t.strip() for arg in args.targets for t in arg.split(",") if t.strip()]
    if not targets:
        raise CliError(T("give at least one target address, like: hatoba alias add SOURCE user@example.org"))
    with open_directory(args) as directory:
        added = directory.add_alias(args.source, targets)
    if added:
        print(f"alias {args.source.strip()} -> {', '.join(added)}")
    else:
        print(f"alias {args.source.strip()} already had every target given; nothing changed")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    with open_directory(args) as directory:
        source = directory.remove_alias(args.source, args.target)
    if args.target is None:
        print(f"removed alias {source}")
    else:
        print(f"removed {args.target} from alias {source}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    with open_directory(args) as directory:
        aliases = directory.list_aliases()
    for source, targets in aliases.items():
        print(f"{source} {','.join(targets)}")
    return 0
