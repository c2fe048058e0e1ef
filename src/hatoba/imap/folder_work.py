"""Work that takes a folder's lock, done one piece after another by one thread per busy folder.

Ten sessions of one folder used to send their refreshes, STOREs and EXPUNGEs to
the thread pool at once: the threads queued on the folder's lock, held every
pool slot, and each piece waited for the event loop between hand-offs while the
lock stayed taken. One session did more commands a second than ten. Now each
folder has a queue in this process: the first piece starts a pool thread that
runs the queued pieces back to back and hands each result to the loop, and
stops when the queue is empty. Nothing waits for the lock inside this process,
and the lock is never held across a turn of the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from hatoba.store.folder_tree import Mailbox

Result = TypeVar("Result")


class FolderQueue:
    """The pieces of work waiting for one folder, and whether a thread runs them now."""

    __slots__ = ("_pieces", "_mutex", "running")

    def __init__(self) -> None:
        self._pieces: collections.deque[tuple[Callable[[], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]] = (
            collections.deque())
        self._mutex = threading.Lock()
        self.running = False

    @property
    def idle(self) -> bool:
        """No piece runs or waits (read on the loop: a thread may start one just after)."""
        return not self.running

    def submit(self, work: Callable[[], Result]) -> asyncio.Future[Result]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        with self._mutex:
            self._pieces.append((work, future, loop))
            start = not self.running
            self.running = True
        if start:
            try:
                loop.run_in_executor(None, self._drain)
            except BaseException:
                with self._mutex:
                    self.running = False
                raise
        return future

    def _drain(self) -> None:
        while True:
            with self._mutex:
                if not self._pieces:
                    self.running = False
                    return
                work, future, loop = self._pieces.popleft()
            try:
                result = work()
            except BaseException as exc:  # handed to the session that asked, as to_thread would
                _hand(loop, future, None, exc)
            else:
                _hand(loop, future, result, None)


def _hand(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any,
          exc: BaseException | None) -> None:
    def settle() -> None:
        if future.cancelled():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop closed while the piece ran (the server stopping)
        pass


def folder_queue(mailbox: Mailbox) -> FolderQueue:
    """This process's queue for `mailbox`'s folder (kept on the folder's shared state)."""
    folder = mailbox.folder
    queue = folder.work_queue
    if not isinstance(queue, FolderQueue):
        queue = folder.work_queue = FolderQueue()
    return queue


async def in_folder_thread(mailbox: Mailbox, work: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
    """work(*args, **kwargs) in its turn in the folder's queue.

    A session whose command is cancelled (the client went away) does not stop a
    piece that started: the store finishes what it began, as with to_thread.
    """
    return await folder_queue(mailbox).submit(lambda: work(*args, **kwargs))
