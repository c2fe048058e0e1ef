"""`hatoba import vpopmail` on a tree laid out exactly as vpopmail 5.4 lays it out
(docs/import-formats.md): afterwards, mail to every alias and forward goes where
qmail sent it, over a real SMTP session to the real server."""

from __future__ import annotations

import os
import smtplib
import struct
import subprocess
from pathlib import Path

import pytest

from hatoba.store.directory import Directory
from hatoba.store.folder_tree import MailboxStore
from hatoba.store.pop3_maildrop import Maildrop
from support.harness import ServerThread, make_home, wait_for

D = "vpop.example"


def _md5_crypt(password: str) -> str:
    return subprocess.run(["openssl", "passwd", "-1", "-salt", "qmailold", password],
                          capture_output=True, text=True, check=True).stdout.strip()


class VpopmailTree:
    """~vpopmail as vpopmail 5.4 writes it; the paths in vpasswd name where it lived
    (/home/vpopmail), not where the test put the copy, as after an rsync to a new host."""

    def __init__(self, root: Path) -> None:
        self.home = root / "vpopmail"
        self.domain = self.home / "domains" / D
        self.domain.mkdir(parents=True)
        self.lines: list[str] = []

    def user(self, name: str, crypted: str, quota: str, clear: str = "", hashed: str = "") -> Path:
        rel = f"{hashed}/{name}" if hashed else name
        self.lines.append(f"{name}:{crypted}:1:0:{name.title()}:/home/vpopmail/domains/{D}/{rel}:{quota}:{clear}")
        (self.domain / "vpasswd").write_text("\n".join(self.lines) + "\n")
        maildir = self.domain / rel / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True)
        return maildir

    def dot_qmail(self, name: str, text: str) -> None:
        (self.domain / f".qmail-{name}").write_text(text)


@pytest.fixture
def tree(tmp_path: Path) -> VpopmailTree:
    tree = VpopmailTree(tmp_path / "old")
    alice = tree.user("alice", _md5_crypt("alice-qmail-pw"), "5242880S,1000C")
    bob = tree.user("bob", _md5_crypt("not-this-one"), "NOQUOTA", clear="bob-clear-pw")
    carol = tree.user("carol", _md5_crypt("carol-qmail-pw"), "", hashed="0")
    (carol / "maildirsize").write_text("10485760S,100C\n       1234        2\n")
    # Mail as qmail-local names it, read by Courier-IMAP, which kept UIDs.
    for stem, letters in (("1600000001.4321.oldhost", "S"), ("1600000002.4322.oldhost", "RS"),
                          ("1600000003.4323.oldhost", None)):
        folder = alice / ("new" if letters is None else "cur")
        (folder / (stem if letters is None else f"{stem}:2,{letters}")).write_text(f"Subject: {stem}\n\nold\n")
    (alice / "courierimapuiddb").write_text("1 1599999999 6\n4 1600000001.4321.oldhost\n5 1600000002.4322.oldhost\n")
    # Aliases and forwards, each kind of .qmail line.
    tree.dot_qmail("info", "&alice@vpop.example\nbob\n")
    tree.dot_qmail("sales:team", f"/home/vpopmail/domains/{D}/0/carol/Maildir/\n")
    tree.dot_qmail("outside", "# the shop's old address\nsomeone@elsewhere.example\n")
    tree.dot_qmail("default", "| /home/vpopmail/bin/vdelivermail '' bounce-no-mailbox\n")
    tree.dot_qmail("news-default", "| /usr/bin/ezmlm-weed\n")
    lists = tree.domain / "announce"
    lists.mkdir()
    (lists / "editor").write_text("|/usr/bin/ezmlm-send '/home/vpopmail/domains/vpop.example/announce'\n")
    os.symlink(lists / "editor", tree.domain / ".qmail-announce")
    (bob.parent / ".qmail").write_text(f"&someone@elsewhere.example\n/home/vpopmail/domains/{D}/bob/Maildir/\n")
    (carol.parent / ".qmail").write_text("&alice@vpop.example\n")
    os.symlink(tree.domain, tree.home / "domains" / "alias.example")  # an alias domain, as before 2002
    return tree


def test_vpopmail_users_passwords_quotas_and_uids_come_over(tmp_path, tree):
    tree.lines.append("dave:$1$cut:1:0:Dave")  # cut short (a disk that filled while vpopmail wrote it)
    (tree.domain / "vpasswd").write_text("\n".join(tree.lines) + "\n")
    home = make_home(tmp_path / "hatoba")
    result = home.cli("import", "vpopmail", str(tree.home))
    assert result.returncode == 2, result.stderr  # the list, the extension addresses and dave are left out
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 3, result.stderr
    assert f"skipped: {tree.domain / 'vpasswd'}:4: a truncated vpasswd line (5 of 7 or 8 fields); left out" in skipped
    assert any(".qmail-announce" in line and "ezmlm" in line for line in skipped)
    assert any(".qmail-news-default" in line for line in skipped)
    with Directory(home.root / "data" / "directory.sqlite3") as directory:
        assert directory.quota_mb(f"alice@{D}") == 5
        assert directory.quota_mb(f"bob@{D}") == 0
        assert directory.quota_mb(f"carol@{D}") == 10
        assert [scheme for _, scheme in directory.legacy_hash_users()] == ["CRYPT", "CRYPT"]  # bob's was clear
        assert directory.authenticate(f"bob@{D}", "bob-clear-pw") == f"bob@{D}"
        assert directory.authenticate(f"bob@{D}", "not-this-one") is None
        assert directory.authenticate(f"alice@{D}", "wrong-password") is None
        assert directory.authenticate(f"alice@{D}", "alice-qmail-pw") == f"alice@{D}"
        assert [address for address, _ in directory.legacy_hash_users()] == [f"carol@{D}"]  # alice moved on
        assert directory.authenticate(f"alice@{D}", "alice-qmail-pw") == f"alice@{D}"  # now by Argon2id
    mailboxes = MailboxStore(home.root / "data" / "mail").for_user(f"alice@{D}")
    box = mailboxes.open("INBOX", readonly=True)
    box.sync()
    assert mailboxes.status("INBOX").uidvalidity == 1599999999
    assert {m.uid: set(m.flags) for m in box.messages()} == {4: {"\\Seen"}, 5: {"\\Answered", "\\Seen"}, 6: set()}
    drop = Maildrop.open(home.maildir(f"alice@{D}"))
    assert sorted(m.uid for m in drop.messages) == [
        "1600000001.4321.oldhost", "1600000002.4322.oldhost", "1600000003.4323.oldhost"]
    # Files stay the old server's own: nothing there was written.
    assert not list(tree.home.rglob("hatoba-*"))


