"""SCRAM-SHA-256 and SCRAM-SHA-256-PLUS on SMTP, POP3 and IMAP, with an
independent client (scramp) over real TLS on loopback."""

from __future__ import annotations

import base64
import imaplib
import poplib
import smtplib
import socket
import sqlite3

import pytest
import scramp
from OpenSSL import SSL

from support.harness import PASSWORDS

ALICE = "alice@example.test"
BOB = "bob@example.test"
MECH = "SCRAM-SHA-256"
PLUS = "SCRAM-SHA-256-PLUS"


def _client(user: str, password: str, binding=None) -> scramp.ScramClient:
    mech = PLUS if binding else MECH
    return scramp.ScramClient([mech], user, password, channel_binding=binding)


def _endpoint(sock) -> tuple[str, object]:
    """RFC 5929 tls-server-end-point, which scramp computes from the socket's peer certificate."""
    return ("tls-server-end-point", sock)


@pytest.fixture
def scramp_knows_tls_exporter(monkeypatch):
    # scramp refuses the name only because Python's ssl cannot compute the
    # value; the test hands it the value pyOpenSSL computed.
    cb = scramp.core.CbName
    monkeypatch.setattr(cb, "SUPPORTED_TYPES", cb.SUPPORTED_TYPES | {"tls-exporter"})
    monkeypatch.setattr(cb, "UNSUPPORTED_TYPES", frozenset())


class _Steps:
    """An imaplib/smtplib authobject: client-first, client-final, then the empty ack."""

    def __init__(self, client: scramp.ScramClient) -> None:
        self.client = client
        self.step = 0

    def __call__(self, challenge: bytes | None = None) -> str:
        self.step += 1
        if self.step == 1:
            return self.client.get_client_first()
        if self.step == 2:
            self.client.set_server_first(challenge.decode())
            return self.client.get_client_final()
        self.client.set_server_final(challenge.decode())
        return ""


def _imap_login(server, home, user, password, *, plus=False, binding=None):
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=home.client_context(), timeout=10) as c:
        assert f"AUTH={MECH}" in c.capabilities and f"AUTH={PLUS}" in c.capabilities
        if plus:
            binding = binding or _endpoint(c.sock)
        steps = _Steps(_client(user, password, binding if plus else None))
        typ, _ = c.authenticate(PLUS if plus else MECH, lambda ch: steps(ch).encode())
        assert steps.step == 3  # the server's final message was checked by the client
        return typ


def _smtp_login(server, home, user, password, *, plus=False):
    with smtplib.SMTP_SSL("127.0.0.1", server.port("smtps"), context=home.client_context(), timeout=10) as c:
        c.ehlo("client.example")
        assert MECH in c.esmtp_features["auth"].split() and PLUS in c.esmtp_features["auth"].split()
        steps = _Steps(_client(user, password, _endpoint(c.sock) if plus else None))
        code, _ = c.auth(PLUS if plus else MECH, steps, initial_response_ok=True)
        assert steps.step == 3
        return code


def _pop3_login(server, home, user, password, *, plus=False):
    c = poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), context=home.client_context(), timeout=10)
    try:
        assert MECH in c.capa()["SASL"] and PLUS in c.capa()["SASL"]
        client = _client(user, password, _endpoint(c.sock) if plus else None)
        first = base64.b64encode(client.get_client_first().encode()).decode()
        resp = c._shortcmd(f"AUTH {PLUS if plus else MECH} {first}")
        client.set_server_first(base64.b64decode(resp[2:]).decode())
        resp = c._shortcmd(base64.b64encode(client.get_client_final().encode()).decode())
        client.set_server_final(base64.b64decode(resp[2:]).decode())
        resp = c._shortcmd("")
        assert resp.startswith(b"+OK")
        assert c.stat()[0] >= 0  # logged in: the maildrop answers
        return "OK"
    finally:
        c.close()


