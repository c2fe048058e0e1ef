"""Looks at a folder that write nothing and wait for nothing (Mailbox.sync_now), the
shared lock other processes' looks do not wait for, and message paths read
without the folder's lock."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

import pytest

from hatoba.store.folder_tree import MailboxStore
from hatoba.store.maildir import MaildirStore
from hatoba.store.uidlist import LOCKFILE, UIDLIST

USER = "bob@example.test"


def deliver(root: Path, n: int, start: int = 0) -> None:
    store = MaildirStore(root, hostname="mx.example.test")
    src = root.parent / "m.eml"
    for i in range(start, start + n):
        src.write_bytes(b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i))
        store.deliver(USER, src, unique_key=f"k{i:04d}", timestamp=1700000000 + i)


def user(root: Path):  # type: ignore[no-untyped-def]
    return MailboxStore(root, hostname="imap.example.test").for_user(USER)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "mail"


def uidlist_bytes(root: Path) -> bytes:
    return (user(root).root / UIDLIST).read_bytes()


def test_a_look_with_nothing_new_is_answered_at_once_and_writes_nothing(root):
    deliver(root, 3)
    box = user(root).open("INBOX")
    before = uidlist_bytes(root)
    result = box.sync_now()
    assert result is not None
    assert (result.added, result.expunged, result.flags_changed) == ([], [], [])
    assert uidlist_bytes(root) == before


def test_a_change_by_another_session_of_this_process_is_seen_at_once(root):
    deliver(root, 3)
    mailboxes = user(root)
    a = mailboxes.open("INBOX")
    b = mailboxes.open("INBOX")
    a.store_flags([2], "+", ["\\Flagged"])
    assert a.expunge([3]) == []  # not \Deleted: nothing removed
    result = b.sync_now()
    assert result is not None
    assert [(r.uid, r.flags) for r in result.flags_changed] == [(2, {"\\Flagged"})]
    a.store_flags([3], "+", ["\\Deleted"])
    assert a.expunge() == [3]
    result = b.sync_now()
    assert result is not None and result.expunged == [3]
    assert [r.uid for r in b.messages()] == [1, 2]


def test_what_another_process_wrote_is_read_at_once(root):
    deliver(root, 2)
    here = user(root).open("INBOX", readonly=True)  # EXAMINE: no \Recent to claim
    there = user(root).open("INBOX")  # its own store: the folder state another process would hold
    there.store_flags([1], "+", ["\\Seen", "$Label1"])  # a new keyword: the keywords file too
    there.append_many([(b"Subject: appended\r\n\r\nx\r\n", (), None)])
    result = here.sync_now()
    assert result is not None
    assert [(r.uid, r.flags) for r in result.flags_changed] == [(1, {"\\Seen", "$Label1"})]
    assert here.keywords == ["$Label1"]
    assert [r.uid for r in result.added] == [3]
    assert here.read(3) == b"Subject: appended\n\nx\n"  # stored with LF line ends


def test_new_mail_and_changes_by_other_programs_are_left_to_a_full_sync(root):
    deliver(root, 2)
    box = user(root).open("INBOX")
    deliver(root, 1, start=5)  # in new/: it gets a UID, which is a write
    before = uidlist_bytes(root)
    assert box.sync_now() is None
    assert uidlist_bytes(root) == before  # nothing written, nothing taken
    assert [r.uid for r in box.sync().added] == [3]
    # mutt renames a file to change its flags: the full sync gives it a new MODSEQ (a write)
    record = box.messages()[0]
    os.rename(record.path, record.path.with_name(record.path.name.split(":")[0] + ":2,F"))
    assert box.sync_now() is None
    result = box.sync()
    assert [(r.uid, r.flags) for r in result.flags_changed] == [(1, {"\\Flagged"})]
    assert result.flags_changed[0].modseq > record.modseq
    # a file removed by another program: an expunge, which is written
    os.unlink(box.messages()[1].path)
    assert box.sync_now() is None
    assert box.sync().expunged == [2]


def test_the_first_look_at_new_messages_claims_recent_in_a_full_sync(root):
    deliver(root, 1)
    mailboxes = user(root)
    selected = mailboxes.open("INBOX")
    other = mailboxes.open("INBOX", target=True)  # APPEND's view: claims nothing
    other.append_many([(b"Subject: a\r\n\r\nx\r\n", (), None)])
    assert selected.sync_now() is None  # \Recent is claimed by writing the list
    result = selected.sync()
    assert [r.uid for r in result.added] == [2] and 2 in selected.recent


def test_a_look_never_waits_for_a_lock_held_elsewhere(root):
    deliver(root, 2)
    box = user(root).open("INBOX")
    folder = box.folder
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with folder.lock():
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(10)
        assert box.sync_now() is None  # another thread of this process holds it
        assert box.read(1).startswith(b"Subject: 0")  # message paths need no lock
    finally:
        release.set()
        t.join()
    assert box.sync_now() is not None


def test_a_process_holding_the_lock_alone_stops_quick_looks_a_shared_holder_does_not(root):
    deliver(root, 2)
    box = user(root).open("INBOX")
    fd = os.open(user(root).root / LOCKFILE, os.O_RDWR)  # an open of its own: as another process
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert box.sync_now() is None
        fcntl.flock(fd, fcntl.LOCK_SH)
        assert box.sync_now() is not None
        # a full sync of a folder with nothing to write waits for no shared holder either
        done = threading.Event()
        t = threading.Thread(target=lambda: (box.sync(), done.set()))
        t.start()
        assert done.wait(10)
        t.join()
    finally:
        os.close(fd)


def test_a_folder_over_the_quick_size_is_left_to_a_full_sync(root, monkeypatch):
    import hatoba.store.uidlist as uidlist

    deliver(root, 3)
    box = user(root).open("INBOX")
    monkeypatch.setattr(uidlist, "QUICK_REFRESH_MESSAGES", 2)
    assert box.sync_now() is None
    monkeypatch.setattr(uidlist, "QUICK_REFRESH_MESSAGES", 3)
    assert box.sync_now() is not None
