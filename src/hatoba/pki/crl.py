"""The private CA's certificate revocation list (RFC 5280 §5), and its list of revoked serials.

Certificates hatoba's CA issues name a CRL distribution point on the http
listener (`http://HOSTNAME[:PORT]/crl/ca.crl`), so a client or a scanner
can learn that one was revoked; without one, nothing could ever tell
them. `hatoba cert revoke` adds a serial to `revoked.txt` beside the CA
key; the server signs a fresh CRL from it whenever the file or the CA
changes and otherwise once a day, each valid for NEXT_UPDATE_DAYS.

revoked.txt: one line per certificate, "SERIAL_HEX ISO_TIME", written whole
and renamed into place.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hatoba.pki.ca import load_certs
from hatoba.pki.errors import PkiError
from hatoba.pki.keyfiles import read_signing_key, signature_hash

CRL_PATH = "/crl/ca.crl"
CRL_TYPE = "application/pkix-crl"  # RFC 5280 §4.2.1.13: DER
REVOKED_FILE = "revoked.txt"
NEXT_UPDATE_DAYS = 7
REISSUE_AFTER = datetime.timedelta(days=1)


def crl_url(hostname: str, port: int) -> str:
    return f"http://{hostname}{'' if port == 80 else f':{port}'}{CRL_PATH}"


def read_revoked(folder: Path) -> list[tuple[int, datetime.datetime]]:
    """(serial, when) of every revoked certificate; [] when none was."""
    try:
        text = (folder / REVOKED_FILE).read_text()
    except FileNotFoundError:
        return []
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            serial, when = line.split()
            found.append((int(serial, 16), datetime.datetime.fromisoformat(when)))
        except ValueError:
            raise PkiError(f"{folder / REVOKED_FILE} line {number} is not 'SERIAL_HEX TIME'; fix or remove it") from None
    return found


def revoke(folder: Path, serial: int, when: datetime.datetime | None = None) -> bool:
    """Add `serial` to the list; False when it was there already."""
    revoked = read_revoked(folder)
    if any(s == serial for s, _ in revoked):
        return False
    revoked.append((serial, when or datetime.datetime.now(datetime.timezone.utc)))
    lines = "".join(f"{s:x} {w.isoformat()}\n" for s, w in revoked)
    path = folder / REVOKED_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(lines)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return True


def build_crl(ca_key_path: Path, ca_cert_path: Path, revoked: Iterable[tuple[int, datetime.datetime]],
              now: datetime.datetime | None = None) -> bytes:
    """The CRL, DER, signed by the CA key, valid NEXT_UPDATE_DAYS from `now`."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    ca_cert = load_certs(ca_cert_path)[0]
    ca_key = read_signing_key(ca_key_path)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - datetime.timedelta(minutes=5))
        .next_update(now + datetime.timedelta(days=NEXT_UPDATE_DAYS))
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
                       critical=False)
        .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build())
    crl = builder.sign(ca_key, signature_hash(ca_key))  # type: ignore[arg-type]
    return crl.public_bytes(serialization.Encoding.DER)


class CrlCache:
    """The CRL the http listener serves: signed again when revoked.txt or the CA
    changes, or a day after the last one. Call current() in a thread."""

    def __init__(self, ca_key_path: Path, ca_cert_path: Path) -> None:
        self.ca_key_path = ca_key_path
        self.ca_cert_path = ca_cert_path
        self._made: tuple[tuple[float, ...], datetime.datetime, bytes] | None = None

    def current(self) -> bytes | None:
        """The DER CRL; None when this server holds no CA key (its certificate is from elsewhere)."""
        try:
            stamps = tuple(_mtime(p) for p in (self.ca_key_path, self.ca_cert_path,
                                               self.ca_key_path.parent / REVOKED_FILE))
        except FileNotFoundError:
            return None
        now = datetime.datetime.now(datetime.timezone.utc)
        if self._made is not None and self._made[0] == stamps and now - self._made[1] < REISSUE_AFTER:
            return self._made[2]
        try:
            der = build_crl(self.ca_key_path, self.ca_cert_path, read_revoked(self.ca_key_path.parent), now)
        except (OSError, ValueError, PkiError):
            return None
        self._made = (stamps, now, der)
        return der


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        if path.name == REVOKED_FILE:
            return 0.0  # no revocation yet
        raise


__all__ = ["CRL_PATH", "CRL_TYPE", "CrlCache", "build_crl", "crl_url", "read_revoked", "revoke"]
