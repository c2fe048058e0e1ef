"""The POP3 view of a Maildir: listing from names, stable uids, deletion."""

from __future__ import annotations

import os
import time

from hatoba.store.maildir import MaildirStore
from hatoba.store.pop3_maildrop import Maildrop


def fill(tmp_path, n: int) -> tuple[MaildirStore, list]:
    store = MaildirStore(tmp_path / "mail", hostname="mail.example.test")
    src = tmp_path / "m.eml"
    results = []
    for i in range(n):
        src.write_bytes(b"Subject: %d\r\n\r\nbody\r\n" % i)
        results.append(store.deliver("bob@example.test", src, unique_key=f"k{i:03d}", timestamp=1700000000 + i))
    return store, results


def test_listing_order_sizes_and_uids(tmp_path):
    store, results = fill(tmp_path, 3)
    drop = Maildrop.open(store.maildir("bob@example.test"))
    assert [m.path for m in drop.messages] == [r.path for r in results]
    for m in drop.messages:
        data = m.path.read_bytes()
        assert m.wire_size == len(data.replace(b"\n", b"\r\n"))
        assert m.uid == m.path.name.split(",")[0]


def test_uids_survive_a_move_to_cur_and_outside_files_are_sized(tmp_path):
    store, results = fill(tmp_path, 2)
    maildir = store.maildir("bob@example.test")
    before = [m.uid for m in Maildrop.open(maildir).messages]
    moved = maildir / "cur" / (results[0].path.name + ":2,S")
    os.rename(results[0].path, moved)
    (maildir / "new" / "1800000000.outside.tool").write_bytes(b"a\nb\r\nc\n")
    drop = Maildrop.open(maildir)
    assert [m.uid for m in drop.messages][:2] == before
    outside = drop.messages[2]
    assert outside.uid == "1800000000.outside.tool" and outside.wire_size == len(b"a\r\nb\r\nc\r\n")


def test_long_names_get_a_hashed_uid(tmp_path):
    store, _ = fill(tmp_path, 0)
    maildir = store.maildir("bob@example.test")
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    (maildir / "new" / ("1700000000." + "x" * 100)).write_bytes(b"m\n")
    [m] = Maildrop.open(maildir).messages
    assert len(m.uid) == 40 and all(c in "0123456789abcdef" for c in m.uid)


def test_delete_removes_files_even_after_a_rename(tmp_path):
    store, results = fill(tmp_path, 3)
    maildir = store.maildir("bob@example.test")
    drop = Maildrop.open(maildir)
    os.rename(results[1].path, maildir / "cur" / (results[1].path.name + ":2,S"))  # another client moved it
    results[2].path.unlink()  # and removed another
    assert drop.delete([0, 1, 2]) == 2
    assert Maildrop.open(maildir).messages == []


def test_empty_or_missing_maildir_opens_empty(tmp_path):
    assert Maildrop.open(tmp_path / "nothing" / "Maildir").messages == []


def test_ten_thousand_messages_open_quickly(tmp_path):
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for i in range(10_000):
        (maildir / "cur" / f"{1700000000 + i}.Q{i:06d}.host,S=4000,W=4100:2,S").write_bytes(b"")
    started = time.perf_counter()
    drop = Maildrop.open(maildir)
    elapsed = time.perf_counter() - started
    assert len(drop.messages) == 10_000 and drop.messages[0].wire_size == 4100
    assert elapsed < 1.0, elapsed
