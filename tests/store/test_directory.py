"""The SQLite directory: domains, users, passwords, aliases, resolution, sender ownership."""

from __future__ import annotations

import sqlite3
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from hatoba.store.api import AliasLoopError, DirectoryError, Resolution, UserDB
from hatoba.store.directory import _MIGRATIONS, MAX_ALIAS_DEPTH, Directory, check_password
from support.hashing import CountingHasher

# Cheap Argon2 parameters keep the suite fast; the production default is
# exercised by the CLI tests and the timing test below uses heavier ones.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PW = "correct horse"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "directory.sqlite3"


@pytest.fixture
def db(db_path: Path):
    with Directory(db_path, hasher=FAST) as directory:
        directory.add_domain("example.test")
        yield directory


@pytest.fixture
def populated(db: Directory) -> Directory:
    for user in ("alice", "bob", "carol"):
        db.add_user(f"{user}@example.test", f"{user}-password-1")
    db.add_alias("postmaster@example.test", ["alice@example.test"])
    db.add_alias("friends@example.test", ["carol@example.test", "bob@example.test"])
    db.add_alias("team@example.test", ["alice@example.test", "bob@example.test", "friends@example.test"])
    db.add_alias("forward@example.test", ["someone@elsewhere.example"])
    return db


def raw(db_path: Path) -> sqlite3.Connection:
    """A separate plain connection to look at (or damage) the file itself."""
    return sqlite3.connect(db_path, isolation_level=None)


# -- the file --------------------------------------------------------------------


def test_implements_userdb_protocol(db: Directory) -> None:
    userdb: UserDB = db  # checked by mypy; the runtime check below keeps the names honest
    for name in ("is_local_domain", "resolve", "verify_password", "sender_addresses"):
        assert callable(getattr(userdb, name))


def test_file_created_private_in_wal_mode_with_schema_version(db: Directory, db_path: Path) -> None:
    assert db_path.stat().st_mode & 0o777 == 0o600
    conn = raw(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(len(_MIGRATIONS),)]
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"domains", "users", "aliases", "schema_version"} <= tables
    assert db._conn().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_reopen_keeps_data_and_schema(db: Directory, db_path: Path) -> None:
    db.add_user("alice@example.test", PW)
    db.close()
    with Directory(db_path, hasher=FAST) as again:
        assert again.list_users() == ["alice@example.test"]
    assert raw(db_path).execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1


def test_missing_folder_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match=r"does not exist; create it or run `hatoba init`"):
        Directory(tmp_path / "nope" / "directory.sqlite3")


def test_newer_schema_refused(db: Directory, db_path: Path) -> None:
    raw(db_path).execute("UPDATE schema_version SET version = 99")
    with pytest.raises(DirectoryError, match=r"schema version 99, newer .* upgrade hatoba"):
        Directory(db_path)


def test_not_a_database_refused(tmp_path: Path) -> None:
    path = tmp_path / "directory.sqlite3"
    path.write_bytes(b"this is not sqlite at all, just some text that is long enough" * 20)
    with pytest.raises(DirectoryError, match=r"^cannot open the directory database"):
        Directory(path)


# -- domains ---------------------------------------------------------------------


def test_domains_normalised_listed_and_local(db: Directory) -> None:
    assert db.add_domain("Example.ORG.") == "example.org"
    assert db.add_domain("Bücher.example") == "xn--bcher-kva.example"
    assert db.list_domains() == ["example.org", "example.test", "xn--bcher-kva.example"]
    assert db.is_local_domain("example.org")
    assert db.is_local_domain("EXAMPLE.org")
    assert not db.is_local_domain("elsewhere.example")


def test_domain_errors(db: Directory) -> None:
    with pytest.raises(DirectoryError, match=r"^example.test is already a local domain$"):
        db.add_domain("EXAMPLE.test")
    with pytest.raises(DirectoryError, match=r"is not a valid domain name"):
        db.add_domain("bad_domain!.test")
    with pytest.raises(DirectoryError, match=r"is not a valid domain name: an address literal"):
        db.add_domain("[127.0.0.1]")
    with pytest.raises(DirectoryError, match=r"^other.test is not a local domain: add it first with"):
        db.remove_domain("other.test")


