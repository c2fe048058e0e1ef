"""Backups and restores of an instance: what they hold, what they refuse, and copies made while mail moves."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import sqlite3
import threading
import typing
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from support.harness import PASSWORDS, make_home

from hatoba.config.schema import Config
from hatoba.queue.spool import Envelope, Spool
from hatoba.store.backup import BACKED_UP_KEYS, LEFT_OUT_KEYS, make_backup
from hatoba.store.directory import SCHEMA_VERSION, Directory
from hatoba.store.folder_tree import MailboxStore
from hatoba.store.maildir import MaildirStore
from hatoba.store.maildrop_lock import LOCK_NAME, MaildropLock
from hatoba.store.manifest import NAME, read_manifest
from hatoba.store.restore import restore_backup
from hatoba.store.secretbox import SecretBox
from hatoba.store.snapshot import BackupError, Copier, copy_database, copy_mail

ALICE = "alice@example.test"
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def message(n: int, size: int = 200) -> bytes:
    return (f"Message-ID: <m{n}@backup.test>\r\nSubject: {n}\r\n\r\n" + "x" * size + "\r\n").encode()


def deliver(config: Config, address: str, n: int) -> Path:
    src = config.paths.data_dir / f"in-{n}.eml"
    src.write_bytes(message(n))
    try:
        return MaildirStore(config.paths.mail_dir, hostname="mail.example.test").deliver(address, src).path
    finally:
        src.unlink()


def message_ids(maildir_tree: Path) -> list[str]:
    """Message-IDs of every message file under a tree (new/ and cur/ of every folder), with repeats."""
    found = []
    for folder, _, names in os.walk(maildir_tree):
        if Path(folder).name in ("new", "cur"):
            for name in names:
                head = Path(folder, name).read_bytes().split(b"\n", 1)[0]
                found.append(head.split(b" ", 1)[1].strip().decode())
    return found


@pytest.fixture
def home(tmp_path: Path):
    return make_home(tmp_path / "src")


@pytest.fixture
def config(home) -> Config:
    return home.config()


def filled(config: Config) -> dict[str, object]:
    """Mail in INBOX (new/ and, after a SELECT, cur/ with flags), a folder, a queued message, an APOP secret."""
    for n in range(6):
        deliver(config, ALICE, n)
    store = MailboxStore(config.paths.mail_dir, hostname="mail.example.test")
    user = store.for_user(ALICE)
    user.create("Archive")
    inbox = user.open("INBOX")
    inbox.sync()
    uids = [r.uid for r in inbox.messages()]
    inbox.store_flags(uids[:2], "+", ["\\Seen", "$Important"])
    inbox.move(uids[2:3], user.open("Archive"))
    deliver(config, ALICE, 6)  # stays in new/
    spool = Spool(config.paths.queue_dir)
    qid = spool.inject(Envelope(mail_from="", recipients=("bob@example.test",), received_at=1700000000.0), message(99))
    box = SecretBox(config.paths.secrets_key)
    with Directory(config.paths.directory_db) as db:
        db.set_apop_secret("bob@example.test", box.seal("apop-secret-1"))
    return {"qid": qid, "uidvalidity": user.status("INBOX").uidvalidity, "uids": uids}


def test_round_trip_keeps_every_file_its_mode_and_time(home, config: Config, tmp_path: Path) -> None:
    before = filled(config)
    made = make_backup(config, tmp_path / "backup")
    assert made.manifest.directory == {"schema_version": SCHEMA_VERSION, "domains": 1, "users": 3, "aliases": 4}
    assert made.manifest.tallies["data/mail"]["messages"] == 7
    assert made.manifest.tallies["data/queue"]["messages"] == 1
    assert made.links >= 8  # every message linked, none copied (one file system)
    assert (tmp_path / "backup").stat().st_mode & 0o777 == 0o700
    target = tmp_path / "elsewhere" / "hatoba.toml"
    done = restore_backup(tmp_path / "backup", target)
    assert done.data_dir == tmp_path / "elsewhere" / "data"
    assert done.renewed == 2  # INBOX and Archive had UID lists
    old_root, new_root = home.root, tmp_path / "elsewhere"
    for path in sorted(old_root.rglob("*")):
        rel = path.relative_to(old_root)
        if not path.is_file() or rel.name.endswith((".lock", "-wal", "-shm")):
            continue
        if rel.name in ("hatoba-uidlist", "hatoba-mailboxes.json"):
            continue  # rewritten with the new UIDVALIDITY
        twin = new_root / rel
        if rel.name == "directory.sqlite3":
            continue  # a fresh copy, compared by content below
        assert twin.is_file(), f"{rel} was not restored"
        assert twin.read_bytes() == path.read_bytes(), rel
        assert twin.stat().st_mode == path.stat().st_mode, rel
        assert twin.stat().st_mtime_ns == path.stat().st_mtime_ns, rel  # a message's mtime is its internal date
    assert (new_root / "tls" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (new_root / "data" / "directory.sqlite3").stat().st_mode & 0o777 == 0o600
    restored = dataclasses.replace(config, paths=dataclasses.replace(config.paths, data_dir=new_root / "data"))
    with Directory(restored.paths.directory_db, hasher=FAST) as db:
        assert db.list_users() == sorted(PASSWORDS)
        assert db.authenticate(ALICE, PASSWORDS[ALICE]) == ALICE
        assert SecretBox(restored.paths.secrets_key).open(db.apop_secret("bob@example.test")) == "apop-secret-1"
    assert Spool(restored.paths.queue_dir).list_ids() == [before["qid"]]
    user = MailboxStore(restored.paths.mail_dir, hostname="mail.example.test").for_user(ALICE)
    assert user.status("INBOX").uidvalidity > typing.cast(int, before["uidvalidity"])
    inbox = user.open("INBOX")
    inbox.sync()
    records = {r.uid: r for r in inbox.messages()}
    uids = typing.cast(list[int], before["uids"])
    assert {"\\Seen", "$Important"} <= records[uids[0]].flags  # UIDs and flags kept under the new UIDVALIDITY
    assert uids[2] not in records and len(user.open("Archive").messages()) == 1


def test_keep_uidvalidity(config: Config, tmp_path: Path) -> None:
    before = filled(config)
    make_backup(config, tmp_path / "backup")
    done = restore_backup(tmp_path / "backup", tmp_path / "new" / "hatoba.toml", keep_uidvalidity=True)
    assert done.renewed is None
    user = MailboxStore(done.data_dir / "mail", hostname="x").for_user(ALICE)
    assert user.status("INBOX").uidvalidity == before["uidvalidity"]


def test_a_later_folder_gets_a_uidvalidity_above_the_renewed_ones(config: Config, tmp_path: Path) -> None:
    filled(config)
    make_backup(config, tmp_path / "backup")
    done = restore_backup(tmp_path / "backup", tmp_path / "new" / "hatoba.toml")
    user = MailboxStore(done.data_dir / "mail", hostname="x").for_user(ALICE)
    renewed = {user.status(n).uidvalidity for n in ("INBOX", "Archive")}
    user.create("Later")
    assert user.status("Later").uidvalidity > max(renewed)


def test_every_config_key_naming_a_file_is_decided() -> None:
    # A new key naming a file must be taken by the backup (store/backup.py
    # instance_files) or left out on purpose: both lists are there.
    from hatoba.config import schema

    def keys(cls: type, prefix: str) -> set[str]:
        found = set()
        hints = typing.get_type_hints(cls, vars(schema))
        for f in dataclasses.fields(cls):
            hint = str(hints[f.name])
            nested = {"TlsConfig": schema.TlsConfig, "DomainTls": schema.DomainTls}
            if dataclasses.is_dataclass(hints[f.name]):
                found |= keys(hints[f.name], f"{prefix}{f.name}.")
            elif "DomainTls" in hint:
                found |= keys(nested["DomainTls"], f"{prefix}{f.name}.")
            elif "Path" in hint or f.name.endswith("_file"):
                found.add(prefix + f.name)
        return found

    assert keys(schema.Config, "") - {"config_path"} == BACKED_UP_KEYS | LEFT_OUT_KEYS


# -- refusals ------------------------------------------------------------------------------


def test_refuses_a_target_that_is_not_empty_or_inside_what_it_copies(config: Config, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(BackupError, match=r"is not empty; a backup goes into a new or empty folder$"):
        make_backup(config, tmp_path / "full")
    for inside in (config.paths.data_dir / "backup", config.paths.mail_dir, config.tls.key.parent / "b"):
        with pytest.raises(BackupError, match=r"which the backup copies: it would copy itself"):
            make_backup(config, inside)
    assert not (config.paths.data_dir / "backup").exists()


def test_restore_refuses_an_existing_instance_and_force_moves_it_aside(home, config: Config, tmp_path: Path) -> None:
    filled(config)
    make_backup(config, tmp_path / "backup")
    other = make_home(tmp_path / "other")
    marker = other.root / "data" / "mine"
    marker.write_text("kept")
    with pytest.raises(BackupError, match=r"hatoba.toml already exists; .* add --force"):
        restore_backup(tmp_path / "backup", other.config_path)
    done = restore_backup(tmp_path / "backup", other.config_path, force=True)
    asides = dict(done.moved_aside)
    assert (asides[other.root / "data"] / "mine").read_text() == "kept"
    assert asides[other.config_path].is_file() and (other.root / "data" / "directory.sqlite3").is_file()


def test_a_failed_restore_takes_back_what_it_did(config: Config, tmp_path: Path) -> None:
    filled(config)
    make_backup(config, tmp_path / "backup")
    # A database that passes the manifest's checks but is not a database: the restore
    # fails after writing the data folder.
    db = tmp_path / "backup" / "data" / "directory.sqlite3"
    db.write_bytes(b"not a database" * 100)
    manifest = json.loads((tmp_path / "backup" / NAME).read_text())
    from hatoba.store.manifest import sha256_of

    manifest["files"]["data/directory.sqlite3"].update(size=db.stat().st_size, sha256=sha256_of(db))
    (tmp_path / "backup" / NAME).write_text(json.dumps(manifest))
    other = make_home(tmp_path / "other")

    def listing() -> list[Path]:
        # SQLite's -wal and -shm come and go with the connections make_home left to the
        # garbage collector: they are not the restore's doing.
        return sorted(p.relative_to(other.root) for p in other.root.rglob("*")
                      if not p.name.endswith(("-wal", "-shm")))

    before = listing()
    with pytest.raises(BackupError, match=r"^the restored directory database does not open"):
        restore_backup(tmp_path / "backup", other.config_path, force=True)
    assert listing() == before
    with pytest.raises(BackupError):
        restore_backup(tmp_path / "backup", tmp_path / "fresh" / "hatoba.toml")
    assert not (tmp_path / "fresh" / "hatoba.toml").exists() and not (tmp_path / "fresh" / "data").exists()


@pytest.mark.parametrize("damage", ["no-manifest", "truncated-message", "missing-message", "changed-key",
                                    "missing-state", "bad-manifest", "escaping-manifest"])
def test_restore_refuses_a_damaged_backup_and_writes_nothing(config: Config, tmp_path: Path, damage: str) -> None:
    filled(config)
    backup = tmp_path / "backup"
    make_backup(config, backup)
    messages = sorted(p for p in (backup / "data" / "mail").rglob("*") if p.parent.name in ("new", "cur"))
    if damage == "no-manifest":
        (backup / NAME).unlink()
        expected = "has no manifest.json: not a hatoba backup, or one that did not finish"
    elif damage == "truncated-message":
        data = messages[0].read_bytes()
        messages[0].unlink()  # a new inode: the source's link stays whole
        messages[0].write_bytes(data[:10])
        expected = "has 10 bytes, its name says"
    elif damage == "missing-message":
        messages[-1].unlink()
        expected = r"holds \d+ files .* the manifest says \d+ .* incomplete or damaged"
    elif damage == "changed-key":
        key = backup / "instance" / "tls" / "server.key"
        key.write_bytes(key.read_bytes().replace(b"A", b"B", 1))
        expected = "server.key is not the file that was backed up"
    elif damage == "missing-state":
        (backup / "data" / "secrets.key").unlink()
        expected = "secrets.key is missing; the backup is incomplete"
    elif damage == "bad-manifest":
        (backup / NAME).write_text("{not json")
        expected = "cannot be read .* the backup is damaged"
    else:
        manifest = json.loads((backup / NAME).read_text())
        manifest["files"]["instance/../../etc/passwd"] = {"size": 1, "mode": "0644", "sha256": ""}
        (backup / NAME).write_text(json.dumps(manifest))
        expected = "is damaged .*not a place in a backup"
    target = tmp_path / "new" / "hatoba.toml"
    with pytest.raises(BackupError, match=expected) as raised:
        restore_backup(backup, target)
    assert "\n" not in str(raised.value)
    assert not target.parent.exists()


def test_pop3_lock_files_are_left_out(config: Config, tmp_path: Path) -> None:
    """A POP3 session's lock (held or not) is no mail: the backup skips it, the restore has none."""
    filled(config)
    store = MaildirStore(config.paths.mail_dir, hostname="mail.example.test")
    held = MaildropLock(store.maildir(ALICE))
    assert held.acquire()
    idle = MaildropLock(store.maildir("bob@example.test"))  # bob has no mail: his folder holds the lock only
    assert idle.acquire()
    idle.release()
    try:
        made = make_backup(config, tmp_path / "backup")
    finally:
        held.release()
    assert made.manifest.tallies["data/mail"]["messages"] == 7
    done = restore_backup(tmp_path / "backup", tmp_path / "new" / "hatoba.toml")
    for tree in (tmp_path / "backup", done.data_dir):
        assert not [p for p in tree.rglob("*") if p.name == LOCK_NAME]


