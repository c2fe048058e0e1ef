"""FETCH responses (RFC 9051 §6.4.5, §7.5.2; RFC 3516 BINARY): each asked item
answered from the store's facts and one message's bytes.

ENVELOPE is built in envelope.py, BODY/BODYSTRUCTURE in bodystructure.py on
the MIME tree of mime.py, section contents in sections.py; the header
reader is headers.py. Their public names are importable from here too.

Rules:
- The message may arrive with LF or CRLF line ends (the store keeps LF); it is
  turned into CRLF form first, the form the client sees, and every size,
  offset and line count counts that form (RFC 9051 §2.3.4: RFC822.SIZE
  and BODY[] agree). A bare LF becomes CRLF; a bare CR is left alone: the same
  rule the store uses for its W= size, so RFC822.SIZE == len(BODY[]).
- The MIME tree is parsed only when an item needs it.
- Only an item or section that is not known, or BINARY of an unknown
  Content-Transfer-Encoding, raises FetchError.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from operator import itemgetter
from typing import Protocol

from hatoba.proto.errors import LocalProtocolError
from hatoba.proto.imap.bodystructure import bodystructure
from hatoba.proto.imap.encode import astring, format_flags, format_internaldate, literal
from hatoba.proto.imap.envelope import Address, envelope, parse_address_list
from hatoba.proto.imap.headers import HeaderField, header_end, header_fields, header_value
from hatoba.proto.imap.mime import DEFAULT_LIMITS, MAX_DEPTH, MimeLimits, Part, parse_message
from hatoba.proto.imap.sections import (
    TOP_TEXTS,
    FetchError,
    binary_data,
    decode_transfer,
    header_block,
    section_data,
    top_section,
)
from hatoba.proto.imap.types import FetchItem, MessageMeta, Section

__all__ = [
    "MAX_DEPTH",
    "META_ITEMS",
    "MimeLimits",
    "Address",
    "FetchError",
    "FetchResult",
    "HeaderField",
    "MetaRecord",
    "Part",
    "binary_data",
    "bodystructure",
    "decode_transfer",
    "envelope",
    "fetch",
    "header_fields",
    "header_value",
    "meta_lines",
    "needs_message",
    "parse_address_list",
    "parse_message",
    "section_data",
    "slices_only",
    "to_crlf",
]

# Items answered from MessageMeta alone.
META_ITEMS = frozenset({"FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "MODSEQ"})
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_header_block = header_block  # also importable under its earlier private name


@dataclass
class FetchResult:
    data: bytes  # the parenthesized list, e.g. b"(UID 5 FLAGS (\\Seen) BODY[] {12}\r\n...)"
    sets_seen: bool  # a non-PEEK BODY[...]/BINARY[...]/RFC822/RFC822.TEXT was fetched


def needs_message(items: Sequence[FetchItem]) -> bool:
    """True when some item needs the message bytes (not only FLAGS, UID, INTERNALDATE, RFC822.SIZE, MODSEQ)."""
    return any(item.name not in META_ITEMS for item in items)


def slices_only(items: Sequence[FetchItem]) -> bool:
    """True when every item is metadata or a slice of the message (BODY[], BODY[HEADER],
    BODY[TEXT], RFC822*, BINARY[], partials of those): no MIME tree or header field is
    parsed, so the work stays in proportion to the bytes sent."""
    for item in items:
        name = item.name.upper()
        if name in META_ITEMS or name in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"):
            continue
        section = item.section
        if name == "BODY" and section is not None and not section.part and section.text in ("", "HEADER", "TEXT"):
            continue
        if name == "BINARY" and (section is None or (not section.part and not section.text)):
            continue
        return False
    return True


def to_crlf(message: bytes) -> bytes:
    """Every bare LF turned into CRLF (the wire form; the store's W= size counts the same)."""
    if b"\r" not in message:  # the store's usual LF-only form: one pass in C
        return message.replace(b"\n", b"\r\n")
    # CRLF -> LF, then every LF -> CRLF: a CRLF stays, a bare LF gains its CR, a bare CR stays.
    return message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


# -- FETCH of store facts only (FLAGS, UID, ...): many messages at a time ----------------


class MetaRecord(Protocol):
    """The store facts meta_lines reads from each message (the store's record has them)."""

    @property
    def uid(self) -> int: ...
    @property
    def flags(self) -> frozenset[str]: ...
    @property
    def internal_date(self) -> datetime | None: ...
    @property
    def size(self) -> int: ...
    @property
    def modseq(self) -> int: ...


# item -> (its format, where its value is in the tuple meta_lines makes per message)
_META_FORMAT = {
    "FLAGS": (b"FLAGS %s", 1),
    "UID": (b"UID %d", 2),
    "INTERNALDATE": (b"INTERNALDATE %s", 3),
    "RFC822.SIZE": (b"RFC822.SIZE %d", 4),
    "MODSEQ": (b"MODSEQ (%d)", 5),
}
_RECENT = frozenset({"\\Recent"})


def meta_lines(items: Sequence[FetchItem], messages: Iterable[tuple[int, MetaRecord]],
               recent: Container[int] = ()) -> list[bytes]:
    """The "* n FETCH (...)" lines for (sequence number, record) pairs; items must all be META_ITEMS.

    The same bytes fetch() gives, made with one format per line: a FETCH 1:*
    (FLAGS) of a large mailbox is the common client resync. `recent` holds
    the UIDs that carry \\Recent in this session.
    """
    names = [item.name.upper() for item in items]
    template = b"* %d FETCH (" + b" ".join(_META_FORMAT[name][0] for name in names) + b")\r\n"
    pick = itemgetter(0, *(_META_FORMAT[name][1] for name in names))  # the format's arguments, in C
    want_date = "INTERNALDATE" in names
    flag_text: dict[frozenset[str], bytes] = {}  # few distinct flag sets: each formatted once
    out = []
    for seq, record in messages:
        flags = record.flags
        uid = record.uid
        if uid in recent:
            flags = flags | _RECENT
        text = flag_text.get(flags)
        if text is None:
            text = flag_text[flags] = format_flags(flags)
        date = format_internaldate(record.internal_date or _EPOCH) if want_date else b""
        out.append(template % pick((seq, text, uid, date, record.size, record.modseq)))
    return out


def _section_name(section: Section, *, binary: bool = False) -> bytes:
    spec = ".".join(str(n) for n in section.part)
    if section.text and not binary:
        spec = f"{spec}.{section.text}" if spec else section.text
    out = spec.encode("ascii")
    if section.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT") and not binary:
        out += b" (" + b" ".join(astring(f) for f in section.fields) + b")"
    return b"[" + out + b"]"


def _partial(content: bytes, partial: tuple[int, int] | None) -> tuple[bytes, bytes]:
    """(content cut to <offset.count>, the "<offset>" suffix of the response name)."""
    if partial is None:
        return content, b""
    offset, count = partial
    return content[offset : offset + count], b"<%d>" % offset


def _body_value(content: bytes, *, binary: bool = False) -> bytes:
    if not content:
        return b'""'
    return literal(content, binary=binary and b"\x00" in content)


# -- FETCH ------------------------------------------------------------------------------------


class _Message:
    """The message in CRLF form with its MIME tree, parsed only when an item needs it."""

    def __init__(self, raw: bytes, limits: MimeLimits) -> None:
        self.data = to_crlf(raw)
        self.limits = limits
        self._root: Part | None = None

    @property
    def root(self) -> Part:
        if self._root is None:
            self._root = parse_message(self.data, self.limits)
        return self._root

    def header(self) -> bytes:
        return self.data[: header_end(self.data, 0, len(self.data))]


def _item(item: FetchItem, meta: MessageMeta, msg: _Message | None) -> tuple[bytes, bool]:
    """One "NAME value" pair and whether it sets \\Seen."""
    name = item.name.upper()
    if name == "FLAGS":
        return b"FLAGS " + format_flags(meta.flags), False
    if name == "UID":
        return b"UID %d" % meta.uid, False
    if name == "INTERNALDATE":
        return b"INTERNALDATE " + format_internaldate(meta.internal_date or _EPOCH), False
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % meta.size, False
    if name == "MODSEQ":
        return b"MODSEQ (%d)" % meta.modseq, False
    if msg is None:
        raise LocalProtocolError(f"FETCH {name} needs the message bytes")
    if name == "ENVELOPE":
        return b"ENVELOPE " + envelope(header_fields(msg.header())), False
    if name in ("BODYSTRUCTURE", "BODY") and item.section is None:
        return name.encode() + b" " + bodystructure(msg.data, msg.root, extensible=name == "BODYSTRUCTURE"), False
    if name == "BODY":
        section = item.section
        assert section is not None
        if not section.part and section.text in TOP_TEXTS:
            whole = top_section(msg.data, section)  # the MIME tree is not needed
        else:
            whole = section_data(msg.data, msg.root, section)
        content, suffix = _partial(whole, item.partial)
        return b"BODY" + _section_name(item.section) + suffix + b" " + _body_value(content), not item.peek
    if name in ("BINARY", "BINARY.SIZE"):
        section = item.section or Section()
        if section.text:
            raise FetchError("BINARY takes part numbers only")
        decoded = binary_data(msg.data, msg.root, section.part) if section.part else msg.data
        if name == "BINARY.SIZE":
            return b"BINARY.SIZE" + _section_name(section, binary=True) + b" %d" % len(decoded), False
        content, suffix = _partial(decoded, item.partial)
        value = _body_value(content, binary=True)
        return b"BINARY" + _section_name(section, binary=True) + suffix + b" " + value, not item.peek
    if name == "RFC822":
        return b"RFC822 " + _body_value(msg.data), True
    if name == "RFC822.HEADER":
        return b"RFC822.HEADER " + _body_value(msg.header()), False
    if name == "RFC822.TEXT":
        return b"RFC822.TEXT " + _body_value(msg.data[len(msg.header()) :]), True
    raise FetchError(f"unknown FETCH item {ascii(name[:30])}")


def fetch(items: Sequence[FetchItem], meta: MessageMeta, message: bytes | None,
          mime_limits: MimeLimits = DEFAULT_LIMITS) -> FetchResult:
    """The FETCH response list for one message, items in the order asked.

    `message` may be None when needs_message(items) is False; `mime_limits`
    bound the MIME structure parsed (mime.py).
    """
    msg = _Message(message, mime_limits) if message is not None else None
    parts: list[bytes] = []
    sets_seen = False
    for item in items:
        data, seen = _item(item, meta, msg)
        parts.append(data)
        sets_seen = sets_seen or seen
    return FetchResult(b"(" + b" ".join(parts) + b")", sets_seen)
