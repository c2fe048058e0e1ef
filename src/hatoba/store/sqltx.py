"""SQLite connections per thread and write transactions, shared by the
directory and the login state.

Writers take the database lock at BEGIN (BEGIN IMMEDIATE), so the CLI and a
running server never deadlock; every SQLite error leaves as the caller's own
one-line error class, naming the file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def write_transaction(conn: sqlite3.Connection, path: Path, error: type[Exception]) -> Iterator[sqlite3.Connection]:
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise error(f"directory database {path}: {exc}") from None
    try:
        yield conn
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        rollback(conn)
        raise error(f"directory database {path}: {exc}") from None
    except BaseException:
        rollback(conn)
        raise


def rollback(conn: sqlite3.Connection) -> None:
    # SQLite may already have rolled back by itself (disk full, I/O error).
    if conn.in_transaction:
        conn.execute("ROLLBACK")


class ThreadConnections:
    """One SQLite connection per thread (a connection must not be used from
    two threads at once), all closed together from any thread."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def current(self) -> sqlite3.Connection | None:
        """This thread's connection, None before add()."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        return conn

    def add(self, conn: sqlite3.Connection) -> None:
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)

    def close_all(self) -> None:
        with self._lock:
            connections, self._all = self._all, []
        for conn in connections:
            conn.close()
        self._local = threading.local()