def test_restore_refuses_a_backup_from_a_newer_schema(config: Config, tmp_path: Path) -> None:
    make_backup(config, tmp_path / "backup")
    manifest = json.loads((tmp_path / "backup" / NAME).read_text())
    manifest["directory"]["schema_version"] = 99
    (tmp_path / "backup" / NAME).write_text(json.dumps(manifest))
    with pytest.raises(BackupError, match=rf"schema 99\) is newer than this hatoba knows \({SCHEMA_VERSION}\)"):
        restore_backup(tmp_path / "backup", tmp_path / "new" / "hatoba.toml")


def test_restore_of_an_older_schema_migrates_it(config: Config, tmp_path: Path) -> None:
    make_backup(config, tmp_path / "backup")
    db = tmp_path / "backup" / "data" / "directory.sqlite3"
    db.unlink()
    conn = sqlite3.connect(db)
    conn.executescript((Path(__file__).parent / "schemas" / "directory-v1.sql").read_text())
    conn.close()
    manifest = json.loads((tmp_path / "backup" / NAME).read_text())
    from hatoba.store.manifest import sha256_of

    manifest["files"]["data/directory.sqlite3"].update(size=db.stat().st_size, sha256=sha256_of(db))
    manifest["directory"]["schema_version"] = 1
    (tmp_path / "backup" / NAME).write_text(json.dumps(manifest))
    done = restore_backup(tmp_path / "backup", tmp_path / "new" / "hatoba.toml")
    conn = sqlite3.connect(done.data_dir / "directory.sqlite3")
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()
    with Directory(done.data_dir / "directory.sqlite3", hasher=FAST) as db_:
        assert db_.authenticate(ALICE, "alice-password-1") == ALICE


