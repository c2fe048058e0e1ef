"""The login throttle: which login attempts to refuse, and how long to hold a failed one.

Failed logins are counted in three scopes at once:
- ("pair", address, account): one client address guessing one account;
- ("address", address, ""): one address trying many accounts (spraying);
- ("account", "", account): many addresses guessing one account.
Each scope allows `B` failures at once and one more every 3600 / `R` seconds
(AuthConfig *_failures and *_per_hour): its `level` is a failure count that
decays continuously at R an hour (a leaky bucket). In one hour a scope lets
at most B + R password checks through, whatever the guesser does.

Rules:
- A guess is counted when it starts (begin), not when it ends: level plus
  the guesses in flight must stay under B, so parallel connections cannot
  overtake a limit. In flight counts live in this process's memory (behind
  one lock); completed failures live in the ThrottleStore. Several server
  processes on one database would each have their own guesses in flight:
  together they could exceed a limit by what is in flight elsewhere.
- A try at a full scope is refused and earns a strike; strikes make the
  refusal longer (one slot, doubled each strike, at most max_block). While
  refused, further tries count nothing. Strikes end when the level is 0.
- A correct password is never refused because other accounts failed from
  the same address, nor because other addresses failed against an account,
  once that (address, account) has logged in within known_pair_days: for a
  known pair only the pair scope applies (not checked, not counted).
- A success clears its pair only. It never clears the address or account
  scope: an account holder must not be able to reset the count of guesses
  against other accounts, and a guesser who also holds an account must not
  be able to reset the count against the account he guesses.
- Refusal texts never name an account or address: the client reads them.
- Nothing here touches SQLite or files (see store/loginstate.py); the clock
  is injected and gives Unix seconds, since the state outlives the process.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple, Protocol

from hatoba.config.schema import AuthConfig
from hatoba.i18n import T

__all__ = [
    "Attempt",
    "Limit",
    "LoginThrottle",
    "Refusal",
    "ScopeKey",
    "ScopeRow",
    "ScopeState",
    "ThrottleStore",
    "answer_delay",
    "decay",
    "judge",
    "limits_from",
    "record_failure",
]

SCOPES = ("pair", "address", "account")
DAY = 86400.0
# A successful login refreshes its known pair at most once a day per process.
REMEMBER_EVERY = DAY
# Pairs this process remembered (for the once-a-day write); oldest dropped first.
MAX_REMEMBERED = 10_000
# How often (clock seconds) spent rows and old known pairs are deleted.
PRUNE_EVERY = 600.0
# A guess in flight stops counting toward its scopes after this many seconds:
# a password check takes well under one, a SCRAM client sends its proof at
# once; an exchange held open longer must not hold the account's allowance.
IN_FLIGHT_TTL = 30.0
# A scope full only of guesses in flight (none failed yet) refuses this long,
# with no strike and nothing stored: they may all be right.
IN_FLIGHT_RETRY = 2.0
# Failures up to this share of a scope's burst are answered at once; past it
# each further failure doubles the wait (1 s, 2 s, 4 s, ... max_delay).
SLOW_SHARE = 0.3


class ScopeKey(NamedTuple):
    """One counted scope: ("pair", address, account), ("address", address, "") or ("account", "", account)."""

    scope: str
    address: str
    account: str

    @property
    def subject(self) -> str:
        """What the scope is about, for logs and `hatoba auth status` (never for the client)."""
        if self.scope == "address":
            return self.address
        if self.scope == "account":
            return self.account
        return f"{self.account} from {self.address}"


@dataclass(frozen=True)
class ScopeRow:
    """The stored state of one scope (a row of the login_throttle table)."""

    key: ScopeKey
    level: float  # failures, decaying at the scope's rate since `updated`
    updated: float  # Unix time `level` was computed at
    strikes: int = 0
    blocked_until: float = 0.0  # Unix time


@dataclass(frozen=True)
class Limit:
    """A scope's bucket: `burst` failures at once, `per_hour` more an hour."""

    burst: int
    per_hour: float

    @property
    def slot(self) -> float:
        """Seconds for one failure to drain away."""
        return 3600.0 / self.per_hour

    @property
    def answered_at_once(self) -> int:
        """Failures answered without delay."""
        return math.ceil(SLOW_SHARE * self.burst)


def limits_from(config: AuthConfig) -> dict[str, Limit]:
    return {
        "pair": Limit(config.pair_failures, float(config.pair_per_hour)),
        "address": Limit(config.address_failures, float(config.address_per_hour)),
        "account": Limit(config.account_failures, float(config.account_per_hour)),
    }


