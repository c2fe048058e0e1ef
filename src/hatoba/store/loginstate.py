"""The login throttle's memory: its tables in the directory database.

Implements hatoba.policy.auth_throttle.ThrottleStore. The tables
login_throttle and login_known are made by the directory's migrations
(store/directory.py); this module opens its own connections to the same
file, so the directory must have been opened once by this version of hatoba
(the server and every CLI command do that first).

Rules:
- One connection per thread (SQLite connections are not shared between
  threads), WAL, BEGIN IMMEDIATE for every write, 10 s busy timeout.
- `PRAGMA synchronous=NORMAL`: a power cut may lose the last few counts of
  failed logins, never corrupt the file. That is worth not paying an fsync per
  login; the directory's own changes keep synchronous=FULL on its connections.
- Known pairs are stored as HMAC-SHA256(key, address NUL account) under a
  32-byte key in `login-pairs.key` beside the database, so the file holds no
  plain record of who logs in from where. Losing the key only forgets which
  pairs were known (their logins are then throttled like new ones).
- The SQL is plain (as in directory.py) so another backend could do the same.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from hatoba.fsutil import fsync_dir, write_all
from hatoba.policy.auth_throttle import ScopeKey, ScopeRow
from hatoba.store.sqltx import ThreadConnections, connect_existing, write_transaction

__all__ = ["KEY_FILE", "LoginState", "LoginStateError"]

KEY_FILE = "login-pairs.key"
KEY_SIZE = 32

_COLUMNS = "scope, address, account, level, updated, strikes, blocked_until"


class LoginStateError(Exception):
    """The throttle's tables or key cannot be used; the message is one line for the operator."""


