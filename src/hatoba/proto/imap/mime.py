"""The MIME tree of a message (RFC 2045, RFC 2046): where each part's header and
body are, its content type and parameters.

Rules:
- Structure is found on the bytes themselves (offsets into the CRLF form),
  so BODY[1.2] is exactly the octets between the boundaries; the `email`
  package (policy compat32, which keeps header bytes) only reads header
  fields: Content-Type parameters, RFC 2231 continuations. It is given those
  fields unfolded (RFC 5322 §2.2.3): a folded boundary="foo<CRLF> bar" is
  "foo bar".
- RFC 2231 extended parameters (filename*=UTF-8''%E6%97%A5.pdf,
  filename*0*=..;filename*1*=..) become one parameter "filename*" whose value
  is the joined raw RFC 2231 form (charset'language'%XX): the client decodes
  it as it would from the header.
- A message cannot make the parse cost more than its size allows: at most
  MimeLimits.max_parts parts and max_depth levels of nesting are parsed
  (Dovecot's limits: 10,000 and 100). Past either, the rest is one opaque
  leaf, application/octet-stream: a multipart whose children are not
  parsed, or the last child of a multipart that holds the rest of its parts.
- Each multipart's delimiters are found by one regular expression run in C
  over its body, so a line that only starts like a delimiter costs no
  Python step; only the Content-* fields are read by `email`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from email.parser import BytesHeaderParser
from urllib.parse import quote

from hatoba.proto.imap.headers import HeaderField, encode_text, header_end, header_fields


@dataclass(frozen=True)
class MimeLimits:
    """How much of a message's MIME structure is parsed (see Rules)."""

    max_parts: int = 10_000
    max_depth: int = 100


DEFAULT_LIMITS = MimeLimits()
MAX_DEPTH = DEFAULT_LIMITS.max_depth  # the default, under its earlier name
# What a part beyond the limits is shown as: bytes with no structure of their own.
OPAQUE = ("application", "octet-stream")
# The fields email reads for us (parameters, RFC 2231); the rest of a header it never sees.
_EMAIL_FIELDS = frozenset({"content-type", "content-disposition", "content-transfer-encoding"})


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


class _Budget:
    """Parts still allowed in this parse."""

    def __init__(self, limits: MimeLimits) -> None:
        self.limits = limits
        self.parts = limits.max_parts

    def take(self, wanted: int) -> int:
        granted = max(0, min(wanted, self.parts))
        self.parts -= granted
        return granted


def _header_part(data: bytes, start: int, end: int, default: str) -> Part:
    """A part with its header read and its content type known; its structure not yet."""
    body_start = header_end(data, start, end)
    fields = header_fields(data[start:body_start])
    # Unfolded first (RFC 5322 §2.2.3): email keeps a fold's CRLF inside a
    # parameter value, so boundary="foo<CRLF> bar" would never match "--foo bar".
    wanted = b"".join(f.name.encode("ascii", "replace") + b":" + f.value + b"\r\n"
                      for f in fields if f.name.lower() in _EMAIL_FIELDS)
    msg = BytesHeaderParser(policy=policy.compat32).parsebytes(wanted + b"\r\n")
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
    return Part(start, body_start, end, fields, msg, maintype.strip(), subtype.strip(), params)


def _make_opaque(part: Part) -> None:
    part.maintype, part.subtype = OPAQUE
    part.params = []
    part.children, part.message = [], None


def _parse_structure(data: bytes, part: Part, depth: int, budget: _Budget) -> None:
    """Fill in part's children or encapsulated message, as far as the limits allow."""
    kind, subtype = part.maintype.lower(), part.subtype.lower()
    nested = kind == "multipart" or (kind == "message" and subtype in ("rfc822", "global"))
    if not nested:
        return
    if depth >= budget.limits.max_depth or budget.parts <= 0:
        _make_opaque(part)
        return
    if kind == "message":
        cte = (part.headers.get("content-transfer-encoding") or "7bit").strip().lower()
        if cte in ("7bit", "8bit", "binary"):
            budget.take(1)
            part.message = _header_part(data, part.body_start, part.end, "text/plain")
            _parse_structure(data, part.message, depth + 1, budget)
        return
    boundary = next((value for name, value in part.params if name.lower() == "boundary"), b"")
    if not boundary:
        return
    child_default = "message/rfc822" if subtype == "digest" else "text/plain"
    spans, more = _split_multipart(data, part.body_start, part.end, boundary, budget.parts)
    if not spans:  # BODYSTRUCTURE needs one body at least (RFC 9051 §9 body-type-mpart)
        spans = [(part.end, part.end)]
    budget.take(len(spans))
    part.children = [_header_part(data, s, e, child_default) for s, e in spans]
    if more:  # the last child holds the parts past the limit
        _make_opaque(part.children[-1])
    for child in part.children:
        _parse_structure(data, child, depth + 1, budget)


def _delimiter(boundary: bytes) -> re.Pattern[bytes]:
    """A delimiter line after its CRLF (RFC 2046 §5.1.1): "--" boundary, "--" when it is
    the close delimiter, then only white space up to the line end."""
    return re.compile(rb"--" + re.escape(boundary) + rb"(--)?[ \t]*(?=\r\n|\Z)")


def _split_multipart(data: bytes, start: int, end: int, boundary: bytes,
                     limit: int) -> tuple[list[tuple[int, int]], bool]:
    """The (start, end) of each body part between "--boundary" lines (RFC 2046 §5.1.1),
    at most `limit` of them, and whether more were left out (then the last span runs to
    the end of the entity).

    The CRLF before a delimiter belongs to the delimiter; the preamble and
    the epilogue belong to no part; a missing close delimiter ends the last
    part at the end of the entity.
    """
    delimiter = _delimiter(boundary)
    after_crlf = re.compile(rb"\r\n" + delimiter.pattern)
    spans: list[tuple[int, int]] = []
    part_start: int | None = None
    first = delimiter.match(data, start, end)
    found = [first] if first else []
    for m in itertools.chain(found, after_crlf.finditer(data, start, end)):
        j = m.start() if m is first else m.start() + 2  # where "--boundary" begins
        if part_start is not None:
            if len(spans) == limit:
                if spans:
                    spans[-1] = (spans[-1][0], end)
                return spans, True
            spans.append((part_start, max(part_start, j - 2 if j - 2 >= start else j)))
        if m.group(1):
            return spans, False
        part_start = min(m.end() + 2, end)
    if part_start is not None:
        if len(spans) == limit:
            if spans:
                spans[-1] = (spans[-1][0], end)
            return spans, True
        spans.append((part_start, end))
    return spans, False


def parse_message(data: bytes, limits: MimeLimits = DEFAULT_LIMITS) -> Part:
    """The MIME tree of a message already in CRLF form."""
    budget = _Budget(limits)
    budget.take(1)
    root = _header_part(data, 0, len(data), "text/plain")
    _parse_structure(data, root, 0, budget)
    return root


def walk(root: Part) -> Iterator[Part]:
    """Every part of the tree, each before its children, encapsulated messages included."""
    stack = [root]
    while stack:
        part = stack.pop()
        yield part
        if part.message is not None:
            stack.append(part.message)
        stack.extend(reversed(part.children))
