"""What an import reads from another mail system, before anything is written."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """Something the import could not carry over; shown as one line: "FILE:LINE: reason"."""

    where: str  # a path, with ":LINE" when a line is to blame
    reason: str

    def __str__(self) -> str:
        # One line whatever the names hold: a folder called "x\nskipped: ..." forges nothing.
        text = f"{self.where}: {self.reason}"
        return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


class SourceFileError(Exception):
    """A file of the old system that cannot be read as one: str() says why, in a few words."""


DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dir(path: Path | str, dir_fd: int | None = None) -> int:
    """A folder of the old system, its last name not followed if it is a link (OSError
    ELOOP or ENOTDIR then): what is read below it is read through this descriptor, so a
    folder swapped for a link after it was opened leads nowhere."""
    return os.open(path, DIR_FLAGS, dir_fd=dir_fd)


def read_source(path: Path | str, limit: int, dir_fd: int | None = None) -> bytes | None:
    """A plain file's bytes (None when it does not exist). Links are not followed and
    fifos or devices not opened for reading, so a user's own folder cannot make the
    import read elsewhere or wait; `limit` bounds the memory it takes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        reason = "a link, not a file" if exc.errno == errno.ELOOP else f"cannot read it ({exc.strerror})"
        raise SourceFileError(reason) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SourceFileError("not a plain file")
        if st.st_size > limit:
            raise SourceFileError(f"larger than {limit // (1024 * 1024)} MiB")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise SourceFileError(f"cannot read it ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise SourceFileError(f"larger than {limit // (1024 * 1024)} MiB")
    return data


def inside(path: Path, root: Path) -> bool:
    """Whether `path`, links resolved, lies within `root`: an import reads the tree it was given."""
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or real.startswith(top.rstrip("/") + "/")


def plain_name(text: str) -> bool:
    """A local part or domain usable as one folder name (no "/", not "." or "..")."""
    return bool(text) and "/" not in text and "\0" not in text and text not in (".", "..")


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
    tree: Path | None = None  # the Maildir must stay within this folder (checked again at import)


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