class LoginState:
    """The throttle rows and known pairs in the directory database at `path`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.key_path = self.path.parent / KEY_FILE
        self._connections = ThreadConnections()
        self._lock = threading.Lock()
        self._key: bytes | None = None
        self._conn()  # say now, not at the first login, when the database cannot be used

    # -- connections and transactions -----------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = self._connections.current()
        if conn is not None:
            return conn
        conn = connect_existing(self.path, ("login_throttle", "login_known"), "login throttle tables", LoginStateError)
        self._connections.add(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with write_transaction(self._conn(), self.path, LoginStateError) as conn:
            yield conn

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise LoginStateError(f"directory database {self.path}: {exc}") from None

    def close(self) -> None:
        """Close every connection this object opened, in any thread."""
        self._connections.close_all()

    def __enter__(self) -> LoginState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- throttle rows ------------------------------------------------------------

    def load(self, keys: Sequence[ScopeKey]) -> dict[ScopeKey, ScopeRow]:
        if not keys:
            return {}
        return _load(self._conn(), keys, self.path)

    def update(
        self, keys: Sequence[ScopeKey], change: Callable[[dict[ScopeKey, ScopeRow]], Iterable[ScopeRow]]
    ) -> None:
        with self._write() as conn:
            rows = _load(conn, keys, self.path)
            conn.executemany(
                f"""INSERT INTO login_throttle ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (scope, address, account) DO UPDATE SET level = excluded.level,
                    updated = excluded.updated, strikes = excluded.strikes, blocked_until = excluded.blocked_until""",
                [(*row.key, row.level, row.updated, row.strikes, row.blocked_until) for row in change(rows)],
            )

    def delete(self, keys: Sequence[ScopeKey]) -> None:
        with self._write() as conn:
            conn.executemany(
                "DELETE FROM login_throttle WHERE scope = ? AND address = ? AND account = ?", [tuple(k) for k in keys]
            )

    def rows(self, subject: str | None = None) -> list[ScopeRow]:
        if subject is None:
            found = self._query(f"SELECT {_COLUMNS} FROM login_throttle")
        else:
            found = self._query(
                f"SELECT {_COLUMNS} FROM login_throttle WHERE address = ? OR account = ?", (subject, subject)
            )
        return [_row(values) for values in found]

    def release(self, subject: str) -> int:
        with self._write() as conn:
            cursor = conn.execute("DELETE FROM login_throttle WHERE address = ? OR account = ?", (subject, subject))
            return cursor.rowcount

    def prune(self, now: float, per_hour: Mapping[str, float], known_before: float) -> None:
        """Delete rows drained to 0 whose block is over, and known pairs last seen before `known_before`."""
        with self._write() as conn:
            conn.execute(
                """DELETE FROM login_throttle WHERE blocked_until <= ? AND level <= (? - updated) *
                   (CASE scope WHEN 'pair' THEN ? WHEN 'address' THEN ? WHEN 'account' THEN ? ELSE 0 END) / 3600.0""",
                (now, now, per_hour.get("pair", 0), per_hour.get("address", 0), per_hour.get("account", 0)),
            )
            conn.execute("DELETE FROM login_known WHERE last < ?", (known_before,))

    # -- known pairs --------------------------------------------------------------

    def is_known(self, address: str, account: str, since: float) -> bool:
        found = self._query("SELECT last FROM login_known WHERE pair = ?", (self._pair(address, account),))
        return bool(found) and float(found[0][0]) >= since  # type: ignore[arg-type]

    def remember(self, address: str, account: str, when: float) -> None:
        pair = self._pair(address, account)
        with self._write() as conn:
            conn.execute(
                """INSERT INTO login_known (pair, last) VALUES (?, ?)
                   ON CONFLICT (pair) DO UPDATE SET last = excluded.last""",
                (pair, when),
            )

    def derived_key(self, label: bytes) -> bytes:
        """A secret of its own for `label`, from the key file: stable across restarts."""
        return hmac.new(self._pair_key(), b"derived\0" + label, hashlib.sha256).digest()

    def _pair(self, address: str, account: str) -> bytes:
        message = f"{address}\0{account}".encode("utf-8", "surrogatepass")
        return hmac.new(self._pair_key(), message, hashlib.sha256).digest()

    def _pair_key(self) -> bytes:
        # Loaded at the first known-pair question, not at open: `hatoba auth`
        # (maybe run as root) never needs it, so never creates it as root.
        if self._key is None:
            with self._lock:
                if self._key is None:
                    self._key = _load_or_create_key(self.key_path)
        return self._key


def _load_or_create_key(path: Path) -> bytes:
    """The 32-byte key at `path`, made (0600) if missing; racing processes end with the same key."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        # Write a whole key under a temporary name, then link it into place:
        # link never replaces, so whoever links first wins and everyone reads
        # that key; no one ever sees a partly written file.
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.fchmod(fd, 0o600)  # whatever the umask
                write_all(fd, secrets.token_bytes(KEY_SIZE))
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            fsync_dir(path.parent)
            key = path.read_bytes()
        except OSError as exc:
            raise LoginStateError(f"cannot create the login pair key {path}: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise LoginStateError(f"cannot read the login pair key {path}: {exc.strerror or exc}") from None
    if len(key) != KEY_SIZE:
        raise LoginStateError(
            f"{path} is not a login pair key ({len(key)} bytes, not {KEY_SIZE}); delete it and hatoba makes "
            "a new one (logins from known places are then throttled like new ones for a while)"
        )
    return key


def _load(conn: sqlite3.Connection, keys: Sequence[ScopeKey], path: Path) -> dict[ScopeKey, ScopeRow]:
    found: dict[ScopeKey, ScopeRow] = {}
    try:
        for key in keys:
            values = conn.execute(
                f"SELECT {_COLUMNS} FROM login_throttle WHERE scope = ? AND address = ? AND account = ?", tuple(key)
            ).fetchone()
            if values is not None:
                found[key] = _row(values)
    except sqlite3.Error as exc:
        raise LoginStateError(f"directory database {path}: {exc}") from None
    return found


def _row(values: Sequence[object]) -> ScopeRow:
    scope, address, account, level, updated, strikes, blocked_until = values
    return ScopeRow(
        ScopeKey(str(scope), str(address), str(account)),
        float(level),  # type: ignore[arg-type]
        float(updated),  # type: ignore[arg-type]
        int(strikes),  # type: ignore[call-overload]
        float(blocked_until),  # type: ignore[arg-type]
    )


