"""The directory: local domains, users with Argon2id password hashes, and aliases, in SQLite.

Implements hatoba.store.api.UserDB for the server (called from worker threads
per RCPT and per AUTH) and offers the management methods the CLI uses.

Rules:
- Every address is parsed by hatoba.proto.address (the one parser) and kept in
  two spellings: as given (canonical syntax, case kept) for display, and a
  lower-cased key for lookups, so uniqueness and matching ignore case without
  any database-specific collation.
- A local address is a user or an alias source, never both; users and alias
  sources have plain local parts (no '%', '!', '@', quotes or white space),
  because those characters were used to re-route mail through servers.
- Alias lookups follow one rule everywhere (resolution, loop checks, sender
  ownership): a user ends the expansion; else an exact alias expands; else the
  domain's catch-all "@domain" expands; else postmaster@ and abuse@ go to the
  postmaster (RFC 5321 §4.5.1, RFC 2142); else the address is unknown.
- No change may leave an alias loop behind: each change that alters where an
  address leads re-runs the expansion from that address inside its own
  transaction and is rolled back when it meets a loop.
- Passwords are never logged or stored; only their Argon2id hashes and their
  SCRAM-SHA-256 keys (RFC 5802 §3) are, both made from the same normalised
  password. Users from before SCRAM get keys at their next successful login.
  Users brought over from another system (hatoba import) may instead hold that
  system's hash ("{SCHEME}...", store/legacy_hashes.py) until their first
  login, which replaces it with Argon2id and SCRAM keys.
- The logic uses plain SQL (no SQLite-only functions) so that another backend,
  PostgreSQL for several nodes, can implement the same methods; only the
  connection handling, the DDL and the transaction statements are SQLite's.
"""

from __future__ import annotations

import binascii
import logging
import os
import secrets
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from hatoba.i18n import T, refusal
from hatoba.proto.address import Address, AddressError, parse_address, parse_domain
from hatoba.proto.sasl import ScramKeys
from hatoba.proto.scram import SCRAM_ITERATIONS, derive_scram_keys
from hatoba.store import app_passwords as AP
from hatoba.store import legacy_hashes
from hatoba.store.login_cache import LoginCache, SharedLoginCache
from hatoba.store.sqltx import ThreadConnections, rollback, write_transaction
from hatoba.store.api import AliasLoopError, DirectoryError, Resolution

__all__ = ["Directory", "MAX_ALIAS_DEPTH", "MIN_PASSWORD_LENGTH", "check_password"]

log = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 8
SCRAM_SALT_OCTETS = 16  # RFC 5802 §5.1 asks only for a random salt; 16 octets is what Dovecot uses
# Postfix stops virtual alias expansion at 100 levels; real setups never nest
# more than a handful, and a short limit keeps each RCPT cheap.
MAX_ALIAS_DEPTH = 20
MAX_FORWARDS = 20  # addresses one user's mail may be forwarded to
# RFC 5321 §4.5.1 and RFC 2142: every local domain has these, alias or not.
ROLE_ACCOUNTS = frozenset({"postmaster", "abuse"})
# Characters a user or alias source may not have in its local part: '%'
# (percent hack), '!' (UUCP bang path) and '@' route mail elsewhere on naive
# servers; '"' means a quoted local part, which no client types correctly.
_ROUTING_CHARS = frozenset('%!@"')

