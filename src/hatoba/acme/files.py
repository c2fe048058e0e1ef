"""What ACME keeps under the data folder, in data/acme/ (0700, files 0600):

    account.key     the account's private key (EC P-256), made on first use
    cert.pem        the certificate the CA issued, its chain after it
    state.json      what the last attempts did, and when the next one is due
    renew.request   left by `hatoba cert acme renew`; the server takes it and
                    answers in state.json under the same token

The certificate is for [tls] key: one key for the certificate of `hatoba
init` and for every certificate the CA issues, so a TLSA "3 1 1" record and
pinned keys stay valid across renewals. `served_tls` is the one place that
decides which certificate the listeners present: the CA's while it belongs
to tls.key, else tls.cert as configured.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from cryptography import x509

from hatoba.config.schema import Config, TlsConfig

FOLDER = "acme"


@dataclasses.dataclass(frozen=True)
class AcmeFiles:
    folder: Path

    @classmethod
    def of(cls, config: Config) -> AcmeFiles:
        return cls(config.paths.data_dir / FOLDER)

    @property
    def account_key(self) -> Path:
        return self.folder / "account.key"

    @property
    def cert(self) -> Path:
        return self.folder / "cert.pem"

    @property
    def state(self) -> Path:
        return self.folder / "state.json"

    @property
    def request(self) -> Path:
        return self.folder / "renew.request"

    def make(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_state(self, state: dict[str, Any]) -> None:
        write_private(self.state, json.dumps(state, indent=1, sort_keys=True).encode() + b"\n")

    def read_request(self) -> str | None:
        """The token of a pending `hatoba cert acme renew`, or None."""
        try:
            token = self.request.read_text().strip()
        except OSError:
            return None
        return token[:64] or "?"

    def write_request(self, token: str) -> None:
        write_private(self.request, token.encode() + b"\n")

    def drop_request(self) -> None:
        try:
            self.request.unlink()
        except FileNotFoundError:
            pass


def write_private(path: Path, data: bytes) -> None:
    """Write `data` beside `path` (0600), fsync it, and rename it over: readers see old or new.
    Written by root (the command line), the file goes to the folder's owner, the server's user."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
        if os.geteuid() == 0:
            folder = path.parent.stat()
            os.fchown(fd, folder.st_uid, folder.st_gid)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_chain(path: Path) -> list[x509.Certificate]:
    """The certificates in a PEM file; [] when it is missing or holds none."""
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError):
        return []


def belongs_to_key(leaf: x509.Certificate, key_path: Path) -> bool:
    from hatoba.pki.errors import PkiError
    from hatoba.pki.keyfiles import read_signing_key, same_key

    try:
        return same_key(read_signing_key(key_path).public_key(), leaf.public_key())
    except (OSError, ValueError, TypeError, PkiError):
        return False


def served_tls(config: Config) -> TlsConfig:
    """[tls] with the CA's certificate in place of tls.cert when ACME is on and has one for tls.key."""
    if not config.acme.enabled:
        return config.tls
    files = AcmeFiles.of(config)
    chain = read_chain(files.cert)
    if not chain or chain[0].not_valid_after_utc.timestamp() < time.time():
        return config.tls
    if not belongs_to_key(chain[0], config.tls.key):
        return config.tls
    return dataclasses.replace(config.tls, cert=files.cert)


__all__ = ["AcmeFiles", "belongs_to_key", "read_chain", "served_tls", "write_private"]
