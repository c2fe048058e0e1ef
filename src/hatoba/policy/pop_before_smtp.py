"""POP-before-SMTP (legacy, off by default): a login opens relaying for an address.

Old mail programs that cannot do SMTP AUTH fetched mail first; the server
then let their IP address relay for a while (the DRAC / "pop-before-smtp"
daemons of the qmail and Postfix era). An address is not a person (NAT,
shared Wi-Fi), so hatoba keeps it off unless smtp.pop_before_smtp_minutes
is set, and logs every relay it allows this way.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class PopBeforeSmtp:
    def __init__(self, minutes: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = minutes * 60.0
        self._clock = clock
        self._opened: dict[str, tuple[float, str]] = {}  # ip -> (expiry, login)

    @property
    def enabled(self) -> bool:
        return self.window > 0

    def record_login(self, ip: str, login: str) -> None:
        """A POP3 or IMAP login succeeded from `ip`."""
        if self.enabled:
            self._opened[ip] = (self._clock() + self.window, login)
            self._forget_expired()

    def login_for(self, ip: str) -> str | None:
        """The login that opened relaying for `ip`, while its window lasts; else None."""
        if not self.enabled:
            return None
        entry = self._opened.get(ip)
        if entry is None:
            return None
        expiry, login = entry
        if self._clock() >= expiry:
            del self._opened[ip]
            return None
        return login

    def _forget_expired(self) -> None:
        now = self._clock()
        if len(self._opened) > 1000:
            self._opened = {ip: e for ip, e in self._opened.items() if e[0] > now}
