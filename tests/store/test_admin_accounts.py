"""Administrators, app passwords and web sessions in the directory database (real SQLite)."""

from __future__ import annotations

import re

import pytest
from argon2 import PasswordHasher

from hatoba.store import app_passwords as AP
from hatoba.store.api import DirectoryError
from hatoba.store.directory import Directory
from hatoba.store.roles import Roles
from hatoba.store.web_sessions import IDLE, LIFETIME, WebSessions

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def db(tmp_path):
    with Directory(tmp_path / "directory.sqlite3", hasher=FAST) as directory:
        directory.add_domain("example.test")
        directory.add_domain("school.example")
        directory.add_user("alice@example.test", "alice-password-1")
        directory.add_user("head@school.example", "head-password-1")
        yield directory


# -- roles ------------------------------------------------------------------------------------------


def test_grants_name_the_server_or_domains_and_need_a_user_and_a_local_domain(db):
    roles = Roles(db.path)
    assert roles.grant("Alice@Example.test", "server") == ("alice@example.test", "*")
    assert roles.grant("head@school.example", "School.Example") == ("head@school.example", "school.example")
    assert roles.grants("alice@example.test").server
    head = roles.grants("head@school.example")
    assert not head.server and head.domains == {"school.example"}
    assert head.may_manage("SCHOOL.example") and not head.may_manage("example.test")
    assert not roles.grants("nobody@example.test").is_admin
    with pytest.raises(DirectoryError, match="no user"):
        roles.grant("ghost@example.test", "server")
    with pytest.raises(DirectoryError, match="not a local domain"):
        roles.grant("alice@example.test", "elsewhere.example")
    with pytest.raises(DirectoryError, match="does not administer"):
        roles.revoke("alice@example.test", "school.example")
    assert roles.listing() == [("alice@example.test", "server"), ("head@school.example", "school.example")]
    roles.revoke("alice@example.test", "server")
    assert not roles.grants("alice@example.test").is_admin
    roles.close()


def test_a_removed_user_or_domain_takes_its_roles_app_passwords_and_sessions_along(db):
    roles, sessions = Roles(db.path), WebSessions(db.path)
    roles.grant("head@school.example", "school.example")
    db.add_app_password("head@school.example", "phone")
    token, _ = sessions.create("head@school.example", verified=True)
    db.remove_user("head@school.example")
    db.add_user("head@school.example", "head-password-2")  # made again: starts with nothing
    assert not roles.grants("head@school.example").is_admin
    assert db.app_passwords("head@school.example") == []
    assert sessions.find(token) is None
    roles.grant("alice@example.test", "school.example")
    db.remove_user("head@school.example")
    db.remove_domain("school.example")
    assert roles.listing() == []
    roles.close()
    sessions.close()


# -- app passwords ------------------------------------------------------------------------------------


def test_app_passwords_log_in_to_mail_but_not_to_the_web_and_stop_when_revoked(db):
    address, password = db.add_app_password("alice@example.test", "  Alice's   phone ")
    assert address == "alice@example.test"
    assert re.fullmatch(r"([a-z2-9]{4}-){5}[a-z2-9]{4}", password) and AP.looks_like_app_password(password)
    assert not set(password) & set("01lo")
    assert db.authenticate("ALICE@example.test", password) == "alice@example.test"
    assert db.authenticate("alice@example.test", password.replace("-", "").upper()) == "alice@example.test"
    assert db.authenticate("alice@example.test", password, app_passwords=False) is None
    assert db.authenticate("head@school.example", password) is None  # another user's
    assert db.authenticate("alice@example.test", "alice-password-1") == "alice@example.test"
    [(name, created, used)] = db.app_passwords("alice@example.test")
    assert name == "Alice's phone" and created > 0 and used is not None
    with pytest.raises(DirectoryError, match="already has"):
        db.add_app_password("alice@example.test", "Alice's phone")
    db.revoke_app_password("alice@example.test", "Alice's phone")
    assert db.authenticate("alice@example.test", password) is None
    with pytest.raises(DirectoryError, match="no app password"):
        db.revoke_app_password("alice@example.test", "Alice's phone")


def test_app_password_names_and_counts_are_bounded(db):
    for bad in ("", "   ", "x" * (AP.MAX_NAME + 1), "tab\there\x00"):
        with pytest.raises(DirectoryError, match="name"):
            db.add_app_password("alice@example.test", bad)
    for n in range(AP.MAX_PER_USER):
        db.add_app_password("alice@example.test", f"device {n}")
    with pytest.raises(DirectoryError, match="most allowed"):
        db.add_app_password("alice@example.test", "one more")
    with pytest.raises(DirectoryError, match="no user"):
        db.add_app_password("ghost@example.test", "phone")


def test_only_passwords_of_the_app_shape_are_looked_up():
    assert AP.looks_like_app_password(AP.new_app_password())
    for other in ("alice-password-1", "abcd-efgh-ijkm-npqr-stuv", "abcd-efgh-ijkm-npqr-stuv-wxyz-2345", "0000-" * 5 + "0000", ""):
        assert not AP.looks_like_app_password(other)
    assert len({AP.new_app_password() for _ in range(200)}) == 200


