"""A message's header block: its fields in order, folded values unfolded
(RFC 5322 §2.2, §2.2.3), and where the block ends.

FETCH, SEARCH, SORT and the store's header cache all read fields through
this one module.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple


class HeaderField(NamedTuple):
    name: str  # as written
    raw: bytes  # the whole field with its continuation lines and final CRLF
    value: bytes  # unfolded (RFC 5322 §2.2.3) and stripped


_UNFOLD = re.compile(rb"\r?\n(?=[ \t])")


def header_fields(header: bytes) -> list[HeaderField]:
    """The fields of a header block (CRLF or LF), in order; lines without a colon are skipped."""
    grouped: list[list[bytes]] = []  # each field's lines: the first, then its continuation lines
    for line in header.splitlines(keepends=True):
        if line == b"\r\n" or line == b"\n":
            break
        if line[0] in (0x20, 0x09) and grouped:
            grouped[-1].append(line)
        else:
            grouped.append([line])
    fields: list[HeaderField] = []
    for lines in grouped:
        raw = lines[0] if len(lines) == 1 else b"".join(lines)
        name, sep, rest = raw.partition(b":")
        name = name.strip()
        if sep and name and b" " not in name:
            # A one-line field has nothing to unfold (RFC 5322 §2.2.3).
            value = (rest if len(lines) == 1 else _UNFOLD.sub(b"", rest)).strip()
            fields.append(HeaderField(name.decode("ascii", "replace"), raw, value))
    return fields


def header_value(fields: Sequence[HeaderField], name: str) -> bytes | None:
    """The first field called `name` (case-insensitive), unfolded; None when absent."""
    lname = name.lower()
    for f in fields:
        if f.name.lower() == lname:
            return f.value
    return None


def header_end(data: bytes, start: int, end: int) -> int:
    """Where the body starts: after the first empty line (no header at all if the entity starts with one)."""
    if data.startswith(b"\r\n", start) and start + 2 <= end:
        return start + 2
    i = data.find(b"\r\n\r\n", start, end)
    return end if i < 0 else i + 4


def decode_text(value: bytes) -> str:
    """Header bytes as text; bytes that are not UTF-8 survive the round trip (surrogateescape)."""
    return value.decode("utf-8", "surrogateescape")


def encode_text(value: str) -> bytes:
    """Text back to the bytes decode_text read it from."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that did not come from our own decoding
        return value.encode("utf-8", "replace")