def test_remove_domain_refused_while_in_use(db: Directory) -> None:
    db.add_user("alice@example.test", PW)
    db.add_user("bob@example.test", PW)
    db.add_alias("team@example.test", ["alice@example.test", "bob@example.test"])
    with pytest.raises(DirectoryError) as info:
        db.remove_domain("example.test")
    message = str(info.value)
    assert "example.test still has 2 users and 1 alias" in message
    assert "`hatoba user remove ADDRESS`" in message and "`hatoba alias remove SOURCE`" in message
    assert "\n" not in message
    db.remove_alias("team@example.test")
    db.remove_user("alice@example.test")
    with pytest.raises(DirectoryError, match=r"still has 1 user and 0 aliases"):
        db.remove_domain("example.test")
    db.remove_user("bob@example.test")
    assert db.remove_domain("example.test") == "example.test"
    assert db.list_domains() == []
    assert not db.is_local_domain("example.test")


# -- users -----------------------------------------------------------------------


def test_add_list_and_find_users(db: Directory) -> None:
    db.add_domain("example.org")
    assert db.add_user("Bob@Example.TEST", PW) == "Bob@example.test"
    db.add_user("alice@example.test", PW)
    db.add_user("zed@example.org", PW)
    assert db.list_users() == ["alice@example.test", "Bob@example.test", "zed@example.org"]
    assert db.list_users("example.org") == ["zed@example.org"]
    assert db.list_users("EXAMPLE.TEST") == ["alice@example.test", "Bob@example.test"]
    assert db.user_exists("bob@example.test")
    assert db.user_exists("BOB@EXAMPLE.TEST")
    assert not db.user_exists("carol@example.test")
    assert not db.user_exists("not an address")


def test_user_errors(db: Directory) -> None:
    with pytest.raises(DirectoryError) as info:
        db.add_user("alice@example.org", PW)
    assert str(info.value) == (
        "example.org is not a local domain: add it first with `hatoba domain add example.org`"
    )
    db.add_user("alice@example.test", PW)
    with pytest.raises(DirectoryError, match=r"^user alice@example.test already exists"):
        db.add_user("ALICE@example.test", PW)
    with pytest.raises(DirectoryError, match=r"is not a valid address"):
        db.add_user("alice.example.test", PW)
    with pytest.raises(DirectoryError, match=r"^no user bob@example.test; see `hatoba user list`$"):
        db.set_password("bob@example.test", PW)
    with pytest.raises(DirectoryError, match=r"^no user bob@example.test"):
        db.remove_user("bob@example.test")
    with pytest.raises(DirectoryError, match=r"^example.org is not a local domain"):
        db.list_users("example.org")
    assert db.list_users() == ["alice@example.test"]


@pytest.mark.parametrize(
    "address",
    ["a%b@example.test", "a!b@example.test", '"a@b"@example.test', '"a b"@example.test', '"ab"@example.test'],
)
def test_routing_characters_refused_in_users_and_alias_sources(db: Directory, address: str) -> None:
    with pytest.raises(DirectoryError, match=r"local parts may not hold '%', '!', '@', quotes or spaces"):
        db.add_user(address, PW)
    with pytest.raises(DirectoryError, match=r"local parts may not hold"):
        db.add_alias(address, ["someone@elsewhere.example"])
    assert db.list_users() == [] and db.list_aliases() == {}


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", r"^the password is empty"),
        ("seven77", r"^the password is too short \(7 characters\); use at least 8$"),
        ("with\x00nul-inside", r"control character"),
        ("tab\there-and-more", r"control character"),
    ],
)
def test_bad_passwords_refused(db: Directory, password: str, message: str) -> None:
    with pytest.raises(DirectoryError, match=message):
        db.add_user("alice@example.test", password)
    assert not db.user_exists("alice@example.test")
    db.add_user("alice@example.test", PW)
    with pytest.raises(DirectoryError, match=message):
        db.set_password("alice@example.test", password)
    assert db.verify_password("alice@example.test", PW)


