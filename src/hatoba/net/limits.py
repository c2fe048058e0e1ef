"""Connection limits: in total and per client address (Postfix's
smtpd_client_connection_count_limit). Shared by every listener."""

from __future__ import annotations

from collections import Counter

from hatoba.proto.smtp import replies as R
from hatoba.proto.smtp.replies import Reply


class ConnectionLimiter:
    def __init__(self, *, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.total = 0
        self._per_ip: Counter[str] = Counter()

    def acquire(self, ip: str) -> Reply | None:
        """None when the connection may proceed; else the reply that refuses it."""
        if self.total >= self.max_total:
            return R.R421_TOO_MANY_CONNECTIONS
        if self._per_ip[ip] >= self.max_per_ip:
            return R.R421_TOO_MANY_FROM_IP
        self.total += 1
        self._per_ip[ip] += 1
        return None

    def release(self, ip: str) -> None:
        self.total -= 1
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]
