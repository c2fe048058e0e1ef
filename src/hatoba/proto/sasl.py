"""The one SASL implementation (RFC 4422), shared by SMTP, IMAP and POP3.

SMTP AUTH (RFC 4954), IMAP AUTHENTICATE (RFC 3501 §6.2.2, RFC 9051 §6.2.2)
and POP3 AUTH (RFC 5034) all run the same exchange: the server sends
base64 challenges, the client answers with base64 responses or "*" to
cancel. Only the framing differs ("334 ", "+ ", "+ "), so the framing stays
in each protocol core and the mechanisms live here as step machines.

Rules:
- Mechanisms never look anything up: PLAIN and LOGIN yield Credentials for
  the caller to check; SCRAM yields NeedKeys, the caller hands the stored
  keys to keys(), and the mechanism checks the proof (Verified).
- Mechanisms take and return raw bytes; decode_response() and
  encode_challenge() do the base64 in one place.
- A malformed client response raises SaslError (the exchange is over; the
  protocol answers 501 / BAD / -ERR). Calling a mechanism out of order is a
  bug in hatoba and raises LocalProtocolError.
- Credentials never show the password in their repr, so they cannot leak
  into logs or tracebacks by accident.
- Offered: PLAIN and LOGIN (the caller checks the password against its
  hash) and SCRAM-SHA-256 (RFC 7677), which checks the client's proof itself
  against the stored ScramKeys and yields Verified. CRAM-MD5 and the like are
  not offered: they need the plain password on the server. All run over TLS
  only, which the protocol cores enforce.
- SCRAM-SHA-256-PLUS exists only on a connection with channel-binding data
  (server_mechanism() returns None without it, mechanisms_offered() drops it).
- An unknown SCRAM user gets a salt and iteration count that look like a
  real user's (scram.unknown_user_keys(), from the caller), and a proof
  that can never match: the exchange cannot tell who exists.
"""

from __future__ import annotations

import binascii
import enum
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from hatoba.proto.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "MAX_RESPONSE_OCTETS",
    "SERVER_MECHANISMS",
    "Cancelled",
    "Challenge",
    "Credentials",
    "LoginClient",
    "LoginServer",
    "NeedKeys",
    "PlainServer",
    "SaslError",
    "SaslResult",
    "ScramKeys",
    "ServerMechanism",
    "Verified",
    "client_plain",
    "decode_response",
    "encode_challenge",
    "mechanisms_offered",
    "server_mechanism",
]

# Far above what PLAIN needs (RFC 4616 §2 asks for 3 x 255 octets) and small
# enough that a client cannot make us hold much memory per exchange.
MAX_RESPONSE_OCTETS = 4096
# Base64 of MAX_RESPONSE_OCTETS octets: longer lines are refused before decoding.
_MAX_ENCODED_OCTETS = (MAX_RESPONSE_OCTETS + 2) // 3 * 4


class SaslError(RemoteProtocolError):
    """The client's SASL response is malformed; the exchange is over."""


@dataclass(frozen=True)
class Challenge:
    """A server challenge, raw; the protocol core base64-encodes it."""

    data: bytes


@dataclass(frozen=True)
class Credentials:
    """What the client claims: check `password` for `username`, then authorise `authzid`.

    `authzid` is "" when the client did not ask to act as someone else.
    """

    authzid: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Cancelled:
    """The client answered "*" (RFC 4422 §3.5; RFC 4954 §4: reply 501)."""


@dataclass(frozen=True)
class ScramKeys:
    """What the server stores for SCRAM (RFC 5802 §3): never the password."""

    iterations: int
    salt: bytes
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)


@dataclass(frozen=True)
class NeedKeys:
    """SCRAM: the server must look up `username`'s ScramKeys and hand them to keys()."""

    username: str
    authzid: str


@dataclass(frozen=True)
class Verified:
    """A mechanism that checks the client's proof itself (SCRAM) has finished.

    `ok` is False for a wrong password, an unknown user or a channel binding
    that does not match this connection."""

    authzid: str
    username: str
    ok: bool


SaslResult = Challenge | Credentials | NeedKeys | Verified


class ServerMechanism(Protocol):
    """The server half of one mechanism, for one exchange."""

    name: str

    def start(self, initial_response: bytes | None) -> SaslResult:
        """Begin; `initial_response` is decoded, b"" for "=", None when absent."""
        ...

    def step(self, response: bytes) -> SaslResult:
        """Take the client's decoded answer to the last Challenge."""
        ...

    def keys(self, keys: ScramKeys | None) -> SaslResult:
        """Continue after NeedKeys with the user's keys (scram.unknown_user_keys()
        for a user without any); mechanisms that never ask raise LocalProtocolError."""
        ...


# ---------------------------------------------------------------------------
# Framing shared by SMTP, IMAP and POP3
# ---------------------------------------------------------------------------


