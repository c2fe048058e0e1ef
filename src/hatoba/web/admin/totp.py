"""TOTP (RFC 6238) second factor: 30-second steps, 6 digits, SHA-1 (what every authenticator app takes).

The secret is sealed with the server's secret key (store/secretbox.py) before
it reaches the directory. A code of the step before or after is taken too
(clocks drift), but never a step already used for a login: a code seen over a
shoulder or in a log does not open a second session. pyotp does the arithmetic.
"""

from __future__ import annotations

import hmac
import time
from pathlib import Path

import pyotp

from hatoba.store.secretbox import SecretBox, SecretBoxError

__all__ = ["code_step", "is_secret", "matching_step", "new_secret", "provisioning_uri", "seal", "secret_matches"]

ISSUER = "hatoba"


def new_secret() -> str:
    return pyotp.random_base32()  # 160 bits, as RFC 4226 §4 recommends


def provisioning_uri(secret: str, account: str, hostname: str) -> str:
    """The otpauth:// address authenticator apps read (from a QR code or typed)."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=f"{ISSUER} {hostname}")


def is_secret(text: str) -> bool:
    """A secret as new_secret() makes them: 32 base32 letters (A-Z, 2-7)."""
    return len(text) == 32 and all(c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" for c in text)


def secret_matches(secret: str, code: str) -> bool:
    code = "".join(code.split())
    return len(code) == 6 and code.isdigit() and pyotp.TOTP(secret).verify(code, valid_window=1)


def seal(key_path: Path, secret: str) -> str:
    return SecretBox(key_path).seal(secret)


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The 30-second step (of the one before, now, or the one after) whose code `code` is; None if none."""
    code = "".join(code.split())
    if len(code) != 6 or not code.isascii() or not code.isdigit():
        return None
    totp, now = pyotp.TOTP(secret), time.time() if now is None else now
    for offset in (-1, 0, 1):
        at = int(now) + offset * totp.interval
        if hmac.compare_digest(totp.at(at), code):
            return at // totp.interval
    return None


def code_step(key_path: Path, sealed: str, code: str) -> int | None:
    """Blocking (reads the key file): the step of `code` for the sealed secret, or None."""
    try:
        secret = SecretBox(key_path).open(sealed)
    except (SecretBoxError, OSError):
        return None
    return matching_step(secret, code)
