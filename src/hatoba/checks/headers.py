"""The header section of a received message, as the checks need it.

Works on the bytes as queued. A field is its name and its raw bytes span,
continuation lines included, so a field can be cut out of the message
without touching anything else (forged Authentication-Results).

The section is read by the same rules as hatoba's IMAP server reads it, and
whatever another program could read differently (a bare CR, odd field
names) is reported, so what the checks judge is what a reader is shown.

From (RFC 5322 §3.6.2) is read for every domain it names, the way a reader
might see one: each address of each From field, and any "@domain" anywhere
in it once encoded-words are decoded and look-alike characters folded
(a display name "service@bank.example" <x@evil.example> names bank.example
to a person). Domains are validated and turned into A-labels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.utils import getaddresses
import unicodedata

from hatoba.proto.address import AddressError, parse_domain

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
    """Every field of the header section, in order (see parse_header)."""
    return parse_header(message).fields


@dataclass(frozen=True)
class Header:
    fields: list[Field]
    ended: bool  # an empty line (or the end of the message) ended it within MAX_HEADER
    defect: str  # why the section cannot be read alike by every program ("" = it can)
    oddities: list[str]  # lines that are no clean "Name: value" field


def parse_header(message: bytes) -> Header:
    """The header section, read by the rules hatoba's IMAP server reads it with
    (proto/imap/headers.py: lines end at CRLF, LF or CR; an empty line ends it only when
    it is CRLF or LF; lines without a colon are skipped; the name is trimmed), so the
    checks judge the From a mail program is shown. What another program might read
    differently is reported: `defect` for what must be refused (a bare CR, a first
    line that would continue the fields added above it, a section over MAX_HEADER),
    `oddities` for names that are not clean (they make the message suspect)."""
    head = message[:MAX_HEADER]
    fields: list[Field] = []
    oddities: list[str] = []
    groups: list[tuple[int, int, list[bytes]]] = []  # start, end, lines
    pos = 0
    ended = False
    for line in head.splitlines(keepends=True):
        start, pos = pos, pos + len(line)
        if line in (b"\r\n", b"\n"):
            ended = True
            break
        if line[:1] in (b" ", b"\t") and groups:
            begin, _end, lines = groups[-1]
            lines.append(line)
            groups[-1] = (begin, pos, lines)
        else:
            groups.append((start, pos, [line]))
    else:
        ended = len(message) <= MAX_HEADER
    section = head[: groups[-1][1]] if groups else b""
    defect = ""
    if not ended:
        defect = f"the message header is larger than {MAX_HEADER // 1024} KiB"
    elif _BARE_CR.search(section):
        defect = "the message header holds a bare carriage return (CR without LF)"
    elif section[:1] in (b" ", b"\t"):
        defect = "the message header starts with a continuation line"
    for start, end, lines in groups:
        raw = b"".join(lines)
        name_bytes, sep, rest = raw.partition(b":")
        name = name_bytes.strip()
        if not (sep and name and b" " not in name):
            oddities.append(f"a header line without a field name: {raw[:40]!r}")
            continue
        if name != name_bytes or not _CLEAN_NAME.match(name):
            oddities.append(f"an odd field name: {name_bytes[:40]!r}")
        value = b" ".join(p.strip() for p in rest.splitlines()).strip()
        fields.append(Field(name.decode("ascii", "replace").lower(), start, end, value.decode("utf-8", "replace")))
    return Header(fields, ended, defect, oddities)


_BARE_CR = re.compile(rb"\r(?!\n)")
_CLEAN_NAME = re.compile(rb"^[!-9;-~]+$")  # RFC 5322 §3.6.8 ftext


@dataclass(frozen=True)
class FromField:
    addresses: list[str]  # each parsed address, its domain lower case in A-labels
    domains: list[str]  # every domain the From fields name, addresses' first, no repeats
    problem: str  # "" when there is exactly one From field, naming addresses only, all of which parse
    # No From at all, or one that names nobody: malformed, but showing no one to be believed either.
    missing: bool = False


def read_from(fields: list[Field]) -> FromField:
    froms = [f for f in fields if f.name == "from"]
    if not froms:
        return FromField([], [], "no From field", missing=True)
    problems: list[str] = []
    if len(froms) > 1:
        problems.append("more than one From field")
    addresses: list[str] = []
    domains: list[str] = []
    for field in froms:
        for candidate in _AT_DOMAIN.findall(_as_read(field.value)):
            try:
                domains.append(parse_domain(candidate.rstrip(".")))
            except AddressError:
                problems.append(f"From names {candidate[:80]!r}, which is not a domain")
        try:
            parsed = getaddresses([field.value])
        except Exception:  # e.g. RecursionError on thousands of nested comments
            parsed = []
            problems.append("a From field that does not parse")
        for _display, address in parsed:
            if not address:
                continue  # an empty group ("undisclosed-recipients:;") names no one
            local, at, domain = address.rpartition("@")
            try:
                if not at or not local:
                    raise AddressError("no local part or domain")
                domain = parse_domain(domain.strip().rstrip("."))
            except AddressError:
                problems.append(f"From address {address[:80]!r} is not an address")
                continue
            addresses.append(f"{local}@{domain}")
            domains.insert(0, domain)
    if not addresses and not problems and not domains:
        return FromField([], [], "From field names no address", missing=True)
    if len({a.rpartition("@")[2] for a in addresses}) > 1:
        problems.append("From names mailboxes of several domains")
    return FromField(addresses, list(dict.fromkeys(domains)), problems[0] if problems else "")


def _as_read(value: str) -> str:
    """The field as a reader sees it: encoded-words (RFC 2047) decoded, compatibility
    characters folded (NFKC turns a full-width "＠" into "@")."""
    if value.isascii() and "=?" not in value:
        return value  # nothing encoded, nothing to fold
    try:
        decoded = str(make_header(decode_header(value)))
    except Exception:  # a broken encoded-word: read as written
        decoded = value
    return unicodedata.normalize("NFKC", f"{value} {decoded}")


def without_spans(message: bytes, spans: list[tuple[int, int]]) -> bytes:
    """`message` with the byte ranges in `spans` (sorted, not overlapping) cut out."""
    out, pos = [], 0
    for start, end in spans:
        out.append(message[pos:start])
        pos = end
    out.append(message[pos:])
    return b"".join(out)
