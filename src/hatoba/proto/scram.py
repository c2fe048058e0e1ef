"""SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677): the server half,
and the keys a server stores instead of the password.

A step machine like the others in proto/sasl.py (which lists it among the
server mechanisms): start/step take the client's messages, NeedKeys asks
the caller for the user's stored ScramKeys, and the mechanism checks the
client's proof itself (Verified). Channel binding (-PLUS) compares the
client's c= with the data of this TLS connection that the caller handed in
(RFC 5929 tls-server-end-point, RFC 9266 tls-exporter).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
import secrets
import stringprep
import unicodedata
from collections.abc import Mapping

from hatoba.proto.errors import LocalProtocolError
from hatoba.proto.sasl import (
    SCRAM,
    SCRAM_PLUS,
    Challenge,
    NeedKeys,
    SaslError,
    SaslResult,
    ScramKeys,
    Verified,
    _check_length,
    _State,
    _text,
)

__all__ = ["SCRAM_ITERATIONS", "ScramServer", "derive_scram_keys", "unknown_user_keys"]

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

_SASLNAME = re.compile(r"(?:[^=]|=2C|=3D)+")
_CB_NAME = re.compile(r"[A-Za-z0-9.-]+")
_PRINTABLE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
_ATTR_VAL = re.compile(r"[A-Za-z]=.+", re.DOTALL)

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


def unknown_user_keys(account: str, secret: bytes) -> ScramKeys:
    """Keys for a user who does not exist (or has none): answered like a real
    user, so the exchange cannot tell who exists, and no proof can match.

    `account` is the name as the directory would look it up (every spelling of
    one name alike) and `secret` a server secret that outlives restarts: the
    salt stays the same for a name, as a real user's does. The stored and
    server keys are random each time."""
    salt = _hmac(secret, account.encode("utf-8", "surrogatepass"))[:16]
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
        if keys is None:  # the caller answers unknown users with unknown_user_keys()
            raise LocalProtocolError("SASL SCRAM keys() needs keys")
        self._keys = keys
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
        if not (proof_ok and binding_ok and nonce_ok):
            return Verified(self._authzid, self._username, False)
        self._state = _State.WAIT_ACK
        server_signature = _hmac(self._keys.server_key, auth_message)
        return Challenge(b"v=" + binascii.b2a_base64(server_signature, newline=False))


def _strict_base64(text: str) -> bytes | None:
    try:
        return binascii.a2b_base64(text.encode("ascii"), strict_mode=True) if len(text) % 4 == 0 else None
    except (UnicodeEncodeError, binascii.Error):
        return None
