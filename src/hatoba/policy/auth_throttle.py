"""Slows down and then locks out addresses that fail to log in.

Rules:
- Failures are counted per client IP within a window; successes reset.
- After `delay_after` failures every further answer is delayed (1 s growing
  to 8 s); after `lockout_after` the address gets 421 for `lockout_seconds`.
- Memory is bounded: at most MAX_TRACKED addresses, oldest forgotten first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_TRACKED = 100_000


@dataclass
class _Record:
    failures: int
    last: float
    locked_until: float = 0.0


class AuthThrottle:
    def __init__(
        self,
        *,
        delay_after: int,
        lockout_after: int,
        lockout_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.delay_after = delay_after
        self.lockout_after = lockout_after
        self.lockout_seconds = lockout_seconds
        self.clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def is_locked(self, ip: str) -> bool:
        rec = self._records.get(ip)
        return rec is not None and rec.locked_until > self.clock()

    def failure(self, ip: str) -> float:
        """Record a failed login; returns how long to wait before answering."""
        now = self.clock()
        rec = self._records.pop(ip, None)
        if rec is None or now - rec.last > self.lockout_seconds:
            rec = _Record(0, now)
        rec.failures += 1
        rec.last = now
        if rec.failures >= self.lockout_after:
            rec.locked_until = now + self.lockout_seconds
        self._records[ip] = rec
        while len(self._records) > MAX_TRACKED:
            self._records.popitem(last=False)
        over = rec.failures - self.delay_after
        return 0.0 if over < 0 else float(min(8, 2**over))

    def success(self, ip: str) -> None:
        self._records.pop(ip, None)
