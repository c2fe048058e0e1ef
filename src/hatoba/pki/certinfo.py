"""What `hatoba cert show` prints about a certificate, a request or a key: (label, value) rows.

The rows are data, so the CLI only formats them and tests can look at
single fields.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from hatoba.pki.checks import format_name, san_list
from hatoba.pki.csr import csr_names
from hatoba.pki.keyfiles import describe_key, public_der

Rows = list[tuple[str, str]]


def fingerprint(data: bytes) -> str:
    """SHA-256 as colon-separated upper-case hex, the way openssl x509 -fingerprint prints it."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return ":".join(f"{b:02X}" for b in digest.finalize())


def days_left(not_after: datetime.datetime, now: datetime.datetime) -> str:
    if now > not_after:
        return f"EXPIRED {(now - not_after).days} days ago"
    return f"{(not_after - now).days} days left"


def signature_name(oid: x509.ObjectIdentifier) -> str:
    # cryptography names the common OIDs the way OpenSSL does (ecdsa-with-SHA256, ...).
    name = getattr(oid, "_name", "")
    return name if name and name != "Unknown OID" else oid.dotted_string


def cert_rows(cert: x509.Certificate, now: datetime.datetime) -> Rows:
    from cryptography.hazmat.primitives.serialization import Encoding

    names = san_list(cert)
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.ca:
        limit = "no limit" if constraints.path_length is None else f"path length {constraints.path_length}"
        ca = f"yes ({limit})"
    else:
        ca = "no"
    return [
        ("subject", cert.subject.rfc4514_string() or "(empty)"),
        ("SANs", ", ".join(format_name(n) for n in names) or "(none)"),
        ("issuer", cert.issuer.rfc4514_string() or "(empty)"),
        ("not before", f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC"),
        ("not after", f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC ({days_left(cert.not_valid_after_utc, now)})"),
        ("key", _key_text(cert)),
        ("signature", signature_name(cert.signature_algorithm_oid)),
        ("SHA-256", fingerprint(cert.public_bytes(Encoding.DER))),
        ("CA", ca),
    ]


def _key_text(cert: x509.Certificate) -> str:
    try:
        return describe_key(cert.public_key())
    except (UnsupportedAlgorithm, ValueError):
        return "unsupported"


def csr_rows(csr: x509.CertificateSigningRequest) -> Rows:
    try:
        valid = "valid" if csr.is_signature_valid else "DOES NOT VERIFY"
    except UnsupportedAlgorithm:
        valid = "unknown algorithm"
    return [
        ("subject", csr.subject.rfc4514_string() or "(empty)"),
        ("SANs", ", ".join(format_name(n) for n in csr_names(csr)) or "(none)"),
        ("key", describe_key(csr.public_key())),
        ("signature", f"{signature_name(csr.signature_algorithm_oid)} ({valid})"),
    ]


def key_rows(key: PrivateKeyTypes | None, encrypted: bool) -> Rows:
    """A private key; None when it is encrypted and no passphrase was given."""
    protection = "encrypted with a passphrase" if encrypted else "not encrypted"
    if key is None:
        return [("key", "unknown until decrypted (give --passphrase-stdin)"), ("protection", protection)]
    public: PublicKeyTypes = key.public_key()
    return [
        ("key", describe_key(public)),
        ("protection", protection),
        ("public key SHA-256", fingerprint(public_der(public))),
    ]
