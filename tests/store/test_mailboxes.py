"""IMAP mailboxes over Maildir: UIDs, UIDVALIDITY, flags, MODSEQ, folders, quota."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.disk import nowait_dir

from hatoba.store.maildir import MaildirStore
from hatoba.store.pop3_maildrop import Maildrop
from hatoba.store.errors import (
    DiskFull,
    Expunged,
    HasChildren,
    ImpossibleChange,
    InvalidFlag,
    InvalidName,
    MailboxError,
    MailboxExists,
    NoSuchMailbox,
    OverQuota,
    ReadOnly,
    TooManyKeywords,
)
from hatoba.store.folder_tree import (
    MailboxStore,
    decode_mutf7,
    encode_mutf7,
)
from hatoba.store.uidlist import MAX_KEYWORDS, UIDLIST

USER = "bob@example.test"
MSG = b"Subject: hi\r\n\r\nbody\r\n"


def deliver(root: Path, n: int, start: int = 0) -> list[Path]:
    store = MaildirStore(root, hostname="mx.example.test")
    src = root.parent / "m.eml"
    paths = []
    for i in range(start, start + n):
        src.write_bytes(b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i))
        paths.append(store.deliver(USER, src, unique_key=f"k{i:04d}", timestamp=1700000000 + i).path)
    return paths


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "mail"


def user(root: Path, **kw):  # type: ignore[no-untyped-def]
    return MailboxStore(root, hostname="imap.example.test", **kw).for_user(USER)


def test_user_root_is_the_delivery_maildir(root):
    deliver(root, 1)
    assert user(root).root == MaildirStore(root, hostname="x").maildir("Bob@example.test")


def test_new_mail_gets_uids_in_order_and_moves_to_cur_keeping_size_fields(root):
    paths = deliver(root, 3)
    box = user(root).open("INBOX")
    records = box.messages()
    assert [r.uid for r in records] == [1, 2, 3]
    assert box.uidnext == 4
    maildir = user(root).root
    assert os.listdir(maildir / "new") == []
    for record, old in zip(records, paths):
        assert record.path.parent == maildir / "cur"
        assert record.path.name == old.name + ":2,"  # S=, W= kept
        assert record.size == len(record.path.read_bytes().replace(b"\n", b"\r\n"))
        assert record.internal_date == datetime.fromtimestamp(int(record.path.stat().st_mtime), UTC)
        assert record.flags == frozenset()
    assert box.read(2) == b"Subject: 1\n\nbody 1\n"


def test_uids_and_uidvalidity_survive_a_restart_and_are_never_reused(root):
    deliver(root, 3)
    box = user(root).open("INBOX")
    validity = box.uidvalidity
    box.store_flags([2], "+", ["\\Deleted"])
    assert box.expunge() == [2]
    again = user(root).open("INBOX")  # a new MailboxStore: as after a restart
    assert again.uidvalidity == validity
    assert [r.uid for r in again.messages()] == [1, 3]
    deliver(root, 1, start=10)
    assert [r.uid for r in again.sync().added] == [4]
    third = user(root).open("INBOX")
    assert [r.uid for r in third.messages()] == [1, 3, 4]
    assert third.uidnext == 5


def test_lost_uidlist_gives_a_new_uidvalidity(root):
    deliver(root, 2)
    mailboxes = user(root)
    first = mailboxes.status("INBOX").uidvalidity
    os.unlink(mailboxes.root / UIDLIST)
    status = user(root).status("INBOX")
    assert status.uidvalidity > first
    assert status.messages == 2


def test_outside_file_in_new_is_picked_up_and_pop3_deletion_is_an_expunge(root):
    deliver(root, 2)
    box = user(root).open("INBOX")
    maildir = user(root).root
    (maildir / "new" / "1800000000.outside.tool").write_bytes(b"a\nb\r\nc\n")
    result = box.sync()
    assert [r.uid for r in result.added] == [3]
    assert result.added[0].size == len(b"a\r\nb\r\nc\r\n")
    assert (maildir / "cur" / "1800000000.outside.tool:2,").exists()
    drop = Maildrop.open(maildir)
    assert drop.delete([0]) == 1
    result = box.sync()
    assert result.expunged == [1]
    assert [r.uid for r in box.messages()] == [2, 3]


def test_two_views_see_each_others_flags_and_expunges_only_after_sync(root):
    deliver(root, 3)
    mailboxes = user(root)
    a = mailboxes.open("INBOX")
    b = mailboxes.open("INBOX")
    changed, failed = a.store_flags([1, 2], "+", ["\\Seen", "\\Deleted"])
    assert failed == []
    assert [r.uid for r in changed] == [1, 2]
    assert all(r.flags == {"\\Seen", "\\Deleted"} for r in changed)
    assert b.messages()[0].flags == frozenset()  # not until b syncs
    result = b.sync()
    assert [r.uid for r in result.flags_changed] == [1, 2]
    assert result.flags_changed[0].flags == {"\\Seen", "\\Deleted"}
    assert a.sync().flags_changed == []  # a already knows its own change
    assert b.expunge([2]) == [2]
    assert [r.uid for r in b.messages()] == [1, 3]
    assert [r.uid for r in a.messages()] == [1, 2, 3]
    assert a.sync().expunged == [2]
    # A flag change by an outside tool (mutt renames the file).
    record = a.messages()[-1]
    os.rename(record.path, record.path.with_name(record.path.name.split(":")[0] + ":2,F"))
    result = a.sync()
    assert [(r.uid, r.flags) for r in result.flags_changed] == [(3, {"\\Flagged"})]
    assert result.flags_changed[0].modseq > record.modseq


def test_views_share_one_record_per_message_until_it_changes(root):
    """Thousands of sessions may keep one folder selected for hours: they hold the same
    record objects, and a changed message gets a new record that the old views never see."""
    deliver(root, 3)
    mailboxes = user(root)
    assert user(root) is not mailboxes  # another store: its own everything
    assert mailboxes.store.for_user(USER) is mailboxes  # one per address while held
    a = mailboxes.open("INBOX")
    b = mailboxes.open("INBOX", readonly=True)
    assert all(x is y for x, y in zip(a.messages(), b.messages(), strict=True))
    before = b.messages()[0]
    a.store_flags([1], "+", ["\\Flagged"])
    assert b.messages()[0] is before and before.flags == frozenset()  # b's view is as it was
    b.sync()
    assert b.messages()[0] is a.messages()[0] is not before
    assert b.messages()[0].flags == {"\\Flagged"}


def test_a_record_guessed_while_its_file_was_away_is_not_kept_for_later_sessions(root, monkeypatch):
    """An outside tool renames a file between hatoba's listing and its look at the file:
    that session gets a guess (now, size 0), but the next SELECT gets the truth."""
    from hatoba.store.uidlist import Folder

    md = root / "example.test" / "bob" / "Maildir"
    for sub in ("tmp", "new", "cur"):
        (md / sub).mkdir(parents=True)
    name = "1700000000.M1P1.otherhost:2,"  # another MDA's name: no S= or W= to learn the size from
    body = b"Subject: hi\n\n" + b"line\n" * 100
    (md / "cur" / name).write_bytes(body)
    os.utime(md / "cur" / name, (1700000000, 1700000000))
    boxes = user(root)
    real_refresh = Folder.refresh

    def refresh_then_a_tool_renames(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        real_refresh(self, *args, **kwargs)
        monkeypatch.setattr(Folder, "refresh", real_refresh)
        os.rename(md / "cur" / name, md / "cur" / (name + "S"))

    monkeypatch.setattr(Folder, "refresh", refresh_then_a_tool_renames)
    guessed = boxes.open("INBOX").messages()[0]
    os.rename(md / "cur" / (name + "S"), md / "cur" / name)  # and puts it back
    assert guessed.size == 0  # the file was away: a guess
    later = boxes.open("INBOX").messages()[0]
    assert later is not guessed
    assert later.size == len(body) + body.count(b"\n")
    assert later.internal_date == datetime.fromtimestamp(1700000000, UTC)


def test_a_lent_view_never_changes_afterwards(root):
    """lend_view(): the dict handed out stays as it was, whatever the view does next."""
    deliver(root, 3)
    mailboxes = user(root)
    a = mailboxes.open("INBOX")
    other = mailboxes.open("INBOX")
    lent = a.lend_view()
    snapshot = dict(lent)
    assert a.view_matches(lent)
    a.store_flags([1], "+", ["\\Seen"])  # a change of a's own
    other.store_flags([2], "+", ["\\Deleted"])
    assert other.expunge([2]) == [2]
    deliver(root, 1, start=3)
    a.sync()  # another session's change, an expunge and new mail
    assert lent == snapshot and list(lent) == [1, 2, 3]
    assert not a.view_matches(lent)
    assert [r.uid for r in a.messages()] == [1, 3, 4]
    again = a.lend_view()
    a.expunge()  # nothing is \\Deleted in a's view: nothing changes
    assert a.lend_view() is again


def test_store_modes_modseq_and_unchangedsince(root):
    deliver(root, 3)
    box = user(root).open("INBOX")
    start = box.highestmodseq
    changed, _ = box.store_flags([1], "+", ["\\seen", "\\Flagged"])
    assert changed[0].flags == {"\\Seen", "\\Flagged"}
    assert changed[0].path.name.endswith(":2,FS")
    assert changed[0].modseq > start
    assert box.highestmodseq == changed[0].modseq
    changed, _ = box.store_flags([1], "-", ["\\Flagged"])
    assert changed[0].flags == {"\\Seen"}
    changed, _ = box.store_flags([1], "", ["\\Answered", "\\Draft"])
    assert changed[0].flags == {"\\Answered", "\\Draft"}
    assert changed[0].path.name.endswith(":2,DR")
    assert box.store_flags([1], "+", ["\\Answered"]) == ([], [])  # nothing to change
    mark = box.highestmodseq
    changed, failed = box.store_flags([1, 2], "+", ["\\Seen"], unchangedsince=start)
    assert failed == [1]  # changed after `start`
    assert [r.uid for r in changed] == [2]
    changed, failed = box.store_flags([1], "+", ["\\Seen"], unchangedsince=mark)
    assert failed == [] and changed[0].flags == {"\\Answered", "\\Draft", "\\Seen"}
    assert [r.uid for r in box.changed_since(mark)] == [1, 2]
    with pytest.raises(InvalidFlag):
        box.store_flags([1], "+", ["\\Bogus"])


def test_keywords_use_dovecot_letters_and_survive_a_restart(root):
    deliver(root, 2)
    mailboxes = user(root)
    box = mailboxes.open("INBOX")
    changed, _ = box.store_flags([1], "+", ["$Forwarded", "Work"])
    assert changed[0].flags == {"$Forwarded", "Work"}
    assert changed[0].path.name.endswith(":2,ab")
    keywords = (mailboxes.root / "dovecot-keywords").read_text().splitlines()
    assert keywords == ["0 $Forwarded", "1 Work"]
    changed, _ = box.store_flags([2], "+", ["work"])  # matched without regard to case
    assert changed[0].path.name.endswith(":2,b") and changed[0].flags == {"Work"}
    assert box.store_flags([1], "+", ["WORK"]) == ([], [])
    again = user(root).open("INBOX")
    assert again.messages()[0].flags == {"$Forwarded", "Work"}
    assert set(again.keywords) == {"$Forwarded", "Work"}
    changed, _ = again.store_flags([1], "-", ["work"])
    assert changed[0].flags == {"$Forwarded"}
    for i in range(MAX_KEYWORDS - 2):
        again.store_flags([2], "+", [f"k{i}"])
    with pytest.raises(TooManyKeywords):
        again.store_flags([2], "+", ["onetoomany"])


def test_append_copy_move_expunge(root):
    mailboxes = user(root)
    mailboxes.ensure_defaults()
    inbox = mailboxes.open("INBOX")
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    uid = inbox.append(MSG, ["\\Seen", "Urgent"], when)
    assert uid == 1
    assert inbox.messages() == []  # the view learns of it at the next sync
    added = inbox.sync().added
    assert [(r.uid, r.flags, r.internal_date, r.size) for r in added] == [(1, {"\\Seen", "Urgent"}, when, len(MSG))]
    assert inbox.read(1) == MSG.replace(b"\r\n", b"\n")
    inbox.append(b"Subject: two\r\n\r\nx\r\n", [], None)
    inbox.sync()

    archive = mailboxes.open("Archive")
    pairs = inbox.copy([1, 2, 99], archive)
    assert pairs == [(1, 1), (2, 2)]
    result = archive.sync()
    assert [r.flags for r in result.added] == [{"\\Seen", "Urgent"}, frozenset()]
    assert result.added[0].internal_date == when
    assert archive.read(1) == inbox.read(1)
    assert [r.uid for r in inbox.messages()] == [1, 2]  # copy leaves the source alone

    trash = mailboxes.open("Trash")
    pairs = inbox.move([2], trash)
    assert pairs == [(2, 1)]
    assert [r.uid for r in inbox.messages()] == [1]
    assert trash.sync().added[0].path.read_bytes() == b"Subject: two\n\nx\n"
    assert inbox.vanished_since(0) == [2]
    assert inbox.sync().expunged == []  # already told by move

    archive.store_flags([1, 2], "+", ["\\Deleted"])
    assert archive.expunge([2]) == [2]  # UID EXPUNGE only those named
    assert archive.expunge() == [1]
    assert archive.messages() == []
    assert user(root).status("Archive").messages == 0
    assert user(root).status("Archive").uidnext == 3


def test_status_counts_without_disturbing_a_selected_view(root):
    deliver(root, 3)
    mailboxes = user(root)
    box = mailboxes.open("INBOX")
    box.store_flags([1], "+", ["\\Seen"])
    box.store_flags([2], "+", ["\\Deleted"])
    deliver(root, 1, start=5)
    status = mailboxes.status("INBOX")
    assert (status.messages, status.unseen, status.deleted, status.uidnext) == (4, 3, 1, 5)
    assert status.recent == 1  # the first session claimed 1-3
    assert status.highestmodseq >= box.highestmodseq
    assert status.size == sum(len(p.read_bytes().replace(b"\n", b"\r\n")) for p in (mailboxes.root / "cur").iterdir())
    assert len(box.messages()) == 3
    assert box.recent == {1, 2, 3}
    assert [r.uid for r in box.sync().added] == [4]
    assert box.recent == {1, 2, 3, 4}
    other = mailboxes.open("INBOX")
    assert other.recent == set()
    deliver(root, 1, start=6)
    examined = mailboxes.open("INBOX", readonly=True)
    assert examined.recent == {5}  # shown, not claimed
    assert mailboxes.open("INBOX").recent == {5}
    with pytest.raises(ReadOnly):
        examined.store_flags([5], "+", ["\\Seen"])


def test_append_and_copy_targets_claim_no_recent(root):
    mailboxes = user(root)
    mailboxes.create("Box")
    for i in range(3):  # each APPEND opens its target anew
        mailboxes.open("Box", target=True).append(MSG)
    deliver(root, 1)
    mailboxes.open("INBOX").copy([1], mailboxes.open("Box", target=True))
    assert mailboxes.status("Box").recent == 4
    assert mailboxes.open("Box").recent == {1, 2, 3, 4}  # the first SELECT has them all
    assert mailboxes.status("Box").recent == 0


def test_vanished_since_and_changed_since(root):
    deliver(root, 4)
    box = user(root).open("INBOX")
    mark = box.highestmodseq
    box.store_flags([1, 3], "+", ["\\Deleted"])
    box.expunge()
    box.store_flags([2], "+", ["\\Seen"])
    assert box.vanished_since(mark) == [1, 3]
    assert box.vanished_since(box.highestmodseq) == []
    assert [r.uid for r in box.changed_since(mark)] == [2]
    again = user(root).open("INBOX")
    assert again.vanished_since(mark) == [1, 3]


def test_folders_special_use_subscriptions_and_utf7_names(root):
    mailboxes = user(root)
    mailboxes.ensure_defaults()
    mailboxes.ensure_defaults()  # idempotent
    infos = {i.name: i for i in mailboxes.list()}
    assert list(infos)[0] == "INBOX"
    for name in ["Drafts", "Sent", "Trash", "Junk", "Archive"]:
        use = "\\" + name
        assert infos[name].special_use == use and infos[name].subscribed and infos[name].selectable
        assert (mailboxes.root / f".{name}" / "maildirfolder").exists()
    mailboxes.create("Entwürfe")
    assert (mailboxes.root / ".Entw&APw-rfe" / "cur").is_dir()
    assert "Entwürfe" in {i.name for i in mailboxes.list()}
    mailboxes.create("Projekte.2024.Q1")
    infos = {i.name: i for i in mailboxes.list()}
    assert infos["Projekte"].has_children and infos["Projekte.2024"].selectable
    assert not infos["Projekte.2024.Q1"].has_children
    with pytest.raises(MailboxExists):
        mailboxes.create("Entwürfe")
    with pytest.raises(MailboxExists):
        mailboxes.create("inbox")
    for bad in ["", "a/b", "..", "a..b", ".a", "a\x00b", "../x", "x*"]:
        with pytest.raises(InvalidName):
            mailboxes.create(bad)
    with pytest.raises(NoSuchMailbox):
        mailboxes.open("Nope")
    mailboxes.subscribe("Entwürfe")
    mailboxes.unsubscribe("Sent")
    infos = {i.name: i for i in mailboxes.list()}
    assert infos["Entwürfe"].subscribed and not infos["Sent"].subscribed
    assert encode_mutf7("A&B 日本語") == "A&-B &ZeVnLIqe-"
    assert decode_mutf7("A&-B &ZeVnLIqe-") == "A&B 日本語"
    assert decode_mutf7(encode_mutf7("😀 x")) == "😀 x"


def test_delete_and_rename_folders(root):
    mailboxes = user(root)
    mailboxes.create("Work.Old")
    old = mailboxes.open("Work.Old")
    old.append(MSG, [], None)
    validity = old.uidvalidity
    mailboxes.subscribe("Work.Old")
    mailboxes.rename("Work", "Jobs")
    names = {i.name: i for i in mailboxes.list()}
    assert "Work" not in names and "Work.Old" not in names
    assert names["Jobs.Old"].subscribed
    moved = mailboxes.open("Jobs.Old")
    assert moved.uidvalidity == validity and [r.uid for r in moved.messages()] == [1]
    with pytest.raises(NoSuchMailbox):
        old.sync()  # the old view's folder is gone
    with pytest.raises(ImpossibleChange):
        mailboxes.rename("Jobs", "Jobs.Sub")
    with pytest.raises(ImpossibleChange):
        mailboxes.delete("INBOX")
    mailboxes.delete("Jobs")  # has a child: becomes \Noselect
    names = {i.name: i for i in mailboxes.list()}
    assert names["Jobs"].selectable is False and names["Jobs"].has_children
    with pytest.raises(HasChildren):
        mailboxes.delete("Jobs")
    mailboxes.delete("Jobs.Old")
    assert {i.name for i in mailboxes.list()} == {"INBOX"}
    mailboxes.create("Jobs.Old")  # made again: a new UIDVALIDITY
    assert mailboxes.status("Jobs.Old").uidvalidity > validity
    assert mailboxes.status("Jobs.Old").messages == 0


def test_rename_inbox_moves_its_messages(root):
    deliver(root, 2)
    mailboxes = user(root)
    inbox = mailboxes.open("INBOX")
    inbox.store_flags([2], "+", ["\\Flagged"])
    mailboxes.rename("INBOX", "Old Mail")
    assert inbox.sync().expunged == [1, 2]
    moved = mailboxes.open("Old Mail")
    assert [(r.uid, r.flags) for r in moved.messages()] == [(1, frozenset()), (2, {"\\Flagged"})]
    assert mailboxes.status("INBOX").messages == 0
    deliver(root, 1, start=9)
    assert [r.uid for r in inbox.sync().added] == [3]  # INBOX's UIDs go on


def test_quota_refuses_append_and_copy(root):
    deliver(root, 1)
    mailboxes = user(root, quota_bytes=100)
    used, limit = mailboxes.quota()
    assert limit == 100 and used == sum(p.stat().st_size for p in (mailboxes.root / "new").iterdir())
    inbox = mailboxes.open("INBOX")
    inbox.append(MSG, [], None)
    inbox.sync()
    with pytest.raises(OverQuota):
        inbox.append(b"x" * 70, [], None)  # 19 + 18 + 70 > 100
    mailboxes.create("Copies")
    copies = mailboxes.open("Copies")
    inbox.copy([1], copies)
    inbox.copy([1], copies)
    with pytest.raises(OverQuota):
        inbox.copy([1, 2], copies)
    assert os.listdir(mailboxes.root / "tmp") == []


def test_threads_share_one_folder(root):
    deliver(root, 5)
    store = MailboxStore(root, hostname="imap.example.test")
    errors: list[BaseException] = []
    appended: list[int] = []

    def session(n: int) -> None:
        try:
            box = store.for_user(USER).open("INBOX")
            for i in range(10):
                appended.append(box.append(b"Subject: %d-%d\r\n\r\n" % (n, i), [], None))
                box.store_flags([1 + (i % 5)], "+" if i % 2 else "-", ["\\Seen", f"t{n}"])
                box.sync()
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(appended) == list(range(6, 66))
    box = MailboxStore(root, hostname="x").for_user(USER).open("INBOX")
    assert [r.uid for r in box.messages()] == list(range(1, 66))
    assert len({r.modseq for r in box.messages()}) > 1


def test_concurrent_first_logins_all_get_the_default_folders(tmp_path):
    import threading

    from hatoba.store.folder_tree import MailboxStore

    store = MailboxStore(tmp_path / "mail")
    errors: list[Exception] = []

    def login() -> None:
        try:
            store.for_user("new@example.test").ensure_defaults()
        except Exception as exc:  # a refused login in the server
            errors.append(exc)

    threads = [threading.Thread(target=login) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    names = {info.name for info in store.for_user("new@example.test").list()}
    assert {"INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"} <= names


def test_folder_state_is_dropped_once_unused_and_read_back_the_same(root):
    import gc

    from hatoba.store import folder_tree

    deliver(root, 3)
    store = MailboxStore(root, hostname="imap.example.test")
    boxes = store.for_user(USER)
    box = boxes.open("INBOX")
    box.store_flags([1], "+", ["\\Flagged"])
    validity, inbox_path = box.uidvalidity, user(root).root
    for i in range(folder_tree.RECENT_FOLDERS):  # other folders push INBOX out of the recent ones
        boxes.create(f"Other{i}")
        boxes.open(f"Other{i}")
    assert store._folders.get(inbox_path) is not None  # the selected view still holds it
    del box
    gc.collect()
    assert store._folders.get(inbox_path) is None  # memory does not keep every folder ever opened
    again = boxes.open("INBOX")
    assert again.uidvalidity == validity
    assert [(r.uid, r.flags) for r in again.messages()] == [(1, frozenset({"\\Flagged"})), (2, frozenset()),
                                                          (3, frozenset())]


def _evict(path: Path) -> None:
    """Drop a file's pages from the page cache (clean pages only: fsync first)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


