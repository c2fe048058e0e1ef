"""POP3 on 110 (STLS) and 995 with Python's poplib and raw sockets."""

from __future__ import annotations

import base64
import hashlib
import poplib
import re
import smtplib
import socket

import pytest

from support.harness import ServerThread, _merge_config
from support.maildrop_holder import try_lock
from support.wire import capture_mail_log, drop, wait_mail_line

from hatoba.policy.pop_before_smtp import PopBeforeSmtp
from hatoba.store.maildrop_lock import LOCK_NAME

BOB = ("bob@example.test", "bob-password-1")


def deliver(server, home, rcpt: str, subject: str, count_after: int) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as c:
        c.sendmail("someone@elsewhere.example", [rcpt],
                   f"From: someone@elsewhere.example\r\nSubject: {subject}\r\n\r\nline one\r\n.starts with a dot\r\n")
    assert len(home.wait_messages(rcpt, count_after)) == count_after


def pop3s(server, home) -> poplib.POP3_SSL:
    return poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), context=home.client_context(), timeout=10)


@pytest.fixture
def two_for_bob(server, hatoba_home):
    deliver(server, hatoba_home, "bob@example.test", "first", 1)
    deliver(server, hatoba_home, "bob@example.test", "second", 2)
    return server


def test_pop3s_session_retrieves_and_deletes(two_for_bob, hatoba_home):
    p = pop3s(two_for_bob, hatoba_home)
    assert p.getwelcome().startswith(b"+OK")
    p.user(BOB[0])
    p.pass_(BOB[1])
    count, size = p.stat()
    assert count == 2
    sizes = [int(line.split()[1]) for line in p.list()[1]]
    assert sum(sizes) == size
    _, lines, octets = p.retr(1)
    text = b"\r\n".join(lines)
    assert lines[0] == b"Return-Path: <someone@elsewhere.example>"
    assert b"Subject: first" in text and b".starts with a dot" in text  # un-stuffed by poplib
    assert octets >= sizes[0]  # poplib counts the stuffed lines it read
    _, top, _ = p.top(2, 0)
    assert b"Subject: second" in b"\n".join(top) and b"line one" not in b"\n".join(top)
    uids = [line.split()[1] for line in p.uidl()[1]]
    assert len(set(uids)) == 2
    p.dele(1)
    assert p.stat()[0] == 1  # deleted messages leave the listing
    with pytest.raises(poplib.error_proto, match="is deleted"):
        p.retr(1)
    p.quit()
    [left] = hatoba_home.messages("bob@example.test")
    assert b"Subject: second" in left


def maildir_files(home, address: str) -> dict[str, bytes]:
    """The messages on disk in new/ and cur/, by file name without its flags."""
    md = home.maildir(address)
    return {f.name.split(":")[0]: f.read_bytes() for sub in ("new", "cur") for f in (md / sub).iterdir()}


def pop3s_login(server, home) -> poplib.POP3_SSL:
    p = pop3s(server, home)
    p.user(BOB[0])
    p.pass_(BOB[1])
    return p


def wait_pop3_disconnect(caplog) -> str:
    """The server has ended bob's POP3S session (its cleanup runs before this line)."""
    return wait_mail_line(caplog, "disconnect", "listener=pop3s", f"login={BOB[0]}", timeout=2)


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_dropped_connection_deletes_nothing(two_for_bob, hatoba_home, caplog, reset):
    """RFC 1939 §6: without QUIT there is no UPDATE state, so DELE deletes nothing."""
    capture_mail_log(caplog)
    before = maildir_files(hatoba_home, BOB[0])
    assert len(before) == 2
    p = pop3s_login(two_for_bob, hatoba_home)
    p.dele(1)
    p.dele(2)
    drop(p.sock, p.file, reset=reset)  # no QUIT
    assert "deleted=0" in wait_pop3_disconnect(caplog)
    assert maildir_files(hatoba_home, BOB[0]) == before
    q = pop3s_login(two_for_bob, hatoba_home)  # a new session sees every message
    assert q.stat()[0] == 2
    q.quit()


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_dropped_connection_frees_the_maildrop(two_for_bob, hatoba_home, caplog, reset):
    """The maildrop lock (RFC 1939 §8) is held while the session lives and freed
    when it ends, with QUIT or without: a vanished client does not lock the
    mailbox until the server restarts."""
    capture_mail_log(caplog)
    first = pop3s_login(two_for_bob, hatoba_home)
    second = pop3s(two_for_bob, hatoba_home)
    second.user(BOB[0])
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        second.pass_(BOB[1])
    assert first.noop().startswith(b"+OK")  # the first session is untouched
    drop(first.sock, first.file, reset=reset)
    wait_pop3_disconnect(caplog)
    second.user(BOB[0])
    assert second.pass_(BOB[1]).startswith(b"+OK")
    assert second.stat()[0] == 2
    second.quit()


