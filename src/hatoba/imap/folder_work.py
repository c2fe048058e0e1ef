"""Work that takes a folder's lock: one piece at a time per folder and process, done at
once on the event loop when nothing in it must wait, else in a pool thread; then flushed.

Ten sessions of one folder used to send their refreshes, STOREs and EXPUNGEs to
the thread pool at once: the threads queued on the folder's lock, held every
pool slot, and each piece waited for the event loop between hand-offs while the
lock stayed taken. Then each folder got a thread running its pieces back to
back; that thread and the loop still handed the GIL to each other at every
system call, and a piece held the lock for several times its own work.

Now sessions wait for their folder's turn on the loop (no thread, no pool slot
held), and in its turn a piece on a small folder runs on the loop itself when
the lock is free and nothing in it would wait for a disk
(store.uidlist.flushes_deferred raises WouldWait before it changes anything).
While only the lock is in the way (another process holds it for a moment) the
piece tries again between the loop's other callbacks, for BUSY_RETRY_SECONDS;
after that, or when it would wait for anything else, it runs in a pool thread,
the turn still held. Either way its writes are flushed afterwards, outside the
lock and the turn, by a pool thread that several sessions' flushes share,
before the client is told. SELECT and STATUS take the same turns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

from hatoba.store.folder_tree import Mailbox
from hatoba.store.uidlist import Folder, WouldWait, flushes_deferred

Result = TypeVar("Result")

# How long a piece keeps trying at once, between the loop's other callbacks, while only
# the lock is in the way: another process holds it for well under a millisecond, and a
# thread's blocking wait costs more than that in hand-offs while the turn stays taken.
BUSY_RETRY_SECONDS = 0.003


class FolderTurn:
    """Whose turn it is to work on one folder in this process (an asyncio lock: waiting
    for it costs no thread)."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    @property
    def idle(self) -> bool:
        """No piece runs or waits."""
        return not self._lock.locked()

    async def run(self, work: Callable[[], Result], *, at_once: bool) -> Result:
        """work() in its turn: on the loop when `at_once` and it does not raise WouldWait,
        else in a pool thread. Its flushes are left to the caller (flushed()).

        A caller cancelled while the piece runs in a thread (the client went away)
        does not stop it: the store finishes what it began, and the next piece waits
        for it.
        """
        async with self._lock:
            give_up = time.monotonic() + BUSY_RETRY_SECONDS
            while at_once:
                try:
                    with flushes_deferred(at_once=True):
                        return work()
                except WouldWait as wait:
                    if not wait.busy or time.monotonic() >= give_up:
                        break
                await asyncio.sleep(0)  # the loop's other work, then another try
            piece = asyncio.ensure_future(asyncio.to_thread(_deferring_flushes, work))
            try:
                return await asyncio.shield(piece)
            except asyncio.CancelledError:
                while not piece.done():  # the turn is kept until the piece ends, however often cancelled
                    try:
                        await asyncio.wait([piece])
                    except asyncio.CancelledError:
                        continue
                raise


def _deferring_flushes(work: Callable[[], Result]) -> Result:
    with flushes_deferred():
        return work()


def folder_turn(folder: Folder) -> FolderTurn:
    """This process's turn keeper for a folder (kept on the folder's shared state)."""
    turn = folder.work_turn
    if not isinstance(turn, FolderTurn):
        turn = folder.work_turn = FolderTurn()
    return turn


async def in_folder_turn(mailbox: Mailbox, work: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
    """work(*args, **kwargs) in the folder's turn, at once on the loop if the folder allows
    it (Mailbox.at_once_allowed) and nothing in it must wait, else in a pool thread;
    flushed before this returns."""
    return await in_folder_turn_trying(mailbox.at_once_allowed, mailbox, work, *args, **kwargs)


async def in_folder_turn_trying(at_once: bool, mailbox: Mailbox, work: Callable[..., Result], *args: Any,
                                **kwargs: Any) -> Result:
    """in_folder_turn() with the caller saying whether to try at once: a look at a large
    folder (Mailbox.quiet_look_at_once_allowed) runs on the loop when it finds nothing
    changed, and goes to a thread (WouldWait) before any walk over its messages."""
    result = await folder_turn(mailbox.folder).run(lambda: work(*args, **kwargs), at_once=at_once)
    await flushed(mailbox.folder)
    return result


async def in_turn_of(folder: Folder, work: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
    """work(*args, **kwargs), which finds `folder` itself (SELECT, STATUS), in the folder's
    turn, tried at once first; flushed before this returns."""
    result = await folder_turn(folder).run(lambda: work(*args, **kwargs), at_once=folder.reads_without_waiting)
    await flushed(folder)
    return result


async def flushed(folder: Folder) -> None:
    """The folder's writes so far on stable storage (Folder.flush_changes in a pool thread)."""
    if folder.needs_flush:
        await asyncio.to_thread(folder.flush_changes)
