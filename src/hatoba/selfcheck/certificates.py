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
from hatoba.i18n import T, capitalized, refusal
from hatoba.pki.certinfo import signature_name
from hatoba.pki.chain import describe, is_own_issuer
from hatoba.pki.checks import check_key, check_order, format_name, host_matches, is_root, san_list
from hatoba.pki.errors import PkiError
from hatoba.pki.keyfiles import MIN_RSA_BITS, describe_key, read_key
from hatoba.pki.pemfiles import read_certs
from hatoba.pki.tlsctx import TlsSetupError, server_context
from hatoba.selfcheck.certtrust import Anchors, chain_findings
from hatoba.selfcheck.findings import NOTHING_TO_DO, Finding

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
        url = config.acme.directory_url
        if served:
            leaf = read_certs(files.cert)[0]
            days = (leaf.not_valid_after_utc - now).days
            explanation = T("The last attempt at %(url)s failed: %(error)s. "
                            "The certificate in use expires in %(days)s day(s).", url=url, error=error, days=days)
            severity = "critical" if days < EXPIRY_WARNING_DAYS else "warning"
        else:
            explanation = T("The last attempt at %(url)s failed: %(error)s.", url=url, error=error)
            severity = "warning"
        return Finding("certificates", "acme.failing", severity, T("Certificates from the ACME CA are failing"),
                       explanation, T("Fix what the error names, then run: hatoba cert acme renew"))
    if not served:
        return Finding("certificates", "acme.none", "warning", T("No certificate from the ACME CA yet"),
                       T("[acme] is on, but the listeners still serve %(path)s.", path=str(config.tls.cert)),
                       T("Start hatoba serve (it orders one at start); see hatoba cert acme status"))
    leaf = read_certs(files.cert)[0]
    return Finding("certificates", "acme.ok", "ok", T("The certificate comes from the ACME CA"),
                   T("%(url)s issued it; valid until %(date)s, renewed by hatoba before then.",
                     url=config.acme.directory_url, date=f"{leaf.not_valid_after_utc:%Y-%m-%d}"))


def read_leaf(path: Path) -> x509.Certificate | None:
    """The server's own certificate in a chain file (for the TLSA record), or None."""
    try:
        _, chain = check_order(read_certs(path))
    except (PkiError, OSError):
        return None
    return chain[0]


def _finding(setup: CertSetup, aspect: str, severity: str, title: str, explanation: str, fix: str = "") -> Finding:
    """`title` names the setup (%(where)s: ...) as every title of this section does."""
    return Finding("certificates", f"cert.{setup.where}.{aspect}", severity, title, explanation, fix or NOTHING_TO_DO)


def _setup_findings(setup: CertSetup, anchors: Anchors, now: datetime.datetime) -> list[Finding]:
    try:
        certs = read_certs(setup.cert)
    except PkiError as exc:
        return [_finding(setup, "read", "critical", T("%(where)s: certificate file unreadable", where=setup.where),
                         T("%(detail)s.", detail=refusal(exc)),
                         T("Point %(where)s.cert at a PEM chain file (server certificate first).", where=setup.where))]
    order, chain = check_order(certs)
    leaf = chain[0]
    findings = [_key_match(setup, leaf, certs), _key_mode(setup)]
    if not order.ok:
        findings.append(_finding(setup, "order", "warning", T("%(where)s: chain in the wrong order", where=setup.where),
                                 T("%(detail)s.", detail=order.detail),
                                 T("Reorder %(path)s: %(fix)s.", path=str(setup.cert), fix=order.fix)))
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
        return _finding(setup, "key", "critical", T("%(where)s: private key unreadable", where=setup.where),
                        T("%(detail)s.", detail=refusal(exc)),
                        T("Point %(where)s.key at the unencrypted PEM key of the certificate (mode 0600).",
                          where=setup.where))
    check = check_key(leaf, key, setup.key, certs)
    if check.ok:
        return _finding(setup, "key", "ok", T("%(where)s: key matches the certificate", where=setup.where),
                        T("%(detail)s.", detail=check.detail))
    return _finding(setup, "key", "critical", T("%(where)s: key does not match the certificate", where=setup.where),
                    T("%(detail)s.", detail=check.detail),
                    T("%(detail)s.", detail=capitalized(check.fix)))


