"""Looks at a folder that wait for nothing (sync() in flushes_deferred(at_once=True): appends to the UID
list, no flush, no lock held elsewhere, no message read), the shared lock other
processes' looks do not wait for, and message paths read without the folder's lock."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest
from support.mailstore import deliver
from support.mailstore import mailboxes as user

from hatoba.store.uidlist import LOCKFILE, UIDLIST, WouldWait, flushes_deferred

@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "mail"


def sync_now(box, *, any_size: bool = False):  # type: ignore[no-untyped-def]
    """What the event loop does (imap.folder_work): sync() at once, None when it would wait.
    any_size: as refresh_selected tries it, whatever the folder's size."""
    if not (box.quiet_look_at_once_allowed if any_size else box.at_once_allowed):
        return None
    try:
        with flushes_deferred(at_once=True):
            return box.sync()
    except WouldWait:
        return None


def uidlist_bytes(root: Path) -> bytes:
    return (user(root).root / UIDLIST).read_bytes()


def test_a_look_with_nothing_new_is_answered_at_once_and_writes_nothing(root):
    deliver(root, 3)
    box = user(root).open("INBOX")
    before = uidlist_bytes(root)
    result = sync_now(box)
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
    result = sync_now(b)
    assert result is not None
    assert [(r.uid, r.flags) for r in result.flags_changed] == [(2, {"\\Flagged"})]
    a.store_flags([3], "+", ["\\Deleted"])
    assert a.expunge() == [3]
    result = sync_now(b)
    assert result is not None and result.expunged == [3]
    assert [r.uid for r in b.messages()] == [1, 2]


def test_what_another_process_wrote_is_read_at_once(root):
    deliver(root, 2)
    here = user(root).open("INBOX", readonly=True)  # EXAMINE: no \Recent to claim
    there = user(root).open("INBOX")  # its own store: the folder state another process would hold
    there.store_flags([1], "+", ["\\Seen", "$Label1"])  # a new keyword: the keywords file too
    there.append_many([(b"Subject: appended\r\n\r\nx\r\n", (), None)])
    result = sync_now(here)
    assert result is not None
    assert [(r.uid, r.flags) for r in result.flags_changed] == [(1, {"\\Seen", "$Label1"})]
    assert here.keywords == ["$Label1"]
    assert [r.uid for r in result.added] == [3]
    assert here.read(3) == b"Subject: appended\n\nx\n"  # stored with LF line ends


def test_new_mail_and_changes_by_other_programs_are_taken_at_once_and_left_to_the_caller_to_flush(root):
    deliver(root, 2)
    box = user(root).open("INBOX")
    folder = box.folder
    deliver(root, 1, start=5)  # in new/: it gets a UID, appended to the list
    before = uidlist_bytes(root)
    result = sync_now(box)
    assert result is not None and [r.uid for r in result.added] == [3]
    after = uidlist_bytes(root)
    assert after.startswith(before) and after.endswith(b"\n")  # a batch appended, nothing rewritten
    assert folder.needs_flush  # the new UID is written, not yet on stable storage
    folder.flush_changes()
    assert not folder.needs_flush
    # mutt renames a file to change its flags: a new MODSEQ
    record = box.messages()[0]
    os.rename(record.path, record.path.with_name(record.path.name.split(":")[0] + ":2,F"))
    result = sync_now(box)
    assert result is not None
    assert [(r.uid, r.flags) for r in result.flags_changed] == [(1, {"\\Flagged"})]
    assert result.flags_changed[0].modseq > record.modseq
    # a file removed by another program: an expunge
    os.unlink(box.messages()[1].path)
    result = sync_now(box)
    assert result is not None and result.expunged == [2]
    # another store (process) reads the same state from the list
    again = user(root).open("INBOX", readonly=True)
    assert [(r.uid, r.flags) for r in again.messages()] == [(1, {"\\Flagged"}), (3, set())]