@pytest.mark.parametrize("plus", [False, True], ids=["scram", "scram-plus"])
def test_scram_on_every_protocol(server, hatoba_home, plus):
    assert _imap_login(server, hatoba_home, ALICE, PASSWORDS[ALICE], plus=plus) == "OK"
    assert _smtp_login(server, hatoba_home, ALICE, PASSWORDS[ALICE], plus=plus) == 235
    assert _pop3_login(server, hatoba_home, ALICE, PASSWORDS[ALICE], plus=plus) == "OK"


def test_scram_with_a_wrong_password_fails_and_counts(server, hatoba_home):
    for _ in range(3):
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            _imap_login(server, hatoba_home, BOB, "not-bobs-password")
    with pytest.raises(smtplib.SMTPAuthenticationError):
        _smtp_login(server, hatoba_home, BOB, "not-bobs-password")
    with pytest.raises(poplib.error_proto, match="AUTH"):
        _pop3_login(server, hatoba_home, BOB, "not-bobs-password")
    status = hatoba_home.cli("auth", "status", BOB)
    assert status.returncode == 0, status.stderr
    assert BOB in status.stdout  # five failures of its own, like any other wrong password
    assert _imap_login(server, hatoba_home, BOB, PASSWORDS[BOB]) == "OK"


def test_scram_plus_with_a_binding_of_another_connection_is_refused(server, hatoba_home):
    forged = ("tls-server-end-point", b"\x00" * 32)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        _imap_login(server, hatoba_home, ALICE, PASSWORDS[ALICE], plus=True, binding=forged)


def _imap_line(conn: SSL.Connection, buffer: bytearray) -> bytes:
    while b"\r\n" not in buffer:
        buffer += conn.recv(65536)
    line, _, rest = bytes(buffer).partition(b"\r\n")
    buffer[:] = rest
    return line


@pytest.mark.parametrize("forge", [False, True], ids=["matching", "forged"])
def test_scram_plus_with_tls_exporter_over_tls13(server, hatoba_home, forge, scramp_knows_tls_exporter):
    """RFC 9266: the client takes tls-exporter from its own TLS library (pyOpenSSL)."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    ctx.load_verify_locations(str(hatoba_home.ca_file))
    ctx.set_verify(SSL.VERIFY_PEER, lambda *args: args[-1])
    sock = socket.create_connection(("127.0.0.1", server.port("imaps")), timeout=10)
    sock.settimeout(None)  # pyOpenSSL wants a blocking socket (pytest-timeout bounds the test)
    conn = SSL.Connection(ctx, sock)
    conn.set_tlsext_host_name(b"mail.example.test")
    conn.set_connect_state()
    conn.do_handshake()
    try:
        data = conn.export_keying_material(b"EXPORTER-Channel-Binding", 32)
        if forge:
            data = bytes(32)
        client = _client(ALICE, PASSWORDS[ALICE], ("tls-exporter", data))
        buffer = bytearray()
        assert _imap_line(conn, buffer).startswith(b"* OK")
        first = base64.b64encode(client.get_client_first().encode())
        conn.sendall(b"a AUTHENTICATE " + PLUS.encode() + b" " + first + b"\r\n")
        challenge = _imap_line(conn, buffer)
        assert challenge.startswith(b"+ "), challenge
        client.set_server_first(base64.b64decode(challenge[2:]).decode())
        conn.sendall(base64.b64encode(client.get_client_final().encode()) + b"\r\n")
        answer = _imap_line(conn, buffer)
        if forge:
            assert answer.startswith(b"a NO [AUTHENTICATIONFAILED]"), answer
            return
        assert answer.startswith(b"+ "), answer
        client.set_server_final(base64.b64decode(answer[2:]).decode())  # raises if the server is an impostor
        conn.sendall(b"\r\n")
        assert _imap_line(conn, buffer).startswith(b"a OK")
    finally:
        conn.close()


def test_existing_users_get_scram_keys_at_their_next_login(server, hatoba_home):
    """A user from before SCRAM (no keys stored) logs in with a password once;
    from then on SCRAM works, and the password itself was never stored."""
    db = hatoba_home.root / "data" / "directory.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE users SET scram_sha256 = NULL WHERE address_key = ?", (BOB,))
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        _imap_login(server, hatoba_home, BOB, PASSWORDS[BOB])
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=hatoba_home.client_context()) as c:
        assert c.login(BOB, PASSWORDS[BOB])[0] == "OK"
    with sqlite3.connect(db) as conn:
        [(stored,)] = conn.execute("SELECT scram_sha256 FROM users WHERE address_key = ?", (BOB,)).fetchall()
    assert stored and PASSWORDS[BOB] not in stored
    assert _imap_login(server, hatoba_home, BOB, PASSWORDS[BOB]) == "OK"


def _imaps_salt(port: int, home, user: str) -> str:
    """The salt the server gives `user`; the exchange is then cancelled."""
    client = _client(user, "whatever-password")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with home.client_context().wrap_socket(raw, server_hostname="mail.example.test") as tls:
            reader = tls.makefile("rb")
            reader.readline()
            tls.sendall(b"a AUTHENTICATE SCRAM-SHA-256 " + base64.b64encode(client.get_client_first().encode()) + b"\r\n")
            challenge = reader.readline()
            assert challenge.startswith(b"+ "), challenge
            tls.sendall(b"*\r\n")
            assert reader.readline().startswith(b"a BAD")
    fields = dict(f.split("=", 1) for f in base64.b64decode(challenge[2:]).decode().split(","))
    return fields["s"]


def test_an_unknown_user_looks_like_a_known_one(hatoba_home):
    """Every spelling of a name gets one salt, known user or not, and an unknown
    name keeps its salt across a restart, as a real user's does."""
    from support.harness import ServerThread

    spellings = ("{}@example.test", '"{}"@example.test', " {}@Example.TEST")
    salts = {}
    for _ in range(2):  # before and after a restart
        with ServerThread(hatoba_home) as srv:
            for name in ("alice", "zed"):
                seen = {_imaps_salt(srv.port("imaps"), hatoba_home, s.format(name)) for s in spellings}
                assert len(seen) == 1, (name, seen)
                salts.setdefault(name, set()).update(seen)
    assert len(salts["alice"]) == 1 and len(salts["zed"]) == 1
    assert salts["alice"] != salts["zed"]


