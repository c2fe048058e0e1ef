"""Web admin sessions in the directory database, so they outlive a restart and
any process serving https sees them.

Rules:
- The cookie carries a random token (256 bits); only its SHA-256 is stored,
  so a copy of the database opens no session.
- A session ends after IDLE seconds without a request, after LIFETIME in
  all, at logout, when its user's password changes and when the user is
  removed (store/directory.py); an ended session's cookie is refused.
- A new session at every login (never one the client brought: no fixation);
  an account has at most MAX_PER_ACCOUNT, the oldest end first.
- `verified` is False until the second factor was given, for users who have
  one: such a session opens only the second-factor page.
Blocking SQLite; callers use threads.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from hatoba.store.api import DirectoryError
from hatoba.store.sqltx import DirectoryTables, write_transaction

__all__ = ["IDLE", "LIFETIME", "WebSession", "WebSessions"]

IDLE = 30 * 60.0
LIFETIME = 12 * 3600.0
TOUCH_EVERY = 60.0  # last_seen is written at most once a minute per session
MAX_PER_ACCOUNT = 20  # browsers logged in at once as one account


@dataclass(frozen=True, slots=True)
class WebSession:
    account: str
    csrf: str
    verified: bool
    created: float


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


class WebSessions(DirectoryTables):
    TABLES = ("web_sessions",)
    WHAT = "web session table"
    ERROR = DirectoryError

    def __init__(self, path, *, clock=time.time) -> None:  # type: ignore[no-untyped-def]
        super().__init__(path)
        self._clock = clock

    def create(self, account: str, *, verified: bool) -> tuple[str, WebSession]:
        """(the cookie's token, the session)."""
        token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), self._clock()
        with write_transaction(self._conn(), self.path, DirectoryError) as conn:
            conn.execute("DELETE FROM web_sessions WHERE last_seen < ? OR created < ?", (now - IDLE, now - LIFETIME))
            conn.execute(
                "INSERT INTO web_sessions (token_hash, account, csrf, created, last_seen, verified) VALUES (?, ?, ?, ?, ?, ?)",
                (_hash(token), account, csrf, now, now, int(verified)),
            )
            # At most MAX_PER_ACCOUNT live sessions per account: the oldest make way.
            conn.execute(
                "DELETE FROM web_sessions WHERE account = ? AND token_hash NOT IN (SELECT token_hash FROM web_sessions "
                "WHERE account = ? ORDER BY created DESC LIMIT ?)", (account, account, MAX_PER_ACCOUNT))
        return token, WebSession(account, csrf, verified, now)

    def find(self, token: str) -> WebSession | None:
        """The live session of a cookie's token, its idle clock restarted; None when there is none."""
        if not token or len(token) > 100:
            return None
        now = self._clock()
        row = self._conn().execute(
            "SELECT account, csrf, created, last_seen, verified FROM web_sessions WHERE token_hash = ?", (_hash(token),)
        ).fetchone()
        if row is None:
            return None
        account, csrf, created, last_seen, verified = row
        if now - last_seen > IDLE or now - created > LIFETIME:
            self.end(token)
            return None
        if now - last_seen > TOUCH_EVERY:
            with write_transaction(self._conn(), self.path, DirectoryError) as conn:
                conn.execute("UPDATE web_sessions SET last_seen = ? WHERE token_hash = ?", (now, _hash(token)))
        return WebSession(str(account), str(csrf), bool(verified), float(created))

    def end(self, token: str) -> None:
        with write_transaction(self._conn(), self.path, DirectoryError) as conn:
            conn.execute("DELETE FROM web_sessions WHERE token_hash = ?", (_hash(token),))

    def end_all(self, account: str) -> int:
        with write_transaction(self._conn(), self.path, DirectoryError) as conn:
            return int(conn.execute("DELETE FROM web_sessions WHERE account = ?", (account,)).rowcount)
