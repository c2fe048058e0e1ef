"""The few file-system moves that make mail durable.

A file is durable once its data is fsynced; a name in a folder is durable
once the folder is fsynced after the rename. Everything that says "250" or
removes a queue entry goes through these helpers (as qmail and Postfix do:
write to a temporary name, fsync, rename into place, fsync the folder).
Also the one read an event loop may do itself: a file the page cache holds.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make the names in `path` (creations, renames, removals) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a write may take only part)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Create `path` (which must not exist) with `mode` from the first byte, write and fsync it.

    A failure leaves no file behind."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have removed bits we asked for
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, sync_dir: bool = True) -> None:
    """Replace `path` with `data` so a reader sees the old or the new content, never a part."""
    # A random name made with O_EXCL|O_NOFOLLOW: two processes (the server and the CLI,
    # say) replacing one file never write into each other's temporary file, and nothing
    # placed there beforehand (a symlink) is written through.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)  # a half-written file on a full disk would keep it full
        except FileNotFoundError:
            pass
        raise
    if sync_dir:
        fsync_dir(path.parent)


def make_private_dir(path: Path) -> Path:
    """A folder only the owner can read (mail and queue hold private data).

    Missing parents are made 0700 too (mkdir(parents=True) would use the umask).
    """
    missing = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
    return path


# Linux 4.14+: a read that fails with EAGAIN instead of waiting for the disk.
_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)
# No access-time update: it could wait for the file system's journal. Dropped after
# the first EPERM (only a file's owner may ask for it).
_O_NOATIME: int = getattr(os, "O_NOATIME", 0)


class NoWaitUnsupported(Exception):
    """This file system (or system) cannot read without waiting: ask no more."""


def read_if_cached(path: str, limit: int) -> bytes | None:
    """The whole file when the page cache holds all of it and it is at most `limit` bytes.

    None when reading would wait for the disk or the file is larger; the caller
    then reads it in a thread. For an event loop: the read never waits for the
    disk, though the open may (once) when the file's inode is no longer in
    memory, which also means its pages are not. Raises FileNotFoundError
    (and other OSErrors of open), and NoWaitUnsupported.
    """
    global _O_NOATIME
    if _RWF_NOWAIT is None:
        raise NoWaitUnsupported
    try:
        # O_NONBLOCK: a FIFO someone put in cur/ must not hold the event loop in open().
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | _O_NOATIME)
    except PermissionError as exc:
        if not _O_NOATIME or exc.errno != errno.EPERM:  # EACCES: the file is unreadable anyway
            raise
        _O_NOATIME = 0
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        try:
            size = os.lseek(fd, 0, os.SEEK_END)  # the size, without fstat's whole stat_result
        except OSError:  # no size to seek to (a FIFO, a file under /proc): the thread's reader looks closer
            return None
        if size > limit:
            return None
        buffer = bytearray(size)
        try:
            got = os.preadv(fd, [buffer], 0, _RWF_NOWAIT)
        except BlockingIOError:  # not in the page cache
            return None
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # no RWF_NOWAIT here
                raise NoWaitUnsupported from exc
            return None  # EIO and the like: the blocking read in a thread will say so
        return bytes(buffer) if got == size else None  # short: only part of it was cached
    finally:
        os.close(fd)