def test_leaving_after_the_servers_final_message_counts_as_a_guess(server, hatoba_home):
    """A client that proves the password, reads the server's v= and cancels has
    learnt the password is right: that try is logged and counted, never silent."""
    client = _client(ALICE, PASSWORDS[ALICE])
    with socket.create_connection(("127.0.0.1", server.port("imaps")), timeout=10) as raw:
        with hatoba_home.client_context().wrap_socket(raw, server_hostname="mail.example.test") as tls:
            reader = tls.makefile("rb")
            reader.readline()
            tls.sendall(b"a AUTHENTICATE SCRAM-SHA-256 " + base64.b64encode(client.get_client_first().encode()) + b"\r\n")
            client.set_server_first(base64.b64decode(reader.readline()[2:]).decode())
            tls.sendall(base64.b64encode(client.get_client_final().encode()) + b"\r\n")
            final = reader.readline()
            client.set_server_final(base64.b64decode(final[2:]).decode())  # the password is confirmed
            tls.sendall(b"*\r\n")
            assert reader.readline().startswith(b"a BAD")
    status = hatoba_home.cli("auth", "status", ALICE)
    assert status.returncode == 0, status.stderr
    assert "pair alice@example.test from 127.0.0.1: 1.0 failed" in status.stdout, status.stdout


def test_the_debug_trace_shows_no_scram_challenge(server, hatoba_home, caplog):
    """The salt and the server's signature would let a reader of the log test
    passwords offline: the trace shows `<redacted>` for every SASL challenge."""
    import logging

    caplog.set_level(logging.DEBUG, logger="hatoba.trace")
    assert _smtp_login(server, hatoba_home, ALICE, PASSWORDS[ALICE]) == 235
    assert _pop3_login(server, hatoba_home, ALICE, PASSWORDS[ALICE]) == "OK"
    traced = [r.getMessage() for r in caplog.records if r.name == "hatoba.trace"]
    assert any("<redacted>" in line for line in traced)
    assert not any(line.startswith("-> 334 ") or line.startswith("-> + ") for line in traced), traced