# Each entry moves the schema one version up; never edit a released entry,
# append a new one. The version reached is stored in schema_version.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE domains (
            name    TEXT PRIMARY KEY,   -- lower-case, A-labels (parse_domain)
            created INTEGER NOT NULL    -- Unix time
        )""",
        """CREATE TABLE users (
            address_key   TEXT PRIMARY KEY,  -- lower-cased address: one user per spelling
            address       TEXT NOT NULL,     -- as the operator wrote it (canonical syntax)
            domain        TEXT NOT NULL REFERENCES domains(name),
            password_hash TEXT NOT NULL,     -- Argon2id PHC string, parameters included
            created       INTEGER NOT NULL
        )""",
        "CREATE INDEX users_domain ON users(domain)",
        """CREATE TABLE aliases (
            id            INTEGER PRIMARY KEY,  -- keeps targets in the order they were added
            source_key    TEXT NOT NULL,        -- lower-cased; "@domain" for a catch-all
            source        TEXT NOT NULL,
            domain        TEXT NOT NULL REFERENCES domains(name),
            target_key    TEXT NOT NULL,
            target        TEXT NOT NULL,
            target_domain TEXT NOT NULL,
            UNIQUE (source_key, target_key)
        )""",
        "CREATE INDEX aliases_target ON aliases(target_key)",
        "CREATE INDEX aliases_target_domain ON aliases(target_domain)",
        "CREATE INDEX aliases_domain ON aliases(domain)",
    ),
    (
        # APOP secret sealed by store/secretbox.py; NULL = APOP off for the user.
        "ALTER TABLE users ADD COLUMN apop_secret TEXT",
    ),
    (
        # Storage limit in MiB for this user; NULL = imap.quota_mb, 0 = no limit.
        "ALTER TABLE users ADD COLUMN quota_mb INTEGER",
    ),
    (
        # SCRAM-SHA-256 keys (RFC 5802 §3, RFC 7677), never the password:
        # "iterations$salt$stored_key$server_key", base64 fields. NULL until
        # the password is next set or used in a successful login.
        "ALTER TABLE users ADD COLUMN scram_sha256 TEXT",
    ),
    (
        # The login throttle (store/loginstate.py, policy/auth_throttle.py).
        # One row per throttled scope: ('pair', address, account),
        # ('address', address, ''), ('account', '', account).
        """CREATE TABLE login_throttle (
            scope         TEXT NOT NULL,
            address       TEXT NOT NULL,
            account       TEXT NOT NULL,
            level         REAL NOT NULL,            -- failures, decaying at the scope's rate
            updated       REAL NOT NULL,            -- Unix time `level` was computed at
            strikes       INTEGER NOT NULL DEFAULT 0,
            blocked_until REAL NOT NULL DEFAULT 0,  -- Unix time
            PRIMARY KEY (scope, address, account)
        )""",
        # (address, account) pairs that logged in, as a keyed hash: no plain
        # record of who logs in from where.
        """CREATE TABLE login_known (
            pair  BLOB PRIMARY KEY,  -- HMAC-SHA256(key, address NUL account)
            last  REAL NOT NULL      -- Unix time of the last successful login
        )""",
    ),
    (
        # POP-before-SMTP windows (store/relay_logins.py, policy/pop_before_smtp.py):
        # a POP3/IMAP login from `address` lets it relay until `expires`.
        # Here, not in memory, so every server process sees every login.
        """CREATE TABLE pop_before_smtp (
            address TEXT PRIMARY KEY,  -- the client's IP address
            login   TEXT NOT NULL,     -- the account that logged in (for the mail log)
            expires REAL NOT NULL      -- Unix time the window ends
        )""",
    ),
    (
        # Greylisting (store/greylist.py): one row per (client network, sender,
        # recipient) triplet, as a keyed hash; `passed` once it was retried in time.
        """CREATE TABLE greylist (
            triplet    BLOB PRIMARY KEY,  -- SHA-256 of network NUL sender NUL recipient
            first_seen REAL NOT NULL,     -- Unix time of the first attempt
            last_seen  REAL NOT NULL,
            passed     INTEGER NOT NULL DEFAULT 0
        )""",
        # Client networks that passed greylisting often enough to skip it.
        """CREATE TABLE greylist_clients (
            network TEXT PRIMARY KEY,  -- "192.0.2.0/24", "2001:db8::/64"
            passes  INTEGER NOT NULL,
            last    REAL NOT NULL
        )""",
        # Per-user sender lists (store/spamlists.py): "allow" keeps a sender out of
        # Junk, "block" sends it there. `sender` is an address or "@domain".
        """CREATE TABLE spam_senders (
            account TEXT NOT NULL,
            sender  TEXT NOT NULL,
            kind    TEXT NOT NULL CHECK (kind IN ('allow', 'block')),
            PRIMARY KEY (account, sender)
        )""",
        # What users moved into Junk (spam) or out of it (ham) over IMAP.
        """CREATE TABLE junk_feedback (
            account    TEXT NOT NULL,
            message_id TEXT NOT NULL,
            verdict    TEXT NOT NULL CHECK (verdict IN ('spam', 'ham')),
            at         REAL NOT NULL,
            PRIMARY KEY (account, message_id)
        )""",
        # DMARC aggregate reports to send (checks/dmarc_reports.py): messages judged,
        # counted by everything a report row tells; rows go once their report is queued.
        """CREATE TABLE dmarc_results (
            day           TEXT NOT NULL,     -- UTC "YYYY-MM-DD" the messages arrived
            policy_domain TEXT NOT NULL,     -- where the DMARC record was found
            policy        TEXT NOT NULL,     -- the record's tags as published (JSON)
            rua           TEXT NOT NULL,     -- its report addresses (JSON list of mailto: URIs)
            source_ip     TEXT NOT NULL,
            header_from   TEXT NOT NULL,
            envelope_to   TEXT NOT NULL,
            disposition   TEXT NOT NULL,
            dkim_aligned  TEXT NOT NULL,     -- pass | fail
            spf_aligned   TEXT NOT NULL,
            reason        TEXT NOT NULL,     -- policy override type, or ""
            auth          TEXT NOT NULL,     -- the DKIM and SPF results (JSON)
            count         INTEGER NOT NULL,
            PRIMARY KEY (day, policy_domain, source_ip, header_from, envelope_to, disposition,
                         dkim_aligned, spf_aligned, reason, auth)
        )""",
    ),
    (
        # Administrators (store/roles.py): a user with scope "*" administers the
        # server, with a domain name that domain only.
        """CREATE TABLE admin_roles (
            account TEXT NOT NULL,     -- a user's address_key
            scope   TEXT NOT NULL,     -- "*" or a local domain
            granted REAL NOT NULL,     -- Unix time
            PRIMARY KEY (account, scope)
        )""",
        # Per-device passwords for mail programs (store/app_passwords.py). They are
        # random with 120 bits of entropy, so a keyed SHA-256 suffices (no Argon2).
        """CREATE TABLE app_passwords (
            id        INTEGER PRIMARY KEY,
            account   TEXT NOT NULL,
            name      TEXT NOT NULL,
            digest    BLOB NOT NULL UNIQUE,  -- SHA-256 of the password
            created   REAL NOT NULL,
            last_used REAL,
            UNIQUE (account, name)
        )""",
        "CREATE INDEX app_passwords_account ON app_passwords(account)",
        # Web admin sessions (store/web_sessions.py): only a hash of the cookie's token.
        """CREATE TABLE web_sessions (
            token_hash BLOB PRIMARY KEY,   -- SHA-256 of the cookie value
            account    TEXT NOT NULL,
            csrf       TEXT NOT NULL,      -- the token every form of the session carries
            created    REAL NOT NULL,
            last_seen  REAL NOT NULL,
            verified   INTEGER NOT NULL    -- 1 once the second factor (when the user has one) was given
        )""",
        "CREATE INDEX web_sessions_account ON web_sessions(account)",
        # The language of the web pages ("en", "ja"; NULL: the browser's), and the
        # TOTP secret (RFC 6238) sealed by store/secretbox.py (NULL: no second factor).
        "ALTER TABLE users ADD COLUMN language TEXT",
        "ALTER TABLE users ADD COLUMN totp_secret TEXT",
        # A user's own forwarding (set by the user in the web admin, or `hatoba user forward`):
        # mail for the user also (forward_keep = 1) or only goes to these addresses.
        """CREATE TABLE user_forwards (
            id          INTEGER PRIMARY KEY,  -- keeps targets in the order they were given
            account     TEXT NOT NULL,        -- a user's address_key
            target_key  TEXT NOT NULL,
            target      TEXT NOT NULL,
            UNIQUE (account, target_key)
        )""",
        "ALTER TABLE users ADD COLUMN forward_keep INTEGER NOT NULL DEFAULT 1",
        # The last TOTP step a login used (codes are not taken twice).
        "ALTER TABLE users ADD COLUMN totp_last_step INTEGER NOT NULL DEFAULT 0",
    ),
)

SCHEMA_VERSION = len(_MIGRATIONS)  # the version this hatoba writes (backups record it)


def check_password(password: str) -> str:
    """Return the password as it is hashed, or raise DirectoryError saying why it is refused.

    RFC 8265 §4.2 (OpaqueString): passwords are compared after NFC
    normalisation and may not hold control characters, so the same password
    typed on two systems that compose accents differently still matches, and
    no password holds a NUL that SASL PLAIN could never carry (RFC 4616 §2).
    """
    if not password:
        raise DirectoryError(T("the password is empty; choose one of at least 8 characters"))
    password = unicodedata.normalize("NFC", password)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise DirectoryError(T(
            "the password is too short (%(length)s characters); use at least %(minimum)s",
            length=len(password), minimum=MIN_PASSWORD_LENGTH,
        ))
    if any(unicodedata.category(c) == "Cc" for c in password):
        raise DirectoryError(T("the password holds a control character; use printable characters only"))
    return password


def _new_scram(password: str) -> str:
    """The users.scram_sha256 value for a (normalised) password: "iterations$salt$stored_key$server_key"."""
    keys = derive_scram_keys(password, secrets.token_bytes(SCRAM_SALT_OCTETS), SCRAM_ITERATIONS)
    fields = (keys.salt, keys.stored_key, keys.server_key)
    return "$".join([str(keys.iterations), *(binascii.b2a_base64(f, newline=False).decode("ascii") for f in fields)])


def _parse_scram(text: str) -> ScramKeys | None:
    """The keys in a users.scram_sha256 value, None if it is damaged."""
    parts = text.split("$")
    if len(parts) != 4 or not parts[0].isdigit():
        return None
    try:
        salt, stored_key, server_key = (binascii.a2b_base64(p.encode("ascii"), strict_mode=True) for p in parts[1:])
    except (binascii.Error, UnicodeEncodeError):
        return None
    if int(parts[0]) < 1 or not salt or len(stored_key) != 32 or len(server_key) != 32:
        return None
    return ScramKeys(int(parts[0]), salt, stored_key, server_key)


def _key(address: Address) -> str:
    """The lookup key: local parts are compared case-insensitively (api.py rules)."""
    return str(address).lower()


def _is_plain_local(local: str) -> bool:
    return not any(c in _ROUTING_CHARS or c.isspace() for c in local)


def _split_key(key: str) -> tuple[str, str]:
    """(local part, domain) of a key or address; the domain never holds an '@'."""
    local, _, domain = key.rpartition("@")
    return local, domain


@dataclass
class _Expansion:
    """What an alias walk has found so far, keyed by lookup key to drop duplicates."""

    mailboxes: dict[str, str] = field(default_factory=dict)
    forwards: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    local_domains: dict[str, bool] = field(default_factory=dict)
    catch_alls: dict[str, bool] = field(default_factory=dict)


class Directory:
    """Domains, users and aliases in one SQLite file (implements api.UserDB).

    Safe to share between threads: each thread gets its own connection, as
    SQLite connections must not be used from two threads at once. Writers
    take the database lock at the start of their transaction (BEGIN
    IMMEDIATE), so the CLI and a running server never deadlock; readers in
    WAL mode never wait for writers.
    """

    def __init__(self, path: Path, *, hasher: PasswordHasher | None = None) -> None:
        """Open the directory at `path`, creating the file and its tables when missing.

        `hasher` defaults to argon2-cffi's PasswordHasher(), whose parameters
        are RFC 9106 §4's second recommended option (Argon2id, t=3, m=64 MiB,
        p=4), the "low memory" profile meant for servers that verify many
        logins. Tests pass cheaper parameters.
        """
        self.path = Path(path)
        self._hasher = hasher or PasswordHasher()
        # Verified logins remembered in memory (0 = off); the server sets limits.login_cache_seconds.
        self.login_cache_seconds = 0.0
        # Where postmaster@/abuse@ of every local domain go without an alias
        # ([server] postmaster); "" = the first user added.
        self.postmaster = ""
        # In this process, or shared by the worker processes (the server sets SharedLoginCache).
        self.login_cache: LoginCache | SharedLoginCache = LoginCache()
        self._connections = ThreadConnections()
        self._lock = threading.Lock()
        self._dummy_hash: str | None = None
        if not self.path.parent.is_dir():
            raise DirectoryError(T(
                "folder %(folder)s for the directory database does not exist; "
                "create it or run `hatoba init`",
                folder=str(self.path.parent),
            ))
        if not self.path.exists():
            # The hashes are secrets: owner-only from the first byte. SQLite
            # gives its -wal and -shm files the mode of the database file.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._migrate()

    # -- connections and transactions -----------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = self._connections.current()
        if conn is None:
            try:
                # isolation_level=None: we issue BEGIN/COMMIT ourselves.
                conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                # Every acknowledged change must survive a power cut.
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
            except sqlite3.DatabaseError as exc:
                raise DirectoryError(T("cannot open the directory database %(path)s: %(reason)s",
                                       path=str(self.path), reason=str(exc))) from None
            self._connections.add(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with write_transaction(self._conn(), self.path, DirectoryError) as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot across several queries."""
        conn = self._conn()
        try:
            conn.execute("BEGIN")
        except sqlite3.OperationalError as exc:
            raise DirectoryError(T("directory database %(path)s: %(reason)s", path=str(self.path),
                                   reason=str(exc))) from None
        try:
            yield conn
        except sqlite3.Error as exc:
            raise DirectoryError(T("directory database %(path)s: %(reason)s", path=str(self.path),
                                   reason=str(exc))) from None
        finally:
            rollback(conn)

    def _migrate(self) -> None:
        try:
            with self._write() as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                row = conn.execute("SELECT version FROM schema_version").fetchone()
                version = 0 if row is None else int(row[0])
                if version > len(_MIGRATIONS):
                    raise DirectoryError(T(
                        "directory database %(path)s has schema version %(version)s, newer than this "
                        "hatoba knows (%(known)s); upgrade hatoba",
                        path=str(self.path), version=version, known=len(_MIGRATIONS),
                    ))
                for statements in _MIGRATIONS[version:]:
                    for statement in statements:
                        conn.execute(statement)
                if row is None:
                    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (len(_MIGRATIONS),))
                elif version < len(_MIGRATIONS):
                    conn.execute("UPDATE schema_version SET version = ?", (len(_MIGRATIONS),))
        except sqlite3.DatabaseError as exc:
            raise DirectoryError(T("cannot open the directory database %(path)s: %(reason)s",
                                   path=str(self.path), reason=str(exc))) from None

    def close(self) -> None:
        """Close every connection this object opened, in any thread."""
        self._connections.close_all()

    def __enter__(self) -> Directory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- parsing ------------------------------------------------------------------

    @staticmethod
    def _parse(text: str) -> Address:
        try:
            return parse_address(text)
        except AddressError as exc:
            raise DirectoryError(T("%(text)s is not a valid address: %(reason)s",
                                   text=repr(text), reason=refusal(exc))) from None

    def _parse_local(self, conn: sqlite3.Connection, text: str, what: str) -> Address:
        """Parse a user or alias source address (`what` is "user" or "alias"): plain local part, local domain."""
        address = self._parse(text)
        if address.quoted or not _is_plain_local(address.local):
            if what == "user":
                raise DirectoryError(T(
                    "%(text)s cannot be a user: local parts may not hold '%%', '!', '@', quotes or spaces",
                    text=repr(text),
                ))
            raise DirectoryError(T(  # (sic: "a alias" is the English these refusals always had)
                "%(text)s cannot be a alias: local parts may not hold '%%', '!', '@', quotes or spaces",
                text=repr(text),
            ))
        if what == "user" and "/" in address.local:
            raise DirectoryError(T("%(text)s cannot be a user: its mail folder is named by its local part, "
                                   "which may not hold '/'", text=repr(text)))
        self._require_domain(conn, address.domain)
        return address

    @staticmethod
    def _parse_domain(name: str) -> str:
        try:
            return parse_domain(name)
        except AddressError as exc:
            raise DirectoryError(T("%(name)s is not a valid domain name: %(reason)s",
                                   name=repr(name), reason=refusal(exc))) from None

    @staticmethod
    def _require_domain(conn: sqlite3.Connection, domain: str) -> None:
        if conn.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone() is None:
            raise DirectoryError(T(
                "%(domain)s is not a local domain: add it first with `%(command)s`",
                domain=domain, command=f"hatoba domain add {domain}",
            ))

    # -- domains ------------------------------------------------------------------

    def add_domain(self, name: str) -> str:
        """Make `name` a local domain; returns its normalised spelling."""
        domain = self._parse_domain(name)
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone():
                raise DirectoryError(T("%(domain)s is already a local domain", domain=domain))
            conn.execute("INSERT INTO domains (name, created) VALUES (?, ?)", (domain, int(time.time())))
        return domain

    def remove_domain(self, name: str) -> str:
        """Stop accepting mail for `name`; refused while users or aliases remain in it."""
        domain = self._parse_domain(name)
        with self._write() as conn:
            self._require_domain(conn, domain)
            users = conn.execute("SELECT COUNT(*) FROM users WHERE domain = ?", (domain,)).fetchone()[0]
            aliases = conn.execute(
                "SELECT COUNT(DISTINCT source_key) FROM aliases WHERE domain = ?", (domain,)
            ).fetchone()[0]
            if users or aliases:
                raise DirectoryError(T(
                    "%(domain)s still has %(users)s and %(aliases)s: "
                    "remove them first with `hatoba user remove ADDRESS` and `hatoba alias remove SOURCE`",
                    domain=domain, users=_count(users, "user"), aliases=_count(aliases, "alias"),
                ))
            conn.execute("DELETE FROM domains WHERE name = ?", (domain,))
            conn.execute("DELETE FROM admin_roles WHERE scope = ?", (domain,))
        return domain

    def list_domains(self) -> list[str]:
        with self._read() as conn:
            return [row[0] for row in conn.execute("SELECT name FROM domains ORDER BY name")]

    def is_local_domain(self, name: str) -> bool:
        """Per RCPT: `name` is already normalised (lower-case, A-labels)."""
        conn = self._conn()
        return conn.execute("SELECT 1 FROM domains WHERE name = ?", (name.lower(),)).fetchone() is not None

    # -- users --------------------------------------------------------------------

    def check_new_user(self, address: str) -> str:
        """Raise DirectoryError if `address` cannot become a user; return its canonical spelling.

        The CLI calls this before asking for a password twice.
        """
        with self._read() as conn:
            return str(self._check_new_user(conn, address))

    def _check_new_user(self, conn: sqlite3.Connection, text: str) -> Address:
        address = self._parse_local(conn, text, "user")
        key = _key(address)
        row = conn.execute("SELECT address FROM users WHERE address_key = ?", (key,)).fetchone()
        if row:
            raise DirectoryError(T("user %(address)s already exists; change its password with `hatoba user passwd`",
                                   address=row[0]))
        row = conn.execute("SELECT source FROM aliases WHERE source_key = ?", (key,)).fetchone()
        if row:
            raise DirectoryError(T("%(address)s is an alias; remove it first with `%(command)s`",
                                   address=row[0], command=f"hatoba alias remove {row[0]}"))
        return address

    def add_user(self, address: str, password: str) -> str:
        """Create a user; the login is the full address. Returns its canonical spelling."""
        password = check_password(password)
        with self._read() as conn:
            self._check_new_user(conn, address)  # fail fast, before the slow hash
        password_hash, scram = self._hasher.hash(password), _new_scram(password)
        with self._write() as conn:
            parsed = self._check_new_user(conn, address)  # again: another writer may have won
            conn.execute(
                "INSERT INTO users (address_key, address, domain, password_hash, scram_sha256, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (_key(parsed), str(parsed), parsed.domain, password_hash, scram, int(time.time())),
            )
        return str(parsed)

    def _find_user(self, conn: sqlite3.Connection, text: str) -> tuple[str, str]:
        """(key, stored address) of an existing user, or DirectoryError."""
        address = self._parse(text)
        row = conn.execute("SELECT address FROM users WHERE address_key = ?", (_key(address),)).fetchone()
        if row is None:
            raise DirectoryError(T("no user %(address)s; see `hatoba user list`", address=str(address)))
        return _key(address), str(row[0])

    def set_password(self, address: str, password: str) -> str:
        """Replace a user's password. Returns the user's address."""
        password = check_password(password)
        with self._read() as conn:
            self._find_user(conn, address)
        password_hash, scram = self._hasher.hash(password), _new_scram(password)
        with self._write() as conn:
            key, stored = self._find_user(conn, address)
            conn.execute(
                "UPDATE users SET password_hash = ?, scram_sha256 = ? WHERE address_key = ?",
                (password_hash, scram, key),
            )
            # A new password ends every web session made with the old one, and revokes the app
            # passwords: whoever knew the old password may have made some.
            conn.execute("DELETE FROM web_sessions WHERE account = ?", (key,))
            conn.execute("DELETE FROM app_passwords WHERE account = ?", (key,))
        return stored

    def remove_user(self, address: str) -> str:
        """Delete a user (its stored mail is left alone). Returns the removed address.

        Aliases pointing to the user stay: a user can be re-created under the
        same address. Refused when the address would then fall to a catch-all
        that leads back to it (a loop).
        """
        with self._write() as conn:
            key, stored = self._find_user(conn, address)
            conn.execute("DELETE FROM users WHERE address_key = ?", (key,))
            self._refuse_loop(conn, key, stored, T("removing user %(address)s", address=stored))
            # What belonged to the login goes with it: a user made again later starts with none.
            for table in ("admin_roles", "app_passwords", "web_sessions", "user_forwards"):
                conn.execute(f"DELETE FROM {table} WHERE account = ?", (key,))
        return stored

    def list_users(self, domain: str | None = None) -> list[str]:
        with self._read() as conn:
            if domain is None:
                rows = conn.execute("SELECT address FROM users ORDER BY address_key")
            else:
                name = self._parse_domain(domain)
                self._require_domain(conn, name)
                rows = conn.execute("SELECT address FROM users WHERE domain = ? ORDER BY address_key", (name,))
            return [row[0] for row in rows]

    def user_exists(self, address: str) -> bool:
        try:
            key = _key(parse_address(address))
        except AddressError:
            return False
        conn = self._conn()
        return conn.execute("SELECT 1 FROM users WHERE address_key = ?", (key,)).fetchone() is not None

    # -- APOP --------------------------------------------------------------------

    def set_apop_secret(self, address: str, sealed: str | None) -> str:
        """Store a user's sealed APOP secret (None turns APOP off). Returns the address."""
        with self._write() as conn:
            key, stored = self._find_user(conn, address)
            conn.execute("UPDATE users SET apop_secret = ? WHERE address_key = ?", (sealed, key))
        return stored

    def apop_secret(self, address: str) -> str | None:
        """The sealed APOP secret of a user, or None (no such user, or APOP off)."""
        try:
            key = _key(parse_address(address))
        except AddressError:
            return None
        with self._read() as conn:
            row = conn.execute("SELECT apop_secret FROM users WHERE address_key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    # -- quota --------------------------------------------------------------------

    def set_quota(self, address: str, megabytes: int | None) -> str:
        """A user's own storage limit in MiB (0 = none; None = the server's imap.quota_mb)."""
        if megabytes is not None and megabytes < 0:
            raise DirectoryError(T("a quota is 0 (no limit) or more MiB"))
        with self._write() as conn:
            key, stored = self._find_user(conn, address)
            conn.execute("UPDATE users SET quota_mb = ? WHERE address_key = ?", (megabytes, key))
        return stored

    def quota_mb(self, address: str) -> int | None:
        """A user's own storage limit, or None when the server default applies (or no such user)."""
        try:
            key = _key(parse_address(address))
        except AddressError:
            return None
        with self._read() as conn:
            row = conn.execute("SELECT quota_mb FROM users WHERE address_key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    # -- passwords ----------------------------------------------------------------

    def _dummy(self) -> str:
        """A hash made with the current parameters, to verify against for unknown users."""
        with self._lock:
            if self._dummy_hash is None:
                self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
            return self._dummy_hash

    def verify_password(self, address: str, password: str) -> bool:
        """True only for an existing user and the right password (see authenticate)."""
        return self.authenticate(address, password) is not None

    def authenticate(self, address: str, password: str, *, app_passwords: bool = True) -> str | None:
        """The user's lookup key (lower-cased address) for the right password, else None.

        The key, not the spelling typed, names the account, so
        "Alice@Example.test" and "alice@example.test" log into one mailbox.
        An unknown or malformed login costs one Argon2 verification all the
        same, so the answer time does not tell which users exist. After a
        successful check, a hash made with older parameters is replaced and a
        user without SCRAM keys gets them.
        """
        raw_password = password  # as another system hashed it, for a hash brought over (legacy_hashes)
        password = unicodedata.normalize("NFC", password)  # as check_password stored it
        row = None
        try:
            key = _key(parse_address(address))
        except AddressError:
            key = None
        if key is not None and app_passwords and AP.looks_like_app_password(password):
            if self._app_password_matches(key, password):
                return key
        if key is not None:
            row = self._conn().execute(
                "SELECT password_hash, scram_sha256 FROM users WHERE address_key = ?", (key,)
            ).fetchone()
        if row is None or key is None:
            try:
                self._hasher.verify(self._dummy(), password)
            except VerificationError:
                pass
            return None
        stored_hash: str = row[0]
        if legacy_hashes.is_legacy(stored_hash):
            return self._authenticate_legacy(key, stored_hash, raw_password, password)
        has_scram = row[1] is not None
        cache = self.login_cache if self.login_cache_seconds else None
        proof = cache.proof(key, stored_hash, password) if cache is not None else b""
        if cache is not None and cache.recall(key, proof):
            return key
        try:
            self._hasher.verify(stored_hash, password)
        except VerifyMismatchError:
            return None
        except (VerificationError, InvalidHashError):
            log.error("password hash of %s is unreadable; reset it with `hatoba user passwd`", key)
            return None
        rehash = self._hasher.check_needs_rehash(stored_hash)
        if not has_scram:
            self._add_scram(key, stored_hash, password)
        if rehash:
            new_hash = self._hasher.hash(password)
            with self._write() as conn:
                # Only if nobody changed the password in between.
                conn.execute(
                    "UPDATE users SET password_hash = ? WHERE address_key = ? AND password_hash = ?",
                    (new_hash, key, stored_hash),
                )
            log.info("password hash of %s updated to the current Argon2 parameters", key)
        elif cache is not None:
            cache.remember(key, proof, self.login_cache_seconds)
        return key

    def _authenticate_legacy(self, key: str, stored_hash: str, raw_password: str, password: str) -> str | None:
        """A hash brought over from another system: checked with its own scheme, then
        replaced by an Argon2id hash (and SCRAM keys) at once, as if set here."""
        try:
            matched = legacy_hashes.verify(stored_hash, raw_password)  # the bytes the old system hashed
        except legacy_hashes.UnknownScheme as exc:
            log.error("password of %s cannot be checked (%s); set a new one with `hatoba user passwd`", key, exc)
            return None
        if not matched:
            try:  # as long as a wrong Argon2 password takes: the time tells no hash scheme
                self._hasher.verify(self._dummy(), password)
            except VerificationError:
                pass
            return None
        new_hash, scram = self._hasher.hash(password), _new_scram(password)
        with self._write() as conn:
            conn.execute(
                "UPDATE users SET password_hash = ?, scram_sha256 = ? WHERE address_key = ? AND password_hash = ?",
                (new_hash, scram, key, stored_hash),
            )
        log.info("password of %s moved from its %s hash to Argon2id", key, legacy_hashes.scheme_of(stored_hash))
        return key

    def import_user(self, address: str, *, legacy_hash: str | None = None, password: str | None = None,
                    replace: bool = False) -> tuple[str, bool]:
        """Create a user brought over from another system, keeping its password: a hash in
        another scheme (checked and replaced at the first login) or a readable password
        (hashed now, whatever its length: it is the user's, not a new one). With `replace`,
        an existing user's password is set again (changed at the source since).
        Returns (address, whether the user was created)."""
        if (legacy_hash is None) == (password is None):
            raise ValueError("give a legacy hash or a password")
        if password is not None:
            password = unicodedata.normalize("NFC", password)
            password_hash, scram = self._hasher.hash(password), _new_scram(password)
        else:  # one no scheme here can check is kept all the same: `hatoba check` names its user
            password_hash, scram = legacy_hash, None  # type: ignore[assignment]
        with self._write() as conn:
            parsed = self._parse(address)
            row = conn.execute("SELECT address FROM users WHERE address_key = ?", (_key(parsed),)).fetchone()
            if row is not None:
                if replace:
                    conn.execute("UPDATE users SET password_hash = ?, scram_sha256 = ? WHERE address_key = ?",
                                 (password_hash, scram, _key(parsed)))
                    conn.execute("DELETE FROM web_sessions WHERE account = ?", (_key(parsed),))
                    conn.execute("DELETE FROM app_passwords WHERE account = ?", (_key(parsed),))
                return str(row[0]), False
            parsed = self._check_new_user(conn, address)
            conn.execute(
                "INSERT INTO users (address_key, address, domain, password_hash, scram_sha256, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (_key(parsed), str(parsed), parsed.domain, password_hash, scram, int(time.time())),
            )
        return str(parsed), True

    def legacy_hash_users(self) -> list[tuple[str, str]]:
        """(address, scheme) of every user whose password is still in another system's hash."""
        with self._read() as conn:
            rows = conn.execute("SELECT address, password_hash FROM users WHERE password_hash LIKE '{%' "
                                "ORDER BY address_key").fetchall()
        return [(address, legacy_hashes.scheme_of(stored)) for address, stored in rows]

    # -- app passwords (store/app_passwords.py) ----------------------------------------

    def _app_password_matches(self, key: str, password: str) -> bool:
        row = self._conn().execute(
            "SELECT id, last_used FROM app_passwords WHERE digest = ? AND account = ?", (AP.digest(password), key)
        ).fetchone()
        if row is None:
            return False
        now = time.time()
        if row[1] is None or now - row[1] > 60:  # "last used" to the minute: no write per login
            with self._write() as conn:
                conn.execute("UPDATE app_passwords SET last_used = ? WHERE id = ?", (now, row[0]))
        return True

    def add_app_password(self, address: str, name: str) -> tuple[str, str]:
        """(the user's address, a new app password named `name`); the password is shown once, never stored."""
        name = " ".join(name.split())
        if not name or len(name) > AP.MAX_NAME or not name.isprintable():
            raise DirectoryError(T('give the app password a name of 1 to %(most)s characters, such as "phone"',
                                   most=AP.MAX_NAME))
        password = AP.new_app_password()
        with self._write() as conn:
            key, stored = self._find_user(conn, address)
            count = conn.execute("SELECT COUNT(*) FROM app_passwords WHERE account = ?", (key,)).fetchone()[0]
            if count >= AP.MAX_PER_USER:
                raise DirectoryError(T("%(address)s has %(count)s app passwords, the most allowed; revoke one first",
                                       address=stored, count=count))
            if conn.execute("SELECT 1 FROM app_passwords WHERE account = ? AND name = ?", (key, name)).fetchone():
                raise DirectoryError(T("%(address)s already has an app password named %(name)s; choose another name",
                                       address=stored, name=repr(name)))
            conn.execute("INSERT INTO app_passwords (account, name, digest, created) VALUES (?, ?, ?, ?)",
                         (key, name, AP.digest(password), time.time()))
        return stored, password

    def app_passwords(self, address: str) -> list[tuple[str, float, float | None]]:
        """(name, created, last used or None) of each app password of a user, oldest first."""
        with self._read() as conn:
            key, _ = self._find_user(conn, address)
            rows = conn.execute("SELECT name, created, last_used FROM app_passwords WHERE account = ? ORDER BY id",
                                (key,)).fetchall()
        return [(str(n), float(c), None if u is None else float(u)) for n, c, u in rows]

    def revoke_app_password(self, address: str, name: str) -> str:
        with self._write() as conn:
            key, stored = self._find_user(conn, address)
            if not conn.execute("DELETE FROM app_passwords WHERE account = ? AND name = ?", (key, name)).rowcount:
                raise DirectoryError(T("%(address)s has no app password named %(name)s",
                                       address=stored, name=repr(name)))
        return stored

    # -- web settings -------------------------------------------------------------------

    def user_settings(self, address: str) -> tuple[str | None, str | None]:
        """(language, sealed TOTP secret) of a user; (None, None) for no such user."""
        try:
            key = _key(parse_address(address))
        except AddressError:
            return None, None
        row = self._conn().execute("SELECT language, totp_secret FROM users WHERE address_key = ?", (key,)).fetchone()
        return (None, None) if row is None else (row[0], row[1])

    def set_language(self, address: str, language: str | None) -> str:
        with self._write() as conn:
            key, stored = self._find_user(conn, address)
            conn.execute("UPDATE users SET language = ? WHERE address_key = ?", (language, key))
        return stored

    def use_totp_step(self, address: str, step: int) -> bool:
        """Record that a login used TOTP step `step`; False when that step (or a later one) was used already."""
        with self._write() as conn:
            key, _ = self._find_user(conn, address)
            return bool(conn.execute("UPDATE users SET totp_last_step = ? WHERE address_key = ? AND totp_last_step < ?",
                                     (step, key, step)).rowcount)

    def set_totp_secret(self, address: str, sealed: str | None) -> str:
        """Store a user's sealed TOTP secret (None: no second factor)."""
        with self._write() as conn:
            key, stored = self._find_user(conn, address)
            conn.execute("UPDATE users SET totp_secret = ? WHERE address_key = ?", (sealed, key))
        return stored

    def _add_scram(self, key: str, stored_hash: str, password: str) -> None:
        """Give a user from before SCRAM its keys, made from the password just verified."""
        scram = _new_scram(password)
        with self._write() as conn:
            # Only if nobody changed the password (which sets new keys) in between.
            changed = conn.execute(
                "UPDATE users SET scram_sha256 = ? WHERE address_key = ? AND password_hash = ? "
                "AND scram_sha256 IS NULL",
                (scram, key, stored_hash),
            ).rowcount
        if changed:
            log.info("SCRAM-SHA-256 keys of %s added at login", key)

    def scram_keys(self, address: str) -> tuple[str, ScramKeys] | None:
        """(lookup key, SCRAM-SHA-256 keys) of a user; None for an unknown or
        malformed address and for a user without keys (not logged in since SCRAM came)."""
        try:
            key = _key(parse_address(address))
        except AddressError:
            return None
        row = self._conn().execute("SELECT scram_sha256 FROM users WHERE address_key = ?", (key,)).fetchone()
        if row is None or row[0] is None:
            return None
        keys = _parse_scram(row[0])
        if keys is None:
            log.error("SCRAM keys of %s are unreadable; reset the password with `hatoba user passwd`", key)
            return None
        return key, keys

    # -- aliases ------------------------------------------------------------------

    def _parse_source(self, conn: sqlite3.Connection, text: str) -> tuple[str, str, str]:
        """(key, display, domain) of an alias source: an address or a catch-all "@domain"."""
        stripped = text.strip(" \t")
        if stripped.startswith("@"):
            domain = self._parse_domain(stripped[1:])
            self._require_domain(conn, domain)
            return f"@{domain}", f"@{domain}", domain
        address = self._parse_local(conn, text, "alias")
        return _key(address), str(address), address.domain

    def add_alias(self, source: str, targets: list[str]) -> list[str]:
        """Add `targets` to the alias `source`; returns the targets that were new.

        `source` is an address in a local domain, or "@domain" for the
        domain's catch-all, used only when no user or alias matches exactly.
        Targets may be users, other aliases, addresses not created yet, or
        addresses in other domains (forwards).
        """
        parsed_targets: dict[str, Address] = {}
        for text in targets:
            if text.strip(" \t").startswith("@"):
                raise DirectoryError(T("alias target %(target)s must be a full address, like user@example.org",
                                       target=repr(text)))
            address = self._parse(text)
            parsed_targets.setdefault(_key(address), address)
        if not parsed_targets:
            raise DirectoryError(T("give at least one alias target address"))
        with self._write() as conn:
            key, display, domain = self._parse_source(conn, source)
            row = conn.execute("SELECT address FROM users WHERE address_key = ?", (key,)).fetchone()
            if row:
                raise DirectoryError(T(
                    "%(address)s is a user; an address cannot be a user and an alias "
                    "(remove the user with `%(command)s`)",
                    address=row[0], command=f"hatoba user remove {row[0]}",
                ))
            existing = set()
            for target_key, stored_source in conn.execute(
                "SELECT target_key, source FROM aliases WHERE source_key = ?", (key,)
            ):
                existing.add(target_key)
                display = stored_source  # keep the spelling the alias was made with
            added = []
            for target_key, address in parsed_targets.items():
                if target_key in existing:
                    continue
                conn.execute(
                    "INSERT INTO aliases (source_key, source, domain, target_key, target, target_domain) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (key, display, domain, target_key, str(address), address.domain),
                )
                added.append(str(address))
            if added:
                self._refuse_loop(conn, key, display,
                                  T("alias %(source)s -> %(targets)s", source=display, targets=", ".join(added)))
        return added

    def remove_alias(self, source: str, target: str | None = None) -> str:
        """Remove one target of an alias, or (target None) the whole alias. Returns the source."""
        with self._write() as conn:
            stripped = source.strip(" \t")
            if stripped.startswith("@"):
                key = display = f"@{self._parse_domain(stripped[1:])}"
            else:
                address = self._parse(source)
                key, display = _key(address), str(address)
            row = conn.execute("SELECT source FROM aliases WHERE source_key = ?", (key,)).fetchone()
            if row is None:
                raise DirectoryError(T("no alias %(source)s; see `hatoba alias list`", source=display))
            display = str(row[0])
            if target is None:
                conn.execute("DELETE FROM aliases WHERE source_key = ?", (key,))
            else:
                target_key = _key(self._parse(target))
                deleted = conn.execute(
                    "DELETE FROM aliases WHERE source_key = ? AND target_key = ?", (key, target_key)
                ).rowcount
                if not deleted:
                    raise DirectoryError(T("%(target)s is not a target of alias %(source)s; see `hatoba alias list`",
                                           target=target, source=display))
            if conn.execute("SELECT 1 FROM aliases WHERE source_key = ?", (key,)).fetchone() is None:
                # The source now falls through to its domain's catch-all.
                self._refuse_loop(conn, key, display, T("removing alias %(source)s", source=display))
        return display

    def list_aliases_of(self, source: str) -> list[str]:
        """The targets of one alias source (an address or "@domain"); [] when it is none."""
        with self._read() as conn:
            rows = conn.execute("SELECT target FROM aliases WHERE source_key = ? ORDER BY id",
                                (source.strip(" \t").lower(),))
            return [row[0] for row in rows]

    def list_aliases(self) -> dict[str, list[str]]:
        """Every alias source with its targets, in the order they were added."""
        aliases: dict[str, list[str]] = {}
        with self._read() as conn:
            for source, target in conn.execute("SELECT source, target FROM aliases ORDER BY source_key, id"):
                aliases.setdefault(source, []).append(target)
        return aliases

    # -- a user's own forwarding -----------------------------------------------------

    @staticmethod
    def _forward_targets(conn: sqlite3.Connection, key: str) -> list[tuple[str, str]]:
        rows = conn.execute("SELECT target_key, target FROM user_forwards WHERE account = ? ORDER BY id", (key,))
        return list(rows)

    def set_forwards(self, address: str, targets: list[str], *, keep_copy: bool = True) -> str:
        """Forward a user's mail to `targets` (replacing any before; [] = forwarding off), keeping
        a copy in the mailbox or not. Refused when it would make a loop, as alias changes are."""
        parsed: dict[str, Address] = {}
        for text in targets:
            if not text.strip(" \t"):
                continue
            if text.strip(" \t").startswith("@"):
                raise DirectoryError(T("forwarding target %(target)s must be a full address, like user@example.org",
                                       target=repr(text)))
            target = self._parse(text)
            parsed.setdefault(_key(target), target)
        if len(parsed) > MAX_FORWARDS:
            raise DirectoryError(T("forward to at most %(count)s addresses", count=MAX_FORWARDS))
        with self._write() as conn:
            key, stored = self._find_user(conn, address)
            if key in parsed:
                raise DirectoryError(T("%(address)s cannot forward to itself; keep a copy instead", address=stored))
            conn.execute("DELETE FROM user_forwards WHERE account = ?", (key,))
            for target_key, target in parsed.items():
                conn.execute("INSERT INTO user_forwards (account, target_key, target) VALUES (?, ?, ?)",
                             (key, target_key, str(target)))
            conn.execute("UPDATE users SET forward_keep = ? WHERE address_key = ?", (int(keep_copy), key))
            if parsed:
                self._refuse_loop(conn, key, stored, T("forwarding %(address)s -> %(targets)s", address=stored,
                                                       targets=", ".join(str(a) for a in parsed.values())))
        return stored

    def forwards(self, address: str) -> tuple[list[str], bool]:
        """(the addresses a user's mail is forwarded to, whether a copy stays in the mailbox)."""
        with self._read() as conn:
            key, _ = self._find_user(conn, address)
            keep = conn.execute("SELECT forward_keep FROM users WHERE address_key = ?", (key,)).fetchone()[0]
            return [target for _, target in self._forward_targets(conn, key)], bool(keep)

    def _refuse_loop(self, conn: sqlite3.Connection, key: str, display: str, change: str) -> None:
        """Inside a write transaction: raise (and so roll back) if `key` now leads into a loop."""
        try:
            self._expand(conn, key, display, [], _Expansion())
        except AliasLoopError as exc:
            raise AliasLoopError(T("%(change)s refused (%(loop)s); change or remove one of those aliases",
                                   change=change, loop=refusal(exc))) from None

    # -- resolution ---------------------------------------------------------------

    def resolve(self, address: str) -> Resolution:
        """Expand aliases into local mailboxes and remote forwards (see Resolution)."""
        with self._read() as conn:
            return self._resolve(conn, address)

    def _resolve(self, conn: sqlite3.Connection, text: str) -> Resolution:
        try:
            address = parse_address(text)
        except AddressError:
            return Resolution(known=False)
        found = _Expansion()
        if not self._is_local(conn, address.domain, found):
            return Resolution(known=True, forwards=(str(address),))
        self._expand(conn, _key(address), str(address), [], found)
        if found.unknown and _key(address) not in found.unknown:
            # Mail to these targets would go nowhere; the rest still gets it.
            unknown = ", ".join(found.unknown.values())
            log.warning("alias targets reached from %s name no user or alias: %s", address, unknown)
        if not found.mailboxes and not found.forwards:
            return Resolution(known=False)
        return Resolution(
            known=True, mailboxes=tuple(found.mailboxes.values()), forwards=tuple(found.forwards.values())
        )

    @staticmethod
    def _is_local(conn: sqlite3.Connection, domain: str, found: _Expansion) -> bool:
        local = found.local_domains.get(domain)
        if local is None:
            local = conn.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone() is not None
            found.local_domains[domain] = local
        return local

    @staticmethod
    def _targets(conn: sqlite3.Connection, source_key: str) -> list[tuple[str, str]]:
        """(target_key, target) of one alias, in the order they were added."""
        rows = conn.execute("SELECT target_key, target FROM aliases WHERE source_key = ? ORDER BY id", (source_key,))
        return list(rows)

    @staticmethod
    def _has_catch_all(conn: sqlite3.Connection, domain: str, found: _Expansion) -> bool:
        has = found.catch_alls.get(domain)
        if has is None:
            row = conn.execute("SELECT 1 FROM aliases WHERE source_key = ?", (f"@{domain}",)).fetchone()
            has = found.catch_alls[domain] = row is not None
        return has

    def _expand(
        self, conn: sqlite3.Connection, key: str, display: str, path: list[tuple[str, str]], found: _Expansion
    ) -> None:
        """Depth-first expansion of one node (an address or a catch-all "@domain") into `found`.

        `path` holds the nodes being expanded above this one: meeting one of
        them again is a loop. A node expanded once is not expanded again
        (diamonds are common: team -> alice, friends; friends -> alice).
        """
        for index, (seen, _) in enumerate(path):
            if seen == key:
                cycle = [name for _, name in path[index:]] + [display]
                raise AliasLoopError(T("alias loop %(cycle)s", cycle=" -> ".join(cycle)))
        if key in found.done:
            return
        if len(path) > MAX_ALIAS_DEPTH:
            raise AliasLoopError(T("aliases nest deeper than %(depth)s levels at %(address)s",
                                   depth=MAX_ALIAS_DEPTH, address=display))
        local, domain = _split_key(key)
        targets: list[tuple[str, str]] = []
        if not local:  # a catch-all node "@domain"
            targets = self._targets(conn, key)
        elif not self._is_local(conn, domain, found):
            found.forwards.setdefault(key, display)
        else:
            row = conn.execute("SELECT address, forward_keep FROM users WHERE address_key = ?", (key,)).fetchone()
            if row is not None:
                # A user ends the expansion, unless the user forwards their mail (and keeps a copy or not).
                targets = self._forward_targets(conn, key)
                if not targets or row[1]:
                    found.mailboxes.setdefault(key, row[0])
            else:
                targets = self._targets(conn, key)
                if not targets:
                    targets = self._fallback(conn, key, domain, found)
                if not targets:
                    found.unknown[key] = display
        if targets:
            path.append((key, display))
            for target_key, target in targets:
                self._expand(conn, target_key, target, path, found)
            path.pop()
        found.done.add(key)

    def _fallback(self, conn: sqlite3.Connection, key: str, domain: str, found: _Expansion) -> list[tuple[str, str]]:
        """Where a local address without user or alias goes: the catch-all, else
        for postmaster@ and abuse@ the postmaster (never itself: no loop)."""
        local, _ = _split_key(key)
        if _is_plain_local(local) and self._has_catch_all(conn, domain, found):
            return [(f"@{domain}", f"@{domain}")]
        if local in ROLE_ACCOUNTS:
            target = self._postmaster(conn)
            if target is not None and target[0] != key:
                return [target]
        return []

    def _postmaster(self, conn: sqlite3.Connection) -> tuple[str, str] | None:
        """(key, address) of the postmaster setting, or of the first user when it is ""."""
        if self.postmaster:
            try:
                address = parse_address(self.postmaster)
            except AddressError:
                log.error("[server] postmaster %r is not an address; postmaster mail is refused", self.postmaster)
                return None
            return _key(address), str(address)
        row = conn.execute("SELECT address_key, address FROM users ORDER BY rowid LIMIT 1").fetchone()
        return None if row is None else (row[0], row[1])

    def postmaster_address(self, domain: str | None = None) -> str | None:
        """postmaster@ `domain` (else the first local domain): what the bare <Postmaster> means."""
        domains = self.list_domains()
        if domain in domains:
            return f"postmaster@{domain}"
        return f"postmaster@{domains[0]}" if domains else None

    def sender_addresses(self, login: str) -> frozenset[str]:
        """The login and every alias source whose expansion reaches its mailbox, lower-cased.

        Walks the alias graph backwards from the login (indexed on targets) to
        find candidate sources, then confirms each with a forward resolution,
        so both directions follow exactly the same rules.
        """
        try:
            login_key = _key(parse_address(login))
        except AddressError:
            return frozenset()
        owned = {login_key}
        with self._read() as conn:
            seen = {login_key}
            frontier = [login_key]
            candidates: list[str] = []
            while frontier:
                node = frontier.pop()
                local, domain = _split_key(node)
                if local:
                    rows = conn.execute(
                        "SELECT DISTINCT source_key, source FROM aliases WHERE target_key = ?", (node,)
                    )
                    predecessors = []
                    for source_key, source in rows:
                        predecessors.append(source_key)
                        if source_key not in seen and not source_key.startswith("@"):
                            candidates.append(source)
                else:
                    # A catch-all is reached from alias targets in its domain
                    # that are neither users nor aliases themselves.
                    rows = conn.execute(
                        "SELECT DISTINCT a.target_key FROM aliases a WHERE a.target_domain = ? "
                        "AND NOT EXISTS (SELECT 1 FROM users u WHERE u.address_key = a.target_key) "
                        "AND NOT EXISTS (SELECT 1 FROM aliases s WHERE s.source_key = a.target_key)",
                        (domain,),
                    )
                    predecessors = [row[0] for row in rows if _is_plain_local(_split_key(row[0])[0])]
                for predecessor in predecessors:
                    if predecessor not in seen:
                        seen.add(predecessor)
                        frontier.append(predecessor)
            for candidate in candidates:
                try:
                    resolution = self._resolve(conn, candidate)
                except AliasLoopError:
                    continue
                if any(mailbox.lower() == login_key for mailbox in resolution.mailboxes):
                    owned.add(candidate.lower())
        return frozenset(owned)




def _count(n: int, noun: str) -> str:
    """"1 user", "2 aliases": a Text for the nouns refusals use, else plain English."""
    if noun == "user":
        return T("%(count)s user", count=n) if n == 1 else T("%(count)s users", count=n)
    if noun == "alias":
        return T("%(count)s alias", count=n) if n == 1 else T("%(count)s aliases", count=n)
    return f"{n} {noun if n == 1 else noun + 's'}"
