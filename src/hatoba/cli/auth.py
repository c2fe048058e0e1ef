"""`hatoba auth status|release`: see and lift the login throttle (policy/auth_throttle.py).

Addresses and accounts are matched as written (an account also in lower
case, as logins are counted); a running server sees a release at its next
login attempt, as both read the same database.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from hatoba.cli.common import CliError, load_config
from hatoba.i18n import refusal
from hatoba.cli.domain import missing_action, open_directory
from hatoba.net.login import account_key
from hatoba.policy.auth_throttle import LoginThrottle, ScopeState
from hatoba.store.loginstate import LoginStateError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("auth", help="show or lift the throttle on failed logins")
    missing_action(p, "status|release")
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    status = actions.add_parser("status", help="list the client addresses and accounts with failed logins counted")
    status.add_argument("subject", metavar="ADDRESS|ACCOUNT", nargs="?", help="only this client address or account")
    status.set_defaults(func=run_status)

    release = actions.add_parser("release", help="forget the failed logins of a client address or an account")
    release.add_argument("subject", metavar="ADDRESS|ACCOUNT")
    release.set_defaults(func=run_release)


@contextmanager
def open_throttle(args: argparse.Namespace) -> Iterator[LoginThrottle]:
    """The throttle of the configured directory; its errors become one-line CLI errors."""
    config = load_config(args)
    with open_directory(args) as directory:  # runs the migrations that make the tables
        try:
            throttle = LoginThrottle.open(config.auth, directory.path)
            try:
                yield throttle
            finally:
                throttle.close()
        except LoginStateError as exc:
            raise CliError(refusal(exc)) from None


def format_state(state: ScopeState) -> str:
    """One line: the scope, the address and/or account as counted, and the reason in plain words.

    Account names are what clients typed: control characters and the like
    are shown escaped (as in the mail log), never sent to the terminal."""
    return f"{state.scope} {_printable(state.subject)}: {state.reason}"


def _printable(text: str) -> str:
    if text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")


def _subject(raw: str | None) -> str | None:
    """The address or account as the throttle counts it: `"carol"@Example.test` is carol@example.test."""
    if raw is None:
        return None
    subject = raw.strip()
    if not subject:
        raise CliError("give a client address or an account, e.g. 192.0.2.7 or alice@example.org")
    return account_key(subject) if "@" in subject else subject


def run_status(args: argparse.Namespace) -> int:
    args.subject = _subject(args.subject)
    with open_throttle(args) as throttle:
        states = throttle.status(args.subject)
    if not states:
        print(f"no failed logins counted for {args.subject}" if args.subject else "no failed logins counted")
    for state in states:
        print(format_state(state))
    return 0


def run_release(args: argparse.Namespace) -> int:
    subject = _subject(args.subject)
    assert subject is not None
    with open_throttle(args) as throttle:
        states = throttle.status(subject)
        released = throttle.release(subject)
    if not released:
        print(f"nothing to release: no failed logins are counted for {subject}")
        return 0
    for state in states:
        print(f"released {format_state(state)}")
    if not states:  # only records whose count had drained away
        print(f"released {subject}: its failed logins had already drained away")
    return 0
