"""APPEND's arguments: one message or several (RFC 3502 MULTIAPPEND), each a
literal or a CATENATE list of TEXT literals and IMAP URLs (RFC 4469, RFC 5092);
and binary content sent as literal8 (RFC 3516 §4.4).

Rules:
- Only the syntax lives here; the session resolves URLs (imap/cmd_mailbox.py).
- A CATENATE URL names a message (or a section, or a partial range of one) in
  the user's own mailboxes: a URL relative to this server and session, an
  absolute path ("/INBOX;UIDVALIDITY=n/;UID=n/;SECTION=x/;PARTIAL=o.l").
  "imap://" URLs, which could name another user or server, and anything else
  are bad URLs (NO [BADURL]).
- Binary content (literal8, or any literal with NUL) may carry NUL and bare CR
  or LF, which neither the store (LF line ends) nor a BODY[] answer (no NUL in
  a literal, RFC 9051 §9) can carry:
  each leaf part with Content-Transfer-Encoding binary, or with NUL in an
  unencoded body, is stored base64-encoded, so BINARY[part] gives back exactly
  the octets sent.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote_to_bytes

from hatoba.proto.imap.headers import decode_text, header_value
from hatoba.proto.imap.mime import Part, parse_message, walk
from hatoba.proto.imap.scalars import ArgError, parse_datetime, parse_flags
from hatoba.proto.imap.types import Arg, ArgList, Atom, Section, String


@dataclass(frozen=True)
class CatenateUrl:
    """One URL part of CATENATE: a message, or BODY[section]<partial> of it."""

    text: str  # as sent, for [BADURL ...]
    mailbox: str  # the encoded mailbox name, as it would be sent on the wire
    uidvalidity: int | None
    uid: int
    section: Section  # Section() for the whole message
    partial: tuple[int, int | None] | None


@dataclass(frozen=True)
class AppendMessage:
    """One message of an APPEND: its flags, date, and a literal or CATENATE parts."""

    flags: tuple[str, ...]
    when: datetime | None
    parts: tuple[bytes | CatenateUrl, ...]  # one bytes: a plain literal
    binary: bool  # some of its data came as literal8, or holds NUL


_URL = re.compile(
    r"/(?P<mailbox>[^;/]+)(?:;UIDVALIDITY=(?P<uidvalidity>[1-9][0-9]{0,9}))?"
    r"/;UID=(?P<uid>[1-9][0-9]{0,9})"
    r"(?:/;SECTION=(?P<section>[^/;]*))?"
    r"(?:/;PARTIAL=(?P<offset>[0-9]{1,19})(?:\.(?P<length>[1-9][0-9]{0,18}))?)?",
    re.IGNORECASE,
)
_SECTION = re.compile(r"(?:([1-9][0-9]{0,9}(?:\.[1-9][0-9]{0,9})*)(?:\.(HEADER|TEXT|MIME))?|(HEADER|TEXT)?)")


def parse_url(text: str) -> CatenateUrl | None:
    """An IMAP URL naming a message on this server (RFC 5092 §6), None when it does not."""
    m = _URL.fullmatch(text)
    if m is None:
        return None
    spec = unquote_to_bytes(m["section"] or "").decode("ascii", "replace").upper()
    sm = _SECTION.fullmatch(spec)
    if sm is None:
        return None
    section = Section(tuple(int(n) for n in sm[1].split(".")) if sm[1] else (), sm[2] or sm[3] or "")
    try:
        mailbox = unquote_to_bytes(m["mailbox"]).decode("utf-8")
    except UnicodeDecodeError:
        return None
    partial = None
    if m["offset"] is not None:
        partial = (int(m["offset"]), int(m["length"]) if m["length"] else None)
    uidvalidity = int(m["uidvalidity"]) if m["uidvalidity"] else None
    return CatenateUrl(text, mailbox, uidvalidity, int(m["uid"]), section, partial)


def parse_append(args: list[Arg]) -> list[AppendMessage]:
    """The messages after APPEND's mailbox name: [flags] [date] (literal / CATENATE (...) / UTF8 (literal))."""
    rest = list(args)
    messages: list[AppendMessage] = []
    while rest or not messages:
        flags: tuple[str, ...] = ()
        when: datetime | None = None
        if rest and isinstance(rest[0], ArgList):
            flags = parse_flags(rest.pop(0))
            if "\\Recent" in flags:
                raise ArgError("\\Recent cannot be set")
        if rest and isinstance(rest[0], String) and not rest[0].literal and not rest[0].literal8:
            when = parse_datetime(rest.pop(0).value.decode("ascii", "replace"))
        if not rest:
            raise ArgError("APPEND: expected the message as a literal")
        first = rest.pop(0)
        if isinstance(first, Atom) and first.value.upper() == "UTF8" and rest and isinstance(rest[0], ArgList):
            inner = rest.pop(0).items  # RFC 6855: UTF8 (literal8)
            if len(inner) != 1 or not isinstance(inner[0], String):
                raise ArgError("APPEND: UTF8 takes one literal")
            first = inner[0]
        if isinstance(first, Atom) and first.value.upper() == "CATENATE" and rest and isinstance(rest[0], ArgList):
            parts, binary = _catenate(rest.pop(0))
            messages.append(AppendMessage(flags, when, parts, binary))
        elif isinstance(first, String) and (first.literal or first.literal8):
            messages.append(AppendMessage(flags, when, (first.value,), first.literal8 or b"\x00" in first.value))
        else:
            raise ArgError("APPEND: expected the message as a literal")
    return messages