def test_rset_undeletes(two_for_bob, hatoba_home):
    p = pop3s(two_for_bob, hatoba_home)
    p.user(BOB[0])
    p.pass_(BOB[1])
    p.dele(1)
    p.rset()
    p.quit()
    assert len(hatoba_home.messages("bob@example.test")) == 2


def test_second_session_is_told_in_use(two_for_bob, hatoba_home):
    first = pop3s(two_for_bob, hatoba_home)
    first.user(BOB[0])
    first.pass_(BOB[1])
    second = pop3s(two_for_bob, hatoba_home)
    second.user(BOB[0])
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        second.pass_(BOB[1])
    assert (hatoba_home.maildir(BOB[0]).parent / LOCK_NAME).is_file()  # the lock: beside the Maildir
    first.quit()
    second.user(BOB[0])
    second.pass_(BOB[1])  # free again
    second.quit()


def test_a_maildrop_locked_by_another_process_is_in_use(two_for_bob, hatoba_home):
    """Worker processes share nothing in memory: the lock holds across them, and a killed holder frees it."""
    other, said = try_lock(hatoba_home.maildir(BOB[0]))
    try:
        assert said == "held"
        p = pop3s(two_for_bob, hatoba_home)
        p.user(BOB[0])
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            p.pass_(BOB[1])
    finally:
        other.kill()
        other.wait(timeout=30)
    p.user(BOB[0])
    assert p.pass_(BOB[1]).startswith(b"+OK")
    assert p.stat()[0] == 2
    p.quit()


def test_no_password_before_stls_on_110(server, hatoba_home):
    p = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    caps = p.capa()
    assert "STLS" in caps and "USER" not in caps and "SASL" not in caps
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\].*(STLS|995)"):
        p.user(BOB[0])
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0bob@example.test\0bob-password-1").decode())
    p.stls(context=hatoba_home.client_context())
    caps = p.capa()
    assert "STLS" not in caps and "USER" in caps and "PLAIN" in caps["SASL"]
    p.user(BOB[0])
    p.pass_(BOB[1])
    assert p.stat()[0] == 0
    p.quit()


def test_plaintext_login_allowed_only_for_a_listed_network(hatoba_home):
    _merge_config(hatoba_home.config_path, '[auth]\nplaintext_networks = ["127.0.0.1/32"]\n')
    with ServerThread(hatoba_home) as server:
        p = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
        assert "USER" in p.capa()
        p.user(BOB[0])
        p.pass_(BOB[1])
        p.quit()


def test_wrong_password_then_closed_after_the_limit(server, hatoba_home):
    p = pop3s(server, hatoba_home)
    for _ in range(2):
        p.user(BOB[0])
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            p.pass_("wrong-password")
    p.user(BOB[0])
    with pytest.raises(poplib.error_proto):
        p.pass_("wrong-password")
    with pytest.raises((poplib.error_proto, OSError, EOFError)):
        p.noop()


