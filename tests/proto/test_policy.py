"""Policy decisions with the directory as data (a small in-memory UserDB)."""

import pytest

from hatoba.policy.auth_throttle import AuthThrottle
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


def test_auth_throttle_delays_then_locks_and_expires():
    now = [1000.0]
    t = AuthThrottle(delay_after=2, lockout_after=4, lockout_seconds=60, clock=lambda: now[0])
    assert [t.failure("1.2.3.4") for _ in range(3)] == [0.0, 1.0, 2.0]
    assert not t.is_locked("1.2.3.4")
    t.failure("1.2.3.4")
    assert t.is_locked("1.2.3.4") and not t.is_locked("5.6.7.8")
    now[0] += 61
    assert not t.is_locked("1.2.3.4")
    t.success("1.2.3.4")
    assert t.failure("1.2.3.4") == 0.0
