"""The storage interfaces the rest of hatoba programs against.

Rules:
- Sessions and delivery code use these Protocols, never file paths.
- Every method here may block (SQLite, fsync, Argon2): async callers run them
  with asyncio.to_thread, never on the event loop.
- Addresses passed in are already normalised: local part as given (case kept,
  compared case-insensitively), domain lower-case IDNA/ASCII.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class DirectoryError(Exception):
    """A user error in a directory operation; the message is one line for the operator."""


class AliasLoopError(DirectoryError):
    """Alias expansion came back to an address already being expanded."""


@dataclass(frozen=True)
class Resolution:
    """What a recipient address turns into after alias expansion.

    `mailboxes` are local users' addresses (one entry per final mailbox, no
    duplicates); `forwards` are non-local addresses an alias points to.
    `known` is False when the address is in a local domain but names no user
    and no alias (the SMTP server answers 550 5.1.1).
    """

    known: bool
    mailboxes: tuple[str, ...] = ()
    forwards: tuple[str, ...] = ()


class UserDB(Protocol):
    """Domains, users and aliases (the directory)."""

    def is_local_domain(self, domain: str) -> bool: ...

    def resolve(self, address: str) -> Resolution: ...

    def verify_password(self, address: str, password: str) -> bool: ...

    def sender_addresses(self, login: str) -> frozenset[str]: ...

    def postmaster_address(self) -> str | None: ...


@dataclass(frozen=True)
class DeliveredMessage:
    """Where a delivery put a message, for logs and tests."""

    mailbox: str
    path: Path
    duplicate: bool = False  # it was already there (a redelivery after a crash)


class MailStore(Protocol):
    """Where local delivery puts messages. IMAP and POP3 add their methods later."""

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
        """Store `prefix` followed by the bytes of `source` (the first
        `length` of them, when given) into `mailbox` (its folder `folder`,
        a Maildir++ directory such as ".Junk"; "" = the inbox).

        Returns only after the message is on stable storage. When `unique_key`
        is given and a message with that key was already delivered to this
        mailbox, nothing is written (redelivery after a crash is a no-op);
        `thorough` makes that check look harder (after a restart).
        """
        ...

    def special_folder(self, mailbox: str, use: str, default: str) -> str:
        """The folder directory of `mailbox` marked `use` (RFC 6154 "\\Junk"), else `default`."""
        ...


@dataclass
class QueueState:
    """Per-message delivery progress kept beside the spooled message."""

    done: list[str] = field(default_factory=list)
    attempts: int = 0
    next_try: float = 0.0
    last_error: str = ""
    held: bool = False
    warned: bool = False  # the sender was told the message is delayed
    pending: list[str] = field(default_factory=list)  # addresses still to deliver (after aliases)
