"""SEARCH keys against one message (RFC 9051 §6.4.4) and the SEARCH / ESEARCH responses.

Rules:
- Text keys are case-insensitive substring matches (Unicode casefold) on
  decoded text: RFC 2047 encoded words in header fields are decoded, text
  bodies lose their Content-Transfer-Encoding and are read in their charset
  (unknown charsets as UTF-8, bad octets replaced). Only text/* parts (also
  inside message/rfc822 parts) are body text: an attachment's base64 is not.
- SINCE / BEFORE / ON compare the internal date's day in the server's local
  zone; SENTSINCE / SENTBEFORE / SENTON the Date: field's day as written
  (RFC 9051 §6.4.4 "disregarding time and timezone"), or the internal date
  when Date: is missing or unreadable (as Dovecot does).
- `saved` (the "$" of RFC 5182 SEARCHRES) holds the UIDs of the messages the
  last SEARCH ... SAVE found: UIDs name messages across expunges, so "$" in a
  sequence-set key and in a UID key both test meta.uid against it.
"""

from __future__ import annotations

import email
from collections.abc import Callable, Sequence
from datetime import date, datetime, timezone
from email import errors, policy
from email.header import decode_header, make_header
from email.utils import parsedate_tz

from hatoba.proto.errors import LocalProtocolError
from hatoba.proto.imap.encode import format_sequence_set, string
from hatoba.proto.imap.fetch import HeaderField, header_fields, header_value, to_crlf
from hatoba.proto.imap.types import MessageMeta, SearchKey, SequenceSet

__all__ = [
    "decode_header_text",
    "esearch_response",
    "matches",
    "needs_headers_only",
    "needs_message",
    "search_response",
]

_HEADER_KEYS = frozenset({"BCC", "CC", "FROM", "HEADER", "SUBJECT", "TO", "SENTBEFORE", "SENTON", "SENTSINCE"})
_BODY_KEYS = frozenset({"BODY", "TEXT"})
_ADDRESS_HEADERS = {"BCC": "Bcc", "CC": "Cc", "FROM": "From", "TO": "To", "SUBJECT": "Subject"}


def _keys(key: SearchKey) -> list[SearchKey]:
    out = [key]
    for sub in key.keys:
        out += _keys(sub)
    return out


def needs_message(key: SearchKey) -> bool:
    """False when only flags, numbers, sizes, internal dates and mod-sequences are tested."""
    return any(k.name in _HEADER_KEYS or k.name in _BODY_KEYS for k in _keys(key))


def needs_headers_only(key: SearchKey) -> bool:
    """True when the header block is all of the message the key reads (no BODY / TEXT)."""
    return not any(k.name in _BODY_KEYS for k in _keys(key))


def decode_header_text(value: bytes) -> str:
    """A header value with RFC 2047 encoded words decoded; raw 8-bit read as UTF-8 (RFC 6532)."""
    text = value.decode("utf-8", "replace")
    if "=?" not in text:
        return text
    try:
        return str(make_header(decode_header(text)))
    except (ValueError, LookupError, UnicodeError, AssertionError, errors.MessageError):
        return text  # a malformed encoded word is matched as written


class _Context:
    """What the keys read from the message, computed once per message."""

    def __init__(self, message: bytes | None) -> None:
        self.message = to_crlf(message) if message is not None else None
        self._fields: list[HeaderField] | None = None
        self._decoded: dict[str, list[str]] | None = None
        self._body: str | None = None

    @property
    def fields(self) -> list[HeaderField]:
        if self._fields is None:
            self._fields = header_fields(self.message or b"")
        return self._fields

    def values(self, name: str) -> list[str]:
        """Every field called `name` (case-insensitive), decoded and casefolded."""
        if self._decoded is None:
            decoded: dict[str, list[str]] = {}
            for f in self.fields:
                decoded.setdefault(f.name.lower(), []).append(decode_header_text(f.value).casefold())
            self._decoded = decoded
        return self._decoded.get(name.lower(), [])

    def header_text(self) -> str:
        return "\n".join(f"{f.name}: {decode_header_text(f.value)}".casefold() for f in self.fields)

    def body(self) -> str:
        if self._body is None:
            self._body = _body_text(self.message or b"").casefold()
        return self._body


def _body_text(message: bytes) -> str:
    msg = email.message_from_bytes(message, policy=policy.compat32)
    chunks: list[str] = []
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        try:
            charset = part.get_content_charset() or "utf-8"
        except (TypeError, ValueError, IndexError):  # parameters email cannot read
            charset = "utf-8"
        try:
            chunks.append(payload.decode(charset, "replace"))
        except (LookupError, ValueError):  # unknown or malformed charset name
            chunks.append(payload.decode("utf-8", "replace"))
    return "\n".join(chunks)


def _local_day(dt: datetime | None) -> date | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone().date()


def _sent_day(ctx: _Context, meta: MessageMeta) -> date | None:
    value = header_value(ctx.fields, "Date")
    if value is not None:
        parsed = parsedate_tz(value.decode("ascii", "replace"))
        if parsed is not None:
            try:
                return date(parsed[0], parsed[1], parsed[2])
            except ValueError:
                pass
    return _local_day(meta.internal_date)


