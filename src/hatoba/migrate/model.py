"""What an import reads from another mail system, before anything is written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """Something the import could not carry over; shown as one line: "FILE:LINE: reason"."""

    where: str  # a path, with ":LINE" when a line is to blame
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


def at(path: Path | str, line: int | None = None) -> str:
    return f"{path}:{line}" if line is not None else str(path)


@dataclass
class SourceUser:
    address: str
    # The password as hatoba keeps it until the first login: "{SCHEME}data" (store/legacy_hashes.py).
    password_hash: str | None
    clear_password: str | None  # where the old system kept it readable (vpopmail): hashed at import
    maildir: Path | None  # the user's Maildir (INBOX), None when it has none yet
    quota_mb: int | None  # None: the server's default; 0: no limit
    origin: str  # where the user was read, for messages


@dataclass
class SourceAlias:
    source: str  # an address, or "@domain" for a catch-all
    targets: list[str]
    origin: str


@dataclass
class SourceForward:
    address: str  # a user
    targets: list[str]
    keep_copy: bool
    origin: str


@dataclass
class Source:
    """Everything one import brings: read whole first, so a dry run and a real run see the same."""

    domains: list[str] = field(default_factory=list)
    users: list[SourceUser] = field(default_factory=list)
    aliases: list[SourceAlias] = field(default_factory=list)
    forwards: list[SourceForward] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # How the old server's POP3 named messages: "base" (the Maildir base name:
    # qmail-pop3d, Courier without UIDs) or a Dovecot pop3_uidl_format ("%08Xu%08Xv").
    uidl_format: str = "base"

    def problem(self, where: str, reason: str) -> None:
        self.problems.append(Problem(where, reason))
