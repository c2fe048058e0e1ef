"""APPEND's arguments: MULTIAPPEND (RFC 3502), CATENATE parts and URLs (RFC 4469,
RFC 5092), and binary content stored base64-encoded (RFC 3516 §4.4)."""

from __future__ import annotations

import base64

import pytest

from hatoba.proto.imap.appendargs import CatenateUrl, encode_binary_parts, parse_append, parse_url
from hatoba.proto.imap.mime import parse_message
from hatoba.proto.imap.scalars import ArgError
from hatoba.proto.imap.sections import binary_data
from hatoba.proto.imap.types import ArgList, Atom, Section, String


def lit(data: bytes, *, binary: bool = False) -> String:
    return String(data, literal=True, literal8=binary)


def test_one_message_with_flags_and_date():
    [m] = parse_append([ArgList((Atom("\\Seen"),)), String(b"14-Jul-2025 02:44:25 -0700"), lit(b"A: b\r\n\r\nx")])
    assert m.flags == ("\\Seen",) and m.when is not None and m.parts == (b"A: b\r\n\r\nx",) and not m.binary


def test_several_messages_each_with_their_own_flags():
    messages = parse_append([lit(b"one"), ArgList((Atom("\\Answered"),)), lit(b"two"), lit(b"three", binary=True)])
    assert [(m.flags, m.parts, m.binary) for m in messages] == [
        ((), (b"one",), False), (("\\Answered",), (b"two",), False), ((), (b"three",), True)]


def test_catenate_parts_and_a_plain_message_after_it():
    messages = parse_append([
        Atom("CATENATE"), ArgList((Atom("URL"), String(b"/INBOX/;UID=3/;SECTION=HEADER"), Atom("TEXT"), lit(b"body"))),
        lit(b"next"),
    ])
    assert messages[0].parts == (
        CatenateUrl("/INBOX/;UID=3/;SECTION=HEADER", "INBOX", None, 3, Section((), "HEADER"), None), b"body")
    assert messages[1].parts == (b"next",)


@pytest.mark.parametrize("args", [
    [],
    [ArgList((Atom("\\Seen"),))],
    [String(b"quoted, not a literal")],
    [lit(b"x"), ArgList((Atom("\\Seen"),))],  # flags with no message after them
    [ArgList((Atom("\\Recent"),)), lit(b"x")],
    [Atom("CATENATE"), ArgList(())],
    [Atom("CATENATE"), ArgList((Atom("TEXT"),))],
    [Atom("CATENATE"), ArgList((Atom("TEXT"), String(b"quoted")))],
    [Atom("CATENATE"), ArgList((Atom("FILE"), lit(b"x")))],
])
def test_malformed_appends_are_syntax_errors(args):
    with pytest.raises(ArgError):
        parse_append(args)


def test_a_url_that_does_not_parse_is_kept_for_badurl():
    [m] = parse_append([Atom("CATENATE"), ArgList((Atom("URL"), String(b"imap://eve@elsewhere/INBOX/;UID=1")))])
    [url] = m.parts
    assert isinstance(url, CatenateUrl) and url.uid == 0 and url.text == "imap://eve@elsewhere/INBOX/;UID=1"


@pytest.mark.parametrize("text,expected", [
    ("/INBOX/;UID=7", ("INBOX", None, 7, Section(), None)),
    ("/a%20b;UIDVALIDITY=42/;uid=2/;section=1.2.mime", ("a b", 42, 2, Section((1, 2), "MIME"), None)),
    ("/x/;UID=1/;SECTION=TEXT/;PARTIAL=10.5", ("x", None, 1, Section((), "TEXT"), (10, 5))),
    ("/x/;UID=1/;PARTIAL=100000", ("x", None, 1, Section(), (100000, None))),
    ("/x/;UID=1/;SECTION=2", ("x", None, 1, Section((2,)), None)),
])
def test_urls_of_this_server(text, expected):
    url = parse_url(text)
    assert url is not None
    assert (url.mailbox, url.uidvalidity, url.uid, url.section, url.partial) == expected


@pytest.mark.parametrize("text", [
    "imap://bob@mail.example.test/INBOX/;UID=1",  # could name another user or server
    "INBOX/;UID=1", "/INBOX;UID=1", "/INBOX/;UID=0", "/INBOX/;UID=x", "/INBOX",
    "/INBOX/;UID=1/;SECTION=MIME", "/INBOX/;UID=1/;SECTION=.TEXT", "/INBOX/;UID=1/;SECTION=1.",
    "/INBOX/;UID=1/;SECTION=HEADER.FIELDS", "/INBOX/;UID=1/;PARTIAL=1.0", "/INBOX/;UID=1;URLAUTH=anonymous",
])
def test_other_urls_are_refused(text):
    assert parse_url(text) is None


BINARY_BODY = b"\x00-\xe4\n\r\n\n"  # NUL, 8-bit, a bare LF, CRLF, a bare LF


def test_a_binary_body_is_stored_base64_and_decodes_to_the_octets_sent():
    header = b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    stored = encode_binary_parts(b"Subject: x\r\n" + header + BINARY_BODY)
    assert b"\x00" not in stored and b"Content-Transfer-Encoding: base64\r\n\r\n" in stored
    assert b"binary" not in stored.lower()
    assert binary_data(stored, parse_message(stored), (1,)) == BINARY_BODY


def test_only_binary_parts_of_a_multipart_change():
    text = b"--b\r\nContent-Type: text/plain\r\n\r\nplain text\r\n"
    data = (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + text
            + b"--b\r\nContent-Transfer-Encoding: binary\r\n\r\n" + BINARY_BODY + b"\r\n"
            + b"--b\r\nContent-Type: application/x-nul\r\n\r\nno\x00encoding\r\n--b--\r\n")
    stored = encode_binary_parts(data)
    root = parse_message(stored)
    assert stored.startswith(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + text)
    assert binary_data(stored, root, (2,)) == BINARY_BODY
    assert binary_data(stored, root, (3,)) == b"no\x00encoding"
    assert stored.count(b"Content-Transfer-Encoding: base64") == 2 and b"\x00" not in stored
    assert base64.b64encode(b"no\x00encoding") in stored


def test_text_without_nul_is_left_alone():
    data = b"Subject: t\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9\r\n"
    assert encode_binary_parts(data) is data or encode_binary_parts(data) == data