def _key_mode(setup: CertSetup) -> Finding:
    """The key file must be the owner's alone: whoever reads it can pose as this server."""
    try:
        mode = stat.S_IMODE(setup.key.stat().st_mode)
    except OSError as exc:
        return _finding(setup, "key-mode", "warning", T("%(where)s: private key file not checked", where=setup.where),
                        T("%(path)s: %(error)s.", path=str(setup.key), error=exc.strerror))
    if mode & 0o077:
        return _finding(
            setup, "key-mode", "critical",
            T("%(where)s: private key readable by others (mode %(mode)s)", where=setup.where, mode=f"{mode:04o}"),
            T("%(path)s can be read by its group or by every user of this machine, who can then "
              "impersonate the server and read intercepted mail.", path=str(setup.key)),
            T("chmod 600 %(path)s", path=str(setup.key)),
        )
    return _finding(setup, "key-mode", "ok",
                    T("%(where)s: private key file mode %(mode)s", where=setup.where, mode=f"{mode:04o}"),
                    T("Only the owner of %(path)s can read it.", path=str(setup.key)))


def _validity(setup: CertSetup, chain: list[x509.Certificate], now: datetime.datetime) -> list[Finding]:
    findings = []
    for i, cert in enumerate(chain):
        where, name = setup.where, describe(cert)  # titles name the CA certificates (i > 0), not the leaf
        after, before = cert.not_valid_after_utc, cert.not_valid_before_utc
        left = after - now
        if now > after:
            findings.append(_finding(
                setup, "validity", "critical",
                T("%(where)s: certificate expired", where=where) if i == 0
                else T("%(where)s: CA certificate %(name)s expired", where=where, name=name),
                T("%(name)s expired %(days)s days ago (%(date)s); clients refuse it.",
                  name=name, days=(now - after).days, date=f"{after:%Y-%m-%d}"),
                T("Renew it and replace %(path)s (leaf first, then intermediates).", path=str(setup.cert)),
            ))
        elif now < before:
            findings.append(_finding(
                setup, "validity", "critical",
                T("%(where)s: certificate not yet valid", where=where) if i == 0
                else T("%(where)s: CA certificate %(name)s not yet valid", where=where, name=name),
                T("%(name)s is valid only from %(time)s UTC.", name=name, time=f"{before:%Y-%m-%d %H:%M}"),
                T("Check this machine's clock (date -u), or wait until then."),
            ))
        elif left < datetime.timedelta(days=EXPIRY_WARNING_DAYS):
            findings.append(_finding(
                setup, "validity", "warning",
                T("%(where)s: certificate expires in %(days)s days", where=where, days=left.days) if i == 0
                else T("%(where)s: CA certificate %(name)s expires in %(days)s days",
                       where=where, name=name, days=left.days),
                T("%(name)s is valid until %(time)s UTC.", name=name, time=f"{after:%Y-%m-%d %H:%M}"),
                T("Renew it now and replace %(path)s.", path=str(setup.cert)),
            ))
        elif i == 0:
            findings.append(_finding(
                setup, "validity", "ok", T("%(where)s: valid for %(days)s more days", where=where, days=left.days),
                T("%(name)s is valid until %(date)s.", name=name, date=f"{after:%Y-%m-%d}"),
            ))
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
            setup, "key-strength", "critical",
            T("%(where)s: weak key (RSA %(bits)s bits)", where=setup.where, bits=public.key_size),
            T("RSA keys under %(bits)s bits can be factored, and current TLS libraries refuse them.",
              bits=MIN_RSA_BITS),
            T("Make a new key (hatoba cert key --type ecdsa, or --type rsa --bits 3072) and a certificate for it."),
        ))
    elif isinstance(public, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        findings.append(_finding(setup, "key-strength", "ok",
                                 T("%(where)s: key %(key)s", where=setup.where, key=describe_key(public)),
                                 T("Strong enough, and accepted by every mail client.")))
    else:
        if public is None:
            title = T("%(where)s: unusual key (an unreadable)", where=setup.where)
        else:
            title = T("%(where)s: unusual key (%(kind)s)", where=setup.where, kind=describe_key(public))
        findings.append(_finding(
            setup, "key-strength", "warning", title,
            T("Many mail clients only accept RSA and ECDSA server keys."),
            T("Use an ECDSA P-256 or RSA 2048+ key (hatoba cert key)."),
        ))
    # A root's own signature is never checked (clients trust its key); a
    # self-signed server certificate's is, so only a root further up is exempt.
    weak = [c for i, c in enumerate(chain) if not is_root(chain, i) and isinstance(_hash(c), WEAK_HASHES)]
    for cert in weak:
        findings.append(_finding(
            setup, "signature", "critical",
            T("%(where)s: signed with %(algorithm)s", where=setup.where,
              algorithm=signature_name(cert.signature_algorithm_oid)),
            T("%(name)s is signed with a broken hash (collisions can be forged); clients refuse it.",
              name=describe(cert)),
            T("Have the certificate reissued with SHA-256 (any current CA does this by default)."),
        ))
    if not weak:
        findings.append(_finding(setup, "signature", "ok",
                                 T("%(where)s: signed with %(algorithm)s", where=setup.where,
                                   algorithm=signature_name(leaf.signature_algorithm_oid)),
                                 T("No certificate in the chain uses SHA-1 or MD5.")))
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
        setup, "self-signed", "info", T("%(where)s: self-signed certificate", where=setup.where),
        T("%(name)s is signed by its own key, not by a CA: fine for a private setup, but every mail "
          "program must be told to trust this certificate explicitly, and servers delivering here encrypt "
          "without verifying.", name=describe(leaf)),
        T("Give users %(path)s to import; for clients you do not manage, install a certificate from a "
          "public CA (e.g. Let's Encrypt) for %(host)s.", path=str(setup.cert), host=setup.name),
    )]


