"""The header section of a received message, as the checks need it.

Works on the bytes as queued. A field is its name and its raw bytes span,
continuation lines included, so a field can be cut out of the message
without touching anything else (forged Authentication-Results).

Lines end at CRLF, at a bare LF, and at a bare CR too: mail programs (and
hatoba's own IMAP parser) split there, so a field hidden behind a bare CR
must be seen by the checks as well.

From (RFC 5322 §3.6.2) is read for every domain it names, the way a reader
might see one: each address of each From field, and any "@domain" anywhere
in it (a display name "service@bank.example" <x@evil.example> names
bank.example to a person). Domains are validated and turned into A-labels.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import getaddresses

from hatoba.proto.address import AddressError, parse_domain

_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")
_LINE_END = re.compile(rb"\r\n|\r|\n")
_AT_DOMAIN = re.compile(r"@([^\s<>@,;:\"()\[\]\\]+)")
MAX_HEADER = 1024 * 1024  # bytes of header section read; a longer one is a problem in itself


@dataclass(frozen=True)
class Field:
    name: str  # lower case
    start: int  # byte offsets of the whole field, its line ends included
    end: int
    value: str  # unfolded, without the name and the colon

    def raw(self, message: bytes) -> bytes:
        return message[self.start : self.end]


def header_fields(message: bytes) -> list[Field]:
    """Every field of the header section, in order; stops at the first empty line
    (or after MAX_HEADER bytes: see header_too_large)."""
    return parse_header(message)[0]


def header_too_large(message: bytes) -> bool:
    """True when no empty line ends the header section within MAX_HEADER bytes."""
    return not parse_header(message)[1] and len(message) > MAX_HEADER


def parse_header(message: bytes) -> tuple[list[Field], bool]:
    """The fields, and whether an empty line (or the end of the message) ended the section."""
    fields: list[Field] = []
    lines = _lines(message[:MAX_HEADER])
    current: list[bytes] = []  # the lines of the field being read
    start = end = 0
    ended = False
    for line_start, line_end, text in lines:
        if current and text[:1] in (b" ", b"\t"):  # a continuation line
            current.append(text)
            end = line_end
            continue
        if current:
            _add_field(fields, current, start, end)
        if not text:
            ended = True
            break
        current, start, end = [text], line_start, line_end
    else:
        if current:
            _add_field(fields, current, start, end)
        ended = len(message) <= MAX_HEADER
    return fields, ended


def _add_field(fields: list[Field], parts: list[bytes], start: int, end: int) -> None:
    match = _FIELD_NAME.match(parts[0])
    if not match:
        return
    name = match.group(1).decode("ascii").lower()
    raw = b" ".join(p.strip() for p in [parts[0][match.end():], *parts[1:]])
    fields.append(Field(name, start, end, raw.strip().decode("utf-8", "replace")))


def _lines(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(start, end with the line end, text without it) of each line, read as they are asked for."""
    pos = 0
    for match in _LINE_END.finditer(data):
        yield pos, match.end(), data[pos : match.start()]
        pos = match.end()
    if pos < len(data):
        yield pos, len(data), data[pos:]


@dataclass(frozen=True)
class FromField:
    addresses: list[str]  # each parsed address, its domain lower case in A-labels
    domains: list[str]  # every domain the From fields name, addresses' first, no repeats
    problem: str  # "" when there is exactly one From field, naming addresses only, all of which parse


def read_from(fields: list[Field]) -> FromField:
    froms = [f for f in fields if f.name == "from"]
    if not froms:
        return FromField([], [], "no From field")
    problems: list[str] = []
    if len(froms) > 1:
        problems.append("more than one From field")
    addresses: list[str] = []
    domains: list[str] = []
    for field in froms:
        try:
            parsed = getaddresses([field.value])
        except Exception:  # e.g. RecursionError on thousands of nested comments
            parsed = []
            problems.append("a From field that does not parse")
        for _display, address in parsed:
            local, at, domain = address.rpartition("@")
            try:
                if not at or not local:
                    raise AddressError("no local part or domain")
                domain = parse_domain(domain.strip().rstrip("."))
            except AddressError:
                problems.append(f"From address {address[:80]!r} is not an address")
                continue
            addresses.append(f"{local}@{domain}")
            domains.append(domain)
        for candidate in _AT_DOMAIN.findall(field.value):
            try:
                domains.append(parse_domain(candidate.rstrip(".")))
            except AddressError:
                problems.append(f"From names {candidate[:80]!r}, which is not a domain")
    if not addresses and not problems:
        problems.append("From field names no address")
    return FromField(addresses, list(dict.fromkeys(domains)), problems[0] if problems else "")


def without_spans(message: bytes, spans: list[tuple[int, int]]) -> bytes:
    """`message` with the byte ranges in `spans` (sorted, not overlapping) cut out."""
    out, pos = [], 0
    for start, end in spans:
        out.append(message[pos:start])
        pos = end
    out.append(message[pos:])
    return b"".join(out)