needs_nowait = pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="RWF_NOWAIT is Linux-only")


@needs_nowait
def test_read_now_reads_only_what_needs_no_disk_and_no_wait(tmp_path):
    # tmpfs (/tmp on Debian 13) may refuse RWF_NOWAIT and never drops pages: the mail goes
    # where a file can leave the page cache, /var/tmp when tmp_path is on a tmpfs.
    with nowait_dir(tmp_path, Path("/var/tmp"), drop_pages=True) as folder:
        _read_now_cases(folder / "mail")


def _read_now_cases(root: Path) -> None:
    deliver(root, 2)
    box = user(root).open("INBOX")
    first, second = box.messages()
    assert box.read_now(1, 1 << 20) == box.read(1)  # just written: in the page cache
    assert box.read_now(1, 5) is None  # larger than the limit: a thread reads it
    _evict(second.path)
    assert box.read_now(2, 1 << 20) is None  # would wait for the disk
    assert box.read(2) == b"Subject: 1\n\nbody 1\n"  # the blocking read still works, and caches it
    assert box.read_now(2, 1 << 20) == b"Subject: 1\n\nbody 1\n"
    box._folder._thread_lock.acquire()  # a thread inside the folder lock (maybe in an fsync)
    try:
        assert box.read_now(1, 1 << 20) == b"Subject: 0\n\nbody 0\n"  # message paths need no lock
    finally:
        box._folder._thread_lock.release()
    box.store_flags([1], "+", ["\\Deleted"])
    box.expunge()
    with pytest.raises(Expunged):
        box.read_now(1, 1 << 20)


