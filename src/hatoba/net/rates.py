"""Events per client address over a sliding window, counted where every worker sees them.

The connection counts' table (net/limits.py: this process's `LocalCounts`, or
the `SharedCounts` block every listener process maps) holds one more kind
of key: ("rate", what, address). Each event adds 1 and takes it back
`window` seconds later (a timer on this process's loop), so a count is the
events of the last `window` seconds in every process together. A worker
that dies has its region cleared, and its events with it: a restart
forgives a little. Counts are never too low (count-min), so a limit is
never passed; it is hit early only by the rare collisions that module
describes.
"""

from __future__ import annotations

import asyncio

from hatoba.checks.greylisting import network_of

from hatoba.net.limits import LocalCounts
from hatoba.net.shared_counts import MAX_COUNT, SharedCounts

CONNECTIONS, MESSAGES, UNKNOWN_RECIPIENTS = "connections", "messages", "unknown-recipients"


def client_key(ip: str) -> str:
    """Who a rate belongs to: an IPv4 address, or an IPv6 /64 (one host has a whole /64 to pick from)."""
    return network_of(ip, v4=32, v6=64)


class EventRates:
    def __init__(self, counts: LocalCounts | SharedCounts, *, window: float = 60.0) -> None:
        self._counts = counts
        self.window = window

    def count(self, what: str, ip: str) -> int:
        """The events of kind `what` from `ip` (its /64, for IPv6) in the last `window` seconds."""
        return self._counts.count_at(self._counts.cells(("rate", what, client_key(ip))))

    def note(self, what: str, ip: str) -> None:
        """One more event now; it stops counting after `window` seconds."""
        cells = self._counts.cells(("rate", what, client_key(ip)))
        if self._counts.count_at(cells) >= MAX_COUNT:  # the 16-bit counters: enough to refuse anyway
            return
        self._counts.add_at(cells, 1)
        asyncio.get_running_loop().call_later(self.window, self._counts.add_at, cells, -1)
