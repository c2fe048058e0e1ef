"""Taking apart a combined PEM file (key, certificate, intermediates and root in any order).

Some servers (qmail's servercert.pem, HAProxy, old Courier setups) keep
everything in one file. hatoba keeps the key apart from the certificates,
the chain leaf first (what the server sends), and the root in a file of its
own (what clients and `tls.ca_file` are given).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from hatoba.pki.chain import describe, is_ca, is_self_signed, path_from, weak_signature_hash
from hatoba.pki.errors import PkiError
from hatoba.pki.keyfiles import MIN_RSA_BITS, parse_key, same_key
from hatoba.pki.pemfiles import parse_cert, split_pem


@dataclass(frozen=True)
class Bundle:
    """The parts of a combined file, sorted."""

    key: PrivateKeyTypes
    chain: list[x509.Certificate]  # the server certificate, then intermediates in issue order
    root: x509.Certificate | None  # the self-signed root at the end of the chain, if present
    unrelated: list[x509.Certificate]  # certificates that are not on the server's chain
    other_blocks: list[str]  # labels of PEM blocks that are neither keys nor certificates
    warnings: list[str] = field(default_factory=list)  # why clients would refuse a certificate kept


def split_bundle(
    data: bytes, where: str, passphrase: bytes | None = None, now: datetime.datetime | None = None
) -> Bundle:
    """Sort the PEM blocks of a combined file; PkiError when key and certificates do not fit together."""
    blocks = split_pem(data)
    keys = [b for b in blocks if b.kind == "key"]
    certs = [parse_cert(b, where) for b in blocks if b.kind == "certificate"]
    if not blocks:
        raise PkiError(f"{where} holds no PEM data (no -----BEGIN ...----- line)")
    if not keys:
        raise PkiError(f"{where} holds no private key; import needs the key and its certificates in one file")
    if len(keys) > 1:
        raise PkiError(f"{where} holds {len(keys)} private keys; import takes one key with its certificates")
    if not certs:
        raise PkiError(f"{where} holds a key but no certificate; import needs the key's certificate too")
    key = parse_key(keys[0].data, where, passphrase)
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey) and public.key_size < MIN_RSA_BITS:
        raise PkiError(
            f"the private key in {where} is RSA {public.key_size} bits; {MIN_RSA_BITS} bits is the minimum "
            "(shorter keys can be factored and clients refuse them): make a new key and certificate"
        )
    now = now or datetime.datetime.now(datetime.timezone.utc)
    # Renewals leave old copies behind in such files: the best one first, so
    # that the leaf and each issuer picked are the current ones.
    pool = sorted(certs, key=lambda c: _preference(c, now))
    leaf = next((c for c in pool if same_key(public, c.public_key())), None)
    if leaf is None:
        subjects = "; ".join(describe(c) for c in certs)
        raise PkiError(f"the private key in {where} belongs to none of its certificates ({subjects})")
    path = path_from(leaf, pool)
    root = path[-1] if len(path) > 1 and is_self_signed(path[-1]) else None
    chain = path[:-1] if root is not None else path
    return Bundle(
        key=key,
        chain=chain,
        root=root,
        unrelated=[c for c in certs if c not in path],
        other_blocks=[b.label for b in blocks if b.kind in ("other", "request")],
        warnings=[w for c in path for w in _problems(c, now)],
    )


def _preference(cert: x509.Certificate, now: datetime.datetime) -> tuple[bool, bool, float]:
    """Sort key, best first: not a CA, valid now, ending last."""
    valid = cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
    return is_ca(cert), not valid, -cert.not_valid_after_utc.timestamp()


def _problems(cert: x509.Certificate, now: datetime.datetime) -> list[str]:
    """Why clients would refuse `cert`: expired, not yet valid, signed with SHA-1/MD5, or a weak RSA key."""
    problems = []
    if now > cert.not_valid_after_utc:
        problems.append(f"{describe(cert)} expired on {cert.not_valid_after_utc:%Y-%m-%d}; clients refuse it")
    elif now < cert.not_valid_before_utc:
        problems.append(f"{describe(cert)} is valid only from {cert.not_valid_before_utc:%Y-%m-%d}")
    weak_hash = weak_signature_hash(cert)
    if weak_hash is not None and not is_self_signed(cert) and cert.issuer != cert.subject:
        problems.append(f"{describe(cert)} is signed with {weak_hash}; clients refuse it, have it reissued")
    try:
        public = cert.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return problems
    if isinstance(public, rsa.RSAPublicKey) and public.key_size < MIN_RSA_BITS:
        problems.append(f"{describe(cert)} has a weak key (RSA {public.key_size} bits); clients refuse it")
    return problems
