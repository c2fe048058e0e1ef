"""The spool: durable commit, recovery after a crash, state and removal."""

from __future__ import annotations

import asyncio
import os
import stat

import pytest

from hatoba.queue.ids import is_queue_id, new_queue_id
from hatoba.queue.spool import MEMORY_LIMIT, Envelope, Spool
from hatoba.store.api import QueueState


def envelope(**kw) -> Envelope:
    values = dict(mail_from="a@example.net", recipients=("alice@example.test",), received_at=1700000000.5)
    values.update(kw)
    return Envelope(**values)


def commit(spool: Spool, chunks: list[bytes], env: Envelope | None = None, received: str = "Received: x\r\n") -> str:
    async def run() -> str:
        msg = spool.new_message()
        for chunk in chunks:
            await msg.write(chunk)
        return await msg.commit(env or envelope(), received)

    return asyncio.run(run())


def test_queue_ids_are_unique_sortable_and_checked():
    ids = [new_queue_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(is_queue_id(i) for i in ids)
    assert not is_queue_id("../etc/passwd")
    assert not is_queue_id("")


def test_commit_stores_body_and_envelope_privately(tmp_path):
    spool = Spool(tmp_path / "q")
    qid = commit(spool, [b"Subject: hi\r\n\r\n", b"body\r\n"])
    assert spool.list_ids() == [qid]
    assert spool.body(qid) == b"Subject: hi\r\n\r\nbody\r\n"
    env = spool.envelope(qid)
    assert env.recipients == ("alice@example.test",)
    assert env.received == "Received: x\r\n"
    assert stat.S_IMODE(os.stat(spool.message_path(qid)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "q" / "active").st_mode) == 0o700
    assert os.listdir(spool.incoming_dir) == []


def test_large_message_is_streamed_through_incoming(tmp_path):
    spool = Spool(tmp_path / "q")
    chunk = b"x" * 1000 + b"\r\n"
    chunks = [chunk] * (3 * MEMORY_LIMIT // len(chunk))
    qid = commit(spool, chunks)
    assert spool.read(qid).body_length == len(chunk) * len(chunks)
    assert spool.body(qid) == chunk * len(chunks)


def test_on_commit_is_called_after_the_files_exist(tmp_path):
    seen = []
    spool = Spool(tmp_path / "q", on_commit=lambda qid: seen.append((qid, spool.exists(qid))))
    qid = commit(spool, [b"x\r\n"])
    assert seen == [(qid, True)]


def test_abort_leaves_nothing(tmp_path):
    spool = Spool(tmp_path / "q")

    async def run():
        msg = spool.new_message()
        await msg.write(b"y" * (MEMORY_LIMIT + 10))  # spilled to incoming/
        assert os.listdir(spool.incoming_dir)
        await msg.abort()

    asyncio.run(run())
    assert os.listdir(spool.incoming_dir) == []
    assert spool.list_ids() == []


def test_concurrent_commits_share_folder_fsyncs_and_all_land(tmp_path):
    spool = Spool(tmp_path / "q")

    async def one(i: int) -> str:
        msg = spool.new_message()
        await msg.write(b"message %d\r\n" % i)
        return await msg.commit(envelope(), "")

    async def run():
        return await asyncio.gather(*(one(i) for i in range(200)))

    ids = asyncio.run(run())
    assert sorted(ids) == spool.list_ids()
    bodies = {spool.body(q) for q in ids}
    assert len(bodies) == 200


def test_recover_removes_what_was_never_acknowledged(tmp_path):
    spool = Spool(tmp_path / "q")
    kept = commit(spool, [b"kept\r\n"])
    # A crash mid-receive, and the state file of a message that is gone.
    (spool.incoming_dir / new_queue_id()).write_bytes(b"partial")
    spool.save_state(new_queue_id(), QueueState(attempts=2))
    assert spool.recover() == [kept]
    assert os.listdir(spool.incoming_dir) == []
    assert os.listdir(spool.active_dir) == [f"{kept}.msg"]
    assert spool.body(kept) == b"kept\r\n"


def test_envelope_survives_a_body_that_looks_like_a_footer(tmp_path):
    from hatoba.queue.spool import FOOTER_FORMAT

    spool = Spool(tmp_path / "q")
    tricky = b"x\r\n" + FOOTER_FORMAT % 3 + b"{}\r\n"
    qid = commit(spool, [tricky], envelope(mail_from="", recipients=("bob@example.test",)))
    assert spool.body(qid) == tricky
    assert spool.envelope(qid).recipients == ("bob@example.test",)


def test_damaged_queue_file_is_a_clear_error(tmp_path):
    from hatoba.queue.spool import SpoolError

    spool = Spool(tmp_path / "q")
    qid = commit(spool, [b"x\r\n"])
    path = spool.message_path(qid)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(SpoolError, match="damaged"):
        spool.read(qid)


def test_state_round_trip_and_remove(tmp_path):
    spool = Spool(tmp_path / "q")
    qid = commit(spool, [b"x\r\n"])
    assert spool.state(qid) == QueueState()
    spool.save_state(qid, QueueState(done=["alice@example.test"], attempts=1, next_try=5.0, held=True))
    # `held` is the operator's alone: an attempt's save keeps what is on disk.
    assert not spool.state(qid).held and spool.state(qid).done == ["alice@example.test"]
    spool.set_held(qid, True)
    spool.save_state(qid, QueueState(done=["alice@example.test"], attempts=2))
    assert spool.state(qid).held and spool.state(qid).attempts == 2
    spool.remove(qid)
    assert spool.list_ids() == [] and not spool.exists(qid)
    assert os.listdir(spool.active_dir) == []


def test_commit_failure_is_a_spool_error_and_leaves_no_entry(tmp_path):
    from hatoba.queue.spool import SpoolError

    spool = Spool(tmp_path / "q")
    # The queue folder replaced by a file: every rename into it fails (as on a broken disk).
    os.rmdir(spool.active_dir)
    spool.active_dir.write_bytes(b"")
    with pytest.raises(SpoolError):
        commit(spool, [b"x\r\n"])
    assert os.listdir(spool.incoming_dir) == []


def test_a_hold_or_a_saved_state_after_a_delete_leaves_no_state_file_behind(tmp_path):
    from hatoba.queue.spool import SpoolError

    spool = Spool(tmp_path / "q")
    qid = commit(spool, [b"Subject: hi\r\n\r\n", b"body\r\n"])
    spool.set_held(qid, True)
    spool.remove(qid)
    with pytest.raises(SpoolError, match="no message"):
        spool.set_held(qid, False)
    spool.save_state(qid, QueueState(attempts=1))  # an attempt that ran while the operator deleted it
    assert os.listdir(spool.active_dir) == []


def test_a_hold_waiting_for_a_removal_finds_the_message_gone_and_writes_no_state(tmp_path):
    """The lock is the message file's own: a hold that opened the file before a
    removal took it, and waited, must see that it is gone once it has the lock."""
    import fcntl
    import threading

    from hatoba.queue.spool import SpoolError

    spool = Spool(tmp_path / "q")
    qid = commit(spool, [b"Subject: hi\r\n\r\n", b"body\r\n"])
    other = commit(spool, [b"Subject: other\r\n\r\n", b"body\r\n"])
    fd = os.open(spool.message_path(qid), os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a removal in progress holds the lock
    outcome: list[object] = []

    def hold() -> None:
        try:
            spool.set_held(qid, True)
            outcome.append("held")
        except SpoolError as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=hold)
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and outcome == []  # waits for this message's lock ...
    spool.set_held(other, True)  # ... while another message's state changes at once
    assert spool.state(other).held
    os.unlink(spool.message_path(qid))
    os.close(fd)  # the removal is done
    waiter.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], SpoolError)
    assert not spool.state_path(qid).exists()


def test_a_second_name_of_the_message_file_does_not_make_a_removed_message_present(tmp_path):
    """`hatoba backup` hard-links queue files: after a removal the locked file still has a
    link, yet the message is gone and a waiting hold must say so (no orphan state file)."""
    import fcntl
    import threading

    from hatoba.queue.spool import SpoolError

    spool = Spool(tmp_path / "q")
    qid = commit(spool, [b"Subject: hi\r\n\r\n", b"body\r\n"])
    os.link(spool.message_path(qid), tmp_path / "backup-copy")
    fd = os.open(spool.message_path(qid), os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    outcome: list[object] = []
    waiter = threading.Thread(target=lambda: outcome.append(_try_hold(spool, qid, SpoolError)))
    waiter.start()
    waiter.join(0.3)
    os.unlink(spool.message_path(qid))
    os.close(fd)
    waiter.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], SpoolError)
    assert not spool.state_path(qid).exists()


def _try_hold(spool, qid, error):
    try:
        spool.set_held(qid, True)
        return "held"
    except error as exc:
        return exc
