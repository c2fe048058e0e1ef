"""A private certificate authority and the server certificates it issues.

`hatoba init` makes one CA per setup so that TLS works from the first start:
clients that are given ca.crt verify the server fully, and the operator can
later swap in a public certificate without changing anything else.

`hatoba cert` uses the same profiles with keys of the operator's choice
(RSA or ECDSA), for requests from elsewhere and for sub-CAs.

Rules:
- `hatoba init` uses ECDSA P-256 signed with SHA-256; the general functions
  sign with SHA-256, or SHA-384 when the CA key is P-384.
- Server certificates last LEAF_DAYS (397) days at most: the CA/Browser
  Forum's limit for public certificates since 2020, which TLS scanners
  (testssl.sh) and Apple's clients hold private CAs to as well; no
  certificate outlives the CA that signs it.
- Serial numbers are random (RFC 5280 §4.1.2.2 allows up to 20 octets).
- Every issued certificate carries SKI and AKI (RFC 5280 §4.2.1.1-2), which
  chain builders use to find the issuer and strict verifiers require.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hatoba.pki.errors import PkiError
from hatoba.pki.keyfiles import SigningKey, same_key, signature_hash
from hatoba.pki.keys import PrivateKey, generate_key, write_new_file

# Accepts small clock differences between this machine and its clients.
BACKDATE = datetime.timedelta(hours=1)
LEAF_DAYS = 397


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_ca(common_name: str, days: int = 3650) -> tuple[PrivateKey, x509.Certificate]:
    """A new self-signed CA key and certificate, valid for `days`.

    path_length=0: this CA signs server certificates, never other CAs.
    """
    key = generate_key()
    return key, self_signed_ca(key, _name(common_name), days, path_length=0)


def issue_server_cert(
    ca_key: PrivateKey, ca_cert: x509.Certificate, hostname: str, days: int = LEAF_DAYS,
    more_names: Sequence[str] = (),
    crl_url: str | None = None,
) -> tuple[PrivateKey, x509.Certificate]:
    """A new key and a TLS server certificate for `hostname` (and `more_names`), signed by the CA.

    The SANs also name localhost, 127.0.0.1 and ::1 so that local clients
    and tests can verify the certificate without a DNS name.
    """
    key = generate_key()
    # Clients check only the SAN (RFC 6125 §6.4.4); the CN is kept for humans.
    names: list[x509.GeneralName] = [x509.DNSName(hostname), *(x509.DNSName(n) for n in more_names if n != hostname)]
    if hostname != "localhost":
        names.append(x509.DNSName("localhost"))
    names += [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = issue_leaf(ca_key, ca_cert, key.public_key(), _name(hostname), names, days, crl_url=crl_url)
    return key, cert


# -- general profiles (any RSA or ECDSA key) -------------------------------------------


def self_signed_ca(
    key: SigningKey,
    subject: x509.Name,
    days: int = 3650,
    path_length: int | None = 0,
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    """A root CA certificate for `key`; path_length None lets it issue sub-CAs."""
    public = key.public_key()
    return (
        _self_issued(subject, public, days, now)
        # RFC 5280 §4.2.1.9: CA certificates mark basicConstraints critical.
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(ca=True, rsa_subject=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, signature_hash(key))
    )


def issue_leaf(
    ca_key: SigningKey,
    ca_cert: x509.Certificate,
    public: CertificatePublicKeyTypes,
    subject: x509.Name,
    names: Sequence[x509.GeneralName],
    days: int = LEAF_DAYS,
    now: datetime.datetime | None = None,
    crl_url: str | None = None,
) -> x509.Certificate:
    """A TLS server certificate for `public` with SANs `names`, signed by the CA;
    `crl_url`: where the CA's CRL is served (pki/crl.py)."""
    builder = _leaf_extensions(_issued(ca_cert, public, subject, days, now), public, subject, names, _aki(ca_cert))
    if crl_url is not None:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    return builder.sign(ca_key, signature_hash(ca_key))


