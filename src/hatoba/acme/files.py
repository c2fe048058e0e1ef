"""What ACME keeps under the data folder, in data/acme/ (0700, files 0600):

    account.key     the account's private key (EC P-256), made on first use
    cert.pem        the certificate the CA issued, its chain after it
    state.json      what the last attempts did, and when the next one is due
    renew.TOKEN.request
                    left by `hatoba cert acme renew`; the server takes it and
                    answers in state.json under the same token

Only the service user writes here: `hatoba cert acme`, started as root,
becomes the folder's owner first (cli/acme.py), so no file the service user
placed (a symlink, a FIFO) can steer a write or a read of root's. Files are
made with O_EXCL|O_NOFOLLOW and renamed into place, and a request is read
only from a small regular file (fsutil.write_atomic).

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
import re
import math
import secrets
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hatoba.config.schema import Config, TlsConfig
from hatoba.fsutil import write_atomic

if TYPE_CHECKING:
    from cryptography import x509

FOLDER = "acme"
MAX_STATE = 1 << 20
REQUEST = re.compile(r"^renew\.([0-9a-f]{16})\.request$")
ANSWERS_KEPT = 16


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

    def request(self, token: str) -> Path:
        return self.folder / f"renew.{token}.request"

    def make(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def read_state(self) -> dict[str, Any]:
        """state.json as a table; {} when it is missing, damaged, or not a small regular file
        (a FIFO or a symlink placed there is not waited on nor followed)."""
        try:
            fd = os.open(self.state, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except FileNotFoundError:
            return {}
        except PermissionError:
            raise
        except OSError:
            return {}
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_STATE:
                return {}
            data = json.loads(os.read(fd, MAX_STATE))
        except (OSError, ValueError):
            return {}
        finally:
            os.close(fd)
        return data if isinstance(data, dict) else {}

    def write_state(self, state: dict[str, Any]) -> None:
        write_atomic(self.state, json.dumps(state, indent=1, sort_keys=True).encode() + b"\n")

    def write_request(self) -> str:
        """Leave a request for the running server; its token."""
        token = secrets.token_hex(8)
        write_atomic(self.request(token), b"renew\n")
        return token

    def take_requests(self) -> list[str]:
        """The tokens of pending `hatoba cert acme renew` commands; their files are removed."""
        try:
            names = os.listdir(self.folder)
        except OSError:
            return []
        tokens = []
        for name in names:
            match = REQUEST.match(name)
            if match is None:
                continue
            try:
                os.unlink(self.folder / name)
            except OSError:
                continue
            tokens.append(match.group(1))
        return tokens

    def answer(self, tokens: list[str], result: str) -> None:
        state = self.read_state()
        answers = table(state, "answered")
        for token in tokens:
            answers[token] = {"result": result, "at": time.time()}
        state["answered"] = dict(sorted(answers.items(), key=lambda kv: number(kv[1], "at"))[-ANSWERS_KEPT:])
        self.write_state(state)


def table(state: dict[str, Any], key: str) -> dict[str, Any]:
    """state[key] when it is a table, else an empty one (a hand-edited or damaged state file)."""
    value = state.get(key)
    return value if isinstance(value, dict) else {}


def number(state: Any, key: str, default: float = 0.0) -> float:
    """state[key] when it is a plausible time or count (finite, within 0..2**33), else `default`."""
    value = state.get(key) if isinstance(state, dict) else None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return default
    value = float(value)
    return value if math.isfinite(value) and 0 <= value < 2**33 else default


def read_chain(path: Path) -> list[x509.Certificate]:
    """The certificates in a PEM file; [] when it is missing or holds none."""
    from cryptography import x509  # only with ACME on: workers without it never load cryptography

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


__all__ = ["AcmeFiles", "belongs_to_key", "number", "read_chain", "served_tls", "table"]