def test_sasl_plain_with_initial_response(two_for_bob, hatoba_home):
    p = pop3s(two_for_bob, hatoba_home)
    token = base64.b64encode(b"\0bob@example.test\0bob-password-1").decode()
    assert p._shortcmd(f"AUTH PLAIN {token}").startswith(b"+OK")
    assert p.stat()[0] == 2
    p.quit()


def test_uidl_is_stable_across_restarts(hatoba_home):
    with ServerThread(hatoba_home) as server:
        deliver(server, hatoba_home, "bob@example.test", "a", 1)
        deliver(server, hatoba_home, "bob@example.test", "b", 2)
        p = pop3s(server, hatoba_home)
        p.user(BOB[0])
        p.pass_(BOB[1])
        before = p.uidl()[1]
        p.retr(1)
        p.quit()
    with ServerThread(hatoba_home) as server:
        p = pop3s(server, hatoba_home)
        p.user(BOB[0])
        p.pass_(BOB[1])
        assert p.uidl()[1] == before
        assert all(1 <= len(line.split()[1]) <= 70 for line in before)
        p.quit()


def test_apop_digest_matches_an_independent_md5(two_for_bob, hatoba_home):
    r = hatoba_home.cli("user", "apop", BOB[0], "--enable", "--password-stdin", stdin="apop-secret-42\n")
    assert r.returncode == 0, r.stderr
    key_file = hatoba_home.root / "data" / "secrets.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert b"apop-secret-42" not in (hatoba_home.root / "data" / "directory.sqlite3").read_bytes()
    p = pop3s(two_for_bob, hatoba_home)
    timestamp = re.search(rb"<[^>]+>", p.getwelcome()).group(0)
    assert re.fullmatch(rb"<[0-9a-f]+\.\d+@mail\.example\.test>", timestamp)
    digest = hashlib.md5(timestamp + b"apop-secret-42").hexdigest()
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p._shortcmd(f"APOP {BOB[0]} {hashlib.md5(timestamp + b'wrong').hexdigest()}")
    assert p._shortcmd(f"APOP {BOB[0]} {digest}").startswith(b"+OK")
    assert p.stat()[0] == 2
    p.quit()
    # Another connection gets another timestamp: a digest cannot be replayed.
    q = pop3s(two_for_bob, hatoba_home)
    assert re.search(rb"<[^>]+>", q.getwelcome()).group(0) != timestamp
    with pytest.raises(poplib.error_proto):
        q._shortcmd(f"APOP {BOB[0]} {digest}")
    q.quit()


def test_apop_refuses_the_login_password_as_secret(hatoba_home):
    r = hatoba_home.cli("user", "apop", BOB[0], "--enable", "--password-stdin", stdin=BOB[1] + "\n")
    assert r.returncode == 1 and "other than the login password" in r.stderr


def raw(server, name="pop3s", home=None):
    ctx = home.client_context()
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port(name)), timeout=10),
                           server_hostname="mail.example.test")
    f = sock.makefile("rb")
    assert f.readline().startswith(b"+OK")
    return sock, f


@pytest.mark.parametrize("junk", [b"\x00\x01\x02\r\n", b"GARBAGE IN\r\n", b"X" * 100_000 + b"\r\n",
                                  b"USER \xff\xfe\r\n", b"RETR 1\r\n", b"LIST 99999999999999999999\r\n"])
def test_bad_input_gets_err_and_the_server_stays_up(server, hatoba_home, junk):
    sock, f = raw(server, home=hatoba_home)
    sock.sendall(junk)
    assert f.readline().startswith(b"-ERR")
    sock.sendall(b"NOOP\r\n")
    assert f.readline().startswith((b"+OK", b"-ERR"))
    sock.close()
    p = pop3s(server, hatoba_home)
    p.user(BOB[0])
    p.pass_(BOB[1])
    p.quit()


def test_pop_before_smtp_is_off_by_default(server, hatoba_home):
    p = pop3s(server, hatoba_home)
    p.user(BOB[0])
    p.pass_(BOB[1])
    p.quit()
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as c:
        c.ehlo("x")
        c.mail("bob@example.test")
        assert c.rcpt("friend@elsewhere.example")[0] == 554


