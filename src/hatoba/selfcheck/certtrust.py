"""Whether a certificate chain is complete and leads to a root clients trust.

Complete: the file ends at a root (self-signed), or the issuer of its last
certificate is a trust anchor (the system store or tls.ca_file), which
clients have already. Otherwise an intermediate is missing from the file.

Trust: pki.checks.check_trust against the system store (what strangers'
servers and most mail programs use), then against tls.ca_file (a private CA
such as the one hatoba init makes: fine once mail programs are given it).
"""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509

from hatoba.i18n import T, capitalized
from hatoba.pki.chain import describe, is_ca, is_own_issuer, issued_by, weak_signature_hash
from hatoba.pki.checks import check_trust, load_anchors, system_ca_file
from hatoba.pki.errors import PkiError
from hatoba.selfcheck.findings import NOTHING_TO_DO, Finding


class Anchors:
    """The trust anchors, read once and only when a chain needs them."""

    def __init__(self, ca_file: Path | None) -> None:
        self.ca_file = ca_file if ca_file is not None and ca_file.is_file() else None
        self._loaded: list[x509.Certificate] | None = None

    def certificates(self) -> list[x509.Certificate]:
        if self._loaded is None:
            self._loaded = []
            for path in (system_ca_file(), self.ca_file):
                if path is None:
                    continue
                try:
                    self._loaded += load_anchors(path)
                except PkiError:
                    continue
        return self._loaded

    def issuer_of(self, cert: x509.Certificate) -> x509.Certificate | None:
        return next((a for a in self.certificates() if issued_by(cert, a)), None)


def chain_findings(
    where: str,
    cert_path: Path,
    chain: list[x509.Certificate],
    anchors: Anchors,
    now: datetime.datetime,
    *,
    check_trust: bool = True,
) -> list[Finding]:
    broken = next((c for c in chain if not is_own_issuer(c) and weak_signature_hash(c) is not None), None)
    if broken is not None:
        # Not a missing certificate: the issuer may well be in the file, but
        # nobody can confirm a signature made with a broken hash.
        weak = weak_signature_hash(broken)
        return [_finding(
            where, "chain", "critical", T("%(where)s: chain broken by a %(hash)s signature", hash=weak, where=where),
            T("%(name)s is signed with %(hash)s, so clients cannot confirm that "
              "%(issuer)s issued it, whether or not that certificate is in the file.",
              name=describe(broken), hash=weak, issuer=broken.issuer.rfc4514_string()),
            T("Have the certificate reissued with a SHA-256 signature and replace "
              "%(path)s.", path=str(cert_path)),
        )]
    top = chain[-1]
    if is_own_issuer(top):
        if len(chain) == 1:
            ends = T("The file leads up to a self-signed certificate.")
        else:
            ends = T("The file leads up to the root %(root)s.", root=describe(top))
        complete = _finding(where, "chain", "ok", T("%(where)s: chain complete", where=where), ends)
    else:
        issuer = anchors.issuer_of(top)
        if issuer is None and not is_ca(top):
            return [_finding(
                where, "chain", "critical", T("%(where)s: intermediate certificate missing", where=where),
                T("The file holds only %(name)s, issued by %(issuer)s, which is neither "
                  "in the file nor a trusted root, so mail programs and servers cannot build a path to a root.",
                  name=describe(top), issuer=top.issuer.rfc4514_string()),
                T("Append the issuing CA's certificate (your CA's chain or fullchain file) after the server "
                  "certificate in %(path)s.", path=str(cert_path)),
            )]
        if issuer is None:
            # The file has intermediates; what is missing is either one more
            # of them or a root nobody here trusts: the same fix either way.
            return [_finding(
                where, "chain", "warning", T("%(where)s: chain ends at an unknown CA", where=where),
                T("The file ends at the CA %(name)s, whose issuer %(issuer)s is not a "
                  "trusted root, so verifying clients refuse the certificate.",
                  name=describe(top), issuer=top.issuer.rfc4514_string()),
                T("Append the missing CA certificates to %(path)s, or give clients the root certificate "
                  "(tls.ca_file for this check).", path=str(cert_path)),
            )]
        complete = _finding(where, "chain", "ok", T("%(where)s: chain complete", where=where),
                            T("The file ends at %(name)s, issued by the trusted root %(root)s.",
                              name=describe(top), root=describe(issuer)))
    findings = [complete]
    if check_trust:
        findings.append(_trust(where, chain, anchors, now))
    return findings


def _trust(where: str, chain: list[x509.Certificate], anchors: Anchors, now: datetime.datetime) -> Finding:
    public = check_trust(chain, None, now)
    if public.ok:
        return _finding(where, "trust", "ok", T("%(where)s: trusted by the system's roots", where=where),
                        T("%(detail)s.", detail=capitalized(public.detail)))
    if anchors.ca_file is not None:
        private = check_trust(chain, anchors.ca_file, now)
        if private.ok:
            return _finding(
                where, "trust", "info", T("%(where)s: issued by a private CA (tls.ca_file)", where=where),
                T("%(detail)s, but not by the system's roots: mail programs must be given "
                  "%(path)s, and servers delivering here encrypt without verifying.",
                  detail=capitalized(private.detail), path=str(anchors.ca_file)),
                T("For the public, install a certificate from a public CA (e.g. Let's Encrypt) for this name."),
            )
    return _finding(
        where, "trust", "warning", T("%(where)s: not trusted by any known root", where=where),
        T("%(detail)s; verifying clients refuse the connection.", detail=capitalized(public.detail)),
        T("Install a certificate from a public CA (e.g. Let's Encrypt), or give clients the issuing CA certificate."),
    )


def _finding(where: str, aspect: str, severity: str, title: str, explanation: str, fix: str = "") -> Finding:
    """`title` names the certificate setup (%(where)s: ...) as every title of this section does."""
    return Finding("certificates", f"cert.{where}.{aspect}", severity, title, explanation, fix or NOTHING_TO_DO)