@dataclass(frozen=True)
class Refusal:
    """begin() said no: the session answers `text` and may try again after `retry_after` seconds."""

    scope: str
    subject: str  # the address, the account, or "ACCOUNT from ADDRESS"; for logs, never for the client
    retry_after: float
    in_flight: bool = False  # full of logins under way, not of failures

    @property
    def text(self) -> str:
        """Plain words for the client (a Text: POP3 and IMAP may say them in its language)."""
        seconds = max(1, math.ceil(self.retry_after))
        if self.in_flight:
            return T("too many logins at once; try again in %(seconds)s s", seconds=seconds)
        if self.scope == "pair":
            return T("too many failed logins for this account from your address; try again in %(seconds)s s",
                     seconds=seconds)
        if self.scope == "address":
            return T("too many failed logins from your address; try again in %(seconds)s s", seconds=seconds)
        return T("too many failed logins for this account; try again in %(seconds)s s", seconds=seconds)


@dataclass(eq=False)
class Attempt:
    """A login begin() let through; end it with exactly one of failed, succeeded or abandoned."""

    address: str
    account: str
    scopes: tuple[ScopeKey, ...]  # where it is counted: the pair, and the others unless the pair is known
    finished: bool = field(default=False, repr=False)

    @property
    def known_pair(self) -> bool:
        return len(self.scopes) == 1


@dataclass(frozen=True)
class ScopeState:
    """One throttled scope as `status()` shows it."""

    key: ScopeKey
    level: float  # failures counted now (after decay)
    limit: Limit
    strikes: int
    blocked_for: float  # seconds its tries are still refused; 0 = not refused
    reason: str

    @property
    def scope(self) -> str:
        return self.key.scope

    @property
    def address(self) -> str:
        return self.key.address

    @property
    def account(self) -> str:
        return self.key.account

    @property
    def subject(self) -> str:
        return self.key.subject


class ThrottleStore(Protocol):
    """Where completed failures, blocks and known pairs are kept (store/loginstate.py)."""

    def load(self, keys: Sequence[ScopeKey]) -> dict[ScopeKey, ScopeRow]:
        """The stored rows among `keys` (missing ones are absent)."""
        ...

    def update(
        self, keys: Sequence[ScopeKey], change: Callable[[dict[ScopeKey, ScopeRow]], Iterable[ScopeRow]]
    ) -> None:
        """In one write transaction: load `keys`, call `change` with them, store the rows it returns."""
        ...

    def delete(self, keys: Sequence[ScopeKey]) -> None: ...

    def is_known(self, address: str, account: str, since: float) -> bool:
        """Whether the pair logged in at or after `since`."""
        ...

    def remember(self, address: str, account: str, when: float) -> None: ...

    def derived_key(self, label: bytes) -> bytes:
        """A secret for `label` that survives restarts (kept beside the known pairs' key)."""
        ...

    def rows(self, subject: str | None = None) -> list[ScopeRow]:
        """Every row, or those whose address or account is `subject`."""
        ...

    def release(self, subject: str) -> int:
        """Delete the rows whose address or account is `subject`; how many."""
        ...

    def prune(self, now: float, per_hour: Mapping[str, float], known_before: float) -> None:
        """Delete rows drained to 0 and no longer blocked, and known pairs older than `known_before`."""
        ...

    def close(self) -> None: ...


# -- the pure rules ---------------------------------------------------------------


def decay(row: ScopeRow, now: float, limit: Limit) -> ScopeRow:
    """The row as of `now`: the level drained at the scope's rate; strikes end when it reaches 0."""
    elapsed = max(0.0, now - row.updated)  # a clock set back drains nothing
    level = max(0.0, row.level - elapsed * limit.per_hour / 3600.0)
    strikes = row.strikes if level > 0 else 0
    return replace(row, level=level, updated=max(now, row.updated), strikes=strikes)


def judge(
    row: ScopeRow | None, key: ScopeKey, in_flight: int, now: float, limit: Limit, max_block: float
) -> tuple[ScopeRow | None, float | None]:
    """May one more guess start in this scope? (row to store or None, seconds refused or None).

    A scope still blocked refuses for the rest of its block and records
    nothing. A scope full of failures (level >= burst) earns a strike and is
    blocked one slot, doubled per strike, at most max_block. A scope full
    only with the guesses in flight refuses for IN_FLIGHT_RETRY and records
    nothing: those guesses have failed nothing yet, and holding them open
    must not earn anyone a block.
    """
    if row is None:
        row = ScopeRow(key, 0.0, now)
    row = decay(row, now, limit)
    if now < row.blocked_until:
        return None, row.blocked_until - now
    if row.level >= limit.burst:
        strikes = row.strikes + 1
        block = min(max_block, limit.slot * 2.0 ** (strikes - 1))
        return replace(row, strikes=strikes, blocked_until=now + block), block
    if row.level + in_flight >= limit.burst:
        return None, IN_FLIGHT_RETRY
    return None, None


