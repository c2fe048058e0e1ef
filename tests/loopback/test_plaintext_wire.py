"""No password before TLS: what the server itself refuses, checked on the wire.

Every way to log in on a cleartext port (IMAP 143 before STARTTLS, POP3 110
before STLS, SMTP 587 and 25 before STARTTLS) is tried with raw sockets and
the right password of a real user, sent the way a client that ignores
LOGINDISABLED, a missing USER capability or a missing AUTH keyword would
send it. Where the server asks for more (a "+" or "334" continuation) the
client answers with the credentials, as a real client would.

Each exchange runs twice: on a server with the default configuration, where
the server must refuse it without ever asking for the password and nobody is
logged in afterwards, and on a server whose configuration allows passwords in
clear from 127.0.0.0/8 ([auth] plaintext_networks, [smtp]
allow_plaintext_auth), where the very same bytes log in. So a refusal proves
the TLS rule, not a broken login.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re

import pytest
import scramp

from hatoba.net import login as L
from support.harness import PASSWORDS, ServerThread, make_home
from support.wire import Wire, capture_mail_log, mail_lines

BOB = "bob@example.test"
BOB_PASSWORD = PASSWORDS[BOB]
APOP_SECRET = "apop-secret-42"
MECHANISMS = ("PLAIN", "LOGIN", "SCRAM-SHA-256")  # every mechanism offered without TLS (checked below)
LENIENT_CONFIG = (
    '[auth]\nplaintext_networks = ["127.0.0.0/8"]\n'
    "[smtp]\nallow_plaintext_auth = true\nauth_on_smtp_port = true\n"
)


def _server(tmp_path_factory, name: str, extra_config: str = ""):
    home = make_home(tmp_path_factory.mktemp(name) / "hatoba", extra_config=extra_config)
    r = home.cli("user", "apop", BOB, "--enable", "--password-stdin", stdin=APOP_SECRET + "\n")
    assert r.returncode == 0, r.stderr
    return ServerThread(home)


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """The default configuration: no password in clear from anywhere."""
    with _server(tmp_path_factory, "strict") as srv:
        cfg = srv.config
        assert cfg.auth.plaintext_networks == ()
        assert not cfg.smtp.allow_plaintext_auth and not cfg.smtp.auth_on_smtp_port
        yield srv


@pytest.fixture(scope="module")
def lenient(tmp_path_factory):
    """Passwords in clear allowed from loopback: the same exchanges must log in here."""
    with _server(tmp_path_factory, "lenient", LENIENT_CONFIG) as srv:
        assert "127.0.0.0/8" in srv.config.auth.plaintext_networks and srv.config.smtp.allow_plaintext_auth
        yield srv


@pytest.fixture(params=["strict", "lenient"])
def mode(request, caplog):
    """("strict" or "lenient", its server); the mail log is captured."""
    capture_mail_log(caplog)
    return request.param, request.getfixturevalue(request.param)


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


class SaslClient:
    """The client side of one SASL exchange, step by step."""

    def __init__(self, mechanism: str, user: str = BOB, password: str = BOB_PASSWORD) -> None:
        self.mechanism = mechanism
        self.step = 0
        self.messages = {"PLAIN": [b"\0" + user.encode() + b"\0" + password.encode()],
                         "LOGIN": [user.encode(), password.encode()]}.get(mechanism)
        self.scram = scramp.ScramClient([mechanism], user, password) if mechanism.startswith("SCRAM") else None

    def next(self, challenge: bytes) -> bytes:
        step, self.step = self.step, self.step + 1
        if self.scram is None:
            assert self.messages is not None
            return self.messages[step]
        if step == 0:
            return self.scram.get_client_first().encode()
        if step == 1:
            self.scram.set_server_first(challenge.decode())
            return self.scram.get_client_final().encode()
        self.scram.set_server_final(challenge.decode())  # checks the server's proof
        return b""


def logged_in(caplog, proto: str) -> list[str]:
    return [line for line in mail_lines(caplog) if line.startswith("auth result=ok") and f"proto={proto}" in line]


def check_logins(caplog, name: str, proto: str, mechanism: str) -> None:
    """No login on the strict server, nor even a login attempt: the protocol core
    refuses before the login path (which would log `auth result=refused
    reason=no-tls`) is reached. One login, in clear, on the lenient server."""
    oks = logged_in(caplog, proto)
    if name == "strict":
        assert oks == []
        assert [line for line in mail_lines(caplog) if line.startswith("auth ")] == []
    else:
        [ok] = oks
        assert f"login={BOB}" in ok and f"mech={mechanism}" in ok and "tls=none" in ok


# -- IMAP 143 before STARTTLS -------------------------------------------------------------------


def imap(server) -> Wire:
    w = Wire(server.port("imap"))
    assert w.line().startswith(b"* OK ")
    return w


def imap_tagged(w: Wire, tag: bytes) -> bytes:
    while True:
        line = w.line()
        if line.startswith(tag + b" "):
            return line


def imap_authenticate(w: Wire, tag: bytes, mechanism: str, *, initial: bool) -> tuple[bytes, int]:
    """AUTHENTICATE as a client that answers every continuation: (the tagged line, continuations)."""
    client = SaslClient(mechanism)
    command = tag + b" AUTHENTICATE " + mechanism.encode()
    if initial:  # SASL-IR (RFC 4959)
        command += b" " + b64(client.next(b""))
    w.send(command + b"\r\n")
    continuations = 0
    while True:
        line = w.line()
        if line.startswith(b"+"):
            continuations += 1
            w.send(b64(client.next(base64.b64decode(line[1:].strip()))) + b"\r\n")
        elif line.startswith(tag + b" "):
            return line, continuations


def imap_after(w: Wire, name: str) -> None:
    """Logged in or not: SELECT INBOX tells."""
    w.send(b"s SELECT INBOX\r\n")
    answer = imap_tagged(w, b"s")
    if name == "strict":
        assert answer.startswith(b"s BAD ") and b"log in first" in answer, answer
    else:
        assert answer.startswith(b"s OK "), answer
    w.send(b"z LOGOUT\r\n")
    assert imap_tagged(w, b"z").startswith(b"z OK")


def test_imap_login_before_starttls(mode, caplog):
    name, server = mode
    with imap(server) as w:
        w.send(f'a LOGIN "{BOB}" "{BOB_PASSWORD}"\r\n'.encode())
        answer = imap_tagged(w, b"a")
        if name == "strict":
            assert answer.startswith(b"a NO [PRIVACYREQUIRED] "), answer
        else:
            assert answer.startswith(b"a OK "), answer
        imap_after(w, name)
    check_logins(caplog, name, "imap", "LOGIN")


@pytest.mark.parametrize("initial", [True, False], ids=["sasl-ir", "continuation"])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_imap_authenticate_before_starttls(mode, caplog, mechanism, initial):
    name, server = mode
    with imap(server) as w:
        answer, continuations = imap_authenticate(w, b"a", mechanism, initial=initial)
        if name == "strict":
            # Refused at once: the server never asks for (more of) the password in clear.
            assert continuations == 0
            assert answer.startswith(b"a NO [PRIVACYREQUIRED] "), answer
        else:
            assert answer.startswith(b"a OK "), answer
        imap_after(w, name)
    check_logins(caplog, name, "imap", mechanism)


def test_imap_offers_in_clear_only_the_mechanisms_tried_here(strict, lenient):
    for server, expected in ((strict, set()), (lenient, set(MECHANISMS))):
        with imap(server) as w:
            w.send(b"c CAPABILITY\r\n")
            caps = w.line().split()
            assert imap_tagged(w, b"c").startswith(b"c OK")
        assert {c[5:].decode() for c in caps if c.startswith(b"AUTH=")} == expected
        assert (b"LOGINDISABLED" in caps) == (server is strict)


# -- POP3 110 before STLS -----------------------------------------------------------------------


def pop3(server) -> tuple[Wire, bytes]:
    w = Wire(server.port("pop3"))
    greeting = w.line()
    assert greeting.startswith(b"+OK ")
    return w, greeting


def pop3_auth(w: Wire, mechanism: str, *, initial: bool) -> tuple[bytes, int]:
    client = SaslClient(mechanism)
    command = b"AUTH " + mechanism.encode()
    if initial:
        command += b" " + b64(client.next(b""))
    w.send(command + b"\r\n")
    continuations = 0
    while True:
        line = w.line()
        if line.startswith(b"+ ") or line.rstrip(b"\r\n") == b"+":
            continuations += 1
            w.send(b64(client.next(base64.b64decode(line[1:].strip()))) + b"\r\n")
        else:
            return line, continuations


def pop3_after(w: Wire, name: str) -> None:
    w.send(b"STAT\r\n")
    answer = w.line()
    if name == "strict":
        assert answer.startswith(b"-ERR ") and b"Not logged in" in answer, answer
    else:
        assert answer.startswith(b"+OK "), answer
    w.send(b"QUIT\r\n")
    assert w.line().startswith(b"+OK")


def test_pop3_user_pass_before_stls(mode, caplog):
    name, server = mode
    w, _ = pop3(server)
    with w:
        w.send(f"USER {BOB}\r\n".encode())
        user = w.line()
        w.send(f"PASS {BOB_PASSWORD}\r\n".encode())  # sent anyway, as a careless client does
        password = w.line()
        if name == "strict":
            assert user.startswith(b"-ERR [AUTH] ") and b"STLS" in user, user  # before the password is typed
            assert password.startswith(b"-ERR [AUTH] "), password
        else:
            assert user.startswith(b"+OK") and password.startswith(b"+OK"), (user, password)
        pop3_after(w, name)
    check_logins(caplog, name, "pop3", "USER")


def test_pop3_apop_before_stls(mode, caplog):
    name, server = mode
    w, greeting = pop3(server)
    with w:
        timestamp = re.search(rb"<[^>]+>", greeting).group(0)
        digest = hashlib.md5(timestamp + APOP_SECRET.encode()).hexdigest()
        w.send(f"APOP {BOB} {digest}\r\n".encode())
        answer = w.line()
        if name == "strict":
            assert answer.startswith(b"-ERR [AUTH] ") and b"before TLS" in answer, answer
        else:
            assert answer.startswith(b"+OK"), answer
        pop3_after(w, name)
    check_logins(caplog, name, "pop3", "APOP")


@pytest.mark.parametrize("initial", [True, False], ids=["initial-response", "continuation"])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_pop3_auth_before_stls(mode, caplog, mechanism, initial):
    name, server = mode
    w, _ = pop3(server)
    with w:
        answer, continuations = pop3_auth(w, mechanism, initial=initial)
        if name == "strict":
            assert continuations == 0
            assert answer.startswith(b"-ERR [AUTH] ") and b"STLS" in answer, answer
        else:
            assert answer.startswith(b"+OK"), answer
        pop3_after(w, name)
    check_logins(caplog, name, "pop3", mechanism)


def test_pop3_offers_in_clear_only_the_mechanisms_tried_here(strict, lenient):
    for server, refused in ((strict, True), (lenient, False)):
        w, _ = pop3(server)
        with w:
            w.send(b"CAPA\r\n")
            assert w.line().startswith(b"+OK")
            caps = []
            while (line := w.line()) != b".\r\n":
                caps.append(line.rstrip(b"\r\n").decode())
        sasl = [c.split()[1:] for c in caps if c.startswith("SASL")]
        assert ("USER" in caps, sasl) == ((False, []) if refused else (True, [list(MECHANISMS)]))


# -- SMTP 587 and 25 before STARTTLS ----------------------------------------------------------


def smtp(server, listener: str) -> Wire:
    w = Wire(server.port(listener))
    assert w.smtp_reply().startswith(b"220 ")
    w.send(b"EHLO client.example\r\n")
    ehlo = w.smtp_reply()
    assert ehlo.startswith(b"250-")
    w.ehlo = ehlo  # type: ignore[attr-defined]
    return w


def smtp_auth(w: Wire, mechanism: str, *, initial: bool) -> tuple[bytes, int]:
    client = SaslClient(mechanism)
    command = b"AUTH " + mechanism.encode()
    if initial:
        command += b" " + b64(client.next(b""))
    w.send(command + b"\r\n")
    continuations = 0
    while True:
        answer = w.smtp_reply()
        if not answer.startswith(b"334"):
            return answer, continuations
        continuations += 1
        w.send(b64(client.next(base64.b64decode(answer[4:].strip()))) + b"\r\n")


def smtp_relay(w: Wire) -> tuple[bytes, bytes]:
    """MAIL FROM a local user and RCPT TO an outside address: the answers."""
    w.send(f"MAIL FROM:<{BOB}>\r\n".encode())
    mail = w.smtp_reply()
    w.send(b"RCPT TO:<someone@elsewhere.example>\r\n")
    rcpt = w.smtp_reply()
    w.send(b"RSET\r\nQUIT\r\n")  # nothing is sent, even where it would be relayed
    assert w.smtp_reply().startswith(b"250") and w.smtp_reply().startswith(b"221")
    return mail, rcpt


@pytest.mark.parametrize("initial", [True, False], ids=["initial-response", "continuation"])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_submission_auth_before_starttls(mode, caplog, mechanism, initial):
    name, server = mode
    with smtp(server, "submission") as w:
        offered = re.search(rb"250[- ]AUTH ([^\r\n]*)", w.ehlo)
        answer, continuations = smtp_auth(w, mechanism, initial=initial)
        mail, rcpt = smtp_relay(w)
        if name == "strict":
            assert offered is None and b"STARTTLS" in w.ehlo
            assert continuations == 0
            assert answer.startswith(b"538 5.7.11 "), answer
            assert mail.startswith(b"530 5.7.0 Must issue a STARTTLS"), mail  # no mail without TLS and a login
            assert not rcpt.startswith(b"2"), rcpt
        else:
            assert offered is not None and set(offered.group(1).decode().split()) == set(MECHANISMS)
            assert answer.startswith(b"235 "), answer
            assert mail.startswith(b"250") and rcpt.startswith(b"250"), (mail, rcpt)
    check_logins(caplog, name, "smtp", mechanism)


@pytest.mark.parametrize("initial", [True, False], ids=["initial-response", "continuation"])
@pytest.mark.parametrize("mechanism", ("PLAIN", "LOGIN"))
def test_port_25_auth_before_starttls(mode, caplog, mechanism, initial):
    """Port 25 offers AUTH only with auth_on_smtp_port (the lenient server has it), and
    then only before TLS with allow_plaintext_auth: by default it is refused outright."""
    name, server = mode
    with smtp(server, "smtp") as w:
        answer, continuations = smtp_auth(w, mechanism, initial=initial)
        mail, rcpt = smtp_relay(w)
        if name == "strict":
            assert b"AUTH" not in w.ehlo
            assert continuations == 0
            assert answer.startswith(b"503 5.5.1 ") and b"587" in answer, answer
            assert mail.startswith(b"250")  # anyone may send mail here for our users...
            assert rcpt.startswith(b"554 5.7.1 "), rcpt  # ...but nobody logged in: no relaying
        else:
            assert answer.startswith(b"235 "), answer
            assert mail.startswith(b"250") and rcpt.startswith(b"250"), (mail, rcpt)
    check_logins(caplog, name, "smtp", mechanism)


def test_port_25_with_auth_refuses_it_before_starttls(tmp_path, caplog):
    """auth_on_smtp_port alone: AUTH on 25 only after STARTTLS (538 before, no continuation)."""
    capture_mail_log(caplog)
    home = make_home(tmp_path / "h", extra_config="[smtp]\nauth_on_smtp_port = true\n")
    with ServerThread(home) as server, smtp(server, "smtp") as w:
        assert b"AUTH" not in w.ehlo
        for mechanism in MECHANISMS:
            for initial in (True, False):
                answer, continuations = smtp_auth(w, mechanism, initial=initial)
                assert (continuations, answer[:10]) == (0, b"538 5.7.11"), (mechanism, initial, answer)
        mail, rcpt = smtp_relay(w)
        assert mail.startswith(b"250") and rcpt.startswith(b"554 5.7.1 "), (mail, rcpt)
    assert logged_in(caplog, "smtp") == []


# -- the login path's own check ------------------------------------------------------------------


@dataclasses.dataclass
class _Session:
    """What Logins sees of a session, as on a cleartext port before STARTTLS."""

    listener: object
    client_ip: str = "127.0.0.1"
    tls_info: tuple[str, str, int] | None = None
    login_account: str | None = None


async def _password_login(server, session: _Session) -> L.LoginResult:
    """One password check through the server's Logins, as a connection it counted."""
    limiter = server.server.limiter
    assert limiter.acquire(session.client_ip) is None
    try:
        return await server.server.logins.password(session, BOB, BOB_PASSWORD, mechanism="PLAIN")
    finally:
        limiter.release(session.client_ip, session.login_account, L.protocol_of(session.listener))


@pytest.mark.parametrize("listener", ["imap", "pop3", "submission"])
def test_the_login_path_refuses_passwords_without_tls_itself(strict, lenient, listener):
    """The protocol cores refuse first; Logins refuses again should a core not (login.py)."""
    session = _Session(strict.config.listeners[listener])
    result = strict.call(_password_login(strict, session))
    assert (result.status, result.reason, session.login_account) == (L.REFUSED, "no-tls", None)
    # The same call logs in over TLS, or in clear where the configuration allows it.
    session = _Session(strict.config.listeners[listener], tls_info=("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128))
    assert strict.call(_password_login(strict, session)).status == L.OK
    session = _Session(lenient.config.listeners[listener])
    assert lenient.call(_password_login(lenient, session)).status == L.OK and session.login_account == BOB
