"""Events the POP3 server core hands to its session adapter, and MessageInfo.

Every event is a command waiting for exactly one answer: the core pauses
(next_event() returns PAUSED) until the adapter answers it with send(), or
with login_succeeded() for a login event, or with retr_ok()/top_ok(), the
message bytes and message_sent() for Retrieve and Top.

Message indices are 0-based positions in the maildrop list the adapter gave
to login_succeeded(); the client's message number is index + 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hatoba.proto.pop3.replies import Pop3Reply
from hatoba.proto.sasl import Credentials, Verified
from hatoba.proto.smtp.events import NEED_DATA, PAUSED  # noqa: F401  (re-exported: one pair of sentinels for every core)
from hatoba.proto.smtp.events import AuthLookup  # noqa: F401  (re-exported: one SCRAM key look-up for every core)



@dataclass(frozen=True, slots=True)
class MessageInfo:
    """One message of a maildrop, as the store lists it at login."""

    size: int  # octets as sent: CRLF line ends, before dot-stuffing (RFC 1939 §5 LIST)
    uid: str  # RFC 1939 §7: 1 to 70 characters in 0x21..0x7E, stable across sessions


@dataclass(frozen=True, slots=True)
class CoreReply:
    """A command the core answered itself (syntax, state, CAPA, STAT, LIST, DELE...).

    The adapter sends `reply` unchanged; `verb` is for the debug log.
    """

    verb: str
    reply: Pop3Reply


@dataclass(frozen=True, slots=True)
class StartTlsRequested:
    """STLS: send OK_STLS, start TLS, then call conn.tls_started() (RFC 2595 §4)."""


@dataclass(frozen=True, slots=True)
class UserPass:
    """USER then PASS: check the password; login_succeeded() or send(ERR_LOGIN_FAILED)."""

    user: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ApopLogin:
    """APOP (RFC 1939 §7): digest is MD5(greeting timestamp + secret), 32 lower-case hex digits."""

    user: str
    digest: str


@dataclass(frozen=True, slots=True)
class AuthCredentials:
    """A finished SASL exchange (RFC 5034); login_succeeded() or send(ERR_LOGIN_FAILED).

    `credentials` holds a password to check (PLAIN, LOGIN), or the verdict of
    a mechanism that checked the client's proof itself (SCRAM)."""

    mechanism: str
    credentials: Credentials | Verified


@dataclass(frozen=True, slots=True)
class Retrieve:
    """RETR: write conn.retr_ok(), the message through body.RetrEncoder, then call conn.message_sent().

    If the message cannot be read, send(ERR_MESSAGE_UNAVAILABLE) instead.
    """

    index: int
    info: MessageInfo


@dataclass(frozen=True, slots=True)
class Top:
    """TOP: like Retrieve, with conn.top_ok() and body.TopEncoder(lines)."""

    index: int
    info: MessageInfo
    lines: int


@dataclass(frozen=True, slots=True)
class Quit:
    """QUIT after login (RFC 1939 §6, UPDATE state): remove `deleted`, then
    send(quit_ok(n)) or send(ERR_QUIT_FAILED). The connection closes either way."""

    deleted: tuple[int, ...]  # 0-based indices, ascending
    uids: tuple[str, ...]  # the uids of those messages, same order


LoginEvent = UserPass | ApopLogin | AuthCredentials

Event = (
    CoreReply | StartTlsRequested | UserPass | ApopLogin | AuthCredentials | AuthLookup | Retrieve | Top | Quit
)
