"""BalancedAcceptor: accepts on a listening socket the workers share, leaving a
connection to a worker that holds fewer.

Every worker watches the same listening socket, and the kernel wakes them
all; whichever calls accept() first gets the connection. An event loop that
accepts everything waiting at once (uvloop does) takes a whole burst, and a
handful of busy clients can end up on one core while another idles. Here a
worker takes connections only while it holds no more than the least loaded
other worker (counting those it has just accepted); when it holds more it
steps back for a moment (DEFER seconds) so that worker can take it. Only workers
whose event loop beat in the last half second count (a heartbeat in the
shared memory, see heartbeat()): a dead, stopped or stuck worker gets
nothing, and after MAX_DEFERRALS steps back in a row a worker accepts
anyway, so no connection waits more than about 10 ms for another worker.
Loads within a sixteenth of each other count as equal, so a flood of
connections is taken in bursts.

The loads are the per-worker connection totals in shared memory
(net/shared_counts.py), which the connection limiter already keeps.
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
from collections.abc import Callable

from hatoba.net.stream import connect_accepted

log = logging.getLogger(__name__)

DEFER = 0.001
MAX_DEFERRALS = 10
HEARTBEAT_EVERY = 0.1  # seconds between a worker's heartbeats (shared_counts.ALIVE_WITHIN: 0.5)
MAX_BURST = 16  # connections taken in one wake-up while this worker stays among the least loaded
# Loads count as equal within fewest // SLACK_SHARE (and exactly at small counts): a
# flood of hundreds is taken in bursts, not one connection per wake-up of each worker.
SLACK_SHARE = 16
RETRY_ACCEPT_AFTER = 1.0

# (this worker's open connections, the fewest any other worker holds)
Loads = Callable[[], tuple[int, int]]


def _waiting(sock: socket.socket) -> bool:
    """A connection waits in the listening socket's queue now."""
    poller = select.poll()  # not select(): no limit on the descriptor's number
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


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
        if self.deferrals and not _waiting(self.sock):
            self.deferrals = 0  # another worker took it while this one stepped back: as it should
        self._watch()

    def _over(self) -> bool:
        """This worker holds more than the least loaded other one."""
        mine, fewest = self.loads()
        return mine + self.connecting > fewest + fewest // SLACK_SHARE

    def _ready(self) -> None:
        if self._over() and self.deferrals < MAX_DEFERRALS:
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
            if self._over():
                return  # no longer among the least loaded: the next one is another worker's

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await connect_accepted(self.loop, self.factory, conn)
        except OSError as exc:  # the client left before the transport was made
            log.debug("accepted connection lost at once: %s", exc)
            conn.close()
        finally:
            self.connecting -= 1


def heartbeat(beat: Callable[[], None]) -> None:
    """Call `beat` now and every HEARTBEAT_EVERY seconds from the running loop, for as long as
    it turns: a loop that is blocked, stopped or gone stops beating."""
    loop = asyncio.get_running_loop()

    def tick() -> None:
        try:
            beat()
        except ValueError:  # the shared block is closed (a released memoryview): the process is stopping
            return
        loop.call_later(HEARTBEAT_EVERY, tick)

    tick()


__all__ = ["BalancedAcceptor", "DEFER", "HEARTBEAT_EVERY", "MAX_DEFERRALS", "heartbeat"]
