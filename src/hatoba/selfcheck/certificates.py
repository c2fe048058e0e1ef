"""Certificate health for tls.cert/key and every SNI certificate (tls.domains).

For each: can it be read, does the key belong to it, how long is it valid,
how strong are its key and signature, does the file hold the whole chain,
do clients trust its root (certtrust.py), and does it name the host that
clients connect to. The pki modules do the checking; this module turns the
verdicts into findings with severities.

Rules:
- Files that do not exist are left to the config section (one finding each).
- A missing intermediate is critical: mail programs and verifying servers
  do not fetch it (browsers do, via AIA), so they cannot build a path.
"""

from __future__ import annotations

import datetime
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hatoba.acme.files import AcmeFiles, served_tls
from hatoba.config.schema import Config
from hatoba.pki.certinfo import signature_name
from hatoba.pki.chain import describe, is_own_issuer
from hatoba.pki.checks import check_key, check_order, format_name, host_matches, is_root, san_list
from hatoba.pki.errors import PkiError
from hatoba.pki.keyfiles import MIN_RSA_BITS, describe_key, read_key
from hatoba.pki.pemfiles import read_certs
from hatoba.pki.tlsctx import TlsSetupError, server_context
from hatoba.selfcheck.certtrust import Anchors, chain_findings
from hatoba.selfcheck.findings import Finding

EXPIRY_WARNING_DAYS = 14
WEAK_HASHES = (hashes.SHA1, hashes.MD5)


@dataclass(frozen=True)
class CertSetup:
    """One certificate and key the server presents, and the name it must cover."""

    where: str  # "tls" or 'tls.domains."example.org"'
    cert: Path
    key: Path
    name: str  # server.hostname, or the SNI domain
    sni: bool = False


def setups(config: Config) -> list[CertSetup]:
    served = served_tls(config)  # the ACME CA's certificate once there is one
    where = "acme" if served.cert != config.tls.cert else "tls"
    found = [CertSetup(where, served.cert, served.key, config.server.hostname)]
    for domain, d in config.tls.domains.items():
        found.append(CertSetup(f'tls.domains."{domain}"', d.cert, d.key, domain, sni=True))
    return found


def certificate_findings(config: Config, now: datetime.datetime) -> list[Finding]:
    anchors = Anchors(config.tls.ca_file)
    findings: list[Finding] = []
    for setup in setups(config):
        if setup.cert.is_file() and setup.key.is_file():
            findings += _setup_findings(setup, anchors, now)
    if all(s.cert.is_file() and s.key.is_file() for s in setups(config)):
        findings.append(_loads(config))
    if config.acme.enabled:
        findings.append(_acme_finding(config, now))
    return findings


def _acme_finding(config: Config, now: datetime.datetime) -> Finding:
    """Whether the certificate from the ACME CA is there and renewing (acme/manager.py's state)."""
    files = AcmeFiles.of(config)
    state = files.read_state()
    served = served_tls(config).cert == files.cert
    error = state.get("last_error")
    if error:
        left = ""
        if served:
            leaf = read_certs(files.cert)[0]
            days = (leaf.not_valid_after_utc - now).days
            left = f" The certificate in use expires in {days} day(s)."
            severity = "critical" if days < EXPIRY_WARNING_DAYS else "warning"
        else:
            severity = "warning"
        return Finding("certificates", "acme.failing", severity, "Certificates from the ACME CA are failing",
                       f"The last attempt at {config.acme.directory_url} failed: {error}.{left}",
                       "Fix what the error names, then run: hatoba cert acme renew")
    if not served:
        return Finding("certificates", "acme.none", "warning", "No certificate from the ACME CA yet",
                       f"[acme] is on, but the listeners still serve {config.tls.cert}.",
                       "Start hatoba serve (it orders one at start); see hatoba cert acme status")
    leaf = read_certs(files.cert)[0]
    return Finding("certificates", "acme.ok", "ok", "The certificate comes from the ACME CA",
                   f"{config.acme.directory_url} issued it; valid until {leaf.not_valid_after_utc:%Y-%m-%d}, "
                   "renewed by hatoba before then.")


def read_leaf(path: Path) -> x509.Certificate | None:
    """The server's own certificate in a chain file (for the TLSA record), or None."""
    try:
        _, chain = check_order(read_certs(path))
    except (PkiError, OSError):
        return None
    return chain[0]


