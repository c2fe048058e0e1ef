"""The per-folder work queue: pieces run one at a time, in order, off the event loop."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from hatoba.imap.folder_work import FolderQueue


def test_pieces_run_one_at_a_time_in_order_off_the_loop_and_each_answer_reaches_its_caller():
    running = 0
    most = 0
    order: list[int] = []
    threads: set[int] = set()
    mutex = threading.Lock()

    def piece(n: int) -> int:
        nonlocal running, most
        with mutex:
            running += 1
            most = max(most, running)
        threads.add(threading.get_ident())
        time.sleep(0.002)
        order.append(n)
        with mutex:
            running -= 1
        return n * 10

    async def main() -> list[int]:
        queue = FolderQueue()
        assert queue.idle
        futures = [queue.submit(lambda n=n: piece(n)) for n in range(20)]
        assert not queue.idle
        results = await asyncio.gather(*futures)
        await asyncio.sleep(0.01)
        assert queue.idle
        return results

    loop_thread = threading.get_ident()
    assert asyncio.run(main()) == [n * 10 for n in range(20)]
    assert order == list(range(20))
    assert most == 1
    assert loop_thread not in threads


def test_a_failing_piece_fails_its_caller_only_and_the_queue_goes_on():
    async def main() -> None:
        queue = FolderQueue()

        def boom() -> None:
            raise ValueError("no such thing")

        first = queue.submit(boom)
        second = queue.submit(lambda: "fine")
        with pytest.raises(ValueError, match="no such thing"):
            await first
        assert await second == "fine"

    asyncio.run(main())


def test_a_caller_that_goes_away_does_not_stop_the_pieces_behind_it():
    ran: list[str] = []

    async def main() -> None:
        queue = FolderQueue()
        gate = threading.Event()
        first = queue.submit(lambda: (gate.wait(5), ran.append("first")))
        second = queue.submit(lambda: ran.append("second") or "second")
        first.cancel()  # the session that asked was closed
        gate.set()
        assert await second == "second"

    asyncio.run(main())
    assert ran == ["first", "second"]