def test_pop_before_smtp_opens_relaying_for_the_address(hatoba_home, caplog):
    _merge_config(hatoba_home.config_path, "[smtp]\npop_before_smtp_minutes = 5\n")
    caplog.set_level("INFO", logger="hatoba.mail")
    with ServerThread(hatoba_home) as server:
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as c:
            c.ehlo("x")
            c.mail("bob@example.test")
            assert c.rcpt("friend@elsewhere.example")[0] == 554  # not before a login
        p = pop3s(server, hatoba_home)
        p.user(BOB[0])
        p.pass_(BOB[1])
        p.quit()
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as c:
            c.ehlo("x")
            c.mail("bob@example.test")
            assert c.rcpt("friend@elsewhere.example")[0] == 250
        # Submission still wants AUTH: POP-before-SMTP is a port-25 legacy.
        with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10) as c:
            c.starttls(context=hatoba_home.client_context())
            c.ehlo("x")
            assert c.mail("bob@example.test")[0] == 530
    relays = [r.getMessage() for r in caplog.records if r.getMessage().startswith("relay ")]
    assert relays and "via=pop-before-smtp" in relays[0] and "pop_login=bob@example.test" in relays[0]


def test_pop_before_smtp_sees_a_login_another_process_recorded(hatoba_home):
    """The windows are in the directory database: a login served by another worker opens relaying here."""
    _merge_config(hatoba_home.config_path, "[smtp]\npop_before_smtp_minutes = 5\n")
    with ServerThread(hatoba_home) as server:
        elsewhere = PopBeforeSmtp.open(5, hatoba_home.config().paths.directory_db)
        try:
            elsewhere.record_login("127.0.0.1", BOB[0])
        finally:
            elsewhere.close()
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as c:
            c.ehlo("x")
            c.mail("bob@example.test")
            assert c.rcpt("friend@elsewhere.example")[0] == 250


def test_large_message_is_streamed_with_the_listed_size(server, hatoba_home):
    body = "".join(f"line {i:07d} " + "x" * 60 + "\r\n" for i in range(20_000))  # ~1.5 MB
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as c:
        c.sendmail("someone@elsewhere.example", [BOB[0]], "Subject: big\r\n\r\n.dot first\r\n" + body)
    assert len(hatoba_home.wait_messages(BOB[0], 1)) == 1
    p = pop3s(server, hatoba_home)
    p.user(BOB[0])
    p.pass_(BOB[1])
    listed = int(p.list(1).split()[2])
    _, lines, _ = p.retr(1)
    assert sum(len(line) + 2 for line in lines) == listed  # poplib un-stuffs; CRLF per line
    assert lines[-1].startswith(b"line 0019999") and b".dot first" in lines
    p.quit()


def test_mail_delivered_during_a_session_survives_its_quit(two_for_bob, hatoba_home):
    p = pop3s(two_for_bob, hatoba_home)
    p.user(BOB[0])
    p.pass_(BOB[1])
    p.dele(1)
    p.dele(2)
    deliver(two_for_bob, hatoba_home, BOB[0], "during", 3)
    assert p.stat()[0] == 0  # the session's view is fixed at login
    p.quit()
    [left] = hatoba_home.messages(BOB[0])
    assert b"Subject: during" in left


def test_apop_can_be_turned_off(two_for_bob, hatoba_home):
    assert hatoba_home.cli("user", "apop", BOB[0], "--enable", "--password-stdin", stdin="apop-secret-42\n").returncode == 0
    assert hatoba_home.cli("user", "apop", BOB[0], "--disable").returncode == 0
    p = pop3s(two_for_bob, hatoba_home)
    timestamp = re.search(rb"<[^>]+>", p.getwelcome()).group(0)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p._shortcmd(f"APOP {BOB[0]} {hashlib.md5(timestamp + b'apop-secret-42').hexdigest()}")
    p.quit()
