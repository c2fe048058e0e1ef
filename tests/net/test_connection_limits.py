"""ConnectionLimiter alone: counts per address before login, per (account, address) after.

Each test runs twice: counts in this process, and counts in shared memory
(as region 0 of two, the primary's)."""

import pytest

from hatoba.net.limits import ConnectionLimiter
from hatoba.net.shared_counts import SharedCounts


@pytest.fixture(params=["local", "shared"])
def limiter(request):
    blocks = []

    def make(**limits):
        if request.param == "local":
            return ConnectionLimiter(**limits)
        blocks.append(SharedCounts.create(2))
        return ConnectionLimiter(**limits, shared=blocks[-1])

    yield make
    for block in blocks:
        block.close()


def assert_all_closed(limits, ip, logins):
    assert limits.total == 0 and limits.connections_from(ip) == 0
    assert all(limits.connections_of(account, ip, proto) == 0 for account, proto in logins)


def test_a_login_moves_the_connection_to_its_account(limiter):
    limits = limiter(max_total=100, max_per_ip=2, max_per_user_ip=3)
    assert limits.acquire("192.0.2.1") is None
    assert limits.acquire("192.0.2.1") is None
    refusal = limits.acquire("192.0.2.1")
    assert refusal is not None and "not logged in (2)" in refusal.text
    assert limits.log_in("192.0.2.1", "alice@example.test", "imap") is None
    assert limits.connections_from("192.0.2.1") == 1
    assert limits.acquire("192.0.2.1") is None  # the logged-in one no longer counts for the address
    assert limits.total == 3 and limits.connections_of("alice@example.test", "192.0.2.1", "imap") == 1
    limits.release("192.0.2.1", "alice@example.test", "imap")
    limits.release("192.0.2.1")
    limits.release("192.0.2.1")
    assert_all_closed(limits, "192.0.2.1", [("alice@example.test", "imap")])


def test_per_account_limit_and_a_second_login_as_someone_else(limiter):
    limits = limiter(max_total=100, max_per_ip=50, max_per_user_ip=2)
    for _ in range(6):
        assert limits.acquire("192.0.2.1") is None
    assert limits.log_in("192.0.2.1", "alice@example.test", "imap") is None
    assert limits.log_in("192.0.2.1", "alice@example.test", "imap") is None
    reason = limits.log_in("192.0.2.1", "alice@example.test", "imap")
    assert reason is not None and "alice@example.test" in reason and "(2)" in reason
    # Each protocol has its own count, and submission none: her POP3 and SMTP still log in.
    assert limits.log_in("192.0.2.1", "alice@example.test", "pop3") is None
    assert limits.log_in("192.0.2.1", "alice@example.test", "smtp") is None
    # The third IMAP connection stays unauthenticated; it may log in as bob, then as carol.
    assert limits.log_in("192.0.2.1", "bob@example.test", "imap") is None
    assert limits.log_in("192.0.2.1", "carol@example.test", "imap", previous="bob@example.test") is None
    assert limits.connections_of("bob@example.test", "192.0.2.1", "imap") == 0
    limits.release("192.0.2.1")
    logins = [("alice@example.test", "imap"), ("alice@example.test", "imap"), ("alice@example.test", "pop3"),
              ("alice@example.test", "smtp"), ("carol@example.test", "imap")]
    for account, proto in logins:
        limits.release("192.0.2.1", account, proto)
    assert_all_closed(limits, "192.0.2.1", logins + [("bob@example.test", "imap")])


def test_total_limit_names_itself(limiter):
    limits = limiter(max_total=1, max_per_ip=50)
    assert limits.acquire("192.0.2.1") is None
    refusal = limits.acquire("192.0.2.2")
    assert refusal is not None and "(1)" in refusal.text