def _finding(setup: CertSetup, aspect: str, severity: str, title: str, explanation: str, fix: str = "") -> Finding:
    return Finding(
        "certificates", f"cert.{setup.where}.{aspect}", severity, f"{setup.where}: {title}", explanation,
        fix or "Nothing to do.",
    )


def _setup_findings(setup: CertSetup, anchors: Anchors, now: datetime.datetime) -> list[Finding]:
    try:
        certs = read_certs(setup.cert)
    except PkiError as exc:
        return [_finding(setup, "read", "critical", "certificate file unreadable", f"{exc}.",
                         f"Point {setup.where}.cert at a PEM chain file (server certificate first).")]
    order, chain = check_order(certs)
    leaf = chain[0]
    findings = [_key_match(setup, leaf, certs), _key_mode(setup)]
    if not order.ok:
        findings.append(_finding(setup, "order", "warning", "chain in the wrong order", f"{order.detail}.",
                                 f"Reorder {setup.cert}: {order.fix}."))
    findings += _validity(setup, chain, now)
    findings += _strength(setup, chain)
    findings += _names(setup, leaf)
    findings += _self_signed(setup, leaf)
    expired = now > leaf.not_valid_after_utc
    findings += chain_findings(setup.where, setup.cert, chain, anchors, now, check_trust=not expired)
    return findings


def _key_match(setup: CertSetup, leaf: x509.Certificate, certs: list[x509.Certificate]) -> Finding:
    try:
        key = read_key(setup.key)
    except PkiError as exc:
        return _finding(setup, "key", "critical", "private key unreadable", f"{exc}.",
                        f"Point {setup.where}.key at the unencrypted PEM key of the certificate (mode 0600).")
    check = check_key(leaf, key, setup.key, certs)
    if check.ok:
        return _finding(setup, "key", "ok", "key matches the certificate", f"{check.detail}.")
    return _finding(setup, "key", "critical", "key does not match the certificate", f"{check.detail}.",
                    f"{check.fix[0].upper()}{check.fix[1:]}.")


def _key_mode(setup: CertSetup) -> Finding:
    """The key file must be the owner's alone: whoever reads it can pose as this server."""
    try:
        mode = stat.S_IMODE(setup.key.stat().st_mode)
    except OSError as exc:
        return _finding(setup, "key-mode", "warning", "private key file not checked", f"{setup.key}: {exc.strerror}.")
    if mode & 0o077:
        return _finding(
            setup, "key-mode", "critical", f"private key readable by others (mode {mode:04o})",
            f"{setup.key} can be read by its group or by every user of this machine, who can then "
            "impersonate the server and read intercepted mail.",
            f"chmod 600 {setup.key}",
        )
    return _finding(setup, "key-mode", "ok", f"private key file mode {mode:04o}", f"Only the owner of {setup.key} can read it.")


def _validity(setup: CertSetup, chain: list[x509.Certificate], now: datetime.datetime) -> list[Finding]:
    findings = []
    for i, cert in enumerate(chain):
        what = "certificate" if i == 0 else f"CA certificate {describe(cert)}"
        after, before = cert.not_valid_after_utc, cert.not_valid_before_utc
        left = after - now
        if now > after:
            findings.append(_finding(
                setup, "validity", "critical", f"{what} expired",
                f"{describe(cert)} expired {(now - after).days} days ago ({after:%Y-%m-%d}); clients refuse it.",
                f"Renew it and replace {setup.cert} (leaf first, then intermediates).",
            ))
        elif now < before:
            findings.append(_finding(
                setup, "validity", "critical", f"{what} not yet valid",
                f"{describe(cert)} is valid only from {before:%Y-%m-%d %H:%M} UTC.",
                "Check this machine's clock (date -u), or wait until then.",
            ))
        elif left < datetime.timedelta(days=EXPIRY_WARNING_DAYS):
            findings.append(_finding(
                setup, "validity", "warning", f"{what} expires in {left.days} days",
                f"{describe(cert)} is valid until {after:%Y-%m-%d %H:%M} UTC.",
                f"Renew it now and replace {setup.cert}.",
            ))
        elif i == 0:
            findings.append(_finding(setup, "validity", "ok", f"valid for {left.days} more days",
                                     f"{describe(cert)} is valid until {after:%Y-%m-%d}."))
    return findings


