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

from hatoba.pki.chain import describe, is_ca, is_own_issuer, issued_by, weak_signature_hash
from hatoba.pki.checks import check_trust, load_anchors, system_ca_file
from hatoba.pki.errors import PkiError
from hatoba.selfcheck.findings import Finding


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
            where, "chain", "critical", f"chain broken by a {weak} signature",
            f"{describe(broken)} is signed with {weak}, so clients cannot confirm that "
            f"{broken.issuer.rfc4514_string()} issued it, whether or not that certificate is in the file.",
            "Have the certificate reissued with a SHA-256 signature and replace "
            f"{cert_path}.",
        )]
    top = chain[-1]
    if is_own_issuer(top):
        ends = "a self-signed certificate" if len(chain) == 1 else f"the root {describe(top)}"
        complete = _finding(where, "chain", "ok", "chain complete", f"The file leads up to {ends}.")
    else:
        issuer = anchors.issuer_of(top)
        if issuer is None and not is_ca(top):
            return [_finding(
                where, "chain", "critical", "intermediate certificate missing",
                f"The file holds only {describe(top)}, issued by {top.issuer.rfc4514_string()}, which is neither "
                "in the file nor a trusted root, so mail programs and servers cannot build a path to a root.",
                f"Append the issuing CA's certificate (your CA's chain or fullchain file) after the server "
                f"certificate in {cert_path}.",
            )]
        if issuer is None:
            # The file has intermediates; what is missing is either one more
            # of them or a root nobody here trusts: the same fix either way.
            return [_finding(
                where, "chain", "warning", "chain ends at an unknown CA",
                f"The file ends at the CA {describe(top)}, whose issuer {top.issuer.rfc4514_string()} is not a "
                "trusted root, so verifying clients refuse the certificate.",
                f"Append the missing CA certificates to {cert_path}, or give clients the root certificate "
                "(tls.ca_file for this check).",
            )]
        complete = _finding(where, "chain", "ok", "chain complete",
                            f"The file ends at {describe(top)}, issued by the trusted root {describe(issuer)}.")
    findings = [complete]
    if check_trust:
        findings.append(_trust(where, chain, anchors, now))
    return findings


def _trust(where: str, chain: list[x509.Certificate], anchors: Anchors, now: datetime.datetime) -> Finding:
    public = check_trust(chain, None, now)
    if public.ok:
        return _finding(where, "trust", "ok", "trusted by the system's roots", f"{_sentence(public.detail)}.")
    if anchors.ca_file is not None:
        private = check_trust(chain, anchors.ca_file, now)
        if private.ok:
            return _finding(
                where, "trust", "info", "issued by a private CA (tls.ca_file)",
                f"{_sentence(private.detail)}, but not by the system's roots: mail programs must be given "
                f"{anchors.ca_file}, and servers delivering here encrypt without verifying.",
                "For the public, install a certificate from a public CA (e.g. Let's Encrypt) for this name.",
            )
    return _finding(
        where, "trust", "warning", "not trusted by any known root",
        f"{_sentence(public.detail)}; verifying clients refuse the connection.",
        "Install a certificate from a public CA (e.g. Let's Encrypt), or give clients the issuing CA certificate.",
    )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _finding(where: str, aspect: str, severity: str, title: str, explanation: str, fix: str = "") -> Finding:
    return Finding(
        "certificates", f"cert.{where}.{aspect}", severity, f"{where}: {title}", explanation,
        fix or "Nothing to do.",
    )