def record_failure(row: ScopeRow | None, key: ScopeKey, now: float, limit: Limit) -> ScopeRow:
    """The row after one more failed login."""
    if row is None:
        row = ScopeRow(key, 0.0, now)
    row = decay(row, now, limit)
    return replace(row, level=row.level + 1.0)


def answer_delay(level: float, limit: Limit, max_delay: float) -> float:
    """Seconds to wait before answering a failed login, for a scope at `level` (failure included)."""
    over = level - limit.answered_at_once
    if over <= 0:
        return 0.0
    return float(min(max_delay, 2.0 ** (over - 1)))


def describe(row: ScopeRow, limit: Limit, now: float) -> str:
    """Plain words for `hatoba auth status` (a Text, said in the terminal's language)."""
    if row.key.scope == "pair":
        what = T("failed logins for this account from this address")
    elif row.key.scope == "address":
        what = T("failed logins from this address, any account")
    elif row.key.scope == "account":
        what = T("failed logins for this account, any address")
    else:
        what = T("failed logins")
    text = T(
        "%(level)s %(what)s (limit %(burst)s; one more allowed every %(slot)s s)",
        level=f"{row.level:.1f}", what=what, burst=limit.burst, slot=f"{limit.slot:.0f}",
    )
    if now < row.blocked_until:
        seconds = math.ceil(row.blocked_until - now)
        if row.strikes > 1:
            return T(
                "%(status)s; tries refused for %(seconds)s s more (%(strikes)s times over the limit in a row)",
                status=text, seconds=seconds, strikes=row.strikes,
            )
        return T("%(status)s; tries refused for %(seconds)s s more", status=text, seconds=seconds)
    return text


# -- the throttle the sessions use ------------------------------------------------


