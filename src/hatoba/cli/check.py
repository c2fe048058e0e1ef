"""`hatoba check`: the security self-check of a configuration, in plain words.

Validates the config (listing every problem, not just the first), says per
listener how it is encrypted and whether a password could cross in clear
text, who may relay, tests our own port 25 for an open relay, checks the
certificates, and prints the DNS records to publish, compared with DNS.
Exit status 1 when anything is critical, so cron and monitoring can act.
The work is in hatoba.selfcheck; this module parses flags and prints.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from hatoba.cli.common import CliError, config_path
from hatoba.i18n import refusal
from hatoba.config.schema import Config

if TYPE_CHECKING:
    from hatoba.selfcheck.findings import Report


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("check", help="validate config, certificates, listeners; print the DNS records to publish")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument("--no-live", action="store_true", help="do not connect to port 25 for the open-relay test")
    p.add_argument("--no-dns", action="store_true", help="do not compare the DNS records with what DNS answers")
    p.add_argument(
        "--probe", metavar="HOST:PORT",
        help="run the open-relay test against this address instead of the smtp listener's",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hatoba.config.load import ConfigError, parse_listen_address
    from hatoba.selfcheck.report import render_json, render_text
    from hatoba.selfcheck.runner import Options, run as run_checks

    try:
        config = load_unvalidated(args)
    except CliError as exc:
        if not args.json:
            raise
        # Scripts read stdout as JSON whatever happened; people still get the line on stderr.
        print(render_json(unloadable_report(str(exc)), config=str(config_path(args)), hostname=""))
        print(f"hatoba: {exc}", file=sys.stderr)
        return 1
    probe = None
    if args.probe:
        try:
            probe = parse_listen_address(args.probe, "--probe")
        except ConfigError as exc:
            raise CliError(refusal(exc)) from None
    report = run_checks(config, Options(live=not args.no_live, dns=not args.no_dns, probe=probe))
    path = str(config.config_path)
    if args.json:
        print(render_json(report, config=path, hostname=config.server.hostname))
    else:
        from hatoba.i18n import terminal_language

        print(render_text(report, config_path=path, hostname=config.server.hostname, language=terminal_language()),
              end="")
    return report.exit_status


def load_unvalidated(args: argparse.Namespace) -> Config:
    """The config as written, without refusing unsafe values: the check reports those.

    Syntax errors, unknown keys and wrong types still stop here with one line,
    as in every other command: there is no config to check without them.
    """
    from hatoba.config.load import ConfigError, load_config

    try:
        return load_config(config_path(args), validate=False)
    except ConfigError as exc:
        raise CliError(refusal(exc)) from None


def unloadable_report(error: str) -> Report:
    """The report of a config that cannot even be read: one critical finding saying why."""
    from hatoba.selfcheck.findings import Finding, Report

    return Report(findings=[Finding(
        "config", "config.load", "critical", "Config file not loaded",
        f"{error[:1].upper()}{error[1:].rstrip('.')}; nothing else could be checked.",
        "Fix the config file as the message says, then run hatoba check again.",
    )])
