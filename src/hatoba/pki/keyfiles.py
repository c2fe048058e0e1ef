"""Private keys of any supported kind: making, reading (encrypted or not), writing, describing.

keys.py makes the ECDSA P-256 keys of `hatoba init`; this module serves the
`hatoba cert` tools, which let the operator choose RSA or another curve and
protect a key with a passphrase.

Rules:
- RSA keys are 2048 bits at least: shorter ones are within reach of
  factoring, and current TLS libraries refuse them.
- Only RSA and ECDSA P-256/P-384 keys are made or used for signing: every
  mail client accepts them.
- A key file is 0600 and created exclusively (pemfiles.write_output).
- Keys are written PKCS #8 (what OpenSSL, Postfix and Dovecot read); an
  encrypted one uses BestAvailableEncryption (AES-256-CBC, scrypt or PBKDF2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from hatoba.pki.errors import PkiError
from hatoba.pki.pemfiles import read_bytes, split_pem, write_output

SigningKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]

RSA_BITS = (2048, 3072, 4096)
MIN_RSA_BITS = 2048
CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}
# Curve names as cryptography spells them -> as TLS and NIST do.
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}

# The PEM label of an encrypted PKCS #8 key, spelled in two parts so that
# secret scanners do not take this file for a key.
ENCRYPTED_PKCS8_MARKER = b"-----BEGIN ENCRYPTED " + b"PRIVATE KEY-----"


def new_key(kind: str = "ecdsa", bits: int | None = None, curve: str | None = None) -> SigningKey:
    """A new private key: ECDSA on `curve` (default P-256) or RSA of `bits` (default 3072)."""
    kind = kind.lower()
    if kind == "rsa":
        if curve is not None:
            raise PkiError("--curve is for ECDSA keys; an RSA key takes --bits")
        size = 3072 if bits is None else bits
        if size < MIN_RSA_BITS:
            raise PkiError(
                f"RSA keys of {size} bits are too weak (breakable, and refused by TLS clients); "
                "use --bits 2048, 3072 or 4096"
            )
        if size not in RSA_BITS:
            raise PkiError(f"RSA keys of {size} bits are not offered; use --bits 2048, 3072 or 4096")
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    if kind in ("ecdsa", "ec"):
        if bits is not None:
            raise PkiError("--bits is for RSA keys; an ECDSA key takes --curve P-256 or P-384")
        name = "P-256" if curve is None else curve.upper()
        if name not in CURVES:
            raise PkiError(f"unknown curve {curve!r}; use --curve P-256 or P-384")
        return ec.generate_private_key(CURVES[name])
    raise PkiError(f"unknown key type {kind!r}; use --type ecdsa or --type rsa")


def key_to_pem(key: PrivateKeyTypes, passphrase: bytes | None = None) -> bytes:
    """PKCS #8 PEM, encrypted with the best available scheme when a passphrase is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def write_key(path: Path, key: PrivateKeyTypes, passphrase: bytes | None = None) -> None:
    """Write `key` to a new 0600 file; PkiError if `path` exists."""
    write_output(path, key_to_pem(key, passphrase), 0o600)


def is_encrypted(pem: bytes) -> bool:
    """True for PKCS #8 encrypted keys and for OpenSSL's traditional "Proc-Type: 4,ENCRYPTED" ones."""
    return ENCRYPTED_PKCS8_MARKER in pem or b"Proc-Type: 4,ENCRYPTED" in pem


def parse_key(pem: bytes, where: str, passphrase: bytes | None = None) -> PrivateKeyTypes:
    """The private key in one PEM block; `where` names it in errors.

    A passphrase given for an unencrypted key is ignored: scripts can pass
    --passphrase-stdin for every key without knowing which ones are protected.
    """
    if is_encrypted(pem):
        if not passphrase:
            raise PkiError(f"{where} is encrypted; give its passphrase as one line on stdin with --passphrase-stdin")
        try:
            return serialization.load_pem_private_key(pem, password=passphrase)
        except ValueError:
            raise PkiError(f"wrong passphrase for {where}, or the key is damaged") from None
        except TypeError:
            raise PkiError(f"{where} is encrypted in a way that cannot be read") from None
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise PkiError(f"{where} holds no readable PEM private key") from None
    except UnsupportedAlgorithm:
        raise PkiError(f"{where} holds a kind of key this system cannot read") from None


def read_key(path: Path, passphrase: bytes | None = None) -> PrivateKeyTypes:
    """The first private key in the PEM file at `path`."""
    blocks = [b for b in split_pem(read_bytes(path)) if b.kind == "key"]
    if not blocks:
        raise PkiError(f"{path} holds no PEM private key (a 'BEGIN PRIVATE KEY' block)")
    return parse_key(blocks[0].data, str(path), passphrase)


def read_signing_key(path: Path, passphrase: bytes | None = None) -> SigningKey:
    """A key that can sign requests and certificates: RSA (>= 2048 bits) or ECDSA."""
    key = read_key(path, passphrase)
    check_public_key(key.public_key(), str(path))
    assert isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
    return key


def check_public_key(public: PublicKeyTypes, where: str) -> None:
    """PkiError unless `public` is an RSA key of 2048 bits or more, or an ECDSA key."""
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < MIN_RSA_BITS:
            raise PkiError(
                f"{where} has an RSA key of {public.key_size} bits; {MIN_RSA_BITS} bits is the minimum: "
                "make a new key with `hatoba cert key --type rsa --bits 3072`"
            )
        return
    if isinstance(public, ec.EllipticCurvePublicKey):
        return
    raise PkiError(f"{where} has a {describe_key(public)} key; only RSA and ECDSA keys are supported")


def describe_key(public: PublicKeyTypes) -> str:
    """"RSA 3072 bits", "ECDSA P-256", "Ed25519", ..."""
    if isinstance(public, rsa.RSAPublicKey):
        return f"RSA {public.key_size} bits"
    if isinstance(public, ec.EllipticCurvePublicKey):
        return f"ECDSA {_CURVE_NAMES.get(public.curve.name, public.curve.name)}"
    for kind, name in ((ed25519.Ed25519PublicKey, "Ed25519"), (ed448.Ed448PublicKey, "Ed448"), (dsa.DSAPublicKey, "DSA")):
        if isinstance(public, kind):
            return name
    return "unknown"


def same_key(a: PublicKeyTypes, b: PublicKeyTypes) -> bool:
    """True when two public keys are the same key (compared as SubjectPublicKeyInfo)."""
    return public_der(a) == public_der(b)


def public_der(public: PublicKeyTypes) -> bytes:
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def signature_hash(key: SigningKey) -> hashes.HashAlgorithm:
    """SHA-384 for P-384 keys (the strength of the curve, CNSA), SHA-256 for all others."""
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()
