"""One user's mail store for store tests: delivered messages, and a store per "process"."""

from __future__ import annotations

from pathlib import Path

from hatoba.store.folder_tree import MailboxStore, UserMailboxes
from hatoba.store.maildir import MaildirStore


USER = "bob@example.test"


def deliver(root: Path, n: int, start: int = 0, address: str = USER) -> None:
    """`n` small messages into `address`'s INBOX (new/), numbered from `start`, each a second apart."""
    store = MaildirStore(root, hostname="mx.example.test")
    src = root.parent / "m.eml"
    for i in range(start, start + n):
        src.write_bytes(b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i))
        store.deliver(address, src, unique_key=f"k{i:04d}", timestamp=1700000000 + i)


def mailboxes(root: Path, address: str = USER) -> UserMailboxes:
    """`address`'s folders through a store of their own: what another process would hold."""
    return MailboxStore(root, hostname="imap.example.test").for_user(address)
