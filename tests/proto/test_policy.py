"""Policy decisions with the directory as data (a small in-memory UserDB)."""

import math

import pytest

from hatoba.config.schema import AuthConfig
from hatoba.policy.auth_throttle import (
    IN_FLIGHT_RETRY,
    Limit,
    Refusal,
    ScopeKey,
    ScopeRow,
    answer_delay,
    decay,
    judge,
    limits_from,
    record_failure,
)
from hatoba.policy.relay import TrustedNetworks, check_recipient, may_relay
from hatoba.policy.submission import check_sender
from hatoba.proto.address import parse_path
from hatoba.proto.smtp import replies as R
from hatoba.store.api import Resolution


class TableDirectory:
    """Data, not a mock: domains, users and aliases in dicts."""

    def __init__(self):
        self.domains = {"example.test"}
        self.users = {"alice@example.test"}
        self.aliases = {"postmaster@example.test": ["alice@example.test"]}

    def is_local_domain(self, d):
        return d in self.domains

    def resolve(self, address):
        a = address.lower()
        if a.split("@")[1] not in self.domains:
            return Resolution(True, (), (address,))
        if a in self.users:
            return Resolution(True, (a,))
        if a in self.aliases:
            return Resolution(True, tuple(self.aliases[a]))
        return Resolution(False)

    def verify_password(self, a, p):
        return False

    def sender_addresses(self, login):
        return frozenset({login, "postmaster@example.test"})


def addr(text):
    return parse_path(text).address


@pytest.mark.parametrize("rcpt,relay_ok,code", [
    ("<alice@example.test>", False, 250),
    ("<ALICE@EXAMPLE.TEST>", False, 250),
    ("<postmaster@example.test>", False, 250),
    ("<nobody@example.test>", False, 550),
    ("<x@elsewhere.example>", False, 554),
    ("<x@elsewhere.example>", True, 250),
    ("<x%elsewhere.example@example.test>", True, 550),
    ("<elsewhere.example!x@example.test>", False, 550),
    ('<"x@elsewhere.example"@example.test>', False, 550),
    ("<@example.test:x@elsewhere.example>", False, 554),
])
def test_check_recipient(rcpt, relay_ok, code):
    d = check_recipient(addr(rcpt), relay_allowed=relay_ok, directory=TableDirectory())
    assert d.reply.code == code
    assert d.accept == (code == 250)


def test_trusted_networks():
    t = TrustedNetworks.parse(["192.0.2.0/24", "2001:db8::/32"])
    assert "192.0.2.9" in t and "::ffff:192.0.2.9" in t and "2001:db8::5" in t
    assert "198.51.100.1" not in t and "garbage" not in t
    assert may_relay(client_ip="198.51.100.1", authenticated=True, trusted=t)
    assert not may_relay(client_ip="198.51.100.1", authenticated=False, trusted=t)


def test_check_sender():
    owned = frozenset({"postmaster@example.test"})
    assert check_sender(parse_path("<alice@example.test>"), login="alice@example.test", owned=owned).accept
    assert check_sender(parse_path("<postmaster@example.test>"), login="alice@example.test", owned=owned).accept
    no = check_sender(parse_path("<bob@example.test>"), login="alice@example.test", owned=owned)
    assert not no.accept and no.reply.code == 553 and "bob@example.test" in no.reply.text


# -- the login throttle's rules (policy/auth_throttle.py); the numbers over
# -- time, with SQLite, are in tests/policy/test_login_throttle.py


PAIR = ScopeKey("pair", "192.0.2.7", "alice@example.test")
LIMITS = limits_from(AuthConfig())


def test_throttle_limits_come_from_the_config():
    # Each scope reads its own two settings (distinct numbers, so a mix-up shows).
    config = AuthConfig(pair_failures=11, pair_per_hour=72, address_failures=31, address_per_hour=180,
                        account_failures=41, account_per_hour=360)
    assert limits_from(config) == {"pair": Limit(11, 72.0), "address": Limit(31, 180.0), "account": Limit(41, 360.0)}
    assert [limit.slot for limit in limits_from(config).values()] == [50.0, 20.0, 10.0]
    # 30% of the burst is answered at once, rounded up.
    assert [limit.answered_at_once for limit in limits_from(config).values()] == [4, 10, 13]
    # The defaults: the examples below work with the pair's 10 at once and one more each 40 s.
    defaults = AuthConfig()
    assert LIMITS["pair"] == Limit(10, 90.0) and LIMITS["pair"].slot == 40.0 and LIMITS["pair"].answered_at_once == 3
    assert LIMITS["address"] == Limit(defaults.address_failures, float(defaults.address_per_hour))
    assert LIMITS["account"] == Limit(defaults.account_failures, float(defaults.account_per_hour))
    # An address, or an account, gets at most 300 password checks an hour (burst + rate).
    assert LIMITS["address"].burst + LIMITS["address"].per_hour <= 300
    assert LIMITS["account"].burst + LIMITS["account"].per_hour <= 300


