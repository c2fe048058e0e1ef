"""The `hatoba` command: parses arguments and hands over to one subcommand module.

Each subcommand module has `register(subparsers)`, which adds its parser and
sets `func` to a function taking the parsed arguments and returning the exit
status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hatoba import __version__
from hatoba.cli.common import CliError
from hatoba.i18n import say, terminal_language

SUBCOMMAND_MODULES = (
    "hatoba.cli.init",
    "hatoba.cli.serve",
    "hatoba.cli.check",
    "hatoba.cli.domain",
    "hatoba.cli.user",
    "hatoba.cli.alias",
    "hatoba.cli.spam",
    "hatoba.cli.admin",
    "hatoba.cli.queue",
    "hatoba.cli.dkim",
    "hatoba.cli.cert",
    "hatoba.cli.auth",
    "hatoba.cli.backup",
    "hatoba.cli.restore",
    "hatoba.cli.importing",
)


# Commands whose module is not named after them.
MODULE_OF_COMMAND = {"import": "hatoba.cli.importing"}


def _module_of(argv: Sequence[str]) -> str | None:
    """The module of the command `argv` names (None: none, or one not known), so that only it
    is loaded: `hatoba serve` then keeps out of memory what the other commands use (the
    service set-up, the importers, the backup tools) for as long as it runs."""
    rest = list(argv)
    while rest:
        word = rest.pop(0)
        if word in ("-c", "--config"):
            if rest:
                rest.pop(0)
            continue
        if word.startswith("-"):
            continue
        module = MODULE_OF_COMMAND.get(word, f"hatoba.cli.{word}")
        return module if module in SUBCOMMAND_MODULES else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of the one command `argv` names."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="hatoba",
        description="hatoba: one program for a whole mail service.",
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="config file (default: $HATOBA_CONFIG, else /etc/hatoba/hatoba.toml)",
    )
    parser.add_argument("--version", action="version", version=f"hatoba {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    only = _module_of(argv) if argv is not None else None
    for name in (only,) if only is not None else SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # subcommand not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 1
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        # In the terminal's language when the refusal has a translation (hatoba/i18n.py).
        print(f"hatoba: {say(exc.args[0] if exc.args else exc, terminal_language())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
