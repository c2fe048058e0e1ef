"""Consistent copies of a live instance's files, for `hatoba backup` and `restore`.

Rules:
- Only files that are never changed once they have their name are hard-linked:
  Maildir messages (in new/ and cur/; flags live in the name, so a flag change
  is a rename, never a write) and queue messages (queue/snapshot.py). A hard
  link to such a file is a consistent copy that costs no space. Where a link
  cannot be made (another file system) the file is copied instead.
- Every other file is copied: its writers replace it whole (write_atomic), so
  a read sees one version.
- A copy keeps the file's mode and times (a message's mtime is its IMAP
  internal date) and, run by root, its owner; folders are made with the
  mode and owner of the folder they copy. A copy is fsynced when written;
  finish() fsyncs every folder that got a name. Nothing is durable before.
- A message that vanishes between listing and linking was renamed (new/ to
  cur/, a flag change) or expunged: the folder is listed again for it, a few
  times, and the last name seen of each message is the one kept. A listing
  may also miss a file renamed while it reads the folder (readdir(3) leaves
  that unspecified): the folder's UID list, copied first, names every
  message that was in cur/, and one it names but the copy lacks is looked
  for the same way. A user's folders are gone through twice, so a message
  moved by a client from a folder not yet copied into one already copied is
  found the second time.
- The directory database is copied with SQLite's online backup API: one
  consistent snapshot while the server writes.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hatoba.fsutil import fsync_dir, write_all
from hatoba.store.uidlist import listed_stems

CHUNK = 1024 * 1024
MESSAGE_DIRS = ("new", "cur")
# How often a folder is listed again for messages that vanished under us.
RESCANS = 5
# A user's folders are gone through this many times (see the rules above).
MAILDIR_PASSES = 2
# Why a hard link may be refused where a copy works: another file system,
# links not allowed there (or not for this owner), too many links to one file.
_LINK_REFUSALS = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP})
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_EXPLAINED = _NO_SPACE | {errno.EACCES, errno.EPERM}  # describe() says more than strerror


class BackupError(Exception):
    """Why a backup or a restore cannot go on, in one line for the operator."""


def describe(exc: OSError) -> str:
    """An OSError in plain words, naming the file and what to do."""
    where = exc.filename or "a file"
    if exc.errno in _NO_SPACE:
        return f"no space left on the device holding {where}; free some space or choose another place"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied for {where}; run it as the user that owns the instance (or root)"
    return f"{where}: {exc.strerror or exc}"


@contextmanager
def explained(action: str) -> Iterator[None]:
    """Turn an OSError or SQLite error inside into a one-line BackupError starting with `action`."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None and action.endswith(str(exc.filename)) and exc.errno not in _EXPLAINED:
            raise BackupError(f"{action}: {exc.strerror or exc}") from None  # the file is named already
        raise BackupError(f"{action}: {describe(exc)}") from None
    except sqlite3.Error as exc:
        if "full" in str(exc):
            raise BackupError(f"{action}: no space left on the device; free some space or choose another place") from None
        raise BackupError(f"{action}: {exc}") from None


@dataclass
class Copier:
    """Makes links and copies, counts them, and remembers which folders to fsync."""

    links: int = 0
    copies: int = 0

    def __post_init__(self) -> None:
        self._folders: set[str] = set()
        self._can_link: dict[tuple[str, str], bool] = {}  # (source folder, target folder) -> links work
        self._root = os.geteuid() == 0

    def folder(self, path: Path, like: Path | None = None, mode: int = 0o700) -> Path:
        """Make `path` (its parent must exist) with the mode and owner of `like`, or `mode`."""
        st = os.stat(like) if like is not None and like.is_dir() else None
        mode = stat.S_IMODE(st.st_mode) if st is not None else mode
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            if not path.is_dir():
                raise
        else:
            os.chmod(path, mode)  # mkdir's mode went through the umask
            if st is not None and self._root:
                os.chown(path, st.st_uid, st.st_gid)
            self._folders.add(str(path.parent))
        self._folders.add(str(path))
        return path

    def link(self, source: Path, target: Path) -> None:
        """Hard-link an immutable file, else copy it. FileNotFoundError when it vanished."""
        folders = (str(source.parent), str(target.parent))
        if self._can_link.get(folders, True):
            try:
                os.link(source, target)
            except OSError as exc:
                if exc.errno not in _LINK_REFUSALS:
                    raise
                self._can_link[folders] = False  # asked once per folder, not per message
            else:
                self.links += 1
                self._folders.add(folders[1])
                return
        self.copy(source, target)

    def copy(self, source: Path, target: Path, *, digest: bool = False) -> tuple[int, str]:
        """Copy a file (mode, times and, as root, owner kept) and fsync it; returns (size, sha256 or "").

        A failure leaves no partial file behind."""
        hasher = hashlib.sha256() if digest else None
        with open(source, "rb") as src:
            st = os.fstat(src.fileno())
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                size = 0
                while chunk := src.read(CHUNK):
                    write_all(fd, chunk)
                    size += len(chunk)
                    if hasher is not None:
                        hasher.update(chunk)
                if self._root:
                    os.fchown(fd, st.st_uid, st.st_gid)
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
                os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
                os.fsync(fd)
            except BaseException as exc:
                os.close(fd)
                _unlink_quietly(target)
                if isinstance(exc, OSError) and exc.filename is None:
                    exc.filename = str(target)  # a failed write names no file itself
                raise
            os.close(fd)
        self.copies += 1
        self._folders.add(str(target.parent))
        return size, hasher.hexdigest() if hasher is not None else ""

    def finish(self) -> None:
        """fsync every folder a name was made in, the deepest first."""
        for folder in sorted(self._folders, key=lambda p: p.count(os.sep), reverse=True):
            fsync_dir(Path(folder))
        self._folders.clear()


