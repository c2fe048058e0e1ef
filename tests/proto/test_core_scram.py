"""SCRAM through the SMTP and POP3 cores: the key look-up event, the server's
final message, refusals before the salt, and -PLUS only with channel bindings.
A scramp client plays the other side; no sockets."""

from __future__ import annotations

import base64

import scramp

from hatoba.proto import sasl
from hatoba.proto.scram import derive_scram_keys, unknown_user_keys
from hatoba.proto.pop3 import replies as P
from hatoba.proto.pop3.events import AuthCredentials as PopCredentials
from hatoba.proto.pop3.events import AuthLookup as PopLookup
from hatoba.proto.pop3.server import Pop3Facts, Pop3ServerConn
from hatoba.proto.smtp import replies as R
from hatoba.proto.smtp.events import NEED_DATA, PAUSED, AuthCredentials, AuthLookup, CoreReply, Hello
from hatoba.proto.smtp.server import SessionFacts, SmtpServerConn, State

USER = "alice@example.test"
KEYS = derive_scram_keys("secret", b"0123456789abcdef", 4096)


def keys_of(user: str) -> sasl.ScramKeys:
    """The adapter's look-up: the user's keys, or keys that look alike and match nothing."""
    return KEYS if user == USER else unknown_user_keys(user, b"k" * 32)


def b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


def unb64(line: bytes, prefix: bytes) -> str:
    assert line.startswith(prefix), line
    return base64.b64decode(line[len(prefix):].strip()).decode()


class SmtpAdapter:
    """Answers events as net/smtp_session.py does, with a fixed key store."""

    def __init__(self, refuse_lookup: bool = False) -> None:
        self.conn = SmtpServerConn(SessionFacts(hostname="mail.example.test", tls_active=True, auth_enabled=True))
        self.refuse_lookup = refuse_lookup
        self.lookups: list[str] = []
        self.verdicts: list[sasl.Verified] = []

    def feed(self, data: bytes) -> bytes:
        self.conn.receive_data(data)
        out = b""
        while True:
            ev = self.conn.next_event()
            if ev is NEED_DATA:
                return out
            assert ev is not PAUSED
            match ev:
                case AuthLookup(username=u):
                    self.lookups.append(u)
                    if self.refuse_lookup:
                        out += self.conn.send(R.R454_AUTH_TEMPORARY)
                    else:
                        self.conn.sasl_keys(keys_of(u))
                case AuthCredentials(credentials=sasl.Verified() as v):
                    self.verdicts.append(v)
                    out += self.conn.send(R.R235_AUTH_OK if v.ok else R.R535_AUTH_FAILED)
                case CoreReply(reply=r) | Hello(reply=r):
                    out += self.conn.send(r)
                case _:
                    raise AssertionError(ev)


def smtp_scram(adapter: SmtpAdapter, password: str) -> bytes:
    client = scramp.ScramClient(["SCRAM-SHA-256"], USER, password)
    first = adapter.feed(b"AUTH SCRAM-SHA-256 " + b64(client.get_client_first()) + b"\r\n")
    client.set_server_first(unb64(first, b"334 "))
    final = adapter.feed(b64(client.get_client_final()) + b"\r\n")
    if not final.startswith(b"334 "):
        return final
    client.set_server_final(unb64(final, b"334 "))  # the client checks the server knew the keys
    return adapter.feed(b"\r\n")


def test_smtp_scram_exchange():
    a = SmtpAdapter()
    ehlo = a.feed(b"EHLO c\r\n")
    assert b"AUTH PLAIN LOGIN SCRAM-SHA-256\r\n" in ehlo  # no -PLUS without channel bindings
    assert smtp_scram(a, "secret").startswith(b"235")
    assert a.lookups == [USER] and a.verdicts == [sasl.Verified("", USER, True)]
    assert a.conn.auth_login == USER


def test_smtp_scram_wrong_password_and_refused_lookup():
    a = SmtpAdapter()
    a.feed(b"EHLO c\r\n")
    assert smtp_scram(a, "wrong").startswith(b"535")
    assert a.verdicts == [sasl.Verified("", USER, False)] and a.conn.auth_login is None

    refusing = SmtpAdapter(refuse_lookup=True)
    refusing.feed(b"EHLO c\r\n")
    client = scramp.ScramClient(["SCRAM-SHA-256"], USER, "secret")
    out = refusing.feed(b"AUTH SCRAM-SHA-256 " + b64(client.get_client_first()) + b"\r\n")
    assert out.startswith(b"454 4.7.0")  # no salt went out
    assert refusing.conn.state is State.READY
    assert refusing.feed(b"NOOP\r\n").startswith(b"250")  # a command, not a SASL response


def test_smtp_offers_plus_with_channel_bindings():
    a = SmtpAdapter()
    a.conn.channel_bindings = {"tls-server-end-point": b"x" * 32}
    assert b"AUTH PLAIN LOGIN SCRAM-SHA-256 SCRAM-SHA-256-PLUS\r\n" in a.feed(b"EHLO c\r\n")


class PopAdapter:
    def __init__(self) -> None:
        self.conn = Pop3ServerConn(Pop3Facts(hostname="mail.example.test", tls_available=False, tls_active=True))

    def feed(self, data: bytes) -> bytes:
        self.conn.receive_data(data)
        out = b""
        while True:
            ev = self.conn.next_event()
            if ev is NEED_DATA:
                return out
            assert ev is not PAUSED
            match ev:
                case PopLookup(username=u):
                    self.conn.sasl_keys(keys_of(u))
                case PopCredentials(credentials=sasl.Verified(ok=True, username=u)):
                    out += self.conn.login_succeeded(u, [])
                case PopCredentials():
                    out += self.conn.send(P.ERR_LOGIN_FAILED)
                case _:
                    out += self.conn.send(ev.reply)


def test_pop3_scram_exchange_and_unknown_user():
    for user, password, ok in ((USER, "secret", True), ("nobody@example.test", "secret", False)):
        a = PopAdapter()
        a.feed(b"")
        client = scramp.ScramClient(["SCRAM-SHA-256"], user, password)
        first = a.feed(b"AUTH SCRAM-SHA-256 " + b64(client.get_client_first()) + b"\r\n")
        client.set_server_first(unb64(first, b"+ "))  # an unknown user gets a salt too
        final = a.feed(b64(client.get_client_final()) + b"\r\n")
        if not ok:
            assert final.startswith(b"-ERR [AUTH]")
            continue
        client.set_server_final(unb64(final, b"+ "))
        assert a.feed(b"\r\n").startswith(b"+OK")
        assert a.conn.login == USER
