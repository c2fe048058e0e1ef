"""BODY and BODYSTRUCTURE (RFC 9051 §7.5.2, §9 body) from a message's MIME tree.

Rules:
- Values are sent as the message spells them (case of types, encodings,
  parameter names as email gives them), as Dovecot does.
- Sizes and line counts count the CRLF form. Text line counts are the number
  of CRLFs in the body plus one for a last line without one (the CRLF before
  a boundary belongs to the boundary, RFC 2046 §5.1.1, so "hi" between two
  boundaries is one line).
"""

from __future__ import annotations

from collections.abc import Sequence

from hatoba.proto.imap.encode import nstring, string
from hatoba.proto.imap.envelope import envelope
from hatoba.proto.imap.headers import header_value
from hatoba.proto.imap.mime import Part, content_params


def _count_lines(body: bytes) -> int:
    return body.count(b"\r\n") + (1 if body and not body.endswith(b"\r\n") else 0)


def _param_list(params: Sequence[tuple[str, bytes]]) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(string(name) + b" " + string(value) for name, value in params) + b")"


def _disposition(part: Part) -> bytes:
    parsed = content_params(part.headers, "content-disposition")
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