# -- the mail store ---------------------------------------------------------------------


def copy_mail(source: Path, target: Path, copier: Copier) -> int:
    """Copy the mail store (DATA/mail) of a running server; returns the messages that vanished meanwhile."""
    return _walk(source, target, copier, top=True)


def _walk(source: Path, target: Path, copier: Copier, *, top: bool = False) -> int:
    try:
        entries = sorted(os.scandir(source), key=lambda e: e.name)
    except FileNotFoundError:
        if top:
            raise
        return 0  # removed while we copied (a user removed, a folder deleted)
    copier.folder(target, like=source)
    if _is_maildir(entries):
        return _copy_user_maildir(source, target, copier)
    vanished = 0
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            vanished += _walk(Path(entry.path), target / entry.name, copier)
        elif entry.is_file(follow_symlinks=False) and not entry.name.startswith("."):
            _copy_if_there(Path(entry.path), target / entry.name, copier)
    return vanished


def _is_maildir(entries: list[os.DirEntry[str]]) -> bool:
    names = {e.name for e in entries if e.is_dir(follow_symlinks=False)}
    return "cur" in names and "new" in names


def _copy_user_maildir(source: Path, target: Path, copier: Copier) -> int:
    """A user's Maildir: INBOX at its root, Maildir++ folders ".Name" beside cur/ (store/folder_tree.py)."""
    placed: dict[str, dict[str, tuple[str, str]]] = {}  # folder name -> stem -> (sub, name) in the copy
    missing: dict[str, int] = {}
    for pass_ in range(MAILDIR_PASSES):
        folders = [""] + sorted(
            name for name in _listdir(source) if name.startswith(".") and (source / name / "cur").is_dir()
        )
        for name in folders:
            src, dst = source / name, target / name
            if name and name not in placed:
                copier.folder(dst, like=src)
            if pass_ == 0 or name not in placed:
                # The UID list before the messages: it may miss a newer message
                # (a new UID then) but every file it names was there.
                _copy_folder_files(src, dst, copier)
            missing[name] = _copy_messages(src, dst, copier, placed.setdefault(name, {}), listed_stems(dst))
    for entry in sorted(_scandir(source), key=lambda e: e.name):
        # Anything else in the Maildir root (not a folder of messages) is copied as it is.
        if entry.is_dir(follow_symlinks=False) and entry.name not in ("cur", "new", "tmp") and entry.name not in placed:
            _walk(Path(entry.path), target / entry.name, copier)
    return sum(missing.values())


def _copy_folder_files(source: Path, target: Path, copier: Copier) -> None:
    """The plain files of one folder (hatoba-uidlist, dovecot-keywords, header cache, ...) and its empty tmp/."""
    entries = sorted(_scandir(source), key=lambda e: e.name)
    for entry in entries:
        if entry.is_file(follow_symlinks=False) and not entry.name.startswith("."):
            _copy_if_there(Path(entry.path), target / entry.name, copier)
    if (source / "tmp").is_dir():
        # tmp/ holds deliveries in progress: not acknowledged as delivered, the queue still has them.
        copier.folder(target / "tmp", like=source / "tmp")