def test_check_password_counts_characters_not_bytes() -> None:
    assert check_password("éééééééé") == "éééééééé"
    with pytest.raises(DirectoryError, match="too short"):
        check_password("ééééééé")


def test_user_and_alias_source_exclude_each_other(db: Directory) -> None:
    db.add_user("alice@example.test", PW)
    db.add_alias("team@example.test", ["alice@example.test"])
    with pytest.raises(DirectoryError) as info:
        db.add_user("Team@example.test", PW)
    assert str(info.value) == "team@example.test is an alias; remove it first with `hatoba alias remove team@example.test`"
    with pytest.raises(DirectoryError, match=r"^alice@example.test is a user; an address cannot be"):
        db.add_alias("ALICE@example.test", ["bob@elsewhere.example"])
    assert db.list_aliases() == {"team@example.test": ["alice@example.test"]}


def test_check_new_user(db: Directory) -> None:
    assert db.check_new_user("Carol@EXAMPLE.test") == "Carol@example.test"
    db.add_user("carol@example.test", PW)
    with pytest.raises(DirectoryError, match="already exists"):
        db.check_new_user("carol@example.test")


def test_remove_user(db: Directory) -> None:
    db.add_user("alice@example.test", PW)
    assert db.remove_user("ALICE@example.test") == "alice@example.test"
    assert not db.user_exists("alice@example.test")
    assert not db.verify_password("alice@example.test", PW)
    assert db.resolve("alice@example.test") == Resolution(known=False)


# -- passwords -------------------------------------------------------------------


def test_verify_password(db: Directory, db_path: Path) -> None:
    db.add_user("alice@example.test", PW)
    assert db.verify_password("alice@example.test", PW)
    assert db.verify_password("Alice@EXAMPLE.TEST", PW)  # the login ignores case
    assert not db.verify_password("alice@example.test", PW.upper())
    assert not db.verify_password("alice@example.test", "")
    assert not db.verify_password("nobody@example.test", PW)
    assert not db.verify_password("not an address", PW)
    (stored,) = raw(db_path).execute("SELECT password_hash FROM users").fetchone()
    assert stored.startswith("$argon2id$") and PW not in stored


def test_set_password_replaces_the_old_one(db: Directory) -> None:
    db.add_user("alice@example.test", PW)
    assert db.set_password("ALICE@example.test", "another secret") == "alice@example.test"
    assert not db.verify_password("alice@example.test", PW)
    assert db.verify_password("alice@example.test", "another secret")


def test_passwords_compared_after_nfc_normalisation(db: Directory) -> None:
    db.add_user("alice@example.test", "caf\u00e9-password")  # precomposed é
    assert db.verify_password("alice@example.test", "cafe\u0301-password")  # e + combining accent


def test_default_hasher_is_argon2id_rfc9106_low_memory(db_path: Path) -> None:
    directory = Directory(db_path)
    params = directory._hasher  # what a server built with Directory(path) uses
    assert (params.time_cost, params.memory_cost, params.parallelism) == (3, 65536, 4)
    directory.close()


def test_hash_upgraded_when_parameters_change(db: Directory, db_path: Path) -> None:
    db.add_user("alice@example.test", PW)
    (old,) = raw(db_path).execute("SELECT password_hash FROM users").fetchone()
    stronger = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    with Directory(db_path, hasher=stronger) as upgraded:
        assert not upgraded.verify_password("alice@example.test", "wrong password")
        assert raw(db_path).execute("SELECT password_hash FROM users").fetchone()[0] == old
        assert upgraded.verify_password("alice@example.test", PW)
    (new,) = raw(db_path).execute("SELECT password_hash FROM users").fetchone()
    assert new != old and "m=2048,t=2,p=1" in new
    assert db.verify_password("alice@example.test", PW)  # the old parameters still read it


