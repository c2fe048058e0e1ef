"""A full disk under the mail store: IMAP changes are refused whole (NO [OVERQUOTA]),
or done whole and answered OK; never half done. (A change whose batch fits in the
UID list's last page needs no room and is done: it is checked to be whole.)

Bob's mail sits on a small tmpfs filled to the last byte (support/disk.py):
a real full file system, where every write fails as it would in production.
"""

from __future__ import annotations

import logging
import os
import re

import pytest

from support.disk import fill, small_disk
from support.harness import ServerThread
from support.probe import LatencyProbe
from test_imap_commands import Imap, flags_in, message

BOB = "bob@example.test"


def flags_of(imap: Imap) -> dict[int, set[bytes]]:
    """UID -> stored flags of every message in the selected folder."""
    lines = imap.ok("UID FETCH 1:* (FLAGS)")
    return {int(re.search(rb"UID (\d+)", line).group(1)): flags_in(line) for line in lines}


@pytest.fixture
def full_disk_server(hatoba_home):
    """The server, with bob's mail on a 4 MiB tmpfs (his Maildir is made on it at his first login)."""
    with small_disk(hatoba_home.maildir(BOB).parent) as disk, ServerThread(hatoba_home) as srv:
        yield srv, disk


def no_traceback(records: list[logging.LogRecord]) -> bool:
    """The full disk is told in one-line warnings: no error, no traceback."""
    return not [r for r in records if r.exc_info or r.levelno >= logging.ERROR]


def test_imap_changes_on_a_full_disk_are_refused_and_leave_no_trace(full_disk_server, hatoba_home, caplog):
    srv, disk = full_disk_server
    imap = Imap(srv, hatoba_home)
    try:
        imap.ok("CREATE Kept")
        for i in range(3):
            status, _ = imap.append("INBOX", message(f"m{i}"))
            assert status.startswith("OK"), status
        imap.ok("SELECT INBOX")
        assert set(flags_of(imap)) == {1, 2, 3}
        filler = fill(disk)

        with LatencyProbe("127.0.0.1", srv.port("imap"), kind="imap") as probe:
            # A new keyword's file is written whole: no room for it.
            status, lines = imap.cmd("UID STORE 1 +FLAGS (Important)")
            assert status.startswith("NO [OVERQUOTA]") and lines == [], (status, lines)
            status, _ = imap.append("INBOX", message("one more"))
            assert status.startswith("NO [OVERQUOTA]"), status
            # A flag change: refused whole, or done whole if its batch fits.
            status, lines = imap.cmd("UID STORE 1:3 +FLAGS (\\Deleted)")
            if status.startswith("NO [OVERQUOTA]"):
                assert lines == [] and flags_of(imap) == {1: set(), 2: set(), 3: set()}
            else:
                assert status.startswith("OK") and len(lines) == 3, (status, lines)
                assert flags_of(imap) == {n: {b"\\Deleted"} for n in (1, 2, 3)}
                imap.ok("UID STORE 1:3 -FLAGS.SILENT (\\Deleted)")
            imap.ok("NOOP")  # the session goes on
        assert probe.worst < 1.0, probe.summary()

        # What was refused did not happen: no flag set, nothing appended.
        assert flags_of(imap) == {1: set(), 2: set(), 3: set()}
        os.unlink(filler)
        imap.ok("EXPUNGE")
        assert set(flags_of(imap)) == {1, 2, 3}
        assert imap.ok("STATUS Kept (MESSAGES)")[0].endswith(b"(MESSAGES 0)")
        for sub in ("cur", "new", "tmp"):
            archive = hatoba_home.maildir(BOB) / ".Kept" / sub
            assert os.listdir(archive) == [], sub
        assert len(os.listdir(hatoba_home.maildir(BOB) / "cur")) == 3
        assert os.listdir(hatoba_home.maildir(BOB) / "tmp") == []
        assert [n for n in os.listdir(hatoba_home.maildir(BOB)) if n.endswith(".tmp")] == []  # no half-written list
        # With room again, the same commands work.
        imap.ok("UID STORE 1 +FLAGS (\\Deleted)")
        imap.ok("UID COPY 2 Kept")
        imap.ok("UID MOVE 3 Kept")
        assert imap.ok("STATUS Kept (MESSAGES)")[0].endswith(b"(MESSAGES 2)")
        assert no_traceback(caplog.records)
    finally:
        imap.close()


def test_expunge_on_a_full_disk_is_done_and_new_mail_waits_for_room(full_disk_server, hatoba_home, caplog):
    srv, disk = full_disk_server
    imap = Imap(srv, hatoba_home)
    try:
        for i in range(2):
            status, _ = imap.append("INBOX", message(f"m{i}"))
            assert status.startswith("OK"), status
        imap.ok("SELECT INBOX")
        imap.ok("UID STORE 1 +FLAGS.SILENT (\\Deleted)")
        imap.ok("UID COPY 1 Trash")  # a hard link: expunging 1 frees no space
        maildir = hatoba_home.maildir(BOB)
        written = maildir / "tmp" / "1700000000.outside.mx"  # a delivery, written before the disk filled
        written.write_bytes(message("delivered by another tool"))
        filler = fill(disk)

        # The expunge happens (the file is gone) and is said so.
        lines = imap.ok("UID EXPUNGE 1")
        assert lines[0] == b"* 1 EXPUNGE", lines
        # The delivery ends (a rename needs no space). Its UID is shown once it is written:
        # at once if its batch fits in the list's last page, else once there is room.
        os.rename(written, maildir / "new" / written.name)
        lines = imap.ok("NOOP")
        shown_while_full = b"* 2 EXISTS" in lines
        assert shown_while_full or not any(b"EXISTS" in line for line in lines), lines
        os.unlink(filler)
        lines = imap.ok("NOOP")
        assert (b"* 2 EXISTS" in lines) != shown_while_full, lines
        assert set(flags_of(imap)) == {2, 3}
        assert imap.ok("STATUS Trash (MESSAGES)")[0].endswith(b"(MESSAGES 1)")
        assert no_traceback(caplog.records)
    finally:
        imap.close()