def _catenate(arg: ArgList) -> tuple[tuple[bytes | CatenateUrl, ...], bool]:
    items = list(arg.items)
    if not items or len(items) % 2:
        raise ArgError("CATENATE: expected TEXT literal or URL url pairs")
    parts: list[bytes | CatenateUrl] = []
    binary = False
    for kind, value in zip(items[::2], items[1::2]):
        word = kind.value.upper() if isinstance(kind, Atom) else ""
        if word == "TEXT" and isinstance(value, String) and (value.literal or value.literal8):
            parts.append(value.value)
            binary = binary or value.literal8 or b"\x00" in value.value
        elif word == "URL" and isinstance(value, (String, Atom)):
            text = value.value if isinstance(value, Atom) else value.value.decode("utf-8", "replace")
            url = parse_url(text)
            parts.append(url if url is not None else CatenateUrl(text, "", None, 0, Section(), None))
        else:
            raise ArgError("CATENATE: expected TEXT literal or URL url")
    return tuple(parts), binary


# -- binary content (RFC 3516 §4.4) ---------------------------------------------------------

_IDENTITY = frozenset({"", "7bit", "8bit", "binary"})


def encode_binary_parts(data: bytes) -> bytes:
    """The message with each binary leaf part base64-encoded (see the module rules)."""
    root = parse_message(data)
    changes: list[tuple[Part, str]] = []
    for part in walk(root):
        if part.is_multipart or part.message is not None:
            continue
        cte = decode_text(header_value(part.fields, "Content-Transfer-Encoding") or b"").strip().lower()
        if cte == "binary" or (cte in _IDENTITY and b"\x00" in data[part.body_start : part.end]):
            changes.append((part, cte))
    for part, cte in sorted(changes, key=lambda change: change[0].start, reverse=True):
        data = data[: part.start] + _base64_part(data, part, cte) + data[part.end :]
    return data


def _base64_part(data: bytes, part: Part, cte: str) -> bytes:
    header = data[part.start : part.body_start]
    replaced = False
    for field in part.fields:
        if field.name.lower() == "content-transfer-encoding":
            header = header.replace(field.raw, b"" if replaced else b"Content-Transfer-Encoding: base64\r\n", 1)
            replaced = True
    if not replaced:  # the new field goes before the empty line that ends the header
        blank = b"\r\n" if header.endswith(b"\r\n") else b"\n" if header.endswith(b"\n") else b""
        fields = header[: len(header) - len(blank)] if blank and (header == blank or header.endswith(blank * 2)) else header
        if fields and not fields.endswith(b"\n"):
            fields += b"\r\n"
        header = fields + b"Content-Transfer-Encoding: base64\r\n" + (blank or b"\r\n")
    encoded = base64.b64encode(data[part.body_start : part.end])
    lines = [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
    return header + b"\r\n".join(lines)
