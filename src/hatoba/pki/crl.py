"""The private CA's certificate revocation list (RFC 5280 §5), and its list of revoked serials.

Certificates hatoba's CA issues name a CRL distribution point on the http
listener (`http://HOSTNAME[:PORT]/crl/ca.crl`), so a client or a scanner
can learn that one was revoked; without one, nothing could ever tell them.

The CA key is root's alone (the service user cannot read it: a server
that could would mint certificates every client of the CA trusts). So the
CRL is a file, tls/ca.crl, signed where the key is readable: by `hatoba
init`, by `hatoba cert revoke` (which adds the serial to revoked.txt and
signs again at once), and by `hatoba serve` at start, before it drops root.
The server only reads the file. Each CRL is valid NEXT_UPDATE_DAYS, longer
than a certificate lives: between two signings nothing changes, since
only a revocation changes the list, and a revocation signs.

revoked.txt: one line per certificate, "SERIAL_HEX ISO_TIME", written whole
and renamed into place.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable
from pathlib import Path

from hatoba.pki.errors import PkiError

CRL_PATH = "/crl/ca.crl"
CRL_TYPE = "application/pkix-crl"  # RFC 5280 §4.2.1.13: DER
REVOKED_FILE = "revoked.txt"
CRL_FILE = "ca.crl"
NEXT_UPDATE_DAYS = 400
RESIGN_AFTER = datetime.timedelta(days=30)  # serve's start signs again past this age


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
    # Loaded when signing, not with CrlFile: the workers that serve the file never sign.
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from hatoba.pki.ca import load_certs
    from hatoba.pki.keyfiles import read_signing_key, signature_hash

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


def write_crl(ca_dir: Path, *, force: bool = True, now: datetime.datetime | None = None) -> bool:
    """Sign the CRL into ca_dir/ca.crl (0644) from ca.key, ca.crt and revoked.txt; False when
    ca.key is absent or unreadable here. force=False: only when the file is missing,
    older than the revoked list, or RESIGN_AFTER old."""
    key, cert, target = ca_dir / "ca.key", ca_dir / "ca.crt", ca_dir / CRL_FILE
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if not force and target.exists():
        made = target.stat().st_mtime
        if made >= _mtime(ca_dir / REVOKED_FILE) and now.timestamp() - made < RESIGN_AFTER.total_seconds():
            return True
    if not os.access(key, os.R_OK):
        return False
    der = build_crl(key, cert, read_revoked(ca_dir), now)
    tmp = target.with_name(f".{CRL_FILE}.tmp")
    tmp.write_bytes(der)
    os.chmod(tmp, 0o644)
    stat = ca_dir.stat()
    try:
        os.chown(tmp, stat.st_uid, stat.st_gid)  # as tls/ itself: the service user's, public
    except PermissionError:
        pass
    os.replace(tmp, target)
    return True


class CrlFile:
    """tls/ca.crl as the http listener serves it, read again when it changes. Call current() in a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._read: tuple[float, bytes] | None = None

    def current(self) -> bytes | None:
        try:
            stamp = self.path.stat().st_mtime
            if self._read is None or self._read[0] != stamp:
                self._read = (stamp, self.path.read_bytes())
        except OSError:
            return None
        return self._read[1]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        if path.name == REVOKED_FILE:
            return 0.0  # no revocation yet
        raise


__all__ = ["CRL_FILE", "CRL_PATH", "CRL_TYPE", "CrlFile", "build_crl", "crl_url", "read_revoked", "revoke", "write_crl"]
