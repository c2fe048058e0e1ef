"""Outside programs the tests talk to ("peers"): openssl, swaks, curl, fetchmail,
mbsync, mutt, postfix, smtp-sink.

A test that needs one says so with `@needs("swaks")` (or `pytestmark = needs(...)`),
or calls `require("openssl")` inside the test. Where the program is missing the
test is skipped and the skip names it. With HATOBA_REQUIRE_PEERS=1 in the
environment (CI sets it) a missing peer fails the test instead, with the same
message, so a CI image that lost a package cannot turn interop tests into
quiet skips.

Only a missing program is a peer. Limits of the machine (not root, cannot
mount, an OpenSSL that refuses SHA-1, a Linux-only flag) stay plain skips.

The `needs` marker is evaluated by the `pytest_runtest_setup` hook below, which
tests/conftest.py loads as a plugin (`-p support.peers` elsewhere).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REQUIRE_ENV = "HATOBA_REQUIRE_PEERS"
INSTALL_HINT = "scripts/install-test-peers.sh installs it"
MARKER = "peer"

# Debian installs postfix and smtp-sink in /usr/sbin, which is not on every PATH.
_SBIN = (Path("/usr/sbin"), Path("/sbin"))


def peers_required() -> bool:
    """True when HATOBA_REQUIRE_PEERS asks that a missing peer fail the test."""
    return os.environ.get(REQUIRE_ENV, "").strip() not in ("", "0", "no", "false")


def find(program: str) -> str | None:
    """The path of `program` (PATH, then /usr/sbin and /sbin), or None."""
    found = shutil.which(program)
    if found:
        return found
    for folder in _SBIN:
        candidate = folder / program
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def missing_message(program: str, why: str = "") -> str:
    """What a skip or failure says about a missing `program`."""
    return f"test peer {program} is not installed ({why or INSTALL_HINT})"


def require(program: str, why: str = "") -> str:
    """The path of `program`; skips the running test where it is missing, or
    fails it when HATOBA_REQUIRE_PEERS=1."""
    found = find(program)
    if found is not None:
        return found
    message = missing_message(program, why)
    if peers_required():
        pytest.fail(f"{message}; {REQUIRE_ENV}=1 makes a missing peer a failure", pytrace=False)
    pytest.skip(message)


def needs(program: str, why: str = "") -> pytest.MarkDecorator:
    """A marker for a test (or, in `pytestmark`, a module) that runs `program`."""
    return getattr(pytest.mark, MARKER)(program, why=why)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # tryfirst: decided before any fixture starts a server for a test that cannot run.
    for mark in item.iter_markers(name=MARKER):
        require(*mark.args, **mark.kwargs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(program, why=''): runs an outside program; skipped where it is missing, "
        f"a failure when {REQUIRE_ENV}=1",
    )
