"""IMAP extensions at the protocol level: CONDSTORE/QRESYNC, ESEARCH, SORT, THREAD,
BODYSTRUCTURE, BINARY, COMPRESS, QUOTA, ENABLE, NAMESPACE, LIST-EXTENDED."""

from __future__ import annotations

import imaplib
import re
import socket
import zlib

import pytest

BOB = ("bob@example.test", "bob-password-1")

ALTERNATIVE = (
    b"From: Ann <ann@elsewhere.example>\r\nTo: bob@example.test\r\nSubject: report\r\n"
    b"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <r1@elsewhere.example>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n"
    b"--outer\r\nContent-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n"
    b"--inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain text\r\n"
    b"--inner\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>html</p>\r\n"
    b"--inner--\r\n"
    b"--outer\r\nContent-Type: application/pdf; name=\"=?UTF-8?B?UsOpc3Vtw6kucGRm?=\"\r\n"
    b"Content-Disposition: attachment; filename*=UTF-8''R%C3%A9sum%C3%A9.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"
    b"--outer--\r\n"
)


def client(server, home) -> imaplib.IMAP4_SSL:
    m = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=home.client_context(), timeout=10)
    m.login(*BOB)
    return m


def raw(m: imaplib.IMAP4, command: str) -> tuple[str, list[bytes]]:
    """Send one command and collect every line up to the tagged reply (literals inline)."""
    tag = m._new_tag().decode()
    m.send(f"{tag} {command}\r\n".encode())
    lines: list[bytes] = []
    while True:
        line = m._get_line()
        while literal := re.search(rb"\{(\d+)\}$", line):
            line += b"\r\n" + m.read(int(literal.group(1)))
            line += m._get_line()
        if line.startswith(tag.encode() + b" "):
            return line.decode("utf-8", "replace"), lines
        lines.append(line)


@pytest.fixture
def with_report(server, hatoba_home):
    m = client(server, hatoba_home)
    assert m.append("INBOX", None, None, ALTERNATIVE)[0] == "OK"
    for i in range(3):
        m.append("INBOX", None, None, f"Subject: Re: topic {i}\r\nMessage-ID: <t{i}@x>\r\n"
                 f"{'References: <t0@x>' if i else 'X-First: yes'}\r\n\r\nbody {i}\r\n".encode())
    m.logout()
    return server


def test_bodystructure_of_alternative_with_non_ascii_attachment(with_report, hatoba_home):
    m = client(with_report, hatoba_home)
    m.select("INBOX")
    status, lines = raw(m, "FETCH 1 (BODYSTRUCTURE)")
    assert " OK " in status
    body = lines[0]
    assert b'("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 10 1' in body
    assert b'("text" "html" ("charset" "utf-8") NIL NIL "7bit" 11 1' in body
    assert b'"alternative" ("boundary" "inner")' in body
    assert b'("application" "pdf" ("name" "=?UTF-8?B?UsOpc3Vtw6kucGRm?=") NIL NIL "base64" 12 NIL' in body
    assert b'("attachment" ("filename*" "UTF-8\'\'R%C3%A9sum%C3%A9.pdf"))' in body
    assert b'"mixed" ("boundary" "outer")' in body
    status, lines = raw(m, "FETCH 1 (BODY.PEEK[1.2] BINARY.PEEK[2] BINARY.SIZE[2] BODY.PEEK[1.1.MIME])")
    blob = b"".join(lines)
    assert b"<p>html</p>" in blob and b"%PDF-1.4\n" in blob and b"BINARY.SIZE[2] 9" in blob
    status, lines = raw(m, "FETCH 1 (BODY.PEEK[]<0.20>)")
    assert b"BODY[]<0> {20}" in lines[0]
    m.logout()


