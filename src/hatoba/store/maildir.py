"""Maildir storage: DATA/mail/DOMAIN/LOCAL/Maildir/{tmp,new,cur}.

Delivery follows the Maildir rules (write in tmp/, fsync, rename into new/,
fsync new/), so mutt, Dovecot or any Maildir tool can read the store.
Lines end in LF on disk, as every Maildir reader expects.

File names are "TIME.QKEY.HOST,S=SIZE,W=WIRESIZE" when the queue gives a
unique key (its queue id): the same message delivered twice after a crash
gets the same name, and the second delivery finds it and writes nothing
(exactly once). Without a key the unique part is unique_part(). HOST is the
server's public name ([server] hostname), never the machine's: POP3 shows
names to clients as UIDLs, so they hold nothing a client should not learn
(no machine name, no process id).
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from hatoba.fsutil import fsync_dir, make_private_dir, write_all
from hatoba.store.api import DeliveredMessage

CHUNK = 1024 * 1024
SUBDIRS = ("tmp", "new", "cur")
# The host part of names when no server name is given.
DEFAULT_HOST = "hatoba"
_name_counter = itertools.count()


def unique_part() -> str:
    """The middle of a new Maildir name: a counter (names made later by this
    process sort later) and 64 random bits (no two processes or hosts clash)."""
    return f"M{next(_name_counter):010d}R{secrets.token_hex(8)}"


def host_part(hostname: str) -> str:
    """`hostname` as a name's host part: Maildir escapes "/" and ":" as octal."""
    return (hostname or DEFAULT_HOST).replace("/", "\\057").replace(":", "\\072")


class MaildirStore:
    """Implements api.MailStore over one Maildir per mailbox."""

    def __init__(self, root: Path, *, hostname: str) -> None:
        self.root = Path(root)
        # Maildir forbids "/" and ":" in the host part (they are escaped as octal).
        self._host = host_part(hostname)
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

    def _ensure_folder(self, maildir: Path, folder: str) -> Path:
        """The folder's Maildir, made (durably, with its "maildirfolder" mark) if missing."""
        path = maildir / folder
        if path in self._ready:
            return path
        if not (path / "maildirfolder").exists():
            for sub in SUBDIRS:
                make_private_dir(path / sub)
            (path / "maildirfolder").touch(mode=0o600)
            fsync_dir(path)
            fsync_dir(maildir)
        else:
            for sub in SUBDIRS:
                make_private_dir(path / sub)
        self._ready.add(path)
        return path

    def special_folder(self, mailbox: str, use: str, default: str) -> str:
        """The directory of the user's folder marked `use` (RFC 6154, e.g. "\\Junk"), else `default`."""
        from hatoba.store.folder_tree import special_use_dirname  # the folder tree builds on this module

        return special_use_dirname(self.maildir(mailbox), use) or default

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
        folder: str = "",
    ) -> DeliveredMessage:
        """Store `prefix` + the bytes of `source` (CRLF or LF) into `mailbox`'s new/.

        `folder` is a Maildir++ folder's directory (".Junk"); "" is the inbox.

        `length` limits how much of `source` is the message (the queue keeps
        its envelope after it).
        With `unique_key`, a message already delivered under that key is not
        written again; `thorough` also looks in cur/ (a reader may have moved
        it there), for redeliveries after a restart.
        """
        maildir = self.maildir(mailbox)
        self._ensure(maildir)
        if folder:
            if not folder.startswith(".") or "/" in folder or folder in (".", ".."):
                raise ValueError(f"not a Maildir++ folder: {folder!r}")
            maildir = self._ensure_folder(maildir, folder)
        when = int(timestamp if timestamp is not None else time.time())
        unique = f"Q{unique_key}" if unique_key else unique_part()
        base = f"{when}.{unique}.{self._host}"
        tmp = maildir / "tmp" / base
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except FileNotFoundError:
            if maildir not in self._ready:
                raise
            # Removed since we last made it (an IMAP DELETE of the folder): make it again.
            self._ready.discard(maildir)
            if folder:
                self._ensure_folder(maildir.parent, folder)
            else:
                self._ensure(maildir)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with open(source, "rb") as src:
                size, lines = _copy_as_lf(prefix, src, fd, length)
            # Dovecot's convention: S= the file size, W= the size with CRLF line
            # ends (what POP3 and IMAP report), so listing never opens a file.
            name = f"{base},S={size},W={size + lines}"
            if unique_key:
                existing = self._find(maildir, name, thorough)
                if existing is not None:
                    os.close(fd)
                    _unlink_quietly(tmp)
                    return DeliveredMessage(mailbox, existing, duplicate=True)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            _unlink_quietly(tmp)
            raise
        os.close(fd)
        final = maildir / "new" / name
        os.rename(tmp, final)
        fsync_dir(final.parent)
        return DeliveredMessage(mailbox, final)

    @staticmethod
    def _find(maildir: Path, name: str, thorough: bool) -> Path | None:
        """The file delivered as `name` earlier, in new/ or cur/ (any flags when thorough)."""
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


def _copy_as_lf(prefix: bytes, src, fd: int, length: int | None) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Copy prefix + `length` bytes of src (all when None) to fd, CRLF turned into LF, in bounded memory.

    Returns (bytes written, line feeds written).
    """
    pending = prefix
    left = length
    size = lines = 0
    while True:
        chunk = src.read(CHUNK if left is None else min(CHUNK, left))
        if left is not None:
            left -= len(chunk)
        data = pending + chunk
        if chunk:
            # A CR at the end may be the first half of a CRLF split across chunks.
            if data.endswith(b"\r"):
                data, pending = data[:-1], b"\r"
            else:
                pending = b""
        out = data.replace(b"\r\n", b"\n")
        write_all(fd, out)
        size += len(out)
        lines += out.count(b"\n")
        if not chunk:
            return size, lines


@dataclass(frozen=True)
class MaildirName:
    """What a Maildir file name tells: "BASE[,S=n][,W=n][:2,FLAGS]"."""

    base: str  # the unique part, stable when flags change or the file moves to cur/
    size: int | None  # S=: bytes in the file
    wire_size: int | None  # W=: bytes with CRLF line ends
    flags: str

    @classmethod
    def parse(cls, name: str) -> MaildirName:
        stem, _, info = name.partition(":")
        flags = info[2:] if info.startswith("2,") else ""
        base, *fields = stem.split(",")
        size = wire = None
        for field in fields:
            key, _, value = field.partition("=")
            if value.isdigit():
                if key == "S":
                    size = int(value)
                elif key == "W":
                    wire = int(value)
        return cls(base, size, wire, flags)



def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
