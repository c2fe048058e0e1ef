"""POP3's exclusive access to a maildrop (RFC 1939 §8), held across server processes.

A maildrop is locked by flock(LOCK_EX | LOCK_NB) on the empty file
".pop3-lock" beside the user's Maildir (DATA/mail/DOMAIN/LOCAL/.pop3-lock),
through a descriptor kept open for the whole POP3 session. Closing the
descriptor releases the lock, and the kernel closes it when the process
dies, so a killed worker never leaves a maildrop locked.

Rules:
- flock belongs to the open file description, not to the process: two
  sessions of one process conflict exactly as two processes do, so no
  in-memory set of held mailboxes is needed (or kept).
- The file is never removed. Removing it would let two sessions lock two
  different files under one name (one opened the old file before the
  unlink, the other creates a new one).
- It is a dot-file outside the Maildir: Maildir readers, POP3 listings, quota
  counts and IMAP LIST only look inside Maildir/, and the backup skips
  dot-files (store/snapshot.py), so a restore never brings one back.
- The path comes from MaildirStore.maildir(), which lowercases the address:
  the lock is case-insensitive like the mailbox.
- acquire() opens (maybe creates) the file and its folders: it blocks, so the
  server calls it in a thread. release() only closes a descriptor and may run
  on the event loop, before, during or after acquire() in another thread
  (a session cancelled while its lock is being taken): whatever acquire()
  gets after release() is closed at once.
- Descriptors are not inherited by child processes (os.open makes them
  non-inheritable, PEP 446): a delivery process or worker started later
  never holds a session's lock.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from hatoba.fsutil import make_private_dir

__all__ = ["LOCK_NAME", "MaildropLock", "lock_path"]

LOCK_NAME = ".pop3-lock"


def lock_path(maildir: Path) -> Path:
    """The lock file of the maildrop at `maildir`: beside it, in the user's folder."""
    return maildir.parent / LOCK_NAME


class MaildropLock:
    """The lock of one maildrop for one session: acquire() once, release() when done."""

    def __init__(self, maildir: Path) -> None:
        self.path = lock_path(maildir)
        self._fd: int | None = None
        self._released = False
        self._guard = threading.Lock()  # acquire() in a thread, release() on the event loop

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock; False when another session holds it. Blocks (open, mkdir): call it in a thread.

        Raises OSError when the file cannot be opened or made."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        with self._guard:
            if not self._released:
                self._fd = fd
                return True
        os.close(fd)  # released while we were taking it: nobody will close it later
        return False

    def release(self) -> None:
        """Give the lock up (closing the descriptor); safe to call more than once, or before acquire() ends."""
        with self._guard:
            self._released = True
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _open(self) -> int:
        # O_NOFOLLOW: a link planted under the lock's name is not followed.
        flags = os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW
        try:
            return os.open(self.path, flags, 0o600)
        except FileNotFoundError:
            pass
        # A user with no mail yet has no folder: make it as the store would (0700).
        make_private_dir(self.path.parent)
        return os.open(self.path, flags, 0o600)

