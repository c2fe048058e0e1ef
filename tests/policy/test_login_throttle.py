"""The login throttle measured: guessers against the clock, with its real SQLite state.

A fake clock stands for time; the state is the real directory database in
tmp_path. The guessers are as fast as the throttle allows: a refused guesser
comes back the moment its refusal ends (retry_after), and starts as many
guesses in parallel as begin() lets through.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hatoba.config.schema import AuthConfig
from hatoba.policy.auth_throttle import Attempt, Limit, LoginThrottle, Refusal, limits_from
from hatoba.store.directory import Directory
from hatoba.store.loginstate import LoginState

HOUR = 3600.0
DAY = 86400.0
START = 1_700_000_000.0
CONFIG = AuthConfig()  # the defaults, as a server without an [auth] section has them
LIMITS = limits_from(CONFIG)
PAIR, ADDRESS, ACCOUNT = LIMITS["pair"], LIMITS["address"], LIMITS["account"]
OFFICE = "198.51.100.20"  # many people behind one NAT address
GUESSER = "203.0.113.66"


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "directory.sqlite3"
    path.parent.mkdir()
    Directory(path).close()  # the server and the CLI open the directory first: it makes the tables
    return path


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def open_throttle(db_path: Path, clock: Clock) -> Iterator[Callable[[], LoginThrottle]]:
    opened: list[LoginThrottle] = []

    def make() -> LoginThrottle:
        opened.append(LoginThrottle.open(CONFIG, db_path, clock=clock))  # as net/server.py does
        return opened[-1]

    yield make
    for throttle in opened:
        throttle.close()


@pytest.fixture
def throttle(open_throttle: Callable[[], LoginThrottle]) -> LoginThrottle:
    return open_throttle()


def log_in(throttle: LoginThrottle, address: str, account: str) -> bool:
    """A login with the right password: True when begin() let it through."""
    attempt = throttle.begin(address, account)
    if isinstance(attempt, Refusal):
        return False
    throttle.succeeded(attempt)
    return True


def guess_for(
    throttle: LoginThrottle,
    clock: Clock,
    seconds: float,
    targets: Iterator[tuple[str, str]],
    between: Callable[[Refusal], None] = lambda refusal: None,
) -> tuple[int, list[Refusal]]:
    """Wrong passwords at (address, account) targets, as fast as allowed; (checks made, refusals met)."""
    end = clock.now + seconds
    checks, refusals = 0, []
    target = next(targets)
    while clock.now < end:
        result = throttle.begin(*target)
        if isinstance(result, Attempt):
            throttle.failed(result)
            checks += 1
            target = next(targets)
        else:
            refusals.append(result)
            between(result)
            clock.now += result.retry_after
    return checks, refusals


def hourly_bounds(limit: Limit) -> tuple[float, float]:
    """(least, most) password checks in one hour at a scope, for a guesser as fast as allowed.

    The bucket lets through at most burst + rate in an hour. A guesser that
    fills it again the moment each refusal ends loses at most what drains
    during the refusal that is running when the hour ends (max_block at most).
    """
    most = limit.burst + limit.per_hour
    return most - CONFIG.max_block * limit.per_hour / HOUR, most


# -- 1. one address guessing one account -------------------------------------------


def test_one_address_one_account_gets_at_most_100_checks_an_hour(throttle: LoginThrottle, clock: Clock) -> None:
    checks, refusals = guess_for(throttle, clock, HOUR, itertools.repeat((GUESSER, "alice@example.test")))
    # The pair's burst + rate (10 + 90 by default) is the most its bucket can ever let through.
    least, most = hourly_bounds(PAIR)
    assert least <= checks <= most
    assert {r.scope for r in refusals} == {"pair"}
    assert max(r.retry_after for r in refusals) == CONFIG.max_block


def test_one_address_one_account_polling_every_second(throttle: LoginThrottle, clock: Clock) -> None:
    """A guesser that ignores retry_after and keeps trying, in parallel, each second."""
    checks = 0
    while clock.now < START + HOUR:
        started = []
        while isinstance(attempt := throttle.begin(GUESSER, "alice@example.test"), Attempt):
            started.append(attempt)
        for attempt in started:
            throttle.failed(attempt)
        checks += len(started)
        clock.now += 1.0
    assert checks <= PAIR.burst + PAIR.per_hour


def test_a_stale_password_in_six_parallel_connections_does_not_lock_out_the_office(
    throttle: LoginThrottle, clock: Clock
) -> None:
    """A phone with an old password: 24 quick failures, 6 connections at a time, then the new password."""
    assert PAIR.burst < 24  # the phone overruns its pair's burst
    tries = refused = 0
    for _ in range(4):
        wave = [throttle.begin(OFFICE, "alice@example.test") for _ in range(6)]  # all begun before any ends
        for attempt in wave:
            if isinstance(attempt, Attempt):
                throttle.failed(attempt)
            else:
                refused += 1
        tries += len(wave)
    assert (tries, refused) == (24, 24 - PAIR.burst)  # the pair's burst checked, the rest refused (counting nothing)
    # Another person in the office logs in at once.
    assert log_in(throttle, OFFICE, "bob@example.test")
    # Alice, with the right password now, retrying every 5 s, gets in within 90 s.
    waited = 0.0
    while not log_in(throttle, OFFICE, "alice@example.test"):
        clock.now += 5.0
        waited += 5.0
    assert waited <= 90.0
    assert PAIR.slot <= waited < PAIR.slot + 5.0  # one slot (40 s): the block of the first strike
    # Her success cleared her pair: she is not refused again at once.
    assert throttle.status("alice@example.test")[0].scope == "account"


# -- 2. one address spraying many accounts -------------------------------------------


def test_spraying_from_one_address_gets_at_most_300_checks_an_hour(throttle: LoginThrottle, clock: Clock) -> None:
    # Alice logged in from here last week: a known pair.
    clock.now -= 7 * 86400
    assert log_in(throttle, GUESSER, "alice@example.test")
    clock.now = START
    accounts = (f"user{n}@example.test" for _ in range(3) for n in range(500))
    seen_blocked = []

    def alice_logs_in(refusal: Refusal) -> None:
        seen_blocked.append(refusal.scope)
        assert log_in(throttle, GUESSER, "alice@example.test")  # at once, while the address is refused
        # A new person at that address is refused with the sprayer: not a known pair.
        assert isinstance(throttle.begin(GUESSER, "newcomer@example.test"), Refusal)

    checks, refusals = guess_for(throttle, clock, HOUR, ((GUESSER, a) for a in accounts), alice_logs_in)
    least, most = hourly_bounds(ADDRESS)  # burst 100 + 190 an hour: 290
    assert checks <= 300  # the requirement
    assert least <= checks <= most  # the address's burst + rate at most, and the guesser does run near it
    assert set(seen_blocked) == {"address"} and len(seen_blocked) > 10


# -- 3. one account guessed from many addresses --------------------------------------


def test_one_account_from_1000_addresses_gets_at_most_300_checks_an_hour(
    throttle: LoginThrottle, clock: Clock
) -> None:
    assert log_in(throttle, OFFICE, "alice@example.test")  # her usual place
    addresses = itertools.cycle(f"10.{n // 250}.{n % 250}.1" for n in range(1000))

    def alice_logs_in(refusal: Refusal) -> None:
        assert refusal.scope == "account"
        assert log_in(throttle, OFFICE, "alice@example.test")

    checks, refusals = guess_for(
        throttle, clock, HOUR, ((a, "alice@example.test") for a in addresses), alice_logs_in
    )
    least, most = hourly_bounds(ACCOUNT)  # burst 100 + 190 an hour: 290
    assert checks <= 300  # the requirement
    assert least <= checks <= most  # the account's burst + rate at most, and the guesser does run near it
    assert len(refusals) > 10
    # Between the refusals too: every 10 minutes of a second hour, she is let in.
    for _ in range(6):
        guess_for(throttle, clock, 600.0, ((a, "alice@example.test") for a in addresses))
        assert log_in(throttle, OFFICE, "alice@example.test")


# -- 4. parallel guesses cannot overtake the burst -----------------------------------


def test_parallel_begins_from_threads_cannot_exceed_the_burst(throttle: LoginThrottle) -> None:
    barrier = threading.Barrier(50)
    results: list[Attempt | Refusal] = []
    lock = threading.Lock()

    def guess() -> None:
        barrier.wait()
        result = throttle.begin(GUESSER, "alice@example.test")
        with lock:
            results.append(result)

    threads = [threading.Thread(target=guess) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    attempts = [r for r in results if isinstance(r, Attempt)]
    assert len(attempts) == PAIR.burst < 50
    for attempt in attempts:
        throttle.failed(attempt)
    assert isinstance(throttle.begin(GUESSER, "alice@example.test"), Refusal)


def test_abandoned_attempts_count_nothing_and_free_their_place(throttle: LoginThrottle) -> None:
    attempts = [throttle.begin(GUESSER, "alice@example.test") for _ in range(PAIR.burst)]  # the pair's places
    assert all(isinstance(a, Attempt) for a in attempts)
    for attempt in attempts:
        assert isinstance(attempt, Attempt)
        throttle.abandoned(attempt)
    assert throttle.status() == []
    assert all(isinstance(throttle.begin(GUESSER, "alice@example.test"), Attempt) for _ in range(PAIR.burst))


class SlowStore(LoginState):
    """The real store, whose reads wait until the test lets them go on."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reading = threading.Event()
        self.go_on = threading.Event()
        self.waited_too_long = False

    def load(self, keys):  # type: ignore[no-untyped-def]
        self.reading.set()
        if not self.go_on.wait(5):
            self.waited_too_long = True
        return super().load(keys)