@needs_nowait
def test_read_if_cached_on_a_missing_file_raises(tmp_path):
    from hatoba.fsutil import read_if_cached

    with pytest.raises(FileNotFoundError):
        read_if_cached(str(tmp_path / "gone"), 100)
    (tmp_path / "empty").write_bytes(b"")
    assert read_if_cached(str(tmp_path / "empty"), 100) == b""


def test_folder_times_are_trusted_after_a_tick_of_their_clock():
    from hatoba.store.uidlist import STAMP_TRUST_FINE_NS, STAMP_TRUST_NS, _settled

    fine = 1_800_000_000_123_456_789  # nanoseconds: a file system with fine times
    assert not _settled((fine, fine - 5, 0), fine + STAMP_TRUST_FINE_NS // 2, True)
    assert _settled((fine, fine - 5, 0), fine + STAMP_TRUST_FINE_NS + 1, True)
    # Fine times from a clock not seen to be ours (a network file system's server): the long wait.
    assert not _settled((fine, fine - 5, 0), fine + STAMP_TRUST_FINE_NS + 1, False)
    assert _settled((fine, fine - 5, 0), fine + STAMP_TRUST_NS + 1, False)
    whole = 1_800_000_000_000_000_000  # whole seconds (or a fine time that fell on one): the long wait
    assert not _settled((fine, whole, 0), fine + STAMP_TRUST_FINE_NS + 1, True)
    assert not _settled((whole, whole, 0), whole + STAMP_TRUST_NS - 1, True)
    assert _settled((whole, whole, 0), whole + STAMP_TRUST_NS + 1, True)


def test_a_folder_trusts_fine_times_only_once_its_own_write_got_one_from_our_clock(root):
    import time

    from hatoba.store.uidlist import CLOCK_SLACK_NS, _our_clock

    now = time.time_ns() // 1000 * 1000 + 7
    assert _our_clock(now, now - 5, now + 5)
    assert not _our_clock(now - CLOCK_SLACK_NS - 10, now - 5, now + 5)  # a clock running behind ours
    assert not _our_clock(now + CLOCK_SLACK_NS + 10, now - 5, now + 5)  # or ahead
    assert not _our_clock(now // 1_000_000_000 * 1_000_000_000, now - 5, now + 5)  # whole seconds
    deliver(root, 1)
    store = MailboxStore(root, hostname="imap.example.test")
    folder = store.for_user(USER).open("INBOX")._folder
    assert folder._fine_times  # this test's file system (ext4, tmpfs) stamps from our clock


def test_a_folder_another_process_wrote_trusts_fine_times_once_the_device_was_probed(root, monkeypatch):
    """A worker that only reads a folder's UID list never saw a write of its own get a
    fine time; the probe made at start tells it the file system gives them."""
    from hatoba.store import uidlist

    monkeypatch.setattr(uidlist, "_FINE_DEVICES", set())
    deliver(root, 1)
    MailboxStore(root, hostname="imap.example.test").for_user(USER).open("INBOX")  # the writer
    reader = MailboxStore(root, hostname="imap.example.test").for_user(USER).open("INBOX")._folder
    assert not reader._fine_times  # it read the list, wrote nothing: the two-second window
    assert uidlist.learn_file_times(root)  # ext4 and tmpfs stamp from our clock
    assert not any(name.startswith(".hatoba-clock") for name in os.listdir(root))  # the probe is gone
    reader._stamp()
    assert reader._fine_times


def test_without_rwf_nowait_every_read_goes_to_a_thread(root, monkeypatch):
    from hatoba import fsutil

    deliver(root, 2)
    box = user(root).open("INBOX")
    monkeypatch.setattr(fsutil, "_RWF_NOWAIT", None)  # as on a system or file system without it
    assert box.read_now(1, 1 << 20) is None
    assert box._folder.reads_without_waiting is False
    monkeypatch.undo()
    assert box.read_now(2, 1 << 20) is None  # not tried again for this folder
    assert box.read(2) == b"Subject: 1\n\nbody 1\n"


def test_a_change_just_after_a_scan_is_found_by_the_next(root):
    deliver(root, 1)
    box = user(root).open("INBOX")
    for i in range(20):  # each delivery lands within the same clock tick as the last scan, or close to it
        deliver(root, 1, start=100 + i)
        assert [r.uid for r in box.sync().added] == [2 + i]


def test_a_users_settings_lock_lives_only_while_used(root):
    import gc

    store = MailboxStore(root, hostname="imap.example.test")
    boxes = store.for_user(USER)
    boxes.create("Projects")  # takes the user's settings lock (subscriptions, special-use)
    held = store.meta_lock(boxes.root)
    assert store.meta_lock(boxes.root) is held  # one lock per user while anyone has it
    del held
    gc.collect()
    assert len(store._meta_locks) == 0  # not one lock per user ever seen, for the life of the process


def test_folders_no_session_holds_keep_header_caches_only_within_a_budget(root, monkeypatch):
    import gc

    from hatoba.store import folder_tree

    deliver(root, 3)
    store = MailboxStore(root, hostname="imap.example.test")
    boxes = store.for_user(USER)
    box = boxes.open("INBOX")
    assert box.headers([1, 2, 3])[2].text("subject") == ["1"]
    folder = box._folder
    boxes.create("Other")
    monkeypatch.setattr(folder_tree, "UNHELD_HEADER_CACHE_MESSAGES", 2)  # fewer than INBOX's 3
    boxes.open("Other")  # opening another folder looks at the recent ones
    assert folder._header_cache is not None  # INBOX is still selected: its cache stays
    del box
    gc.collect()
    monkeypatch.setattr(folder_tree, "UNHELD_HEADER_CACHE_MESSAGES", 3)
    boxes.open("Other")
    assert folder._header_cache is not None  # nobody holds INBOX, but its 3 fit the budget
    monkeypatch.setattr(folder_tree, "UNHELD_HEADER_CACHE_MESSAGES", 2)
    boxes.open("Other")
    assert folder._header_cache is None  # over the budget: its search forms are freed
    assert store._folders.get(folder.path) is folder  # its UID state is kept (a recent folder)
    again = boxes.open("INBOX")
    assert again.headers([1, 2, 3])[3].text("subject") == ["2"]  # read again from the cache file
    assert folder._header_cache._in_file == 3  # loaded from the file, nothing appended again


def test_append_many_gives_uids_in_order_with_each_message_its_flags(root):
    inbox = user(root).open("INBOX")
    uids = inbox.append_many([(b"Subject: 1\r\n\r\none\r\n", ["\\Seen"], None),
                              (b"Subject: 2\r\n\r\ntwo\r\n", ["Urgent"], None)])
    assert uids == [1, 2]
    added = inbox.sync().added
    assert [(r.uid, r.flags) for r in added] == [(1, {"\\Seen"}), (2, {"Urgent"})]
    assert [inbox.read(uid) for uid in uids] == [b"Subject: 1\n\none\n", b"Subject: 2\n\ntwo\n"]


def test_append_many_on_a_full_disk_stores_none_of_them(root, monkeypatch):
    import errno

    import hatoba.store.mailbox_view as mailbox_module

    mailboxes = user(root)
    inbox = mailboxes.open("INBOX")
    real = mailbox_module.write_new_file
    calls = []

    def second_fails(path, data, mode):  # type: ignore[no-untyped-def]
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data, mode)

    monkeypatch.setattr(mailbox_module, "write_new_file", second_fails)
    with pytest.raises(DiskFull):
        inbox.append_many([(MSG, [], None), (MSG, [], None), (MSG, [], None)])
    assert len(calls) == 2
    assert os.listdir(mailboxes.root / "tmp") == [] and os.listdir(mailboxes.root / "cur") == []
    assert inbox.sync().added == [] and inbox.uidnext == 1


def test_append_many_when_the_uid_list_cannot_be_written_stores_none_of_them(root, monkeypatch):
    import errno

    from hatoba.store.uidlist import Folder

    mailboxes = user(root)
    inbox = mailboxes.open("INBOX")

    def full(self):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Folder, "save", full)
    with pytest.raises(DiskFull):
        inbox.append_many([(MSG, [], None), (MSG, ["\\Seen"], None)])
    monkeypatch.undo()
    assert os.listdir(mailboxes.root / "tmp") == [] and os.listdir(mailboxes.root / "cur") == []
    assert inbox.sync().added == []


def test_a_name_in_cur_that_is_no_regular_file_is_never_read(tmp_path):
    # Whoever can write in cur/ could leave a FIFO (its open() would wait for a writer, on the
    # event loop), a directory, or a symlink to /proc (a size of 0 and endless text).
    deliver(tmp_path, 4)
    box = user(tmp_path).open("INBOX")
    paths = [Path(record.path) for record in box.messages()]
    for path in paths[1:]:
        path.unlink()
    os.mkfifo(paths[1])
    paths[2].mkdir()
    paths[3].symlink_to("/proc/version")
    outcome: list[object] = []

    def read_all() -> None:
        for uid in (2, 3):
            try:
                box.read_now(uid, 1 << 20)
                outcome.append(box.read(uid))
            except MailboxError as exc:
                outcome.append(exc)
        outcome.append(box.read(4))

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "a FIFO in cur/ held the reader"
    assert [type(o) for o in outcome[:2]] == [MailboxError, MailboxError]
    assert "not a regular file" in str(outcome[0])
    assert outcome[2] == b""  # /proc/version says it is empty: as much is read
    assert box.read(1) == b"Subject: 0\n\nbody 0\n"