def _copy_messages(source: Path, target: Path, copier: Copier, placed: dict[str, tuple[str, str]],
                   expected: set[str]) -> int:
    """Link every message of one folder into the copy; returns how many vanished and were not found again.

    `expected`: the messages the folder's UID list names (a listing may miss one being renamed)."""
    for sub in MESSAGE_DIRS:
        if (source / sub).is_dir():
            copier.folder(target / sub, like=source / sub)
    wanted: set[str] | None = None  # None: every message; later rounds: the ones not found yet
    missing: set[str] = set()
    seen_vanish: set[str] = set()
    for _ in range(RESCANS):
        vanished: set[str] = set()
        for sub in MESSAGE_DIRS:  # new/ first: a message moves from new/ to cur/, never back
            for name in _listdir(source / sub):
                if name.startswith("."):
                    continue  # another tool's temporary name (the store skips these too)
                stem = name.partition(":")[0]
                if wanted is not None and stem not in wanted:
                    continue
                before = placed.get(stem)
                if before == (sub, name):
                    continue
                try:
                    copier.link(source / sub / name, target / sub / name)
                except FileNotFoundError:
                    if before is None:
                        vanished.add(stem)
                    continue
                if before is not None:  # the same message under its newer name: keep one
                    _unlink_quietly(target / before[0] / before[1])
                placed[stem] = (sub, name)
        seen_vanish |= vanished
        missing = (vanished | expected) - placed.keys()
        if not missing:
            return 0
        wanted = missing
    # Expunged (or renamed more often than we looked); names a stale UID list still
    # held of files removed earlier (by POP3, say) are not counted.
    return len(missing & seen_vanish)


def copy_tree(source: Path, target: Path, copier: Copier, immutable: Callable[[Path], bool]) -> None:
    """Copy a tree that does not change (a backup, when restoring): links for immutable files, copies else."""
    copier.folder(target, like=source)
    for entry in sorted(os.scandir(source), key=lambda e: e.name):
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            copy_tree(path, target / entry.name, copier, immutable)
        elif entry.is_file(follow_symlinks=False):
            if immutable(path):
                copier.link(path, target / entry.name)
            else:
                copier.copy(path, target / entry.name)


def is_message(path: Path) -> bool:
    """A message file of a Maildir (in new/ or cur/)."""
    return path.parent.name in MESSAGE_DIRS


def _copy_if_there(source: Path, target: Path, copier: Copier) -> None:
    try:
        copier.copy(source, target)
    except FileNotFoundError as exc:
        if exc.filename != str(source):
            raise  # the target's folder, not the source, is missing: a real error


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []  # the folder was deleted (or renamed) meanwhile


def _scandir(path: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(path))
    except FileNotFoundError:
        return []


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# -- the directory database -------------------------------------------------------------


@dataclass(frozen=True)
class DirectoryFacts:
    schema_version: int
    domains: int
    users: int
    aliases: int  # alias sources (an alias with three targets counts once)


def copy_database(source: Path, target: Path) -> DirectoryFacts:
    """A consistent copy of a SQLite database in use, fsynced; returns what it holds.

    SQLite's online backup reads one snapshot (WAL readers never wait for the
    server's writers, nor they for us). The copy is a single file in rollback
    journal mode, with no -wal beside it; hatoba turns WAL on again when it
    opens it.
    """
    if not source.is_file():
        raise FileNotFoundError(errno.ENOENT, "no directory database here", str(source))
    # mode=ro: a missing file is never created, the source never written.
    src = sqlite3.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True, timeout=30.0)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
            facts = database_facts(dst)
        finally:
            dst.close()
    finally:
        src.close()
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fchmod(fd, 0o600)  # password hashes: owner only, whatever the umask
        if os.geteuid() == 0:
            st = os.stat(source)
            os.fchown(fd, st.st_uid, st.st_gid)
        os.fsync(fd)
    finally:
        os.close(fd)
    return facts


def database_facts(conn: sqlite3.Connection) -> DirectoryFacts:
    """Check a directory database whole and count what it holds (raises sqlite3.DatabaseError when damaged)."""
    problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    if problems != ["ok"]:
        raise sqlite3.DatabaseError(f"the directory database is damaged ({problems[0]})")

    def count(sql: str) -> int:
        return int(conn.execute(sql).fetchone()[0])

    return DirectoryFacts(
        schema_version=count("SELECT max(version) FROM schema_version"),
        domains=count("SELECT count(*) FROM domains"),
        users=count("SELECT count(*) FROM users"),
        aliases=count("SELECT count(DISTINCT source_key) FROM aliases"),
    )