def test_abandoned_never_waits_for_the_store(db_path: Path, clock: Clock) -> None:
    """The session may abandon from the event loop while another login waits on SQLite."""
    with SlowStore(db_path) as store:
        throttle = LoginThrottle(CONFIG, store, clock=clock)
        store.go_on.set()
        attempt = throttle.begin(GUESSER, "alice@example.test")
        assert isinstance(attempt, Attempt)
        store.go_on.clear()
        store.reading.clear()
        stuck = threading.Thread(target=throttle.begin, args=(OFFICE, "bob@example.test"))
        stuck.start()
        assert store.reading.wait(10)
        throttle.abandoned(attempt)  # returns while the other begin() holds the lock
        store.go_on.set()
        stuck.join()
        assert not store.waited_too_long
        assert throttle.status() == []


def test_an_attempt_ends_once(throttle: LoginThrottle) -> None:
    attempt = throttle.begin(GUESSER, "alice@example.test")
    assert isinstance(attempt, Attempt)
    assert throttle.failed(attempt) == 0.0
    with pytest.raises(RuntimeError):
        throttle.succeeded(attempt)


def test_failed_logins_are_answered_later_and_later(throttle: LoginThrottle) -> None:
    delays = []
    for _ in range(PAIR.burst):
        attempt = throttle.begin(GUESSER, "alice@example.test")
        assert isinstance(attempt, Attempt)
        delays.append(throttle.failed(attempt))
    # The pair's first 30% at once, then 1, 2, 4 ... max_delay s (by default 0, 0, 0, 1, 2, 4, 8, 15, 15, 15).
    at_once = math.ceil(0.3 * PAIR.burst)
    assert delays == [0.0] * at_once + [min(CONFIG.max_delay, 2.0**n) for n in range(PAIR.burst - at_once)]
    assert delays[-1] == CONFIG.max_delay


