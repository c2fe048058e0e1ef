"""ReadAhead: POP3 messages read before they are asked for, in a thread, within a budget."""

from __future__ import annotations

import asyncio

import pytest

from hatoba.net.pop3_readahead import ReadAhead
from hatoba.store.maildir import MaildirStore
from hatoba.store.pop3_maildrop import Maildrop


def maildrop(tmp_path, sizes: list[int]) -> Maildrop:
    store = MaildirStore(tmp_path / "mail", hostname="mail.example.test")
    src = tmp_path / "m.eml"
    for i, size in enumerate(sizes):
        head = b"Subject: %d\n\n" % i
        src.write_bytes(head + b"x" * max(0, size - len(head) - 1) + b"\n")
        store.deliver("bob@example.test", src, unique_key=f"k{i:03d}", timestamp=1700000000 + i)
    return Maildrop.open(store.maildir("bob@example.test"))


def read_all(ahead: ReadAhead, indices, *, after=None) -> list[bytes]:
    async def main() -> list[bytes]:
        out = []
        for index in indices:
            out.append(await ahead.read(index))
            if after is not None:
                after(index, ahead)
        ahead.close()
        return out
    return asyncio.run(main())


def test_messages_read_in_order_are_the_files_and_stay_within_the_budget(tmp_path):
    drop = maildrop(tmp_path, [4096] * 40)
    ahead = ReadAhead(drop, 256 * 1024, lambda i: True, budget_bytes=20_000, budget_count=8)
    peaks: list[tuple[int, int]] = []
    got = read_all(ahead, range(40), after=lambda i, a: peaks.append((a.held_bytes, len(a.held))))
    assert got == [m.path.read_bytes() for m in drop.messages]
    assert max(b for b, _ in peaks) <= 20_000 and max(n for _, n in peaks) <= 8
    assert max(n for _, n in peaks) >= 2  # it did read ahead


def test_a_message_read_ahead_and_then_removed_is_still_served(tmp_path):
    drop = maildrop(tmp_path, [1000] * 5)
    wanted = [m.path.read_bytes() for m in drop.messages]

    async def main() -> list[bytes]:
        ahead = ReadAhead(drop, 256 * 1024, lambda i: True)
        first = await ahead.read(0)  # the others come along in the same trip
        assert 1 in ahead.held
        drop.messages[1].path.unlink()  # an IMAP client expunges it meanwhile
        rest = [await ahead.read(i) for i in range(1, 5)]
        ahead.close()
        return [first, *rest]

    assert asyncio.run(main()) == wanted


def test_a_message_gone_before_it_was_read_fails_alone(tmp_path):
    drop = maildrop(tmp_path, [1000] * 4)
    wanted = [m.path.read_bytes() for m in drop.messages]
    drop.messages[2].path.unlink()

    async def main() -> None:
        ahead = ReadAhead(drop, 256 * 1024, lambda i: True)
        assert await ahead.read(0) == wanted[0]
        assert await ahead.read(1) == wanted[1]
        with pytest.raises(FileNotFoundError):
            await ahead.read(2)
        assert await ahead.read(3) == wanted[3]
        ahead.close()

    asyncio.run(main())


def test_deleted_big_and_skipped_messages_are_not_read_ahead(tmp_path):
    drop = maildrop(tmp_path, [1000, 1000, 1000, 300_000, 1000, 1000])

    async def main() -> None:
        ahead = ReadAhead(drop, 256 * 1024, lambda i: i != 1)  # 2 (index 1) is marked deleted
        await ahead.read(0)
        assert sorted(ahead.held) == [2]  # not the deleted one, and none past the big one
        await ahead.read(4)  # a jump: what was held is dropped
        assert 2 not in ahead.held
        ahead.close()
        assert ahead.held == {} and ahead.held_bytes == 0

    asyncio.run(main())


def test_top_then_retr_of_each_message_keeps_what_was_read_ahead(tmp_path):
    drop = maildrop(tmp_path, [1000] * 40)
    wanted = [m.path.read_bytes() for m in drop.messages]
    reads = []
    original = drop.read_message

    def counting(index: int) -> bytes:
        reads.append(index)
        return original(index)

    drop.read_message = counting  # type: ignore[method-assign]

    async def main() -> None:
        ahead = ReadAhead(drop, 256 * 1024, lambda i: True)
        for index in range(40):
            assert await ahead.read(index) == wanted[index]  # TOP
            assert await ahead.read(index) == wanted[index]  # RETR
        ahead.close()

    asyncio.run(main())
    assert len(reads) <= 2 * 40  # each file read at most once ahead and once for the repeat


def test_an_out_of_order_read_of_a_held_message_keeps_the_budget(tmp_path):
    drop = maildrop(tmp_path, [4096] * 60)

    async def main() -> None:
        ahead = ReadAhead(drop, 256 * 1024, lambda i: True, budget_bytes=20_000, budget_count=8)
        await ahead.read(0)
        held = sorted(ahead.held)
        assert held, "nothing was read ahead"
        await ahead.read(held[-1])  # a jump to a held message: the rest is dropped
        for index in range(held[-1] + 1, 50):
            await ahead.read(index)
            assert 0 <= ahead.held_bytes <= 20_000
        ahead.close()

    asyncio.run(main())


def test_a_batch_in_flight_counts_against_the_budget_and_is_not_read_again(tmp_path):
    drop = maildrop(tmp_path, [1000] * 20)
    size = drop.messages[0].wire_size

    def planned(budget_bytes: int, budget_count: int) -> list[int]:
        async def main() -> list[int]:
            ahead = ReadAhead(drop, 256 * 1024, lambda i: True, budget_bytes=budget_bytes,
                              budget_count=budget_count)
            ahead.pending = asyncio.get_running_loop().create_future()  # messages 1 to 3 on their way
            ahead.pending_indices = [1, 2, 3]
            try:
                return ahead._plan(1)
            finally:
                ahead.close()
        return asyncio.run(main())

    assert planned(100_000, 8) == [4, 5, 6, 7, 8]
    assert planned(size * 5, 100) == [4, 5]
