"""TOTP (RFC 6238) second factor: 30-second steps, 6 digits, SHA-1 (what every authenticator app takes).

The secret is sealed with the server's secret key (store/secretbox.py) before
it reaches the directory. A code of the step before or after is taken too
(clocks drift). pyotp does the arithmetic.
"""

from __future__ import annotations

from pathlib import Path

import pyotp

from hatoba.store.secretbox import SecretBox, SecretBoxError

__all__ = ["code_matches", "new_secret", "provisioning_uri", "seal", "secret_matches"]

ISSUER = "hatoba"


def new_secret() -> str:
    return pyotp.random_base32()  # 160 bits, as RFC 4226 §4 recommends


def provisioning_uri(secret: str, account: str, hostname: str) -> str:
    """The otpauth:// address authenticator apps read (from a QR code or typed)."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=f"{ISSUER} {hostname}")


def secret_matches(secret: str, code: str) -> bool:
    code = "".join(code.split())
    return len(code) == 6 and code.isdigit() and pyotp.TOTP(secret).verify(code, valid_window=1)


def seal(key_path: Path, secret: str) -> str:
    return SecretBox(key_path).seal(secret)


def code_matches(key_path: Path, sealed: str, code: str) -> bool:
    """Blocking (reads the key file): whether `code` is right for the sealed secret."""
    try:
        secret = SecretBox(key_path).open(sealed)
    except (SecretBoxError, OSError):
        return False
    return secret_matches(secret, code)
