"""ReadAhead: the next small messages of a POP3 maildrop, read before they are asked for.

A client fetching its mail sends RETR 1, RETR 2, ... and waits for each
answer. A trip to a worker thread costs more than reading a 4 KB file from
the page cache, so one trip per message makes the thread hand-off, not the
disk, set the pace. When a client reads in order, the messages after the one
it asked for are read in the same trip, up to a budget of bytes and count,
and the next batch is read in the background while it takes those from
memory. Files are read in a thread, never on the event loop.

A message read ahead and then removed by another client (IMAP) is still
served: the session saw it when it opened the maildrop, as it would if the
file had been open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hatoba.store.pop3_maildrop import Maildrop

READ_AHEAD_BYTES = 128 * 1024  # memory per session held for messages not asked for yet
READ_AHEAD_COUNT = 32


class ReadAhead:
    def __init__(
        self,
        maildrop: Maildrop,
        small: int,
        wanted: Callable[[int], bool],
        *,
        budget_bytes: int = READ_AHEAD_BYTES,
        budget_count: int = READ_AHEAD_COUNT,
    ) -> None:
        self.maildrop = maildrop
        self.small = small  # only messages up to this wire size are read whole
        self.wanted = wanted  # False for a message marked deleted: not worth reading
        self.budget_bytes = budget_bytes
        self.budget_count = budget_count
        self.held: dict[int, bytes] = {}
        self.last = -1  # the last index asked for
        self.pending: asyncio.Task[list[bytes]] | None = None
        self.pending_indices: list[int] = []

    async def read(self, index: int) -> bytes:
        """Message `index` whole; OSError (FileNotFoundError included) when it cannot be read."""
        self._collect_done()
        if index not in self.held and self.pending is not None and index in self.pending_indices:
            await asyncio.wait([self.pending])
            self._collect_done()
        data = self.held.pop(index, None)
        in_order = index == self.last + 1
        again = index == self.last  # TOP then RETR of one message: still reading in order
        self.last = index
        if not in_order and not again:
            self.held.clear()  # not reading in order: what is held may never be asked for
        if data is None:
            following = self._plan(index + 1) if in_order else []
            found = await asyncio.to_thread(_read_batch, self.maildrop, index, following)
            data = found[0]
            self._keep(following, found[1:])
        if in_order:
            self._prefetch()
        return data

    @property
    def held_bytes(self) -> int:
        return sum(map(len, self.held.values()))  # at most budget_count entries

    def close(self) -> None:
        """Drop what is held and stop waiting for a batch in flight."""
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
        self.held.clear()

    # -- inside ------------------------------------------------------------------------

    def _plan(self, start: int) -> list[int]:
        """The indices from `start` on to read next, within the budget (what a batch
        in flight will bring counts as held)."""
        messages = self.maildrop.messages
        coming = set(self.pending_indices) if self.pending is not None else set()
        room = self.budget_bytes - self.held_bytes - sum(messages[i].wire_size for i in coming)
        indices: list[int] = []
        index = start
        while index < len(messages) and len(indices) + len(self.held) + len(coming) < self.budget_count:
            size = messages[index].wire_size
            if size > self.small or size > room:
                break  # a big one is streamed when it is asked for; stop here
            if index not in self.held and index not in coming and self.wanted(index):
                indices.append(index)
                room -= size
            index += 1
        return indices

    def _prefetch(self) -> None:
        if self.pending is not None or self.held_bytes * 2 > self.budget_bytes:
            return
        start = max(self.held, default=self.last) + 1
        indices = self._plan(start)
        if not indices:
            return
        self.pending_indices = indices
        self.pending = asyncio.ensure_future(asyncio.to_thread(_read_following, self.maildrop, indices))

    def _collect_done(self) -> None:
        task = self.pending
        if task is None or not task.done():
            return
        self.pending = None
        if not task.cancelled() and task.exception() is None:
            self._keep(self.pending_indices, task.result())

    def _keep(self, indices: list[int], found: list[bytes]) -> None:
        for index, data in zip(indices, found):
            if index > self.last and index not in self.held:
                self.held[index] = data


def _read_batch(maildrop: Maildrop, index: int, following: list[int]) -> list[bytes]:
    """In a thread: message `index` (errors raised), then as many of `following` as read cleanly."""
    return [maildrop.read_message(index), *_read_following(maildrop, following)]


def _read_following(maildrop: Maildrop, indices: list[int]) -> list[bytes]:
    """In a thread: the messages in order up to the first that cannot be read; it is
    left for its own RETR, which reports the error to the client."""
    found: list[bytes] = []
    for index in indices:
        try:
            found.append(maildrop.read_message(index))
        except OSError:
            break
    return found


__all__ = ["READ_AHEAD_BYTES", "READ_AHEAD_COUNT", "ReadAhead"]
