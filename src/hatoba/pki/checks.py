"""The checks of `hatoba cert verify`: each one a verdict, a line of detail and a fix in plain words.

Every check runs even after one fails, so the operator sees all problems of
a certificate setup at once instead of fixing them one run at a time.

A detail and a fix are Texts (hatoba/i18n.py): English wherever they are
printed (`hatoba cert verify`), and said in Japanese by the self-check
report, which passes them on as values of its own texts. Certificate names,
paths, dates, numbers, key and hash names are values, never part of a msgid.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509 import verification

from hatoba.i18n import T, refusal
from hatoba.pki.chain import (
    describe, is_own_issuer, is_self_signed, links_to, order_chain, weak_signature_hash,
)
from hatoba.pki.errors import PkiError
from hatoba.pki.keyfiles import MIN_RSA_BITS, describe_key, same_key
from hatoba.pki.pemfiles import parse_cert, read_blocks


@dataclass(frozen=True)
class Check:
    """One verdict: `name` is what was checked; `fix` says what to do when it failed."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.detail}"
        return text if self.ok or not self.fix else f"{text}; fix: {self.fix}"


def check_order(certs: Sequence[x509.Certificate]) -> tuple[Check, list[x509.Certificate]]:
    """Whether each certificate was issued by the next; also the chain in the right order.

    The ordered chain lets the other checks look at the real server
    certificate even when the file has it in the wrong place.
    """
    ordered, unrelated = order_chain(certs)
    expected = T("the server certificate first, then the CA certificate that issued it, then that CA's issuer")
    for i in range(len(certs) - 1):
        cert, nxt = certs[i], certs[i + 1]
        if links_to(cert, nxt):
            continue
        if not unrelated and len(ordered) == len(certs):
            if certs[0] != ordered[0]:
                where = T("the server certificate %(name)s is #%(number)s, not #1",
                          name=describe(ordered[0]), number=certs.index(ordered[0]) + 1)
            else:
                where = T("%(next)s is not the issuer of %(cert)s", next=_place(certs, nxt), cert=_place(certs, cert))
            return (
                Check(
                    "chain order",
                    False,
                    T("the certificates are in the wrong order: %(where)s", where=where),
                    T("expected order is %(order)s: %(chain)s",
                      order=expected, chain=" -> ".join(describe(c) for c in ordered)),
                ),
                ordered,
            )
        if cert.issuer == nxt.subject:
            detail = T("the signature of %(cert)s does not verify with the key of %(next)s",
                       cert=_place(certs, cert), next=_place(certs, nxt))
            fix = T("use the CA certificate that really issued it (same name, but another key)")
        else:
            detail = T("%(next)s did not issue %(cert)s, which was issued by %(issuer)s",
                       next=_place(certs, nxt), cert=_place(certs, cert), issuer=cert.issuer.rfc4514_string())
            fix = T("put the certificate of %(issuer)s right after it (%(order)s)",
                    issuer=cert.issuer.rfc4514_string(), order=expected)
        # Only the ordered chain goes on: an unrelated certificate (a root
        # after a leaf whose intermediate is missing) must not make it look complete.
        return Check("chain order", False, detail, fix), ordered
    if len(certs) == 1:
        if is_own_issuer(certs[0]):
            return Check("chain order", True, T("one self-signed certificate")), list(certs)
        return Check("chain order", True, T("one certificate, no intermediates in the file")), list(certs)
    weak = _by_name(certs)
    if weak is None:
        return Check("chain order", True, T("leaf first, each certificate issued by the next")), list(certs)
    in_order = T("leaf first, each certificate issued by the next (by name only: %(links)s; see its strength line)",
                 links=weak)
    return Check("chain order", True, in_order), list(certs)


def _by_name(certs: Sequence[x509.Certificate]) -> str | None:
    """A note on the links that only names could confirm (their broken-hash signatures fail on
    their own), or None when every link was confirmed by its signature."""
    weak = [T("%(cert)s is signed with %(hash)s", cert=_place(certs, c), hash=w)
            for c in certs[:-1] if (w := weak_signature_hash(c)) is not None]
    if not weak:
        return None
    which = weak[0]
    for item in weak[1:]:  # "a, b, c", each part still a Text
        which = T("%(list)s, %(item)s", list=which, item=item)
    return which


def _place(certs: Sequence[x509.Certificate], cert: x509.Certificate) -> str:
    return T("certificate #%(number)s (%(name)s)", number=certs.index(cert) + 1, name=describe(cert))


def check_key(leaf: x509.Certificate, key: PrivateKeyTypes, key_path: Path, certs: Sequence[x509.Certificate]) -> Check:
    if same_key(key.public_key(), leaf.public_key()):
        return Check("private key", True, T("%(path)s belongs to %(name)s", path=str(key_path), name=describe(leaf)))
    other = next((c for c in certs if same_key(key.public_key(), c.public_key())), None)
    if other is not None:
        return Check(
            "private key",
            False,
            T("%(path)s belongs to %(other)s, not to the server certificate %(name)s",
              path=str(key_path), other=describe(other), name=describe(leaf)),
            T("the server certificate must come first in the file, and the key must be its own"),
        )
    return Check(
        "private key",
        False,
        T("%(path)s does not belong to %(name)s", path=str(key_path), name=describe(leaf)),
        T("give the key the certificate was issued for, or issue a certificate for this key"),
    )


