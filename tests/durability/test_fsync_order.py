"""Every durability rule in order: data fsync, rename into place, folder fsync, then "done".

A kill -9 test cannot see a missing fsync (the page cache outlives the
process), so these tests record the calls themselves (support/fsyncorder.py)
and fail when a file's fsync, its rename, or its folder's fsync is missing or
comes after the caller is told the operation is done.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time

import pytest
from argon2 import PasswordHasher

from hatoba.fsutil import write_atomic
from hatoba.queue.manager import QueueManager
from hatoba.queue.spool import FOOTER_SIZE, MEMORY_LIMIT, Envelope, Spool
from hatoba.store.api import QueueState
from hatoba.store.directory import Directory
from hatoba.store.maildir import MaildirStore
from hatoba.store.folder_tree import META, MailboxStore
from hatoba.store.uidlist import KEYWORDS, UIDLIST
from support.fsyncorder import FsOrder, record

USER = "bob@example.test"


@pytest.fixture
def fs(monkeypatch) -> FsOrder:
    return record(monkeypatch)


def envelope() -> Envelope:
    return Envelope(mail_from="a@example.net", recipients=("alice@example.test",), received_at=1700000000.5)


# -- the spool: nothing is acknowledged before it is on disk ---------------------------------


async def receive(spool: Spool, fs: FsOrder, chunks: list[bytes]) -> tuple[str, int]:
    """One SMTP commit; returns the queue id and the record's "returned" mark."""
    msg = spool.new_message()
    for chunk in chunks:
        await msg.write(chunk)
    qid = await msg.commit(envelope(), "Received: x\r\n")
    return qid, fs.mark(f"returned {qid}")


def assert_queued_durably(spool: Spool, fs: FsOrder, qid: str, done: int, body: bytes) -> None:
    # The one file a crash must keep: body, envelope and footer (spool.py's layout).
    final = spool.message_path(qid)
    moved = fs.put_durably(spool.incoming_dir / qid, final, done)
    assert fs.calls[moved].size == final.stat().st_size > len(body) + FOOTER_SIZE
    assert spool.read(qid).envelope.recipients == ("alice@example.test",)  # the envelope is in that file
    assert spool.body(qid) == body
    assert sorted(os.listdir(spool.active_dir)) == [f"{qid}.msg"]  # nothing else needed for delivery