def test_throttle_level_drains_at_the_scope_rate_and_strikes_end_at_zero():
    row = ScopeRow(PAIR, level=10.0, updated=1000.0, strikes=3, blocked_until=1300.0)
    assert decay(row, 1040.0, LIMITS["pair"]) == ScopeRow(PAIR, 9.0, 1040.0, 3, 1300.0)
    assert decay(row, 1400.0, LIMITS["pair"]) == ScopeRow(PAIR, 0.0, 1400.0, 0, 1300.0)
    # A clock set back drains nothing and never moves `updated` back.
    assert decay(row, 900.0, LIMITS["pair"]) == row


def test_throttle_judge_counts_guesses_in_flight_and_doubles_blocks():
    pair = LIMITS["pair"]
    assert judge(None, PAIR, 0, 1000.0, pair, 300.0) == (None, None)
    row = ScopeRow(PAIR, level=7.0, updated=1000.0)
    assert judge(row, PAIR, 2, 1000.0, pair, 300.0) == (None, None)  # 7 + 2 < 10
    # 7 + 3 in flight = 10: full of guesses under way, none failed yet: a short
    # refusal, no strike, nothing stored (holding guesses open earns no block).
    assert judge(row, PAIR, 3, 1000.0, pair, 300.0) == (None, IN_FLIGHT_RETRY)
    full = ScopeRow(PAIR, level=10.0, updated=1000.0)
    stored, wait = judge(full, PAIR, 0, 1000.0, pair, 300.0)  # 10 failures: a strike
    assert wait == 40.0 and stored == ScopeRow(PAIR, 10.0, 1000.0, strikes=1, blocked_until=1040.0)
    # While blocked: refused for the rest of the block, nothing recorded.
    assert judge(stored, PAIR, 0, 1010.0, pair, 300.0) == (None, 30.0)
    # Each strike doubles the block, up to max_block.
    waits, strikes, now = [], 0, 1000.0
    for _ in range(6):
        full = ScopeRow(PAIR, level=10.0, updated=now, strikes=strikes, blocked_until=now)
        stored, wait = judge(full, PAIR, 0, now, pair, 300.0)
        assert stored is not None and wait is not None
        waits.append(wait)
        strikes, now = stored.strikes, stored.blocked_until
    assert waits == [40.0, 80.0, 160.0, 300.0, 300.0, 300.0]


def test_throttle_failure_adds_one_after_draining():
    assert record_failure(None, PAIR, 1000.0, LIMITS["pair"]) == ScopeRow(PAIR, 1.0, 1000.0)
    row = ScopeRow(PAIR, level=5.0, updated=1000.0, strikes=2, blocked_until=1080.0)
    assert record_failure(row, PAIR, 1080.0, LIMITS["pair"]) == ScopeRow(PAIR, 4.0, 1080.0, 2, 1080.0)


def test_throttle_answer_delay_grows_after_a_share_of_the_burst():
    pair = LIMITS["pair"]
    assert [answer_delay(level, pair, 15.0) for level in range(1, 11)] == [0, 0, 0, 1, 2, 4, 8, 15, 15, 15]
    # The address's first 30% of its burst (30 of 100 by default) are answered at once too.
    address = LIMITS["address"]
    at_once = math.ceil(0.3 * address.burst)
    assert answer_delay(float(at_once), address, 15.0) == 0 and answer_delay(at_once + 1.0, address, 15.0) == 1


def test_throttle_refusal_texts_name_no_one():
    texts = {
        scope: Refusal(scope, "alice@example.test from 192.0.2.7", 39.2).text
        for scope in ("pair", "address", "account")
    }
    assert texts == {
        "pair": "too many failed logins for this account from your address; try again in 40 s",
        "address": "too many failed logins from your address; try again in 40 s",
        "account": "too many failed logins for this account; try again in 40 s",
    }
