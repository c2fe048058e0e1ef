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

Where the counts live:
- By default in this process (`LocalCounts`, exact): one serving process.
- With `shared=` a `SharedCounts` block that every listener process of the
  server maps (net/shared_counts.py), so the limits hold for the server as
  a whole. A check and the add after it are two steps, and processes do not
  wait for each other: when w processes accept at the same moment, each may
  see room for one more, so a limit may be overshot by at most w-1
  connections (never by more, as each process's own check-then-add is not
  interrupted). Counts there are never too low, and too high only rarely
  and by little (see that module).
"""

from __future__ import annotations

from collections.abc import Hashable

from hatoba.i18n import T
from hatoba.net.shared_counts import MAX_COUNT, SharedCounts
from hatoba.proto.smtp import replies as R
from hatoba.proto.smtp.replies import Reply


class LocalCounts:
    """Counts of this process alone, exact: a dict of the keys whose count is not 0.
    Same methods as SharedCounts; a key is its own cell."""

    def __init__(self) -> None:
        self._counts: dict[Hashable, int] = {}
        self._total = 0

    @staticmethod
    def cells(key: Hashable) -> Hashable:
        return key

    def count_at(self, key: Hashable) -> int:
        return self._counts.get(key, 0)

    def add_at(self, key: Hashable, delta: int) -> None:
        n = self._counts.get(key, 0) + delta
        if n > 0:
            self._counts[key] = n
        else:
            self._counts.pop(key, None)

    def total(self) -> int:
        return self._total

    def add_total(self, delta: int) -> None:
        self._total += delta


class ConnectionLimiter:
    def __init__(self, *, max_total: int, max_per_ip: int, max_per_user_ip: int = 10,
                 shared: SharedCounts | None = None) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.max_per_user_ip = max_per_user_ip
        # One process's count of a key is at most its own connections, which must fit the
        # 16-bit counters of shared counts (the config allows at most MAX_CONNECTIONS).
        assert shared is None or max_total <= MAX_COUNT, max_total
        self._counts: LocalCounts | SharedCounts = LocalCounts() if shared is None else shared

    @property
    def counts(self) -> LocalCounts | SharedCounts:
        """The table the counts live in (net/rates.py counts events per address there too)."""
        return self._counts

    @property
    def total(self) -> int:
        """Connections open now, in every process that shares the counts."""
        return self._counts.total()

    def acquire(self, ip: str) -> Reply | None:
        """None when the connection may proceed; else the reply that refuses it."""
        if self._counts.total() >= self.max_total:
            return R.R421_TOO_MANY_CONNECTIONS.with_text(
                T("Too many connections to this server (%(most)s); try again later", most=self.max_total)
            )
        cells = self._counts.cells(ip)
        if self._counts.count_at(cells) >= self.max_per_ip:
            return R.R421_TOO_MANY_FROM_IP.with_text(
                T("Too many connections from your address that have not logged in (%(most)s); try again later",
                  most=self.max_per_ip)
            )
        self._counts.add_total(1)
        self._counts.add_at(cells, 1)
        return None

    def log_in(self, ip: str, account: str, proto: str, previous: str | None = None) -> str | None:
        """Move a connection from `ip`'s count (or from `previous` account's, for a
        session that logs in again as another user, as POP3 may after [IN-USE])
        to (account, ip, proto)'s; None when it may, else the plain-words reason
        it may not (the connection then stays where it was)."""
        cells = self._counts.cells((account, ip, proto))
        if proto != "smtp" and self._counts.count_at(cells) >= self.max_per_user_ip:
            return T(
                "Too many %(protocol)s connections for %(account)s from your address (%(most)s); "
                "close one in another program first",
                protocol=proto.upper(), account=account, most=self.max_per_user_ip,
            )
        self._counts.add_at(self._counts.cells(ip if previous is None else (previous, ip, proto)), -1)
        self._counts.add_at(cells, 1)
        return None

    def release(self, ip: str, account: str | None = None, proto: str = "") -> None:
        """The connection closed; `account` is the login it moved to with log_in(), if any."""
        self._counts.add_total(-1)
        self._counts.add_at(self._counts.cells(ip if account is None else (account, ip, proto)), -1)

    def connections_of(self, account: str, ip: str, proto: str) -> int:
        return self._counts.count_at(self._counts.cells((account, ip, proto)))

    def connections_from(self, ip: str) -> int:
        """Connections from `ip` that have not logged in."""
        return self._counts.count_at(self._counts.cells(ip))
