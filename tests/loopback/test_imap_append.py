"""APPEND over the wire: binary content (RFC 3516), several messages at once
(RFC 3502 MULTIAPPEND), messages built from TEXT and URL parts (RFC 4469 CATENATE)."""

from __future__ import annotations

import re
import time

import pytest

from test_imap_commands import Imap, flags_in, item, message, status_values, uid_of

BINARY_BODY = b"\x00-\xe4\n\r\n\n"  # NUL, 8-bit, a bare LF, CRLF, a bare LF: 7 octets
BINARY_MESSAGE = (b"From: user@example.test\r\nMime-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
                  b"Content-Transfer-Encoding: binary\r\n\r\n" + BINARY_BODY)


@pytest.fixture
def conn(server, hatoba_home):
    opened: list[Imap] = []

    def open_() -> Imap:
        opened.append(Imap(server, hatoba_home))
        return opened[-1]

    yield open_
    for c in opened:
        c.close()


def send_append(c, tail: list[bytes]) -> tuple[str, list[bytes]]:
    """APPEND whose arguments are `tail`: bytes pieces, a piece ending in "{n}" or "~{n}" is followed by a literal."""
    tag = c.tag()
    out = f"{tag} APPEND ".encode()
    pending = list(tail)
    while pending:
        out += pending.pop(0)
        if re.search(rb"~?\{\d+\}$", out) and pending:
            c.send(out + b"\r\n")
            first = c.line()
            if not first.startswith(b"+"):
                return first[len(tag) + 1 :].decode(), []
            out = pending.pop(0)
    c.send(out + b"\r\n")
    return c.collect(tag)


def literal(data: bytes, *, binary: bool = False) -> list[bytes]:
    return [b"%s{%d}" % (b"~" if binary else b"", len(data)), data]


def count(c, mailbox: str = "INBOX") -> int:
    return status_values(c.ok(f"STATUS {mailbox} (MESSAGES)")[0])["MESSAGES"]


def bodies(c, mailbox: str) -> list[bytes]:
    c.ok(f"SELECT {mailbox}")
    return [item(line, b"BODY[]") for line in c.ok("FETCH 1:* (BODY.PEEK[])")]


def test_capabilities_name_multiappend_and_catenate(conn):
    caps = conn().ok("CAPABILITY")[0].split()
    assert b"MULTIAPPEND" in caps and b"CATENATE" in caps


def test_binary_content_keeps_its_octets_and_body_shows_it_without_nul(conn):
    c = conn()
    status, _ = send_append(c, [b"INBOX "] + literal(BINARY_MESSAGE, binary=True))
    assert status.startswith("OK [APPENDUID"), status
    c.ok("SELECT INBOX")
    [line] = c.ok("FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])")
    assert b"BINARY.SIZE[1] 7 " in line
    assert item(line, b"BINARY[1]") == BINARY_BODY and b"BINARY[1] ~{7}" in line
    # BODY[] never carries NUL (RFC 9051 §9: a literal is CHAR8): the part is stored base64.
    [line] = c.ok("FETCH 1 (BODY.PEEK[1] BODY.PEEK[] BODYSTRUCTURE)")
    assert b"\x00" not in line
    assert item(line, b"BODY[1]").strip() == b"AC3kCg0KCg=="
    assert b'"BASE64"' in line.upper()


def test_multiappend_stores_every_message_and_answers_one_uid_set(conn):
    c = conn()
    validity = status_values(c.ok("STATUS INBOX (UIDVALIDITY)")[0])["UIDVALIDITY"]
    status, _ = send_append(c, [b"INBOX (\\Seen) "] + literal(message("one")) + [b" (\\Flagged) "]
                            + literal(message("two")) + [b" "] + literal(message("three")))
    assert status.startswith(f"OK [APPENDUID {validity} 1:3]"), status
    c.ok("SELECT INBOX")
    lines = c.ok("FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert [(flags_in(line), item(line, b"BODY[HEADER.FIELDS (SUBJECT)]")) for line in lines] == [
        ({b"\\Seen"}, b"Subject: one\r\n\r\n"), ({b"\\Flagged"}, b"Subject: two\r\n\r\n"),
        (set(), b"Subject: three\r\n\r\n")]


def test_multiappend_with_one_bad_message_stores_none(conn):
    c = conn()
    status, _ = send_append(c, [b"INBOX "] + literal(message("one")) + [b' "99-Foo-2025 02:44:25 -0700" ']
                            + literal(message("two")))
    assert status.startswith("BAD"), status
    status, _ = send_append(c, [b"INBOX "] + literal(message("one"))
                            + [b' CATENATE (URL "/INBOX/;UID=99")'])
    assert status.startswith("NO [BADURL /INBOX/;UID=99]"), status
    assert count(c) == 0


