"""The login throttle's SQLite state: rows, known pairs, the pair key, pruning, and its errors."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from hatoba.config.schema import AuthConfig
from hatoba.policy.auth_throttle import ScopeKey, ScopeRow, ThrottleStore, limits_from
from hatoba.store.directory import Directory
from hatoba.store.loginstate import KEY_FILE, LoginState, LoginStateError, _load_or_create_key

PAIR = ScopeKey("pair", "192.0.2.7", "alice@example.test")
ADDRESS = ScopeKey("address", "192.0.2.7", "")
ACCOUNT = ScopeKey("account", "", "alice@example.test")
# Failures drained an hour per scope, as the throttle passes them to prune().
RATES = {scope: limit.per_hour for scope, limit in limits_from(AuthConfig()).items()}


def drained_in(seconds: float, scope: str) -> float:
    """The level that `seconds` at the scope's rate drains exactly (the arithmetic prune's SQL does)."""
    return seconds * RATES[scope] / 3600.0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "directory.sqlite3"
    Directory(path).close()
    return path


@pytest.fixture
def state(db_path: Path):
    with LoginState(db_path) as state:
        yield state


def test_implements_the_throttle_store_protocol(state: LoginState) -> None:
    store: ThrottleStore = state  # checked by mypy; the loop keeps the names honest
    for name in ("load", "update", "delete", "is_known", "remember", "rows", "release", "prune"):
        assert callable(getattr(store, name))


def test_rows_round_trip_and_survive_reopening(db_path: Path, state: LoginState) -> None:
    assert state.load([PAIR, ADDRESS]) == {}
    state.update([PAIR, ADDRESS], lambda rows: [ScopeRow(PAIR, 3.5, 1000.0, 2, 1080.0),
                                                ScopeRow(ADDRESS, 1.0, 1000.0)])
    state.update([PAIR], lambda rows: [ScopeRow(PAIR, rows[PAIR].level + 1, 1001.0, 2, 1080.0)])
    with LoginState(db_path) as again:
        assert again.load([PAIR, ADDRESS, ACCOUNT]) == {
            PAIR: ScopeRow(PAIR, 4.5, 1001.0, 2, 1080.0),
            ADDRESS: ScopeRow(ADDRESS, 1.0, 1000.0),
        }
        assert {r.key: r for r in again.rows("192.0.2.7")} == {
            PAIR: ScopeRow(PAIR, 4.5, 1001.0, 2, 1080.0),
            ADDRESS: ScopeRow(ADDRESS, 1.0, 1000.0),
        }
        assert again.rows("alice@example.test") == [ScopeRow(PAIR, 4.5, 1001.0, 2, 1080.0)]
        assert again.rows("192.0.2.70") == []


def test_a_failing_change_stores_nothing(state: LoginState) -> None:
    def broken(rows: dict[ScopeKey, ScopeRow]) -> list[ScopeRow]:
        raise ValueError("a bug in the caller")

    with pytest.raises(ValueError):
        state.update([PAIR], broken)
    assert state.rows() == []
    state.update([PAIR], lambda rows: [ScopeRow(PAIR, 1.0, 1000.0)])  # the connection is usable again
    assert len(state.rows()) == 1


def test_delete_and_release(state: LoginState) -> None:
    other = ScopeKey("pair", "192.0.2.8", "alice@example.test")
    rows = [ScopeRow(k, 1.0, 1000.0) for k in (PAIR, ADDRESS, ACCOUNT, other)]
    state.update([], lambda _: rows)
    state.delete([PAIR])
    assert {r.key for r in state.rows()} == {ADDRESS, ACCOUNT, other}
    assert state.release("ALICE@example.test") == 0  # literal: the throttle folds case, not the store
    assert state.release("alice@example.test") == 2
    assert state.release("192.0.2.7") == 1
    assert state.rows() == []


def test_prune_drops_drained_rows_whose_block_is_over(state: LoginState) -> None:
    now = 10_000.0
    bob = ScopeKey("pair", "192.0.2.8", "bob@example.test")
    assert RATES["account"] > RATES["pair"]  # so the account row below is gone only at its own rate
    rows = [
        ScopeRow(PAIR, drained_in(80.0, "pair"), now - 80.0),  # 80 s drain it exactly: gone
        ScopeRow(bob, drained_in(80.0, "pair"), now - 79.0),  # not quite: kept
        ScopeRow(ADDRESS, 0.0, now - 1.0, 0, now + 5),  # drained but still blocked: kept
        ScopeRow(ACCOUNT, drained_in(40.0, "account"), now - 40.0),  # 40 s at the account's rate drain it: gone
    ]
    state.update([], lambda _: rows)
    state.remember("192.0.2.7", "alice@example.test", now - 31 * 86400)
    state.remember("192.0.2.9", "alice@example.test", now - 29 * 86400)
    state.prune(now, RATES, known_before=now - 30 * 86400)
    assert {r.key for r in state.rows()} == {bob, ADDRESS}
    assert not state.is_known("192.0.2.7", "alice@example.test", 0.0)  # purged
    assert state.is_known("192.0.2.9", "alice@example.test", now - 30 * 86400)


def test_known_pairs_are_keyed_hashes_under_a_private_key(db_path: Path, state: LoginState) -> None:
    key_path = db_path.parent / KEY_FILE
    assert not key_path.exists()  # made at the first question about pairs, not on open
    assert not state.is_known("192.0.2.7", "alice@example.test", 0.0)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600 and len(key_path.read_bytes()) == 32
    state.remember("192.0.2.7", "alice@example.test", 5000.0)
    assert state.is_known("192.0.2.7", "alice@example.test", 5000.0)
    assert not state.is_known("192.0.2.7", "alice@example.test", 5000.1)  # seen too long ago
    assert not state.is_known("192.0.2.7", "bob@example.test", 0.0)
    assert not state.is_known("192.0.2.70", "alice@example.test", 0.0)
    raw = sqlite3.connect(db_path)
    try:
        [(pair, last)] = raw.execute("SELECT pair, last FROM login_known").fetchall()
    finally:
        raw.close()
    assert len(pair) == 32 and b"alice" not in pair and last == 5000.0
    with LoginState(db_path) as again:  # the same key next time
        assert again.is_known("192.0.2.7", "alice@example.test", 0.0)
    key_path.unlink()
    with LoginState(db_path) as again:  # a new key forgets the pairs, nothing worse
        assert not again.is_known("192.0.2.7", "alice@example.test", 0.0)


def test_racing_processes_agree_on_one_key(tmp_path: Path) -> None:
    key_path = tmp_path / KEY_FILE
    barrier = threading.Barrier(16)
    keys: list[bytes] = []

    def make() -> None:
        barrier.wait()
        keys.append(_load_or_create_key(key_path))

    threads = [threading.Thread(target=make) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 16 and set(keys) == {key_path.read_bytes()}
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temporary file left


def test_a_damaged_key_is_one_clear_error(db_path: Path, state: LoginState) -> None:
    (db_path.parent / KEY_FILE).write_bytes(b"short")
    with pytest.raises(LoginStateError, match="is not a login pair key .5 bytes, not 32.; delete it"):
        state.is_known("192.0.2.7", "alice@example.test", 0.0)


def test_each_thread_has_its_own_connection_with_cheap_syncs(state: LoginState) -> None:
    seen: list[tuple[int, str, int]] = []

    def look() -> None:
        conn = state._conn()
        seen.append((id(conn), *conn.execute("PRAGMA journal_mode").fetchone(),
                     *conn.execute("PRAGMA synchronous").fetchone()))

    threads = [threading.Thread(target=look) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({conn for conn, _, _ in seen}) == 3
    assert {(mode, sync) for _, mode, sync in seen} == {("wal", 1)}  # 1 = NORMAL


def test_a_missing_database_is_one_clear_error_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "directory.sqlite3"
    with pytest.raises(LoginStateError, match="does not exist; create it with `hatoba init`"):
        LoginState(path)
    assert not path.exists()


def test_a_database_without_the_tables_says_how_to_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "directory.sqlite3"
    sqlite3.connect(path).close()
    with pytest.raises(LoginStateError, match="has no login throttle tables yet; open it once with this hatoba"):
        LoginState(path)