@pytest.mark.parametrize("size", [100, 3 * MEMORY_LIMIT], ids=["in-memory", "streamed"])
def test_smtp_commit_syncs_the_message_renames_it_and_syncs_active_before_it_returns(tmp_path, fs, size):
    spool = Spool(tmp_path / "q")
    chunks = [b"x" * 998 + b"\r\n"] * (size // 1000) or [b"x\r\n"]
    fs.clear()
    qid, done = asyncio.run(receive(spool, fs, chunks))
    assert_queued_durably(spool, fs, qid, done, b"".join(chunks))


def test_group_commit_waits_for_a_folder_fsync_that_started_after_its_rename(tmp_path, fs):
    """A commit renamed while another's fsync of active/ runs is not covered by that fsync."""
    spool = Spool(tmp_path / "q")
    active = os.path.realpath(spool.active_dir)
    held: list[int] = []

    def hold_the_first(started: int) -> None:
        """The first fsync of active/ waits until the three later commits renamed (at most 2 s)."""
        if held:
            return
        held.append(started)
        deadline = time.monotonic() + 2
        while sum(c.op == "rename" for c in fs.calls[started:]) < 3 and time.monotonic() < deadline:
            time.sleep(0.002)

    fs.before_folder_sync = hold_the_first

    async def run() -> list[tuple[str, int]]:
        first = asyncio.create_task(receive(spool, fs, [b"first\r\n"]))
        while not any(c.op == "sync-start" and c.path == active for c in fs.calls) and not first.done():
            await asyncio.sleep(0.005)
        # The first commit's fsync of active/ is running now: these renames come after its start.
        later = [asyncio.create_task(receive(spool, fs, [b"later %d\r\n" % i])) for i in range(3)]
        return [await first] + [await task for task in later]

    fs.clear()
    results = asyncio.run(run())
    for (qid, done), body in zip(results, [b"first\r\n", b"later 0\r\n", b"later 1\r\n", b"later 2\r\n"]):
        final = spool.message_path(qid)
        moved = fs.put_durably(spool.incoming_dir / qid, final, done)
        assert fs.calls[moved].size == final.stat().st_size
        assert spool.body(qid) == body
    # The test means something only if a later commit renamed while the first fsync ran.
    first = next(c.serial for c in fs.calls if c.op == "sync-start" and c.path == active)
    start, end = (i for i, c in enumerate(fs.calls) if c.serial == first)
    assert any(c.op == "rename" for c in fs.calls[start:end]), f"no commit overlapped the first fsync:\n{fs.dump()}"


def test_inject_syncs_the_message_renames_it_and_syncs_active_before_it_returns(tmp_path, fs):
    spool = Spool(tmp_path / "q")
    body = b"Subject: bounce\r\n\r\nundeliverable\r\n"
    fs.clear()
    qid = spool.inject(envelope(), body)
    done = fs.mark("returned")
    assert_queued_durably(spool, fs, qid, done, body)


def test_delivery_state_is_replaced_whole(tmp_path, fs):
    """The state file may be lost in a crash (a retry), never read half-written."""
    spool = Spool(tmp_path / "q")
    qid = spool.inject(envelope(), b"x\r\n")
    fs.clear()
    spool.save_state(qid, QueueState())
    done = fs.mark("returned")
    path = spool.state_path(qid)
    moved = fs.index("replace", fs.temp_of(path), path)
    assert moved < done
    fs.file_synced_before(fs.calls[moved].path, moved, path.stat().st_size)


# -- Maildir delivery ------------------------------------------------------------------------


def test_maildir_delivery_syncs_in_tmp_renames_into_new_and_syncs_new_before_it_returns(tmp_path, fs):
    store = MaildirStore(tmp_path / "mail", hostname="mx.example.test")
    src = tmp_path / "m.eml"
    src.write_bytes(b"Subject: hi\r\n\r\n" + b"line\r\n" * 1000)
    fs.clear()
    delivered = store.deliver(USER, src, prefix=b"Delivered-To: bob@example.test\r\n", unique_key="Q1")
    done = fs.mark("returned")
    final = delivered.path
    assert final.parent.name == "new"
    tmp = final.parent.parent / "tmp" / final.name.split(",S=")[0]
    moved = fs.put_durably(tmp, final, done)
    assert fs.calls[moved].size == final.stat().st_size


def test_queue_entry_goes_only_after_the_delivery_and_the_bounce_are_durable(tmp_path, fs):
    """The queue forgets a message only once every copy and every bounce made of it is on disk."""
    directory = Directory(tmp_path / "dir.sqlite3", hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    directory.add_domain("example.test")
    directory.add_user(USER, "password-123456")
    store = MaildirStore(tmp_path / "mail", hostname="mx.example.test")
    spool = Spool(tmp_path / "q")

    async def main() -> str:
        manager = QueueManager(spool, directory, store)
        spool.on_commit = manager.notify
        await manager.start()
        msg = spool.new_message()
        await msg.write(b"Subject: t\r\n\r\nhello\r\n")
        env = Envelope(mail_from="sender@example.net", recipients=(USER, "nobody@example.test"),
                       received_at=1700000000.0)
        qid = await msg.commit(env, "Received: x\r\n")
        await manager.wait_idle()
        await manager.stop()
        return qid

    qid = asyncio.run(main())
    forgotten = fs.index("unlink", spool.message_path(qid))
    [copy] = (store.maildir(USER) / "new").iterdir()
    delivered = fs.index("rename", copy.parent.parent / "tmp" / copy.name.split(",S=")[0], copy)
    fs.put_durably(fs.calls[delivered].path, copy, forgotten)
    [bounce] = spool.list_ids()
    assert spool.envelope(bounce).recipients == ("sender@example.net",)
    fs.put_durably(spool.incoming_dir / bounce, spool.message_path(bounce), forgotten)


# -- the UID list and the files it speaks for ---------------------------------------------------


@pytest.mark.parametrize("sync_dir", [True, False])
def test_write_atomic_syncs_the_data_replaces_then_syncs_the_folder(tmp_path, fs, sync_dir):
    path = tmp_path / "state"
    path.write_bytes(b"old")
    data = b"new content " * 100
    fs.clear()
    write_atomic(path, data, sync_dir=sync_dir)
    done = fs.mark("returned")
    assert path.read_bytes() == data
    if sync_dir:
        fs.put_durably(fs.temp_of(path), path, done, op="replace")
    else:  # the name may be lost in a crash, never the content under it
        moved = fs.index("replace", fs.temp_of(path), path)
        assert moved < done
        fs.file_synced_before(fs.temp_of(path), moved, len(data))


def mailbox_user(root):  # type: ignore[no-untyped-def]
    return MailboxStore(root, hostname="imap.example.test").for_user(USER)


def deliver(root, key: str):  # type: ignore[no-untyped-def]
    src = root.parent / "m.eml"
    src.write_bytes(b"Subject: %s\r\n\r\nbody\r\n" % key.encode())
    return MaildirStore(root, hostname="mx.example.test").deliver(USER, src, unique_key=key).path


def assert_uidlist_written(fs: FsOrder, folder, after: int, done: int) -> int:  # type: ignore[no-untyped-def]
    """The folder's UID list was made durable after call `after`, before `done`: written whole
    (data fsync, replace, folder fsync), or a batch appended and the file fsynced whole.
    Returns the index of the replace or of that fsync."""
    path = folder / UIDLIST
    moves = [i for i, c in enumerate(fs.calls)
             if c.op == "replace" and c.target == os.path.realpath(path) and after < i]
    if moves:
        moved = moves[0]
        assert moved < done, f"the UID list was written after the operation returned:\n{fs.dump()}"
        fs.file_synced_before(fs.temp_of(path, after=after), moved, fs.calls[moved].size)
        fs.folder_synced_between(folder, moved, done)
        return moved
    size = path.stat().st_size
    syncs = [i for i, c in enumerate(fs.calls)
             if after < i < done and c.op == "sync" and not c.folder and c.path == os.path.realpath(path)]
    assert syncs, f"the UID list was not flushed after call {after} and before call {done}:\n{fs.dump()}"
    assert fs.calls[syncs[-1]].size == size, f"the UID list was flushed before its last batch:\n{fs.dump()}"
    return syncs[-1]


def test_a_new_folder_uidvalidity_is_durable_before_its_uid_list_uses_it(tmp_path, fs):
    """Else after a crash the counter hands out the same UIDVALIDITY again (RFC 3501 §2.3.1.1)."""
    root = tmp_path / "mail"
    deliver(root, "k1")
    user = mailbox_user(root)
    fs.clear()
    box = user.open("INBOX")  # the first open gives INBOX its UIDVALIDITY
    user.create("Archive")
    done = fs.mark("returned")
    meta = [c for c in fs.calls if c.op == "replace" and c.target == os.path.realpath(user.root / META)]
    assert len(meta) == 2, fs.dump()
    for change, folder in zip(meta, [user.root, user.root / ".Archive"]):
        meta_moved = fs.calls.index(change)
        listed = assert_uidlist_written(fs, folder, meta_moved, done)
        fs.put_durably(change.path, change.target, listed, op="replace", after=meta_moved - 1)
    assert f" {box.uidvalidity} " in (user.root / UIDLIST).read_text().split("\n")[0] + " "


def test_new_messages_get_uids_that_are_on_disk_before_anyone_sees_them(tmp_path, fs):
    root = tmp_path / "mail"
    user = mailbox_user(root)
    box = user.open("INBOX")
    delivered = deliver(root, "k1")
    fs.clear()
    added = box.sync().added
    done = fs.mark("returned")
    assert [r.uid for r in added] == [1]
    maildir = user.root
    moved = fs.index("rename", delivered, maildir / "cur" / (delivered.name + ":2,"))
    fs.folder_synced_between(maildir / "cur", moved, done)
    assert_uidlist_written(fs, maildir, moved, done)
    assert f"1 {added[0].modseq} {delivered.name}:2," in (maildir / UIDLIST).read_text()


def test_expunge_makes_the_unlink_and_the_uid_list_durable_before_it_returns(tmp_path, fs):
    """Both flushed after the lock and before the reply, the folder first. (A crash before
    the reply may bring the file back under a new UID: an expunge not yet acknowledged.)"""
    root = tmp_path / "mail"
    deliver(root, "k1")
    user = mailbox_user(root)
    box = user.open("INBOX")
    box.store_flags([1], "+", ["\\Deleted"])
    name = box.messages()[0].path
    fs.clear()
    assert box.expunge() == [1]
    done = fs.mark("returned")
    gone = fs.index("unlink", name)
    listed = assert_uidlist_written(fs, user.root, gone, done)
    fs.folder_synced_between(name.parent, gone, listed)
    assert "\nX 1 " in (user.root / UIDLIST).read_text()


def test_store_writes_keywords_before_renaming_the_file_and_flushes_the_uid_list_before_it_returns(tmp_path, fs):
    """A new keyword's letter is on disk before a file name uses it; the UID list (written
    before the rename, so a failed write leaves the file as it was) is flushed before the reply."""
    root = tmp_path / "mail"
    deliver(root, "k1")
    user = mailbox_user(root)
    box = user.open("INBOX")
    old = box.messages()[0].path
    fs.clear()
    changed, _ = box.store_flags([1], "+", ["\\Seen", "Urgent"])
    done = fs.mark("returned")
    new = changed[0].path
    assert new.name == old.name + "Sa"
    renamed = fs.index("rename", old, new)
    assert renamed < done
    fs.put_durably(fs.temp_of(user.root / KEYWORDS), user.root / KEYWORDS, renamed, op="replace")
    assert_uidlist_written(fs, user.root, renamed, done)
    assert f"1 {changed[0].modseq} {new.name}\n" in (user.root / UIDLIST).read_text()


def test_append_syncs_the_file_renames_it_into_cur_and_writes_its_uid_before_it_returns(tmp_path, fs):
    """A new keyword's letter is durable before the file that uses it is renamed into cur/."""
    root = tmp_path / "mail"
    user = mailbox_user(root)
    box = user.open("INBOX")
    fs.clear()
    uid = box.append(b"Subject: appended\r\n\r\nbody\r\n", ["\\Seen", "Urgent"])
    done = fs.mark("returned")
    assert uid == 1
    [final] = (user.root / "cur").iterdir()
    assert final.name.endswith(":2,Sa")
    tmp = user.root / "tmp" / final.name.split(":")[0]
    moved = fs.put_durably(tmp, final, done)
    fs.put_durably(fs.temp_of(user.root / KEYWORDS), user.root / KEYWORDS, moved, op="replace")
    assert_uidlist_written(fs, user.root, moved, done)


# -- the directory database ------------------------------------------------------------------


def test_directory_commits_are_durable_on_every_connection(tmp_path):
    """Every acknowledged change must survive a power cut: WAL with synchronous=FULL (NORMAL
    in WAL mode may lose the last commits), on each thread's connection."""
    path = tmp_path / "directory.sqlite"
    directory = Directory(path)
    directory.add_domain("example.test")
    seen: dict[str, tuple[str, int, str]] = {}

    def look(name: str) -> None:
        conn = directory._conn()
        seen[name] = (conn.execute("PRAGMA journal_mode").fetchone()[0],
                      conn.execute("PRAGMA synchronous").fetchone()[0],
                      conn.execute("PRAGMA database_list").fetchone()[2])

    look("main")
    worker = threading.Thread(target=look, args=("worker",))
    worker.start()
    worker.join()
    for name, (journal, synchronous, file) in seen.items():
        assert journal == "wal", name
        assert synchronous == 2, f"{name}: synchronous={synchronous}, not FULL (2)"
        assert os.path.realpath(file) == os.path.realpath(path)
    # WAL is a property of the file itself: any other opener (the CLI) finds it.
    other = sqlite3.connect(path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


def test_multiappend_syncs_every_file_into_cur_and_writes_their_uids_before_it_returns(tmp_path, fs):
    root = tmp_path / "mail"
    user = mailbox_user(root)
    box = user.open("INBOX")
    fs.clear()
    uids = box.append_many([(b"Subject: one\r\n\r\nbody\r\n", ["\\Seen"], None),
                            (b"Subject: two\r\n\r\nbody\r\n", [], None)])
    done = fs.mark("returned")
    assert uids == [1, 2]
    finals = sorted((user.root / "cur").iterdir())
    assert len(finals) == 2
    moved = [fs.put_durably(user.root / "tmp" / final.name.split(":")[0], final, done) for final in finals]
    assert_uidlist_written(fs, user.root, max(moved), done)
