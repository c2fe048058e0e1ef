"""The POP-before-SMTP windows: their table in the directory database.

Implements hatoba.policy.pop_before_smtp.WindowStore. The table
pop_before_smtp is made by the directory's migrations (store/directory.py);
this module opens its own connections to the same file, as the login state
does (store/loginstate.py), so every server process reads the windows every
other one opened.

Rules:
- One connection per thread, WAL, synchronous=NORMAL (a window lost to a
  power cut only means logging in again), BEGIN IMMEDIATE for writes.
- A row is one address's latest window, replaced by the next login; rows
  whose window ended are deleted by prune(). The table holds addresses and
  logins in clear for at most the window's length (plus the prune interval),
  as the mail log does for every login.
"""

from __future__ import annotations

import sqlite3

from hatoba.policy.pop_before_smtp import WindowStoreError
from hatoba.store.sqltx import DirectoryTables, write_transaction

__all__ = ["RelayLogins"]


class RelayLogins(DirectoryTables):
    """The pop_before_smtp table of the directory database at `path`."""

    TABLES = ("pop_before_smtp",)
    WHAT = "POP-before-SMTP table"
    ERROR = WindowStoreError

    def open_window(self, address: str, login: str, until: float) -> None:
        with write_transaction(self._conn(), self.path, WindowStoreError) as conn:
            conn.execute(
                """INSERT INTO pop_before_smtp (address, login, expires) VALUES (?, ?, ?)
                   ON CONFLICT (address) DO UPDATE SET login = excluded.login, expires = excluded.expires""",
                (address, login, until),
            )

    def window(self, address: str) -> tuple[str, float] | None:
        try:
            row = self._conn().execute(
                "SELECT login, expires FROM pop_before_smtp WHERE address = ?", (address,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise WindowStoreError(f"directory database {self.path}: {exc}") from None
        return None if row is None else (str(row[0]), float(row[1]))

    def prune(self, before: float) -> None:
        with write_transaction(self._conn(), self.path, WindowStoreError) as conn:
            conn.execute("DELETE FROM pop_before_smtp WHERE expires < ?", (before,))

    def __enter__(self) -> RelayLogins:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
