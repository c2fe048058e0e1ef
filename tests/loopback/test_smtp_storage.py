"""SMTP refuses at MAIL FROM, "452 4.3.1 Insufficient system storage", while the
queue's disk has less free than its reserve (limits.queue_min_free, by default
1.5 x max_message_size as in Postfix), or less than a SIZE= beyond it.

The queue sits on a small tmpfs (support/disk.py), so the free space is real.
"""

from __future__ import annotations

import os
import smtplib

from support.disk import small_disk
from support.harness import ServerThread
from support.probe import LatencyProbe
from test_imap_commands import Imap

from hatoba.proto.smtp import replies as R

BOB = "bob@example.test"


def smtp(srv: ServerThread) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10)
    client.ehlo("mx.elsewhere.example")
    return client


def reply(code: int, text: bytes) -> R.Reply:
    status, _, words = text.decode().partition(" ")
    return R.Reply(code, status, words)


def test_mail_from_gets_452_while_the_queue_disk_has_less_than_its_reserve(hatoba_home):
    """The queue on a 4 MiB disk: less free than 1.5 x max_message_size (Postfix's rule)."""
    assert hatoba_home.config().limits.max_message_size * 3 // 2 > 4 << 20
    with small_disk(hatoba_home.root / "data" / "queue"), ServerThread(hatoba_home) as srv:
        with LatencyProbe("127.0.0.1", srv.port("smtp"), kind="smtp") as probe:
            client = smtp(srv)
            for _ in range(3):  # refused each time, and the session goes on
                assert reply(*client.mail("ann@elsewhere.example")) == R.R452_NO_STORAGE
                assert client.rcpt("bob@example.test")[0] == 503  # no transaction began
            assert client.noop()[0] == 250
            client.quit()
            imap = Imap(srv, hatoba_home)  # users still read their mail
            imap.ok("SELECT INBOX")
            imap.close()
        assert probe.worst < 1.0, probe.summary()
        assert os.listdir(hatoba_home.root / "data" / "queue" / "incoming") == []


def test_a_size_beyond_the_free_space_gets_452_at_mail_and_a_smaller_one_is_taken(hatoba_home):
    """The queue on a 50 MiB disk: 12.5 MiB free beyond the 37.5 MiB reserve (25 MiB messages)."""
    assert hatoba_home.config().limits.max_message_size == 25 << 20
    with small_disk(hatoba_home.root / "data" / "queue", "50m"), ServerThread(hatoba_home) as srv:
        client = smtp(srv)
        assert reply(*client.mail("ann@elsewhere.example", [f"SIZE={20 << 20}"])) == R.R452_NO_STORAGE
        assert client.mail("ann@elsewhere.example", ["SIZE=200"])[0] == 250
        assert client.rcpt("bob@example.test")[0] == 250
        assert client.data(b"Subject: small\r\n\r\nfits\r\n")[0] == 250
        client.quit()
        assert b"fits" in hatoba_home.wait_messages(BOB, 1)[0]


def test_queue_min_free_sets_the_reserve(tmp_path):
    from support.harness import make_home

    home = make_home(tmp_path / "hatoba", extra_config=f"[limits]\nqueue_min_free = {1 << 60}\n")
    assert home.config().limits.queue_reserve == 1 << 60  # more than any test machine's disk
    with ServerThread(home) as srv:
        client = smtp(srv)
        assert reply(*client.mail("ann@elsewhere.example")) == R.R452_NO_STORAGE
        client.quit()
