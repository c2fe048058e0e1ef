"""`hatoba import` against old mail stores that users or accidents have made hostile:
links out of the tree, special files, numbers out of range, a second source, costly hashes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hatoba.store import legacy_hashes
from hatoba.store.pop3_maildrop import Maildrop
from hatoba.store.uidlist import MAX_VANISHED, Entry, ParsedList, parse_list, write_whole_list
from test_import_cli import DovecotTree, Home, _source, _status


def _import(home: Home, tree: DovecotTree, *extra: str):
    return home.run("import", "dovecot", "--passwd-file", str(tree.passwd), "--mail-root", str(tree.mail), *extra)


def test_links_and_special_files_in_a_users_maildir_bring_nothing_from_outside(tmp_path):
    tree, inbox = _source(tmp_path)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "shadow").write_text("root:$6$not-for-users\n")
    evil = tree.folder(inbox, "Evil")
    os.rmdir(evil / "cur")
    os.symlink(secret, evil / "cur")  # a folder whose cur/ is somewhere else
    os.symlink(secret / "shadow", inbox / "cur" / "1700000010.M10P1.old:2,S")  # a message that is a link
    os.mkfifo(inbox / "subscriptions")  # would make a reader wait for ever
    os.symlink("/dev/zero", evil / "dovecot-keywords")  # would fill memory
    home = Home(tmp_path / "home")
    start = time.monotonic()
    result = _import(home, tree)
    assert time.monotonic() - start < 60
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for what in ("Evil/cur: a link", "1700000010.M10P1.old:2,S: not a plain file", "subscriptions: not a plain",
                 "Evil/dovecot-keywords: a link"):
        assert what in result.stderr, (what, result.stderr)
    stored = b"".join(path.read_bytes() for path in home.mail.rglob("*") if path.is_file())
    assert b"not-for-users" not in stored
    assert len(_status(home, "alice@example.test")[2]) == 3


def test_a_users_maildir_linked_to_anothers_is_not_imported_twice(tmp_path):
    tree, inbox = _source(tmp_path)
    tree.user("mallory@example.test", "{PLAIN}mallory-password")
    mallory = tree.mail / "example.test" / "mallory" / "Maildir"
    for sub in ("cur", "new", "tmp"):
        os.rmdir(mallory / sub)
    os.rmdir(mallory)
    os.symlink(inbox, mallory)
    home = Home(tmp_path / "home")
    result = _import(home, tree)
    assert "mallory@example.test's Maildir is alice@example.test's" in result.stderr
    assert not (home.mail / "example.test" / "mallory").exists()


def test_a_second_maildir_for_the_same_user_keeps_the_first_ones_mail(tmp_path):
    tree, inbox = _source(tmp_path)
    (inbox / "dovecot-uidlist").unlink()
    other = tmp_path / "other" / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (other / sub).mkdir(parents=True)
    DovecotTree.message(other, "1700000050.M50P1.old", "S", "from the other one")
    home = Home(tmp_path / "home")
    with home.directory() as directory:
        directory.add_domain("example.test")
        directory.add_user("alice@example.test", "a-new-password-1")
    assert home.run("import", "maildir", str(inbox), "--user", "alice@example.test").returncode == 0
    second = home.run("import", "maildir", str(other), "--user", "alice@example.test")
    assert "brought 1 messages" in second.stdout and "0 removed" in second.stdout
    assert len(_status(home, "alice@example.test")[2]) == 4
    again = home.run("import", "maildir", str(inbox), "--user", "alice@example.test")
    assert "brought 0 messages" in again.stdout and "0 removed" in again.stdout


def test_uids_out_of_imaps_range_give_the_folder_new_ones(tmp_path):
    tree, inbox = _source(tmp_path)
    tree.uidlist(inbox, 99999999999, 5, {"1700000001.M1P1.old": 3})
    home = Home(tmp_path / "home")
    result = _import(home, tree)
    assert result.returncode == 2 and "dovecot-uidlist:1: UIDVALIDITY or next UID out of IMAP's range" in result.stderr
    uidvalidity, uidnext, flags = _status(home, "alice@example.test")
    assert uidvalidity < 2**32 and uidnext < 2**32 and len(flags) == 3


def test_a_message_brought_late_never_gets_a_uid_below_the_uidnext_shown(tmp_path):
    tree, inbox = _source(tmp_path)
    late = inbox / "cur" / "1700000001.M1P1.old:2,S"
    late.rename(tmp_path / "held")  # not there at the first run; its old UID is 3
    home = Home(tmp_path / "home")
    assert _import(home, tree).returncode == 0
    _, uidnext_seen, _ = _status(home, "alice@example.test")
    (tmp_path / "held").rename(late)
    second = _import(home, tree)
    assert second.returncode == 0 and "1 messages got new UIDs" in second.stdout
    _, _, flags = _status(home, "alice@example.test")
    assert 3 not in flags and max(flags) >= uidnext_seen


def test_duplicate_saved_uidls_stay_unique(tmp_path):
    tree, inbox = _source(tmp_path)
    (inbox / "dovecot-uidlist").write_text(
        "3 V1690000000 N9 G0\n3 Psame :1700000001.M1P1.old\n8 Psame :1700000002.M2P1.old\n")
    home = Home(tmp_path / "home")
    result = _import(home, tree)
    assert result.returncode == 2 and "was shown for another message too" in result.stderr
    uidls = [m.uid for m in Maildrop.open(home.mail / "example.test/alice/Maildir").messages]
    assert len(set(uidls)) == len(uidls) == 3 and "same" in uidls


def test_an_address_that_cannot_be_a_folder_is_refused_not_a_crash(tmp_path):
    tree, _ = _source(tmp_path)
    tree.lines.append("c/d@example.test:{PLAIN}password-cd")
    tree.passwd.write_text("\n".join(tree.lines) + "\n")
    home = Home(tmp_path / "home")
    result = _import(home, tree)
    assert result.returncode == 2 and "'c/d@example.test' is not a full address" in result.stderr
    assert "Traceback" not in result.stderr
    refused = home.run("user", "add", "e/f@example.test", "--password-stdin")
    assert refused.returncode == 1 and "may not hold '/'" in refused.stderr


@pytest.mark.parametrize("stored", [
    "{PBKDF2}$1$salt$2147483647$" + "00" * 20,
    "{CRYPT}$2b$31$" + "a" * 53,
    "{SHA512-CRYPT}$6$rounds=999999999$salt$" + "x" * 86,
    "{SCRAM-SHA-256}4000000000,c2FsdA==,AAAA,AAAA",
    "{ARGON2ID}$argon2id$v=19$m=1048576,t=16,p=1$c2FsdHNhbHQ$" + "A" * 43,
])
def test_hashes_too_costly_to_check_at_a_login_are_refused_at_once(stored):
    start = time.monotonic()
    with pytest.raises(legacy_hashes.UnknownScheme):
        legacy_hashes.check_supported(stored)
    with pytest.raises(legacy_hashes.UnknownScheme):
        legacy_hashes.verify(stored, "any password")
    assert time.monotonic() - start < 1


def test_expunges_past_what_the_list_remembers_raise_its_floor(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    vanished = [(uid, uid) for uid in range(1, MAX_VANISHED + 51)]
    write_whole_list(folder, ParsedList(7, (MAX_VANISHED + 60, MAX_VANISHED + 60, 1, 0),
                                        {MAX_VANISHED + 55: Entry(MAX_VANISHED + 55, 1, "x:2,")}, vanished, 0, 0, True))
    parsed = parse_list((folder / "hatoba-uidlist").read_bytes())
    assert len(parsed.vanished) == MAX_VANISHED
    assert parsed.numbers[3] == 50  # the forgotten ones are below the floor: QRESYNC sends all missing UIDs


def test_a_full_disk_stops_the_run_in_one_line_and_the_next_run_goes_on(tmp_path):
    from support.disk import small_disk

    tree, inbox = _source(tmp_path)
    for n in range(40):  # about 4 MB of mail (100 kB each) for a 1 MB disk
        DovecotTree.message(inbox, f"17000001{n:02d}.M{n}P1.old", "S", "x" * 50_000)
    for path in [tree.mail, *tree.mail.rglob("*")]:
        os.chown(path, 65534, 65534)  # not hatoba's user's: copied, not linked
    home = Home(tmp_path / "home")
    with small_disk(home.mail, "1m"):
        full = _import(home, tree)
        assert full.returncode == 1 and "Traceback" not in full.stderr
        assert full.stderr.count("\n") == 1 and "is full (No space left on device)" in full.stderr
        for path in sorted((inbox / "cur").glob("17000001*"))[5:]:
            path.unlink()  # less to bring: five of the large ones fit
        again = _import(home, tree)
        assert again.returncode == 0, again.stderr
        assert "0 already here" in again.stdout  # the user the first run made is known as its own
        assert not list(home.mail.rglob("tmp/*.import"))
    with home.directory() as directory:  # made by the first run, and known to be the import's
        assert directory.authenticate("alice@example.test", "alice-old-password")


def test_folders_swapped_for_links_after_they_were_read_lead_nowhere(tmp_path):
    from hatoba.migrate.apply import Importer
    from hatoba.migrate.dovecot import read_dovecot
    from hatoba.migrate.mailfolders import FolderSync, Placement
    from hatoba.migrate.model import open_dir
    from hatoba.migrate.uidl import UidlFormat

    outside = tmp_path / "outside"
    for sub in ("cur", "new", "tmp"):
        (outside / sub).mkdir(parents=True)
    (outside / "cur" / "1700000099.M9P9.secret:2,S").write_text("Subject: not yours\n\nsecret\n")
    tree, inbox = _source(tmp_path)
    # cur/ swapped between the listing and the copies.
    target = tmp_path / "target"
    place = Placement(False, None, lambda: 1)
    fd = open_dir(inbox)
    try:
        sync = FolderSync(inbox, fd, target, place)
        os.rename(inbox / "cur", tmp_path / "real-cur")
        os.symlink(outside / "cur", inbox / "cur")
        sync.run("alice INBOX")
    finally:
        os.close(fd)
    placed = [p.read_bytes() for p in (target / "cur").iterdir()]
    assert placed and not any(b"secret" in data for data in placed)
    os.unlink(inbox / "cur")
    os.rename(tmp_path / "real-cur", inbox / "cur")
    # The whole Maildir swapped between reading the passwd-file and importing its mail.
    home = Home(tmp_path / "home")
    source = read_dovecot(tree.passwd, tree.mail)
    os.rename(inbox, tmp_path / "real-inbox")
    os.symlink(outside, inbox)
    with home.directory() as directory:
        outcome = Importer(directory, home.data, home.mail, hostname="mail.example.test", owner=None,
                           dry_run=False).run(source, UidlFormat.parse("dovecot"))
    assert any("leads out of" in str(p) for p in outcome.problems)
    stored = b"".join(p.read_bytes() for p in home.mail.rglob("*") if p.is_file())
    assert b"secret" not in stored


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a file of another user's")
def test_a_second_name_of_someone_elses_file_is_not_imported(tmp_path):
    tree, inbox = _source(tmp_path)
    theirs = tmp_path / "theirs"
    theirs.write_text("Subject: theirs\n\nnot for alice\n")
    os.chown(theirs, 65534, 65534)
    os.link(theirs, inbox / "cur" / "1700000077.M7P7.old:2,S")
    home = Home(tmp_path / "home")
    result = _import(home, tree)
    assert result.returncode == 2 and "a second name of a file its folder's owner does not own" in result.stderr
    assert len(_status(home, "alice@example.test")[2]) == 3
