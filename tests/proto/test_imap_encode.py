"""IMAP response encoding (RFC 9051 §4, §9)."""

from datetime import datetime, timedelta, timezone

from hatoba.proto.imap.encode import (
    astring,
    format_flags,
    format_internaldate,
    format_list,
    format_sequence_set,
    literal,
    nstring,
    string,
)


def test_astring_picks_atom_quoted_or_literal():
    assert astring("INBOX") == b"INBOX"
    assert astring("a]b") == b"a]b"  # ASTRING-CHAR includes resp-specials
    assert astring("two words") == b'"two words"'
    assert astring("") == b'""'
    assert astring("NIL") == b'"NIL"'
    assert astring('say "hi"\\') == b'"say \\"hi\\"\\\\"'
    assert astring("a(b") == b'"a(b"'
    assert astring("line\r\nbreak") == b"{11}\r\nline\r\nbreak"
    assert astring("caf\u00e9") == b"{5}\r\ncaf\xc3\xa9"


def test_string_and_nstring():
    assert string(b"x y") == b'"x y"'
    assert string("*") == b'"*"'
    assert string(b"\xff") == b"{1}\r\n\xff"
    assert string("x" * 600).startswith(b"{600}\r\n")
    assert nstring(None) == b"NIL"
    assert nstring("NIL") == b'"NIL"'


def test_literals():
    assert literal(b"abc") == b"{3}\r\nabc"
    assert literal(b"\x00\x01", binary=True) == b"~{2}\r\n\x00\x01"
    assert literal(b"") == b"{0}\r\n"


def test_lists_and_flags():
    assert format_list([b"a", b"b", b"c"]) == b"(a b c)"
    assert format_list([]) == b"()"
    assert format_flags(["$Junk", "\\Seen", "\\Answered", "$Forwarded", "\\Deleted"]) == (
        b"(\\Answered \\Deleted \\Seen $Forwarded $Junk)"
    )
    assert format_flags([]) == b"()"


def test_sequence_sets_are_compressed():
    assert format_sequence_set([5, 1, 2, 3, 3]) == b"1:3,5"
    assert format_sequence_set([7]) == b"7"
    assert format_sequence_set([1, 3, 4, 10, 11, 12]) == b"1,3:4,10:12"
    assert format_sequence_set([]) == b""


def test_internaldate():
    tz = timezone(-timedelta(hours=7))
    assert format_internaldate(datetime(1996, 7, 17, 2, 44, 25, tzinfo=tz)) == b'"17-Jul-1996 02:44:25 -0700"'
    assert format_internaldate(datetime(2024, 1, 5, 23, 0, 1, tzinfo=timezone(timedelta(hours=5, minutes=30)))) == (
        b'" 5-Jan-2024 23:00:01 +0530"'
    )
    assert format_internaldate(datetime(2024, 12, 31, tzinfo=timezone.utc)) == b'"31-Dec-2024 00:00:00 +0000"'