# -- 5. state on disk, release, and what a success clears ----------------------------


def test_state_survives_a_restart_and_release_lifts_a_block(
    open_throttle: Callable[[], LoginThrottle], clock: Clock
) -> None:
    first = open_throttle()
    for _ in range(PAIR.burst):
        attempt = first.begin(GUESSER, "alice@example.test")
        assert isinstance(attempt, Attempt)
        first.failed(attempt)
    refusal = first.begin(GUESSER, "alice@example.test")
    assert isinstance(refusal, Refusal) and refusal.scope == "pair"
    clock.now += 10.0

    second = open_throttle()  # a restarted server
    again = second.begin(GUESSER, "alice@example.test")
    assert isinstance(again, Refusal) and again.retry_after == pytest.approx(refusal.retry_after - 10.0)
    [pair] = [s for s in second.status(GUESSER) if s.scope == "pair"]
    drained = 10.0 * PAIR.per_hour / HOUR  # 0.25 of a failure in 10 s
    assert (pair.level, pair.strikes, pair.blocked_for) == (
        pytest.approx(PAIR.burst - drained), 1, pytest.approx(PAIR.slot - 10.0)
    )

    assert second.release("alice@example.test") == 2  # the pair and the account
    assert isinstance(second.begin(GUESSER, "alice@example.test"), Attempt)
    assert [s.scope for s in second.status()] == ["address"]  # the address still counts its failures


def test_a_success_clears_only_its_own_pair(throttle: LoginThrottle) -> None:
    for address, account in [(OFFICE, "alice@example.test"), (OFFICE, "bob@example.test"),
                             (GUESSER, "alice@example.test")]:
        for _ in range(3):
            attempt = throttle.begin(address, account)
            assert isinstance(attempt, Attempt)
            throttle.failed(attempt)
    assert log_in(throttle, OFFICE, "alice@example.test")
    left = {(s.scope, s.address, s.account): s.level for s in throttle.status()}
    assert left == {
        ("pair", OFFICE, "bob@example.test"): 3.0,
        ("pair", GUESSER, "alice@example.test"): 3.0,
        ("address", OFFICE, ""): 6.0,  # bob's failures and alice's: her success clears neither
        ("address", GUESSER, ""): 3.0,
        ("account", "", "alice@example.test"): 6.0,
        ("account", "", "bob@example.test"): 3.0,
    }