def test_condstore_and_qresync_resync_after_another_session(with_report, hatoba_home):
    a = client(with_report, hatoba_home)
    status, _ = raw(a, "ENABLE QRESYNC")
    status, lines = raw(a, "SELECT INBOX")
    highest = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(lines)).group(1))
    validity = int(re.search(rb"UIDVALIDITY (\d+)", b"".join(lines)).group(1))
    uids = [int(x) for x in re.findall(rb"UID (\d+)", b"".join(raw(a, "FETCH 1:* (UID)")[1]))]
    raw(a, "LOGOUT")
    b = client(with_report, hatoba_home)
    b.select("INBOX")
    b.store("2", "+FLAGS", "(\\Flagged)")
    b.store("3", "+FLAGS", "(\\Deleted)")
    b.expunge()
    b.logout()
    c = client(with_report, hatoba_home)
    raw(c, "ENABLE QRESYNC")
    status, lines = raw(c, f"SELECT INBOX (QRESYNC ({validity} {highest}))")
    text = b"\n".join(lines)
    assert f"VANISHED (EARLIER) {uids[2]}".encode() in text, text
    assert re.search(rb"\* \d+ FETCH \(FLAGS \(\\Flagged\) UID %d MODSEQ \(\d+\)\)" % uids[1], text), text
    status, lines = raw(c, f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {highest})")
    assert len(lines) == 1 and b"\\Flagged" in lines[0]
    status, lines = raw(c, f"UID STORE {uids[0]} (UNCHANGEDSINCE 1) +FLAGS (\\Seen)")
    assert "MODIFIED" in status
    c.logout()


def test_esearch_sort_thread(with_report, hatoba_home):
    m = client(with_report, hatoba_home)
    m.select("INBOX")
    status, lines = raw(m, "SEARCH RETURN (MIN MAX COUNT) ALL")
    assert lines == [b'* ESEARCH (TAG "' + status.split()[0].encode() + b'") MIN 1 MAX 4 COUNT 4']
    status, lines = raw(m, "SORT (REVERSE SUBJECT) UTF-8 ALL")
    assert lines[0].startswith(b"* SORT ") and len(lines[0].split()) == 6
    status, lines = raw(m, "THREAD REFERENCES UTF-8 ALL")
    # Messages 3 and 4 both reference message 2: one thread, 2 with two children (RFC 5256).
    assert lines[0] == b"* THREAD (1)(2 (3)(4))", lines[0]
    status, lines = raw(m, "SEARCH CHARSET KOI8-R ALL")
    assert "BADCHARSET" in status
    m.logout()


def test_enable_namespace_list_extended_status(with_report, hatoba_home):
    m = client(with_report, hatoba_home)
    status, lines = raw(m, "NAMESPACE")
    assert lines == [b'* NAMESPACE (("" ".")) NIL NIL']
    status, lines = raw(m, 'LIST (SPECIAL-USE) "" "*"')
    assert len(lines) == 5 and all(b"\\" in line for line in lines)
    status, lines = raw(m, 'LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN))')
    assert any(line.startswith(b"* STATUS INBOX (MESSAGES 4 UNSEEN 4)") for line in lines), lines
    status, lines = raw(m, "ENABLE CONDSTORE UTF8=ACCEPT")
    assert lines[0].startswith(b"* ENABLED") and b"CONDSTORE" in lines[0]
    m.logout()


def test_compress_deflate(with_report, hatoba_home):
    ctx = hatoba_home.client_context()
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", with_report.port("imaps")), timeout=10),
                           server_hostname="mail.example.test")
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"a LOGIN bob@example.test bob-password-1\r\n")
    assert f.readline().startswith(b"a OK")
    sock.sendall(b"b COMPRESS DEFLATE\r\n")
    assert f.readline().startswith(b"b OK")
    comp, decomp = zlib.compressobj(6, zlib.DEFLATED, -15), zlib.decompressobj(-15)
    sock.sendall(comp.compress(b"c SELECT INBOX\r\n") + comp.flush(zlib.Z_SYNC_FLUSH))
    got = b""
    while b"c OK" not in got:
        got += decomp.decompress(sock.recv(65536))
    assert b"* 4 EXISTS" in got
    sock.close()


