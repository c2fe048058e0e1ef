"""Named thread pools: work that cannot run on the event loop, kept apart by kind
so that one kind never starves another.

- LOGINS: password checks (Argon2), the login throttle's records and opening
  the user's mailboxes after a login. Never shared with mailbox work: six
  sessions sorting a large mailbox once held every thread of asyncio's
  default pool, and a login waited minutes behind them.
- MAILBOX: CPU-heavy mailbox commands (SORT, THREAD, SEARCH of headers and
  bodies). Few threads: Python runs one of them at a time anyway (the GIL),
  and each extra thread takes turns from the event loop. A session runs its
  commands one after another, so it holds at most one of these threads.
- Short file work (opening a mailbox, STATUS, APPEND, FETCH reads) stays in
  asyncio's default pool (asyncio.to_thread).

The pools are made on first use and live as long as the process, as the
default pool does; their threads carry the caller's context (the session id
in log lines), as asyncio.to_thread's do.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["LOGINS", "MAILBOX", "Pool"]

P = ParamSpec("P")
T = TypeVar("T")


class Pool:
    """A named ThreadPoolExecutor, made when first used."""

    def __init__(self, name: str, threads: int) -> None:
        self.name = name
        self.threads = threads
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()  # test servers start in several threads at once

    def executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix=self.name)
            return self._executor

    async def run(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """func(*args, **kwargs) in one of this pool's threads (asyncio.to_thread's twin)."""
        call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.executor(), call)


# Argon2 releases the GIL while it hashes: four checks at once keep two cores busy
# without letting a burst of logins use all the memory (64 MiB each).
LOGINS = Pool("login", 4)
# Two: a second heavy command need not wait for the first to finish, and the
# event loop still gets its turns between them.
MAILBOX = Pool("mailbox", 2)