def test_unreadable_hash_fails_closed(db: Directory, db_path: Path) -> None:
    db.add_user("alice@example.test", PW)
    raw(db_path).execute("UPDATE users SET password_hash = 'garbage'")
    assert not db.verify_password("alice@example.test", PW)


def test_unknown_users_cost_as_much_as_known_ones(db_path: Path) -> None:
    hasher = PasswordHasher(time_cost=1, memory_cost=16384, parallelism=1)
    with Directory(db_path, hasher=hasher) as directory:
        directory.add_domain("example.test")
        directory.add_user("alice@example.test", PW)
        directory.verify_password("warm-up@example.test", PW)  # makes the dummy hash once

        def median(login: str) -> float:
            times = []
            for _ in range(7):
                start = time.perf_counter()
                directory.verify_password(login, "wrong password")
                times.append(time.perf_counter() - start)
            return statistics.median(times)

        known = median("alice@example.test")
        assert median("nobody@example.test") >= known / 2
        assert median("not an address") >= known / 2


# -- aliases ---------------------------------------------------------------------


def test_add_list_remove_aliases(db: Directory) -> None:
    db.add_user("alice@example.test", PW)
    assert db.add_alias("Team@example.test", ["alice@example.test", "Bob@Elsewhere.example"]) == [
        "alice@example.test",
        "Bob@elsewhere.example",
    ]
    # Adding targets again: only the new ones count, case ignored.
    assert db.add_alias("team@example.test", ["ALICE@example.test", "carol@example.test"]) == ["carol@example.test"]
    assert db.add_alias("team@example.test", ["carol@example.test"]) == []
    db.add_alias("@example.test", ["alice@example.test"])
    assert db.list_aliases() == {
        "@example.test": ["alice@example.test"],
        "Team@example.test": ["alice@example.test", "Bob@elsewhere.example", "carol@example.test"],
    }
    assert db.remove_alias("team@example.test", "bob@elsewhere.example") == "Team@example.test"
    assert db.list_aliases()["Team@example.test"] == ["alice@example.test", "carol@example.test"]
    db.remove_alias("team@example.test", "alice@example.test")
    db.remove_alias("team@example.test", "carol@example.test")  # the last target: the alias goes
    assert db.remove_alias("@Example.TEST") == "@example.test"
    assert db.list_aliases() == {}


def test_alias_errors(db: Directory) -> None:
    with pytest.raises(DirectoryError, match=r"^elsewhere.example is not a local domain: add it first"):
        db.add_alias("x@elsewhere.example", ["alice@example.test"])
    with pytest.raises(DirectoryError, match=r"^other.test is not a local domain"):
        db.add_alias("@other.test", ["alice@example.test"])
    with pytest.raises(DirectoryError, match=r"must be a full address"):
        db.add_alias("x@example.test", ["@elsewhere.example"])
    with pytest.raises(DirectoryError, match=r"^give at least one alias target"):
        db.add_alias("x@example.test", [])
    with pytest.raises(DirectoryError, match=r"is not a valid address"):
        db.add_alias("x@example.test", ["no-at-sign"])
    with pytest.raises(DirectoryError, match=r"is not a valid address"):
        db.add_alias("x@", ["a@example.test"])
    with pytest.raises(DirectoryError, match=r"^no alias x@example.test; see `hatoba alias list`$"):
        db.remove_alias("x@example.test")
    db.add_alias("x@example.test", ["a@elsewhere.example"])
    with pytest.raises(DirectoryError, match=r"^b@elsewhere.example is not a target of alias x@example.test"):
        db.remove_alias("x@example.test", "b@elsewhere.example")
    assert db.list_aliases() == {"x@example.test": ["a@elsewhere.example"]}


