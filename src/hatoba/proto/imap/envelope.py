"""ENVELOPE (RFC 9051 §7.5.2) and the RFC 5322 §3.4 address-list reader it needs.

Rules:
- Names, subjects and dates are sent as the message spells them: RFC 2047
  encoded words stay raw (RFC 9051 §7.5.2), the client decodes them.
- The address reader never fails: unclosed quotes, comments and brackets run
  to the end of the value, as mail readers do.
"""

from __future__ import annotations

from collections.abc import Sequence

from hatoba.proto.imap.encode import nstring
from hatoba.proto.imap.headers import HeaderField, decode_text, encode_text, header_value

# (name, adl, mailbox, host); host None with a mailbox starts a group, all None ends it.
Address = tuple[str | None, str | None, str | None, str | None]

_SPECIALS = "<>@,;:."


def tokenize(text: str) -> list[tuple[str, str]]:
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
    tokens = tokenize(value)
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
    addresses = parse_address_list(decode_text(value))
    if not addresses:
        return b"NIL"
    return b"(" + b"".join(
        b"(" + b" ".join(nstring(None if v is None else encode_text(v)) for v in a) + b")" for a in addresses
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
