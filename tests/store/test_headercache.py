"""The per-folder header cache (store/headercache.py) behind SEARCH, SORT and ENVELOPE."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hatoba.proto.imap.fetch import header_fields
from hatoba.store.headercache import CACHED_FIELDS, HEADER_CACHE, cached_part
from hatoba.store.maildir import MaildirStore
from hatoba.store.folder_tree import MailboxStore
from hatoba.store.uidlist import UIDLIST

USER = "bob@example.test"


def deliver(root: Path, subjects: list[str], start: int = 0) -> None:
    store = MaildirStore(root, hostname="mx.example.test")
    src = root.parent / "m.eml"
    for i, subject in enumerate(subjects, start=start):
        src.write_bytes(f"From: Ann <ann{i}@example.net>\nSubject: {subject}\nX-Other: {i}\n\nbody {i}\n".encode())
        store.deliver(USER, src, unique_key=f"k{i:04d}", timestamp=1700000000 + i)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "mail"


def user(root: Path):  # type: ignore[no-untyped-def]
    """A fresh store: what a restarted server (another process) sees."""
    return MailboxStore(root, hostname="imap.example.test").for_user(USER)


def subjects(box, uids=None) -> dict[int, bytes]:  # type: ignore[no-untyped-def]
    uids = uids if uids is not None else [r.uid for r in box.messages()]
    return {uid: header.values("Subject")[0] for uid, header in box.headers(uids).items()}


def test_cached_part_reads_back_to_the_same_fields():
    header = (b" X-Lead: odd first line\nFrom: Ann\n <ann@example.net>\nX-Skip: me\nsubject: two\r\n"
              b"  lines\nTo: bob@example.test")  # no final line end
    kept = cached_part(header)
    want = [(f.name, f.value) for f in header_fields(header) if f.name.lower() in CACHED_FIELDS]
    assert [(f.name, f.value) for f in header_fields(kept)] == want
    assert b"X-Skip" not in kept and kept.endswith(b"\n")


def test_cache_file_is_private_beside_the_uid_list_and_survives_a_restart(root):
    deliver(root, ["one", "two"])
    box = user(root).open("INBOX")
    assert subjects(box) == {1: b"one", 2: b"two"}
    folder = user(root).root
    cache = folder / HEADER_CACHE
    assert (folder / UIDLIST).exists() and cache.exists()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    # Message files never change: a restarted server answers from the cache, not the file.
    path = box.messages()[0].path
    path.write_bytes(b"Subject: rewritten\n\nx\n")
    assert subjects(user(root).open("INBOX")) == {1: b"one", 2: b"two"}
    assert sorted(os.listdir(folder / "cur")) == sorted(r.path.name for r in box.messages())  # Maildir untouched


def test_a_cache_file_made_readable_by_others_is_made_private_again(root):
    deliver(root, ["one"])
    subjects(user(root).open("INBOX"))
    cache = user(root).root / HEADER_CACHE
    os.chmod(cache, 0o644)
    deliver(root, ["two"], start=1)
    subjects(user(root).open("INBOX"))  # appends the new message
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600


def test_expunged_messages_leave_the_cache(root):
    deliver(root, ["one", "two", "three"])
    box = user(root).open("INBOX")
    subjects(box)
    box.store_flags([2], "+", ["\\Deleted"])
    assert box.expunge() == [2]
    assert subjects(box, [1, 2, 3]) == {1: b"one", 3: b"three"}
    folder = box._folder
    with folder.lock():
        assert folder.header_cache().uids() == {1, 3}


def test_outside_tools_adding_and_removing_files_are_seen(root):
    deliver(root, ["one", "two"])
    box = user(root).open("INBOX")
    subjects(box)
    deliver(root, ["three"], start=2)  # another program drops a file into new/
    os.unlink(box.messages()[0].path)  # and one removes a file
    assert subjects(box, [1, 2, 3]) == {2: b"two", 3: b"three"}
    assert subjects(user(root).open("INBOX")) == {2: b"two", 3: b"three"}


def test_flag_changes_do_not_touch_the_cache(root):
    deliver(root, ["one"])
    box = user(root).open("INBOX")
    subjects(box)
    cache = user(root).root / HEADER_CACHE
    before = cache.read_bytes()
    box.store_flags([1], "+", ["\\Flagged", "Work"])
    assert subjects(box) == {1: b"one"}
    assert cache.read_bytes() == before


def test_a_new_uidvalidity_throws_the_cache_away(root):
    deliver(root, ["one", "two"])
    subjects(user(root).open("INBOX"))
    folder = user(root).root
    first = (folder / "cur").iterdir().__next__()
    os.unlink(first)  # UID 1 or 2 is gone ...
    (folder / UIDLIST).write_text("garbage\n")  # ... and the UID list is lost: UIDs start again at 1
    box = user(root).open("INBOX")
    assert [r.uid for r in box.messages()] == [1]
    remaining = box.messages()[0].path.read_bytes().split(b"Subject: ")[1].split(b"\n")[0]
    assert subjects(box) == {1: remaining}
    assert (folder / HEADER_CACHE).read_bytes().startswith(b"HHC1 %d\n" % box.uidvalidity)


def test_a_torn_record_is_ignored_and_rebuilt(root):
    deliver(root, ["one", "two", "three"])
    subjects(user(root).open("INBOX"))
    cache = user(root).root / HEADER_CACHE
    data = cache.read_bytes()
    cache.write_bytes(data[:-5])  # a crash in the middle of the last record
    box = user(root).open("INBOX")
    assert subjects(box) == {1: b"one", 2: b"two", 3: b"three"}
    with box._folder.lock():
        assert len(box._folder.header_cache()) == 3
    assert user(root).open("INBOX").headers([3])[3].values("Subject") == [b"three"]


def test_fields_the_cache_does_not_keep_are_read_from_the_file(root):
    deliver(root, ["one", "two"])
    box = user(root).open("INBOX")
    found = box.headers([1, 2], frozenset({"x-other"}))
    assert {uid: h.values("X-Other") for uid, h in found.items()} == {1: [b"0"], 2: [b"1"]}
