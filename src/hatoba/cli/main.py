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


def build_parser() -> argparse.ArgumentParser:
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
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # subcommand not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
