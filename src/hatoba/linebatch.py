"""Lines to a child or parent process, written once per turn of the event loop.

The server's processes talk in lines over pipes (net/worker_link.py,
queue/reports.py). What one turn of the loop produces (the ids of the
messages committed in it, the mailbox changes of its sessions) goes out in
one write: one system call instead of one per line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class Pipe(Protocol):
    def write(self, data: bytes) -> None: ...

    def is_closing(self) -> bool: ...


class LineBatch:
    """`out()` gives the pipe to write to now, or None when there is none (a process
    that is not running: what was waiting is dropped, as its restart reads afresh)."""

    __slots__ = ("_out", "_unsent")

    def __init__(self, out: Callable[[], Pipe | None]) -> None:
        self._out = out
        self._unsent: list[bytes] = []

    def add(self, line: bytes) -> None:
        if not self._unsent:
            asyncio.get_running_loop().call_soon(self.flush)
        self._unsent.append(line)

    def flush(self) -> None:
        """Write what is waiting now (also called at a stop, before the pipe closes)."""
        lines, self._unsent = self._unsent, []
        out = self._out()
        if lines and out is not None and not out.is_closing():
            out.write(b"".join(lines))