@pytest.mark.parametrize(
    ("existing", "source", "targets", "cycle"),
    [
        ([], "a@example.test", ["a@example.test"], "a@example.test -> a@example.test"),
        (
            [("a@example.test", ["b@example.test"])],
            "b@example.test",
            ["x@elsewhere.example", "A@example.test"],
            "b@example.test -> A@example.test -> b@example.test",
        ),
        (
            [("a@example.test", ["b@example.test"]), ("b@example.test", ["c@example.test"])],
            "c@example.test",
            ["a@example.test"],
            "c@example.test -> a@example.test -> b@example.test -> c@example.test",
        ),
        # A catch-all pointing at an address that does not exist falls back on itself.
        ([], "@example.test", ["nobody@example.test"], "@example.test -> nobody@example.test -> @example.test"),
        (
            [("x@example.test", ["w@elsewhere.example"]), ("@example.test", ["x@example.test"])],
            "x@example.test",
            ["y@example.test"],
            "x@example.test -> y@example.test -> @example.test -> x@example.test",
        ),
    ],
)
def test_alias_loops_refused_naming_the_cycle(db: Directory, existing, source, targets, cycle) -> None:
    for src, tgts in existing:
        db.add_alias(src, tgts)
    before = db.list_aliases()
    with pytest.raises(AliasLoopError) as info:
        db.add_alias(source, targets)
    assert f"(alias loop {cycle})" in str(info.value)
    assert "\n" not in str(info.value)
    assert db.list_aliases() == before  # nothing of the refused change was kept


def test_removing_a_user_or_alias_refused_when_the_catch_all_would_loop(db: Directory) -> None:
    db.add_user("x@example.test", PW)
    db.add_alias("y@example.test", ["z@elsewhere.example"])
    db.add_alias("@example.test", ["x@example.test", "y@example.test"])
    loop = r"\(alias loop x@example.test -> @example.test -> x@example.test\)"
    with pytest.raises(AliasLoopError, match=r"^removing user x@example.test refused " + loop):
        db.remove_user("x@example.test")
    assert db.user_exists("x@example.test")
    with pytest.raises(AliasLoopError, match=r"^removing alias y@example.test refused"):
        db.remove_alias("y@example.test")
    assert db.list_aliases()["y@example.test"] == ["z@elsewhere.example"]


def test_alias_nesting_depth_limited_at_add_time(db: Directory) -> None:
    db.add_user("end@example.test", PW)
    previous = "end@example.test"
    for level in range(MAX_ALIAS_DEPTH):
        db.add_alias(f"a{level}@example.test", [previous])
        previous = f"a{level}@example.test"
    assert db.resolve(previous).mailboxes == ("end@example.test",)
    with pytest.raises(AliasLoopError, match=rf"aliases nest deeper than {MAX_ALIAS_DEPTH} levels"):
        db.add_alias("too-deep@example.test", [previous])


# -- resolution ------------------------------------------------------------------


def test_resolve_users_aliases_and_forwards(populated: Directory) -> None:
    db = populated
    assert db.resolve("Alice@EXAMPLE.test") == Resolution(True, ("alice@example.test",))
    # Nested, multi-target, with bob reached twice: one mailbox each.
    assert db.resolve("team@example.test") == Resolution(
        True, ("alice@example.test", "bob@example.test", "carol@example.test")
    )
    assert db.resolve("forward@example.test") == Resolution(True, (), ("someone@elsewhere.example",))
    assert db.resolve("nobody@example.test") == Resolution(known=False)
    assert db.resolve("Anyone@Elsewhere.example") == Resolution(True, (), ("Anyone@elsewhere.example",))
    assert db.resolve("not an address") == Resolution(known=False)


def test_resolve_mixes_mailboxes_and_forwards_without_duplicates(populated: Directory) -> None:
    db = populated
    db.add_alias("all@example.test", ["team@example.test", "forward@example.test", "Someone@elsewhere.example"])
    db.add_alias("all@example.test", ["postmaster@example.test", "BOB@example.test"])
    assert db.resolve("all@example.test") == Resolution(
        True,
        ("alice@example.test", "bob@example.test", "carol@example.test"),
        ("someone@elsewhere.example",),
    )


