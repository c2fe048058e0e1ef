"""The header section of a received message, as the checks need it.

Works on the bytes as queued (CRLF line ends). A field is its name and its
raw bytes span, continuation lines included, so a field can be cut out of the
message without touching anything else (forged Authentication-Results).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import getaddresses

_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")


@dataclass(frozen=True)
class Field:
    name: str  # lower case
    start: int  # byte offsets of the whole field, its line ends included
    end: int
    value: str  # unfolded, without the name and the colon

    def raw(self, message: bytes) -> bytes:
        return message[self.start : self.end]


def header_fields(message: bytes) -> list[Field]:
    """Every field of the header section, in order; stops at the first empty line."""
    fields: list[Field] = []
    pos, size = 0, len(message)
    while pos < size:
        end = _line_end(message, pos)
        line = message[pos:end]
        if line in (b"\r\n", b"\n", b""):
            break
        match = _FIELD_NAME.match(line)
        # Continuation lines belong to the field above.
        while end < size and message[end : end + 1] in (b" ", b"\t"):
            end = _line_end(message, end)
        if match:
            name = match.group(1).decode("ascii").lower()
            raw = message[pos + match.end() : end]
            value = re.sub(rb"\r?\n([ \t])", rb"\1", raw).strip().decode("utf-8", "replace")
            fields.append(Field(name, pos, end, value))
        pos = end
    return fields


def _line_end(message: bytes, pos: int) -> int:
    found = message.find(b"\n", pos)
    return len(message) if found < 0 else found + 1


def from_addresses(fields: list[Field]) -> tuple[list[str], str]:
    """The addresses of the From field (RFC 5322 §3.6.2), domains in lower case, and what is wrong
    with it ("" if nothing)."""
    froms = [f for f in fields if f.name == "from"]
    if not froms:
        return [], "no From field"
    if len(froms) > 1:
        return [], "more than one From field"
    addresses: list[str] = []
    for _display, address in getaddresses([froms[0].value]):
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain or " " in domain:
            return [], f"From address {address!r} has no domain"
        addresses.append(f"{local}@{domain.strip().rstrip('.').lower()}")
    if not addresses:
        return [], "From field names no address"
    return addresses, ""


def without_spans(message: bytes, spans: list[tuple[int, int]]) -> bytes:
    """`message` with the byte ranges in `spans` (sorted, not overlapping) cut out."""
    out, pos = [], 0
    for start, end in spans:
        out.append(message[pos:start])
        pos = end
    out.append(message[pos:])
    return b"".join(out)
