"""What a TLS ClientHello asks for: the server name (SNI) and the ALPN protocols.

The https listener must answer a TLS-ALPN-01 validation (RFC 8737) with a
challenge certificate, and every other client with the real one, before the
handshake starts: Python's ssl module lets a server switch context on the
server name but cannot see the client's ALPN list in time. So, while a
TLS-ALPN-01 challenge is pending, the https listener reads the ClientHello
first and this module reads those two extensions from its bytes.

Only what is needed is parsed (RFC 8446 §4.1.2, RFC 6066 §3, RFC 7301 §3.1),
and every length is checked against the bytes present: a short or malformed
hello is "incomplete" or None, never an exception, and the handshake then
goes on with the ordinary certificate, where OpenSSL judges it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAX_HELLO = 16384 + 5  # one TLS record: a ClientHello split over records is not a validator's
HANDSHAKE = 22
CLIENT_HELLO = 1
EXT_SERVER_NAME = 0
EXT_ALPN = 16
INCOMPLETE = "incomplete"


@dataclass(frozen=True)
class Hello:
    server_name: str | None
    alpn: tuple[bytes, ...]


def parse(data: bytes) -> Hello | str | None:
    """The hello in `data`; INCOMPLETE while its record has not all arrived; None when it is no ClientHello."""
    if len(data) < 5:
        return INCOMPLETE if _could_be_handshake(data) else None
    content_type, _version, length = struct.unpack("!BHH", data[:5])
    if content_type != HANDSHAKE or length > MAX_HELLO - 5:
        return None
    if len(data) < 5 + length:
        return INCOMPLETE
    try:
        return _hello(memoryview(data)[5:5 + length])
    except (IndexError, ValueError, struct.error, UnicodeDecodeError):
        return None


def _could_be_handshake(data: bytes) -> bool:
    return not data or data[0] == HANDSHAKE


class _Reader:
    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.at = 0

    def take(self, n: int) -> memoryview:
        if self.at + n > len(self.view):
            raise ValueError("truncated")
        part = self.view[self.at:self.at + n]
        self.at += n
        return part

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def vector(self, width: int) -> memoryview:
        return self.take(self.u8() if width == 1 else self.u16() if width == 2 else int.from_bytes(self.take(3), "big"))

    def done(self) -> bool:
        return self.at >= len(self.view)


def _hello(record: memoryview) -> Hello | None:
    r = _Reader(record)
    if r.u8() != CLIENT_HELLO:
        return None
    body = _Reader(r.vector(3))
    body.take(2 + 32)  # legacy_version, random
    body.vector(1)  # legacy_session_id
    body.vector(2)  # cipher_suites
    body.vector(1)  # legacy_compression_methods
    if body.done():
        return Hello(None, ())  # no extensions at all
    extensions = _Reader(body.vector(2))
    server_name: str | None = None
    alpn: tuple[bytes, ...] = ()
    while not extensions.done():
        kind = extensions.u16()
        data = _Reader(extensions.vector(2))
        if kind == EXT_SERVER_NAME:
            names = _Reader(data.vector(2))
            while not names.done():
                name_type = names.u8()
                name = names.vector(2)
                if name_type == 0 and server_name is None:  # host_name
                    server_name = bytes(name).decode("ascii").rstrip(".").lower()
        elif kind == EXT_ALPN:
            protocols = _Reader(data.vector(2))
            found = []
            while not protocols.done():
                found.append(bytes(protocols.vector(1)))
            alpn = tuple(found)
    return Hello(server_name, alpn)


__all__ = ["INCOMPLETE", "MAX_HELLO", "Hello", "parse"]
