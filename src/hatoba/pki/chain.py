"""Certificate chains: who issued whom, and putting a pile of certificates in issue order.

A TLS server sends its own certificate first, then the certificate of the CA
that issued it, then that CA's issuer, and so on (RFC 8446 §4.4.2,
RFC 5246 §7.4.2); the root may be left out, since clients have it already.

Rules:
- "X issued Y" means both that Y's issuer name is X's subject and that Y's
  signature verifies with X's key: names alone can collide between CAs.
- Only for putting a file in order, a certificate signed with a broken hash
  (which cannot be checked) links to its issuer by name (links_to): its
  weak signature is a failure of its own, not a wrong order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

# "Does the second certificate stand for the issuer of the first?"
Link = Callable[[x509.Certificate, x509.Certificate], bool]


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when `issuer` issued `cert`: names match and the signature verifies."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def links_to(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """issued_by, or the names alone when `cert` is signed with a broken hash that cannot be checked."""
    if issued_by(cert, issuer):
        return True
    return cert.issuer == issuer.subject and weak_signature_hash(cert) is not None


def weak_signature_hash(cert: x509.Certificate) -> str | None:
    """"SHA-1" or "MD5" when `cert` is signed with a broken hash, else None.

    cryptography refuses to check such signatures ("Unsupported signature
    algorithm"), so issued_by says False for them; callers use this to name
    the real reason instead of blaming the issuer's key.
    """
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    if isinstance(algorithm, hashes.SHA1):
        return "SHA-1"
    if isinstance(algorithm, hashes.MD5):
        return "MD5"
    return None


def is_self_signed(cert: x509.Certificate) -> bool:
    """True for a root (or a self-signed server certificate): its own issuer."""
    return issued_by(cert, cert)


def is_own_issuer(cert: x509.Certificate) -> bool:
    """True for a self-signed certificate, also one whose broken-hash signature cannot be checked."""
    return links_to(cert, cert)


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def path_from(
    leaf: x509.Certificate, pool: Sequence[x509.Certificate], link: Link = issued_by
) -> list[x509.Certificate]:
    """`leaf`, then its issuer from `pool`, then that one's issuer, until a root or a missing issuer."""
    path = [leaf]
    remaining = [c for c in pool if c != leaf]
    while not link(path[-1], path[-1]):
        issuer = next((c for c in remaining if link(path[-1], c)), None)
        if issuer is None:
            break
        path.append(issuer)
        remaining.remove(issuer)
    return path


def find_leaf(certs: Sequence[x509.Certificate], link: Link = issued_by) -> x509.Certificate:
    """The certificate that issued none of the others (the server's own), else the first one.

    With several candidates (unrelated certificates in one file), a non-CA
    one is preferred, then file order.
    """
    candidates = [c for c in certs if not any(o is not c and link(o, c) for o in certs)]
    if not candidates:
        return certs[0]
    return next((c for c in candidates if not is_ca(c)), candidates[0])


def order_chain(certs: Sequence[x509.Certificate]) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """(the chain in issue order, leaf first; the certificates that are not part of it)."""
    if not certs:
        return [], []
    path = path_from(find_leaf(certs, links_to), certs, links_to)
    rest = [c for c in certs if c not in path]
    return path, rest


def describe(cert: x509.Certificate) -> str:
    """A short human name for a certificate: its subject as RFC 4514 text."""
    return cert.subject.rfc4514_string() or "(empty subject)"
