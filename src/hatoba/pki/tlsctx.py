"""TLS contexts: the server's (with SNI) and the outbound client's.

Rules:
- TLS 1.2 is the minimum (RFC 8996 retired 1.0 and 1.1; RFC 8314 §4.1).
- TLS 1.2 uses only ECDHE key exchange with AEAD ciphers (forward secrecy,
  no CBC padding oracles), the Mozilla "intermediate" choice; TLS 1.3 suites
  are OpenSSL's defaults, which are all AEAD.
- A certificate or key that cannot be loaded is a TlsSetupError with one line
  that names the files and what to do, raised at startup, never mid-session.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from hatoba.config.schema import TlsConfig

TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class TlsSetupError(Exception):
    """Certificates or keys cannot be used; the message is one line for the operator."""


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    """The context every TLS listener uses; SNI switches to tls.domains' certificates."""
    default = _server_context(tls.cert, tls.key, "tls")
    by_domain = {
        _normalise_name(domain): _server_context(d.cert, d.key, f"tls.domains.{domain}")
        for domain, d in tls.domains.items()
    }
    if by_domain:
        default.sni_callback = sni_callback(by_domain)
    return default


def sni_callback(by_domain: dict[str, ssl.SSLContext]):  # type: ignore[no-untyped-def]
    """An SSLContext.sni_callback that picks the context of the closest matching domain.

    "mail.example.org" matches a context for "mail.example.org" first, then
    "example.org", then "org"; no match (or no SNI) keeps the default
    certificate. Returning None lets the handshake go on in every case: a
    client that then rejects the default certificate says so itself.
    """

    def choose(sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if not server_name:
            return None
        context = lookup(by_domain, server_name)
        if context is not None:
            sslobj.context = context
        return None

    return choose


def lookup(by_domain: dict[str, ssl.SSLContext], server_name: str) -> ssl.SSLContext | None:
    """The context for `server_name`, or for its nearest parent domain, or None."""
    labels = _normalise_name(server_name).split(".")
    for i in range(len(labels)):
        context = by_domain.get(".".join(labels[i:]))
        if context is not None:
            return context
    return None


def _normalise_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _server_context(cert: Path, key: Path, where: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    # No compression (CRIME); our cipher order, not the client's; no
    # client-initiated renegotiation (a cheap way to burn our CPU).
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    # A client that half-closes without close_notify (its last command, then FIN) still gets
    # its answer: OpenSSL 3 would otherwise fail the connection at the FIN (net/tls_socket.py
    # reads the socket through OpenSSL). Every command and message has its own end marker, so
    # a cut-off one is never taken as whole.
    ctx.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
    try:
        # The password callback stops OpenSSL from prompting on the terminal
        # for an encrypted key; the empty password then fails to decrypt it.
        ctx.load_cert_chain(str(cert), str(key), password=lambda: b"")
    except (OSError, ssl.SSLError) as exc:
        reason = _diagnose(cert, key, exc)
        raise TlsSetupError(
            f"{where}: cannot load {cert} with key {key}: {reason}; check the files, or run hatoba init"
        ) from None
    return ctx


def _diagnose(cert: Path, key: Path, exc: Exception) -> str:
    """Why load_cert_chain failed, in words (OpenSSL's reasons are library codes)."""
    if not isinstance(exc, ssl.SSLError) and isinstance(exc, OSError):
        return exc.strerror or str(exc)
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certs = x509.load_pem_x509_certificates(Path(cert).read_bytes())
    except (OSError, ValueError):
        return f"{cert} holds no PEM certificate"
    try:
        private = serialization.load_pem_private_key(Path(key).read_bytes(), password=None)
    except TypeError:
        return f"{key} is encrypted; hatoba needs an unencrypted key (mode 0600)"
    except (OSError, ValueError):
        return f"{key} holds no PEM private key"
    if private.public_key() != certs[0].public_key():
        return "the key does not belong to the first certificate in the file (the chain must start with the server's own certificate)"
    return str(getattr(exc, "reason", None) or exc)


def client_context(ca_file: Path | None, verify: bool) -> ssl.SSLContext:
    """An outbound TLS context: the system's trust anchors plus `ca_file`.

    With verify=False (opportunistic STARTTLS, RFC 7435) the certificate is
    not checked at all: encryption still defeats passive listeners, and most
    mail servers on the Internet present certificates no one could verify.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION
    if ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            if isinstance(exc, ssl.SSLError) or not exc.strerror:
                reason = "no PEM certificate in it"
            else:
                reason = exc.strerror
            raise TlsSetupError(
                f"tls.ca_file: cannot load {ca_file}: {reason}; point it at a file of PEM CA certificates"
            ) from None
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
