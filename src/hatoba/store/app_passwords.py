"""App passwords: one random password per mail program, revocable one by one.

A user makes one for each phone or mail program, so the main password never
sits in a device; the web admin shows it once. They log in wherever a
password does (SMTP AUTH, POP3, IMAP) but never to the web admin, and not
with SCRAM (whose keys come from the main password).

Rules:
- 24 characters from a 32-letter alphabet without look-alikes (no 0/o, 1/l),
  in groups of four for typing: 120 random bits. So strong a secret needs no
  slow hash: only its SHA-256 is stored, found by an indexed lookup.
- A password is tried as an app password only when it has that shape (one
  hash and one lookup); anything else goes to the Argon2 check as before.
"""

from __future__ import annotations

import hashlib
import re
import secrets

__all__ = ["ALPHABET", "digest", "looks_like_app_password", "new_app_password", "MAX_NAME", "MAX_PER_USER"]

ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # 32 letters: no 0 o 1 l
GROUPS, GROUP = 6, 4
MAX_NAME = 64  # "Alice's phone"
MAX_PER_USER = 50
_SHAPE = re.compile(rf"[{ALPHABET}]{{{GROUP}}}(?:[- ]?[{ALPHABET}]{{{GROUP}}}){{{GROUPS - 1}}}")


def new_app_password() -> str:
    return "-".join("".join(secrets.choice(ALPHABET) for _ in range(GROUP)) for _ in range(GROUPS))


def _normal(password: str) -> str:
    """Without the separators and in lower case: typed with or without dashes, it is one password."""
    return password.replace("-", "").replace(" ", "").lower()


def looks_like_app_password(password: str) -> bool:
    return len(password) <= 40 and _SHAPE.fullmatch(password.strip().lower()) is not None


def digest(password: str) -> bytes:
    return hashlib.sha256(b"hatoba app password\0" + _normal(password).encode("ascii")).digest()
