"""POP-before-SMTP (legacy, off by default): a login opens relaying for an address.

Old mail programs that cannot do SMTP AUTH fetched mail first; the server
then let their IP address relay for a while (the DRAC / "pop-before-smtp"
daemons of the qmail and Postfix era). An address is not a person (NAT,
shared Wi-Fi), so hatoba keeps it off unless smtp.pop_before_smtp_minutes
is set, and logs every relay it allows this way.

Rules:
- The open windows are kept in a WindowStore (store/relay_logins.py: a table
  of the directory database), so a login served by one server process opens
  relaying in every other one. Nothing is kept in this process's memory.
- Off (0 minutes), nothing touches the store: no file is opened, no thread needed.
- On, record_login and login_for block (SQLite): sessions call them in a thread.
- Windows end on the wall clock (Unix seconds), since they outlive a process.
  A window ending further ahead than the configured length (the clock was
  set back, or the length was shortened) counts as closed.
- Recording is a side effect of a login that succeeded: a store that cannot
  be written is logged and the login goes on. Looking up raises, so the
  RCPT gets a temporary error (451) rather than a wrong answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from hatoba.policy import relay
from hatoba.policy.decision import Decision

if TYPE_CHECKING:
    from hatoba.proto.address import Address
    from hatoba.store.api import UserDB

__all__ = ["PopBeforeSmtp", "WindowStore", "WindowStoreError"]

log = logging.getLogger(__name__)

# How often (clock seconds) windows that ended are deleted from the store.
PRUNE_EVERY = 600.0


class WindowStoreError(Exception):
    """The store cannot be read or written; the message is one line for the operator."""


class WindowStore(Protocol):
    """Where open windows are kept: address -> (login, end). Raises WindowStoreError."""

    def open_window(self, address: str, login: str, until: float) -> None:
        """Open (or move the end of) the window of `address`."""
        ...

    def window(self, address: str) -> tuple[str, float] | None:
        """(login, end) of the last window opened for `address`, ended or not."""
        ...

    def prune(self, before: float) -> None:
        """Delete the windows that ended before `before`."""
        ...

    def close(self) -> None: ...


class PopBeforeSmtp:
    def __init__(
        self, minutes: float, store: WindowStore | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        if minutes > 0 and store is None:
            raise ValueError("POP-before-SMTP needs a store for its windows")
        self.window = minutes * 60.0
        self.store = store
        self._clock = clock
        self._pruned = float("-inf")

    @classmethod
    def open(cls, minutes: float, path: Path) -> PopBeforeSmtp:
        """Kept in the directory database at `path` (opened first by Directory); off: opens nothing.

        Raises WindowStoreError when the database cannot be used."""
        if minutes <= 0:
            return cls(0)
        from hatoba.store.relay_logins import RelayLogins  # the store is SQLite; this module stays free of it

        return cls(minutes, RelayLogins(path))

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    @property
    def enabled(self) -> bool:
        return self.window > 0

    def record_login(self, ip: str, login: str) -> None:
        """A POP3 or IMAP login succeeded from `ip`. Blocks when enabled."""
        if not self.enabled:
            return
        assert self.store is not None
        now = self._clock()
        try:
            self.store.open_window(ip, login, now + self.window)
            if now - self._pruned >= PRUNE_EVERY:
                self._pruned = now
                self.store.prune(now)
        except WindowStoreError as exc:
            log.error("POP-before-SMTP: cannot record the login of %s from %s: %s", login, ip, exc)

    def check_recipient(self, address: Address, ip: str, *, relay_allowed: bool, directory: UserDB,
                        windows_apply: bool = True) -> tuple[Decision, str | None]:
        """relay.check_recipient with relaying also open to `ip` while a POP3 or IMAP login's
        window lasts (when `windows_apply`: port 25 only): (the decision, the login that
        opened relaying, or None). The window is looked up only for a recipient refused as
        a relay otherwise, so mail to local users costs no look-up. Blocks when enabled;
        raises WindowStoreError when the windows cannot be read."""
        decision = relay.check_recipient(address, relay_allowed=relay_allowed, directory=directory)
        if decision.accept or decision.log_reason != relay.RELAY_DENIED or not (self.enabled and windows_apply):
            return decision, None
        login = self.login_for(ip)
        if login is None:
            return decision, None
        return relay.check_recipient(address, relay_allowed=True, directory=directory), login

    def login_for(self, ip: str) -> str | None:
        """The login that opened relaying for `ip`, while its window lasts; else None. Blocks when enabled."""
        if not self.enabled:
            return None
        assert self.store is not None
        found = self.store.window(ip)
        if found is None:
            return None
        login, until = found
        now = self._clock()
        if not now < until <= now + self.window:
            return None
        return login
