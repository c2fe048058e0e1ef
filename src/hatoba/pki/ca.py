"""A private certificate authority and the server certificates it issues.

`hatoba init` makes one CA per setup so that TLS works from the first start:
clients that are given ca.crt verify the server fully, and the operator can
later swap in a public certificate without changing anything else.

Rules:
- Everything is ECDSA P-256 signed with SHA-256.
- Server certificates last 825 days at most, the longest validity that
  Apple's TLS clients accept for certificates from a private CA.
- Serial numbers are random (RFC 5280 §4.1.2.2 allows up to 20 octets).
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hatoba.pki.keys import PrivateKey, generate_key, write_new_file

# Accepts small clock differences between this machine and its clients.
BACKDATE = datetime.timedelta(hours=1)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_ca(common_name: str, days: int = 3650) -> tuple[PrivateKey, x509.Certificate]:
    """A new self-signed CA key and certificate, valid for `days`."""
    key = generate_key()
    now = _now()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        # RFC 5280 §4.2.1.9: CA certificates mark basicConstraints critical.
        # path_length=0: this CA signs server certificates, never other CAs.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue_server_cert(
    ca_key: PrivateKey, ca_cert: x509.Certificate, hostname: str, days: int = 825
) -> tuple[PrivateKey, x509.Certificate]:
    """A new key and a TLS server certificate for `hostname`, signed by the CA.

    The SANs also name localhost, 127.0.0.1 and ::1 so that local clients
    and tests can verify the certificate without a DNS name.
    """
    key = generate_key()
    now = _now()
    public = key.public_key()
    # Clients check only the SAN (RFC 6125 §6.4.4); the CN is kept for humans.
    names: list[x509.GeneralName] = [x509.DNSName(hostname)]
    if hostname != "localhost":
        names.append(x509.DNSName("localhost"))
    names += [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hostname))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,  # ECDSA keys sign; they never encrypt a key
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


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
