"""IMAP on 143 (STARTTLS) and 993 with Python's imaplib and raw sockets."""

from __future__ import annotations

import imaplib
import re
import smtplib
import socket
import ssl
import threading
import time

import pytest

from support.harness import ServerThread

BOB = ("bob@example.test", "bob-password-1")


def deliver(server, home, rcpt: str, subject: str, count_after: int) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as c:
        c.sendmail("someone@elsewhere.example", [rcpt],
                   f"From: Someone <someone@elsewhere.example>\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
                   f"Message-ID: <{subject}@elsewhere.example>\r\n\r\nHello {subject}\r\n")
    assert len(home.wait_messages(rcpt, count_after)) == count_after


def imaps(server, home) -> imaplib.IMAP4_SSL:
    return imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=home.client_context(), timeout=10)


def logged_in(server, home) -> imaplib.IMAP4_SSL:
    m = imaps(server, home)
    m.login(*BOB)
    return m


@pytest.fixture
def two_for_bob(server, hatoba_home):
    deliver(server, hatoba_home, BOB[0], "first", 1)
    deliver(server, hatoba_home, BOB[0], "second", 2)
    return server


def test_imaps_select_fetch_store_search(two_for_bob, hatoba_home):
    m = logged_in(two_for_bob, hatoba_home)
    caps = m.capability()[1][0].split()
    assert b"IDLE" in caps and b"UIDPLUS" in caps and b"MOVE" in caps and b"CONDSTORE" in caps
    typ, data = m.select("INBOX")
    assert typ == "OK" and data == [b"2"]
    typ, data = m.fetch("1:*", "(UID FLAGS RFC822.SIZE)")
    assert typ == "OK" and len(data) == 2 and b"FLAGS (\\Recent)" in data[0]  # new to this session
    typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: first" in data[0][1]
    typ, data = m.fetch("2", "(RFC822)")
    full = data[0][1]
    assert full.startswith(b"Return-Path: <someone@elsewhere.example>\r\n") and b"Hello second" in full
    size = int(re.search(rb"RFC822\.SIZE (\d+)", m.fetch("2", "(RFC822.SIZE)")[1][0]).group(1))
    assert size == len(full)
    typ, data = m.search(None, "UNSEEN")
    assert data == [b"1"]  # message 2 was read with RFC822 (not PEEK)
    m.store("1", "+FLAGS", "(\\Flagged)")
    typ, data = m.search(None, "FLAGGED")
    assert data == [b"1"]
    typ, data = m.search(None, 'SUBJECT "second"')
    assert data == [b"2"]
    typ, data = m.uid("SEARCH", None, "ALL")
    uids = data[0].split()
    assert len(uids) == 2 and int(uids[0]) < int(uids[1])
    m.logout()


def test_list_shows_special_use_folders_and_status(two_for_bob, hatoba_home):
    m = logged_in(two_for_bob, hatoba_home)
    typ, data = m.list()
    listing = b"\n".join(data)
    for name, use in (("Drafts", b"\\Drafts"), ("Sent", b"\\Sent"), ("Trash", b"\\Trash"),
                      ("Junk", b"\\Junk"), ("Archive", b"\\Archive")):
        assert re.search(rb"\(.*" + re.escape(use) + rb".*\) \".\" \"?" + name.encode(), listing), listing
    assert b"INBOX" in listing
    typ, data = m.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
    assert typ == "OK" and b"MESSAGES 2" in data[0] and b"UNSEEN 2" in data[0]
    m.logout()


def test_copy_move_expunge_append(two_for_bob, hatoba_home):
    m = logged_in(two_for_bob, hatoba_home)
    m.select("INBOX")
    typ, data = m.copy("1", "Archive")
    assert typ == "OK" and b"COPYUID" in data[0]
    typ, data = m._simple_command("MOVE", "2", "Trash")
    assert typ == "OK"
    typ, data = m.select("INBOX")
    assert data == [b"1"]
    m.store("1", "+FLAGS", "(\\Deleted)")
    typ, data = m.expunge()
    assert data == [b"1"]
    typ, data = m.select("Archive")
    assert data == [b"1"]
    typ, data = m.append("Drafts", "(\\Draft \\Seen)", None, b"Subject: draft\r\n\r\nnot yet\r\n")
    assert typ == "OK" and b"APPENDUID" in data[0]
    typ, data = m.select("Drafts")
    assert data == [b"1"]
    assert b"\\Draft" in m.fetch("1", "(FLAGS)")[1][0]
    typ, data = m.create("Projects.2026")
    assert typ == "OK"
    assert any(b"Projects.2026" in line for line in m.list()[1])
    m.logout()
    assert hatoba_home.messages(BOB[0]) == []  # INBOX emptied (cur/ and new/)


