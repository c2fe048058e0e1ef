"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3), used before UTF8=ACCEPT.

Rules:
- Printable US-ASCII (0x20-0x7e) stands for itself, except "&", written "&-".
- Anything else is UTF-16BE in modified BASE64 ("," for "/", no "=" padding)
  between "&" and "-".
- decode() is strict: it refuses what encode() would never write (printable
  ASCII inside a shift, non-zero pad bits, odd byte counts, lone surrogates,
  raw 8-bit or control characters), so one name has one spelling on disk.
"""

from __future__ import annotations

import base64
import binascii
import re

_B64_CHUNK = re.compile(r"[A-Za-z0-9+,]+")


def encode(name: str) -> str:
    """`name` in modified UTF-7; a lone surrogate raises ValueError (UnicodeEncodeError)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def _decode_shift(chunk: str) -> str:
    if not _B64_CHUNK.fullmatch(chunk):
        raise ValueError("invalid modified BASE64 in mailbox name")
    b64 = chunk.replace(",", "/")
    try:
        raw = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
    except binascii.Error:
        raise ValueError("invalid modified BASE64 in mailbox name") from None
    # Re-encoding catches non-zero pad bits and over-long chunks.
    if base64.b64encode(raw).decode("ascii").rstrip("=") != b64 or len(raw) % 2:
        raise ValueError("invalid modified BASE64 in mailbox name")
    try:
        text = raw.decode("utf-16-be")
    except UnicodeDecodeError:
        raise ValueError("invalid UTF-16 in mailbox name") from None
    # RFC 3501 §5.1.3: printable US-ASCII MUST NOT be BASE64-encoded.
    if any(0x20 <= ord(ch) <= 0x7E for ch in text):
        raise ValueError("printable ASCII encoded in mailbox name")
    return text


def decode(name: str) -> str:
    """The Unicode name; ValueError on anything that is not modified UTF-7."""
    out: list[str] = []
    i = 0
    while i < len(name):
        ch = name[i]
        if not 0x20 <= ord(ch) <= 0x7E:
            raise ValueError("mailbox name is not modified UTF-7")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = name.find("-", i + 1)
        if end < 0:
            raise ValueError("unterminated & in mailbox name")
        chunk = name[i + 1 : end]
        out.append(_decode_shift(chunk) if chunk else "&")
        i = end + 1
    return "".join(out)
