"""Every earlier schema of the directory database opens with today's hatoba, data intact.

Each tests/store/schemas/directory-vN.sql is the database as hatoba left it at
schema version N, written out by hand rather than built from _MIGRATIONS, so
an edit to a released migration shows here too. A new migration needs a
fixture for the version before it (the coverage test says which).
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from hatoba.store.directory import _MIGRATIONS, Directory

SCHEMAS = Path(__file__).parent / "schemas"
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
CURRENT = len(_MIGRATIONS)


def fixture_versions() -> list[int]:
    return sorted(int(m.group(1)) for p in SCHEMAS.glob("directory-v*.sql")
                  if (m := re.fullmatch(r"directory-v(\d+)\.sql", p.name)))


def build(path: Path, version: int) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript((SCHEMAS / f"directory-v{version}.sql").read_text())
    conn.close()
    return path


def shape(path: Path) -> dict[str, object]:
    """Tables with their columns (name, type, not null, default, key) and indexes: the schema, not its SQL text."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        out: dict[str, object] = {}
        for table in tables:
            columns = [tuple(r[1:]) for r in conn.execute(f"PRAGMA table_info({table})")]
            indexes = sorted(
                (r[1], r[2], tuple(c[2] for c in conn.execute(f"PRAGMA index_info({r[1]})")))
                for r in conn.execute(f"PRAGMA index_list({table})")
            )
            out[table] = (columns, indexes)
        return out
    finally:
        conn.close()


def test_a_fixture_for_every_earlier_version() -> None:
    assert set(range(1, CURRENT)) <= set(fixture_versions()), (
        f"tests/store/schemas needs directory-vN.sql for every N below {CURRENT}"
    )


@pytest.mark.parametrize("version", fixture_versions())
def test_earlier_schema_is_migrated_with_data_intact(tmp_path: Path, version: int) -> None:
    path = build(tmp_path / "directory.sqlite3", version)
    with Directory(path, hasher=FAST) as db:
        assert db.list_domains() == ["example.org", "example.test"]
        assert db.list_users() == ["alice@example.test", "Bob@example.test"]
        assert db.list_aliases() == {
            "@example.org": ["alice@example.test"],
            "all@example.test": ["team@example.test"],
            "forward@example.test": ["someone@elsewhere.example"],
            "postmaster@example.test": ["alice@example.test"],
            "team@example.test": ["alice@example.test", "Bob@example.test"],
        }
        assert set(db.resolve("all@example.test").mailboxes) == {"alice@example.test", "Bob@example.test"}
        assert db.resolve("anyone@example.org").mailboxes == ("alice@example.test",)
        assert db.resolve("forward@example.test").forwards == ("someone@elsewhere.example",)
        # The stored hashes still log in, under either spelling, and give SCRAM keys then.
        assert db.authenticate("ALICE@example.test", "alice-password-1") == "alice@example.test"
        assert db.authenticate("bob@example.test", "bob-password-1") == "bob@example.test"
        assert db.authenticate("bob@example.test", "wrong-password") is None
        assert db.scram_keys("alice@example.test") is not None
        # What later versions added: empty where the old version had no column for it.
        assert db.apop_secret("bob@example.test") == ("sealed-apop-secret" if version >= 2 else None)
        assert db.quota_mb("alice@example.test") == (100 if version >= 3 else None)
        db.add_user("carol@example.test", "carol-password-1")  # and it takes changes
        assert db.user_settings("alice@example.test") == (None, None)  # 8: no language, no second factor
        db.add_app_password("alice@example.test", "phone")
    conn = sqlite3.connect(path)
    if version >= 7:
        assert conn.execute("SELECT account, sender, kind FROM spam_senders").fetchall() == [
            ("alice@example.test", "@spam.example", "block")]
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(CURRENT,)]
    conn.close()
    fresh = tmp_path / "fresh.sqlite3"
    Directory(fresh, hasher=FAST).close()
    assert shape(path) == shape(fresh), "a migrated database differs from a new one"