def _names(setup: CertSetup, leaf: x509.Certificate) -> list[Finding]:
    names = san_list(leaf)
    listed = ", ".join(format_name(n) for n in names) or T("no subjectAltName")
    if host_matches(setup.name, names) is not None:
        return [_finding(setup, "names", "ok", T("%(where)s: covers %(host)s", where=setup.where, host=setup.name),
                         T("Its names: %(names)s.", names=listed))]
    if setup.sni:
        # Clients reach an SNI domain as DOMAIN or a host below it (mail.DOMAIN).
        below = [n for n in names if isinstance(n, x509.DNSName) and n.value.lower().endswith("." + setup.name)]
        if below:
            return [_finding(setup, "names", "ok",
                             T("%(where)s: covers names under %(domain)s", where=setup.where, domain=setup.name),
                             T("Its names: %(names)s.", names=listed))]
    if not setup.sni:
        explanation = T("Clients connect to the server's host name (server.hostname) %(host)s, but the certificate "
                        "names %(names)s, so verifying clients refuse it.", host=setup.name, names=listed)
    else:
        explanation = T("Clients connect to the domain it is chosen for %(host)s, but the certificate "
                        "names %(names)s, so verifying clients refuse it.", host=setup.name, names=listed)
    return [_finding(
        setup, "names", "critical", T("%(where)s: does not cover %(host)s", where=setup.where, host=setup.name),
        explanation,
        T("Get a certificate with %(host)s among its subjectAltNames and put it in %(path)s.",
          host=setup.name, path=str(setup.cert)),
    )]


def _loads(config: Config) -> Finding:
    """The same load hatoba serve does at start: OpenSSL may refuse what the checks above let pass."""
    try:
        server_context(served_tls(config))
    except TlsSetupError as exc:
        return Finding("certificates", "cert.load", "critical", T("hatoba serve cannot load the certificates"),
                       T("%(detail)s.", detail=refusal(exc)),
                       T("Fix the certificate and key named above; hatoba serve will not start until then."))
    return Finding("certificates", "cert.load", "ok", T("TLS loads as hatoba serve will load it"),
                   T("OpenSSL accepts every certificate and key in [tls]."))
