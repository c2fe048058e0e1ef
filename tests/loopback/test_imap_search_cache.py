"""SEARCH, SORT and ENVELOPE over the header cache stay right while the Maildir changes under them."""

from __future__ import annotations

import imaplib
import os
import stat
import time

import pytest

BOB = ("bob@example.test", "bob-password-1")


def message(n: int, sender: str, subject: str) -> bytes:
    return (f"From: {sender}\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
            f"Date: Mon, 02 Mar 2026 10:00:0{n % 10} +0000\r\nMessage-ID: <{n}@x.example>\r\n\r\nbody {n}\r\n").encode()


def login(server, home) -> imaplib.IMAP4_SSL:
    m = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=home.client_context(), timeout=10)
    m.login(*BOB)
    return m


def search(m: imaplib.IMAP4_SSL, *criteria: str) -> list[int]:
    typ, data = m.uid("SEARCH", None, *criteria)
    assert typ == "OK", data
    return [int(x) for x in data[0].split()]


def drop_file(home, name: str, data: bytes) -> None:
    """What a delivery program other than hatoba does: tmp/, then new/."""
    maildir = home.maildir(BOB[0])
    (maildir / "tmp" / name).write_bytes(data)
    os.rename(maildir / "tmp" / name, maildir / "new" / name)


@pytest.fixture
def box(server, hatoba_home):
    m = login(server, hatoba_home)
    for n, (sender, subject) in enumerate([("ann@example.net", "zebra"), ("cy@example.net", "apple"),
                                           ("ann@example.net", "mango")], start=1):
        assert m.append("INBOX", None, None, message(n, sender, subject))[0] == "OK"
    m.select("INBOX")
    yield m
    m.logout()


def test_header_search_uses_a_private_cache_and_leaves_the_maildir_alone(box, hatoba_home):
    assert search(box, "FROM", "ann@") == [1, 3]
    maildir = hatoba_home.maildir(BOB[0])
    cache = maildir / "hatoba-headers"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert len(os.listdir(maildir / "cur")) == 3
    assert search(box, "SUBJECT", "MANGO") == [3]  # again, now from the cache


def test_search_after_expunge(box):
    assert search(box, "FROM", "ann@") == [1, 3]
    box.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
    box.expunge()
    assert search(box, "FROM", "ann@") == [3]
    assert search(box, "NOT", "FROM", "ann@") == [2]


def test_search_sees_files_other_programs_drop_and_remove(box, hatoba_home):
    assert search(box, "FROM", "dee@") == []
    drop_file(hatoba_home, "1700000000.M1P1.outside", message(4, "dee@example.net", "kiwi").replace(b"\r\n", b"\n"))
    box.noop()
    assert search(box, "FROM", "dee@") == [4]
    cur = hatoba_home.maildir(BOB[0]) / "cur"
    victim = next(name for name in os.listdir(cur) if "outside" not in name and
                  b"cy@example.net" in (cur / name).read_bytes())
    os.unlink(cur / victim)
    box.noop()
    assert search(box, "FROM", "cy@") == []
    assert search(box, "ALL") == [1, 3, 4]


def test_flag_changes_are_seen_by_search(box, server, hatoba_home):
    assert search(box, "FLAGGED") == []
    box.uid("STORE", "2", "+FLAGS", "(\\Flagged)")
    assert search(box, "FLAGGED") == [2]
    assert search(box, "FLAGGED", "FROM", "cy@") == [2]
    other = login(server, hatoba_home)  # another session marks one read
    other.select("INBOX")
    other.uid("STORE", "3", "+FLAGS", "(\\Seen)")
    other.logout()
    box.noop()
    assert search(box, "UNSEEN") == [1, 2]
    cur = hatoba_home.maildir(BOB[0]) / "cur"  # an outside tool flags message 1 by renaming its file
    name = next(n for n in os.listdir(cur) if b"zebra" in (cur / n).read_bytes())
    os.rename(cur / name, cur / (name.split(":")[0] + ":2,F"))
    time.sleep(0.01)
    box.noop()
    assert search(box, "FLAGGED") == [1, 2]
    assert search(box, "KEYWORD", "$Nothing") == []


def test_sort_and_envelope_agree_with_the_messages(box):
    typ, data = box.uid("SORT", "(SUBJECT)", "UTF-8", "ALL")
    assert typ == "OK" and data[0].split() == [b"2", b"3", b"1"]
    typ, data = box.uid("SORT", "(REVERSE FROM)", "UTF-8", "ALL")
    assert data[0].split() == [b"2", b"1", b"3"]
    typ, data = box.uid("FETCH", "1:3", "(ENVELOPE)")
    envelopes = b"\n".join(part if isinstance(part, bytes) else part[0] for part in data)
    assert envelopes.count(b'"Mon, 02 Mar 2026 10:00:0') == 3
    assert b'"zebra" (("NIL" NIL "ann" "example.net"))' not in envelopes  # no display name: NIL unquoted
    assert b'"zebra" ((NIL NIL "ann" "example.net"))' in envelopes
    assert b'"<2@x.example>"' in envelopes
