"""`hatoba auth status|release` run as a real program on a setup made by `hatoba init`."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hatoba.config.schema import AuthConfig
from hatoba.policy.auth_throttle import Attempt, LoginThrottle, Refusal, limits_from
from hatoba.store.loginstate import LoginState

GUESSER = "203.0.113.66"
OFFICE = "198.51.100.20"
# `hatoba init` writes the [auth] settings commented out: the CLI uses the defaults, as the throttle here does.
LIMITS = limits_from(AuthConfig())


class Home:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "hatoba.toml"
        self.db = root / "data" / "directory.sqlite3"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hatoba", "-c", str(self.config), *args],
            input="", capture_output=True, text=True, timeout=60,
        )

    def ok(self, *args: str) -> list[str]:
        result = self.run(*args)
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
        return result.stdout.splitlines()

    def fails(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 1 and result.stdout == "", (result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        [line] = result.stderr.splitlines()
        return line.removeprefix("hatoba: ")


@pytest.fixture
def home(tmp_path: Path) -> Home:
    root = tmp_path / "h"
    result = subprocess.run(
        [sys.executable, "-m", "hatoba", "init", str(root), "--hostname", "mail.example.test",
         "--domain", "example.test", "--port-offset", "41000"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return Home(root)


@pytest.fixture
def throttle(home: Home) -> Iterator[LoginThrottle]:
    """The server's side. Its clock stands still (so quick failures fill the pair's burst
    however slow the machine); it reads real time, as the CLI does."""
    now = time.time()
    with LoginState(home.db) as state:
        yield LoginThrottle(AuthConfig(), state, clock=lambda: now)


def fail(throttle: LoginThrottle, address: str, account: str, times: int) -> None:
    for _ in range(times):
        attempt = throttle.begin(address, account)
        assert isinstance(attempt, Attempt)
        throttle.failed(attempt)


def test_status_and_release(home: Home, throttle: LoginThrottle) -> None:
    pair, address = LIMITS["pair"], LIMITS["address"]
    assert home.ok("auth", "status") == ["no failed logins counted"]
    fail(throttle, GUESSER, "alice@example.test", pair.burst)
    assert isinstance(throttle.begin(GUESSER, "alice@example.test"), Refusal)  # the pair is refused now
    fail(throttle, OFFICE, "bob@example.test", 2)

    lines = home.ok("auth", "status")
    assert [line.split(":")[0] for line in lines] == [
        f"address {OFFICE}",
        f"address {GUESSER}",
        "account alice@example.test",
        "account bob@example.test",
        f"pair bob@example.test from {OFFICE}",
        f"pair alice@example.test from {GUESSER}",
    ]
    blocked = lines[-1]
    # Full (the burst, or a little less as real time drains it), refused for about one slot.
    assert re.fullmatch(
        rf"pair alice@example\.test from {re.escape(GUESSER)}: ({pair.burst}\.0|{pair.burst - 1}\.9) failed logins "
        rf"for this account from this address \(limit {pair.burst}; one more allowed every {pair.slot:.0f} s\); "
        r"tries refused for (\d+) s more",
        blocked,
    ), blocked
    seconds_left = int(blocked.rsplit(" ", 3)[1])
    assert pair.slot - 20 <= seconds_left <= pair.slot
    assert "refused" not in "".join(lines[:-1])

    assert [line.split(":")[0] for line in home.ok("auth", "status", GUESSER)] == [
        f"address {GUESSER}",
        f"pair alice@example.test from {GUESSER}",
    ]
    assert home.ok("auth", "status", "192.0.2.1") == ["no failed logins counted for 192.0.2.1"]

    released = home.ok("auth", "release", "alice@example.test")
    assert [line.split(":")[0] for line in released] == [
        "released account alice@example.test",
        f"released pair alice@example.test from {GUESSER}",
    ]
    assert "tries refused for" in released[1]
    assert isinstance(throttle.begin(GUESSER, "alice@example.test"), Attempt)  # the next try is let in
    assert home.ok("auth", "release", "alice@example.test") == [
        "nothing to release: no failed logins are counted for alice@example.test"
    ]
    released = home.ok("auth", "release", OFFICE)  # the address, and bob's pair at it
    assert [line.split(":")[0] for line in released] == [
        f"released address {OFFICE}",
        f"released pair bob@example.test from {OFFICE}",
    ]
    assert re.fullmatch(
        rf".*: \d\.\d failed logins from this address, any account \(limit {address.burst}; .*", released[0]
    ), released[0]


def test_errors_are_one_line(home: Home) -> None:
    assert home.fails("auth") == "give an action: hatoba auth status|release (see --help)"
    assert "give a client address or an account" in home.fails("auth", "release", " ")
    assert "give a client address or an account" in home.fails("auth", "status", "")
    home.config.unlink()
    assert "not found; create one with: hatoba init" in home.fails("auth", "status")


def test_status_escapes_what_clients_typed_and_finds_any_spelling(home: Home) -> None:
    """Account names come from clients: control characters never reach the terminal,
    and `"carol"@Example.test` finds carol@example.test."""
    from hatoba.config.schema import AuthConfig
    from hatoba.policy.auth_throttle import LoginThrottle

    throttle = LoginThrottle.open(AuthConfig(), home.db)
    try:
        for account in ("carol@example.test", "x\x1b]0;owned\x07\npair forged: 0.0"):
            attempt = throttle.begin("192.0.2.44", account)
            throttle.failed(attempt)
    finally:
        throttle.close()
    lines = home.ok("auth", "status")
    text = "\n".join(lines)
    assert "\x1b" not in text and "\x07" not in text
    assert not any(line.startswith("pair forged") for line in lines)
    assert "\\x1b" in text
    quoted = home.ok("auth", "status", '"carol"@Example.test')
    assert any("carol@example.test" in line for line in quoted)