# -- web sessions -----------------------------------------------------------------------------------


def test_sessions_end_when_idle_too_long_after_their_lifetime_at_logout_and_on_a_new_password(db):
    now = [1_000_000.0]
    sessions = WebSessions(db.path, clock=lambda: now[0])
    token, session = sessions.create("alice@example.test", verified=False)
    found = sessions.find(token)
    assert found is not None and found.account == "alice@example.test" and found.csrf == session.csrf
    assert not found.verified
    assert sessions.find(token + "x") is None and sessions.find("") is None
    now[0] += IDLE - 5
    assert sessions.find(token) is not None  # used: its idle clock starts again
    now[0] += IDLE - 5
    assert sessions.find(token) is not None
    now[0] += IDLE + 1
    assert sessions.find(token) is None  # idle too long
    token, _ = sessions.create("alice@example.test", verified=True)
    for _ in range(int(LIFETIME // (IDLE - 60)) + 1):
        now[0] += IDLE - 60
        sessions.find(token)
    assert sessions.find(token) is None  # kept busy, still ends after its lifetime
    token, _ = sessions.create("alice@example.test", verified=True)
    other, _ = sessions.create("head@school.example", verified=True)
    db.set_password("alice@example.test", "alice-password-2")
    assert sessions.find(token) is None and sessions.find(other) is not None
    sessions.end(other)
    assert sessions.find(other) is None
    # Only a hash of the token is stored.
    rows = sessions._conn().execute("SELECT token_hash FROM web_sessions").fetchall()  # noqa: SLF001
    assert all(token.encode() not in bytes(r[0]) for r in rows)
    sessions.close()


def test_language_and_second_factor_settings(db):
    assert db.user_settings("alice@example.test") == (None, None)
    db.set_language("alice@example.test", "ja")
    db.set_totp_secret("alice@example.test", "sealed")
    assert db.user_settings("Alice@example.test") == ("ja", "sealed")
    assert db.user_settings("ghost@example.test") == (None, None)


# -- a user's own forwarding --------------------------------------------------------------------------------


def test_forwarding_sends_a_users_mail_on_with_or_without_a_copy_and_never_in_a_loop(db):
    db.add_user("bob@example.test", "bob-password-1")
    db.add_alias("team@example.test", ["alice@example.test"])
    assert db.forwards("alice@example.test") == ([], True)
    db.set_forwards("Alice@example.test", ["bob@example.test", "Friend@Elsewhere.example", "bob@EXAMPLE.test"])
    assert db.forwards("alice@example.test") == (["bob@example.test", "Friend@elsewhere.example"], True)
    found = db.resolve("team@example.test")  # through an alias too
    assert set(found.mailboxes) == {"alice@example.test", "bob@example.test"}
    assert found.forwards == ("Friend@elsewhere.example",)
    db.set_forwards("alice@example.test", ["bob@example.test"], keep_copy=False)
    assert db.resolve("alice@example.test").mailboxes == ("bob@example.test",)
    with pytest.raises(DirectoryError, match="loop"):
        db.set_forwards("bob@example.test", ["team@example.test"])
    assert db.forwards("bob@example.test") == ([], True)  # the refused change left nothing behind
    with pytest.raises(DirectoryError, match="itself"):
        db.set_forwards("alice@example.test", ["ALICE@example.test"])
    with pytest.raises(DirectoryError, match="full address"):
        db.set_forwards("alice@example.test", ["@elsewhere.example"])
    with pytest.raises(DirectoryError, match="at most"):
        db.set_forwards("alice@example.test", [f"x{n}@elsewhere.example" for n in range(21)])
    db.set_forwards("alice@example.test", [])
    assert db.resolve("alice@example.test").mailboxes == ("alice@example.test",)
    db.set_forwards("alice@example.test", ["bob@example.test"])
    db.remove_user("alice@example.test")
    db.add_user("alice@example.test", "alice-password-1")
    assert db.forwards("alice@example.test") == ([], True)


def test_an_account_keeps_at_most_twenty_sessions_the_oldest_end_first(db):
    from hatoba.store.web_sessions import MAX_PER_ACCOUNT

    now = [2_000_000.0]
    sessions = WebSessions(db.path, clock=lambda: now[0])
    tokens = []
    for _ in range(MAX_PER_ACCOUNT + 5):
        now[0] += 1
        tokens.append(sessions.create("alice@example.test", verified=True)[0])
    other, _ = sessions.create("head@school.example", verified=True)
    assert [sessions.find(t) is not None for t in tokens] == [False] * 5 + [True] * MAX_PER_ACCOUNT
    assert sessions.find(other) is not None
    sessions.close()


def test_sender_lists_are_bounded(db):
    from hatoba.store.spamlists import MAX_ENTRIES, SpamListError, SpamLists

    lists = SpamLists(db.path)
    for n in range(MAX_ENTRIES):
        lists.set("alice@example.test", f"s{n}@spam.example", "block")
    lists.set("alice@example.test", "s0@spam.example", "allow")  # changing one is not adding one
    with pytest.raises(SpamListError, match="most allowed"):
        lists.set("alice@example.test", "one-more@spam.example", "block")
    lists.close()