def test_mail_to_every_alias_and_forward_goes_where_qmail_sent_it(tmp_path, tree):
    home = make_home(tmp_path / "hatoba")
    assert home.cli("import", "vpopmail", str(tree.home)).returncode == 2
    before = {a: len(home.messages(a)) for a in (f"alice@{D}", f"bob@{D}", f"carol@{D}")}
    expected = {
        f"info@{D}": {f"alice@{D}", f"bob@{D}"},
        f"sales.team@{D}": {f"alice@{D}"},  # to carol, whose own .qmail sends all on to alice
        f"bob@{D}": {f"bob@{D}"},  # and a copy to someone@elsewhere.example
        "alice@alias.example": {f"alice@{D}"},
        "info@alias.example": {f"alice@{D}", f"bob@{D}"},
    }
    with ServerThread(home) as server:
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
            for rcpt in list(expected) + [f"outside@{D}"]:
                smtp.sendmail("sender@elsewhere.example", [rcpt], f"Subject: to {rcpt}\r\n\r\nhello\r\n".encode())
            code, _ = smtp.rcpt("nobody@vpop.example") if smtp.mail("sender@elsewhere.example")[0] == 250 else (0, b"")
            assert code == 550  # unknown users bounced, as vdelivermail's bounce-no-mailbox did
            smtp.rset()
        for rcpt, boxes in expected.items():
            for box in (f"alice@{D}", f"bob@{D}", f"carol@{D}"):
                wanted = box in boxes
                assert wait_for(lambda: _has(home, box, rcpt) == wanted, timeout=15 if wanted else 0.5), (rcpt, box)
        listing = home.cli("queue", "list").stdout
        # outside@, and bob's forward of what came to bob@, info@vpop.example and info@alias.example
        assert listing.count("to <someone@elsewhere.example>") == 4
    assert {a: len(home.messages(a)) - before[a] for a in before} == {
        f"alice@{D}": 4, f"bob@{D}": 3, f"carol@{D}": 0}


def _has(home, box: str, rcpt: str) -> bool:
    return any(f"Subject: to {rcpt}".encode() in m for m in home.messages(box))


def _cdb(records: list[tuple[bytes, bytes]]) -> bytes:
    """A cdb file as cdbmake writes one (cr.yp.to/cdb/cdb.txt): records, then 256 hash tables."""
    def cdb_hash(key: bytes) -> int:
        h = 5381
        for c in key:
            h = ((h << 5) + h ^ c) & 0xFFFFFFFF
        return h

    body, slots = b"", [[] for _ in range(256)]
    for key, value in records:
        slots[cdb_hash(key) & 255].append((cdb_hash(key), 2048 + len(body)))
        body += struct.pack("<II", len(key), len(value)) + key + value
    header, tables, position = b"", b"", 2048 + len(body)
    for entries in slots:
        size = len(entries) * 2
        table = [(0, 0)] * size
        for h, pos in entries:
            i = (h >> 8) % size
            while table[i][1]:
                i = (i + 1) % size
            table[i] = (h, pos)
        header += struct.pack("<II", position + len(tables), size)
        tables += b"".join(struct.pack("<II", h, p) for h, p in table)
    return header + body + tables


def test_users_are_read_from_vpasswd_cdb_when_there_is_no_vpasswd(tmp_path, tree):
    lines = (tree.domain / "vpasswd").read_text().splitlines()
    (tree.domain / "vpasswd").unlink()
    records = [(line.split(":", 1)[0].encode(), line.split(":", 1)[1].encode()) for line in lines]
    (tree.domain / "vpasswd.cdb").write_bytes(_cdb(records))
    home = make_home(tmp_path / "hatoba")
    result = home.cli("import", "vpopmail", str(tree.home))
    assert "users: 3 new" in result.stdout, result.stderr
    with Directory(home.root / "data" / "directory.sqlite3") as directory:
        assert directory.authenticate(f"bob@{D}", "bob-clear-pw") == f"bob@{D}"
        assert directory.authenticate(f"alice@{D}", "alice-qmail-pw") == f"alice@{D}"
        assert directory.quota_mb(f"alice@{D}") == 5
    assert len(home.messages(f"alice@{D}")) == 3
