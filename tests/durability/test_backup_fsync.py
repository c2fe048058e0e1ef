"""`hatoba backup` says done only when the backup is on stable storage.

Every copied file is fsynced and every folder that got a name (a copy, a hard
link, a folder) is fsynced before the manifest is written; the manifest is
written like any file that must survive (fsync, rename, folder fsync), and
the backup folder's own name is fsynced before make_backup returns. The
calls are recorded (support/fsyncorder.py): a kill -9 test cannot see them.
"""

from __future__ import annotations

import os
from pathlib import Path

from support.fsyncorder import record
from support.harness import make_home

from hatoba.queue.spool import Envelope, Spool
from hatoba.store.backup import make_backup
from hatoba.store.folder_tree import MailboxStore
from hatoba.store.maildir import MaildirStore


def test_everything_in_the_backup_is_durable_before_it_returns(tmp_path: Path, monkeypatch) -> None:
    home = make_home(tmp_path / "h")
    config = home.config()
    src = tmp_path / "m.eml"
    src.write_bytes(b"Subject: x\r\n\r\nbody\r\n")
    for _ in range(3):
        MaildirStore(config.paths.mail_dir, hostname="x").deliver("alice@example.test", src)
    MailboxStore(config.paths.mail_dir, hostname="x").for_user("alice@example.test").open("INBOX").sync()
    Spool(config.paths.queue_dir).inject(Envelope("", ("bob@example.test",), 1700000000.0), b"Subject: q\r\n\r\n")
    dest = tmp_path / "backup"
    fs = record(monkeypatch)
    make_backup(config, dest)
    done = fs.mark("returned")

    manifest = dest / "manifest.json"
    written = fs.put_durably(fs.temp_of(manifest), manifest, done, op="replace")
    fs.folder_synced_between(dest.parent, written, done)  # the backup folder's own name
    links = {c.target: i for i, c in enumerate(fs.calls) if c.op == "link"}
    kinds = {"link": 0, "copy": 0, "folder": 0}
    for folder, dirs, files in os.walk(dest):
        for name in dirs:
            fs.folder_synced_between(folder, -1, written)  # the sub-folder's name
            kinds["folder"] += 1
        for name in files:
            path = Path(folder, name)
            if path == manifest:
                continue
            real = os.path.realpath(path)
            if real in links:
                fs.folder_synced_between(folder, links[real], written)
                kinds["link"] += 1
            else:
                fs.file_synced_before(path, written, path.stat().st_size)
                synced = max(i for i, c in enumerate(fs.calls[:written]) if c.op == "sync" and c.path == real)
                fs.folder_synced_between(folder, synced, written)
                kinds["copy"] += 1
    assert kinds["link"] >= 4 and kinds["copy"] >= 6 and kinds["folder"] >= 10, kinds


def test_the_queue_is_copied_before_the_mail_and_the_database_last(tmp_path: Path, monkeypatch) -> None:
    # The order that makes a backup consistent (store/backup.py): a message leaves the
    # queue only once it is in the mailboxes, so copying the mailboxes first could miss one.
    home = make_home(tmp_path / "h")
    config = home.config()
    src = tmp_path / "m.eml"
    src.write_bytes(b"Subject: x\r\n\r\nbody\r\n")
    MaildirStore(config.paths.mail_dir, hostname="x").deliver("alice@example.test", src)
    Spool(config.paths.queue_dir).inject(Envelope("", ("bob@example.test",), 1700000000.0), b"Subject: q\r\n\r\n")
    fs = record(monkeypatch)
    make_backup(config, tmp_path / "backup")
    data = os.path.realpath(tmp_path / "backup" / "data")
    queue = [i for i, c in enumerate(fs.calls) if c.op == "link" and c.target.startswith(data + "/queue/")]
    mail = [i for i, c in enumerate(fs.calls) if c.op == "link" and c.target.startswith(data + "/mail/")]
    database = [i for i, c in enumerate(fs.calls) if c.op == "sync" and c.path == data + "/directory.sqlite3"]
    assert queue and mail and database
    assert max(queue) < min(mail), fs.dump()
    assert max(mail) < min(database), fs.dump()