def issue_sub_ca(
    ca_key: SigningKey,
    ca_cert: x509.Certificate,
    public: CertificatePublicKeyTypes,
    subject: x509.Name,
    days: int = 1825,
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    """An intermediate CA certificate (path length 0: it signs server certificates only)."""
    return (
        _issued(ca_cert, public, subject, days, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True, rsa_subject=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(_aki(ca_cert), critical=False)
        .sign(ca_key, signature_hash(ca_key))
    )


def self_signed_leaf(
    key: SigningKey,
    subject: x509.Name,
    names: Sequence[x509.GeneralName],
    days: int = LEAF_DAYS,
    now: datetime.datetime | None = None,
) -> x509.Certificate:
    """A self-signed server certificate: its own issuer, not a CA."""
    public = key.public_key()
    builder = _self_issued(subject, public, days, now)
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(public)
    return _leaf_extensions(builder, public, subject, names, aki).sign(key, signature_hash(key))


def _self_issued(
    subject: x509.Name, public: CertificatePublicKeyTypes, days: int, now: datetime.datetime | None
) -> x509.CertificateBuilder:
    """A builder for a certificate that is its own issuer, valid from now (backdated) for `days`."""
    now = now or _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def check_issuer(ca_key: SigningKey, ca_cert: x509.Certificate, sub_ca: bool) -> None:
    """PkiError unless `ca_cert` is a CA allowed to sign what is asked, and `ca_key` is its key."""
    subject = ca_cert.subject.rfc4514_string()
    try:
        constraints = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise PkiError(f"{subject} is not a CA certificate (no basicConstraints CA:TRUE); give the CA's certificate")
    try:
        usage = ca_cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_cert_sign:
        raise PkiError(f"the CA certificate {subject} does not allow signing certificates (keyCertSign)")
    if not same_key(ca_key.public_key(), ca_cert.public_key()):
        raise PkiError(f"the CA key does not belong to the CA certificate {subject}; give the matching pair")
    if sub_ca and constraints.path_length == 0:
        raise PkiError(
            f"the CA {subject} has path length 0: it may sign server certificates only, not sub-CAs; "
            "sign the intermediate with a root made by `hatoba cert ca-init`"
        )


def _issued(
    ca_cert: x509.Certificate,
    public: CertificatePublicKeyTypes,
    subject: x509.Name,
    days: int,
    now: datetime.datetime | None,
) -> x509.CertificateBuilder:
    now = now or _now()
    # No certificate outlives its CA (the end is capped below), so an expired
    # CA could only make certificates that end before they begin.
    if ca_cert.not_valid_after_utc <= now:
        raise PkiError(
            f"the CA certificate {ca_cert.subject.rfc4514_string()} expired on {ca_cert.not_valid_after_utc:%Y-%m-%d}; "
            "renew the CA (or make a new one with `hatoba cert ca-init`) before signing with it"
        )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc))
    )


def _leaf_extensions(
    builder: x509.CertificateBuilder,
    public: CertificatePublicKeyTypes,
    subject: x509.Name,
    names: Sequence[x509.GeneralName],
    aki: x509.AuthorityKeyIdentifier,
) -> x509.CertificateBuilder:
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False, rsa_subject=isinstance(public, rsa.RSAPublicKey)), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        # RFC 5280 §4.2.1.6: with an empty subject the SAN extension is critical.
        .add_extension(x509.SubjectAlternativeName(list(names)), critical=len(subject) == 0)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(aki, critical=False)
    )


def _key_usage(ca: bool, rsa_subject: bool) -> x509.KeyUsage:
    """CAs sign certificates and CRLs; servers sign handshakes, and RSA ones may also
    decrypt a TLS 1.2 RSA key exchange (keyEncipherment); ECDSA keys never encrypt."""
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=rsa_subject and not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _aki(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The AKI for certificates `ca_cert` issues: its SKI, or one computed from its key."""
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_cert_chain(path: Path, certs: Sequence[x509.Certificate]) -> None:
    """Write certificates to a new file (mode 0644), in the order given.

    For a server chain that is leaf first, then each issuer (RFC 8446
    §4.4.2): the order TLS sends them in and OpenSSL's load_cert_chain reads.
    Certificates are public; an existing file is never overwritten.
    """
    if not certs:
        raise ValueError("a certificate chain needs at least one certificate")
    write_new_file(path, b"".join(cert_to_pem(c) for c in certs), 0o644)


def load_certs(path: Path) -> list[x509.Certificate]:
    """Every PEM certificate in `path`, in file order."""
    return x509.load_pem_x509_certificates(Path(path).read_bytes())
