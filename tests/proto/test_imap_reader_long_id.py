"""An ID command over the line budget is read through without being held, and handed out
as ID without fields: the server ignores a client's ID fields (RFC 2971 §3.1), and the
largest ID RFC 2971 allows (30 fields, values of 1024 octets) is over the budget before login."""

from __future__ import annotations

import pytest

from hatoba.proto.imap.reader import CommandError, CommandReader, RawCommand
from hatoba.proto.smtp.events import NEED_DATA

FIELDS = b" ".join(b'"f%02d" "%s"' % (i, b"v" * 1024) for i in range(30))
LONG_ID = b"a1 id (" + FIELDS + b")\r\n"


def drain(r):
    out = []
    while (item := r.next()) is not NEED_DATA:
        out.append(item)
    return out


@pytest.mark.parametrize("split", [None, 100, 8193, 20000])
def test_over_long_id_is_answered_as_id_once_its_line_has_ended(split):
    r = CommandReader(max_line=8192, max_literal=8192, max_command=8192)
    data = LONG_ID + b"b NOOP\r\n"
    chunks = [data] if split is None else [data[i:i + split] for i in range(0, len(data), split)]
    out, fed = [], 0
    for chunk in chunks:
        r.feed(chunk)
        fed += len(chunk)
        got = drain(r)
        if RawCommand("a1", "ID", ()) in got:
            assert fed >= len(LONG_ID)  # not before the end of its line
        out += got
    assert out == [RawCommand("a1", "ID", ()), RawCommand("b", "NOOP", ())]
    assert len(r._buf) < 8192 + 2  # never held whole


def test_other_over_long_lines_are_still_refused():
    r = CommandReader(max_line=8192, max_literal=8192, max_command=8192)
    r.feed(b"a1 LOGIN (" + FIELDS + b")\r\na2 ID" + b" x" * 5000 + b"\r\nb NOOP\r\n")
    assert drain(r) == [CommandError("a1", "Command line too long"), CommandError("a2", "Command line too long"),
                        RawCommand("b", "NOOP", ())]


def test_over_long_id_announcing_a_literal_is_refused_and_the_literal_dropped():
    r = CommandReader(max_line=8192, max_literal=8192, max_command=8192)
    r.feed(b"a1 ID (" + FIELDS + b' "x" {16+}\r\nc DELETE INBOX\r\n)\r\nb NOOP\r\n')
    assert drain(r) == [CommandError("a1", "Command line too long"), RawCommand("b", "NOOP", ())]