class LoginThrottle:
    """The one login throttle of a server, shared by SMTP AUTH, POP3 and IMAP.

    begin(), failed() and succeeded() may block (they read and write the
    store): call them from worker threads, never the event loop. They hold
    one lock around their store access, so one process's checks and counts
    are never interleaved (see the module's Rules for several processes).
    abandoned() touches memory only and never waits for the store: it may be
    called from the event loop (in an `except CancelledError`, say).
    """

    def __init__(self, config: AuthConfig, store: ThrottleStore, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.limits = limits_from(config)
        self._lock = threading.Lock()  # around every decision and store access
        self._flight = threading.Lock()  # around _in_flight and Attempt.finished; never held for I/O
        # Per scope, the attempts under way and when each began (see IN_FLIGHT_TTL).
        self._in_flight: dict[ScopeKey, dict[Attempt, float]] = {}
        # (address, account) -> when this process last stored it as known.
        self._remembered: dict[tuple[str, str], float] = {}
        self._next_prune = 0.0

    @classmethod
    def open(cls, config: AuthConfig, path: Path, *, clock: Callable[[], float] = time.time) -> LoginThrottle:
        """The throttle kept in the directory database at `path` (opened first by Directory).

        Raises store.loginstate.LoginStateError when the database cannot be used."""
        from hatoba.store.loginstate import LoginState  # the store is SQLite; this module stays free of it

        return cls(config, LoginState(path), clock=clock)

    def close(self) -> None:
        """Close the store's connections (the server at shutdown, the CLI when done)."""
        self.store.close()

    def secret(self, label: bytes) -> bytes:
        """A server secret for `label` that survives restarts (the salts of unknown SCRAM users)."""
        return self.store.derived_key(label)

    # -- a login -------------------------------------------------------------

    def begin(self, address: str, account: str) -> Attempt | Refusal:
        """Count a login attempt as it starts, or refuse it. `account` is already canonical."""
        pair = ScopeKey("pair", address, account)
        with self._lock:
            now = self.clock()
            if self._is_known(address, account, now):
                keys: tuple[ScopeKey, ...] = (pair,)
            else:
                keys = (pair, ScopeKey("address", address, ""), ScopeKey("account", "", account))
            with self._flight:  # only abandoned() changes it meanwhile, and only downwards
                fresh = now - IN_FLIGHT_TTL
                flying = {key: sum(1 for began in self._in_flight.get(key, {}).values() if began > fresh)
                          for key in keys}
            verdicts = self._judge_all(keys, self.store.load(keys), flying, now)
            if any(row is not None for row, _ in verdicts.values()):
                # A strike to store: decide again inside the write transaction,
                # on the rows as they are now (another process may have written).
                def change(rows: dict[ScopeKey, ScopeRow]) -> list[ScopeRow]:
                    verdicts.update(self._judge_all(keys, rows, flying, now))
                    return [row for row, _ in verdicts.values() if row is not None]

                self.store.update(keys, change)
            refusals = [(wait, key) for key, (_, wait) in verdicts.items() if wait is not None]
            if refusals:
                wait, key = max(refusals)
                return Refusal(key.scope, key.subject, wait, in_flight=wait == IN_FLIGHT_RETRY)
            attempt = Attempt(address, account, keys)
            with self._flight:
                for key in keys:
                    self._in_flight.setdefault(key, {})[attempt] = now
        return attempt

    def failed(self, attempt: Attempt) -> float:
        """Record a wrong password; returns the seconds to wait before answering."""
        limits = self.limits
        with self._lock:
            self._finish(attempt)
            now = self.clock()
            stored: list[ScopeRow] = []

            def change(rows: dict[ScopeKey, ScopeRow]) -> list[ScopeRow]:
                stored[:] = [record_failure(rows.get(k), k, now, limits[k.scope]) for k in attempt.scopes]
                return stored

            self.store.update(attempt.scopes, change)
            self._prune_now_and_then(now)
        return max(answer_delay(row.level, limits[row.key.scope], self.config.max_delay) for row in stored)

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: clear its pair (only), and remember the pair as known."""
        with self._lock:
            self._finish(attempt)
            now = self.clock()
            pair_key = attempt.scopes[0]
            if self.store.load([pair_key]):  # most logins had no failure: a read, not a write
                self.store.delete([pair_key])
            pair = (attempt.address, attempt.account)
            last = self._remembered.pop(pair, None)
            if last is not None and 0 <= now - last < REMEMBER_EVERY:
                self._remembered[pair] = last
                return
            self.store.remember(attempt.address, attempt.account, now)
            self._remembered[pair] = now
            while len(self._remembered) > MAX_REMEMBERED:
                del self._remembered[next(iter(self._remembered))]
            self._prune_now_and_then(now)

    def abandoned(self, attempt: Attempt) -> None:
        """No password was checked (SCRAM cancelled before the proof, connection lost): count nothing."""
        self._finish(attempt)

    # -- the operator's view -------------------------------------------------

    def status(self, subject: str | None = None) -> list[ScopeState]:
        """Scopes with failures counted now or tries refused, optionally those of one address or account."""
        now = self.clock()
        states = []
        for row in self._rows(subject):
            limit = self.limits.get(row.key.scope)
            if limit is None:
                continue
            row = decay(row, now, limit)
            blocked_for = max(0.0, row.blocked_until - now)
            if row.level > 0 or blocked_for > 0:
                reason = describe(row, limit, now)
                states.append(ScopeState(row.key, row.level, limit, row.strikes, blocked_for, reason))
        order = {scope: n for n, scope in enumerate(("address", "account", "pair"))}
        states.sort(key=lambda s: (order.get(s.scope, 3), s.address, s.account))
        return states

    def release(self, subject: str) -> int:
        """Forget every count and block of an address or account (literally); how many scopes."""
        released = self.store.release(subject)
        folded = subject.strip().lower()
        if folded != subject:
            released += self.store.release(folded)
        return released

    # -- helpers -------------------------------------------------------------

    def _rows(self, subject: str | None) -> list[ScopeRow]:
        if subject is None:
            return self.store.rows()
        rows = {row.key: row for row in self.store.rows(subject)}
        # Accounts are stored lower-cased: `auth status Alice@Example.test` finds them.
        folded = subject.strip().lower()
        if folded != subject:
            rows.update((row.key, row) for row in self.store.rows(folded))
        return list(rows.values())

    def _judge_all(
        self, keys: Sequence[ScopeKey], rows: Mapping[ScopeKey, ScopeRow], flying: Mapping[ScopeKey, int], now: float
    ) -> dict[ScopeKey, tuple[ScopeRow | None, float | None]]:
        return {
            key: judge(rows.get(key), key, flying[key], now, self.limits[key.scope], self.config.max_block)
            for key in keys
        }

    def _is_known(self, address: str, account: str, now: float) -> bool:
        since = now - self.config.known_pair_days * DAY
        last = self._remembered.get((address, account))
        if last is not None and last >= since:
            return True
        return self.store.is_known(address, account, since)

    def _finish(self, attempt: Attempt) -> None:
        """Take the attempt out of flight; an attempt ends once.

        failed() calls this before it stores the failure: no begin() can look
        in between, as both hold the main lock."""
        with self._flight:
            if attempt.finished:
                raise RuntimeError(f"login attempt of {attempt.account!r} ended twice")
            attempt.finished = True
            for key in attempt.scopes:
                flying = self._in_flight.get(key)
                if flying is not None:
                    flying.pop(attempt, None)
                    if not flying:
                        del self._in_flight[key]

    def _prune_now_and_then(self, now: float) -> None:
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY
        per_hour = {scope: limit.per_hour for scope, limit in self.limits.items()}
        self.store.prune(now, per_hour, now - self.config.known_pair_days * DAY)
