"""Per-user spam settings in the directory database: sender allow/block lists and Junk feedback.

- `spam_senders`: an account's "allow" and "block" entries, each an address
  or "@domain" (which covers its subdomains too). Read by local delivery
  for every message judged on arrival; written by `hatoba spam allow|block`.
- `junk_feedback`: what a user moved into Junk (spam) or out of it (ham)
  over IMAP, by Message-ID; the latest verdict per message counts.
Blocking SQLite; callers use threads.
"""

from __future__ import annotations

import sqlite3
import time

from hatoba.i18n import T
from hatoba.store.sqltx import DirectoryTables, write_transaction

__all__ = ["SpamListError", "SpamLists"]

KINDS = ("allow", "block")
FEEDBACK_DAYS = 365  # how long a user's Junk verdicts are kept
PRUNE_EVERY = 100  # verdicts recorded between two clean-ups
MAX_ENTRIES = 1000  # allow and block entries of one account


class SpamListError(Exception):
    """Bad input or an unusable database; one line for the operator."""


def normal_entry(text: str) -> str:
    """An address ("a@b.example") or a domain ("@b.example"), lower case; SpamListError otherwise."""
    entry = text.strip().lower().rstrip(".")
    local, at, domain = entry.rpartition("@")
    if not at:
        local, domain = "", entry  # a bare domain means the domain
    if not domain or "." not in domain or any(c.isspace() or c in "<>,;\"" for c in entry):
        raise SpamListError(T("%(sender)s is neither an address (name@example.org) nor a domain (@example.org)",
                              sender=repr(text)))
    return f"{local}@{domain}"


class SpamLists(DirectoryTables):
    TABLES = ("spam_senders", "junk_feedback")
    WHAT = "spam tables"
    ERROR = SpamListError
    _recorded = 0

    # -- sender lists -----------------------------------------------------------------------

    def set(self, account: str, sender: str, kind: str) -> str:
        if kind not in KINDS:
            raise SpamListError(T("kind must be allow or block, not %(kind)s", kind=repr(kind)))
        entry = normal_entry(sender)
        with write_transaction(self._conn(), self.path, SpamListError) as conn:
            count = conn.execute("SELECT COUNT(*) FROM spam_senders WHERE account = ? AND sender != ?",
                                 (account.lower(), entry)).fetchone()[0]
            if count >= MAX_ENTRIES:
                raise SpamListError(T("%(account)s has %(count)s senders on the lists, the most allowed; remove one first",
                                      account=account.lower(), count=count))
            conn.execute(
                """INSERT INTO spam_senders (account, sender, kind) VALUES (?, ?, ?)
                   ON CONFLICT (account, sender) DO UPDATE SET kind = excluded.kind""",
                (account.lower(), entry, kind),
            )
        return entry

    def remove(self, account: str, sender: str) -> bool:
        entry = normal_entry(sender)
        with write_transaction(self._conn(), self.path, SpamListError) as conn:
            cursor = conn.execute("DELETE FROM spam_senders WHERE account = ? AND sender = ?", (account.lower(), entry))
        return cursor.rowcount > 0

    def entries(self, account: str) -> list[tuple[str, str]]:
        """(kind, sender) of `account`, allow first."""
        rows = self._read("SELECT kind, sender FROM spam_senders WHERE account = ? ORDER BY kind, sender",
                          (account.lower(),))
        return [(str(k), str(s)) for k, s in rows]

    def verdict_for(self, account: str, sender: str) -> str:
        """"allow", "block" or "" for mail from `sender` to `account` (the most specific entry wins)."""
        address = sender.strip().lower()
        local, at, domain = address.rpartition("@")
        if not at or not domain:
            return ""
        candidates = [address] + [f"@{'.'.join(domain.split('.')[i:])}" for i in range(domain.count(".") + 1)]
        marks = ",".join("?" * len(candidates))
        rows = dict(self._read(f"SELECT sender, kind FROM spam_senders WHERE account = ? AND sender IN ({marks})",
                               (account.lower(), *candidates)))
        for candidate in candidates:
            if candidate in rows:
                return str(rows[candidate])
        return ""

    # -- Junk feedback ----------------------------------------------------------------------

    def record_feedback(self, account: str, message_id: str, verdict: str, when: float | None = None) -> None:
        now = time.time() if when is None else when
        with write_transaction(self._conn(), self.path, SpamListError) as conn:
            self._recorded += 1
            if self._recorded % PRUNE_EVERY == 1:  # the table keeps a year, not forever
                conn.execute("DELETE FROM junk_feedback WHERE at < ?", (now - FEEDBACK_DAYS * 86400,))
            conn.execute(
                """INSERT INTO junk_feedback (account, message_id, verdict, at) VALUES (?, ?, ?, ?)
                   ON CONFLICT (account, message_id) DO UPDATE SET verdict = excluded.verdict, at = excluded.at""",
                (account.lower(), message_id, verdict, now),
            )

    def feedback(self, account: str) -> list[tuple[str, str]]:
        """(message_id, verdict) that `account` gave, oldest first."""
        rows = self._read("SELECT message_id, verdict FROM junk_feedback WHERE account = ? ORDER BY at",
                          (account.lower(),))
        return [(str(m), str(v)) for m, v in rows]

    def _read(self, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise SpamListError(T("directory database %(path)s: %(reason)s", path=str(self.path),
                                  reason=str(exc))) from None

