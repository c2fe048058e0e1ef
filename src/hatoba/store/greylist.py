"""Greylisting state: its tables in the directory database, shared by every server process.

The rules (what waits, for how long, who is let through) are in
checks/greylisting.py; this module only keeps the triplets and the client
networks that passed. Blocking SQLite: called from the checks' threads.
Triplets are stored as a hash, so the table is no record of who writes to whom.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass

from hatoba.store.sqltx import DirectoryTables, write_transaction

__all__ = ["GreylistError", "GreylistStore", "Triplet"]


class GreylistError(Exception):
    """The store cannot be read or written; one line for the operator."""


@dataclass(frozen=True)
class Triplet:
    network: str
    sender: str
    recipient: str

    def key(self) -> bytes:
        return hashlib.sha256(f"{self.network}\0{self.sender}\0{self.recipient}".encode()).digest()


@dataclass(frozen=True)
class Seen:
    first_seen: float
    passed: bool


class GreylistStore(DirectoryTables):
    TABLES = ("greylist", "greylist_clients")
    WHAT = "greylisting tables"
    ERROR = GreylistError

    def seen(self, triplets: list[Triplet], now: float) -> dict[Triplet, Seen]:
        """What is known of each triplet; those never seen are recorded as first seen `now`."""
        out: dict[Triplet, Seen] = {}
        with write_transaction(self._conn(), self.path, GreylistError) as conn:
            for triplet in triplets:
                row = conn.execute("SELECT first_seen, passed FROM greylist WHERE triplet = ?",
                                   (triplet.key(),)).fetchone()
                if row is None:
                    conn.execute("INSERT INTO greylist (triplet, first_seen, last_seen) VALUES (?, ?, ?)",
                                 (triplet.key(), now, now))
                    out[triplet] = Seen(now, False)
                else:
                    conn.execute("UPDATE greylist SET last_seen = ? WHERE triplet = ?", (now, triplet.key()))
                    out[triplet] = Seen(float(row[0]), bool(row[1]))
        return out

    def restart(self, triplet: Triplet, now: float) -> None:
        """A triplet that waited too long starts over."""
        with write_transaction(self._conn(), self.path, GreylistError) as conn:
            conn.execute("UPDATE greylist SET first_seen = ?, last_seen = ?, passed = 0 WHERE triplet = ?",
                         (now, now, triplet.key()))

    def passed(self, triplets: list[Triplet], network: str, now: float) -> int:
        """Mark the triplets passed and count one pass for `network`; returns its passes so far."""
        with write_transaction(self._conn(), self.path, GreylistError) as conn:
            for triplet in triplets:
                conn.execute("UPDATE greylist SET passed = 1, last_seen = ? WHERE triplet = ?", (now, triplet.key()))
            conn.execute(
                """INSERT INTO greylist_clients (network, passes, last) VALUES (?, 1, ?)
                   ON CONFLICT (network) DO UPDATE SET passes = passes + 1, last = excluded.last""",
                (network, now),
            )
            row = conn.execute("SELECT passes FROM greylist_clients WHERE network = ?", (network,)).fetchone()
        return int(row[0])

    def client_passes(self, network: str, since: float) -> int:
        try:
            row = self._conn().execute("SELECT passes FROM greylist_clients WHERE network = ? AND last >= ?",
                                       (network, since)).fetchone()
        except sqlite3.Error as exc:
            raise GreylistError(f"directory database {self.path}: {exc}") from None
        return 0 if row is None else int(row[0])

    def prune(self, waiting_before: float, passed_before: float) -> None:
        """Forget first attempts never retried in time, and passes not used for long."""
        with write_transaction(self._conn(), self.path, GreylistError) as conn:
            conn.execute("DELETE FROM greylist WHERE passed = 0 AND last_seen < ?", (waiting_before,))
            conn.execute("DELETE FROM greylist WHERE passed = 1 AND last_seen < ?", (passed_before,))
            conn.execute("DELETE FROM greylist_clients WHERE last < ?", (passed_before,))

