"""Secrets the server must read back (APOP), encrypted at rest.

APOP (RFC 1939 §7) needs the shared secret itself, not a hash of it, so it
cannot be protected like a login password. hatoba keeps such secrets
encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) under
a key in DATA/secrets.key (0600); a copy of the directory database alone
does not reveal them.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Any


class SecretBoxError(Exception):
    """The key is missing or wrong; one line for the operator."""


class SecretBox:
    def __init__(self, key_path: Path) -> None:
        self.key_path = Path(key_path)
        self._key = self._load_or_create()  # read at start: a bad key file is reported then
        self._fernet: Any = None

    def _box(self) -> Any:
        """Fernet, made at the first APOP secret used: cryptography loads then, not with
        every worker (a few MiB each where no user has an APOP secret)."""
        if self._fernet is None:
            try:
                from cryptography.fernet import Fernet
            except ImportError as exc:  # removed or half upgraded under a running server
                raise SecretBoxError(f"cannot load cryptography for the secrets in {self.key_path}: {exc}") from None
            self._fernet = Fernet(self._key)
        return self._fernet

    def _load_or_create(self) -> bytes:
        try:
            fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = self.key_path.read_bytes().strip()
            if len(key) != 44 or len(_decoded(key)) != 32:
                raise SecretBoxError(f"{self.key_path} is not a secrets key; restore it from a backup") from None
            return key
        key = base64.urlsafe_b64encode(os.urandom(32))  # what Fernet.generate_key() makes
        try:
            os.write(fd, key + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        return key

    def seal(self, secret: str) -> str:
        return self._box().encrypt(secret.encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> str:
        box = self._box()
        from cryptography.fernet import InvalidToken

        try:
            return box.decrypt(sealed.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError):
            raise SecretBoxError(
                f"a stored secret does not match {self.key_path}; was the key replaced? "
                "set the secret again (hatoba user apop ADDRESS --enable)"
            ) from None


def _decoded(key: bytes) -> bytes:
    try:
        return base64.urlsafe_b64decode(key)
    except (binascii.Error, ValueError):
        return b""
