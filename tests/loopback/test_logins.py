"""Logins under attack and in a crowded office, with real clients on loopback.

Client addresses other than 127.0.0.1 (127.0.0.2, ...) play other machines:
Linux routes all of 127/8 to loopback, so a client can bind any of them.
Every test here uses the throttle's defaults, as an operator gets them.
"""

from __future__ import annotations

import asyncio
import imaplib
import logging
import re
import smtplib
import time

import pytest
from argon2 import PasswordHasher

from support.harness import PASSWORDS, ServerThread
from support.logins import BUSY, FAILED, OK, THROTTLED, login

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"
MIXED = ("imaps", "pop3s", "submission")


def _ports(srv: ServerThread) -> dict[str, int]:
    return {name: srv.port(name) for name in ("imaps", "pop3s", "submission", "smtp", "imap", "pop3", "smtps")}


async def _flood(srv, ctx, account: str, count: int, *, source: str, parallel: int, protos=MIXED):
    """`count` wrong passwords for `account`, `parallel` at a time; the outcomes."""
    ports = _ports(srv)
    gate = asyncio.Semaphore(parallel)

    async def one(i: int):
        proto = protos[i % len(protos)]
        async with gate:
            return await login(proto, ports[proto], ctx, account, f"wrong-{i}", source=source)

    return await asyncio.gather(*(one(i) for i in range(count)))


async def _greets_quickly(srv) -> dict[str, float]:
    """Seconds each listener takes to greet a new client."""
    seconds = {}
    for name in ("smtp", "submission", "pop3", "imap"):
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port(name))
        await asyncio.wait_for(reader.readline(), 5)
        seconds[name] = time.monotonic() - started
        writer.close()
    return seconds


def _add_users(home, count: int) -> list[tuple[str, str]]:
    """Accounts user01.. with cheap hashes (the server re-hashes them at their first login)."""
    from hatoba.store.directory import Directory

    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    users = []
    with Directory(home.root / "data" / "directory.sqlite3", hasher=cheap) as directory:
        for n in range(1, count + 1):
            address, password = f"user{n:02d}@example.test", f"password-of-{n:02d}"
            directory.add_user(address, password)
            users.append((address, password))
    return users


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_flood_of_wrong_passwords_never_locks_the_account_out(hatoba_home):
    """Acceptance 1: 24 wrong passwords from 127.0.0.2, six at a time over IMAPS,
    POP3S and submission; the right password works at once from 127.0.0.1 and
    from 127.0.0.2 again within 90 s."""
    with ServerThread(hatoba_home) as srv:
        ctx = hatoba_home.client_context()

        async def attack():
            flood = asyncio.ensure_future(_flood(srv, ctx, ALICE, 24, source="127.0.0.2", parallel=6))
            await asyncio.sleep(2)
            during = await _greets_quickly(srv)  # while the flood runs
            return await flood, during

        outcomes, during = asyncio.run(attack())
        results = [o.result for o in outcomes]
        assert OK not in results
        assert set(results) <= {FAILED, THROTTLED}, [o.line for o in outcomes]
        # The pair's burst of 10, plus at most one that drained away meanwhile
        # (a 40 s slot): the rest checked no password.
        assert results.count(FAILED) <= 11, results
        assert max(during.values()) < 1.0, during
        assert max(asyncio.run(_greets_quickly(srv)).values()) < 1.0

        ports = _ports(srv)
        assert asyncio.run(login("imaps", ports["imaps"], ctx, ALICE, PASSWORDS[ALICE])).result == OK
        assert asyncio.run(login("submission", ports["submission"], ctx, ALICE, PASSWORDS[ALICE])).result == OK

        flood_ended = time.monotonic()
        seen = []
        while time.monotonic() - flood_ended < 90:
            outcome = asyncio.run(login("imaps", ports["imaps"], ctx, ALICE, PASSWORDS[ALICE], source="127.0.0.2"))
            seen.append(outcome.result)
            if outcome.result == OK:
                break
            assert outcome.result == THROTTLED, outcome.line
            assert "try again in" in outcome.line
            time.sleep(5)
        assert seen[-1] == OK, seen
        waited = time.monotonic() - flood_ended
        print(f"back in after {waited:.0f} s ({len(seen)} tries)")


def test_guesses_in_parallel_are_counted_when_they_start(server, hatoba_home, caplog):
    """19 simultaneous guesses: no more passwords are checked than the burst
    allows, and each refusal is one log line naming address, account, scope and
    the time left."""
    caplog.set_level(logging.INFO, logger="hatoba.mail")
    outcomes = asyncio.run(_flood(server, hatoba_home.client_context(), CAROL, 19, source="127.0.0.9",
                                  parallel=19, protos=("imaps",)))
    results = [o.result for o in outcomes]
    assert results.count(FAILED) == 10, results
    assert results.count(THROTTLED) == 9
    refusals = [r.getMessage() for r in caplog.records if "result=throttled" in r.getMessage()]
    assert len(refusals) == 9
    for line in refusals:
        assert "ip=127.0.0.9" in line and f"login={CAROL}" in line and "scope=pair" in line
        assert re.search(r"retry_after=\d+s", line), line