def test_the_first_look_at_new_messages_claims_recent_at_once(root):
    deliver(root, 1)
    mailboxes = user(root)
    selected = mailboxes.open("INBOX")
    other = mailboxes.open("INBOX", target=True)  # APPEND's view: claims nothing
    other.append_many([(b"Subject: a\r\n\r\nx\r\n", (), None)])
    result = sync_now(selected)
    assert result is not None
    assert [r.uid for r in result.added] == [2] and 2 in selected.recent
    # claimed on disk: a session of another process does not see it \Recent
    elsewhere = user(root).open("INBOX")
    assert 2 not in elsewhere.recent


def test_a_message_whose_size_its_name_does_not_tell_is_left_to_a_thread(root):
    deliver(root, 1)
    box = user(root).open("INBOX")
    (box.folder.path / "cur" / "1700000099.M1P1.other:2,S").write_bytes(b"Subject: x\n\nbody\n")
    assert sync_now(box) is None  # its size is read off the file: not on the loop
    assert [r.uid for r in box.messages()] == [1]  # the view is as it was
    result = box.sync()
    assert [(r.uid, r.size) for r in result.added] == [(2, 20)]


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
        assert sync_now(box) is None  # another thread of this process holds it
        assert box.read(1).startswith(b"Subject: 0")  # message paths need no lock
    finally:
        release.set()
        t.join()
    assert sync_now(box) is not None


def test_a_process_holding_the_lock_alone_stops_quick_looks_a_shared_holder_does_not(root):
    deliver(root, 2)
    box = user(root).open("INBOX")
    fd = os.open(user(root).root / LOCKFILE, os.O_RDWR)  # an open of its own: as another process
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert sync_now(box) is None
        fcntl.flock(fd, fcntl.LOCK_SH)
        assert sync_now(box) is not None
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
    assert sync_now(box) is None
    monkeypatch.setattr(uidlist, "QUICK_REFRESH_MESSAGES", 3)
    assert sync_now(box) is not None


def age_folder_times(root: Path) -> None:
    """cur/ and new/ last changed seconds ago: old enough for a scan to trust them."""
    maildir = user(root).root
    then = time.time_ns() - 5_000_000_000
    for sub in ("cur", "new"):
        os.utime(maildir / sub, ns=(then, then))


def test_a_large_folder_is_looked_at_at_once_only_while_nothing_changed(root, monkeypatch):
    import hatoba.store.uidlist as uidlist

    monkeypatch.setattr(uidlist, "QUICK_REFRESH_MESSAGES", 2)
    deliver(root, 3)
    mailboxes = user(root)
    box = mailboxes.open("INBOX")
    assert not box.at_once_allowed  # other work on it (STORE, EXPUNGE) stays in a thread
    age_folder_times(root)
    assert box.sync().added == []  # a full look (in a thread, in the server) trusts the folder times
    result = sync_now(box, any_size=True)
    assert result is not None and (result.added, result.expunged, result.flags_changed) == ([], [], [])

    deliver(root, 1, start=3)  # new mail: listing 3,000 names is not for the event loop
    assert sync_now(box, any_size=True) is None
    assert [r.uid for r in box.messages()] == [1, 2, 3]  # nothing changed by the try
    assert [r.uid for r in box.sync().added] == [4]

    age_folder_times(root)
    assert box.sync().added == []
    other = mailboxes.open("INBOX")
    other.store_flags([2], "+", ["\\Flagged"])  # a walk over every message to find what changed
    assert sync_now(box, any_size=True) is None
    assert [(r.uid, r.flags) for r in box.sync().flags_changed] == [(2, {"\\Flagged"})]


def test_what_another_process_wrote_to_a_large_folder_is_not_read_on_the_loop(root, monkeypatch):
    import hatoba.store.uidlist as uidlist

    monkeypatch.setattr(uidlist, "QUICK_REFRESH_MESSAGES", 2)
    deliver(root, 3)
    box = user(root).open("INBOX")
    age_folder_times(root)
    assert box.sync().added == []
    there = user(root).open("INBOX")  # its own store: another process's
    there.store_flags([1, 2, 3], "+", ["\\Seen"])  # appended to the UID list: a read as long as the change
    generation = box.folder.generation
    assert sync_now(box, any_size=True) is None
    assert box.folder.generation == generation  # the list was not read on the loop
    assert sorted(r.uid for r in box.sync().flags_changed) == [1, 2, 3]
