"""BalancedAcceptor: workers sharing a listening socket take connections by load.

Two acceptors on one loopback socket stand for two workers; each one's load
is what the test says it is, as the shared connection totals would say.
"""

from __future__ import annotations

import asyncio
import socket
import time

from hatoba.net.acceptor import DEFER, MAX_DEFERRALS, BalancedAcceptor


class Recorder(asyncio.Protocol):
    def __init__(self, name: str, taken: list[str]) -> None:
        self.name, self.taken = name, taken

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.taken.append(self.name)
        transport.close()


def run(loads: dict[str, int], connections: int, *, serving=("a", "b")) -> tuple[list[str], list[float]]:
    """Who took each of `connections` made one after another, and how long each waited."""
    async def main() -> tuple[list[str], list[float]]:
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        taken: list[str] = []
        acceptors = []
        for name in serving:
            def current(name: str = name) -> tuple[int, int]:
                return loads[name], min(v for k, v in loads.items() if k != name)
            acceptor = BalancedAcceptor(listener, lambda name=name: Recorder(name, taken), current)
            acceptor.start()
            acceptors.append(acceptor)
        waits = []
        for n in range(connections):
            started = time.monotonic()
            client = socket.create_connection(("127.0.0.1", port))
            while len(taken) <= n:
                await asyncio.sleep(0.0005)
            waits.append(time.monotonic() - started)
            client.close()
        for acceptor in acceptors:
            acceptor.close()
            assert not acceptor.is_serving()
        listener.close()
        return taken, waits
    return asyncio.run(main())


def test_the_less_loaded_worker_takes_the_connections():
    taken, _ = run({"a": 5, "b": 2}, 6)
    assert taken == ["b"] * 6


def test_at_equal_load_either_may_take_them(monkeypatch):
    # Only "a" serves: at equal loads it never steps back for "b" (counted, not timed:
    # a busy machine may delay a connection without any stepping back).
    pauses = []
    monkeypatch.setattr(BalancedAcceptor, "_pause", lambda self, seconds: pauses.append(seconds))
    taken, _ = run({"a": 3, "b": 3}, 6, serving=("a",))
    assert taken == ["a"] * 6
    assert pauses == []


def test_a_worker_that_never_accepts_delays_a_connection_a_little_never_refuses_it():
    # "b" holds fewer but does not serve (stuck, yet still beating): "a" steps back, then takes it.
    taken, waits = run({"a": 5, "b": 0}, 3, serving=("a",))
    assert taken == ["a"] * 3
    assert all(DEFER * MAX_DEFERRALS * 0.5 <= wait < 0.5 for wait in waits), waits  # it did step back


def test_equal_within_a_sixteenth_is_equal(monkeypatch):
    # Stepping back is counted, not timed: a busy machine may delay a connection without any.
    pauses = []
    pause = BalancedAcceptor._pause
    monkeypatch.setattr(BalancedAcceptor, "_pause", lambda self, seconds: (pauses.append(seconds), pause(self, seconds)))
    taken, _ = run({"a": 159, "b": 150}, 6, serving=("a",))  # 159 <= 150 + 150 // 16
    assert taken == ["a"] * 6 and pauses == []
    taken, _ = run({"a": 160, "b": 150}, 6, serving=("a",))  # 160 > 159: "a" steps back before each
    assert taken == ["a"] * 6 and len(pauses) >= 6
    taken, _ = run({"a": 160, "b": 150}, 6)  # and with "b" serving, only "b" takes them
    assert taken == ["b"] * 6


def test_the_heartbeat_stops_quietly_once_the_shared_block_is_closed():
    from hatoba.net.acceptor import HEARTBEAT_EVERY, heartbeat
    from hatoba.net.shared_counts import SharedCounts

    async def main() -> None:
        counts = SharedCounts.create(2)
        errors = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
        heartbeat(counts.beat)
        await asyncio.sleep(HEARTBEAT_EVERY * 1.5)
        counts.close()  # a worker stopping: the timer may still fire once
        await asyncio.sleep(HEARTBEAT_EVERY * 2.5)
        assert errors == []

    asyncio.run(main())
