"""An Apple configuration profile (.mobileconfig) that sets up one mail account.

One com.apple.mail.managed payload (Apple's "Mail" payload): the first
incoming and the first outgoing server autoconfig offers (implicit TLS
first; Apple's profile has one of each), the whole address as the user
name, the outgoing password the same as the incoming one. The UUIDs are
derived from the address, so downloading the profile again replaces the
account instead of adding a second one.

The plist is signed (CMS SignedData, attached, DER) with the server's
certificate and key, chain included: iOS and macOS show a signed profile
as "Verified" when the certificate is publicly trusted and as signed
by an unknown issuer otherwise; either way it cannot be altered on the way
without the signature failing. Signing reads the key from disk, in the
caller's thread, each time: a renewed certificate is used at once.
"""

from __future__ import annotations

import plistlib
import uuid
from pathlib import Path

from hatoba.config.schema import Config
from hatoba.web.autoconfig import Offer, PortOf, offers

CONTENT_TYPE = "application/x-apple-aspen-config"
PATH = "/apple/mail.mobileconfig"
_NAMESPACE = uuid.UUID("5f0c3a52-7d2e-4a59-9b1c-6a8f3e2d1b70")  # hatoba's own, for uuid5


def profile(config: Config, address: str, port_of: PortOf | None = None) -> bytes | None:
    """The unsigned plist for `address`, or None when no incoming or no outgoing listener is on."""
    available = offers(config, port_of)
    incoming = next((o for o in available if o.kind != "smtp"), None)
    outgoing = next((o for o in available if o.kind == "smtp"), None)
    if incoming is None or outgoing is None:
        return None
    host = config.server.hostname
    domain = address.rsplit("@", 1)[1]
    ident = f"{_reverse(host)}.mail.{_safe(address)}"
    mail = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{ident}.account",
        "PayloadUUID": _uuid(address, "account"),
        "PayloadDisplayName": f"Mail for {address}",
        "EmailAccountDescription": address,
        "EmailAccountType": "EmailTypeIMAP" if incoming.kind == "imap" else "EmailTypePOP",
        "EmailAddress": address,
        "IncomingMailServerHostName": host,
        "IncomingMailServerPortNumber": incoming.port,
        "IncomingMailServerUseSSL": True,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerUsername": address,
        "OutgoingMailServerHostName": host,
        "OutgoingMailServerPortNumber": outgoing.port,
        "OutgoingMailServerUseSSL": True,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerUsername": address,
        "OutgoingPasswordSameAsIncomingPassword": True,
        "SMIMEEnabled": False,
    }
    document = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": ident,
        "PayloadUUID": _uuid(address, "profile"),
        "PayloadDisplayName": f"{domain} mail",
        "PayloadDescription": f"Sets up {address} with {host}: {_words(incoming)}, {_words(outgoing)}.",
        "PayloadOrganization": domain,
        "PayloadRemovalDisallowed": False,
        "PayloadContent": [mail],
    }
    return plistlib.dumps(document, fmt=plistlib.FMT_XML, sort_keys=True)


def sign(data: bytes, cert_path: Path, key_path: Path) -> bytes:
    """CMS SignedData over `data` (attached) with the server's chain and key, DER."""
    # Loaded when a profile is asked for, not by every worker that imports the routes.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs7

    chain = x509.load_pem_x509_certificates(Path(cert_path).read_bytes())
    key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    builder = pkcs7.PKCS7SignatureBuilder().set_data(data).add_signer(chain[0], key, hashes.SHA256())  # type: ignore[arg-type]
    for extra in chain[1:]:
        builder = builder.add_certificate(extra)
    return builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])


def _uuid(address: str, part: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{address.lower()}/{part}")).upper()


def _reverse(host: str) -> str:
    return ".".join(reversed(host.lower().split(".")))


def _safe(address: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in address.lower())


def _words(offer: Offer) -> str:
    kind = {"imap": "IMAP", "pop3": "POP3", "smtp": "SMTP"}[offer.kind]
    return f"{kind} on port {offer.port} ({'TLS' if offer.implicit_tls else 'STARTTLS'})"


__all__ = ["CONTENT_TYPE", "PATH", "profile", "sign"]
