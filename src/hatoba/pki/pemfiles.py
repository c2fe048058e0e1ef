"""PEM files: splitting them into blocks, reading certificates and requests, writing new files.

Rules:
- Files are written with O_EXCL (keys.write_new_file): the PKI tools never
  overwrite a key or certificate, so a typo cannot destroy one.
- Reading errors name the file and say what was expected in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from hatoba.pki.errors import PkiError
from hatoba.pki.keys import write_new_file

# RFC 7468 §2: "-----BEGIN label-----", base64 lines, "-----END label-----".
_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?",
    re.DOTALL,
)

CERT_LABELS = frozenset({"CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"})
CSR_LABELS = frozenset({"CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"})
KEY_LABELS = frozenset({"PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"})


@dataclass(frozen=True)
class PemBlock:
    """One BEGIN/END block of a PEM file: its label and its exact bytes."""

    label: str
    data: bytes

    @property
    def kind(self) -> str:
        """"certificate", "request", "key" or "other"."""
        if self.label in CERT_LABELS:
            return "certificate"
        if self.label in CSR_LABELS:
            return "request"
        if self.label in KEY_LABELS:
            return "key"
        return "other"


def split_pem(data: bytes) -> list[PemBlock]:
    """Every PEM block in `data`, in file order (text between blocks is ignored, as OpenSSL does)."""
    return [PemBlock(m.group(1).decode("ascii"), m.group(0)) for m in _BLOCK.finditer(data)]


def read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise PkiError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_blocks(path: Path) -> list[PemBlock]:
    """The PEM blocks of the file at `path`; PkiError when it holds none."""
    blocks = split_pem(read_bytes(path))
    if not blocks:
        raise PkiError(f"{path} holds no PEM data (no -----BEGIN ...----- line); give a PEM file")
    return blocks


def parse_cert(block: PemBlock, path: Path | str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(block.data)
    except ValueError:
        raise PkiError(f"{path}: a {block.label} block is damaged and cannot be read") from None


def parse_csr(block: PemBlock, path: Path | str) -> x509.CertificateSigningRequest:
    try:
        return x509.load_pem_x509_csr(block.data)
    except ValueError:
        raise PkiError(f"{path}: a {block.label} block is damaged and cannot be read") from None


def read_certs(path: Path) -> list[x509.Certificate]:
    """Every certificate in the PEM file at `path`, in file order; PkiError when there is none."""
    certs = [parse_cert(b, path) for b in read_blocks(path) if b.kind == "certificate"]
    if not certs:
        raise PkiError(f"{path} holds no PEM certificate; give a file with -----BEGIN CERTIFICATE-----")
    return certs


def read_csr(path: Path) -> x509.CertificateSigningRequest:
    """The certificate request in the PEM file at `path`."""
    requests = [b for b in read_blocks(path) if b.kind == "request"]
    if not requests:
        raise PkiError(f"{path} holds no certificate request (-----BEGIN CERTIFICATE REQUEST-----)")
    return parse_csr(requests[0], path)


def write_output(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode`; PkiError (never an overwrite) when it exists or cannot be written."""
    try:
        write_new_file(Path(path), data, mode)
    except FileExistsError:
        raise PkiError(f"{path} already exists; it is never overwritten: remove it or choose another name") from None
    except OSError as exc:
        raise PkiError(f"cannot write {path}: {exc.strerror or exc}") from None
