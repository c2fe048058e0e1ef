"""FETCH data items (RFC 9051 §6.4.5, §7.5.2; RFC 3516 BINARY) from one message's bytes.

Rules:
- The message may arrive with LF or CRLF line ends (the store keeps LF); it is
  turned into CRLF form first, the form the client sees, and every size,
  offset and line count below counts that form (RFC 9051 §2.3.4: RFC822.SIZE
  and BODY[] agree). A bare LF becomes CRLF; a bare CR is left alone: the same
  rule the store uses for its W= size, so RFC822.SIZE == len(BODY[]).
- MIME structure is found on the bytes themselves (offsets into the CRLF
  form), so BODY[1.2] is exactly the octets between the boundaries; the
  `email` package (policy compat32, which keeps header bytes) only reads
  header fields: Content-Type parameters, RFC 2231 continuations.
- Values are sent as the message spells them (case of types, encodings,
  parameter names as email gives them), as Dovecot does. RFC 2231 extended
  parameters (filename*=UTF-8''%E6%97%A5.pdf, filename*0*=..;filename*1*=..)
  are sent as one parameter "filename*" whose value is the joined raw RFC 2231
  form (charset'language'%XX): the client decodes it as it would from the
  header. ENVELOPE keeps RFC 2047 encoded words raw (RFC 9051 §7.5.2).
- A part number that does not exist gives an empty string (RFC 9051 §6.4.5
  leaves it to the server; an empty string is what Dovecot and Cyrus send for
  parts past the end); only an item or section this module does not know, or
  BINARY of an unknown Content-Transfer-Encoding, raises FetchError.
- Text line counts are the number of CRLFs in the body plus one for a last
  line without one (the CRLF before a boundary belongs to the boundary,
  RFC 2046 §5.1.1, so "hi" between two boundaries is one line).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email import policy
from email.message import Message
from email.parser import BytesHeaderParser
from operator import itemgetter
from typing import NamedTuple, Protocol
from urllib.parse import quote

from hatoba.proto.errors import LocalProtocolError
from hatoba.proto.imap.encode import astring, format_flags, format_internaldate, literal, nstring, string
from hatoba.proto.imap.types import FetchItem, MessageMeta, Section

__all__ = [
    "FetchError",
    "FetchResult",
    "HeaderField",
    "fetch",
    "header_fields",
    "header_value",
    "meta_lines",
    "needs_message",
    "parse_address_list",
    "to_crlf",
]

# Items answered from MessageMeta alone.
META_ITEMS = frozenset({"FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "MODSEQ"})
# Deeper nesting than this is shown as an opaque part: a message cannot make us recurse without end.
MAX_DEPTH = 50
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class FetchError(Exception):
    """The FETCH cannot be answered: an unknown item or section, or BINARY of an unknown encoding.

    The text is one ASCII line; "[UNKNOWN-CTE]" in it when RFC 3516 §4.3 asks for that code.
    """


@dataclass
class FetchResult:
    data: bytes  # the parenthesized list, e.g. b"(UID 5 FLAGS (\\Seen) BODY[] {12}\r\n...)"
    sets_seen: bool  # a non-PEEK BODY[...]/BINARY[...]/RFC822/RFC822.TEXT was fetched


def needs_message(items: Sequence[FetchItem]) -> bool:
    """True when some item needs the message bytes (not only FLAGS, UID, INTERNALDATE, RFC822.SIZE, MODSEQ)."""
    return any(item.name not in META_ITEMS for item in items)


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


# -- header fields ------------------------------------------------------------------------


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


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _raw(value: str) -> bytes:
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that did not come from our own decoding
        return value.encode("utf-8", "replace")


# -- addresses (RFC 5322 §3.4, kept raw for ENVELOPE) ------------------------------------

# (name, adl, mailbox, host); host None with a mailbox starts a group, all None ends it.
Address = tuple[str | None, str | None, str | None, str | None]

_SPECIALS = "<>@,;:."


def _tokenize(text: str) -> list[tuple[str, str]]:
    """RFC 5322 lexical tokens: ("atom"|"qs"|"comment"|"special", text). Unclosed constructs run to the end."""
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
        elif c == '"':
            buf, i = [], i + 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(text[i])
                i += 1
            tokens.append(("qs", "".join(buf)))
            i += 1
        elif c == "(":
            depth, buf, i = 1, [], i + 1
            while i < n and depth:
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                elif text[i] == "(":
                    depth += 1
                elif text[i] == ")":
                    depth -= 1
                    if not depth:
                        break
                buf.append(text[i])
                i += 1
            tokens.append(("comment", "".join(buf)))
            i += 1
        elif c == "[":
            j = text.find("]", i)
            j = n - 1 if j < 0 else j
            tokens.append(("atom", text[i : j + 1]))
            i = j + 1
        elif c in _SPECIALS:
            tokens.append(("special", c))
            i += 1
        else:
            j = i
            while j < n and text[j] not in ' \t\r\n"([' + _SPECIALS:
                j += 1
            tokens.append(("atom", text[i:j]))
            i = j
    return tokens


def _phrase(tokens: list[tuple[str, str]]) -> str | None:
    out = ""
    for kind, value in tokens:
        if kind == "special" and value == ".":
            out += "."
        else:
            out += (" " if out and not out.endswith(".") else "") + value
    return out or None


def _local_or_domain(tokens: list[tuple[str, str]]) -> str:
    parts = []
    for kind, value in tokens:
        if kind == "qs":
            parts.append('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            parts.append(value)
    return "".join(parts)


def _addr_spec(tokens: list[tuple[str, str]]) -> tuple[str | None, str, str]:
    """(adl, local part, domain) of "[@route,@route:]local@domain"; domain "" when missing."""
    adl = None
    colons = [i for i, t in enumerate(tokens) if t == ("special", ":")]
    if colons:
        adl = _local_or_domain(tokens[: colons[0]]) or None
        tokens = tokens[colons[0] + 1 :]
    ats = [i for i, t in enumerate(tokens) if t == ("special", "@")]
    if not ats:
        return adl, _local_or_domain(tokens), ""
    return adl, _local_or_domain(tokens[: ats[-1]]), _local_or_domain(tokens[ats[-1] + 1 :])


def parse_address_list(value: str) -> list[Address]:
    """An address-list header value as ENVELOPE addresses (RFC 9051 §7.5.2), names kept raw.

    A mailbox without a display name takes its comment as name ("a@b (Ann)").
    """
    tokens = _tokenize(value)
    out: list[Address] = []
    phrase: list[tuple[str, str]] = []
    angle: tuple[str | None, str, str] | None = None
    comment: str | None = None
    in_group = False

    def finish() -> None:
        nonlocal angle, comment
        if angle is not None:
            adl, local, domain = angle
            out.append((_phrase(phrase) or comment, adl, local, domain))
        elif phrase:
            adl, local, domain = _addr_spec(phrase)
            out.append((comment, adl, local, domain))
        phrase.clear()
        angle, comment = None, None

    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "comment":
            comment = text.strip() or comment
        elif kind == "special" and text == "<":
            j = i + 1
            while j < len(tokens) and tokens[j] != ("special", ">"):
                j += 1
            angle = _addr_spec([t for t in tokens[i + 1 : j] if t[0] != "comment"])
            i = j
        elif kind == "special" and text == ":" and not in_group and angle is None:
            out.append((None, None, _phrase(phrase) or "", None))
            phrase.clear()
            comment = None
            in_group = True
        elif kind == "special" and text == ",":
            finish()
        elif kind == "special" and text == ";":
            finish()
            if in_group:
                out.append((None, None, None, None))
                in_group = False
        elif angle is None:
            phrase.append((kind, text))
        i += 1
    finish()
    if in_group:
        out.append((None, None, None, None))
    return out


def _format_addresses(value: bytes | None) -> bytes:
    if value is None:
        return b"NIL"
    addresses = parse_address_list(_text(value))
    if not addresses:
        return b"NIL"
    return b"(" + b"".join(
        b"(" + b" ".join(nstring(None if v is None else _raw(v)) for v in a) + b")" for a in addresses
    ) + b")"


def envelope(fields: Sequence[HeaderField]) -> bytes:
    """ENVELOPE (RFC 9051 §7.5.2): raw date, subject, address lists, in-reply-to, message-id."""

    def get(name: str) -> bytes | None:
        return header_value(fields, name)

    sender, reply_to = get("Sender"), get("Reply-To")
    from_ = _format_addresses(get("From"))
    # RFC 9051 §7.5.2: absent or empty Sender / Reply-To take the From value.
    sender_f = _format_addresses(sender) if sender else from_
    reply_f = _format_addresses(reply_to) if reply_to else from_
    if sender_f == b"NIL":
        sender_f = from_
    if reply_f == b"NIL":
        reply_f = from_
    items = [
        nstring(get("Date")),
        nstring(get("Subject")),
        from_,
        sender_f,
        reply_f,
        _format_addresses(get("To")),
        _format_addresses(get("Cc")),
        _format_addresses(get("Bcc")),
        nstring(get("In-Reply-To")),
        nstring(get("Message-ID")),
    ]
    return b"(" + b" ".join(items) + b")"


# -- the MIME tree ---------------------------------------------------------------------------


@dataclass
class Part:
    """One entity: header at data[start:body_start], body at data[body_start:end]."""

    start: int
    body_start: int
    end: int
    fields: list[HeaderField]
    headers: Message  # the same header, read by email (parameters, RFC 2231)
    maintype: str
    subtype: str
    params: list[tuple[str, bytes]]
    children: list[Part] = field(default_factory=list)  # multipart
    message: Part | None = None  # message/rfc822: the encapsulated message

    @property
    def is_multipart(self) -> bool:
        return bool(self.children)


def _header_end(data: bytes, start: int, end: int) -> int:
    """Where the body starts: after the first empty line (no header at all if the entity starts with one)."""
    if data.startswith(b"\r\n", start) and start + 2 <= end:
        return start + 2
    i = data.find(b"\r\n\r\n", start, end)
    return end if i < 0 else i + 4


def _param_value(value: str | tuple[str, str, str]) -> tuple[bool, bytes]:
    """(extended?, value bytes); RFC 2231 values go back to their raw charset'lang'%XX form."""
    if isinstance(value, tuple):
        charset, language, text = value
        try:
            octets = text.encode("latin-1", "surrogateescape")  # email keeps %XX octets as latin-1
        except UnicodeEncodeError:
            octets = _raw(text)
        return True, _raw(f"{charset or ''}'{language or ''}'") + quote(octets, safe="!#$&+-.^_`|~").encode("ascii")
    return False, _raw(value)


def _params(msg: Message, header: str) -> tuple[str, list[tuple[str, bytes]]] | None:
    if msg.get(header) is None:
        return None
    try:
        raw = msg.get_params(header=header) or []
    except (TypeError, ValueError, IndexError, LookupError):
        return None  # parameters email cannot read (mixed RFC 2231 continuations): as if absent
    if not raw:
        return None
    first = raw[0][0]
    out: list[tuple[str, bytes]] = []
    for name, value in raw[1:]:
        extended, data = _param_value(value)
        out.append((name + "*" if extended else name, data))
    return first, out


def _parse_part(data: bytes, start: int, end: int, default: str, depth: int) -> Part:
    body_start = _header_end(data, start, end)
    header = data[start:body_start]
    fields = header_fields(header)
    msg = BytesHeaderParser(policy=policy.compat32).parsebytes(header)
    ctype = _params(msg, "content-type")
    if ctype is not None and "/" in ctype[0]:
        maintype, _, subtype = ctype[0].strip().partition("/")
        params = ctype[1]
        if not params and maintype.strip().lower() == "text":
            # RFC 2045 §5.2: text without parameters is us-ascii; said explicitly, as Dovecot does.
            params = [("charset", b"us-ascii")]
    else:
        maintype, _, subtype = default.partition("/")
        params = [("charset", b"us-ascii")] if default == "text/plain" else []
    part = Part(start, body_start, end, fields, msg, maintype.strip(), subtype.strip(), params)
    if depth >= MAX_DEPTH:
        return part
    kind = maintype.lower()
    if kind == "multipart":
        boundary = next((value for name, value in params if name.lower() == "boundary"), b"")
        if boundary:
            child_default = "message/rfc822" if subtype.lower() == "digest" else "text/plain"
            spans = _split_multipart(data, body_start, end, boundary)
            part.children = [_parse_part(data, s, e, child_default, depth + 1) for s, e in spans]
            if not part.children:  # BODYSTRUCTURE needs one body at least (RFC 9051 §9 body-type-mpart)
                part.children = [_parse_part(data, end, end, "text/plain", depth + 1)]
    elif kind == "message" and subtype.lower() in ("rfc822", "global"):
        cte = (msg.get("content-transfer-encoding") or "7bit").strip().lower()
        if cte in ("7bit", "8bit", "binary"):
            part.message = _parse_part(data, body_start, end, "text/plain", depth + 1)
    return part


def _split_multipart(data: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """The (start, end) of each body part between "--boundary" lines (RFC 2046 §5.1.1).

    The CRLF before a delimiter belongs to the delimiter; the preamble and
    the epilogue belong to no part; a missing close delimiter ends the last
    part at the end of the entity.
    """
    delimiter = b"--" + boundary
    spans: list[tuple[int, int]] = []
    part_start: int | None = None
    i = start
    while True:
        j = data.find(delimiter, i, end)
        if j < 0:
            break
        line_end = data.find(b"\r\n", j, end)
        line_end = end if line_end < 0 else line_end
        rest = data[j + len(delimiter) : line_end]
        closing = rest.startswith(b"--")
        at_line_start = j == start or data[j - 2 : j] == b"\r\n"
        if at_line_start and (rest[2:] if closing else rest).strip(b" \t") == b"":
            if part_start is not None:
                spans.append((part_start, max(part_start, j - 2 if j - 2 >= start else j)))
            if closing:
                return spans
            part_start = min(line_end + 2, end)
        i = j + len(delimiter)
    if part_start is not None:
        spans.append((part_start, end))
    return spans


def parse_message(data: bytes) -> Part:
    """The MIME tree of a message already in CRLF form."""
    return _parse_part(data, 0, len(data), "text/plain", 0)


# -- BODYSTRUCTURE ---------------------------------------------------------------------------


def _count_lines(body: bytes) -> int:
    return body.count(b"\r\n") + (1 if body and not body.endswith(b"\r\n") else 0)


def _param_list(params: Sequence[tuple[str, bytes]]) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(string(name) + b" " + string(value) for name, value in params) + b")"


def _disposition(part: Part) -> bytes:
    parsed = _params(part.headers, "content-disposition")
    if parsed is None or not parsed[0].strip():
        return b"NIL"
    return b"(" + string(parsed[0].strip()) + b" " + _param_list(parsed[1]) + b")"


def _language(part: Part) -> bytes:
    value = header_value(part.fields, "Content-Language")
    if value is None:
        return b"NIL"
    tags = [t.strip() for t in value.split(b",") if t.strip()]
    if not tags:
        return b"NIL"
    if len(tags) == 1:
        return string(tags[0])
    return b"(" + b" ".join(string(t) for t in tags) + b")"


def _extension(part: Part) -> list[bytes]:
    """body-fld-dsp SP body-fld-lang SP body-fld-loc (RFC 9051 §9)."""
    return [_disposition(part), _language(part), nstring(header_value(part.fields, "Content-Location"))]


def bodystructure(data: bytes, part: Part, *, extensible: bool) -> bytes:
    """BODYSTRUCTURE (extensible) or BODY (RFC 9051 §7.5.2, §9 body)."""
    if part.is_multipart:
        children = b"".join(bodystructure(data, c, extensible=extensible) for c in part.children)
        items = [children + b" " + string(part.subtype)]
        if extensible:
            items += [_param_list(part.params), *_extension(part)]
        return b"(" + b" ".join(items) + b")"
    body = data[part.body_start : part.end]
    get = part.fields
    items = [
        string(part.maintype),
        string(part.subtype),
        _param_list(part.params),
        nstring(header_value(get, "Content-ID")),
        nstring(header_value(get, "Content-Description")),
        string(header_value(get, "Content-Transfer-Encoding") or b"7bit"),
        b"%d" % len(body),
    ]
    if part.message is not None:
        inner = part.message
        items += [
            envelope(inner.fields),
            bodystructure(data, inner, extensible=extensible),
            b"%d" % _count_lines(body),
        ]
    elif part.maintype.lower() == "text":
        items.append(b"%d" % _count_lines(body))
    if extensible:
        items += [nstring(header_value(get, "Content-MD5")), *_extension(part)]
    return b"(" + b" ".join(items) + b")"


# -- sections ----------------------------------------------------------------------------------


def _resolve(root: Part, numbers: tuple[int, ...]) -> Part | None:
    """The part `numbers` names (RFC 9051 §6.4.5), None when it does not exist.

    Part 1 of a non-multipart message is its body; the numbers after a
    message/rfc822 part count the parts of the encapsulated message.
    """
    node = root
    is_message = True  # node stands for a whole message, not yet for one of its parts
    for n in numbers:
        if n < 1:
            return None
        if not is_message and node.message is not None:
            node, is_message = node.message, True
        if node.is_multipart:
            if n > len(node.children):
                return None
            node, is_message = node.children[n - 1], False
        elif is_message and n == 1:
            is_message = False
        else:
            return None
    return node


def _header_block(data: bytes, part: Part, section: Section) -> bytes:
    if section.text == "HEADER":
        return data[part.start : part.body_start]
    wanted = {f.upper() for f in section.fields}
    keep = (section.text == "HEADER.FIELDS")
    chosen = [f.raw for f in part.fields if (f.name.upper() in wanted) == keep]
    return b"".join(chosen) + b"\r\n"


def section_data(data: bytes, root: Part, section: Section) -> bytes:
    """The octets of BODY[section] (before any partial), b"" for a part that does not exist."""
    if section.text not in ("", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"):
        raise FetchError(f"unknown section text {ascii(section.text[:30])}")
    if not section.part and section.text in _TOP_TEXTS:
        return _top_section(data, section)
    node = _resolve(root, section.part)
    if node is None:
        return b""
    if section.text == "":
        return data if not section.part else data[node.body_start : node.end]
    if section.text == "MIME":
        if not section.part:
            raise FetchError("MIME needs a part number")
        return data[node.start : node.body_start]
    if section.part:
        if node.message is None:
            return b""  # HEADER/TEXT only apply to message/rfc822 parts (RFC 9051 §6.4.5)
        node = node.message
    if section.text == "TEXT":
        return data[node.body_start : node.end]
    return _header_block(data, node, section)


_TOP_TEXTS = frozenset({"", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"})


def _top_section(data: bytes, section: Section) -> bytes:
    """BODY[], BODY[HEADER...], BODY[TEXT] of the whole message: no MIME tree needed."""
    if section.text == "":
        return data
    body_start = _header_end(data, 0, len(data))
    if section.text == "TEXT":
        return data[body_start:]
    if section.text == "HEADER":
        return data[:body_start]
    wanted = {f.upper() for f in section.fields}
    keep = section.text == "HEADER.FIELDS"
    chosen = [f.raw for f in header_fields(data[:body_start]) if (f.name.upper() in wanted) == keep]
    return b"".join(chosen) + b"\r\n"


def decode_transfer(body: bytes, cte: str) -> bytes:
    """A body without its Content-Transfer-Encoding (RFC 2045 §6); FetchError [UNKNOWN-CTE] otherwise."""
    cte = cte.strip().lower()
    if cte in ("", "7bit", "8bit", "binary"):
        return body
    if cte == "base64":
        # RFC 2045 §6.8: characters outside the alphabet are ignored.
        clean = re.sub(rb"[^A-Za-z0-9+/]", b"", body)
        clean = clean[: len(clean) - len(clean) % 4] if len(clean) % 4 == 1 else clean
        return base64.b64decode(clean + b"=" * (-len(clean) % 4))
    if cte == "quoted-printable":
        return binascii.a2b_qp(body)
    raise FetchError(f"[UNKNOWN-CTE] cannot decode {ascii(cte[:30])}")


def binary_data(data: bytes, root: Part, numbers: tuple[int, ...]) -> bytes:
    """BINARY[numbers] (RFC 3516 §4.2): the part's body decoded; BINARY[] is the whole message."""
    if not numbers:
        return data
    node = _resolve(root, numbers)
    if node is None:
        return b""
    body = data[node.body_start : node.end]
    if node.is_multipart or node.message is not None:
        return body
    return decode_transfer(body, _text(header_value(node.fields, "Content-Transfer-Encoding") or b""))


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

    def __init__(self, raw: bytes) -> None:
        self.data = to_crlf(raw)
        self._root: Part | None = None

    @property
    def root(self) -> Part:
        if self._root is None:
            self._root = parse_message(self.data)
        return self._root

    def header(self) -> bytes:
        return self.data[: _header_end(self.data, 0, len(self.data))]


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
        if not section.part and section.text in _TOP_TEXTS:
            whole = _top_section(msg.data, section)  # the MIME tree is not needed
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


def fetch(items: Sequence[FetchItem], meta: MessageMeta, message: bytes | None) -> FetchResult:
    """The FETCH response list for one message, items in the order asked.

    `message` may be None when needs_message(items) is False.
    """
    msg = _Message(message) if message is not None else None
    parts: list[bytes] = []
    sets_seen = False
    for item in items:
        data, seen = _item(item, meta, msg)
        parts.append(data)
        sets_seen = sets_seen or seen
    return FetchResult(b"(" + b" ".join(parts) + b")", sets_seen)
