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
  Content-Transfer-Encoding, raises FetchError, and fetch_pieces() raises it
  before it gives any piece: a FETCH is refused whole or answered whole.
- fetch_pieces() works an item out only once the pieces before it were
  taken, and gives a literal's content as a piece of its own, never copied
  into a larger one: an answer that names a 4 MB message sixty times holds
  one copy of it at a time, however slowly the client reads.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import chain
from typing import Protocol

from hatoba.proto.errors import LocalProtocolError
from hatoba.proto.imap.bodystructure import bodystructure
from hatoba.proto.imap.encode import astring, format_flags, format_internaldate, literal_prefix
from hatoba.proto.imap.envelope import Address, envelope, parse_address_list
from hatoba.proto.imap.headers import HeaderField, header_end, header_fields, header_value
from hatoba.proto.imap.mime import DEFAULT_LIMITS, MAX_DEPTH, MimeLimits, Part, parse_message
from hatoba.proto.imap.sections import (
    SECTION_TEXTS,
    TOP_TEXTS,
    FetchError,
    binary_data,
    check_binary,
    decode_transfer,
    header_block,
    section_data,
    top_section,
)
from hatoba.proto.imap.types import FetchItem, MessageMeta, Section

__all__ = [
    "MAX_DEPTH",
    "META_ITEMS",
    "STRUCTURE_ITEMS",
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
    "fetch_pieces",
    "header_fields",
    "header_value",
    "meta_text",
    "needs_message",
    "parse_address_list",
    "parse_message",
    "section_data",
    "sets_seen",
    "slices_only",
    "structure_names",
    "structure_values",
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


def sets_seen(items: Sequence[FetchItem]) -> bool:
    """True when an item sets \\Seen: BODY[...] or BINARY[...] without .PEEK, RFC822, RFC822.TEXT
    (RFC 9051 §6.4.5)."""
    for item in items:
        name = item.name.upper()
        if name in ("RFC822", "RFC822.TEXT"):
            return True
        if not item.peek and (name == "BINARY" or (name == "BODY" and item.section is not None)):
            return True
    return False


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
    """The store facts meta_text reads from each message (the store's record has them)."""

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


# item -> its format in a "* n FETCH (...)" line
_META_FORMAT = {
    "FLAGS": b"FLAGS %s",
    "UID": b"UID %d",
    "INTERNALDATE": b"INTERNALDATE %s",
    "RFC822.SIZE": b"RFC822.SIZE %d",
    "MODSEQ": b"MODSEQ (%d)",
}
_RECENT = frozenset({"\\Recent"})


def meta_text(items: Sequence[FetchItem], seqs: Sequence[int], records: Sequence[MetaRecord],
              recent: Container[int] = ()) -> bytes:
    """The "* n FETCH (...)" lines of the records (seqs: their sequence numbers), as one
    bytes; items must all be META_ITEMS.

    The same bytes fetch() gives, made column by column and formatted in one
    %-operation for all the lines: a FETCH 1:* (FLAGS) of a large mailbox is
    the common client resync, and a format per line in Python cost about
    twice as much. `recent` holds the UIDs that carry \\Recent in this session.
    """
    if not records:
        return b""
    names = [item.name.upper() for item in items]
    columns = [seqs, *(_meta_column(name, records, recent) for name in names)]
    line = b"* %d FETCH (" + b" ".join(_META_FORMAT[name] for name in names) + b")\r\n"
    return (line * len(records)) % tuple(chain.from_iterable(zip(*columns)))


def _meta_column(name: str, records: Sequence[MetaRecord], recent: Container[int]) -> list:  # type: ignore[type-arg]
    """One item's values for every record, in order."""
    if name == "FLAGS":
        sets = [record.flags for record in records]
        if recent:
            sets = [flags | _RECENT if record.uid in recent else flags for flags, record in zip(sets, records)]
        texts = {flags: format_flags(flags) for flags in set(sets)}  # few distinct flag sets: each formatted once
        return list(map(texts.__getitem__, sets))
    if name == "UID":
        return [record.uid for record in records]
    if name == "INTERNALDATE":
        return [format_internaldate(record.internal_date or _EPOCH) for record in records]
    if name == "RFC822.SIZE":
        return [record.size for record in records]
    if name == "MODSEQ":
        return [record.modseq for record in records]
    raise ValueError(f"{name} is not a META_ITEM")


# Items a message's MIME tree alone decides: their values can be kept per message file
# (Maildir files never change), so a FETCH of them need not read or parse it again.
STRUCTURE_ITEMS = frozenset({"BODY", "BODYSTRUCTURE"})


def structure_names(items: Sequence[FetchItem]) -> frozenset[str] | None:
    """The STRUCTURE_ITEMS these items ask for, when every other item is metadata or
    ENVELOPE (answered from the header alone); None when some item needs more."""
    names = set()
    for item in items:
        name = item.name.upper()
        if name in STRUCTURE_ITEMS and item.section is None:
            names.add(name)
        elif name not in META_ITEMS and name != "ENVELOPE":
            return None
    return frozenset(names)


def structure_values(message: bytes, limits: MimeLimits = DEFAULT_LIMITS) -> dict[str, bytes]:
    """BODY and BODYSTRUCTURE of a message (the values after the item names), its tree parsed once."""
    msg = _Message(message, limits)
    return {"BODY": bodystructure(msg.data, msg.root, extensible=False),
            "BODYSTRUCTURE": bodystructure(msg.data, msg.root, extensible=True)}


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


def _value(content: bytes, *, binary: bool = False) -> tuple[bytes, bytes]:
    """A string's value as (what goes before the content, the content): a literal, or "" when empty."""
    if not content:
        return b'""', b""
    return literal_prefix(len(content), binary=binary and b"\x00" in content), content


# -- FETCH ------------------------------------------------------------------------------------


class _Message:
    """The message in CRLF form with its MIME tree, parsed only when an item needs it."""

    def __init__(self, raw: bytes, limits: MimeLimits) -> None:
        self.data = to_crlf(raw)
        self.limits = limits
        self._root: Part | None = None
        self._binary: tuple[tuple[int, ...], bytes] | None = None

    def binary(self, numbers: tuple[int, ...]) -> bytes:
        """binary_data() of a part, the last one kept: a FETCH naming BINARY[1] a
        thousand times decoded 25 MB a thousand times (0.2 s each, holding the GIL)."""
        if self._binary is None or self._binary[0] != numbers:
            self._binary = numbers, binary_data(self.data, self.root, numbers)
        return self._binary[1]

    @property
    def root(self) -> Part:
        if self._root is None:
            self._root = parse_message(self.data, self.limits)
        return self._root

    def header(self) -> bytes:
        return self.data[: header_end(self.data, 0, len(self.data))]


def _check(items: Sequence[FetchItem], msg: _Message | None) -> None:
    """FetchError now for an item _item() would refuse, before any of the answer goes out."""
    for item in items:
        name = item.name.upper()
        if name not in _ITEM_NAMES:
            raise FetchError(f"unknown FETCH item {ascii(name[:30])}")
        section = item.section
        if section is None or msg is None:
            continue
        if name == "BODY" and section.text not in SECTION_TEXTS:
            raise FetchError(f"unknown section text {ascii(section.text[:30])}")
        if name == "BODY" and section.text == "MIME" and not section.part:
            raise FetchError("MIME needs a part number")
        if name in ("BINARY", "BINARY.SIZE"):
            if section.text:
                raise FetchError("BINARY takes part numbers only")
            if section.part:
                check_binary(msg.root, section.part)


_ITEM_NAMES = META_ITEMS | {"ENVELOPE", "BODYSTRUCTURE", "BODY", "BINARY", "BINARY.SIZE", "RFC822",
                            "RFC822.HEADER", "RFC822.TEXT"}


def _item(item: FetchItem, meta: MessageMeta, msg: _Message | None,
          known: Mapping[str, bytes] | None = None) -> tuple[bytes, bytes]:
    """One "NAME value" pair as (its start, a literal's content or b""); BODY and
    BODYSTRUCTURE come from `known` when it has them."""
    name = item.name.upper()
    if name == "FLAGS":
        return b"FLAGS " + format_flags(meta.flags), b""
    if name == "UID":
        return b"UID %d" % meta.uid, b""
    if name == "INTERNALDATE":
        return b"INTERNALDATE " + format_internaldate(meta.internal_date or _EPOCH), b""
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % meta.size, b""
    if name == "MODSEQ":
        return b"MODSEQ (%d)" % meta.modseq, b""
    if name in STRUCTURE_ITEMS and item.section is None and known is not None and name in known:
        return name.encode() + b" " + known[name], b""
    if msg is None:
        raise LocalProtocolError(f"FETCH {name} needs the message bytes")
    if name == "ENVELOPE":
        return b"ENVELOPE " + envelope(header_fields(msg.header())), b""
    if name in ("BODYSTRUCTURE", "BODY") and item.section is None:
        return name.encode() + b" " + bodystructure(msg.data, msg.root, extensible=name == "BODYSTRUCTURE"), b""
    if name == "BODY":
        section = item.section
        assert section is not None
        if not section.part and section.text in TOP_TEXTS:
            whole = top_section(msg.data, section)  # the MIME tree is not needed
        else:
            whole = section_data(msg.data, msg.root, section)
        content, suffix = _partial(whole, item.partial)
        start, content = _value(content)
        return b"BODY" + _section_name(section) + suffix + b" " + start, content
    if name in ("BINARY", "BINARY.SIZE"):
        section = item.section or Section()
        if section.text:
            raise FetchError("BINARY takes part numbers only")
        decoded = msg.binary(section.part) if section.part else msg.data
        if name == "BINARY.SIZE":
            return b"BINARY.SIZE" + _section_name(section, binary=True) + b" %d" % len(decoded), b""
        content, suffix = _partial(decoded, item.partial)
        start, content = _value(content, binary=True)
        return b"BINARY" + _section_name(section, binary=True) + suffix + b" " + start, content
    if name == "RFC822":
        start, content = _value(msg.data)
        return b"RFC822 " + start, content
    if name == "RFC822.HEADER":
        start, content = _value(msg.header())
        return b"RFC822.HEADER " + start, content
    if name == "RFC822.TEXT":
        start, content = _value(msg.data[len(msg.header()) :])
        return b"RFC822.TEXT " + start, content
    raise FetchError(f"unknown FETCH item {ascii(name[:30])}")


def fetch_pieces(items: Sequence[FetchItem], meta: MessageMeta, message: bytes | None,
                 mime_limits: MimeLimits = DEFAULT_LIMITS, known: Mapping[str, bytes] | None = None) -> Iterator[bytes]:
    """The untagged "* n FETCH (...)" response for one message (n is meta.seq), items in
    the order asked, in pieces; raises FetchError here, before the first piece.

    Each item is worked out when the pieces before it have been taken, and a
    literal's content is a piece of its own (the text between literals makes
    one piece each): hand each piece to the client before asking for the
    next, and the answer is never whole in memory.
    `message` may be None when needs_message(items) is False; `mime_limits`
    bound the MIME structure parsed (mime.py). `known` holds BODY and
    BODYSTRUCTURE values (structure_values()) learnt earlier for this message:
    with both, `message` need only be its header (for ENVELOPE).
    """
    msg = _Message(message, mime_limits) if message is not None else None
    _check(items, msg)
    return _pieces(items, meta, msg, b"* %d FETCH (" % meta.seq, b")\r\n", known)


def _pieces(items: Sequence[FetchItem], meta: MessageMeta, msg: _Message | None,
            before: bytes, after: bytes, known: Mapping[str, bytes] | None = None) -> Iterator[bytes]:
    text = [before]
    for n, item in enumerate(items):
        start, content = _item(item, meta, msg, known)
        if n:
            text.append(b" ")
        text.append(start)
        if content:
            yield b"".join(text)
            yield content
            text = []
    text.append(after)
    yield b"".join(text)


class WholeMessagePlan:
    """The answer's shape for a FETCH of the whole message with metadata only (BODY[] or
    BODY.PEEK[] without a partial, or RFC822; with any of UID, FLAGS, INTERNALDATE,
    RFC822.SIZE, MODSEQ), decided once a command: pieces() gives one message's answer
    as fetch_pieces() does, the same pieces, without its per-message checks and item
    dispatch. What most mail programs ask when they download a message."""

    __slots__ = ("label", "before", "after", "uses_meta")

    def __init__(self, label: bytes, before: Sequence[FetchItem], after: Sequence[FetchItem]) -> None:
        self.label = label
        self.before = before
        self.after = after
        self.uses_meta = bool(before or after)  # else pieces() needs no MessageMeta

    def pieces(self, seq: int, meta: MessageMeta | None, raw: bytes) -> list[bytes]:
        # meta is given whenever uses_meta: only the metadata items read it.
        text = [b"* %d FETCH (" % seq]
        text += [_item(item, meta, None)[0] + b" " for item in self.before]  # type: ignore[arg-type]
        start, content = _value(to_crlf(raw))
        text.append(self.label + b" " + start)
        rest = [b" " + _item(item, meta, None)[0] for item in self.after]  # type: ignore[arg-type]
        rest.append(b")\r\n")
        if not content:  # an empty message is "", no literal: the answer stays one piece
            return [b"".join(text + rest)]
        return [b"".join(text), content, b"".join(rest)]


def whole_message_plan(items: Sequence[FetchItem]) -> WholeMessagePlan | None:
    """The WholeMessagePlan of these items; None for any other item list."""
    wholes = [n for n, item in enumerate(items) if _whole_label(item) is not None]
    if len(wholes) != 1 or any(item.name.upper() not in META_ITEMS
                               for n, item in enumerate(items) if n != wholes[0]):
        return None
    at = wholes[0]
    label = _whole_label(items[at])
    assert label is not None
    return WholeMessagePlan(label, tuple(items[:at]), tuple(items[at + 1:]))


def _whole_label(item: FetchItem) -> bytes | None:
    """The response name of an item that is the whole message as it is, else None."""
    name = item.name.upper()
    if item.partial is not None:
        return None
    if name == "RFC822" and item.section is None:
        return b"RFC822"
    section = item.section
    if name == "BODY" and section is not None and not section.part and section.text == "" and not section.fields:
        return b"BODY[]"
    return None


def fetch(items: Sequence[FetchItem], meta: MessageMeta, message: bytes | None,
          mime_limits: MimeLimits = DEFAULT_LIMITS, known: Mapping[str, bytes] | None = None) -> FetchResult:
    """The FETCH response list for one message, items in the order asked.

    `message` may be None when needs_message(items) is False; `mime_limits`
    bound the MIME structure parsed (mime.py); `known` as for fetch_pieces().
    """
    msg = _Message(message, mime_limits) if message is not None else None
    _check(items, msg)
    return FetchResult(b"".join(_pieces(items, meta, msg, b"(", b")", known)), sets_seen(items))
