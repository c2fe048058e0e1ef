"""A user's Maildir as a POP3 maildrop: a fixed, numbered list of messages.

Opening lists new/ and cur/ by name only: the sizes come from the S=/W=
fields of the names (written at delivery), so a 10,000-message maildrop
opens without reading a message. Files dropped in by other tools without
W= are read once to count their lines.

Unique ids (UIDL) are the Maildir base names: stable across sessions,
restarts and moves from new/ to cur/ (RFC 1939 §7 allows 1-70 printable
characters; longer or odd names are replaced by their SHA-1). Mail brought over
from another server keeps the UIDL that server showed: "hatoba-pop3-uidls" in
the Maildir holds "NAME UIDL" lines (NAME: the file name before ":") in the old
server's POP3 order (migrate/mailfolders.py writes it); those messages come
first, so "leave mail on the server" clients do not fetch them again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hatoba.fsutil import fsync_dir
from hatoba.store.maildir import MaildirName

MAX_UID_LENGTH = 70
UIDL_FILE = "hatoba-pop3-uidls"
MAX_UIDL_FILE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class DropMessage:
    path: Path
    uid: str
    wire_size: int  # octets with CRLF line ends, before dot-stuffing (what LIST reports)


def default_uidl(name: str) -> str:
    """The UIDL hatoba shows for a message file of its own."""
    return _uid(MaildirName.parse(name).base)


def read_uidls(maildir: Path) -> dict[str, str]:
    """File name before ":" -> UIDL kept from the old server (empty when none were)."""
    try:
        with open(maildir / UIDL_FILE, "rb") as f:
            data = f.read(MAX_UIDL_FILE_BYTES)
    except FileNotFoundError:
        return {}
    kept: dict[str, str] = {}
    for line in data.decode("utf-8", "surrogateescape").split("\n"):
        base, _, uidl = line.partition(" ")
        if base and uidl:
            kept[base] = uidl
    return kept


def _uid(base: str) -> str:
    # ASCII and printable is 0x20 to 0x7E: all but the space are allowed (RFC 1939 §7).
    if len(base) <= MAX_UID_LENGTH and base.isascii() and base.isprintable() and " " not in base:
        return base
    return hashlib.sha1(base.encode("utf-8", "surrogateescape")).hexdigest()


def _wire_size(path: Path) -> int:
    """Size with every bare LF counted as CRLF, for files without W= in their name."""
    data = path.read_bytes()
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


def _order(name: MaildirName) -> tuple[int, str]:
    head = name.base.split(".", 1)[0]
    return (int(head) if head.isdigit() else 0, name.base)


@dataclass
class Maildrop:
    maildir: Path
    messages: list[DropMessage]

    @classmethod
    def open(cls, maildir: Path) -> Maildrop:
        found: list[tuple[tuple[int, int, str], DropMessage]] = []
        kept = read_uidls(maildir)
        rank = {stem: index for index, stem in enumerate(kept)}
        for sub in ("cur", "new"):
            try:
                entries = list(os.scandir(maildir / sub))
            except FileNotFoundError:
                continue  # no mail delivered yet
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                name = MaildirName.parse(entry.name)
                path = Path(entry.path)
                try:
                    wire = name.wire_size if name.wire_size is not None else _wire_size(path)
                except FileNotFoundError:
                    continue  # removed while we looked (IMAP expunge)
                stem = entry.name.split(":", 1)[0]
                if kept and stem in kept:  # brought over: the old server's UIDL, in its order
                    uid, order = kept[stem], (0, rank[stem], "")
                else:
                    uid, order = _uid(name.base), (1, *_order(name))
                found.append((order, DropMessage(path, uid, wire)))
        found.sort(key=lambda item: item[0])
        return cls(maildir, [message for _, message in found])

    def delete(self, indices: Iterable[int]) -> int:
        """Remove the messages at these 0-based indices; returns how many were there to remove."""
        removed = 0
        folders: set[Path] = set()
        for index in indices:
            path = self.messages[index].path
            try:
                os.unlink(path)
            except FileNotFoundError:
                path = self._moved(self.messages[index])
                if path is None:
                    continue  # already gone (another client removed it)
                os.unlink(path)
            removed += 1
            folders.add(path.parent)
        for folder in folders:
            fsync_dir(folder)
        return removed

    def _moved(self, message: DropMessage) -> Path | None:
        """The message's file after another client renamed it (new/ -> cur/, flags changed)."""
        base = message.path.name.split(":", 1)[0]
        for sub in ("cur", "new"):
            try:
                for entry in os.scandir(self.maildir / sub):
                    if entry.name.split(":", 1)[0] == base:
                        return Path(entry.path)
            except FileNotFoundError:
                continue
        return None

    def open_message(self, index: int):  # type: ignore[no-untyped-def]
        """The message file, open for reading (follows a rename by another client)."""
        message = self.messages[index]
        try:
            return open(message.path, "rb")
        except FileNotFoundError:
            moved = self._moved(message)
            if moved is None:
                raise
            return open(moved, "rb")

    def read_message(self, index: int) -> bytes:
        """The whole stored message (for small ones: one call instead of open, read, close)."""
        with self.open_message(index) as f:
            return f.read()
