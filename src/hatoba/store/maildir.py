"""Maildir storage: DATA/mail/DOMAIN/LOCAL/Maildir/{tmp,new,cur}.

Delivery follows the Maildir rules (write in tmp/, fsync, rename into new/,
fsync new/), so mutt, Dovecot or any Maildir tool can read the store.
Lines end in LF on disk, as every Maildir reader expects.

File names are "TIME.QKEY.HOST" when the queue gives a unique key (its
queue id): the same message delivered twice after a crash gets the same
name, and the second delivery finds it and writes nothing (exactly once).
Without a key the unique part is "M<random>P<pid>".
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from hatoba.fsutil import fsync_dir, make_private_dir
from hatoba.store.api import DeliveredMessage

CHUNK = 1024 * 1024
SUBDIRS = ("tmp", "new", "cur")


class MaildirStore:
    """Implements api.MailStore over one Maildir per mailbox."""

    def __init__(self, root: Path, *, hostname: str) -> None:
        self.root = Path(root)
        # Maildir forbids "/" and ":" in the host part (they are escaped as octal).
        self._host = hostname.replace("/", "\\057").replace(":", "\\072")
        self._ready: set[Path] = set()

    def maildir(self, mailbox: str) -> Path:
        """The Maildir of a local address (case-insensitive local part)."""
        local, _, domain = mailbox.rpartition("@")
        if not local or not domain or "/" in mailbox or local in (".", "..") or domain in (".", ".."):
            raise ValueError(f"not a mailbox address: {mailbox!r}")
        return self.root / domain.lower() / local.lower() / "Maildir"

    def _ensure(self, maildir: Path) -> None:
        if maildir in self._ready:
            return
        for sub in SUBDIRS:
            make_private_dir(maildir / sub)
        self._ready.add(maildir)

    def deliver(
        self,
        mailbox: str,
        source: Path,
        *,
        prefix: bytes = b"",
        length: int | None = None,
        unique_key: str | None = None,
        timestamp: float | None = None,
        thorough: bool = False,
    ) -> DeliveredMessage:
        """Store `prefix` + the bytes of `source` (CRLF or LF) into `mailbox`'s new/.

        `length` limits how much of `source` is the message (the queue keeps
        its envelope after it).
        With `unique_key`, a message already delivered under that key is not
        written again; `thorough` also looks in cur/ (a reader may have moved
        it there), for redeliveries after a restart.
        """
        maildir = self.maildir(mailbox)
        self._ensure(maildir)
        when = int(timestamp if timestamp is not None else time.time())
        unique = f"Q{unique_key}" if unique_key else f"M{secrets.token_hex(8)}P{os.getpid()}"
        name = f"{when}.{unique}.{self._host}"
        final = maildir / "new" / name
        if unique_key:
            existing = self._find(maildir, name, thorough)
            if existing is not None:
                return DeliveredMessage(mailbox, existing, duplicate=True)
        tmp = maildir / "tmp" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with open(source, "rb") as src:
                _copy_as_lf(prefix, src, fd, length)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            _unlink_quietly(tmp)
            raise
        os.close(fd)
        os.rename(tmp, final)
        fsync_dir(final.parent)
        return DeliveredMessage(mailbox, final)

    @staticmethod
    def _find(maildir: Path, name: str, thorough: bool) -> Path | None:
        candidate = maildir / "new" / name
        if candidate.exists():
            return candidate
        candidate = maildir / "cur" / f"{name}:2,"
        if candidate.exists():
            return candidate
        if thorough:
            prefix = name + ":"
            for entry in os.scandir(maildir / "cur"):
                if entry.name == name or entry.name.startswith(prefix):
                    return Path(entry.path)
        return None


def _copy_as_lf(prefix: bytes, src, fd: int, length: int | None) -> None:  # type: ignore[no-untyped-def]
    """Copy prefix + `length` bytes of src (all when None) to fd, CRLF turned into LF, in bounded memory."""
    pending = prefix
    left = length
    while True:
        chunk = src.read(CHUNK if left is None else min(CHUNK, left))
        if left is not None:
            left -= len(chunk)
        data = pending + chunk
        if not chunk:
            _write_all(fd, data.replace(b"\r\n", b"\n"))
            return
        # A CR at the end may be the first half of a CRLF split across chunks.
        if data.endswith(b"\r"):
            data, pending = data[:-1], b"\r"
        else:
            pending = b""
        _write_all(fd, data.replace(b"\r\n", b"\n"))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
