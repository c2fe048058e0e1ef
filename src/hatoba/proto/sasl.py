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
  real user's, and a proof that can never match: the exchange cannot tell
  who exists.
"""

from __future__ import annotations

import binascii
import enum
import functools
import hashlib
import hmac
import re
import secrets
import stringprep
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from hatoba.proto.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "MAX_RESPONSE_OCTETS",
    "SCRAM_ITERATIONS",
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
    "ScramServer",
    "ServerMechanism",
    "Verified",
    "client_plain",
    "decode_response",
    "derive_scram_keys",
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
        """Continue after NeedKeys; None for a user without keys (the exchange then fails)."""
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


# ---------------------------------------------------------------------------
# SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677)
#
# RFC 5802 §7
#   saslname        = 1*(value-safe-char / "=2C" / "=3D")
#   authzid         = "a=" saslname
#   cb-name         = 1*(ALPHA / DIGIT / "." / "-")
#   gs2-cbind-flag  = ("p=" cb-name) / "n" / "y"
#   gs2-header      = gs2-cbind-flag "," [ authzid ] ","
#   username        = "n=" saslname
#   reserved-mext   = "m=" 1*(value-char)
#   channel-binding = "c=" base64
#   proof           = "p=" base64
#   nonce           = "r=" c-nonce [s-nonce]
#   c-nonce         = printable
#   printable       = %x21-2B / %x2D-7E
#   attr-val        = ALPHA "=" value
#   extensions      = attr-val *("," attr-val)
#   client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
#   client-first-message      = gs2-header client-first-message-bare
#   client-final-message-without-proof = channel-binding "," nonce ["," extensions]
#   client-final-message      = client-final-message-without-proof "," proof
# ---------------------------------------------------------------------------

# RFC 7677 §4: at least 4096; also what Dovecot uses. The directory stores
# keys with this count and unknown users are answered with it, so both look alike.
SCRAM_ITERATIONS = 4096
SCRAM = "SCRAM-SHA-256"
SCRAM_PLUS = "SCRAM-SHA-256-PLUS"

_SASLNAME = re.compile(r"(?:[^=]|=2C|=3D)+")
_CB_NAME = re.compile(r"[A-Za-z0-9.-]+")
_PRINTABLE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
_ATTR_VAL = re.compile(r"[A-Za-z]=.+", re.DOTALL)
# Keys the fake salts of unknown users: stable per user while this process
# runs, unpredictable from outside, never stored.
_FAKE_SALT_KEY = secrets.token_bytes(32)

# RFC 4013 §2.3 (prohibited output) and §2.5 with RFC 5802 §5.1 (passwords are
# "stored strings": unassigned code points, table A.1, are prohibited too).
_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
    stringprep.in_table_a1,
)


def _saslprep(text: str) -> str | None:
    """SASLprep (RFC 4013) of a stored string; None when the string is prohibited."""
    # RFC 4013 §2.1: non-ASCII spaces (C.1.2) become SPACE; B.1 maps to nothing.
    mapped = "".join(" " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c))
    # RFC 4013 §2.2, RFC 3454 §4: NFKC as of Unicode 3.2, the version stringprep is fixed to.
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    if not prepared or any(test(c) for c in prepared for test in _PROHIBITED):
        return None
    # RFC 4013 §2.4, RFC 3454 §6: a string with right-to-left characters has
    # no left-to-right ones, and starts and ends with a right-to-left one.
    if any(stringprep.in_table_d1(c) for c in prepared):
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            return None
        if any(stringprep.in_table_d2(c) for c in prepared):
            return None
    return prepared


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def derive_scram_keys(password: str, salt: bytes, iterations: int) -> ScramKeys:
    """The keys the server stores for `password` (RFC 5802 §3), so it never stores the password.

    The password is SASLprepared first (RFC 5802 §5.1, RFC 7677 §4), as
    clients do. If SASLprep refuses it (an emoji or other character
    unassigned in Unicode 3.2, a bidi mix), the password is used as it is:
    such a client either sends it unprepared too (then the keys match) or
    refuses to log in (then nothing is lost); refusing the password here
    would lock its owner out of SCRAM with every client.
    """
    prepared = _saslprep(password) or password
    salted = hashlib.pbkdf2_hmac("sha256", prepared.encode("utf-8"), salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return ScramKeys(iterations, salt, hashlib.sha256(client_key).digest(), _hmac(salted, b"Server Key"))


def _fake_keys(username: str) -> ScramKeys:
    """Keys for an unknown user: a salt stable per username, keys no proof can match.

    Lower-cased as the directory's lookup is, so that spellings of one unknown
    name share a salt just as spellings of a real user do."""
    salt = _hmac(_FAKE_SALT_KEY, username.lower().encode("utf-8"))[:16]
    return ScramKeys(SCRAM_ITERATIONS, salt, secrets.token_bytes(32), secrets.token_bytes(32))


def _saslname(raw: str, what: str) -> str:
    """Decode a saslname: "=" appears only as =2C (",") or =3D ("=") (RFC 5802 §5.1)."""
    if not _SASLNAME.fullmatch(raw):
        raise SaslError(f"SCRAM {what} is empty or has a bare '='")
    return raw.replace("=2C", ",").replace("=3D", "=")  # in this order: "=3D2C" is "=2C"


def _check_extensions(attributes: list[str]) -> None:
    """Optional extensions are ignored (RFC 5802 §5.1); mandatory ones ("m=") are refused."""
    for attribute in attributes:
        if not _ATTR_VAL.fullmatch(attribute):
            raise SaslError("SCRAM attribute is not letter=value")
        if attribute.startswith("m="):
            raise SaslError("SCRAM mandatory extensions are not supported")


class ScramServer:
    """Server side of SCRAM-SHA-256 and, with `plus`, SCRAM-SHA-256-PLUS.

    start/step take the client-first message, yield NeedKeys; keys() answers
    with the server-first message; the client-final message yields Verified
    (ok=False) or the server-final message, and the client's empty answer to
    that yields Verified(ok=True).
    """

    def __init__(self, channel_bindings: Mapping[str, bytes] | None = None, *, plus: bool = False) -> None:
        """`channel_bindings`: binding type -> data of this TLS connection ({} or None: none)."""
        if plus and not channel_bindings:
            raise LocalProtocolError("SCRAM-SHA-256-PLUS needs channel-binding data")
        self.name = SCRAM_PLUS if plus else SCRAM
        self._plus = plus
        self._bindings = dict(channel_bindings or {})
        self._state = _State.NEW
        self._authzid = self._username = ""
        self._cbind_input = b""  # gs2-header + channel-binding data, what c= must carry
        self._bare = ""  # client-first-message-bare, part of AuthMessage
        self._nonce = ""  # the client nonce, then the client + server nonce
        self._server_first = ""
        self._keys: ScramKeys | None = None
        self._known = False

    def start(self, initial_response: bytes | None) -> SaslResult:
        if self._state is not _State.NEW:
            raise LocalProtocolError("SASL SCRAM started twice")
        if initial_response is None:
            # RFC 4422 §5: SCRAM is client-first, so an empty challenge asks for it.
            self._state = _State.WAIT_MESSAGE
            return Challenge(b"")
        return self._client_first(initial_response)

    def step(self, response: bytes) -> SaslResult:
        if self._state is _State.WAIT_MESSAGE:
            return self._client_first(response)
        if self._state is _State.WAIT_PROOF:
            return self._client_final(response)
        if self._state is _State.WAIT_ACK:
            # RFC 5802 §5: the server's "v=" went out as a challenge; the client answers with nothing.
            self._state = _State.DONE
            if response:
                raise SaslError("SCRAM expects an empty answer to the server's final message")
            return Verified(self._authzid, self._username, True)
        raise LocalProtocolError("SASL SCRAM step out of order")

    def keys(self, keys: ScramKeys | None) -> SaslResult:
        if self._state is not _State.WAIT_KEYS:
            raise LocalProtocolError("SASL SCRAM keys() out of order")
        self._known = keys is not None
        self._keys = keys if keys is not None else _fake_keys(self._username)
        self._nonce += secrets.token_urlsafe(18)  # RFC 5802 §5.1: r= client nonce + server nonce
        salt = binascii.b2a_base64(self._keys.salt, newline=False).decode("ascii")
        self._server_first = f"r={self._nonce},s={salt},i={self._keys.iterations}"
        self._state = _State.WAIT_PROOF
        return Challenge(self._server_first.encode("ascii"))

    def _client_first(self, message: bytes) -> NeedKeys:
        self._state = _State.DONE  # until the message proves valid
        _check_length(message)
        flag, sep, rest = _text(message, "client-first message").partition(",")
        authz, sep2, bare = rest.partition(",")
        if not (sep and sep2):
            raise SaslError("SCRAM client-first message has no gs2 header")
        cb_data = self._channel_binding(flag)
        if authz:
            if not authz.startswith("a="):
                raise SaslError("SCRAM gs2 header: the authzid must be a=name")
            self._authzid = _saslname(authz[2:], "authzid")
        attributes = bare.split(",")
        if attributes[0].startswith("m="):  # RFC 5802 §5.1: m= means "fail if you do not know it"
            raise SaslError("SCRAM mandatory extensions are not supported")
        if len(attributes) < 2 or not attributes[0].startswith("n=") or not attributes[1].startswith("r="):
            raise SaslError("SCRAM client-first message must be n=name,r=nonce")
        _check_extensions(attributes[2:])
        self._username = _saslname(attributes[0][2:], "username")
        self._nonce = attributes[1][2:]
        if not _PRINTABLE.fullmatch(self._nonce):
            raise SaslError("SCRAM client nonce must be printable ASCII without ','")
        self._cbind_input = f"{flag},{authz},".encode("utf-8") + cb_data
        self._bare = bare
        self._state = _State.WAIT_KEYS
        return NeedKeys(self._username, self._authzid)

    def _channel_binding(self, flag: str) -> bytes:
        """The channel-binding data the client must prove (b"" for none), by the gs2 flag (RFC 5802 §6)."""
        if flag in ("n", "y"):
            if self._plus:
                raise SaslError("SCRAM-SHA-256-PLUS requires channel binding (p=type)")
            if flag == "y" and self._bindings:
                # The client supports binding but saw no -PLUS offer, yet this
                # connection offers it: someone removed it on the way (a downgrade).
                raise SaslError("SCRAM client believes the server offers no channel binding, but it does")
            return b""
        if not (flag.startswith("p=") and _CB_NAME.fullmatch(flag[2:])):
            raise SaslError("SCRAM gs2 channel-binding flag must be n, y or p=type")
        if not self._plus:
            raise SaslError("SCRAM channel binding requires the -PLUS mechanism")
        data = self._bindings.get(flag[2:])
        if data is None:
            raise SaslError("SCRAM channel-binding type is not available on this connection")
        return data

    def _client_final(self, message: bytes) -> SaslResult:
        self._state = _State.DONE
        _check_length(message)
        attributes = _text(message, "client-final message").split(",")
        if (
            len(attributes) < 3
            or not attributes[0].startswith("c=")
            or not attributes[1].startswith("r=")
            or not attributes[-1].startswith("p=")
        ):
            raise SaslError("SCRAM client-final message must be c=...,r=...,p=...")
        _check_extensions(attributes[2:-1])
        proof = _strict_base64(attributes[-1][2:])
        if proof is None or len(proof) != hashlib.sha256().digest_size:
            raise SaslError("SCRAM proof is not a base64 SHA-256 value")
        assert self._keys is not None
        without_proof = ",".join(attributes[:-1])
        auth_message = f"{self._bare},{self._server_first},{without_proof}".encode("utf-8")
        # RFC 5802 §3: ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); H(ClientKey) must be StoredKey.
        signature = _hmac(self._keys.stored_key, auth_message)
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        proof_ok = hmac.compare_digest(hashlib.sha256(client_key).digest(), self._keys.stored_key)
        # RFC 5802 §6: c= must be exactly what this server would send for this connection.
        expected = binascii.b2a_base64(self._cbind_input, newline=False)
        binding_ok = hmac.compare_digest(attributes[0][2:].encode("utf-8"), expected)
        nonce_ok = hmac.compare_digest(attributes[1][2:].encode("utf-8"), self._nonce.encode("ascii"))
        if not (proof_ok and binding_ok and nonce_ok and self._known):
            return Verified(self._authzid, self._username, False)
        self._state = _State.WAIT_ACK
        server_signature = _hmac(self._keys.server_key, auth_message)
        return Challenge(b"v=" + binascii.b2a_base64(server_signature, newline=False))


def _strict_base64(text: str) -> bytes | None:
    try:
        return binascii.a2b_base64(text.encode("ascii"), strict_mode=True) if len(text) % 4 == 0 else None
    except (UnicodeEncodeError, binascii.Error):
        return None


# Each factory takes the connection's channel-binding data (ignored by most).
SERVER_MECHANISMS: Mapping[str, Callable[[Mapping[str, bytes]], ServerMechanism]] = MappingProxyType(
    {
        "PLAIN": PlainServer,
        "LOGIN": LoginServer,
        SCRAM: ScramServer,
        SCRAM_PLUS: functools.partial(ScramServer, plus=True),
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
