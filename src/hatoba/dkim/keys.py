"""DKIM signing keys: generating them, finding the one in use, the DNS record.

Layout under the DKIM folder (config.paths.dkim_dir):

    DOMAIN/SELECTOR.key   the private key, PEM PKCS #8, mode 0600
    DOMAIN/selector       one line: the selector in use for DOMAIN

Rules:
- DOMAIN is the normalised spelling (lower case, A-labels), so each domain
  has exactly one folder whatever way the operator wrote it.
- A key file is never overwritten (O_EXCL): its public half may already be
  in DNS, and replacing it would break every signature made with it.
- Folders are 0700 and keys 0600 from their first byte.
- The selector file is replaced atomically, so the signer sees the old
  selector or the new one, never a half-written name.
"""

from __future__ import annotations

import base64
import datetime
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from hatoba.fsutil import make_private_dir, write_atomic
from hatoba.i18n import T, refusal
from hatoba.pki.keys import write_new_file
from hatoba.proto.address import AddressError, parse_domain

ALGORITHMS = ("rsa", "ed25519")
# RFC 8301 §3.2: signers MUST use at least 1024 bits and SHOULD use 2048;
# 1024-bit RSA is within reach of well-funded attackers, so we refuse it.
# Above 4096 bits the record no longer fits comfortably in DNS (RFC 6376 §3.3.3).
RSA_BITS = (2048, 3072, 4096)
SELECTOR_FILE = "selector"
KEY_SUFFIX = ".key"
# TXT character-strings hold at most 255 octets (RFC 1035 §3.3.14).
TXT_CHUNK = 255

# RFC 6376 §3.1: selector = sub-domain *( "." sub-domain ), with sub-domain
# from RFC 5321: sub-domain = Let-dig [Ldh-str]; Ldh-str = *( ALPHA / DIGIT / "-" ) Let-dig
_SELECTOR_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")


class DkimError(ValueError):
    """A DKIM key or name problem, in one line of plain words for the operator."""


@dataclass(frozen=True)
class DkimKey:
    """One signing key: who it signs for, under which selector, and where it lives."""

    domain: str
    selector: str
    algorithm: str  # "rsa" or "ed25519"
    private_pem: bytes
    path: Path

    def private_key(self) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
        return _parse_private_key(self.private_pem, self.path)

    @property
    def bits(self) -> int:
        """The key size: the RSA modulus length, or 256 for Ed25519."""
        key = self.private_key()
        return key.key_size if isinstance(key, rsa.RSAPrivateKey) else 256

    def public_b64(self) -> str:
        """The p= tag value of the DNS record."""
        public = self.private_key().public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            # RFC 8463 §4.2: the raw 32-octet public key, not an ASN.1 structure.
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        else:
            # RFC 6376 §3.6.1: what every verifier reads is SubjectPublicKeyInfo DER.
            raw = public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        return base64.b64encode(raw).decode("ascii")

    def dns_name(self) -> str:
        """Where verifiers look the key up (RFC 6376 §3.6.2.1)."""
        return f"{self.selector}._domainkey.{self.domain}"

    def txt_value(self) -> str:
        """The TXT record value (RFC 6376 §3.6.1), e.g. "v=DKIM1; k=rsa; p=MIIB..."."""
        return f"v=DKIM1; k={self.algorithm}; p={self.public_b64()}"

    def zone_line(self) -> str:
        """A BIND zone-file line; the value is split into strings of at most 255 characters.

        Verifiers join the strings without anything between them (RFC 6376 §3.6.2.2).
        """
        value = self.txt_value()
        chunks = [value[i : i + TXT_CHUNK] for i in range(0, len(value), TXT_CHUNK)]
        return f"{self.dns_name()}. IN TXT " + " ".join(f'"{chunk}"' for chunk in chunks)


def normalise_domain(text: str) -> str:
    """The folder name for a domain: lower case, A-labels (as the directory spells it)."""
    try:
        return parse_domain(text)
    except AddressError as exc:
        raise DkimError(T("%(name)s is not a valid domain name: %(reason)s", name=repr(text),
                          reason=refusal(exc))) from None


def check_selector(text: str) -> str:
    """Validate a selector (RFC 6376 §3.1); return it lower-case (DNS ignores case)."""
    selector = text.lower()
    labels = selector.split(".")
    if not text.isascii() or not all(_SELECTOR_LABEL.match(label) for label in labels):
        raise DkimError(T(
            "%(selector)s is not a valid selector: use letters, digits and inner hyphens, "
            "in dot-separated parts of at most 63 characters",
            selector=repr(text),
        ))
    return selector


