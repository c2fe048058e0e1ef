"""Taking apart a combined PEM file (key, certificate, intermediates and root in any order).

Some servers (qmail's servercert.pem, HAProxy, old Courier setups) keep
everything in one file. hatoba keeps the key apart from the certificates,
the chain leaf first (what the server sends), and the root in a file of its
own (what clients and `tls.ca_file` are given).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from hatoba.pki.chain import describe, is_self_signed, path_from
from hatoba.pki.errors import PkiError
from hatoba.pki.keyfiles import parse_key, same_key
from hatoba.pki.pemfiles import parse_cert, split_pem


@dataclass(frozen=True)
class Bundle:
    """The parts of a combined file, sorted."""

    key: PrivateKeyTypes
    chain: list[x509.Certificate]  # the server certificate, then intermediates in issue order
    root: x509.Certificate | None  # the self-signed root at the end of the chain, if present
    unrelated: list[x509.Certificate]  # certificates that are not on the server's chain
    other_blocks: list[str]  # labels of PEM blocks that are neither keys nor certificates


def split_bundle(data: bytes, where: str, passphrase: bytes | None = None) -> Bundle:
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
    leaf = next((c for c in certs if same_key(key.public_key(), c.public_key())), None)
    if leaf is None:
        subjects = "; ".join(describe(c) for c in certs)
        raise PkiError(f"the private key in {where} belongs to none of its certificates ({subjects})")
    path = path_from(leaf, certs)
    root = path[-1] if len(path) > 1 and is_self_signed(path[-1]) else None
    chain = path[:-1] if root is not None else path
    return Bundle(
        key=key,
        chain=chain,
        root=root,
        unrelated=[c for c in certs if c not in path],
        other_blocks=[b.label for b in blocks if b.kind in ("other", "request")],
    )
