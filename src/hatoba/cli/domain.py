"""`hatoba domain add|remove|list`: the domains whose mail is delivered here.

Also holds open_directory(), the one way the directory subcommands (domain,
user, alias) open the directory named by the config and turn its errors into
one-line CLI errors.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from hatoba.cli.common import CliError, load_config
from hatoba.i18n import T, refusal
from hatoba.store.api import DirectoryError
from hatoba.store.directory import Directory


@contextmanager
def open_directory(args: argparse.Namespace) -> Iterator[Directory]:
    """The directory of the configured data folder; DirectoryError becomes CliError."""
    config = load_config(args)
    data_dir = config.paths.data_dir
    try:
        # Same mode as the server gives it: the folder holds password hashes and mail.
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(T("cannot create the data folder %(folder)s: %(reason)s", folder=str(data_dir),
                         reason=exc.strerror or str(exc))) from None
    try:
        with Directory(config.paths.directory_db) as directory:
            yield directory
    except DirectoryError as exc:
        raise CliError(refusal(exc)) from None


def missing_action(parser: argparse.ArgumentParser, actions: str) -> None:
    """Make `hatoba NOUN` without an action a one-line user error rather than a usage dump."""

    def run(args: argparse.Namespace) -> int:
        raise CliError(T("give an action: %(command)s (see --help)",
                         command=f"hatoba {parser.prog.split()[-1]} {actions}"))

    parser.set_defaults(func=run)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("domain", help="add, remove or list the local domains")
    missing_action(p, "add|remove|list")
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    add = actions.add_parser("add", help="accept and deliver mail for DOMAIN here")
    add.add_argument("domain", metavar="DOMAIN")
    add.set_defaults(func=run_add)

    remove = actions.add_parser("remove", help="stop handling DOMAIN (it must have no users or aliases left)")
    remove.add_argument("domain", metavar="DOMAIN")
    remove.set_defaults(func=run_remove)

    listing = actions.add_parser("list", help="print the local domains, one a line")
    listing.set_defaults(func=run_list)


def run_add(args: argparse.Namespace) -> int:
    with open_directory(args) as directory:
        domain = directory.add_domain(args.domain)
    print(f"added domain {domain}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    with open_directory(args) as directory:
        domain = directory.remove_domain(args.domain)
    print(f"removed domain {domain}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    with open_directory(args) as directory:
        domains = directory.list_domains()
    for domain in domains:
        print(domain)
    return 0
