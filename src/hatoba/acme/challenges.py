"""The challenges an ACME order has pending, where the listeners answer them.

The ordering thread (acme/order.py) puts a challenge up before it tells the
CA to validate, and takes it down when the authorization is decided. The
listeners of the first worker (the only one that runs http and https) read:

- HTTP-01 (RFC 8555 §8.3): GET /.well-known/acme-challenge/TOKEN on the http
  listener, any Host, answers the key authorization as text.
- TLS-ALPN-01 (RFC 8737): a TLS connection to the https listener whose
  ClientHello offers ALPN "acme-tls/1" for a pending name gets a
  self-signed certificate for that name with the acmeIdentifier extension
  (the SHA-256 of the key authorization), and nothing else; every other
  connection gets the real certificate (acme/clienthello.py).

The board is shared between the ordering thread and the event loop; a dict
item set or removed is atomic under the GIL, and readers copy nothing.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
import tempfile
from pathlib import Path

from hatoba.acme import clienthello

HTTP01_PREFIX = "/.well-known/acme-challenge/"
ACME_TLS_ALPN = b"acme-tls/1"
ACME_IDENTIFIER = "1.3.6.1.5.5.7.1.31"  # id-pe-acmeIdentifier, RFC 8737 §6.1
MAX_TOKEN = 256  # RFC 8555 tokens are 43 base64url characters; anything past this is not one


class ChallengeBoard:
    def __init__(self) -> None:
        self._http: dict[str, str] = {}  # token -> key authorization
        self._alpn: dict[str, ssl.SSLContext] = {}  # name -> the challenge certificate's context

    # -- the ordering thread's side --------------------------------------------------------

    def put_http01(self, token: str, key_authorization: str) -> None:
        self._http[token] = key_authorization

    def put_tls_alpn01(self, name: str, key_authorization: str, workdir: Path) -> None:
        self._alpn[name.lower()] = tls_alpn01_context(name, key_authorization, workdir)

    def take_down(self, token: str | None = None, name: str | None = None) -> None:
        if token is not None:
            self._http.pop(token, None)
        if name is not None:
            self._alpn.pop(name.lower(), None)

    # -- the listeners' side -----------------------------------------------------------

    def http01(self, path: str) -> str | None:
        """The key authorization answering GET `path`, or None (not a pending challenge)."""
        if not path.startswith(HTTP01_PREFIX):
            return None
        token = path[len(HTTP01_PREFIX):]
        if not token or len(token) > MAX_TOKEN:
            return None
        return self._http.get(token)

    def reads_hello(self) -> bool:
        """Whether the https listener must read ClientHellos before it picks a certificate."""
        return bool(self._alpn)

    def context_for(self, hello_bytes: bytes) -> ssl.SSLContext | None | str:
        """The challenge context for a ClientHello that asks for acme-tls/1 and a pending
        name; None for every other hello; clienthello.INCOMPLETE while it is still arriving."""
        hello = clienthello.parse(hello_bytes)
        if hello is None or hello == clienthello.INCOMPLETE:
            return hello  # type: ignore[return-value]
        assert isinstance(hello, clienthello.Hello)
        if ACME_TLS_ALPN not in hello.alpn or hello.server_name is None:
            return None
        return self._alpn.get(hello.server_name)


def tls_alpn01_certificate(name: str, key_authorization: str) -> tuple[bytes, bytes]:
    """PEM certificate and key of RFC 8737 §3: self-signed, SAN `name` only, and the
    critical acmeIdentifier extension holding the SHA-256 digest of the key authorization."""
    # Loaded here, not with the module: a worker that only keeps the board never needs them.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        # The extension's value is the DER OCTET STRING of the digest (RFC 8737 §3).
        .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(ACME_IDENTIFIER), b"\x04\x20" + digest), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def tls_alpn01_context(name: str, key_authorization: str, workdir: Path) -> ssl.SSLContext:
    """A server context that presents the challenge certificate and speaks only acme-tls/1."""
    cert_pem, key_pem = tls_alpn01_certificate(name, key_authorization)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols([ACME_TLS_ALPN.decode()])
    # load_cert_chain reads files only: a private file in our own folder, gone at once.
    fd, path = tempfile.mkstemp(prefix=".tls-alpn-", dir=workdir)  # mode 0600
    try:
        os.write(fd, cert_pem + key_pem)
        os.close(fd)
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)
    return ctx


__all__ = ["ACME_TLS_ALPN", "HTTP01_PREFIX", "ChallengeBoard", "tls_alpn01_certificate", "tls_alpn01_context"]
