"""POP3's maildrop lock (RFC 1939 §8): a flock'd file beside the Maildir, held across processes."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest
from support.maildrop_holder import try_lock

from hatoba.store.folder_tree import MailboxStore
from hatoba.store.maildir import MaildirStore
from hatoba.store.maildrop_lock import LOCK_NAME, MaildropLock, lock_path
from hatoba.store.pop3_maildrop import Maildrop
from hatoba.store.snapshot import Copier, copy_mail

def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    return MaildirStore(tmp_path / "mail", hostname="mail.example.test").maildir("Bob@Example.TEST")


def test_two_processes_never_hold_one_maildrop_and_a_killed_holder_frees_it(maildir: Path) -> None:
    first, said = try_lock(maildir)
    try:
        assert said == "held"
        mine = MaildropLock(maildir)
        assert not mine.acquire() and not mine.held
        second, said = try_lock(maildir)
        second.wait(timeout=30)
        assert said == "busy"
    finally:
        first.send_signal(signal.SIGKILL)  # no chance to clean up: the kernel closes its descriptor
        first.wait(timeout=30)
    assert mine.acquire()
    try:
        third, said = try_lock(maildir)
        third.wait(timeout=30)
        assert said == "busy"  # now this process holds it
    finally:
        mine.release()


def test_two_sessions_of_one_process_conflict_and_release_frees(maildir: Path) -> None:
    first, second = MaildropLock(maildir), MaildropLock(maildir)
    assert first.acquire()
    assert not second.acquire()
    first.release()
    first.release()  # twice is harmless
    assert second.acquire()
    second.release()


def test_released_before_acquire_ends_keeps_nothing_open(maildir: Path) -> None:
    """A session cancelled while its thread takes the lock: the late descriptor is closed at once."""
    MaildropLock(maildir).release()
    before = open_fds()
    lock = MaildropLock(maildir)
    lock.release()
    assert not lock.acquire() and not lock.held
    assert open_fds() == before
    other = MaildropLock(maildir)
    assert other.acquire()  # nobody holds it
    other.release()


def test_a_new_user_gets_private_folders_and_the_key_ignores_case(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path / "mail", hostname="mail.example.test")
    lock = MaildropLock(store.maildir("New@Example.Test"))
    assert lock.acquire()
    try:
        path = tmp_path / "mail" / "example.test" / "new" / LOCK_NAME
        assert lock.path == path and lock_path(store.maildir("new@example.test")) == path
        for folder in (path.parent, path.parent.parent):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert not MaildropLock(store.maildir("NEW@EXAMPLE.TEST")).acquire()
    finally:
        lock.release()
    assert path.exists()  # never removed (see the module's rules)


def test_a_link_in_the_locks_place_is_not_followed(maildir: Path, tmp_path: Path) -> None:
    maildir.parent.mkdir(parents=True)
    lock_path(maildir).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        MaildropLock(maildir).acquire()
    assert not (tmp_path / "elsewhere").exists()


def test_the_lock_file_shows_nowhere(tmp_path: Path) -> None:
    """POP3 listings, IMAP LIST, quota and the backup copy never see the lock file."""
    mail = tmp_path / "mail"
    store = MaildirStore(mail, hostname="mail.example.test")
    src = tmp_path / "m.eml"
    src.write_bytes(b"Subject: x\r\n\r\nbody\r\n")
    store.deliver("bob@example.test", src, unique_key="k1", timestamp=1700000000)
    maildir = store.maildir("bob@example.test")
    lock = MaildropLock(maildir)
    assert lock.acquire()
    try:
        assert len(Maildrop.open(maildir).messages) == 1
        boxes = MailboxStore(mail).for_user("bob@example.test")
        boxes.ensure_defaults()
        assert all(LOCK_NAME not in info.name and "pop3" not in info.name for info in boxes.list())
        assert boxes.quota()[0] == (maildir / "new").iterdir().__next__().stat().st_size
        copier = Copier()
        copy_mail(mail, tmp_path / "copy", copier)
        copier.finish()
        copied = {p.relative_to(tmp_path / "copy").as_posix() for p in (tmp_path / "copy").rglob("*")}
        assert "example.test/bob/Maildir/new" in copied
        assert not any(LOCK_NAME in name for name in copied)
    finally:
        lock.release()