def default_selector(algorithm: str, now: datetime.datetime | None = None) -> str:
    """E.g. rsa202611 or ed202611: the algorithm and month tell rotations apart at a glance."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    prefix = "rsa" if algorithm == "rsa" else "ed"
    return f"{prefix}{now:%Y%m}"


def generate(
    dkim_dir: Path,
    domain: str,
    *,
    selector: str | None = None,
    algorithm: str = "rsa",
    bits: int = 2048,
) -> DkimKey:
    """Create a new key for `domain`, write it and make it the one in use.

    Raises DkimError for a bad name, algorithm or size, or when SELECTOR.key
    already exists (pick another selector: the old key may still be in DNS).
    """
    domain = normalise_domain(domain)
    if algorithm not in ALGORITHMS:
        raise DkimError(T("unknown algorithm %(algorithm)s: use rsa or ed25519", algorithm=repr(algorithm)))
    selector = check_selector(selector) if selector else default_selector(algorithm)
    private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "rsa":
        if bits < RSA_BITS[0]:
            raise DkimError(T(
                "RSA keys of %(bits)s bits are too weak for DKIM (RFC 8301): use 2048 bits or more", bits=bits
            ))
        if bits not in RSA_BITS:
            raise DkimError(T("RSA key size must be one of %(sizes)s bits, not %(bits)s",
                              sizes=", ".join(map(str, RSA_BITS)), bits=bits))
        private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    else:
        # RFC 8463: Ed25519 has one size; many verifiers still lack it, so
        # operators usually publish an RSA key beside it.
        private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )

    folder = dkim_dir / domain
    path = folder / f"{selector}{KEY_SUFFIX}"
    try:
        make_private_dir(folder)
        write_new_file(path, pem, 0o600)
    except FileExistsError:
        raise DkimError(T(
            "%(path)s already exists: choose another selector with --selector "
            "(the existing key may still be published and in use)",
            path=str(path),
        )) from None
    except OSError as exc:
        raise DkimError(T("cannot write %(path)s: %(reason)s", path=str(exc.filename or path),
                          reason=exc.strerror or str(exc))) from None
    activate(dkim_dir, domain, selector)
    return DkimKey(domain, selector, algorithm, pem, path)


def activate(dkim_dir: Path, domain: str, selector: str) -> None:
    """Make SELECTOR the key `domain` is signed with (its key file must exist)."""
    domain = normalise_domain(domain)
    selector = check_selector(selector)
    folder = dkim_dir / domain
    if not (folder / f"{selector}{KEY_SUFFIX}").is_file():
        raise DkimError(T("no key %(file)s in %(folder)s", file=f"{selector}{KEY_SUFFIX}", folder=str(folder)))
    try:
        write_atomic(folder / SELECTOR_FILE, f"{selector}\n".encode("ascii"), mode=0o600)
    except OSError as exc:
        raise DkimError(T("cannot write %(path)s: %(reason)s", path=str(folder / SELECTOR_FILE),
                          reason=exc.strerror or str(exc))) from None


def selector_path(dkim_dir: Path, domain: str) -> Path:
    """The file naming the selector in use; `domain` must be normalised already."""
    return dkim_dir / domain / SELECTOR_FILE


def load(dkim_dir: Path, domain: str) -> DkimKey | None:
    """The key in use for `domain`, or None when the domain has none.

    Raises DkimError when the files are there but unusable (a selector file
    naming a missing key, a key that is not RSA or Ed25519).
    """
    domain = normalise_domain(domain)
    marker = selector_path(dkim_dir, domain)
    try:
        text = marker.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise DkimError(T("cannot read %(path)s: %(reason)s", path=str(marker),
                          reason=getattr(exc, "strerror", None) or str(exc))) from None
    try:
        selector = check_selector(text)
    except DkimError:
        raise DkimError(T("%(path)s does not hold a valid selector; rewrite it with one line",
                          path=str(marker))) from None
    path = marker.parent / f"{selector}{KEY_SUFFIX}"
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        raise DkimError(T("%(marker)s names selector %(selector)s but %(path)s is missing",
                          marker=str(marker), selector=selector, path=str(path))) from None
    except OSError as exc:
        raise DkimError(T("cannot read %(path)s: %(reason)s", path=str(path),
                          reason=exc.strerror or str(exc))) from None
    key = _parse_private_key(pem, path)
    algorithm = "rsa" if isinstance(key, rsa.RSAPrivateKey) else "ed25519"
    return DkimKey(domain, selector, algorithm, pem, path)


def list_keys(dkim_dir: Path) -> list[DkimKey]:
    """The key in use for every domain that has one, sorted by domain."""
    if not dkim_dir.is_dir():
        return []
    found = []
    for folder in sorted(dkim_dir.iterdir()):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        try:
            if normalise_domain(folder.name) != folder.name:
                continue  # not a folder this module made
        except DkimError:
            continue
        key = load(dkim_dir, folder.name)
        if key is not None:
            found.append(key)
    return found


def _parse_private_key(pem: bytes, path: Path) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise DkimError(T("%(path)s is not an unencrypted PEM private key", path=str(path))) from None
    if not isinstance(key, (rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise DkimError(T("%(path)s holds neither an RSA nor an Ed25519 key", path=str(path)))
    return key