def test_catch_all_only_when_nothing_matches_exactly(populated: Directory) -> None:
    db = populated
    db.add_alias("@example.test", ["carol@example.test", "archive@elsewhere.example"])
    assert db.resolve("random@example.test") == Resolution(
        True, ("carol@example.test",), ("archive@elsewhere.example",)
    )
    assert db.resolve("bob@example.test") == Resolution(True, ("bob@example.test",))
    assert db.resolve("postmaster@example.test") == Resolution(True, ("alice@example.test",))
    # Local parts that route elsewhere never reach the catch-all.
    assert db.resolve("a%b@example.test") == Resolution(known=False)
    assert db.resolve('"a@b"@example.test') == Resolution(known=False)


def test_dangling_alias_targets_are_dropped(db: Directory) -> None:
    db.add_user("alice@example.test", PW)
    db.add_alias("loop1@example.test", ["loop2@example.test"])
    assert db.resolve("loop1@example.test") == Resolution(known=False)
    db.add_alias("half@example.test", ["gone@example.test", "alice@example.test"])
    assert db.resolve("half@example.test") == Resolution(True, ("alice@example.test",))
    db.add_user("loop2@example.test", PW)  # an alias may be made before its user
    assert db.resolve("loop1@example.test") == Resolution(True, ("loop2@example.test",))


def test_loop_in_the_database_raises_at_resolve(db: Directory, db_path: Path) -> None:
    # Written behind the directory's back (an old version, a manual edit).
    conn = raw(db_path)
    for source, target in (("a@example.test", "b@example.test"), ("b@example.test", "a@example.test")):
        conn.execute(
            "INSERT INTO aliases (source_key, source, domain, target_key, target, target_domain) "
            "VALUES (?, ?, 'example.test', ?, ?, 'example.test')",
            (source, source, target, target),
        )
    with pytest.raises(AliasLoopError, match=r"alias loop a@example.test -> b@example.test -> a@example.test"):
        db.resolve("a@example.test")
    assert db.sender_addresses("a@example.test") == frozenset({"a@example.test"})


def test_depth_guard_at_resolve(db: Directory, db_path: Path) -> None:
    conn = raw(db_path)
    for level in range(MAX_ALIAS_DEPTH + 2):
        conn.execute(
            "INSERT INTO aliases (source_key, source, domain, target_key, target, target_domain) "
            "VALUES (?, ?, 'example.test', ?, ?, 'example.test')",
            (f"a{level}@example.test",) * 2 + (f"a{level + 1}@example.test",) * 2,
        )
    with pytest.raises(AliasLoopError, match=r"deeper than 20 levels"):
        db.resolve("a0@example.test")


# -- sender addresses ------------------------------------------------------------


def test_sender_addresses(populated: Directory) -> None:
    db = populated
    assert db.sender_addresses("Alice@example.test") == frozenset(
        {"alice@example.test", "postmaster@example.test", "team@example.test"}
    )
    assert db.sender_addresses("carol@example.test") == frozenset(
        {"carol@example.test", "friends@example.test", "team@example.test"}
    )
    db.add_user("dave@example.test", PW)
    assert db.sender_addresses("dave@example.test") == frozenset({"dave@example.test"})
    assert db.sender_addresses("not an address") == frozenset()


def test_sender_addresses_through_a_catch_all(populated: Directory) -> None:
    db = populated
    db.add_alias("Old@example.test", ["gone@example.test"])  # gone falls to the catch-all
    db.add_alias("@example.test", ["carol@example.test"])
    owned = db.sender_addresses("carol@example.test")
    assert "old@example.test" in owned
    assert not any(address.startswith("@") for address in owned)  # a catch-all is not an address
    assert "old@example.test" not in db.sender_addresses("alice@example.test")


# -- threads and processes -------------------------------------------------------