def test_no_login_before_starttls_on_143(server, hatoba_home):
    m = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10)
    assert "LOGINDISABLED" in m.capabilities and "STARTTLS" in m.capabilities
    assert not any(c.startswith("AUTH=") for c in m.capabilities)
    with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED|STARTTLS"):
        m.login(*BOB)
    m.starttls(ssl_context=hatoba_home.client_context())
    assert "LOGINDISABLED" not in m.capabilities and "AUTH=PLAIN" in m.capabilities
    m.login(*BOB)
    m.logout()


def test_authenticate_plain_with_sasl_ir_and_wrong_password(server, hatoba_home):
    m = imaps(server, hatoba_home)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        m.login(BOB[0], "wrong-password")
    typ, _ = m.authenticate("PLAIN", lambda _: b"\0" + BOB[0].encode() + b"\0" + BOB[1].encode())
    assert typ == "OK"
    m.logout()


def test_idle_wakes_on_smtp_delivery(server, hatoba_home):
    m = logged_in(server, hatoba_home)
    m.select("INBOX")
    tag = m._new_tag().decode()
    m.send(f"{tag} IDLE\r\n".encode())
    assert m.readline().startswith(b"+")
    started = time.monotonic()
    threading.Thread(target=deliver, args=(server, hatoba_home, BOB[0], "pushed", 1)).start()
    m.sock.settimeout(10)
    line = m.readline()
    assert line == b"* 1 EXISTS\r\n", line
    assert m.readline() == b"* 1 RECENT\r\n"  # RFC 3501 §2.3.2: it arrived while INBOX was selected here
    assert time.monotonic() - started < 3.0
    m.send(b"DONE\r\n")
    assert m.readline().startswith(tag.encode() + b" OK")
    m.logout()


def test_two_sessions_see_each_others_changes(two_for_bob, hatoba_home):
    a = logged_in(two_for_bob, hatoba_home)
    b = logged_in(two_for_bob, hatoba_home)
    a.select("INBOX")
    b.select("INBOX")
    a.store("1", "+FLAGS", "(\\Deleted \\Seen)")
    b.untagged_responses.clear()
    b.noop()
    fetched = b.untagged_responses.pop("FETCH", [])
    assert any(b"\\Deleted" in d for d in fetched), fetched
    a.expunge()
    b.untagged_responses.clear()
    b.fetch("2", "(FLAGS)")  # no EXPUNGE may be sent during FETCH (numbers would shift)
    assert "EXPUNGE" not in b.untagged_responses
    b.noop()
    assert b.untagged_responses.pop("EXPUNGE", []) == [b"1"]
    typ, data = b.select("INBOX")
    assert data == [b"1"]
    a.logout()
    b.logout()


def test_uids_and_uidvalidity_survive_a_restart(hatoba_home):
    with ServerThread(hatoba_home) as server:
        deliver(server, hatoba_home, BOB[0], "one", 1)
        m = logged_in(server, hatoba_home)
        m.select("INBOX")
        before_validity = m.untagged_responses["UIDVALIDITY"][0]
        before_uids = m.uid("SEARCH", None, "ALL")[1][0]
        m.logout()
    with ServerThread(hatoba_home) as server:
        deliver(server, hatoba_home, BOB[0], "two", 2)
        m = logged_in(server, hatoba_home)
        m.select("INBOX")
        assert m.untagged_responses["UIDVALIDITY"][0] == before_validity
        uids = m.uid("SEARCH", None, "ALL")[1][0].split()
        assert uids[0] == before_uids and int(uids[1]) > int(uids[0])
        m.logout()


def test_literals_sync_and_nonsync(server, hatoba_home):
    ctx = hatoba_home.client_context()
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port("imaps")), timeout=10),
                           server_hostname="mail.example.test")
    f = sock.makefile("rb")
    assert f.readline().startswith(b"* OK")
    sock.sendall(b"a1 LOGIN {16}\r\n")
    assert f.readline().startswith(b"+")
    sock.sendall(b"bob@example.test {14+}\r\nbob-password-1\r\n")
    assert f.readline().startswith(b"a1 OK")
    sock.sendall(b"a2 SELECT INBOX\r\n")
    while not (line := f.readline()).startswith(b"a2 "):
        pass
    assert line.startswith(b"a2 OK")
    sock.sendall(b"a3 LOGOUT\r\n")
    sock.close()


@pytest.mark.parametrize("junk", [b"\x00\x01\r\n", b"GARBAGE\r\n", b"a1 FOO\r\n", b"X" * 100_000 + b"\r\n",
                                  b"a1 FETCH 1 (FLAGS)\r\n"])
def test_bad_input_gets_bad_and_server_stays_up(server, hatoba_home, junk):
    ctx = hatoba_home.client_context()
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port("imaps")), timeout=10),
                           server_hostname="mail.example.test")
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(junk)
    assert re.match(rb"\S+ (BAD|NO) ", f.readline())
    sock.close()
    logged_in(server, hatoba_home).logout()