def decode_response(line: bytes) -> bytes | Cancelled:
    """Decode one client response line (without CRLF).

    "*" cancels (RFC 4422 §3.5, RFC 4954 §4, RFC 3501 §6.2.2, RFC 5034 §4);
    "=" is the empty initial response (RFC 4954 §4, RFC 4959 §3); anything
    else must be strict base64: no white space, correct padding, nothing
    after the padding (RFC 4954 §4 wants a 501 for invalid base64).
    """
    if line == b"*":
        return Cancelled()
    if line == b"=":
        return b""
    if len(line) > _MAX_ENCODED_OCTETS:
        raise SaslError("SASL response too long")
    if len(line) % 4:
        # strict_mode alone lets a stray "=" after a full quantum through.
        raise SaslError("SASL response is not valid base64")
    try:
        return binascii.a2b_base64(line, strict_mode=True)
    except binascii.Error:
        raise SaslError("SASL response is not valid base64") from None


def encode_challenge(data: bytes) -> bytes:
    """Base64 of a challenge, on one line; b"" for an empty challenge."""
    return binascii.b2a_base64(data, newline=False)


def _check_length(response: bytes) -> None:
    if len(response) > MAX_RESPONSE_OCTETS:
        raise SaslError("SASL response too long")


def _text(raw: bytes, what: str) -> str:
    """Decode one field as UTF-8 without NUL (RFC 4616 §2: SAFE)."""
    if b"\x00" in raw:
        raise SaslError(f"NUL not allowed in the SASL {what}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError(f"SASL {what} is not valid UTF-8") from None


class _State(enum.Enum):
    NEW = enum.auto()
    WAIT_MESSAGE = enum.auto()
    WAIT_USERNAME = enum.auto()
    WAIT_PASSWORD = enum.auto()
    WAIT_KEYS = enum.auto()
    WAIT_PROOF = enum.auto()
    WAIT_ACK = enum.auto()
    DONE = enum.auto()


# ---------------------------------------------------------------------------
# PLAIN (RFC 4616)
#
# RFC 4616 §2
#   message   = [authzid] UTF8NUL authcid UTF8NUL passwd
#   authcid   = 1*SAFE ; MUST accept up to 255 octets
#   authzid   = 1*SAFE ; MUST accept up to 255 octets
#   passwd    = 1*SAFE ; MUST accept up to 255 octets
#   UTF8NUL   = %x00 ; UTF-8 encoded NUL character
#   SAFE      = UTF1 / UTF2 / UTF3 / UTF4
#               ;; any UTF-8 encoded Unicode character except NUL
# ---------------------------------------------------------------------------


def _parse_plain(message: bytes) -> Credentials:
    _check_length(message)
    parts = message.split(b"\x00")
    if len(parts) != 3:
        raise SaslError("SASL PLAIN message must be [authzid] NUL username NUL password")
    authzid, username, password = (_text(p, f) for p, f in zip(parts, ("authzid", "username", "password")))
    if not username:
        raise SaslError("empty SASL username")
    if not password:
        raise SaslError("empty SASL password")
    return Credentials(authzid, username, password)


class PlainServer:
    """Server side of PLAIN: one message, possibly as the initial response."""

    name: str = "PLAIN"

    def __init__(self, channel_bindings: Mapping[str, bytes] | None = None) -> None:
        """`channel_bindings` is ignored: PLAIN has no channel binding."""
        self._state = _State.NEW

    def start(self, initial_response: bytes | None) -> SaslResult:
        if self._state is not _State.NEW:
            raise LocalProtocolError("SASL PLAIN started twice")
        if initial_response is None:
            # RFC 4616 §2 / RFC 4422 §5: with no initial response the server
            # sends an empty challenge and the client sends the message.
            self._state = _State.WAIT_MESSAGE
            return Challenge(b"")
        return self._finish(initial_response)

    def step(self, response: bytes) -> SaslResult:
        if self._state is not _State.WAIT_MESSAGE:
            raise LocalProtocolError("SASL PLAIN step out of order")
        return self._finish(response)

    def keys(self, keys: ScramKeys | None) -> SaslResult:
        raise LocalProtocolError("SASL PLAIN never asks for SCRAM keys")

    def _finish(self, message: bytes) -> Credentials:
        self._state = _State.DONE
        return _parse_plain(message)


# ---------------------------------------------------------------------------
# LOGIN (draft-murchison-sasl-login-00)
#
#   The server asks for the user name, then the password, each as a
#   challenge; each client response is the bare value. The draft suggests
#   "User Name" and "Password" as challenges; we send "Username:" and
#   "Password:", which is what deployed servers send and what some clients
#   (Outlook among them) look for.
# ---------------------------------------------------------------------------

LOGIN_USERNAME_CHALLENGE = b"Username:"
LOGIN_PASSWORD_CHALLENGE = b"Password:"


class LoginServer:
    """Server side of LOGIN: username then password, one challenge each."""

    name: str = "LOGIN"

    def __init__(self, channel_bindings: Mapping[str, bytes] | None = None) -> None:
        """`channel_bindings` is ignored: LOGIN has no channel binding."""
        self._state = _State.NEW
        self._username = ""

    def start(self, initial_response: bytes | None) -> SaslResult:
        if self._state is not _State.NEW:
            raise LocalProtocolError("SASL LOGIN started twice")
        if initial_response is None:
            self._state = _State.WAIT_USERNAME
            return Challenge(LOGIN_USERNAME_CHALLENGE)
        # Clients may send the username with the command: AUTH LOGIN <b64>.
        return self._take_username(initial_response)

    def step(self, response: bytes) -> SaslResult:
        if self._state is _State.WAIT_USERNAME:
            return self._take_username(response)
        if self._state is _State.WAIT_PASSWORD:
            self._state = _State.DONE
            _check_length(response)
            password = _text(response, "password")
            if not password:
                raise SaslError("empty SASL password")
            return Credentials("", self._username, password)
        raise LocalProtocolError("SASL LOGIN step out of order")

    def keys(self, keys: ScramKeys | None) -> SaslResult:
        raise LocalProtocolError("SASL LOGIN never asks for SCRAM keys")

    def _take_username(self, response: bytes) -> Challenge:
        self._state = _State.DONE  # until the username proves valid
        _check_length(response)
        username = _text(response, "username")
        if not username:
            raise SaslError("empty SASL username")
        self._username = username
        self._state = _State.WAIT_PASSWORD
        return Challenge(LOGIN_PASSWORD_CHALLENGE)


SCRAM = "SCRAM-SHA-256"
SCRAM_PLUS = "SCRAM-SHA-256-PLUS"


def _scram(channel_bindings: Mapping[str, bytes], *, plus: bool = False) -> ServerMechanism:
    from hatoba.proto.scram import ScramServer  # proto/scram.py builds on this module's types

    return ScramServer(channel_bindings, plus=plus)


# Each factory takes the connection's channel-binding data (ignored by most).
SERVER_MECHANISMS: Mapping[str, Callable[[Mapping[str, bytes]], ServerMechanism]] = MappingProxyType(
    {
        "PLAIN": PlainServer,
        "LOGIN": LoginServer,
        SCRAM: _scram,
        SCRAM_PLUS: functools.partial(_scram, plus=True),
    }
)


def _needs_binding(name: str) -> bool:
    return name.endswith("-PLUS")  # RFC 5802 §4: the -PLUS variant is the one with channel binding


def server_mechanism(name: str, channel_bindings: Mapping[str, bytes] | None = None) -> ServerMechanism | None:
    """A fresh server mechanism for `name` (case-insensitive); None if unknown or, for a
    -PLUS mechanism, if this connection has no channel-binding data."""
    name = name.upper()
    factory = SERVER_MECHANISMS.get(name)
    if factory is None or (_needs_binding(name) and not channel_bindings):
        return None
    return factory(channel_bindings or {})


def mechanisms_offered(configured: Iterable[str], *, channel_binding: bool) -> tuple[str, ...]:
    """The configured mechanisms that exist, in order; -PLUS ones only with channel binding."""
    offered: list[str] = []
    for name in configured:
        name = name.upper()
        if name in SERVER_MECHANISMS and name not in offered and (channel_binding or not _needs_binding(name)):
            offered.append(name)
    return tuple(offered)


# ---------------------------------------------------------------------------
# Client halves, for outbound AUTH
# ---------------------------------------------------------------------------


def _client_field(value: str, what: str) -> bytes:
    if "\x00" in value:
        raise LocalProtocolError(f"NUL not allowed in the SASL {what}")
    return value.encode("utf-8")


def client_plain(username: str, password: str, authzid: str = "") -> bytes:
    """The PLAIN message (raw, to send as initial response) (RFC 4616 §2)."""
    if not username or not password:
        raise LocalProtocolError("SASL PLAIN needs a username and a password")
    return b"\x00".join(
        (_client_field(authzid, "authzid"), _client_field(username, "username"), _client_field(password, "password"))
    )


class LoginClient:
    """Client side of LOGIN: answers the first challenge with the username, the second with the password.

    The challenge text is not interpreted: servers word it differently
    ("Username:", "User Name", localised text), only the order is fixed.
    """

    def __init__(self, username: str, password: str) -> None:
        self._answers = [_client_field(username, "username"), _client_field(password, "password")]

    def step(self, challenge: bytes) -> bytes:
        """The raw answer to the server's next (decoded) challenge."""
        if not self._answers:
            raise SaslError("server sent more LOGIN challenges than username and password")
        return self._answers.pop(0)
