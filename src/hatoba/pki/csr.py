"""Certificate signing requests: the names in them, making one, judging one before signing it.

Rules:
- Clients match only the subjectAltName (RFC 6125 §6.4.4, and browsers
  since 2017), so the common name is always repeated as a SAN.
- A request signed with MD5 or SHA-1 is refused: both allow forged
  signatures (RFC 6151, SHAttered), so such a request proves nothing about
  who holds the key.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from hatoba.pki.errors import PkiError
from hatoba.pki.keyfiles import SigningKey, check_public_key, signature_hash

# RFC 1123 §2.1 host name label; "*" is allowed as the whole leftmost label (RFC 6125 §6.4.3).
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# X.520 ub-common-name.
MAX_CN = 64
WEAK_HASHES = ("md5", "sha1")


def parse_name(text: str) -> x509.GeneralName:
    """A SAN from the command line: an IP address when it parses as one, else a DNS name."""
    text = text.strip()
    try:
        return x509.IPAddress(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    name = text.rstrip(".").lower()
    if not name.isascii():
        raise PkiError(f"{text!r} is not ASCII; give international names in their xn-- form")
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) or (i == 0 and label == "*") for i, label in enumerate(labels)):
        raise PkiError(
            f"{text!r} is neither an IP address nor a valid DNS name "
            "(letters, digits and hyphens in dot-separated labels; '*.' only as the first label)"
        )
    if labels[0] == "*" and len(labels) < 3:
        raise PkiError(f"{text!r}: a wildcard needs at least two labels after it, as in *.example.org")
    return x509.DNSName(name)


def subject_names(common_name: str, sans: Iterable[str]) -> list[x509.GeneralName]:
    """The SAN list: the given names, plus the common name when it is a host name not among them."""
    names: list[x509.GeneralName] = []
    for text in sans:
        name = parse_name(text)
        if name not in names:
            names.append(name)
    names = with_common_name(common_name, names)
    if not names:
        raise PkiError(f"{common_name!r} is not a host name; give the server's names with --san")
    return names


def with_common_name(common_name: str, names: Sequence[x509.GeneralName]) -> list[x509.GeneralName]:
    """`names` with the common name put first when it is a host name missing from them."""
    try:
        cn_name = parse_name(common_name) if common_name else None
    except PkiError:
        cn_name = None  # a CN like "Example Mail" is for humans; it cannot be a SAN
    if cn_name is None or cn_name in names:
        return list(names)
    return [cn_name, *names]


def common_name(text: str) -> x509.Name:
    """A subject made of one CN, checked for the X.520 length limit."""
    text = text.strip()
    if not text:
        raise PkiError("the common name is empty; give --cn NAME")
    if len(text) > MAX_CN:
        raise PkiError(f"the common name is {len(text)} characters; {MAX_CN} is the limit, put long names in --san")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def build_csr(key: SigningKey, cn: str, sans: Sequence[str]) -> x509.CertificateSigningRequest:
    """A request for `cn` with its SANs, signed by `key` with SHA-256 (SHA-384 for P-384)."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(common_name(cn))
        .add_extension(x509.SubjectAlternativeName(subject_names(cn, sans)), critical=False)
        .sign(key, signature_hash(key))
    )


def csr_names(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    """The SANs the request asks for (empty when it has no subjectAltName extension)."""
    try:
        return list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def request_names(csr: x509.CertificateSigningRequest, where: str) -> list[x509.GeneralName]:
    """The request's SANs, each held to the rules of --san; PkiError for anything a server certificate must not name.

    A CA signs what it checked: a request from elsewhere may ask for "*",
    "*.com", a URI or an e-mail address, and copying those would certify them.
    """
    names: list[x509.GeneralName] = []
    for name in csr_names(csr):
        if isinstance(name, x509.DNSName):
            try:
                checked = parse_name(name.value)
            except PkiError as exc:
                raise PkiError(f"{where} asks for {exc}; give the names to certify with --san") from None
            if not isinstance(checked, x509.DNSName):
                raise PkiError(f"{where} asks for DNS:{name.value}, an IP address written as a DNS name; "
                               "give the names to certify with --san")
        elif isinstance(name, x509.IPAddress) and not isinstance(name.value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            checked = name
        else:
            raise PkiError(
                f"{where} asks for {type(name).__name__} {name.value}; only DNS names and IP addresses are certified: "
                "give the names to certify with --san"
            )
        if checked not in names:
            names.append(checked)
    return names


def check_csr(csr: x509.CertificateSigningRequest, where: str) -> None:
    """PkiError unless the request is signed with a strong hash, correctly, by a strong key."""
    algorithm = _hash_name(csr)
    if algorithm in WEAK_HASHES:
        raise PkiError(
            f"{where} is signed with {algorithm.upper()}, which can be forged; "
            "make a new request signed with SHA-256 (e.g. `hatoba cert csr`, or openssl req -sha256)"
        )
    check_public_key(csr.public_key(), where)
    if not csr.is_signature_valid:
        raise PkiError(f"{where} has a signature that does not verify: it is damaged or was altered; make it again")


def _hash_name(csr: x509.CertificateSigningRequest) -> str:
    try:
        algorithm = csr.signature_hash_algorithm
    except UnsupportedAlgorithm:  # a signature scheme this system does not know
        return "unknown"
    return algorithm.name if isinstance(algorithm, hashes.HashAlgorithm) else "none"
