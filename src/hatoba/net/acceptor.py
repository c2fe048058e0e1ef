"""BalancedAcceptor: accepts on a listening socket the workers share, leaving a
connection to a worker that holds fewer.

Every worker watches the same listening socket, and the kernel wakes them
all; whichever calls accept() first gets the connection. An event loop that
accepts everything waiting at once (uvloop does) takes a whole burst, and a
handful of busy clients can end up on one core while another idles. Here a
worker takes connections only while it holds no more than the least loaded
other worker (counting those it has just accepted); when it holds more it
steps back for a moment (DEFER seconds) so that worker can take it; after MAX_DEFERRALS steps back
in a row it accepts anyway, so a stuck or dead worker delays connections
by a few milliseconds at most, never refuses them.

The loads are the per-worker connection totals in shared memory
(net/shared_counts.py), which the connection limiter already keeps.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)

DEFER = 0.001
MAX_DEFERRALS = 10
MAX_BURST = 16  # connections taken in one wake-up while this worker stays the least loaded
RETRY_ACCEPT_AFTER = 1.0

# (this worker's open connections, the fewest any other worker holds)
Loads = Callable[[], tuple[int, int]]


class BalancedAcceptor:
    def __init__(self, sock: socket.socket, factory: Callable[[], asyncio.Protocol], loads: Loads) -> None:
        self.sock = sock
        self.factory = factory
        self.loads = loads
        self.loop = asyncio.get_running_loop()
        self.fd = sock.fileno()
        self.serving = False
        self.watching = False
        self.deferrals = 0
        self.connecting = 0  # accepted, not yet counted by the limiter (the protocol is being set up)
        self._resume_handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[object]] = set()

    def start(self) -> None:
        self.sock.setblocking(False)
        self.serving = True
        self._watch()

    def close(self) -> None:
        """Stop accepting; open connections go on (as asyncio.Server.close)."""
        self.serving = False
        self._unwatch()
        if self._resume_handle is not None:
            self._resume_handle.cancel()
            self._resume_handle = None

    def is_serving(self) -> bool:
        return self.serving

    # -- inside ------------------------------------------------------------------------

    def _watch(self) -> None:
        if self.serving and not self.watching:
            self.loop.add_reader(self.fd, self._ready)
            self.watching = True

    def _unwatch(self) -> None:
        if self.watching:
            self.loop.remove_reader(self.fd)
            self.watching = False

    def _pause(self, seconds: float) -> None:
        self._unwatch()
        self._resume_handle = self.loop.call_later(seconds, self._resume)

    def _resume(self) -> None:
        self._resume_handle = None
        self._watch()

    def _ready(self) -> None:
        if self.deferrals < MAX_DEFERRALS:
            mine, fewest = self.loads()
            if mine + self.connecting > fewest:
                self.deferrals += 1
                self._pause(DEFER)
                return
        self.deferrals = 0
        for _ in range(MAX_BURST):
            try:
                conn, _address = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # another worker took it, or the client gave up meanwhile
            except OSError as exc:  # out of descriptors or memory, most likely: let connections close first
                log.error("cannot accept connections: %s; trying again in %.0f s",
                          exc.strerror or exc, RETRY_ACCEPT_AFTER)
                self._pause(RETRY_ACCEPT_AFTER)
                return
            conn.setblocking(False)
            self.connecting += 1
            task = self.loop.create_task(self._connect(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            mine, fewest = self.loads()
            if mine + self.connecting > fewest:
                return  # no longer the least loaded: the next one is another worker's

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.factory, sock=conn)
        except OSError as exc:  # the client left before the transport was made
            log.debug("accepted connection lost at once: %s", exc)
            conn.close()
        finally:
            self.connecting -= 1


__all__ = ["BalancedAcceptor", "DEFER", "MAX_DEFERRALS"]
