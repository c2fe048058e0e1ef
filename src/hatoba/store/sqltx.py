"""Write transactions on SQLite, shared by the directory and the login state.

Writers take the database lock at BEGIN (BEGIN IMMEDIATE), so the CLI and a
running server never deadlock; every SQLite error leaves as the caller's own
one-line error class, naming the file.
"""

from __future__ import annotations

import sqlite3
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