def _in_set(seqset: SequenceSet | None, number: int, largest: int, uid: int, saved: Sequence[int]) -> bool:
    if seqset is None:
        return False
    if seqset.saved:
        return uid in saved
    return seqset.contains(number, largest) if largest else False


def _compare_day(day: date | None, wanted: date | None, op: str) -> bool:
    if day is None or wanted is None:
        return False
    if op == "SINCE":
        return day >= wanted
    if op == "BEFORE":
        return day < wanted
    return day == wanted


_FLAG_KEYS: dict[str, tuple[str, bool]] = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "RECENT": ("\\Recent", True),
    "OLD": ("\\Recent", False),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}


def matches(
    key: SearchKey,
    meta: MessageMeta,
    message: bytes | None,
    *,
    largest_seq: int,
    largest_uid: int,
    saved: Sequence[int] = (),
) -> bool:
    """Whether the message satisfies `key`.

    `message` is the whole message, its header block only (enough when
    needs_headers_only(key)), or None when needs_message(key) is False.
    """
    ctx = _Context(message)
    flags = {f.lower() for f in meta.flags}

    def test(k: SearchKey) -> bool:
        name = k.name
        if name in _FLAG_KEYS:
            flag, present = _FLAG_KEYS[name]
            return (flag.lower() in flags) == present
        handler = _HANDLERS.get(name)
        if handler is None:
            raise LocalProtocolError(f"unknown search key {ascii(name[:30])}")
        return handler(k)

    def text_in(values: list[str], needle: str) -> bool:
        n = needle.casefold()
        return any(n in v for v in values)

    _HANDLERS: dict[str, Callable[[SearchKey], bool]] = {
        "ALL": lambda k: True,
        "AND": lambda k: all(test(s) for s in k.keys),
        "OR": lambda k: any(test(s) for s in k.keys),
        "NOT": lambda k: not all(test(s) for s in k.keys),
        "NEW": lambda k: "\\recent" in flags and "\\seen" not in flags,
        "KEYWORD": lambda k: k.text.lower() in flags,
        "UNKEYWORD": lambda k: k.text.lower() not in flags,
        "LARGER": lambda k: meta.size > k.number,
        "SMALLER": lambda k: meta.size < k.number,
        "MODSEQ": lambda k: meta.modseq >= k.number,
        "UID": lambda k: _in_set(k.sequence, meta.uid, largest_uid, meta.uid, saved),
        "SEQSET": lambda k: _in_set(k.sequence, meta.seq, largest_seq, meta.uid, saved),
        "SINCE": lambda k: _compare_day(_local_day(meta.internal_date), k.day, "SINCE"),
        "BEFORE": lambda k: _compare_day(_local_day(meta.internal_date), k.day, "BEFORE"),
        "ON": lambda k: _compare_day(_local_day(meta.internal_date), k.day, "ON"),
        "SENTSINCE": lambda k: _compare_day(_sent_day(ctx, meta), k.day, "SINCE"),
        "SENTBEFORE": lambda k: _compare_day(_sent_day(ctx, meta), k.day, "BEFORE"),
        "SENTON": lambda k: _compare_day(_sent_day(ctx, meta), k.day, "ON"),
        # RFC 9051 §6.4.4: HEADER with an empty string matches every message that has the field.
        "HEADER": lambda k: text_in(ctx.values(k.header), k.text),
        "BODY": lambda k: k.text.casefold() in ctx.body(),
        "TEXT": lambda k: k.text.casefold() in ctx.header_text() or k.text.casefold() in ctx.body(),
    }
    for name, field_name in _ADDRESS_HEADERS.items():
        _HANDLERS[name] = lambda k, f=field_name: text_in(ctx.values(f), k.text)

    return test(key)


def search_response(results: Sequence[int]) -> bytes:
    """ "* SEARCH 1 2 3\\r\\n" in the order given (RFC 9051 §7.3.5 in IMAP4rev1 form)."""
    return b"* SEARCH" + b"".join(b" %d" % n for n in results) + b"\r\n"


def esearch_response(tag: str, results: Sequence[int], returns: tuple[str, ...], *, uid: bool) -> bytes:
    """ "* ESEARCH (TAG "x") UID MIN 1 MAX 9 COUNT 3 ALL 1:3\\r\\n" (RFC 4731 §3.1).

    An empty `returns` means ALL (RFC 4731 §3.1). MIN, MAX and ALL are left
    out when nothing matched; COUNT is always sent when asked. SAVE is the
    session's business and produces nothing here.
    """
    wanted = {r.upper() for r in returns} or {"ALL"}
    out = b"* ESEARCH (TAG " + string(tag) + b")"
    if uid:
        out += b" UID"
    numbers = sorted(set(results))
    if numbers and "MIN" in wanted:
        out += b" MIN %d" % numbers[0]
    if numbers and "MAX" in wanted:
        out += b" MAX %d" % numbers[-1]
    if "COUNT" in wanted:
        out += b" COUNT %d" % len(numbers)
    if numbers and "ALL" in wanted:
        out += b" ALL " + format_sequence_set(numbers)
    return out + b"\r\n"
