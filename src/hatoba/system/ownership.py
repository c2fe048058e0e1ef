"""Giving the data folder back to the service user.

Commands run as root (`hatoba user add`, `dkim keygen`, ...) make files
owned by root in the data folder, which the service user could then not
read or replace. Started as root, `serve` walks the data folder before it
drops root and gives every entry that is not the user's to it, as `postfix
set-permissions` does for the queue.

Rules (the folder is the service user's, so the walk must not let it hand
itself files from elsewhere):
- Every folder is opened with O_NOFOLLOW and entries are named relative to
  it: a folder swapped for a link during the walk is not followed.
- Symbolic links are changed themselves, never what they point at.
- A regular file is changed through a descriptor after checking it has one
  name only, unless the kernel forbids links to other users' files
  (fs.protected_hardlinks, on by default): otherwise a link planted to a
  file of root's would hand that file out. Fifos, sockets and devices are left.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_SWAPPED = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)  # what O_NOFOLLOW on a changed entry gives


@dataclass
class Given:
    changed: int = 0  # entries given to the user
    left: int = 0  # entries not the user's left as they were (several links, special files)


def give_to(root: Path, uid: int, gid: int) -> Given:
    """Chown `root` and everything under it to uid:gid where it differs."""
    result = Given()
    root = Path(os.path.realpath(root))  # the configured folder may be a link; what it holds is walked
    try:
        fd = os.open(root, _DIR_FLAGS)
    except FileNotFoundError:
        return result
    _walk(fd, uid, gid, result, _links_protected())
    return result


def _walk(dir_fd: int, uid: int, gid: int, result: Given, links_protected: bool) -> None:
    """Give the folder open as `dir_fd` and what it holds; closes `dir_fd`."""
    try:
        st = os.fstat(dir_fd)
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.fchown(dir_fd, uid, gid)
            result.changed += 1
        with os.scandir(dir_fd) as entries:
            names = [(entry.name, entry.stat(follow_symlinks=False)) for entry in entries]
        for name, st in names:
            if stat.S_ISDIR(st.st_mode):
                sub = _open(name, _DIR_FLAGS, dir_fd, result)
                if sub is not None:
                    _walk(sub, uid, gid, result, links_protected)
                continue
            if (st.st_uid, st.st_gid) == (uid, gid):
                continue
            if stat.S_ISLNK(st.st_mode):
                os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
                result.changed += 1
            elif stat.S_ISREG(st.st_mode):
                _give_file(dir_fd, name, uid, gid, result, links_protected)
            else:
                result.left += 1
    finally:
        os.close(dir_fd)


def _give_file(dir_fd: int, name: str, uid: int, gid: int, result: Given, links_protected: bool) -> None:
    fd = _open(name, _FILE_FLAGS, dir_fd, result)
    if fd is None:
        return
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_nlink > 1 and not links_protected):
            result.left += 1
            return
        os.fchown(fd, uid, gid)
        result.changed += 1
    finally:
        os.close(fd)


def _open(name: str, flags: int, dir_fd: int, result: Given) -> int | None:
    """`name` in `dir_fd`, links not followed; None (counted as left) when it is
    gone, or was swapped for a link, since it was listed."""
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in _SWAPPED:
            raise
        result.left += 1
        return None


def _links_protected() -> bool:
    try:
        return Path("/proc/sys/fs/protected_hardlinks").read_text().strip() == "1"
    except OSError:
        return False
