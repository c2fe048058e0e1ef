"""The DKIM signer: one DKIM-Signature header field for an outgoing message.

Rules:
- We sign with the key in use for the From domain (keys.py layout) and with
  relaxed/relaxed canonicalization (RFC 6376 §3.4), which survives the
  header refolding and trailing-space changes that relays make.
- Only the header fields in SIGNED_HEADERS that the message has are signed,
  and From once more than it occurs, so that nobody can add a second From
  without breaking the signature (RFC 6376 §8.15, "over-signing").
- A key is read once and kept until its domain's selector file changes, so
  `hatoba dkim keygen` takes effect in a running server without a restart.
- The message is bytes with CRLF line ends, as queued.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from email.headerregistry import HeaderRegistry
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from hatoba.dkim.keys import DkimError, DkimKey, load, normalise_domain, selector_path
from hatoba.proto.address import AddressError, parse_domain

# The fields that say who wrote the message, to whom, what it is and how it
# is encoded (RFC 6376 §5.4.1); trace fields like Received are left out
# because relays add them.
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"in-reply-to",
    b"references",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"list-id",
    b"list-unsubscribe",
    b"sender",
)
_SIGNED = frozenset(SIGNED_HEADERS)
CANONICALIZATION = (b"relaxed", b"relaxed")

# RFC 5322 §2.2.3: unfolding removes each CRLF that is followed by white space.
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_HEADERS = HeaderRegistry()


@dataclass(frozen=True)
class _Loaded:
    stamp: tuple[int, int, int]  # the selector file's mtime, inode and size when read
    key: DkimKey
    secret: bytes  # the private key as dkimpy takes it
    signature_algorithm: bytes


class DkimSigner:
    """Signs messages with the keys in `dkim_dir`; safe to share across sessions."""

    def __init__(self, dkim_dir: Path) -> None:
        self.dkim_dir = dkim_dir
        self._cache: dict[str, _Loaded] = {}

    def key(self, domain: str) -> DkimKey | None:
        """The key `domain` is signed with now, or None."""
        loaded = self._load(domain)
        return loaded.key if loaded else None

    def sign(self, message: bytes, domain: str) -> bytes | None:
        """The DKIM-Signature field (ending in CRLF) to put on top of `message`.

        None when `domain` has no key. Raises DkimError when the key is
        unusable or the message header cannot be parsed; the caller decides
        whether to send unsigned.
        """
        loaded = self._load(domain)
        if loaded is None:
            return None
        try:
            headers, _ = dkim.rfc822_parse(message)
        except dkim.MessageFormatError as exc:
            raise DkimError(f"cannot sign a malformed message header: {exc}") from None
        include = [name.lower() for name, _ in headers if name.lower() in _SIGNED]
        include.append(b"from")  # over-sign: one From more than there is
        key = loaded.key
        try:
            return dkim.sign(
                message,
                key.selector.encode("ascii"),
                key.domain.encode("ascii"),
                loaded.secret,
                canonicalize=CANONICALIZATION,
                signature_algorithm=loaded.signature_algorithm,
                include_headers=include,
            )
        except dkim.DKIMException as exc:
            raise DkimError(f"cannot sign for {key.domain} with {key.path}: {exc}") from None

    def arc_seal(self, message: bytes, domain: str, authserv_id: str) -> bytes | None:
        """The next ARC set (RFC 8617) for `message`, as `domain` forwarding it; None when
        `domain` has no RSA key (ARC knows only rsa-sha256) or the message carries no
        Authentication-Results of `authserv_id` (nothing to vouch for).

        The seal records our Authentication-Results as they were at arrival, so the next
        hop can trust what we saw before the forward broke SPF (and a list footer DKIM)."""
        loaded = self._load(domain)
        if loaded is None or loaded.signature_algorithm != b"rsa-sha256":
            return None
        key = loaded.key
        try:
            headers, _ = dkim.rfc822_parse(message)
        except dkim.MessageFormatError as exc:
            raise DkimError(f"cannot seal a malformed message header: {exc}") from None
        include = list(dict.fromkeys(name.lower() for name, _ in headers if name.lower() in _SIGNED))
        if b"from" not in include:
            return None
        try:
            lines = dkim.arc_sign(message, key.selector.encode("ascii"), key.domain.encode("ascii"),
                                  loaded.secret, authserv_id.encode("ascii"), include_headers=include)
        except dkim.DKIMException as exc:
            raise DkimError(f"cannot seal for {key.domain} with {key.path}: {exc}") from None
        return b"".join(lines) or None

    def _load(self, domain: str) -> _Loaded | None:
        try:
            domain = normalise_domain(domain)
        except DkimError:
            return None  # no key can exist for a name that is not a domain
        try:
            st = os.stat(selector_path(self.dkim_dir, domain))
        except FileNotFoundError:
            self._cache.pop(domain, None)
            return None
        except OSError as exc:
            raise DkimError(f"cannot read the DKIM selector of {domain}: {exc.strerror or exc}") from None
        # The inode changes on every atomic replace, even within one mtime tick.
        stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        cached = self._cache.get(domain)
        if cached is not None and cached.stamp == stamp:
            return cached
        key = load(self.dkim_dir, domain)
        if key is None:
            self._cache.pop(domain, None)
            return None
        loaded = _prepare(key, stamp)
        self._cache[domain] = loaded
        return loaded


def _prepare(key: DkimKey, stamp: tuple[int, int, int]) -> _Loaded:
    private = key.private_key()
    if isinstance(private, ed25519.Ed25519PrivateKey):
        # dkimpy (through PyNaCl) takes the 32-octet seed, base64-encoded.
        seed = private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return _Loaded(stamp, key, base64.b64encode(seed), b"ed25519-sha256")
    return _Loaded(stamp, key, key.private_pem, b"rsa-sha256")


def from_domain(message: bytes) -> str | None:
    """The normalised domain of the one address in the one From field, else None.

    None when From is missing, repeated, holds several addresses, or does not
    parse cleanly: a signature must not be chosen by a guess.
    """
    try:
        headers, _ = dkim.rfc822_parse(message)
    except dkim.MessageFormatError:
        return None
    values = [value for name, value in headers if name.lower() == b"from"]
    if len(values) != 1:
        return None
    try:
        text = _FOLD.sub("", values[0].decode("utf-8")).strip()
    except UnicodeDecodeError:
        return None
    try:
        field = _HEADERS("from", text)
    except (ValueError, IndexError):  # the email package's parser may raise on odd input
        return None
    if field.defects or len(field.addresses) != 1:
        return None
    try:
        return parse_domain(field.addresses[0].domain)
    except AddressError:
        return None
