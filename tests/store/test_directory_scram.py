"""SCRAM-SHA-256 keys in the directory: set with the password, added at the next
login for older users, and usable by a real SCRAM client (scramp) end to end."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import scramp
from argon2 import PasswordHasher

from hatoba.proto.sasl import Challenge, NeedKeys, Verified
from hatoba.proto.scram import unknown_user_keys, derive_scram_keys, SCRAM_ITERATIONS, ScramServer
from hatoba.store.directory import Directory

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
ALICE = "Alice@Example.test"
PW = "correct horse"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "directory.sqlite3"


@pytest.fixture
def db(db_path: Path):
    with Directory(db_path, hasher=FAST) as directory:
        directory.add_domain("example.test")
        directory.add_user(ALICE, PW)
        yield directory


def stored(db_path: Path, key: str = "alice@example.test") -> str | None:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT scram_sha256 FROM users WHERE address_key = ?", (key,)).fetchone()[0]


def forget_keys(db_path: Path) -> None:
    """Make alice a user from before SCRAM."""
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE users SET scram_sha256 = NULL")


def scramp_login(db: Directory, login: str, password: str) -> Verified:
    """One SCRAM-SHA-256 exchange: scramp client, hatoba server, keys from the directory."""
    client = scramp.ScramClient(["SCRAM-SHA-256"], login, password)
    server = ScramServer()
    need = server.start(client.get_client_first().encode())
    assert isinstance(need, NeedKeys)
    found = db.scram_keys(need.username)
    challenge = server.keys(unknown_user_keys(need.username, b"k" * 32) if found is None else found[1])
    assert isinstance(challenge, Challenge)
    client.set_server_first(challenge.data.decode())
    result = server.step(client.get_client_final().encode())
    if isinstance(result, Challenge):
        client.set_server_final(result.data.decode())
        result = server.step(b"")
    assert isinstance(result, Verified)
    return result


def test_add_user_stores_keys_in_the_agreed_format(db: Directory, db_path: Path) -> None:
    value = stored(db_path)
    assert value is not None and PW not in value
    iterations, salt, stored_key, server_key = value.split("$")
    assert iterations == str(SCRAM_ITERATIONS) == "4096"
    found = db.scram_keys("alice@example.test")
    assert found is not None
    key, keys = found
    assert key == "alice@example.test"
    assert len(keys.salt) == 16
    assert keys == derive_scram_keys(PW, keys.salt, 4096)


def test_every_user_gets_its_own_salt(db: Directory) -> None:
    db.add_user("bob@example.test", PW)
    alice, bob = db.scram_keys(ALICE), db.scram_keys("bob@example.test")
    assert alice is not None and bob is not None
    assert alice[1].salt != bob[1].salt and alice[1].stored_key != bob[1].stored_key


def test_set_password_replaces_the_keys(db: Directory) -> None:
    before = db.scram_keys(ALICE)
    db.set_password("alice@example.test", "battery staple")
    after = db.scram_keys(ALICE)
    assert before is not None and after is not None and before[1] != after[1]
    assert after[1] == derive_scram_keys("battery staple", after[1].salt, after[1].iterations)
    assert scramp_login(db, "alice@example.test", "battery staple").ok
    assert not scramp_login(db, "alice@example.test", PW).ok


def test_keys_are_made_from_the_normalised_password(db: Directory) -> None:
    # check_password stores NFC; a client typing the decomposed form logs in by either path.
    db.add_user("carol@example.test", "pa\u0308sswo\u0308rd-1")
    assert db.authenticate("carol@example.test", "pässwörd-1") == "carol@example.test"
    assert scramp_login(db, "carol@example.test", "pässwörd-1").ok
    assert scramp_login(db, "carol@example.test", "pa\u0308sswo\u0308rd-1").ok


def test_scram_keys_for_unknown_malformed_and_keyless(db: Directory, db_path: Path) -> None:
    assert db.scram_keys("nobody@example.test") is None
    assert db.scram_keys("not an address") is None
    assert db.scram_keys("") is None
    forget_keys(db_path)
    assert db.scram_keys(ALICE) is None


def test_damaged_keys_read_as_none(db: Directory, db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE users SET scram_sha256 = '4096$bad$base64$here'")
    assert db.scram_keys(ALICE) is None


def test_authenticate_returns_the_canonical_key_for_any_spelling(db: Directory) -> None:
    for spelling in ("alice@example.test", "Alice@Example.test", "ALICE@EXAMPLE.TEST"):
        assert db.authenticate(spelling, PW) == "alice@example.test"
        assert db.verify_password(spelling, PW)
    assert db.authenticate("alice@example.test", "wrong horse") is None
    assert db.authenticate("nobody@example.test", PW) is None
    assert db.authenticate("not an address", PW) is None
    assert not db.verify_password("alice@example.test", "wrong horse")


def test_keys_are_added_at_the_first_successful_login(db: Directory, db_path: Path) -> None:
    forget_keys(db_path)
    assert not scramp_login(db, ALICE, PW).ok  # no keys yet: SCRAM cannot work
    assert db.authenticate("alice@example.test", "wrong horse") is None
    assert stored(db_path) is None  # a failed login adds nothing
    assert db.authenticate("ALICE@example.test", PW) == "alice@example.test"
    value = stored(db_path)
    assert value is not None
    assert scramp_login(db, ALICE, PW) == Verified("", ALICE, True)
    # Later logins leave the keys alone.
    assert db.authenticate(ALICE, PW) == "alice@example.test"
    assert stored(db_path) == value


def test_keys_are_not_added_when_the_password_changed_meanwhile(db: Directory, db_path: Path) -> None:
    forget_keys(db_path)
    old_hash = db._conn().execute("SELECT password_hash FROM users").fetchone()[0]
    db.set_password(ALICE, "battery staple")
    forget_keys(db_path)
    # A login verified against the old hash must not store keys for the old password.
    db._add_scram("alice@example.test", old_hash, PW)
    assert stored(db_path) is None


def test_keys_are_added_with_a_rehash_and_with_the_login_cache(db_path: Path) -> None:
    with Directory(db_path, hasher=FAST) as old:
        old.add_domain("example.test")
        old.add_user(ALICE, PW)
    forget_keys(db_path)
    stronger = PasswordHasher(time_cost=2, memory_cost=1024, parallelism=1)
    with Directory(db_path, hasher=stronger) as db:
        db.login_cache_seconds = 60
        assert db.authenticate(ALICE, PW) == "alice@example.test"  # rehash and keys at once
        assert stored(db_path) is not None
        assert stronger.check_needs_rehash(db._conn().execute("SELECT password_hash FROM users").fetchone()[0]) is False
        for _ in range(3):  # the cache answers; still the canonical key
            assert db.authenticate("alice@EXAMPLE.test", PW) == "alice@example.test"
        assert scramp_login(db, ALICE, PW).ok


def test_scramp_end_to_end_for_known_unknown_and_wrong(db: Directory) -> None:
    assert scramp_login(db, "alice@example.test", PW) == Verified("", "alice@example.test", True)
    assert scramp_login(db, "alice@example.test", "wrong horse").ok is False
    assert scramp_login(db, "nobody@example.test", PW).ok is False
