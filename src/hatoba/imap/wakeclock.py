"""WakeClock: one timer for every connection that waits for a deadline.

An IMAP client may sit in IDLE (or between commands) for 30 minutes, and
thousands do at once. A timer of its own per connection (an asyncio.Timeout
and uvloop's TimerHandle and libuv timer) costs about 0.7 KiB each; here
they share one, which ticks every TICK seconds while anyone waits and wakes
the streams whose time has come. A deadline is therefore met up to TICK
seconds late, which autologout and the IDLE rescan can afford.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger(__name__)

TICK = 5.0


class Wakeable(Protocol):
    def wake(self) -> None: ...


class WakeClock:
    def __init__(self, tick: float = TICK) -> None:
        self._tick = tick
        self._due: dict[Wakeable, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, waiter: Wakeable, due: float) -> None:
        """Call waiter.wake() once, at loop time `due` (or up to a tick later)."""
        self._due[waiter] = due
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._tick, self._on_tick)

    def remove(self, waiter: Wakeable) -> None:
        self._due.pop(waiter, None)

    def wake_all(self) -> None:
        """Wake every waiter now (the server is stopping)."""
        waiters, self._due = list(self._due), {}
        for waiter in waiters:
            try:
                waiter.wake()
            except Exception:
                log.exception("wake-up failed")

    def _on_tick(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = None
        now = loop.time()
        due_now = [waiter for waiter, due in self._due.items() if due <= now]
        for waiter in due_now:
            del self._due[waiter]
            try:
                waiter.wake()
            except Exception:  # one broken connection must not stop the clock for all
                log.exception("wake-up failed")
        if self._due and self._timer is None:
            self._timer = loop.call_later(self._tick, self._on_tick)
