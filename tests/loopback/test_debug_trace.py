"""--debug traces the client's lines too, never a credential."""

from __future__ import annotations

import base64
import logging
import poplib
import smtplib


PASSWORD = "alice-password-1"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


SECRETS = (PASSWORD, b64(PASSWORD), b64(f"\0alice@example.test\0{PASSWORD}"))


def traced(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "hatoba.trace"]


def test_smtp_client_lines_are_traced_and_credentials_redacted(server, hatoba_home, caplog):
    caplog.set_level(logging.DEBUG, logger="hatoba.trace")
    with smtplib.SMTP_SSL("127.0.0.1", server.port("smtps"), context=hatoba_home.client_context(),
                          timeout=10) as c:
        c.ehlo("client.example")
        assert c.docmd("AUTH", "PLAIN " + SECRETS[2])[0] == 235
        c.docmd("RSET")
    with smtplib.SMTP_SSL("127.0.0.1", server.port("smtps"), context=hatoba_home.client_context(),
                          timeout=10) as c:
        c.ehlo("client.example")
        assert c.docmd("AUTH", "LOGIN")[0] == 334
        assert c.docmd(b64("alice@example.test"))[0] == 334
        assert c.docmd(SECRETS[1])[0] == 235
        assert c.docmd("MAIL", "FROM:<alice@example.test>")[0] == 250
    lines = traced(caplog)
    assert "<- ehlo client.example" in lines and "<- RSET" in lines
    assert "<- MAIL FROM:<alice@example.test>" in lines
    assert "<- AUTH PLAIN <redacted>" in lines and lines.count("<- <redacted>") == 2
    assert not any(secret in line for line in lines for secret in SECRETS)


def test_pop3_client_lines_are_traced_and_password_redacted(server, hatoba_home, caplog):
    caplog.set_level(logging.DEBUG, logger="hatoba.trace")
    p = poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), context=hatoba_home.client_context(), timeout=10)
    p.user("alice@example.test")
    p.pass_(PASSWORD)
    p.stat()
    p.quit()
    lines = traced(caplog)
    assert "<- USER alice@example.test" in lines and "<- STAT" in lines and "<- QUIT" in lines
    assert "<- PASS <redacted>" in lines
    assert not any(PASSWORD in line for line in lines)


def test_imap_commands_and_answers_are_traced_and_credentials_redacted(server, hatoba_home, caplog):
    import imaplib

    caplog.set_level(logging.DEBUG, logger="hatoba.trace")
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=hatoba_home.client_context(),
                           timeout=10) as c:
        c.login("alice@example.test", PASSWORD)
        c.select("INBOX")
        c.logout()
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=hatoba_home.client_context(),
                           timeout=10) as c:
        c.authenticate("PLAIN", lambda _: f"\0alice@example.test\0{PASSWORD}".encode())
        c.logout()
    lines = traced(caplog)
    logins = [line for line in lines if " LOGIN " in line]
    assert logins and all(line.endswith("LOGIN <redacted>") for line in logins)
    assert any(line.startswith("<- ") and line.endswith(" SELECT INBOX") for line in lines)
    assert any(line.startswith("-> ") and line.endswith(" OK [READ-WRITE] SELECT completed") for line in lines)
    assert any(" AUTHENTICATE PLAIN" in line for line in lines)
    assert "<- <redacted>" in lines  # the SASL response line
    assert not any(secret in line for line in lines for secret in SECRETS)


def _send_lines(port: int, context, lines: list[bytes]) -> None:
    """Each line in its own packet, then whatever the server says read until it pauses."""
    import socket
    import time

    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                             server_hostname="mail.example.test") as s:
        s.settimeout(1.0)
        for line in lines:
            s.sendall(line + b"\r\n")
            time.sleep(0.1)
        try:
            while s.recv(65536):
                pass
        except OSError:
            pass


def test_credentials_in_odd_spellings_are_redacted_too(server, hatoba_home, caplog):
    # Refused commands carry the password all the same: a tab after the verb, a leading
    # space, the IMAP verb after UID or without a tag.
    caplog.set_level(logging.DEBUG, logger="hatoba.trace")
    ctx, ir, pw = hatoba_home.client_context(), SECRETS[2].encode(), PASSWORD.encode()
    _send_lines(server.port("smtps"), ctx, [b"EHLO x", b"AUTH\tPLAIN " + ir, b" AUTH PLAIN " + ir])
    _send_lines(server.port("pop3s"), ctx, [b"USER alice@example.test", b"PASS\t" + pw])
    _send_lines(server.port("imaps"), ctx, [b"a UID LOGIN alice@example.test " + pw,
                                            b"LOGIN alice@example.test " + pw,
                                            b"b UID AUTHENTICATE PLAIN " + ir])
    lines = traced(caplog)
    assert not any(secret in line for line in lines for secret in SECRETS), [
        line for line in lines if any(secret in line for secret in SECRETS)]
    assert "<- AUTH PLAIN <redacted>" in lines and "<- PASS <redacted>" in lines
    assert "<- a UID LOGIN <redacted>" in lines and "<- b UID AUTHENTICATE PLAIN <redacted>" in lines