def test_a_login_of_its_own_does_not_reset_the_guesses_at_another_account(server, hatoba_home):
    """An account holder cannot wash his guesses at alice away with his own logins."""
    ctx, ports = hatoba_home.client_context(), _ports(server)

    async def attack():
        guesses = []
        for i in range(14):
            own = await login("imaps", ports["imaps"], ctx, BOB, PASSWORDS[BOB], source="127.0.0.8")
            assert own.result == OK
            # Each guess runs on while bob logs in again (answers to failures are slowed down).
            guesses.append(asyncio.ensure_future(
                login("imaps", ports["imaps"], ctx, ALICE, f"guess-{i}", source="127.0.0.8")))
            await asyncio.sleep(0.3)
        return [g.result for g in await asyncio.gather(*guesses)]

    results = asyncio.run(attack())
    # The pair's burst (10), and at most one more that drained away meanwhile
    # (one a 40 s slot); had bob's logins reset the count, all 14 were checked.
    assert 10 <= results.count(FAILED) <= 11, results
    assert results.count(THROTTLED) == 14 - results.count(FAILED)


def test_refusals_before_tls_are_not_failed_logins(server, hatoba_home):
    """Passwords sent before STARTTLS are refused as a protocol error: they count
    toward no limit, so a misconfigured client cannot lock anyone out."""
    for _ in range(15):
        with imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10) as c:
            with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED|LOGINDISABLED|disabled"):
                c.login(ALICE, PASSWORDS[ALICE])
        with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10) as c:
            c.ehlo("x")
            code, _ = c.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wYXNzd29yZC0x")
            assert code == 538
    status = hatoba_home.cli("auth", "status")
    assert status.returncode == 0, status.stderr
    assert "127.0.0.1" not in status.stdout and ALICE not in status.stdout
    with imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10) as c:
        c.starttls(hatoba_home.client_context())
        assert c.login(ALICE, PASSWORDS[ALICE])[0] == "OK"


def test_status_shows_the_throttled_scope_and_release_lifts_it(server, hatoba_home):
    ctx, ports = hatoba_home.client_context(), _ports(server)
    outcomes = asyncio.run(_flood(server, ctx, BOB, 11, source="127.0.0.3", parallel=11, protos=("imaps",)))
    assert [o.result for o in outcomes].count(THROTTLED) == 1  # ten under way at once
    # The slowed answers let a little drain away (one failure per 40 s): guess on until refused.
    for n in range(3):
        guess = asyncio.run(login("imaps", ports["imaps"], ctx, BOB, f"more-{n}", source="127.0.0.3"))
        if guess.result == THROTTLED:
            break
    assert guess.result == THROTTLED
    assert asyncio.run(login("imaps", ports["imaps"], ctx, BOB, PASSWORDS[BOB], source="127.0.0.3")).result == THROTTLED

    status = hatoba_home.cli("auth", "status")
    assert status.returncode == 0, status.stderr
    assert "127.0.0.3" in status.stdout and BOB in status.stdout
    only = hatoba_home.cli("auth", "status", "127.0.0.3")
    assert "127.0.0.3" in only.stdout
    assert hatoba_home.cli("auth", "status", "192.0.2.1").stdout.count("127.0.0.3") == 0

    released = hatoba_home.cli("auth", "release", "127.0.0.3")
    assert released.returncode == 0, released.stderr
    assert asyncio.run(login("imaps", ports["imaps"], ctx, BOB, PASSWORDS[BOB], source="127.0.0.3")).result == OK


def test_an_office_behind_one_address_is_served(hatoba_home):
    """Acceptance 2: 30 accounts, each with 5 IMAP connections and a submission
    session open at once, all from 127.0.0.4 (180 connections from one address)."""
    users = _add_users(hatoba_home, 30)
    with ServerThread(hatoba_home) as srv:
        ctx, ports = hatoba_home.client_context(), _ports(srv)

        async def office():
            # Logins at most 40 at a time, as people arrive; every connection stays open.
            gate = asyncio.Semaphore(40)

            async def one(proto: str, address: str, password: str):
                async with gate:
                    return await login(proto, ports[proto], ctx, address, password, source="127.0.0.4", keep=True)

            jobs = [one("imaps", a, p) for a, p in users for _ in range(5)]
            jobs += [one("submission", a, p) for a, p in users]
            opened = await asyncio.gather(*jobs)
            results = [outcome.result for outcome, _ in opened]
            still_open = sum(not writer.is_closing() for _, writer in opened)
            for _, writer in opened:
                writer.close()
            return results, still_open

        results, still_open = asyncio.run(office())
        assert results == [OK] * 180
        assert still_open == 180