def test_catenate_builds_messages_from_text_and_parts_of_stored_ones(conn):
    c = conn()
    c.ok("CREATE Built")
    first = b"From: foo@example.test\r\n\r\nHello world body\r\n"
    second = b"From: bar@example.test\r\n\r\nLookslike: header\r\n\r\nAnother body\r\n"
    status, _ = send_append(c, [b"INBOX (\\Seen) CATENATE (TEXT "] + literal(first) + [b")"])
    validity, uid1 = uid_of(status)
    status, _ = send_append(c, [b"INBOX CATENATE (TEXT "] + literal(second[:30], binary=True) + [b" TEXT "]
                            + literal(second[30:]) + [b")"])
    _, uid2 = uid_of(status)
    assert bodies(c, "INBOX") == [first, second]
    status, _ = send_append(c, [
        f'Built CATENATE (URL "/INBOX;UIDVALIDITY={validity}/;UID={uid1}/;SECTION=HEADER" TEXT '.encode()]
        + literal(b"body1\r\n") + [f') CATENATE (URL "/INBOX/;UID={uid2}/;SECTION=TEXT")'.encode(),
                                   f' CATENATE (URL "/INBOX/;UID={uid1}" URL "/INBOX/;UID={uid2}/;SECTION=1/;PARTIAL=0.9"'
                                   f' URL "/INBOX/;UID={uid2}/;PARTIAL=100000.1")'.encode()])
    assert re.match(r"OK \[APPENDUID \d+ 1:3\]", status), status
    assert bodies(c, "Built") == [b"From: foo@example.test\r\n\r\nbody1\r\n",
                                  b"Lookslike: header\r\n\r\nAnother body\r\n",
                                  first + b"Lookslike"]


@pytest.mark.parametrize("url", [
    "/INBOX;UIDVALIDITY=12345/;UID=1/;SECTION=HEADER",  # the wrong UIDVALIDITY
    "/INBOX/;UID=2",  # no such message
    "/Nowhere/;UID=1",  # no such mailbox
    "imap://bob@mail.example.test/INBOX/;UID=1",  # not a URL relative to this session
    "/INBOX/;UID=1;URLAUTH=anonymous:internal:0123456789abcdef0123456789abcdef",
])
def test_catenate_with_a_bad_url_stores_nothing(conn, url):
    c = conn()
    status, _ = send_append(c, [b"INBOX "] + literal(message("source")))
    assert status.startswith("OK"), status
    status, _ = send_append(c, [b"INBOX CATENATE (TEXT "] + literal(b"Hdr: 1\r\n\r\n")
                            + [f' URL "{url}" TEXT '.encode()] + literal(b"more\r\n") + [b")"])
    assert status.startswith(f"NO [BADURL {url}]"), status
    assert count(c) == 1


def test_catenate_to_a_missing_mailbox_says_trycreate_even_with_a_bad_url(conn):
    c = conn()
    status, _ = send_append(c, [b'Nowhere CATENATE (URL "/INBOX;UIDVALIDITY=1/;UID=1" TEXT '] + literal(b"x\r\n")
                            + [b")"])
    assert status.startswith("NO [TRYCREATE]"), status


def test_catenate_over_the_append_limit_is_toobig(conn, monkeypatch):
    import hatoba.imap.cmd_mailbox as commands

    real = commands._assemble
    monkeypatch.setattr(commands, "_assemble", lambda boxes, messages, limit, utf8: real(boxes, messages, 1000, utf8))
    c = conn()
    status, _ = send_append(c, [b"INBOX "] + literal(b"Subject: big\r\n\r\n" + b"x" * 600 + b"\r\n"))
    assert status.startswith("OK"), status
    status, _ = send_append(c, [b'INBOX CATENATE (URL "/INBOX/;UID=1" TEXT '] + literal(b"tail\r\n") + [b")"])
    assert status.startswith("OK"), status
    status, _ = send_append(c, [b'INBOX CATENATE (URL "/INBOX/;UID=1" URL "/INBOX/;UID=1")'])
    assert status.startswith("NO [TOOBIG]"), status
    status, _ = send_append(c, [b"INBOX "] + literal(message("small")) + [b' CATENATE (URL "/INBOX/;UID=1")']
                            + [b' CATENATE (URL "/INBOX/;UID=2")'])
    assert status.startswith("NO [TOOBIG]"), status
    assert count(c) == 2


def test_a_plain_literal_or_a_url_with_nul_is_stored_without_it(conn, hatoba_home):
    c = conn()
    new = hatoba_home.maildir("bob@example.test") / "new"
    (new / f"{int(time.time())}.outside.host").write_bytes(b"Subject: nul\n\nbefore\x00after\n")
    status, _ = send_append(c, [b'INBOX CATENATE (TEXT '] + literal(b"Subject: copy\r\n\r\n")
                            + [b' URL "/INBOX/;UID=1/;SECTION=TEXT")'])
    assert status.startswith("OK"), status
    status, _ = send_append(c, [b"INBOX "] + literal(b"Subject: plain\r\n\r\nx\x00y\r\n"))
    assert status.startswith("OK"), status
    c.ok("SELECT INBOX")
    lines = c.ok("FETCH 2:3 (BODY.PEEK[] BINARY.PEEK[1])")
    assert [item(line, b"BINARY[1]") for line in lines] == [b"before\x00after\r\n", b"x\x00y\r\n"]
    assert all(b"\x00" not in item(line, b"BODY[]") for line in lines)