def fill_address(throttle: LoginThrottle, address: str) -> None:
    """The address's burst of failures (100), each of another account: its scope is full."""
    for n in range(ADDRESS.burst):
        attempt = throttle.begin(address, f"user{n}@example.test")
        assert isinstance(attempt, Attempt)
        throttle.failed(attempt)
    assert isinstance(throttle.begin(address, "carol@example.test"), Refusal)


def test_a_known_pair_is_forgotten_after_known_pair_days(throttle: LoginThrottle, clock: Clock) -> None:
    assert log_in(throttle, OFFICE, "alice@example.test")
    fill_address(throttle, OFFICE)
    assert log_in(throttle, OFFICE, "alice@example.test")  # known: the address scope does not apply
    known_for = CONFIG.known_pair_days * DAY
    clock.now = START + known_for - 1
    fill_address(throttle, OFFICE)
    assert log_in(throttle, OFFICE, "alice@example.test")  # still known, and known again from now
    clock.now = START + 2 * known_for  # known_pair_days and 1 s after her last login
    fill_address(throttle, OFFICE)
    assert not log_in(throttle, OFFICE, "alice@example.test")


def test_status_shows_drained_levels_and_filters_literally(throttle: LoginThrottle, clock: Clock) -> None:
    for _ in range(5):
        attempt = throttle.begin(GUESSER, "Alice@example.test")
        assert isinstance(attempt, Attempt)
        throttle.failed(attempt)
    clock.now += 40.0  # one pair failure drains away (a 40 s slot); 40 * 190/3600 = 2.1 of the address's
    states = {s.scope: s for s in throttle.status(GUESSER)}
    assert set(states) == {"pair", "address"}
    assert states["pair"].level == pytest.approx(5 - 40.0 * PAIR.per_hour / HOUR)
    assert states["address"].level == pytest.approx(5 - 40.0 * ADDRESS.per_hour / HOUR)
    assert states["pair"].level != pytest.approx(states["address"].level)  # each at its own rate
    assert "failed logins from this address" in states["address"].reason
    assert [s.scope for s in throttle.status("Alice@example.test")] == ["account", "pair"]
    assert throttle.status("192.0.2.1") == []
    clock.now += 5 * max(limit.slot for limit in LIMITS.values())  # 200 s for the pair's 5 failures
    assert throttle.status() == []  # all drained


def test_a_known_pair_is_written_at_most_once_a_day(throttle: LoginThrottle, clock: Clock, db_path: Path) -> None:
    def last_seen() -> list[float]:
        raw = sqlite3.connect(db_path)
        try:
            return [row[0] for row in raw.execute("SELECT last FROM login_known")]
        finally:
            raw.close()

    assert log_in(throttle, OFFICE, "alice@example.test")
    clock.now += 3600.0
    assert log_in(throttle, OFFICE, "alice@example.test")
    assert last_seen() == [START]
    clock.now = START + 86400.0
    assert log_in(throttle, OFFICE, "alice@example.test")
    assert last_seen() == [START + 86400.0]


def test_more_people_than_the_address_burst_log_in_behind_one_address(throttle: LoginThrottle) -> None:
    """Successes count nothing: a whole office logs in from one NAT address, again and again."""
    people = ADDRESS.burst + 10  # counted as failures, the first round alone would fill the address
    for _ in range(3):
        for n in range(people):
            assert log_in(throttle, OFFICE, f"user{n}@example.test")
    assert throttle.status() == []


def test_guesses_held_in_flight_refuse_briefly_and_earn_no_block(throttle: LoginThrottle, clock: Clock) -> None:
    """SCRAM exchanges held open after the salt: the account's next tries are
    told to wait a moment, nothing is stored, and after IN_FLIGHT_TTL the held
    ones stop counting, so holding exchanges cannot lock an account out."""
    from hatoba.policy.auth_throttle import IN_FLIGHT_RETRY, IN_FLIGHT_TTL

    held = [throttle.begin(GUESSER, "bob@example.test") for _ in range(PAIR.burst)]
    assert all(isinstance(a, Attempt) for a in held)
    refused = throttle.begin(GUESSER, "bob@example.test")
    assert isinstance(refused, Refusal) and refused.in_flight and refused.retry_after == IN_FLIGHT_RETRY
    assert "at once" in refused.text
    assert throttle.status() == []  # nothing stored: no failure, no block
    clock.now += IN_FLIGHT_TTL + 1
    assert isinstance(throttle.begin(GUESSER, "bob@example.test"), Attempt)
    for attempt in held:
        throttle.abandoned(attempt)
