"""Hostile and broken clients: right reply codes, and the server keeps serving."""

import smtplib
import socket
import ssl
import time

import pytest

from support.harness import ServerThread, _merge_config, wait_for
from support.wire import Wire, capture_mail_log, drop, mail_lines, wait_mail_line


def connect(port: int) -> tuple[socket.socket, "socket.SocketIO"]:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220 ")
    return s, f


def reply(f) -> bytes:
    """One whole (possibly multi-line) reply."""
    out = b""
    while True:
        line = f.readline()
        assert line, "connection closed"
        out += line
        if line[3:4] != b"-":
            return out


def still_serving(server) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as c:
        assert c.noop()[0] == 250


def test_garbage_nul_and_binary(server):
    s, f = connect(server.port("smtp"))
    s.sendall(b"EHLO x\r\n")
    reply(f)
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\r\n")  # a TLS ClientHello on a cleartext port
    assert reply(f)[:3] == b"500"
    s.sendall(b"MAIL FROM:<a@b.example>\x00\r\n")
    assert reply(f).startswith(b"500 5.5.2")
    s.sendall(b"\xff\xfe\xfd garbage\r\n")
    assert reply(f)[:3] == b"500"
    s.sendall(b"NOOP\r\n")
    assert reply(f).startswith(b"250")
    s.close()
    still_serving(server)


def test_100kb_line(server):
    s, f = connect(server.port("smtp"))
    s.sendall(b"EHLO " + b"a" * 100_000 + b"\r\n")
    assert reply(f).startswith(b"500 5.5.2 Line too long")
    s.sendall(b"EHLO x\r\n")
    assert reply(f).startswith(b"250-")
    s.close()
    still_serving(server)


def test_pipelining_flood(server, hatoba_home):
    s, f = connect(server.port("smtp"))
    n = 3000
    s.sendall(b"EHLO x\r\n" + b"NOOP\r\n" * n + b"MAIL FROM:<a@b.example>\r\n" + b"RCPT TO:<bob@example.test>\r\n" * 150)
    reply(f)
    codes = [reply(f)[:3] for _ in range(n + 1 + 150)]
    assert codes[:n] == [b"250"] * n
    assert codes[n] == b"250"  # MAIL
    rcpt_codes = codes[n + 1:]
    limit = server.config.limits.max_recipients
    assert rcpt_codes[:limit] == [b"250"] * limit
    assert set(rcpt_codes[limit:]) == {b"452"}
    s.close()
    still_serving(server)


def test_bad_command_limit_disconnects(server):
    s, f = connect(server.port("smtp"))
    limit = server.config.limits.max_bad_commands
    s.sendall(b"BOGUS\r\n" * (limit + 5))
    replies = [reply(f) for _ in range(limit)]
    assert all(r.startswith(b"500") for r in replies)
    last = f.readline()
    assert last.startswith(b"421 4.7.0")
    assert f.readline() == b""  # closed
    still_serving(server)


def test_http_request_is_closed(server):
    s, f = connect(server.port("smtp"))
    s.sendall(b"GET / HTTP/1.1\r\nHost: mail.example.test\r\n\r\n")
    assert reply(f).startswith(b"421")
    assert f.readline() == b""
    still_serving(server)


def test_silent_client_times_out_while_others_are_served(hatoba_home):
    _merge_config(hatoba_home.config_path, "[limits]\ncommand_timeout = 1.0\n")
    with ServerThread(hatoba_home) as srv:
        s, f = connect(srv.port("smtp"))
        still_serving_quickly = time.monotonic()
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as c:
            assert c.noop()[0] == 250
        assert time.monotonic() - still_serving_quickly < 1.0
        start = time.monotonic()
        assert f.readline().startswith(b"421 4.4.2")
        assert 0.8 < time.monotonic() - start < 5
        assert f.readline() == b""


def test_connections_per_ip_limited(hatoba_home):
    _merge_config(hatoba_home.config_path, "[limits]\nmax_connections_per_ip = 3\n")
    with ServerThread(hatoba_home) as srv:
        held = [connect(srv.port("smtp")) for _ in range(3)]
        s = socket.create_connection(("127.0.0.1", srv.port("smtp")), timeout=10)
        assert s.makefile("rb").readline().startswith(b"421 4.7.0")
        s.close()
        drop(*held[0])
        time.sleep(0.2)
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as c:
            assert c.noop()[0] == 250
        for sock, f in held[1:]:
            drop(sock, f)  # the server stops without waiting for them


