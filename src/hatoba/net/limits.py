"""Connection limits, shared by every listener.

Rules:
- A connection counts against the server's total from accept to close.
- Until it logs in, it also counts against its client address (Postfix's
  smtpd_client_connection_count_limit, 50): port-25 sessions never log in
  and stay in that count for their whole life.
- A login moves it to the (account, address, protocol) count instead
  (Dovecot's mail_max_userip_connections, 10, which is per protocol too), so
  an office behind one NAT address is limited per person, not per building:
  30 people with 5 IMAP connections each are 150 connections from one
  address, all served. IMAP and POP3 have the limit each; SMTP submission
  has none of its own (its sessions are short, and a desktop and a phone
  with 5 IMAP connections each must still be able to send).
- Every refusal says which limit was hit.
"""

from __future__ import annotations

from collections import Counter

from hatoba.proto.smtp import replies as R
from hatoba.proto.smtp.replies import Reply


class ConnectionLimiter:
    def __init__(self, *, max_total: int, max_per_ip: int, max_per_user_ip: int = 10) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.max_per_user_ip = max_per_user_ip
        self.total = 0
        self._per_ip: Counter[str] = Counter()  # connections not logged in, per address
        self._per_user_ip: Counter[tuple[str, str, str]] = Counter()  # logged in, per (account, address, protocol)

    def acquire(self, ip: str) -> Reply | None:
        """None when the connection may proceed; else the reply that refuses it."""
        if self.total >= self.max_total:
            return R.R421_TOO_MANY_CONNECTIONS.with_text(
                f"Too many connections to this server ({self.max_total}); try again later"
            )
        if self._per_ip[ip] >= self.max_per_ip:
            return R.R421_TOO_MANY_FROM_IP.with_text(
                f"Too many connections from your address that have not logged in ({self.max_per_ip}); "
                "try again later"
            )
        self.total += 1
        self._per_ip[ip] += 1
        return None

    def log_in(self, ip: str, account: str, proto: str, previous: str | None = None) -> str | None:
        """Move a connection from `ip`'s count (or from `previous` account's, for a
        session that logs in again as another user, as POP3 may after [IN-USE])
        to (account, ip, proto)'s; None when it may, else the plain-words reason
        it may not (the connection then stays where it was)."""
        key = (account, ip, proto)
        if proto != "smtp" and self._per_user_ip[key] >= self.max_per_user_ip:
            return (
                f"Too many {proto.upper()} connections for {account} from your address "
                f"({self.max_per_user_ip}); close one in another program first"
            )
        if previous is None:
            self._drop(self._per_ip, ip)
        else:
            self._drop(self._per_user_ip, (previous, ip, proto))
        self._per_user_ip[key] += 1
        return None

    def release(self, ip: str, account: str | None = None, proto: str = "") -> None:
        """The connection closed; `account` is the login it moved to with log_in(), if any."""
        self.total -= 1
        if account is None:
            self._drop(self._per_ip, ip)
        else:
            self._drop(self._per_user_ip, (account, ip, proto))

    def connections_of(self, account: str, ip: str, proto: str) -> int:
        return self._per_user_ip[(account, ip, proto)]

    @staticmethod
    def _drop(counter: Counter, key: object) -> None:  # type: ignore[type-arg]
        counter[key] -= 1
        if counter[key] <= 0:
            del counter[key]
