"""Test helpers for mail authentication: DKIM keys and signatures made by dkimpy as a
third party would, the DNS records that publish them, and the Authentication-Results
field read back with the independent `authres` parser."""

from __future__ import annotations

import base64
import hashlib
import time

import authres
import authres.arc
import authres.dmarc
import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from hatoba.checks.headers import header_fields


class RsaKey:
    def __init__(self, bits: int = 2048) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        self.private_pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.record = f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
        self.algorithm = b"rsa-sha256"
        self.signing_key = self.private_pem


class Ed25519Key:
    def __init__(self) -> None:
        key = ed25519.Ed25519PrivateKey.generate()
        seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.signing_key = base64.b64encode(seed)
        self.record = f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
        self.algorithm = b"ed25519-sha256"


PARSER = authres.FeatureContext(authres.dmarc, authres.arc)
SIGNED = [b"from", b"to", b"subject", b"date", b"message-id"]


def sign(message: bytes, key: RsaKey | Ed25519Key, domain: str, selector: str) -> bytes:
    """`message` with a DKIM-Signature by dkimpy on top."""
    signature = dkim.sign(message, selector.encode(), domain.encode(), key.signing_key,
                          signature_algorithm=key.algorithm, include_headers=SIGNED,
                          canonicalize=(b"relaxed", b"relaxed"))
    return signature + message


def sign_expired(message: bytes, key: RsaKey, domain: str, selector: str) -> bytes:
    """A signature made two days ago that expired yesterday (x=, RFC 6376 §3.5)."""
    signer = dkim.DKIM(message, signature_algorithm=b"rsa-sha256")
    policy = dkim.CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    body_hash = base64.b64encode(hashlib.sha256(policy.canonicalize_body(signer.body)).digest())
    now = int(time.time())
    fields = [
        (b"v", b"1"), (b"a", b"rsa-sha256"), (b"c", b"relaxed/relaxed"), (b"d", domain.encode()),
        (b"i", b"@" + domain.encode()), (b"q", b"dns/txt"), (b"s", selector.encode()),
        (b"t", str(now - 2 * 86400).encode()), (b"x", str(now - 86400).encode()),
        (b"h", b" : ".join(SIGNED)), (b"bh", body_hash), (b"b", b"0" * 60),
    ]
    private = dkim.parse_pem_private_key(key.private_pem)
    signer.hasher = hashlib.sha256
    header = signer.gen_header(fields, tuple(SIGNED), policy, b"DKIM-Signature", private)
    return b"DKIM-Signature: " + header + message


def arc_seal(message: bytes, key: RsaKey, domain: str, selector: str, authserv_id: str) -> bytes:
    """`message` with the next ARC set by dkimpy, as a forwarder at `domain` adds it."""
    lines = dkim.arc_sign(message, selector.encode(), domain.encode(), key.private_pem, authserv_id.encode(),
                          include_headers=SIGNED)
    return b"".join(lines) + message


def results(message_or_fields: bytes | str, authserv_id: str) -> dict[str, list[authres.core.AuthenticationResult]]:
    """The results of the Authentication-Results field for `authserv_id`, parsed by `authres`, by method."""
    text = message_or_fields if isinstance(message_or_fields, bytes) else message_or_fields.encode()
    found: dict[str, list[authres.core.AuthenticationResult]] = {}
    fields = [f for f in header_fields(text) if f.name == "authentication-results"]
    ours = []
    for field in fields:
        parsed = PARSER.parse(f"Authentication-Results: {field.value}")
        if parsed.authserv_id.lower() == authserv_id.lower():
            ours.append(parsed)
    assert len(ours) == 1, f"expected one Authentication-Results of {authserv_id}, found {len(ours)}"
    for result in ours[0].results:
        found.setdefault(result.method, []).append(result)
    return found