def san_list(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def format_name(name: x509.GeneralName) -> str:
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.IPAddress):
        return f"IP:{name.value}"
    return f"{type(name).__name__}:{name.value}"


def host_matches(host: str, names: Sequence[x509.GeneralName]) -> x509.GeneralName | None:
    """The SAN that `host` matches, or None.

    RFC 6125 §6.4.3: a wildcard is the whole leftmost label and stands for
    exactly one label, so *.example.org matches mail.example.org but neither
    example.org nor a.mail.example.org. IP addresses match IP SANs only.
    """
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        return next((n for n in names if isinstance(n, x509.IPAddress) and n.value == address), None)
    wanted = host.rstrip(".").lower().split(".")
    for name in names:
        if not isinstance(name, x509.DNSName):
            continue
        pattern = name.value.rstrip(".").lower().split(".")
        if len(pattern) != len(wanted):
            continue
        if pattern == wanted or (pattern[0] == "*" and len(pattern) > 2 and pattern[1:] == wanted[1:] and wanted[0]):
            return name
    return None


def check_host(leaf: x509.Certificate, host: str) -> Check:
    names = san_list(leaf)
    if not names:
        return Check(
            "host name",
            False,
            T("%(name)s has no subjectAltName; clients ignore the common name", name=describe(leaf)),
            T("issue a certificate with --san %(host)s", host=host),
        )
    match = host_matches(host, names)
    if match is not None:
        return Check("host name", True, T("%(host)s matches %(name)s", host=host, name=format_name(match)))
    return Check(
        "host name",
        False,
        T("%(host)s matches none of the certificate's names (%(names)s)",
          host=host, names=", ".join(format_name(n) for n in names)),
        T("issue a certificate with --san %(host)s, or connect with one of those names", host=host),
    )


def check_validity(cert: x509.Certificate, now: datetime.datetime) -> Check:
    name = f"validity of {describe(cert)}"
    after, before = cert.not_valid_after_utc, cert.not_valid_before_utc
    if now > after:
        return Check(
            name,
            False,
            T("EXPIRED %(days)s days ago (%(date)s)", days=(now - after).days, date=f"{after:%Y-%m-%d}"),
            T("issue a new certificate and replace this one"),
        )
    if now < before:
        return Check(
            name,
            False,
            T("not valid until %(time)s UTC", time=f"{before:%Y-%m-%d %H:%M}"),
            T("check this machine's clock (date -u), or wait until then"),
        )
    return Check(name, True, T("valid until %(date)s (%(days)s days left)",
                               date=f"{after:%Y-%m-%d}", days=(after - now).days))


# Curves every TLS client accepts (RFC 8422 §5.1.1); cryptography's names.
STRONG_CURVES = ("secp256r1", "secp384r1", "secp521r1")


