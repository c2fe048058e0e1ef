"""Private keys: generation and writing them to disk owner-only.

Rules:
- Keys are ECDSA P-256: small, fast, accepted by every current TLS client.
- A key file is created with mode 0600 and O_EXCL, so it is never readable by
  others for even a moment and an existing key is never overwritten.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hatoba.fsutil import write_new_file  # re-exported: the PKI modules write with it

PrivateKey = ec.EllipticCurvePrivateKey


def generate_key() -> PrivateKey:
    """A new ECDSA P-256 (secp256r1) private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_to_pem(key: PrivateKey) -> bytes:
    """PEM, PKCS #8, unencrypted: what OpenSSL, Postfix and Dovecot all read."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private_key(path: Path, key: PrivateKey) -> None:
    """Write `key` to a new file `path` with mode 0600.

    Raises FileExistsError when `path` exists: replacing a key silently would
    break every certificate issued for it.
    """
    write_new_file(path, key_to_pem(key), 0o600)


def load_private_key(path: Path) -> PrivateKey:
    """Read an unencrypted PEM EC private key (ValueError if it is something else)."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an ECDSA private key")
    return key
