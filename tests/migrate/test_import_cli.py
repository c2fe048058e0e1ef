"""`hatoba import dovecot|maildir` run as a real program on Maildir trees laid out as
Dovecot 2.3 leaves them: what a second run brings, what a dry run leaves, and how
bad input is reported. (The same against a running Dovecot: tests/interop/test_import_dovecot.py.)"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hatoba.store.directory import Directory
from hatoba.store.folder_tree import MailboxStore
from hatoba.store.pop3_maildrop import Maildrop

class Home:
    def __init__(self, root: Path) -> None:
        self.root = root
        subprocess.run([sys.executable, "-m", "hatoba", "init", str(root), "--hostname", "mail.example.test",
                        "--user", ""], check=True, capture_output=True, timeout=120)
        self.config = root / "hatoba.toml"
        self.data = root / "data"
        self.mail = self.data / "mail"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hatoba", "-c", str(self.config), *args],
                              input="", capture_output=True, text=True, timeout=120)

    def directory(self) -> Directory:
        return Directory(self.data / "directory.sqlite3")


class DovecotTree:
    """A passwd-file and MAIL_ROOT/DOMAIN/USER/Maildir, written as Dovecot writes them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mail = root / "mail"
        self.passwd = root / "passwd"
        self.passwd.parent.mkdir(parents=True, exist_ok=True)
        self.lines: list[str] = []

    def user(self, address: str, password_field: str, extra: str = "") -> Path:
        self.lines.append(f"{address}:{password_field}::::::{extra}")
        self.passwd.write_text("\n".join(self.lines) + "\n")
        local, domain = address.split("@")
        maildir = self.mail / domain / local / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        return maildir

    @staticmethod
    def folder(maildir: Path, name: str) -> Path:
        path = maildir / f".{name}"
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        (path / "maildirfolder").touch()
        return path

    @staticmethod
    def message(folder: Path, base: str, letters: str | None, body: str) -> Path:
        data = f"Subject: {body}\n\n{body}\n".encode()
        path = folder / ("new" if letters is None else "cur") / (base if letters is None else f"{base}:2,{letters}")
        path.write_bytes(data)
        return path

    @staticmethod
    def uidlist(folder: Path, uidvalidity: int, nextuid: int, uids: dict[str, int], version: int = 3) -> None:
        lines = [f"{version} V{uidvalidity} N{nextuid} G0123456789abcdef0123456789abcdef"]
        lines += [f"{uid} :{base}" for base, uid in sorted(uids.items(), key=lambda item: item[1])]
        (folder / "dovecot-uidlist").write_text("\n".join(lines) + "\n")


