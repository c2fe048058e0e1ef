"""POP-before-SMTP windows in the directory database: shared by every server process."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hatoba.policy.pop_before_smtp import PopBeforeSmtp, WindowStoreError
from hatoba.store.directory import Directory
from hatoba.store.relay_logins import RelayLogins


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "directory.sqlite3"
    Directory(path).close()
    return path


def test_a_login_recorded_by_one_instance_is_seen_by_another(db_path: Path) -> None:
    first, second = PopBeforeSmtp.open(5, db_path), PopBeforeSmtp.open(5, db_path)
    try:
        assert second.login_for("192.0.2.1") is None
        first.record_login("192.0.2.1", "bob@example.test")
        assert second.login_for("192.0.2.1") == "bob@example.test"
        second.record_login("192.0.2.1", "alice@example.test")  # the latest login wins
        assert first.login_for("192.0.2.1") == "alice@example.test"
        assert first.login_for("192.0.2.2") is None
    finally:
        first.close()
        second.close()


def test_a_login_recorded_in_another_process_is_seen(db_path: Path) -> None:
    code = (
        "import sys; from hatoba.policy.pop_before_smtp import PopBeforeSmtp\n"
        "p = PopBeforeSmtp.open(5, sys.argv[1]); p.record_login('2001:db8::7', 'carol@example.test'); p.close()\n"
    )
    subprocess.run([sys.executable, "-c", code, str(db_path)], check=True, timeout=30)
    p = PopBeforeSmtp.open(5, db_path)
    try:
        assert p.login_for("2001:db8::7") == "carol@example.test"
    finally:
        p.close()


def test_windows_end_and_are_pruned(db_path: Path) -> None:
    with RelayLogins(db_path) as store:
        now = time.time()
        store.open_window("192.0.2.1", "bob@example.test", now - 1)
        store.open_window("192.0.2.2", "alice@example.test", now + 60)
        p = PopBeforeSmtp(5, store)
        assert p.login_for("192.0.2.1") is None  # ended
        assert p.login_for("192.0.2.2") == "alice@example.test"
        store.prune(now)
        assert store.window("192.0.2.1") is None
        assert store.window("192.0.2.2") == ("alice@example.test", now + 60)


def test_a_database_without_the_table_is_named(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    sqlite3.connect(path).close()
    with pytest.raises(WindowStoreError, match="has no POP-before-SMTP table yet; open it once"):
        PopBeforeSmtp.open(5, path)
    with pytest.raises(WindowStoreError, match="does not exist"):
        PopBeforeSmtp.open(5, tmp_path / "missing.sqlite3")
    assert not (tmp_path / "missing.sqlite3").exists()
