"""Events the SMTP server core hands to its session adapter.

Every event except DataChunk is a command waiting for exactly one reply: the
core pauses (next_event() returns PAUSED) until the adapter calls send().
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from hatoba.proto.address import Path
from hatoba.proto.sasl import Credentials, Verified
from hatoba.proto.smtp.replies import Reply


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA: Final = _Sentinel("NEED_DATA")  # feed more bytes with receive_data()
PAUSED: Final = _Sentinel("PAUSED")  # send() the reply to the last event first


@dataclass(frozen=True, slots=True)
class CoreReply:
    """A command the core answered itself (syntax, sequence, limits, EHLO...).

    The adapter sends `reply` unchanged; `verb` is for the debug log.
    """

    verb: str
    reply: Reply


@dataclass(frozen=True, slots=True)
class Hello:
    """EHLO or HELO; `reply` is the greeting/extension list the core built."""

    domain: str
    extended: bool
    reply: Reply


@dataclass(frozen=True, slots=True)
class StartTlsRequested:
    """Answer R220_READY_TLS, start TLS, then call conn.tls_started()."""


@dataclass(frozen=True, slots=True)
class AuthCredentials:
    """A finished SASL exchange; answer R235_AUTH_OK or R535_AUTH_FAILED.

    `credentials` holds a password to check (PLAIN, LOGIN), or the verdict of
    a mechanism that checked the client's proof itself (SCRAM)."""

    mechanism: str
    credentials: Credentials | Verified


@dataclass(frozen=True, slots=True)
class AuthLookup:
    """SCRAM wants `username`'s stored keys: call conn.sasl_keys(keys), or
    send() a refusal (the exchange then ends)."""

    mechanism: str
    username: str
    authzid: str


@dataclass(frozen=True, slots=True)
class MailFrom:
    path: Path
    size: int | None  # SIZE= (RFC 1870)
    body_8bit: bool  # BODY=8BITMIME (RFC 6152)
    smtputf8: bool  # SMTPUTF8 (RFC 6531)


@dataclass(frozen=True, slots=True)
class RcptTo:
    path: Path


@dataclass(frozen=True, slots=True)
class DataStart:
    """DATA accepted by the core; answer R354_START_DATA (or an error)."""


@dataclass(frozen=True, slots=True)
class DataChunk:
    """Decoded message bytes (dot-unstuffed, CRLF lines). Needs no reply."""

    data: bytes


@dataclass(frozen=True, slots=True)
class DataEnd:
    """End of message. With `error` set, discard the message and send `error`;
    otherwise commit it to the spool and answer R250_QUEUED."""

    size: int
    error: Reply | None


@dataclass(frozen=True, slots=True)
class Reset:
    """RSET (or EHLO mid-transaction): drop the transaction; answer R250_RESET."""

    verb: str
    reply: Reply


@dataclass(frozen=True, slots=True)
class QuitRequested:
    """QUIT: answer R221_BYE; the core is closed afterwards."""


Event = (
    CoreReply | Hello | StartTlsRequested | AuthCredentials | AuthLookup | MailFrom | RcptTo
    | DataStart | DataChunk | DataEnd | Reset | QuitRequested
)
