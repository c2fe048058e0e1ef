"""Spool.census: the queue's size and the oldest arrival, from file names alone."""

from __future__ import annotations

import asyncio
import time

from hatoba.queue.ids import arrival_time, new_queue_id
from hatoba.queue.spool import Envelope, Spool


def test_an_empty_queue(tmp_path):
    assert Spool(tmp_path / "queue").census() == (0, None)


def test_count_and_oldest_arrival(tmp_path):
    spool = Spool(tmp_path / "queue")
    started = time.time()

    async def queue_two() -> list[str]:
        ids = []
        for n in range(2):
            msg = spool.new_message()
            await msg.write(b"Subject: t\r\n\r\nhello\r\n")
            env = Envelope(mail_from="a@example.net", recipients=("b@example.test",), received_at=time.time())
            ids.append(await msg.commit(env, "Received: by x\r\n"))
        return ids

    ids = asyncio.run(queue_two())
    (spool.active_dir / "notes.txt").write_text("an operator's file")  # not a message
    count, oldest = spool.census()
    assert count == 2
    assert oldest == arrival_time(min(ids))
    assert started - 1 <= oldest <= time.time()


def test_arrival_time_is_in_the_id():
    before = time.time()
    qid = new_queue_id()
    assert before - 0.001 <= arrival_time(qid) <= time.time() + 0.001
