"""IMAP response encoding: strings, literals, lists, flags, sequence sets, dates.

Rules:
- Every function returns bytes ready to go on the wire (no CRLF at the end:
  the caller ends the response line).
- Human-readable response text (after OK/NO/BAD/BYE) goes through
  resp_text(): it may echo what the client sent, and a CR or LF in it would
  let a client forge response lines.
- A string is sent quoted only when it is short 7-bit text without CR, LF,
  NUL, '"' problems; anything else goes as a literal, which carries any
  octet but NUL (RFC 9051 §4.3). 8-bit text is always a literal so that
  IMAP4rev1 clients, which do not accept UTF-8 in quoted strings, read it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

__all__ = [
    "astring",
    "format_flags",
    "format_internaldate",
    "format_list",
    "format_sequence_set",
    "literal",
    "nstring",
    "resp_text",
    "string",
]

# RFC 9051 §9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]')
# Response texts are cut to this many characters: an echo needs no more.
MAX_RESP_TEXT = 300
# Quoted strings longer than this go as literals: some clients cap line lengths.
_MAX_QUOTED = 512

# RFC 9051 §2.3.2: the system flags, sent before keywords.
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _is_quotable(data: bytes) -> bool:
    # RFC 9051 §9: quoted = DQUOTE *QUOTED-CHAR DQUOTE; QUOTED-CHAR is 7-bit TEXT-CHAR
    # (no CR, LF, NUL) or an escaped '"' / '\'.
    return len(data) <= _MAX_QUOTED and all(0 < b < 0x80 and b not in (0x0A, 0x0D) for b in data)


def literal(data: bytes, *, binary: bool = False) -> bytes:
    """A literal, "{n}\\r\\n" + data; "~{n}\\r\\n" (literal8, RFC 3516 §4.2) when binary."""
    return literal_prefix(len(data), binary=binary) + data


def literal_prefix(size: int, *, binary: bool = False) -> bytes:
    """What goes before a literal's `size` octets: "{n}\\r\\n", or "~{n}\\r\\n" when binary."""
    return (b"~" if binary else b"") + b"{%d}\r\n" % size


def string(value: str | bytes) -> bytes:
    """A quoted string when it can be one, else a literal (RFC 9051 §4.3)."""
    data = _as_bytes(value)
    if _is_quotable(data):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(data)


def nstring(value: str | bytes | None) -> bytes:
    """NIL for None, else string() (RFC 9051 §4.5)."""
    return b"NIL" if value is None else string(value)


def astring(value: str | bytes) -> bytes:
    """An atom when every octet is an ASTRING-CHAR, else a string (RFC 9051 §9 astring).

    "NIL" is quoted: where an nstring may also appear, a bare NIL means nothing.
    """
    data = _as_bytes(value)
    if (
        data
        and data.upper() != b"NIL"
        and all(0x20 < b < 0x7F and (b not in _ATOM_SPECIALS or b == ord("]")) for b in data)
    ):
        return data
    return string(data)


def format_list(items: Iterable[bytes]) -> bytes:
    """A parenthesized list: (a b c)."""
    return b"(" + b" ".join(items) + b")"


def format_flags(flags: Iterable[str]) -> bytes:
    """A flag list: system flags first in RFC order, then keywords sorted case-insensitively."""
    flags = set(flags)
    system = [f for f in SYSTEM_FLAGS if f in flags]
    others = sorted((f for f in flags if f not in SYSTEM_FLAGS), key=lambda f: (f.lower(), f))
    return format_list(f.encode("utf-8") for f in system + others)


def format_sequence_set(numbers: Iterable[int]) -> bytes:
    """Numbers as a compressed sequence set, ascending: 1:3,5 (empty input gives b"")."""
    ordered = sorted(set(numbers))
    parts: list[bytes] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(b"%d" % ordered[i] if i == j else b"%d:%d" % (ordered[i], ordered[j]))
        i = j + 1
    return b",".join(parts)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_internaldate(dt: datetime) -> bytes:
    """RFC 9051 §9 date-time: "17-Jul-1996 02:44:25 -0700" (day padded with a space).

    A naive datetime is taken as UTC: INTERNALDATE must carry a zone.
    """
    offset = dt.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    text = (
        f'"{dt.day:2d}-{_MONTHS[dt.month - 1]}-{dt.year:04d} '
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} {sign}{minutes // 60:02d}{minutes % 60:02d}\""
    )
    return text.encode("ascii")


def resp_text(text: str) -> bytes:
    """`text` safe for the end of a status response: control characters
    (CR and LF above all) become spaces, and a long text is cut short."""
    code, rest = _split_code(text)
    if len(rest) > MAX_RESP_TEXT:
        rest = rest[: MAX_RESP_TEXT - 3] + "..."
    text = code + rest
    cleaned = "".join(" " if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 else c for c in text)
    return cleaned.encode("utf-8", "replace")


def _split_code(text: str) -> tuple[str, str]:
    """A leading "[...]" response code and the rest. The code is the server's
    own (CAPABILITY lists run long) and clients parse it, so it is never cut."""
    if text.startswith("["):
        end = text.find("]")
        if end > 0:
            return text[: end + 1], text[end + 1 :]
    return "", text