def _strength(setup: CertSetup, chain: list[x509.Certificate]) -> list[Finding]:
    leaf = chain[0]
    findings = []
    try:
        public = leaf.public_key()
    except (UnsupportedAlgorithm, ValueError):
        public = None
    if isinstance(public, rsa.RSAPublicKey) and public.key_size < MIN_RSA_BITS:
        findings.append(_finding(
            setup, "key-strength", "critical", f"weak key (RSA {public.key_size} bits)",
            f"RSA keys under {MIN_RSA_BITS} bits can be factored, and current TLS libraries refuse them.",
            "Make a new key (hatoba cert key --type ecdsa, or --type rsa --bits 3072) and a certificate for it.",
        ))
    elif isinstance(public, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        findings.append(_finding(setup, "key-strength", "ok", f"key {describe_key(public)}",
                                 "Strong enough, and accepted by every mail client."))
    else:
        kind = describe_key(public) if public is not None else "an unreadable"
        findings.append(_finding(
            setup, "key-strength", "warning", f"unusual key ({kind})",
            "Many mail clients only accept RSA and ECDSA server keys.",
            "Use an ECDSA P-256 or RSA 2048+ key (hatoba cert key).",
        ))
    # A root's own signature is never checked (clients trust its key); a
    # self-signed server certificate's is, so only a root further up is exempt.
    weak = [c for i, c in enumerate(chain) if not is_root(chain, i) and isinstance(_hash(c), WEAK_HASHES)]
    for cert in weak:
        findings.append(_finding(
            setup, "signature", "critical", f"signed with {signature_name(cert.signature_algorithm_oid)}",
            f"{describe(cert)} is signed with a broken hash (collisions can be forged); clients refuse it.",
            "Have the certificate reissued with SHA-256 (any current CA does this by default).",
        ))
    if not weak:
        findings.append(_finding(setup, "signature", "ok", f"signed with {signature_name(leaf.signature_algorithm_oid)}",
                                 "No certificate in the chain uses SHA-1 or MD5."))
    return findings


def _hash(cert: x509.Certificate) -> hashes.HashAlgorithm | None:
    try:
        return cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None


def _self_signed(setup: CertSetup, leaf: x509.Certificate) -> list[Finding]:
    """Say so: no CA vouches for such a certificate, so clients must be given it to trust it."""
    if not is_own_issuer(leaf):
        return []
    return [_finding(
        setup, "self-signed", "info", "self-signed certificate",
        f"{describe(leaf)} is signed by its own key, not by a CA: fine for a private setup, but every mail "
        "program must be told to trust this certificate explicitly, and servers delivering here encrypt "
        "without verifying.",
        f"Give users {setup.cert} to import; for clients you do not manage, install a certificate from a "
        f"public CA (e.g. Let's Encrypt) for {setup.name}.",
    )]


def _names(setup: CertSetup, leaf: x509.Certificate) -> list[Finding]:
    names = san_list(leaf)
    listed = ", ".join(format_name(n) for n in names) or "no subjectAltName"
    if host_matches(setup.name, names) is not None:
        return [_finding(setup, "names", "ok", f"covers {setup.name}", f"Its names: {listed}.")]
    if setup.sni:
        # Clients reach an SNI domain as DOMAIN or a host below it (mail.DOMAIN).
        below = [n for n in names if isinstance(n, x509.DNSName) and n.value.lower().endswith("." + setup.name)]
        if below:
            return [_finding(setup, "names", "ok", f"covers names under {setup.name}", f"Its names: {listed}.")]
    what = "the server's host name (server.hostname)" if not setup.sni else "the domain it is chosen for"
    return [_finding(
        setup, "names", "critical", f"does not cover {setup.name}",
        f"Clients connect to {what} {setup.name}, but the certificate names {listed}, so verifying clients refuse it.",
        f"Get a certificate with {setup.name} among its subjectAltNames and put it in {setup.cert}.",
    )]


def _loads(config: Config) -> Finding:
    """The same load hatoba serve does at start: OpenSSL may refuse what the checks above let pass."""
    try:
        server_context(served_tls(config))
    except TlsSetupError as exc:
        return Finding("certificates", "cert.load", "critical", "hatoba serve cannot load the certificates",
                       f"{exc}.", "Fix the certificate and key named above; hatoba serve will not start until then.")
    return Finding("certificates", "cert.load", "ok", "TLS loads as hatoba serve will load it",
                   "OpenSSL accepts every certificate and key in [tls].")
