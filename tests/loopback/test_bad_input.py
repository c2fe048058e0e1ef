"""Hostile and broken clients: right reply codes, and the server keeps serving."""

import smtplib
import socket
import ssl
import time

from support.harness import ServerThread, _merge_config


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
        held[0][1].close()
        held[0][0].close()
        time.sleep(0.2)
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as c:
            assert c.noop()[0] == 250


def test_dropped_in_the_middle_of_data_stores_nothing(server, hatoba_home):
    s, f = connect(server.port("smtp"))
    s.sendall(b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    for _ in range(4):
        reply(f)
    s.sendall(b"Subject: half\r\n\r\nhalf a message")
    s.close()
    time.sleep(0.3)
    still_serving(server)
    assert hatoba_home.messages("bob@example.test") == []
    assert list((hatoba_home.root / "data" / "queue").rglob("*tmp*/*")) == []


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


def test_smuggling_does_not_split_messages(server, hatoba_home):
    s, f = connect(server.port("smtp"))
    s.sendall(b"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    for _ in range(4):
        reply(f)
    s.sendall(
        b"Subject: first\r\n\r\nbody\n.\nMAIL FROM:<admin@example.test>\nRCPT TO:<alice@example.test>\nDATA\n"
        b"Subject: smuggled\n\nevil\n.\r\n.\r\n"
    )
    assert reply(f).startswith(b"250")
    s.sendall(b"QUIT\r\n")
    reply(f)
    [stored] = hatoba_home.wait_messages("bob@example.test", 1)
    assert b"Subject: smuggled" in stored  # part of the first message's body
    time.sleep(0.3)
    assert hatoba_home.messages("alice@example.test") == []
