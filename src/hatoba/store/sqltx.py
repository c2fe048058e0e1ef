"""SQLite connections per thread and write transactions, shared by the
directory, the login state and the POP-before-SMTP windows.

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


def connect_existing(path: Path, tables: tuple[str, ...], what: str, error: type[Exception]) -> sqlite3.Connection:
    """A connection to the directory database at `path`, which must exist and hold `tables`.

    For the tables other modules keep in the directory database (made by its
    migrations, store/directory.py): WAL, synchronous=NORMAL (a power cut may
    lose the last few changes, never corrupt the file), 10 s busy timeout,
    autocommit (callers BEGIN themselves). `what` names the tables in the
    `error` raised when they are missing."""
    if not path.exists():
        raise error(f"directory database {path} does not exist; create it with `hatoba init` or `hatoba domain add`")
    try:
        # mode=rw: never create an empty database beside the real one.
        conn = sqlite3.connect(
            f"{path.absolute().as_uri()}?mode=rw",
            uri=True,
            timeout=10.0,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # close() may run in another thread
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        marks = ", ".join("?" * len(tables))
        found = conn.execute(
            f"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ({marks})", tables
        ).fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise error(f"cannot open the directory database {path}: {exc}") from None
    if found != len(tables):
        conn.close()
        raise error(
            f"directory database {path} has no {what} yet; open it once with this "
            "hatoba (start the server, or run `hatoba user list`) to upgrade it"
        )
    return conn


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


class DirectoryTables:
    """Base of a store that keeps tables of its own in the directory database (made by its
    migrations): one connection per thread, opened at once so a database that cannot be
    used is said at start, not at the first message. Subclasses name their TABLES, what
    they are (WHAT, for the error) and their ERROR class."""

    TABLES: tuple[str, ...] = ()
    WHAT = "tables"
    ERROR: type[Exception] = Exception

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._connections = ThreadConnections()
        self._conn()

    def _conn(self) -> sqlite3.Connection:
        conn = self._connections.current()
        if conn is None:
            conn = connect_existing(self.path, self.TABLES, self.WHAT, self.ERROR)
            self._connections.add(conn)
        return conn

    def close(self) -> None:
        """Close every connection this object opened, in any thread."""
        self._connections.close_all()
