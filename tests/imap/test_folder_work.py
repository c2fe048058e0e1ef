"""A folder's turn: pieces run one at a time, at once on the loop when they can, else in a
pool thread; a piece that would wait (WouldWait) runs again in a thread."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from hatoba.imap.folder_work import FolderTurn
from hatoba.store.uidlist import WouldWait, at_once_work


def test_pieces_run_one_at_a_time_in_order_and_each_answer_reaches_its_caller():
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
        turn = FolderTurn()
        assert turn.idle
        tasks = [asyncio.ensure_future(turn.run(lambda n=n: piece(n), at_once=False)) for n in range(20)]
        await asyncio.sleep(0)
        assert not turn.idle
        results = await asyncio.gather(*tasks)
        assert turn.idle
        return results

    loop_thread = threading.get_ident()
    assert asyncio.run(main()) == [n * 10 for n in range(20)]
    assert order == list(range(20))
    assert most == 1
    assert loop_thread not in threads


def test_a_piece_runs_on_the_loop_unless_it_would_wait_then_again_in_a_thread():
    seen: list[tuple[str, bool, bool]] = []

    def quick() -> str:
        seen.append(("quick", threading.current_thread() is threading.main_thread(), at_once_work()))
        return "quick"

    def slow() -> str:
        on_loop = threading.current_thread() is threading.main_thread()
        seen.append(("slow", on_loop, at_once_work()))
        if at_once_work():
            raise WouldWait()
        return "slow"

    async def main() -> None:
        turn = FolderTurn()
        assert await turn.run(quick, at_once=True) == "quick"
        assert await turn.run(slow, at_once=True) == "slow"

    asyncio.run(main())
    assert seen == [("quick", True, True), ("slow", True, True), ("slow", False, False)]


def test_a_failing_piece_fails_its_caller_only_and_the_turns_go_on():
    async def main() -> None:
        turn = FolderTurn()

        def boom() -> None:
            raise ValueError("no such thing")

        first = asyncio.ensure_future(turn.run(boom, at_once=False))
        second = asyncio.ensure_future(turn.run(lambda: "fine", at_once=True))
        with pytest.raises(ValueError, match="no such thing"):
            await first
        assert await second == "fine"

    asyncio.run(main())


def test_a_caller_that_goes_away_does_not_stop_its_piece_nor_those_behind_it():
    ran: list[str] = []

    async def main() -> None:
        turn = FolderTurn()
        gate = threading.Event()
        first = asyncio.ensure_future(turn.run(lambda: (gate.wait(5), ran.append("first")), at_once=False))
        second = asyncio.ensure_future(turn.run(lambda: ran.append("second") or "second", at_once=False))
        await asyncio.sleep(0.05)
        first.cancel()  # the session that asked was closed
        gate.set()
        assert await second == "second"

    asyncio.run(main())
    assert ran == ["first", "second"]


def test_a_piece_kept_out_only_by_a_busy_lock_tries_again_on_the_loop():
    tries: list[bool] = []

    def piece() -> str:
        tries.append(threading.current_thread() is threading.main_thread())
        if len(tries) < 3:
            raise WouldWait(busy=True)  # another process holds the lock a moment longer
        return "done"

    def always_busy() -> str:
        if at_once_work():
            raise WouldWait(busy=True)
        return "in a thread"

    async def main() -> None:
        turn = FolderTurn()
        assert await turn.run(piece, at_once=True) == "done"
        assert await turn.run(always_busy, at_once=True) == "in a thread"  # gives up after a while

    asyncio.run(main())
    assert tries == [True, True, True]