def test_append_over_the_limit_is_refused(server, hatoba_home):
    m = client(server, hatoba_home)
    tag = m._new_tag().decode()
    m.send(f"{tag} APPEND INBOX {{{2 * 1024**3}}}\r\n".encode())
    line = m._get_line()
    assert line.startswith(tag.encode() + b" NO [TOOBIG]") or line.startswith(tag.encode() + b" BAD"), line
    m.logout()


def test_quota_refuses_append_and_holds_deliveries(hatoba_home):
    import smtplib

    from support.harness import ServerThread, _merge_config

    _merge_config(hatoba_home.config_path, "[imap]\nquota_mb = 1\n")
    big = b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 9000  # ~700 KB
    with ServerThread(hatoba_home) as server:
        m = client(server, hatoba_home)
        assert m.append("INBOX", None, None, big)[0] == "OK"
        typ, data = m.getquotaroot("INBOX")
        assert typ == "OK" and b"STORAGE" in b" ".join(d for d in data[1] if d)
        typ, data = m.append("INBOX", None, None, big)  # imaplib returns NO here rather than raising
        assert typ == "NO" and b"[OVERQUOTA]" in data[0]
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as c:
            c.sendmail("a@elsewhere.example", [BOB[0]], big)
        # That delivery still found room (the limit was not reached yet); after it, the next must wait.
        assert len(hatoba_home.wait_messages(BOB[0], 2)) == 2
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as c:
            c.sendmail("a@elsewhere.example", [BOB[0]], b"Subject: small\r\n\r\nfits\r\n")
        deadline = __import__("time").monotonic() + 10
        while "4.2.2" not in hatoba_home.cli("queue", "list").stdout:
            assert __import__("time").monotonic() < deadline, hatoba_home.cli("queue", "list").stdout
            __import__("time").sleep(0.1)
        m.logout()


def test_list_inbox_is_case_insensitive_other_names_are_not(server, hatoba_home):
    m = client(server, hatoba_home)
    _, lines = raw(m, 'LIST "" "inbox"')
    assert lines == [b'* LIST (\\HasNoChildren) "." INBOX'], lines
    _, lines = raw(m, 'LIST "" "drafts"')
    assert lines == []
    _, lines = raw(m, 'LIST "" "Drafts"')
    assert len(lines) == 1 and lines[0].endswith(b" Drafts")
    m.logout()


def test_per_user_quota_overrides_the_server_default(hatoba_home):
    import smtplib

    from support.harness import ServerThread, wait_for

    assert hatoba_home.cli("user", "quota", BOB[0], "1").returncode == 0
    big = b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 14000  # ~1.1 MB: over bob's 1 MiB
    with ServerThread(hatoba_home) as server:
        m = client(server, hatoba_home)  # bob, with his own limit and no server default
        typ, data = m.getquotaroot("INBOX")
        assert typ == "OK" and any(d and b"STORAGE 0 1024" in d for d in data[1]), data
        m.logout()
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as c:
            c.sendmail("a@elsewhere.example", [BOB[0], "alice@example.test"], big)
            assert len(hatoba_home.wait_messages(BOB[0], 1)) == 1
            c.sendmail("a@elsewhere.example", [BOB[0], "alice@example.test"], b"Subject: small\r\n\r\nfits\r\n")
        assert len(hatoba_home.wait_messages("alice@example.test", 2)) == 2  # alice has no limit
        assert wait_for(lambda: "4.2.2" in hatoba_home.cli("queue", "list").stdout, 10)
        assert len(hatoba_home.messages(BOB[0])) == 1  # the second waits for room
        assert hatoba_home.cli("user", "quota", BOB[0], "none").returncode == 0
        hatoba_home.cli("queue", "flush")
        assert len(hatoba_home.wait_messages(BOB[0], 2)) == 2
