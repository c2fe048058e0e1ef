"""A backup of a server under load, restored elsewhere: every message acknowledged
before the backup began, and every user, is there.

While clients send mail continuously (each 250 recorded) and an IMAP client
keeps changing flags (Maildir renames), `hatoba backup` runs. The instance is
then restored into another folder, where every acknowledged message is found
by its Message-ID in a mailbox or still in the queue; started, it serves every
user over IMAP, and the queue drains into the mailboxes with no message twice.
"""

from __future__ import annotations

import email
import imaplib
import json
import re
import smtplib
import ssl
import sys
import threading
import time
import subprocess
from pathlib import Path

import pytest

from support.harness import PASSWORDS, HatobaHome, ServerProcess, free_port_offset, make_home

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SENDERS = 3
# Where mail to bob@ and team@ ends up (team: alice, bob and friends: carol, bob).
USERS = ("alice@example.test", "bob@example.test", "carol@example.test")


def send(port: int, client: int, acked: list[tuple[float, str]], stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                smtp.ehlo("load.test")
                while not stop.is_set():
                    n += 1
                    mid = f"<load-{client}-{n}@backup.test>"
                    body = f"Message-ID: {mid}\r\nSubject: load {client} {n}\r\n\r\n{'x' * 1500}\r\n"
                    smtp.sendmail("someone@elsewhere.example", ["bob@example.test", "team@example.test"], body)
                    acked.append((time.time(), mid))  # only after the 250
        except (smtplib.SMTPException, OSError):
            time.sleep(0.05)


def flag(home: HatobaHome, port: int, stop: threading.Event, stores: list[int]) -> None:
    """Mark bob's messages seen and unseen again and again: renames in new/ and cur/."""
    context = ssl.create_default_context(cafile=str(home.ca_file))
    while not stop.is_set():
        try:
            with imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=context, timeout=10) as imap:
                imap.login("bob@example.test", PASSWORDS["bob@example.test"])
                seen = True
                while not stop.is_set():
                    imap.select("INBOX")
                    imap.store("1:*", "+FLAGS" if seen else "-FLAGS", "(\\Seen)")
                    stores.append(1)
                    seen = not seen
        except (imaplib.IMAP4.error, OSError):
            time.sleep(0.05)


def ids_in_maildir(maildir: Path) -> set[str]:
    found = set()
    for sub in ("new", "cur"):
        for path in (maildir / sub).glob("*") if (maildir / sub).is_dir() else ():
            found.add(email.message_from_bytes(path.read_bytes())["Message-ID"])
    return found


def ids_in_queue(queue: Path) -> set[str]:
    found = set()
    for path in (queue / "active").glob("*.msg"):
        match = re.search(rb"^Message-ID: (<[^>]+>)", path.read_bytes(), re.MULTILINE)
        if match:
            found.add(match.group(1).decode())
    return found


def ids_over_imap(home: HatobaHome, port: int, user: str) -> list[str]:
    context = ssl.create_default_context(cafile=str(home.ca_file))
    with imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=context, timeout=20) as imap:
        imap.login(user, PASSWORDS[user])
        _, data = imap.select("INBOX")
        if int(data[0]) == 0:
            return []
        _, items = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        return [email.message_from_bytes(item[1])["Message-ID"] for item in items if isinstance(item, tuple)]


def test_backup_under_load_restores_every_acknowledged_message(tmp_path: Path) -> None:
    offset = free_port_offset()
    home = make_home(tmp_path / "origin", port_offset=offset)
    acked: list[tuple[float, str]] = []
    stores: list[int] = []
    stop = threading.Event()
    with ServerProcess(home, offset) as server:
        threads = [threading.Thread(target=send, args=(server.port(25), i, acked, stop)) for i in range(SENDERS)]
        threads.append(threading.Thread(target=flag, args=(home, server.port(993), stop, stores)))
        for t in threads:
            t.start()
        try:
            time.sleep(2.0)
            done = home.cli("backup", str(tmp_path / "backup"))
            assert done.returncode == 0, done.stderr
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(20)
        # --force over a running server's instance is refused.
        refused = home.cli("restore", "--force", str(tmp_path / "backup"))
        assert refused.returncode == 1 and "a server answers on" in refused.stderr, refused.stderr
    # The backup's promise: whatever was acknowledged before it began copying the queue.
    steps = json.loads((tmp_path / "backup" / "manifest.json").read_text())["steps"]
    before = [mid for at, mid in acked if at < steps["queue"]]
    during = [mid for at, mid in acked if steps["queue"] <= at < steps["directory"]]
    assert len(before) > 50, "too few messages acknowledged before the backup to mean anything"
    assert len(stores) > 5, "the IMAP client changed no flags"

    target = tmp_path / "restored" / "hatoba.toml"
    restored = subprocess.run([sys.executable, "-m", "hatoba", "-c", str(target), "restore", str(tmp_path / "backup")],
                              capture_output=True, text=True, timeout=120)
    assert restored.returncode == 0, restored.stderr
    new = HatobaHome(target.parent, target)
    queued = ids_in_queue(new.root / "data" / "queue")
    for user in USERS:
        found = ids_in_maildir(new.maildir(user)) | queued
        missing = [mid for mid in before if mid not in found]
        assert not missing, f"{user}: {len(missing)} of {len(before)} acknowledged messages not in the backup"

    with ServerProcess(new, offset) as server:
        # Every user logs in; the restored queue drains, and nothing is delivered twice.
        deadline = time.monotonic() + 60
        for user in USERS:
            while True:
                ids = ids_over_imap(new, server.port(993), user)
                if set(before) <= set(ids) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            missing = set(before) - set(ids)
            assert not missing, f"{user}: {len(missing)} acknowledged messages not delivered after the restore"
            twice = {mid for mid in ids if ids.count(mid) > 1}
            assert not twice, f"{user}: delivered twice after the restore: {sorted(twice)[:3]}"
    print(f"{len(before)} messages acknowledged before the backup copied the queue, {len(during)} while it copied mail, {len(stores)} flag changes;",
          done.stdout.splitlines()[2].strip())
