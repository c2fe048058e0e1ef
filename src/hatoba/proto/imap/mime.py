"""The MIME tree of a message (RFC 2045, RFC 2046): where each part's header and
body are, its content type and parameters.

Rules:
- Structure is found on the bytes themselves (offsets into the CRLF form),
  so BODY[1.2] is exactly the octets between the boundaries; the `email`
  package (policy compat32, which keeps header bytes) only reads header
  fields: Content-Type parameters, RFC 2231 continuations.
- RFC 2231 extended parameters (filename*=UTF-8''%E6%97%A5.pdf,
  filename*0*=..;filename*1*=..) become one parameter "filename*" whose value
  is the joined raw RFC 2231 form (charset'language'%XX): the client decodes
  it as it would from the header.
- Nesting deeper than MAX_DEPTH is kept as an opaque part: a message cannot
  make us recurse without end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email import policy
from email.message import Message
from email.parser import BytesHeaderParser
from urllib.parse import quote

from hatoba.proto.imap.headers import HeaderField, encode_text, header_end, header_fields

# Deeper nesting than this is shown as an opaque part: a message cannot make us recurse without end.
MAX_DEPTH = 50


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


def _param_value(value: str | tuple[str, str, str]) -> tuple[bool, bytes]:
    """(extended?, value bytes); RFC 2231 values go back to their raw charset'lang'%XX form."""
    if isinstance(value, tuple):
        charset, language, text = value
        try:
            octets = text.encode("latin-1", "surrogateescape")  # email keeps %XX octets as latin-1
        except UnicodeEncodeError:
            octets = encode_text(text)
        return True, encode_text(f"{charset or ''}'{language or ''}'") + quote(octets, safe="!#$&+-.^_`|~").encode("ascii")
    return False, encode_text(value)


def content_params(msg: Message, header: str) -> tuple[str, list[tuple[str, bytes]]] | None:
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
    body_start = header_end(data, start, end)
    header = data[start:body_start]
    fields = header_fields(header)
    msg = BytesHeaderParser(policy=policy.compat32).parsebytes(header)
    ctype = content_params(msg, "content-type")
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