def _tree_state(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under root: (mode, sha256 of the content); folders too."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            state[os.path.relpath(os.path.join(dirpath, name), root)] = (0, "dir")
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                state[os.path.relpath(path, root)] = (os.stat(path).st_mtime_ns, hashlib.sha256(f.read()).hexdigest())
    return state


def _status(home: Home, address: str, folder: str = "INBOX") -> tuple[int, int, dict[int, frozenset[str]]]:
    mailboxes = MailboxStore(home.mail, hostname="mail.example.test").for_user(address)
    box = mailboxes.open(folder, readonly=True)
    box.sync()
    status = mailboxes.status(folder)
    flags = {record.uid: frozenset(record.flags) for record in box.messages()}
    return status.uidvalidity, status.uidnext, flags


def _source(tmp_path: Path) -> tuple[DovecotTree, Path]:
    tree = DovecotTree(tmp_path / "old")
    inbox = tree.user("alice@example.test", "{PLAIN}alice-old-password", "userdb_quota_rule=*:storage=2G")
    tree.message(inbox, "1700000001.M1P1.old", "S", "one")
    tree.message(inbox, "1700000002.M2P1.old", "Fa", "two")
    tree.message(inbox, "1700000003.M3P1.old", None, "three")
    (inbox / "dovecot-keywords").write_text("0 $Forwarded\n")
    tree.uidlist(inbox, 1690000000, 9, {"1700000001.M1P1.old": 3, "1700000002.M2P1.old": 8})
    return tree, inbox


def test_second_import_brings_only_what_changed_and_a_dry_run_changes_nothing(tmp_path):
    tree, inbox = _source(tmp_path)
    home = Home(tmp_path / "home")
    first = home.run("import", "dovecot", "--passwd-file", str(tree.passwd), "--mail-root", str(tree.mail))
    assert first.returncode == 0, first.stderr
    assert "brought 3 messages" in first.stdout
    uidvalidity, uidnext, flags = _status(home, "alice@example.test")
    assert uidvalidity == 1690000000
    assert flags == {3: {"\\Seen"}, 8: {"\\Flagged", "$Forwarded"}, 9: frozenset()}
    assert uidnext == 10
    with home.directory() as directory:
        assert directory.quota_mb("alice@example.test") == 2048
        assert directory.authenticate("alice@example.test", "alice-old-password") == "alice@example.test"

    # At the source: one message more, one flag changed, one removed, one user more.
    tree.message(inbox, "1700000004.M4P1.old", "S", "four")
    (inbox / "cur" / "1700000001.M1P1.old:2,S").rename(inbox / "cur" / "1700000001.M1P1.old:2,RS")
    (inbox / "cur" / "1700000002.M2P1.old:2,Fa").unlink()
    tree.uidlist(inbox, 1690000000, 12, {"1700000001.M1P1.old": 3, "1700000003.M3P1.old": 10,
                                         "1700000004.M4P1.old": 11})
    bob = tree.user("bob@example.test", "{SHA512-CRYPT}$6$rounds=5000$salt$" + "x" * 86)
    tree.message(bob, "1700000009.M9P1.old", "S", "for bob")
    # In hatoba meanwhile: a message deleted by the user must not come back.
    os.unlink(next((home.mail / "example.test/alice/Maildir/cur").glob("1700000003*")))

    before = _tree_state(home.mail)
    dry = home.run("import", "dovecot", "--passwd-file", str(tree.passwd), "--mail-root", str(tree.mail),
                   "--dry-run")
    assert dry.returncode in (0, 2), dry.stderr
    assert _tree_state(home.mail) == before
    assert "would bring 2 messages" in dry.stdout
    with home.directory() as directory:
        assert not directory.user_exists("bob@example.test")

    second = home.run("import", "dovecot", "--passwd-file", str(tree.passwd), "--mail-root", str(tree.mail))
    assert "users: 1 new" in second.stdout
    assert "brought 2 messages" in second.stdout  # alice's fourth and bob's one, nothing else
    assert "1 flag changes, 1 removed at the source" in second.stdout
    _, uidnext, flags = _status(home, "alice@example.test")
    assert flags == {3: {"\\Seen", "\\Answered"}, 11: {"\\Seen"}}
    assert uidnext == 12

    third = home.run("import", "dovecot", "--passwd-file", str(tree.passwd), "--mail-root", str(tree.mail))
    assert "brought 0 messages" in third.stdout and "0 flag changes, 0 removed" in third.stdout


def test_pop3_uidls_stay_what_dovecot_showed(tmp_path):
    tree, inbox = _source(tmp_path)
    home = Home(tmp_path / "home")
    result = home.run("import", "dovecot", "--passwd-file", str(tree.passwd), "--mail-root", str(tree.mail))
    assert result.returncode == 0, result.stderr
    drop = Maildrop.open(home.mail / "example.test/alice/Maildir")
    uidls = sorted(message.uid for message in drop.messages)
    # %08Xu%08Xv (lower-case hex, as Dovecot 2.3 prints it) for the two messages Dovecot numbered; the one it never listed keeps its name.
    assert uidls == sorted(["0000000364bb5a80", "0000000864bb5a80", "1700000003.M3P1.old"])


def test_bad_input_is_reported_in_one_line_each_and_the_rest_imported(tmp_path):
    tree, inbox = _source(tmp_path)
    tree.lines.append("truncated@example.test")  # no password field
    tree.lines.append("carol@example.test:{NOSUCH}abcdef")
    tree.passwd.write_text("\n".join(tree.lines) + "\n")
    (tree.mail / "example.test/carol/Maildir/cur").mkdir(parents=True)
    work = tree.folder(inbox, "Work")
    tree.message(work, "1700000005.M5P1.old", "S", "work")
    tree.uidlist(work, 1690000001, 2, {"1700000005.M5P1.old": 1}, version=4)
    (inbox / "cur" / "broken name:1,S").write_text("Subject: x\n\nx\n")
    home = Home(tmp_path / "home")
    result = home.run("import", "dovecot", "--passwd-file", str(tree.passwd), "--mail-root", str(tree.mail))
    assert result.returncode == 2
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 4, result.stderr
    assert any(f"{tree.passwd}:2:" in line for line in skipped)
    assert any(f"{tree.passwd}:3:" in line and "NOSUCH" in line for line in skipped)
    assert any("dovecot-uidlist:1:" in line and "version 4" in line for line in skipped)
    assert any("broken name:1,S" in line for line in skipped)
    assert "Traceback" not in result.stderr
    # The rest came over: alice's mail, the Work folder (with new UIDs), carol (who needs a new password).
    _, _, flags = _status(home, "alice@example.test")
    assert len(flags) == 3
    uidvalidity, _, work_flags = _status(home, "alice@example.test", "Work")
    assert list(work_flags.values()) == [{"\\Seen"}] and uidvalidity != 1690000001
    with home.directory() as directory:
        assert directory.user_exists("carol@example.test")
        assert directory.authenticate("carol@example.test", "abcdef") is None
    check = home.run("check", "--no-live", "--no-dns")
    assert "carol@example.test" in check.stdout and "(NOSUCH)" in check.stdout


def test_maildir_import_needs_the_user_and_keeps_names_as_uidls(tmp_path):
    tree, inbox = _source(tmp_path)
    (inbox / "dovecot-uidlist").unlink()
    home = Home(tmp_path / "home")
    refused = home.run("import", "maildir", str(inbox), "--user", "alice@example.test")
    assert refused.returncode == 1 and "no user alice@example.test" in refused.stderr
    with home.directory() as directory:
        directory.add_domain("example.test")
        directory.add_user("alice@example.test", "a-new-password-1")
    result = home.run("import", "maildir", str(inbox), "--user", "alice@example.test")
    assert result.returncode == 0, result.stderr
    drop = Maildrop.open(home.mail / "example.test/alice/Maildir")
    assert sorted(m.uid for m in drop.messages) == [
        "1700000001.M1P1.old", "1700000002.M2P1.old", "1700000003.M3P1.old"]
    assert not (home.mail / "example.test/alice/Maildir/hatoba-pop3-uidls").exists()  # the names are the UIDLs


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the source to another user")
def test_messages_of_another_owner_are_copied_and_links_never_share_an_owner_change(tmp_path):
    tree, inbox = _source(tmp_path)
    for path in tree.mail.rglob("*"):
        os.chown(path, 65534, 65534)  # the old server's files, not hatoba's user's
    home = Home(tmp_path / "home")
    result = home.run("import", "dovecot", "--passwd-file", str(tree.passwd), "--mail-root", str(tree.mail))
    assert result.returncode == 0, result.stderr
    assert "(0 hard-linked, 3 copied)" in result.stdout
    for source in (inbox / "cur").iterdir():
        copy = home.mail / "example.test/alice/Maildir/cur" / source.name
        assert copy.read_bytes() == source.read_bytes()
        assert copy.stat().st_ino != source.stat().st_ino
        assert copy.stat().st_mtime_ns == source.stat().st_mtime_ns  # INTERNALDATE kept
        assert (source.stat().st_uid, copy.stat().st_uid) == (65534, 0)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand files to the service user")
def test_messages_already_the_service_users_are_linked_and_serve_leaves_them_alone(tmp_path):
    import pwd

    from hatoba.system.ownership import give_to

    tree, inbox = _source(tmp_path)
    nobody = pwd.getpwnam("nobody")
    for path in [tree.mail, *tree.mail.rglob("*")]:
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    home = Home(tmp_path / "home")
    text = home.config.read_text().replace('user = ""', 'user = "nobody"', 1)
    home.config.write_text(text)
    result = home.run("import", "dovecot", "--passwd-file", str(tree.passwd), "--mail-root", str(tree.mail))
    assert result.returncode == 0, result.stderr
    assert "(3 hard-linked, 0 copied)" in result.stdout
    before = {p: (p.stat().st_uid, p.stat().st_gid, p.stat().st_mode) for p in (inbox / "cur").iterdir()}
    for source in before:
        assert (home.mail / "example.test/alice/Maildir/cur" / source.name).stat().st_ino == source.stat().st_ino
    give_to(home.data, nobody.pw_uid, nobody.pw_gid)  # what `serve` does before it drops root
    assert {p: (p.stat().st_uid, p.stat().st_gid, p.stat().st_mode) for p in before} == before


def test_postfix_virtual_and_aliases_become_aliases_and_forwards(tmp_path):
    tree, _ = _source(tmp_path)
    tree.user("bob@example.test", "{PLAIN}bob-old-password")
    virtual = tmp_path / "virtual"
    virtual.write_text(
        "# as a tutorial writes it\n"
        "example.net                 anything\n"          # declares a virtual alias domain
        "sales@example.test          alice@example.test,\n"
        "    bob@example.test\n"                           # a continuation line
        "bob@example.test            bob@example.test someone@elsewhere.example\n"  # keeps a copy
        "@example.net                alice@example.test\n"  # catch-all
        "postmaster                  alice\n")             # a bare user: Postfix's own domains
    aliases = tmp_path / "aliases"
    aliases.write_text("root: admin\nadmin: alice@example.test\nbackup: \"|/usr/local/bin/keep\"\n")
    home = Home(tmp_path / "home")
    result = home.run("import", "dovecot", "--passwd-file", str(tree.passwd), "--mail-root", str(tree.mail),
                      "--postfix-virtual", str(virtual), "--postfix-aliases", str(aliases))
    assert result.returncode == 2, result.stderr
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 2, result.stderr
    assert any(f"{virtual}:7: postmaster (no domain)" in line for line in skipped)
    assert any(f"{aliases}:3: backup" in line and "program" in line for line in skipped)
    with home.directory() as directory:
        assert "example.net" in directory.list_domains()
        assert directory.list_aliases_of("sales@example.test") == ["alice@example.test", "bob@example.test"]
        assert directory.list_aliases_of("@example.net") == ["alice@example.test"]
        assert directory.forwards("bob@example.test") == (["someone@elsewhere.example"], True)
        # aliases(5) serves the server's own name, as Postfix's $mydestination
        assert directory.list_aliases_of("root@mail.example.test") == ["admin@mail.example.test"]
        assert list(directory.resolve("root@mail.example.test").mailboxes) == ["alice@example.test"]


def test_the_pop3_uidl_format_can_be_chosen(tmp_path):
    tree, inbox = _source(tmp_path)
    home = Home(tmp_path / "home")
    result = home.run("import", "dovecot", "--passwd-file", str(tree.passwd), "--mail-root", str(tree.mail),
                      "--pop3-uidl-format", "UID%u-%v")
    assert result.returncode == 0, result.stderr
    drop = Maildrop.open(home.mail / "example.test/alice/Maildir")
    assert [m.uid for m in drop.messages][:2] == ["UID3-1690000000", "UID8-1690000000"]  # in the old UID order
    bad = home.run("import", "dovecot", "--passwd-file", str(tree.passwd), "--mail-root", str(tree.mail),
                   "--pop3-uidl-format", "%m")
    assert bad.returncode == 1 and "%m" in bad.stderr and bad.stderr.count("\n") == 1