def check_strength(cert: x509.Certificate, root: bool) -> Check:
    """Whether the key and signature of one certificate of a chain are strong enough.

    A root's own signature is never checked by clients (they trust its key
    directly), so `root` exempts it from the hash rule; its key still counts.
    """
    name = f"strength of {describe(cert)}"
    try:
        public = cert.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return Check(name, False, T("its key is of a kind this system cannot read"),
                     T("use an ECDSA P-256 or RSA 2048+ key"))
    key = describe_key(public)
    if isinstance(public, rsa.RSAPublicKey) and public.key_size < MIN_RSA_BITS:
        return Check(
            name, False, T("%(key)s: under %(bits)s bits, RSA can be factored and clients refuse it",
                           key=key, bits=MIN_RSA_BITS),
            T("make a new key (hatoba cert key) and have the certificate reissued for it"),
        )
    if isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name not in STRONG_CURVES:
        return Check(name, False, T("%(key)s: a curve TLS clients do not accept", key=key),
                     T("use an ECDSA P-256 or P-384 key"))
    if not isinstance(public, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        return Check(name, False, T("%(key)s: many mail clients accept only RSA and ECDSA keys", key=key),
                     T("use an ECDSA P-256 or RSA 2048+ key"))
    weak = weak_signature_hash(cert)
    if weak is not None and not root:
        return Check(
            name, False, T("%(key)s, but signed with %(hash)s, which can be forged and which clients refuse",
                           key=key, hash=weak),
            T("have the certificate reissued with a SHA-256 signature"),
        )
    if weak is None:
        return Check(name, True, key)  # "ECDSA P-256", "RSA 3072 bits": data, as describe_key gives it
    return Check(name, True, T("%(key)s (a root: its own %(hash)s signature is not used)", key=key, hash=weak))


def is_root(chain: Sequence[x509.Certificate], index: int) -> bool:
    """True for a self-issued CA at the top of a chain of more than one certificate.

    By name, not by signature: a SHA-1 root's signature cannot be checked here.
    """
    cert = chain[index]
    return index > 0 and index == len(chain) - 1 and cert.issuer == cert.subject


def system_ca_file() -> Path | None:
    """The system's bundle of trusted roots, as the ssl module finds it."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def load_anchors(path: Path) -> list[x509.Certificate]:
    """The trust anchors in a CA file; certificates that cannot be parsed are skipped, as OpenSSL does."""
    anchors = []
    with warnings.catch_warnings():
        # System bundles hold a few old roots that break RFC 5280 in small
        # ways (negative serials); they still load, and warnings would only
        # clutter the report.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        for block in read_blocks(path):
            if block.kind != "certificate":
                continue
            try:
                anchors.append(parse_cert(block, path))
            except PkiError:
                continue
    if not anchors:
        raise PkiError(T("%(path)s holds no CA certificate", path=str(path)))
    return anchors


def check_trust(
    chain: Sequence[x509.Certificate], ca_file: Path | None, now: datetime.datetime
) -> Check:
    """Whether a path from the leaf reaches a trusted root, built and checked by cryptography's verifier.

    The verifier also checks what OpenSSL checks (CA flags, path lengths,
    key usage, validity) and the CA/Browser Forum profile that clients
    enforce. It must be given a name to check; any of the leaf's own names
    does, since host names are a separate check.
    """
    source = ca_file if ca_file is not None else system_ca_file()
    if source is None:
        return Check("trust", False, T("no system trust store found"), T("give the CA certificate with --ca-file"))
    try:
        anchors = load_anchors(source)
    except PkiError as exc:
        return Check("trust", False, refusal(exc), T("give a PEM file of CA certificates with --ca-file"))
    leaf, intermediates = chain[0], list(chain[1:])
    subject = _verifier_subject(leaf)
    if subject is None:
        return Check(
            "trust",
            False,
            T("cannot check: %(name)s has no DNS or IP subjectAltName", name=describe(leaf)),
            T("issue a certificate with --san for each server name"),
        )
    trusted_by = T("the CA file") if ca_file is not None else T("the system store %(path)s", path=str(source))
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(anchors))
        .time(now)
        .build_server_verifier(subject)
    )
    try:
        path = verifier.verify(leaf, intermediates)
    except verification.VerificationError as exc:
        # cryptography's own words (English) stay as they are, except the one that means nothing to an operator.
        reason = str(exc).split(" (encountered", 1)[0].removeprefix("validation failed: ")
        if "candidates exhausted" in reason:
            reason = T("no path from the certificate to a trusted root")
        return Check("trust", False, T("not trusted by %(source)s: %(reason)s", source=trusted_by, reason=reason),
                     _trust_fix(chain, anchors, ca_file, now))
    root = path[-1]
    if is_self_signed(leaf) and len(path) == 1:
        return Check("trust", True, T("self-signed, and listed in %(source)s", source=trusted_by))
    return Check("trust", True, T("issued under %(root)s, trusted by %(source)s", root=describe(root), source=trusted_by))


def _trust_fix(
    chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate], ca_file: Path | None, now: datetime.datetime
) -> str:
    """What to do when no trusted path was found: the advice fits the cause, most specific first."""
    stale = next((c for c in chain if not c.not_valid_before_utc <= now <= c.not_valid_after_utc), None)
    if stale is not None:
        return T("renew %(name)s, which is outside its validity (see its validity line)", name=describe(stale))
    top = chain[-1]
    if len(chain) == 1 and is_own_issuer(top) and top not in anchors:
        # No CA vouches for it: each client must be given the certificate itself.
        return T(
            "%(name)s is self-signed (fine for a private setup, where clients are told to trust it): "
            "give the certificate itself with --ca-file, or get one from a CA", name=describe(top),
        )
    if is_self_signed(top) and len(chain) > 1:
        if any(a.subject == top.subject and same_key(a.public_key(), top.public_key()) for a in anchors):
            return T("the root %(name)s is trusted, so a certificate below it is wrong: check the chain order line",
                     name=describe(top))
        if ca_file is not None:
            return T("the chain ends at the root %(name)s, which is not in %(path)s: give the file that holds it",
                     name=describe(top), path=str(ca_file))
        return T("the chain ends at the root %(name)s, which is not among the trusted roots: give it with --ca-file",
                 name=describe(top))
    if any(a.subject == top.issuer for a in anchors):
        return T("%(issuer)s is trusted, but it did not issue %(name)s with this key: check the chain",
                 issuer=top.issuer.rfc4514_string(), name=describe(top))
    if ca_file is not None:
        return T("add the missing intermediate certificate %(issuer)s (--chain)", issuer=top.issuer.rfc4514_string())
    return T("add the missing intermediate certificate %(issuer)s (--chain), or give the issuing root with --ca-file",
             issuer=top.issuer.rfc4514_string())


def _verifier_subject(leaf: x509.Certificate) -> verification.Subject | None:
    for name in san_list(leaf):
        if isinstance(name, x509.IPAddress):
            return verification.IPAddress(name.value)  # type: ignore[arg-type]
        if isinstance(name, x509.DNSName):
            # A wildcard is checked with a name it matches.
            return verification.DNSName(name.value.replace("*", "wildcard", 1))
    return None