def test_connections_per_account_and_address(server, hatoba_home):
    """Ten logged-in IMAP connections per (account, address); the eleventh is
    told why, and her POP3 and submission, and other accounts from the same
    address, are not affected."""
    ctx, ports = hatoba_home.client_context(), _ports(server)

    async def connect():
        opened = [await login("imaps", ports["imaps"], ctx, ALICE, PASSWORDS[ALICE], source="127.0.0.6", keep=True)
                  for _ in range(10)]
        eleventh = await login("imaps", ports["imaps"], ctx, ALICE, PASSWORDS[ALICE], source="127.0.0.6")
        # Her POP3 and her mail program's sending are counted apart from IMAP.
        sending = await login("submission", ports["submission"], ctx, ALICE, PASSWORDS[ALICE], source="127.0.0.6")
        fetching = await login("pop3s", ports["pop3s"], ctx, ALICE, PASSWORDS[ALICE], source="127.0.0.6")
        other = await login("imaps", ports["imaps"], ctx, BOB, PASSWORDS[BOB], source="127.0.0.6")
        elsewhere = await login("imaps", ports["imaps"], ctx, ALICE, PASSWORDS[ALICE], source="127.0.0.7")
        for _, writer in opened:
            writer.close()
        return [o.result for o, _ in opened], eleventh, sending, fetching, other, elsewhere

    results, eleventh, sending, fetching, other, elsewhere = asyncio.run(connect())
    assert results == [OK] * 10
    assert eleventh.result == BUSY and "(10)" in eleventh.line
    assert sending.result == OK and fetching.result == OK
    assert other.result == OK and elsewhere.result == OK


def test_connections_not_logged_in_are_limited_per_address(server):
    """50 connections from one address that have not logged in; the 51st is told which limit."""

    async def connect():
        held = []
        for _ in range(50):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port("smtp"), local_addr=("127.0.0.10", 0))
            assert (await reader.readline()).startswith(b"220")
            held.append(writer)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port("imap"), local_addr=("127.0.0.10", 0))
        refused = await reader.readline()
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port("imap"), local_addr=("127.0.0.11", 0))
        other = await reader.readline()
        writer.close()
        for w in held:
            w.close()
        return refused, other

    refused, other = asyncio.run(connect())
    assert refused.startswith(b"* BYE") and b"not logged in (50)" in refused
    assert other.startswith(b"* OK")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_office_with_one_stale_password(hatoba_home):
    """Acceptance 2: from one address, ten accounts log in every few seconds for
    two minutes while an eleventh program retries a stale password every five
    seconds; no correct login is refused."""
    users = _add_users(hatoba_home, 10)
    with ServerThread(hatoba_home) as srv:
        ctx, ports = hatoba_home.client_context(), _ports(srv)

        async def office():
            end = time.monotonic() + 120
            correct: list[str] = []
            stale: list[str] = []

            async def person(n: int, address: str, password: str):
                await asyncio.sleep(n * 0.3)
                while time.monotonic() < end:
                    proto = ("imaps", "pop3s", "submission")[n % 3]
                    outcome = await login(proto, ports[proto], ctx, address, password, source="127.0.0.5")
                    correct.append(outcome.result if outcome.result == OK else outcome.line)
                    await asyncio.sleep(3)

            async def old_phone():
                while time.monotonic() < end:
                    outcome = await login("imaps", ports["imaps"], ctx, ALICE, "last-years-password", source="127.0.0.5")
                    stale.append(outcome.result)
                    await asyncio.sleep(5)

            await asyncio.gather(old_phone(), *(person(n, a, p) for n, (a, p) in enumerate(users)))
            return correct, stale

        correct, stale = asyncio.run(office())
        refused = [r for r in correct if r != OK]
        assert not refused, refused
        assert len(correct) >= 10 * 20  # every few seconds, for two minutes
        # The old phone's answers were slowed down (1, 2, 4 ... 15 s after its
        # third failure): far fewer tries than one every 5 s got an answer.
        assert set(stale) <= {FAILED, THROTTLED}
        assert len(stale) <= 12, stale


def test_a_huge_login_name_is_refused_without_work(server, hatoba_home):
    """A 4 MB user name (an IMAP literal) is refused before it is sent, a
    7,000-octet one at once: no password check, nothing counted."""
    import socket

    ctx = hatoba_home.client_context()
    with socket.create_connection(("127.0.0.1", server.port("imaps")), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="mail.example.test") as tls:
            reader = tls.makefile("rb")
            reader.readline()
            # More than limits.max_command_before_login: no "+", the client keeps its bytes.
            tls.sendall(b"a LOGIN {%d}\r\n" % (4_000_000 + 13))
            assert reader.readline().startswith(b"a NO [TOOBIG]")
            name = b"a" * 7_000 + b"@example.test"
            tls.sendall(b"b LOGIN {%d}\r\n" % len(name))
            assert reader.readline().startswith(b"+")
            started = time.monotonic()
            tls.sendall(name + b' "some-password"\r\n')
            answer = reader.readline()
            took = time.monotonic() - started
    assert answer.startswith(b"b NO [AUTHENTICATIONFAILED] Login name too long"), answer[:100]
    assert took < 2.0
    assert "no failed logins" in hatoba_home.cli("auth", "status").stdout
