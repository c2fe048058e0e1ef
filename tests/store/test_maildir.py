"""Maildir delivery: tmp -> new, LF endings, exactly-once with a unique key."""

from __future__ import annotations

import os
import stat

import pytest

from hatoba.store.maildir import CHUNK, MaildirName, MaildirStore


@pytest.fixture
def store(tmp_path):
    return MaildirStore(tmp_path / "mail", hostname="mail.example.test")


def source(tmp_path, data: bytes):
    path = tmp_path / "src.eml"
    path.write_bytes(data)
    return path


def test_delivery_lands_in_new_with_lf_endings(store, tmp_path):
    result = store.deliver("Alice@example.test", source(tmp_path, b"Subject: a\r\n\r\nhi\r\n"), prefix=b"X-A: 1\r\n")
    md = tmp_path / "mail" / "example.test" / "alice" / "Maildir"
    assert result.path.parent == md / "new"
    assert result.path.read_bytes() == b"X-A: 1\nSubject: a\n\nhi\n"
    assert os.listdir(md / "tmp") == [] and os.listdir(md / "cur") == []
    assert stat.S_IMODE(os.stat(md).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(result.path).st_mode) == 0o600
    # Maildir name: time.unique.host,S=size,W=size-with-CRLF; no ':' or '/'
    parts = result.path.name.split(".", 2)
    assert parts[0].isdigit() and parts[2].startswith("mail.example.test,")
    name = MaildirName.parse(result.path.name)
    assert name.size == len(b"X-A: 1\nSubject: a\n\nhi\n") == result.path.stat().st_size
    assert name.wire_size == len(b"X-A: 1\r\nSubject: a\r\n\r\nhi\r\n")


def test_crlf_split_across_chunks_becomes_one_lf(store, tmp_path):
    body = b"a" * (CHUNK - 1) + b"\r\n" + b"end\r\n"
    result = store.deliver("bob@example.test", source(tmp_path, body))
    assert result.path.read_bytes() == b"a" * (CHUNK - 1) + b"\nend\n"


def test_bare_cr_is_kept(store, tmp_path):
    result = store.deliver("bob@example.test", source(tmp_path, b"x\ry\r\n"))
    assert result.path.read_bytes() == b"x\ry\n"


def test_unique_key_gives_exactly_once(store, tmp_path):
    src = source(tmp_path, b"m\r\n")
    first = store.deliver("bob@example.test", src, unique_key="abc", timestamp=1700000000)
    second = store.deliver("bob@example.test", src, unique_key="abc", timestamp=1700000000)
    assert second.duplicate and second.path == first.path
    assert len(os.listdir(first.path.parent)) == 1


def test_thorough_check_finds_a_message_a_reader_moved_to_cur(store, tmp_path):
    src = source(tmp_path, b"m\r\n")
    first = store.deliver("bob@example.test", src, unique_key="k1", timestamp=1700000000)
    cur = first.path.parent.parent / "cur" / (first.path.name + ":2,S")
    os.rename(first.path, cur)
    again = store.deliver("bob@example.test", src, unique_key="k2", timestamp=1700000000)
    assert not again.duplicate
    os.unlink(again.path)
    moved = store.deliver("bob@example.test", src, unique_key="k1", timestamp=1700000000, thorough=True)
    assert moved.duplicate and moved.path == cur


def test_without_key_every_delivery_is_new(store, tmp_path):
    src = source(tmp_path, b"m\r\n")
    paths = {store.deliver("bob@example.test", src).path for _ in range(5)}
    assert len(paths) == 5


@pytest.mark.parametrize("bad", ["../x@example.test", "a/b@example.test", "noat", "x@.."])
def test_mailbox_names_cannot_escape_the_store(store, tmp_path, bad):
    with pytest.raises(ValueError):
        store.deliver(bad, source(tmp_path, b"m\r\n"))


def test_length_stops_at_the_end_of_the_message(store, tmp_path):
    src = source(tmp_path, b"a\r\nb\r\n" + b"ENVELOPE AFTER")
    result = store.deliver("bob@example.test", src, length=6)
    assert result.path.read_bytes() == b"a\nb\n"


@pytest.mark.parametrize(
    "name,expected",
    [
        ("1700000000.Qabc.host,S=10,W=12:2,RS", ("1700000000.Qabc.host", 10, 12, "RS")),
        ("1700000000.M1P2.host", ("1700000000.M1P2.host", None, None, "")),
        ("1700000000.x.host:2,", ("1700000000.x.host", None, None, "")),
        ("odd,S=x,W=5", ("odd", None, 5, "")),
    ],
)
def test_maildir_names_parse(name, expected):
    parsed = MaildirName.parse(name)
    assert (parsed.base, parsed.size, parsed.wire_size, parsed.flags) == expected
