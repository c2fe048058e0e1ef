"""The UID list as a journal: changes appended as batches, read back by other
processes without a whole parse, a torn batch ignored, the list written whole
again when the batches outgrow it; flushes after the lock, shared by threads."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from support.mailstore import deliver
from support.mailstore import mailboxes as user

import hatoba.store.uidlist as uidlist
from hatoba.store.uidlist import UIDLIST, WouldWait, flushes_deferred, parse_list

@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "mail"


def list_path(root: Path) -> Path:
    return user(root).root / UIDLIST


def state(box) -> list[tuple[int, frozenset[str], int]]:  # type: ignore[no-untyped-def]
    return [(r.uid, r.flags, r.modseq) for r in box.messages()]


def after_a_crash(root: Path, tail: bytes) -> list[tuple[int, frozenset[str], int]]:
    """Two messages, one flagged, then `tail` appended to the UID list as a crash might
    leave it; returns the state before the tail."""
    deliver(root, 2)
    box = user(root).open("INBOX")
    box.store_flags([1], "+", ["\\Flagged"])
    with open(list_path(root), "ab") as f:
        f.write(tail)
    return state(box)


def test_a_change_appends_one_batch_and_another_process_reads_only_that(root, monkeypatch):
    deliver(root, 3)
    here = user(root).open("INBOX")
    there = user(root).open("INBOX")
    path = list_path(root)
    inode, before = path.stat().st_ino, path.read_bytes()
    here.store_flags([2], "+", ["\\Seen"])
    after = path.read_bytes()
    assert path.stat().st_ino == inode and after.startswith(before)
    batch = after[len(before):].decode().splitlines()
    assert batch[0].startswith("2 ") and batch[0].endswith(":2,S") and batch[-1].startswith("C ")

    def no_whole_parse(data: bytes):  # type: ignore[no-untyped-def]
        raise AssertionError("the whole list was parsed again")

    monkeypatch.setattr(uidlist, "parse_list", no_whole_parse)
    here.store_flags([3], "+", ["\\Deleted"])
    here.expunge()
    here.append_many([(b"Subject: new\r\n\r\nx\r\n", (), None)])
    here.sync()
    there.sync()
    assert state(there) == state(here)
    assert [r.uid for r in there.messages()] == [1, 2, 4]


def test_a_torn_last_batch_is_ignored_and_the_next_change_writes_the_list_whole(root):
    # a crash in the middle of a batch: no "C" line
    expected = after_a_crash(root, b"2 99 1700000001.Qk0001.mx.example.test,S=19,W=22:2,T\nX 1 1")
    path = list_path(root)
    again = user(root).open("INBOX")
    assert state(again) == expected  # the half batch changed nothing
    inode = path.stat().st_ino
    again.store_flags([2], "+", ["\\Answered"])
    assert path.stat().st_ino != inode  # written whole: no batch after a torn one
    text = path.read_text()
    assert "99" not in text.split("\n", 1)[1] and "X 1 1\n" not in text
    parsed = parse_list(path.read_bytes())
    assert parsed.end == len(path.read_bytes()) and parsed.batched
    assert state(user(root).open("INBOX")) == state(again)


def test_garbage_inside_the_batches_keeps_what_came_before_it(root):
    kept = after_a_crash(root, b"\0\0\0\0\n2 40 x:2,S\nC 3 40 1 0\n")  # zeros left by a crash, then a batch
    assert state(user(root).open("INBOX")) == kept


def test_the_batches_are_written_as_one_list_once_they_outgrow_it(root, monkeypatch):
    monkeypatch.setattr(uidlist, "JOURNAL_MIN_BYTES", 400)
    deliver(root, 3)
    box = user(root).open("INBOX")
    path = list_path(root)
    inodes = set()
    for i in range(30):
        box.store_flags([1 + i % 3], "+" if i % 2 == 0 else "-", ["\\Seen"])
        inodes.add(path.stat().st_ino)
    assert len(inodes) > 1  # rewritten at least once
    assert path.stat().st_size < 400 + 2 * len(parse_list(path.read_bytes()).entries) * 80
    assert state(user(root).open("INBOX")) == state(box)


def test_a_list_from_before_batches_is_read_and_written_whole_at_its_next_change(root):
    deliver(root, 2)
    box = user(root).open("INBOX")
    path = list_path(root)
    text = path.read_text()
    entries = [line for line in text.splitlines()[1:] if line and not line.startswith("C ")]
    path.write_text(text.splitlines()[0] + "\n" + "\n".join(entries) + "\n")  # no "C" line
    old = user(root).open("INBOX", target=True)  # claims no \\Recent: writes nothing when opened
    assert state(old) == state(box)
    with flushes_deferred(at_once=True), pytest.raises(WouldWait):
        old.store_flags([1], "+", ["\\Seen"])  # a whole list to write: not at once
    assert state(user(root).open("INBOX")) == state(box)  # nothing changed
    old.store_flags([1], "+", ["\\Seen"])
    assert path.read_text().rstrip("\n").split("\n")[-1].startswith("C ")


def test_uids_are_not_given_again_after_the_highest_is_expunged(root):
    deliver(root, 1)
    box = user(root).open("INBOX")
    [uid] = box.append_many([(b"Subject: a\r\n\r\nx\r\n", ("\\Deleted",), None)])
    box.sync()
    assert box.expunge() == [uid]
    again = user(root).open("INBOX")
    [later] = again.append_many([(b"Subject: b\r\n\r\ny\r\n", (), None)])
    assert later > uid


def test_work_at_once_that_needs_a_new_keyword_changes_nothing(root):
    deliver(root, 1)
    box = user(root).open("INBOX")
    before = list_path(root).read_bytes()
    with flushes_deferred(at_once=True), pytest.raises(WouldWait):
        box.store_flags([1], "+", ["$Important"])
    assert list_path(root).read_bytes() == before
    assert box.keywords == [] and state(box)[0][1] == frozenset()
    box.store_flags([1], "+", ["$Important"])
    assert state(box)[0][1] == {"$Important"}


def test_deferred_flushes_wait_for_the_caller_and_threads_share_them(root, monkeypatch):
    deliver(root, 4)
    box = user(root).open("INBOX")
    folder = box.folder
    box.store_flags([1], "+", ["\\Seen"])
    assert not folder.needs_flush  # without flushes_deferred the lock flushes when released
    with flushes_deferred():
        box.store_flags([2], "+", ["\\Seen"])
        box.store_flags([3], "+", ["\\Seen"])
    assert folder.needs_flush
    synced: list[str] = []
    real = uidlist._fsync_path
    monkeypatch.setattr(uidlist, "_fsync_path", lambda p: (synced.append(p), real(p)))
    threads = [threading.Thread(target=folder.flush_changes) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not folder.needs_flush
    assert synced.count(str(list_path(root))) == 1  # one flush for both changes and all threads


def test_a_full_disk_on_append_leaves_no_half_batch(root, monkeypatch):
    deliver(root, 2)
    box = user(root).open("INBOX")
    path = list_path(root)
    before = path.read_bytes()

    def full(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(uidlist, "write_all", full)
    with pytest.raises(Exception) as refused:
        box.store_flags([1], "+", ["\\Seen"])
    assert type(refused.value).__name__ == "DiskFull"
    assert path.read_bytes() == before  # the half batch was cut off again
    assert state(box)[0][1] == frozenset()
    monkeypatch.undo()
    box.store_flags([1], "+", ["\\Seen"])
    assert state(user(root).open("INBOX"))[0][1] == {"\\Seen"}


def test_a_rename_flushes_what_was_written_under_the_old_path_first(root, monkeypatch):
    deliver(root, 1)
    boxes = user(root)
    boxes.create("Work")
    work = boxes.open("Work")
    work.append_many([(b"Subject: w\r\n\r\nx\r\n", (), None)])
    work.sync()
    synced: list[str] = []
    real = uidlist._fsync_path
    monkeypatch.setattr(uidlist, "_fsync_path", lambda p: (synced.append(p), real(p)))
    with flushes_deferred():  # a STORE answered once its flush is done; the flush comes later
        work.store_flags([1], "+", ["\\Seen"])
    old_list = str(work.folder.path / UIDLIST)
    boxes.rename("Work", "Done")
    assert old_list in synced  # flushed while it was still there
    assert not work.folder.needs_flush
    done = user(root).open("Done")
    assert [r.flags for r in done.messages()] == [{"\\Seen"}]


def test_a_large_list_is_not_read_whole_on_an_event_loop(root, monkeypatch):
    deliver(root, 3)
    user(root).open("INBOX")
    monkeypatch.setattr(uidlist, "QUICK_REFRESH_LIST_BYTES", 10)

    def no_whole_parse(data: bytes):  # type: ignore[no-untyped-def]
        raise AssertionError("the whole list was read on the loop")

    monkeypatch.setattr(uidlist, "parse_list", no_whole_parse)
    with flushes_deferred(at_once=True), pytest.raises(WouldWait):
        user(root).open("INBOX")  # a process that has not read it yet
    with flushes_deferred(at_once=True), pytest.raises(WouldWait):
        user(root).status("INBOX")


def test_select_at_once_claims_recent_for_its_session(root):
    user(root).open("INBOX", target=True)  # the list made (a whole write: not at once)
    deliver(root, 2)
    with flushes_deferred(at_once=True):
        box = user(root).open("INBOX")
    assert box.recent == {1, 2}
    assert box.folder.needs_flush  # the caller flushes before it answers
    box.folder.flush_changes()
    assert user(root).open("INBOX").recent == set()  # claimed on disk


def test_a_lock_won_after_another_process_renamed_the_folder_away_is_refused(root):
    import fcntl

    from hatoba.store.errors import NoSuchMailbox
    from hatoba.store.uidlist import LOCKFILE

    deliver(root, 1)
    boxes = user(root)
    boxes.create("F")
    box = boxes.open("F")
    box.append_many([(b"Subject: f\r\n\r\nx\r\n", (), None)])
    path = box.folder.path
    holder = os.open(path / LOCKFILE, os.O_RDWR)  # another process holds the lock...
    fcntl.flock(holder, fcntl.LOCK_EX)
    outcome: list[object] = []

    def store() -> None:
        try:
            box.store_flags([1], "+", ["\\Seen"])
            outcome.append("stored")
        except NoSuchMailbox:
            outcome.append("refused")

    waiting = threading.Thread(target=store)
    waiting.start()
    try:
        time.sleep(0.2)  # the thread now waits in flock
        os.rename(path, path.with_name(".G"))  # ...renames the folder and makes a new one
        user(root).create("F")
        fresh = (path / UIDLIST).read_bytes() if (path / UIDLIST).exists() else b""
    finally:
        os.close(holder)
        waiting.join(10)
    assert outcome == ["refused"]
    after = (path / UIDLIST).read_bytes() if (path / UIDLIST).exists() else b""
    assert after == fresh  # nothing of the old folder written into the new one