# -- copies made while the server changes things -----------------------------------------


def _racing(work: typing.Callable[[], None], copies: int, copy: typing.Callable[[int], None]) -> None:
    """Run `work` in a thread over and over while `copy(i)` runs `copies` times."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            while not stop.is_set():
                work()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        for i in range(copies):
            copy(i)
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors


def test_renames_during_the_copy_lose_no_message_and_copy_none_twice(config: Config, tmp_path: Path) -> None:
    count = 300
    for n in range(count):
        deliver(config, ALICE, n)
    user = MailboxStore(config.paths.mail_dir, hostname="mail.example.test").for_user(ALICE)
    inbox = user.open("INBOX")
    inbox.sync()  # half of them move to cur/ now, the rest while we copy
    uids = [r.uid for r in inbox.messages()]
    rng = random.Random(7)
    for n in range(count, count * 2):
        deliver(config, ALICE, n)
    moved = threading.Event()

    def rename() -> None:
        if not moved.is_set():
            inbox.sync()  # new/ -> cur/
            moved.set()
        inbox.store_flags(rng.sample(uids, 20), rng.choice("+-"), [rng.choice(["\\Seen", "\\Flagged", "$Label"])])

    def copy(i: int) -> None:
        target = tmp_path / f"copy{i}"
        copy_mail(config.paths.mail_dir, target, Copier())
        ids = message_ids(target)
        assert len(ids) == len(set(ids)), f"copy {i}: a message twice"
        assert len(ids) == count * 2, f"copy {i}: {count * 2 - len(ids)} messages lost"

    _racing(rename, 6, copy)


def test_expunges_and_moves_during_the_copy(config: Config, tmp_path: Path) -> None:
    count = 300
    for n in range(count):
        deliver(config, ALICE, n)
    user = MailboxStore(config.paths.mail_dir, hostname="mail.example.test").for_user(ALICE)
    user.create("Archive")
    inbox, archive = user.open("INBOX"), user.open("Archive")
    inbox.sync()
    records = inbox.messages()
    ids_of = {r.uid: f"<m{i}@backup.test>" for i, r in enumerate(records)}
    doomed = [r.uid for r in records[::4]]  # expunged while we copy
    forward = [r.uid for r in records[1::4]]  # moved INBOX -> Archive while we copy
    inbox.store_flags(doomed, "+", ["\\Deleted"])
    # Moved to Archive now and back to INBOX while we copy: against the order folders are copied in.
    back = [new for _, new in inbox.move([r.uid for r in records[2::4]], archive)]
    archive.sync()
    kept = {ids_of[u] for u in ids_of if u not in doomed}
    rng = random.Random(3)
    pending = [("expunge", u) for u in doomed] + [("forward", u) for u in forward]
    rng.shuffle(pending)
    pending += [("back", u) for u in back]  # first: the moves a single pass would miss

    def change() -> None:
        if not pending:
            return
        what, uid = pending.pop()
        if what == "expunge":
            inbox.expunge([uid])
        elif what == "forward":
            inbox.move([uid], archive)
        else:
            archive.move([uid], inbox)

    def copy(i: int) -> None:
        target = tmp_path / f"copy{i}"
        copy_mail(config.paths.mail_dir, target, Copier())
        missing = kept - set(message_ids(target))
        assert not missing, f"copy {i}: lost {sorted(missing)[:5]}"

    _racing(change, 6, copy)


def test_database_copy_is_consistent_while_users_are_added(config: Config, tmp_path: Path) -> None:
    added = 0
    db = Directory(config.paths.directory_db, hasher=FAST)

    def add() -> None:
        nonlocal added
        db.add_user(f"u{added}@example.test", "password-123")
        added += 1

    def copy(i: int) -> None:
        facts = copy_database(config.paths.directory_db, tmp_path / f"d{i}.sqlite3")
        assert facts.users >= 3 and facts.schema_version == SCHEMA_VERSION
        conn = sqlite3.connect(tmp_path / f"d{i}.sqlite3")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == facts.users
        conn.close()
        assert not (tmp_path / f"d{i}.sqlite3-wal").exists()

    try:
        _racing(add, 10, copy)
    finally:
        db.close()
    assert added > 0


def test_manifest_round_trip(config: Config, tmp_path: Path) -> None:
    made = make_backup(config, tmp_path / "backup")
    assert read_manifest(tmp_path / "backup") == made.manifest


def test_files_outside_the_config_folder_go_back_to_their_place(home, tmp_path: Path) -> None:
    shared = tmp_path / "shared" / "ca-bundle.pem"
    shared.parent.mkdir()
    shared.write_bytes((home.root / "tls" / "ca.crt").read_bytes())
    text = home.config_path.read_text().replace('ca_file = "tls/ca.crt"', f'ca_file = "{shared}"')
    assert str(shared) in text
    home.config_path.write_text(text)
    config = home.config()
    made = make_backup(config, tmp_path / "backup")
    assert "outside" + str(shared) in made.manifest.files
    # Still there as it was: left alone, not in the way.
    done = restore_backup(tmp_path / "backup", tmp_path / "a" / "hatoba.toml")
    assert done.moved_aside == []
    # Missing: put back where it was.
    shared.unlink()
    restore_backup(tmp_path / "backup", tmp_path / "b" / "hatoba.toml")
    assert shared.read_bytes() == (home.root / "tls" / "ca.crt").read_bytes()
    # Changed since: in the way.
    shared.write_text("another bundle")
    with pytest.raises(BackupError, match=r"ca-bundle.pem already exists"):
        restore_backup(tmp_path / "backup", tmp_path / "c" / "hatoba.toml")
    assert not (tmp_path / "c").exists()
