"""Renewing the server certificate hatoba's own CA issued, before two thirds of its life.

`hatoba serve` calls `tend_own_ca` at start, as root before it drops
privileges (the CA key is root's alone); a server that can read the key
(one run as the key's owner) calls it again every CHECK_EVERY seconds. It acts only on a certificate its own CA
issued: tls.cert's leaf is signed by the certificate in tls.ca_file, and
ca.key lies beside it. A certificate from elsewhere (ACME, a public CA, the
operator's own) is never touched.

The new certificate keeps the key (so a TLSA "3 1 1" record stays valid),
the subject, the SANs and the CRL distribution point, and lasts LEAF_DAYS.
It is written beside the old file and renamed over it; the caller then
reloads the TLS context in place (the SIGHUP path), so open connections
keep theirs. Any failure leaves the old file as it was and is one log line.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hatoba.config.schema import TlsConfig
from hatoba.pki.ca import LEAF_DAYS, issue_leaf, load_certs
from hatoba.pki.crl import write_crl
from hatoba.pki.errors import PkiError
from hatoba.pki.keyfiles import read_signing_key, same_key

log = logging.getLogger(__name__)

CHECK_EVERY = 6 * 3600.0
RENEW_AT = 2 / 3  # of the lifetime


@dataclass(frozen=True)
class Renewed:
    old_serial: int
    new_serial: int
    not_after: datetime.datetime


def due(leaf: x509.Certificate, now: datetime.datetime) -> bool:
    start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    return now >= start + (end - start) * RENEW_AT


def renew_if_due(cert_path: Path, key_path: Path, ca_file: Path | None,
                 now: datetime.datetime | None = None) -> Renewed | None:
    """Renew tls.cert when hatoba's CA issued it and two thirds of its life are gone; None otherwise."""
    if ca_file is None or not (ca_file.parent / "ca.key").exists():
        return None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    try:
        chain = load_certs(cert_path)
        ca_cert = load_certs(ca_file)[0]
    except (OSError, ValueError) as exc:
        log.error("certificate renewal: cannot read %s or %s: %s", cert_path, ca_file, exc)
        return None
    if not chain:
        return None
    leaf = chain[0]
    if leaf.issuer != ca_cert.subject or not due(leaf, now):
        return None
    try:
        ca_key = read_signing_key(ca_file.parent / "ca.key")
        server_key = read_signing_key(key_path)
        if not same_key(ca_key.public_key(), ca_cert.public_key()):
            raise PkiError("ca.key does not belong to tls.ca_file")
        if not same_key(server_key.public_key(), leaf.public_key()):
            raise PkiError(f"{key_path} does not belong to {cert_path}")
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        try:
            points = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
            crl_url = points[0].full_name[0].value if points and points[0].full_name else None
        except x509.ExtensionNotFound:
            crl_url = None
        fresh = issue_leaf(ca_key, ca_cert, leaf.public_key(), leaf.subject, list(names), LEAF_DAYS,  # type: ignore[arg-type]
                           now=now, crl_url=crl_url)
        _replace(cert_path, [fresh, *chain[1:]])
    except (OSError, ValueError, PkiError, x509.ExtensionNotFound) as exc:
        log.error("certificate renewal of %s failed: %s; kept the certificate in use (valid until %s)",
                  cert_path, exc, f"{leaf.not_valid_after_utc:%Y-%m-%d}")
        return None
    log.info("certificate %s renewed by hatoba's CA: serial %x, valid until %s", cert_path,
             fresh.serial_number, f"{fresh.not_valid_after_utc:%Y-%m-%d}")
    return Renewed(leaf.serial_number, fresh.serial_number, fresh.not_valid_after_utc)


def tend_own_ca(tls: TlsConfig) -> Renewed | None:
    """What needs hatoba's CA key, done where the key is readable (root at serve's start, or
    a server that runs as the key's owner): renew the server certificate when due, and sign
    the CRL again when it is stale (pki/crl.py). The renewed certificate, if one was made."""
    if tls.ca_file is None or not os.access(tls.ca_file.parent / "ca.key", os.R_OK):
        return None
    renewed = renew_if_due(tls.cert, tls.key, tls.ca_file)
    try:
        write_crl(tls.ca_file.parent, force=False)
    except (OSError, ValueError, PkiError) as exc:
        log.error("cannot sign the CRL in %s: %s; the old one is served", tls.ca_file.parent, exc)
    return renewed


def can_tend(tls: TlsConfig) -> bool:
    return tls.ca_file is not None and os.access(tls.ca_file.parent / "ca.key", os.R_OK)


def _replace(path: Path, chain: list[x509.Certificate]) -> None:
    """Write the chain beside `path` and rename it over: a reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.renewing")
    data = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    stat = path.stat()
    try:
        os.chown(tmp, stat.st_uid, stat.st_gid)
    except PermissionError:
        pass  # not root: the file is ours already
    os.replace(tmp, path)


__all__ = ["CHECK_EVERY", "Renewed", "can_tend", "due", "renew_if_due", "tend_own_ca"]