def spooled(server) -> list:
    """Every message in the server's spool: being received (incoming/QID) or queued (active/QID.msg)."""
    spool = server.server.spool
    return sorted(spool.incoming_dir.iterdir()) + sorted(spool.active_dir.glob("*.msg"))


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
@pytest.mark.parametrize("size", ["in-memory", "streamed"])
def test_dropped_in_the_middle_of_data_stores_nothing(server, hatoba_home, caplog, size, reset):
    """A client that vanishes inside DATA (no "." line) leaves nothing: no queued
    message, no file being received, no delivery. Mail for forward@ stays queued
    (its outside route is closed), so a stored message would be seen in active/."""
    capture_mail_log(caplog)
    with Wire(server.port("smtp")) as w:
        assert w.smtp_reply().startswith(b"220 ")
        w.send(b"EHLO dropper.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.test>\r\n"
               b"RCPT TO:<forward@example.test>\r\nDATA\r\n")
        assert [w.smtp_reply()[:3] for _ in range(5)] == [b"250", b"250", b"250", b"250", b"354"]
        lines = 1 if size == "in-memory" else 4000  # 4000 lines of 80 bytes go past MEMORY_LIMIT: streamed to disk
        w.send(b"Subject: half\r\n\r\n" + (b"x" * 78 + b"\r\n") * lines + b"half a line")
        if size == "streamed":
            assert wait_for(lambda: len(spooled(server)) == 1, 5)  # the check below sees a message being received
        w.drop(reset=reset)
    wait_mail_line(caplog, "disconnect", "helo=dropper.example")  # the server has ended the session
    assert spooled(server) == []
    assert not any(line.startswith("accepted ") for line in mail_lines(caplog))
    assert hatoba_home.messages("bob@example.test") == []
    still_serving(server)
    # The same transaction completed is stored, and seen by the same checks.
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as c:
        c.sendmail("a@b.example", ["bob@example.test", "forward@example.test"], b"Subject: whole\r\n\r\nall\r\n")
    assert len(hatoba_home.wait_messages("bob@example.test", 1)) == 1
    assert len(spooled(server)) == 1


def test_tls_garbage_on_465(server):
    s = socket.create_connection(("127.0.0.1", server.port("smtps")), timeout=10)
    s.sendall(b"EHLO not-tls\r\n" * 10)
    s.settimeout(10)
    try:
        data = s.recv(100)
    except (ConnectionResetError, socket.timeout):
        data = b""
    assert not data.startswith(b"220")
    s.close()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP_SSL("127.0.0.1", server.port("smtps"), context=ctx, timeout=10) as c:
        assert c.noop()[0] == 250


# SMTP smuggling (CVE-2023-51764 and friends): an end of data that some server
# on the way accepts but hatoba must not, followed by a whole second
# transaction. Only <CR><LF>.<CR><LF> ends the data (proto/smtp/data.py).
SMUGGLED_ENDS = {
    "lf-dot-lf": (b"\n.\n", b"\n"),
    "lf-dot-lf-crlf-commands": (b"\n.\n", b"\r\n"),
    "cr-dot-lf": (b"\r.\n", b"\r\n"),
    "lf-dot-crlf": (b"\n.\r\n", b"\r\n"),
    "crlf-dot-lf": (b"\r\n.\n", b"\r\n"),
}


def smuggle(w: Wire, end: bytes, eol: bytes) -> None:
    """One transaction whose body holds `end` and, after it, a second transaction
    (its commands ended by `eol`) for alice and forward@, then the real end."""
    w.send(b"EHLO smuggler.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.test>\r\n"
           b"RCPT TO:<forward@example.test>\r\nDATA\r\n")
    assert [w.smtp_reply()[:3] for _ in range(5)] == [b"250", b"250", b"250", b"250", b"354"]
    second = [b"MAIL FROM:<admin@example.test>", b"RCPT TO:<alice@example.test>", b"RCPT TO:<forward@example.test>",
              b"DATA", b"Subject: smuggled", b"", b"evil"]
    w.send(b"Subject: first\r\n\r\nbody" + end + eol.join(second) + end + b"\r\n.\r\n")


@pytest.mark.parametrize("end,eol", SMUGGLED_ENDS.values(), ids=SMUGGLED_ENDS.keys())
def test_smuggling_does_not_split_messages(server, hatoba_home, caplog, end, eol):
    """bare_newline = "normalize" (the default): the smuggled lines stay in the
    first message's body; one message is accepted, and nothing for alice."""
    capture_mail_log(caplog)
    with Wire(server.port("smtp")) as w:
        assert w.smtp_reply().startswith(b"220 ")
        smuggle(w, end, eol)
        answer = w.smtp_reply()
        assert answer.startswith(b"250 "), answer  # one answer for one message
        w.send(b"NOOP\r\nQUIT\r\n")
        assert w.smtp_reply().startswith(b"250") and w.smtp_reply().startswith(b"221")
    [stored] = hatoba_home.wait_messages("bob@example.test", 1)
    assert b"Subject: first" in stored
    assert b"MAIL FROM:<admin@example.test>" in stored and b"Subject: smuggled" in stored  # body text
    assert len([line for line in mail_lines(caplog) if line.startswith("accepted ")]) == 1
    [queued] = spooled(server)  # the copy for forward@ waits for its (closed) route: the first message only
    assert b"Subject: first" in queued.read_bytes()
    time.sleep(0.2)
    assert hatoba_home.messages("alice@example.test") == []


@pytest.mark.parametrize("end,eol", SMUGGLED_ENDS.values(), ids=SMUGGLED_ENDS.keys())
def test_smuggling_with_bare_newline_reject(hatoba_home, caplog, end, eol):
    """bare_newline = "reject": the first bare LF ends the session with 550; nothing is stored."""
    capture_mail_log(caplog)
    _merge_config(hatoba_home.config_path, '[smtp]\nbare_newline = "reject"\n')
    with ServerThread(hatoba_home) as srv:
        with Wire(srv.port("smtp")) as w:
            assert w.smtp_reply().startswith(b"220 ")
            smuggle(w, end, eol)
            answer = w.smtp_reply()
            assert answer.startswith(b"550 5.5.2 ") and b"bare <LF>" in answer, answer
            assert w.closed_by_server()
        wait_mail_line(caplog, "disconnect", "helo=smuggler.example")
        assert not any(line.startswith("accepted ") for line in mail_lines(caplog))
        assert spooled(srv) == []
    for user in ("bob@example.test", "alice@example.test"):
        assert hatoba_home.messages(user) == []