def test_threads_each_get_a_connection_and_see_each_others_writes(populated: Directory, db_path: Path) -> None:
    db = populated
    idents = set()

    def work(n: int) -> Resolution:
        idents.add(id(db._conn()))
        if n % 5 == 0:
            db.add_user(f"user{n}@example.test", PW)
        return db.resolve("team@example.test")

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, range(40)))
    assert all(r.mailboxes == ("alice@example.test", "bob@example.test", "carol@example.test") for r in results)
    assert len(idents) >= 2
    # A second Directory on the same file (the CLI beside a running server).
    with Directory(db_path, hasher=FAST) as other:
        assert other.user_exists("user35@example.test")
        other.add_user("late@example.test", PW)
    assert db.verify_password("late@example.test", PW)


def test_close_closes_connections_opened_in_other_threads(db: Directory) -> None:
    thread = threading.Thread(target=db.list_domains)
    thread.start()
    thread.join()
    opened = list(db._connections._all)
    assert len(opened) == 2  # this thread's (the fixture's) and the other thread's
    db.close()
    for conn in opened:
        with pytest.raises(sqlite3.ProgrammingError):  # closed
            conn.execute("SELECT 1")
    assert db.list_domains() == ["example.test"]  # reopens on demand


def test_version_1_database_gains_the_apop_column(tmp_path: Path) -> None:
    import sqlite3

    from hatoba.store.directory import _MIGRATIONS

    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    for statement in _MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.execute("INSERT INTO domains VALUES ('example.test', 0)")
    conn.execute("INSERT INTO users VALUES ('a@example.test', 'a@example.test', 'example.test', 'x', 0)")
    conn.commit()
    conn.close()
    with Directory(path) as db:
        assert db.apop_secret("a@example.test") is None
        db.set_apop_secret("a@example.test", "sealed")
        assert db.apop_secret("A@example.test") == "sealed"
    assert raw(path).execute("SELECT version FROM schema_version").fetchall() == [(len(_MIGRATIONS),)]


def test_login_cache_skips_argon2_for_a_repeated_login_only(db: Directory) -> None:
    db.add_user("alice@example.test", PW)
    db.login_cache_seconds = 60
    db._hasher = counting = CountingHasher(db._hasher)
    assert db.verify_password("alice@example.test", PW)
    assert db.verify_password("alice@example.test", PW)
    assert len(counting.calls) == 1  # the second login was remembered
    cached = list(db.login_cache._entries.items())
    assert len(cached) == 1, cached  # what it remembers holds no password in clear
    assert all(PW not in repr(entry) and PW.encode() not in entry[1][0] for entry in cached)
    assert not db.verify_password("alice@example.test", PW + "x")  # a wrong one is always checked
    assert len(counting.calls) == 2
    db.set_password("alice@example.test", "another secret")  # a new hash: the cache misses
    assert not db.verify_password("alice@example.test", PW)
    assert db.verify_password("alice@example.test", "another secret")
    db.remove_user("alice@example.test")
    assert not db.verify_password("alice@example.test", "another secret")
    assert all(PW not in repr(v) for v in db.login_cache._entries.values())


def test_login_cache_entries_expire(db: Directory) -> None:
    db.add_user("alice@example.test", PW)
    db.login_cache_seconds = 60
    assert db.verify_password("alice@example.test", PW)
    key = next(iter(db.login_cache._entries))
    proof, until = db.login_cache._entries[key]
    db.login_cache._entries[key] = (proof, until - 61)  # as if its time had passed
    db._hasher = counting = CountingHasher(db._hasher)
    assert db.verify_password("alice@example.test", PW)
    assert counting.calls == [PW]


def test_per_user_quota(db: Directory) -> None:
    db.add_user("alice@example.test", PW)
    assert db.quota_mb("alice@example.test") is None  # the server default applies
    db.set_quota("Alice@example.test", 50)
    assert db.quota_mb("alice@example.test") == 50
    db.set_quota("alice@example.test", 0)
    assert db.quota_mb("alice@example.test") == 0
    db.set_quota("alice@example.test", None)
    assert db.quota_mb("alice@example.test") is None
    assert db.quota_mb("nobody@example.test") is None
    with pytest.raises(DirectoryError):
        db.set_quota("alice@example.test", -1)
    with pytest.raises(DirectoryError):
        db.set_quota("nobody@example.test", 5)
