"""The POP3 server core alone: bytes in, events out, reply bytes back."""

import base64
import hashlib

import pytest

from hatoba.proto.errors import LocalProtocolError
from hatoba.proto.pop3 import replies as R
from hatoba.proto.pop3.body import RetrEncoder, TopEncoder, wire_size
from hatoba.proto.pop3.events import (
    NEED_DATA, PAUSED, ApopLogin, AuthCredentials, CoreReply, Quit, Retrieve, StartTlsRequested, Top, UserPass,
)
from hatoba.proto.pop3.server import MessageInfo, Pop3Facts, Pop3ServerConn, State

USER = "alice@example.test"
PASSWORD = "secret"
# RFC 1939 §7 example: MD5("<1896.697170952@dbc.mtview.ca.us>tanstaaf").
RFC_TIMESTAMP = "<1896.697170952@dbc.mtview.ca.us>"
RFC_DIGEST = "c4c9334bac560ecc979e58001b3e22fb"

MESSAGES = [
    b"From: bob@example.test\nSubject: one\n\nHello\n.dot line\nbye\n",
    b"Subject: two\r\n\r\nline1\r\nline2\r\nline3\r\n",
    b"Subject: three\n\nno final newline",
]


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


class Harness:
    """Answers events like a permissive adapter, and records what happened."""

    def __init__(self, messages=MESSAGES, secrets=None, quit_fails=False, **facts):
        facts.setdefault("hostname", "mail.example.test")
        facts.setdefault("tls_available", True)
        facts.setdefault("tls_active", True)
        self.conn = Pop3ServerConn(Pop3Facts(**facts))
        self.messages = list(messages)
        self.maildrop = [MessageInfo(wire_size(m), f"uid-{i}.x") for i, m in enumerate(self.messages)]
        self.secrets = secrets or {USER: PASSWORD}
        self.quit_fails = quit_fails
        self.events = []
        self.removed = None

    def _login(self, user: str, good: bool) -> bytes:
        if good:
            return self.conn.login_succeeded(user, self.maildrop)
        return self.conn.send(R.ERR_LOGIN_FAILED)

    def answer(self, ev) -> bytes:
        match ev:
            case CoreReply(reply=r):
                return self.conn.send(r)
            case StartTlsRequested():
                out = self.conn.send(R.OK_STLS)
                self.conn.tls_started()
                return out
            case UserPass(user=u, password=p):
                return self._login(u, self.secrets.get(u) == p)
            case ApopLogin(user=u, digest=d):
                secret = self.secrets.get(u, "")
                expected = hashlib.md5((self.conn.facts.apop_timestamp + secret).encode()).hexdigest()
                return self._login(u, u in self.secrets and d == expected)
            case AuthCredentials(credentials=c):
                return self._login(c.username, self.secrets.get(c.username) == c.password)
            case Retrieve(index=i, info=info):
                assert info == self.maildrop[i]
                enc = RetrEncoder()
                out = self.conn.retr_ok() + enc.feed(self.messages[i]) + enc.finish()
                self.conn.message_sent()
                return out
            case Top(index=i, lines=n):
                enc = TopEncoder(n)
                out = self.conn.top_ok() + enc.feed(self.messages[i]) + enc.finish()
                self.conn.message_sent()
                return out
            case Quit(deleted=d):
                self.removed = d
                return self.conn.send(R.ERR_QUIT_FAILED if self.quit_fails else R.quit_ok(len(d)))
        raise AssertionError(ev)

    def feed(self, data: bytes) -> bytes:
        self.conn.receive_data(data)
        out = b""
        while True:
            ev = self.conn.next_event()
            if ev is NEED_DATA:
                return out
            assert ev is not PAUSED
            self.events.append(ev)
            out += self.answer(ev)

    def login(self) -> bytes:
        return self.feed(f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode())


def fmt(reply) -> bytes:
    return R.format_reply(reply)


def status_lines(out: bytes) -> list[bytes]:
    return [l for l in out.split(b"\r\n") if l.startswith((b"+OK", b"-ERR"))]


# -- greeting, replies -----------------------------------------------------------


def test_greeting_with_and_without_apop():
    assert Harness().conn.greeting() == b"+OK hatoba ready\r\n"
    h = Harness(apop_timestamp=RFC_TIMESTAMP)
    assert h.conn.greeting() == b"+OK hatoba ready <1896.697170952@dbc.mtview.ca.us>\r\n"


def test_format_reply_codes_multiline_and_injection():
    assert fmt(R.ok("hi")) == b"+OK hi\r\n"
    assert fmt(R.ok()) == b"+OK\r\n"
    assert fmt(R.err("no", "SYS/TEMP")) == b"-ERR [SYS/TEMP] no\r\n"
    assert fmt(R.ERR_PLAINTEXT_DISABLED) == (
        b"-ERR [AUTH] Plaintext authentication is disabled here: use STLS first, or connect to port 995 (POP3S)\r\n"
    )
    assert fmt(R.multiline("x", [".a", "b"])) == b"+OK x\r\n..a\r\nb\r\n.\r\n"
    assert fmt(R.multiline("", [])) == b"+OK\r\n.\r\n"
    assert fmt(R.challenge("")) == b"+ \r\n"
    assert fmt(R.err("a\r\n+OK forged")) == b"-ERR a  +OK forged\r\n"


# -- RFC 1939 examples -------------------------------------------------------------


def sized(n: int) -> bytes:
    head = b"Subject: x\r\n\r\n"
    return head + b"a" * (n - len(head) - 2) + b"\r\n"


def test_rfc1939_example_session_with_apop():
    # RFC 1939 §10, with the maildrop of the example (120 and 200 octets).
    h = Harness(messages=[sized(120), sized(200)], secrets={"mrose": "tanstaaf"}, apop_timestamp=RFC_TIMESTAMP)
    out = h.feed(f"APOP mrose {RFC_DIGEST}\r\n".encode())
    assert out == b"+OK Logged in; 2 messages (320 octets)\r\n"
    assert h.events[-1] == ApopLogin("mrose", RFC_DIGEST)
    assert h.conn.state is State.TRANSACTION and h.conn.login == "mrose"
    assert h.feed(b"STAT\r\n") == b"+OK 2 320\r\n"
    assert h.feed(b"LIST\r\n") == b"+OK 2 messages (320 octets)\r\n1 120\r\n2 200\r\n.\r\n"
    out = h.feed(b"RETR 1\r\n")
    assert out == b"+OK 120 octets\r\n" + sized(120) + b".\r\n"
    assert h.feed(b"DELE 1\r\n") == b"+OK message 1 deleted\r\n"
    assert h.feed(b"RETR 2\r\n").startswith(b"+OK 200 octets\r\n")
    assert h.feed(b"DELE 2\r\n") == b"+OK message 2 deleted\r\n"
    assert h.feed(b"QUIT\r\n") == b"+OK Bye; 2 messages deleted\r\n"
    assert h.removed == (0, 1) and h.events[-1] == Quit((0, 1), ("uid-0.x", "uid-1.x"))
    assert h.conn.closed


def test_rfc1939_list_and_dele_examples():
    h = Harness(messages=[sized(120), sized(200)])
    h.login()
    assert h.feed(b"LIST 2\r\n") == b"+OK 2 200\r\n"
    assert h.feed(b"LIST 3\r\n") == b"-ERR no such message, only 2 messages in maildrop\r\n"
    assert h.feed(b"DELE 2\r\n") == b"+OK message 2 deleted\r\n"
    assert h.feed(b"DELE 2\r\n") == b"-ERR message 2 already deleted\r\n"
    assert h.feed(b"LIST\r\n") == b"+OK 1 messages (120 octets)\r\n1 120\r\n.\r\n"
    assert h.feed(b"LIST 2\r\n") == fmt(R.marked_deleted(2))
    assert h.feed(b"RSET\r\n") == b"+OK maildrop has 2 messages (320 octets)\r\n"
    assert h.feed(b"UIDL\r\n") == b"+OK Unique-ID listing follows\r\n1 uid-0.x\r\n2 uid-1.x\r\n.\r\n"
    assert h.feed(b"UIDL 2\r\n") == b"+OK 2 uid-1.x\r\n"


# -- whole session with USER/PASS -------------------------------------------------------


def test_user_pass_session_every_transaction_command():
    h = Harness()
    assert h.feed(f"USER {USER}\r\n".encode()) == fmt(R.OK_USER)
    total = sum(wire_size(m) for m in MESSAGES)
    assert h.feed(f"PASS {PASSWORD}\r\n".encode()) == fmt(R.logged_in(3, total))
    assert h.events[-1] == UserPass(USER, PASSWORD)
    assert PASSWORD not in repr(h.events[-1])
    assert h.feed(b"NOOP\r\n") == b"+OK\r\n"
    assert h.feed(b"STAT\r\n") == f"+OK 3 {total}\r\n".encode()
    out = h.feed(b"RETR 1\r\n")
    assert out == (
        f"+OK {wire_size(MESSAGES[0])} octets\r\n".encode()
        + b"From: bob@example.test\r\nSubject: one\r\n\r\nHello\r\n..dot line\r\nbye\r\n.\r\n"
    )
    out = h.feed(b"RETR 3\r\n")
    assert out.endswith(b"\r\nno final newline\r\n.\r\n")
    assert h.feed(b"TOP 2 0\r\n") == b"+OK Top of message follows\r\nSubject: two\r\n\r\n.\r\n"
    assert h.feed(b"TOP 2 2\r\n") == b"+OK Top of message follows\r\nSubject: two\r\n\r\nline1\r\nline2\r\n.\r\n"
    assert h.feed(b"TOP 2 99999999999999\r\n").endswith(b"line3\r\n.\r\n")
    assert h.events[-1] == Top(1, h.maildrop[1], 10**9)
    assert h.feed(b"DELE 3\r\n") == b"+OK message 3 deleted\r\n"
    assert h.feed(b"RETR 3\r\n") == fmt(R.marked_deleted(3))
    assert h.feed(b"TOP 3 1\r\n") == fmt(R.marked_deleted(3))
    assert h.feed(b"UIDL 3\r\n") == fmt(R.marked_deleted(3))
    assert h.feed(b"DELE 1\r\n") == b"+OK message 1 deleted\r\n"
    assert h.feed(b"STAT\r\n") == f"+OK 1 {wire_size(MESSAGES[1])}\r\n".encode()
    assert h.feed(b"UIDL\r\n") == b"+OK Unique-ID listing follows\r\n2 uid-1.x\r\n.\r\n"
    assert h.conn.deleted == (0, 2)
    assert h.feed(b"QUIT\r\n") == b"+OK Bye; 2 messages deleted\r\n"
    assert h.events[-1] == Quit((0, 2), ("uid-0.x", "uid-2.x"))
    assert h.conn.closed and h.conn.state is State.CLOSED
    h.conn.receive_data(b"NOOP\r\n")
    assert h.conn.next_event() is NEED_DATA


def test_rset_then_quit_deletes_nothing():
    h = Harness()
    h.login()
    h.feed(b"DELE 1\r\nDELE 2\r\n")
    assert h.feed(b"RSET\r\n") == fmt(R.maildrop_summary(3, sum(wire_size(m) for m in MESSAGES)))
    assert h.feed(b"QUIT\r\n") == b"+OK Bye; 0 messages deleted\r\n"
    assert h.removed == ()


def test_quit_failure_still_closes():
    h = Harness(quit_fails=True)
    h.login()
    h.feed(b"DELE 2\r\n")
    out = h.feed(b"QUIT\r\n")
    assert out == b"-ERR [SYS/TEMP] Some messages could not be deleted; they are still there, try again later\r\n"
    assert h.removed == (1,) and h.conn.closed


def test_empty_maildrop():
    h = Harness(messages=[])
    assert h.login().endswith(b"+OK Logged in; 0 messages (0 octets)\r\n")
    assert h.feed(b"STAT\r\n") == b"+OK 0 0\r\n"
    assert h.feed(b"LIST\r\n") == b"+OK 0 messages (0 octets)\r\n.\r\n"
    assert h.feed(b"UIDL\r\n") == b"+OK Unique-ID listing follows\r\n.\r\n"
    assert h.feed(b"RETR 1\r\n") == b"-ERR no such message, only 0 messages in maildrop\r\n"


def test_bad_message_numbers():
    h = Harness()
    h.login()
    nsm = fmt(R.no_such_message(3))
    for cmd in (b"LIST 0", b"LIST 4", b"RETR 4", b"DELE 0", b"TOP 9 1", b"UIDL 1234567890123", b"RETR 0001000"):
        assert h.feed(cmd + b"\r\n") == nsm, cmd
    assert h.feed(b"LIST x\r\n") == fmt(R.SYNTAX["LIST"])
    assert h.feed(b"LIST -1\r\n") == fmt(R.SYNTAX["LIST"])
    assert h.feed(b"LIST 1_0\r\n") == fmt(R.SYNTAX["LIST"])
    assert h.feed(b"RETR\r\n") == fmt(R.SYNTAX["RETR"])
    assert h.feed(b"RETR 1 2\r\n") == fmt(R.SYNTAX["RETR"])
    assert h.feed(b"TOP 1\r\n") == fmt(R.SYNTAX["TOP"])
    assert h.feed(b"TOP 1 -1\r\n") == fmt(R.SYNTAX["TOP"])
    assert h.feed(b"DELE\r\n") == fmt(R.SYNTAX["DELE"])
    assert h.feed(b"STAT 1\r\n") == fmt(R.SYNTAX["STAT"])
    assert h.feed(b"RSET x\r\n") == fmt(R.SYNTAX["RSET"])
    assert h.feed(b"LIST 01\r\n") == f"+OK 1 {wire_size(MESSAGES[0])}\r\n".encode()
    assert h.conn.state is State.TRANSACTION


def test_commands_in_the_wrong_state():
    h = Harness()
    for cmd in (b"STAT", b"LIST", b"UIDL 1", b"RETR 1", b"DELE 1", b"RSET", b"TOP 1 1"):
        assert h.feed(cmd + b"\r\n") == fmt(R.ERR_LOGIN_FIRST), cmd
    h.login()
    for cmd in (b"USER x", b"PASS y", b"APOP a b", b"AUTH PLAIN", b"STLS"):
        assert h.feed(cmd + b"\r\n") == fmt(R.ERR_ALREADY_LOGGED_IN), cmd
    assert h.conn.state is State.TRANSACTION


def test_quit_in_authorization_closes_without_update():
    h = Harness()
    h.feed(b"USER someone\r\n")
    assert h.feed(b"QUIT now\r\n") == b"+OK Bye\r\n"
    assert h.conn.closed and h.removed is None


def test_case_insensitive_and_extra_spaces():
    h = Harness()
    assert h.feed(b"user  alice@example.test \r\n") == fmt(R.OK_USER)
    assert h.feed(b"pass secret\r\n").startswith(b"+OK Logged in")
    assert h.feed(b"  list   2  \r\n") == f"+OK 2 {wire_size(MESSAGES[1])}\r\n".encode()
    assert h.feed(b"tOp 2 0\n").startswith(b"+OK")  # bare LF is tolerated


# -- login rules ----------------------------------------------------------------------


def test_failed_login_stays_in_authorization():
    h = Harness()
    h.feed(f"USER {USER}\r\n".encode())
    assert h.feed(b"PASS wrong\r\n") == fmt(R.ERR_LOGIN_FAILED)
    assert h.conn.state is State.AUTHORIZATION and h.conn.login is None
    assert h.feed(b"PASS secret\r\n") == fmt(R.ERR_PASS_WITHOUT_USER)  # USER is needed again
    assert h.feed(b"USER nobody@example.test\r\n") == fmt(R.OK_USER)  # no user enumeration
    assert h.feed(b"PASS secret\r\n") == fmt(R.ERR_LOGIN_FAILED)
    assert h.login().endswith(b"+OK Logged in; 3 messages (%d octets)\r\n" % sum(map(wire_size, MESSAGES)))


def test_pass_without_user_and_empty_pass():
    h = Harness()
    assert h.feed(b"PASS secret\r\n") == fmt(R.ERR_PASS_WITHOUT_USER)
    h.feed(b"USER a\r\n")
    assert h.feed(b"PASS\r\n") == fmt(R.SYNTAX["PASS"])
    assert h.feed(b"USER\r\n") == fmt(R.SYNTAX["USER"])
    assert h.feed(b"USER a b\r\n") == fmt(R.SYNTAX["USER"])


def test_password_keeps_spaces_and_may_be_utf8():
    pw = "pässwörd with spaces "
    h = Harness(secrets={USER: pw})
    h.feed(f"USER {USER}\r\n".encode())
    assert h.feed(f"PASS {pw}\r\n".encode()).startswith(b"+OK Logged in")
    assert h.events[-1] == UserPass(USER, pw)
    h2 = Harness()
    assert h2.feed("USER jösé\r\n".encode()) == fmt(R.ERR_NON_ASCII)
    h2.feed(b"USER a\r\n")
    assert h2.feed(b"PASS \xff\xfe\r\n") == fmt(R.ERR_NON_ASCII)


def test_everything_refused_before_tls():
    h = Harness(tls_active=False, apop_timestamp=RFC_TIMESTAMP)
    assert h.feed(f"USER {USER}\r\n".encode()) == fmt(R.ERR_PLAINTEXT_DISABLED)
    assert h.feed(b"PASS secret\r\n") == fmt(R.ERR_PLAINTEXT_DISABLED)
    assert h.feed(b"AUTH PLAIN " + b64(b"\0alice@example.test\0secret") + b"\r\n") == fmt(R.ERR_PLAINTEXT_DISABLED)
    assert h.feed(b"AUTH\r\n") == fmt(R.ERR_PLAINTEXT_DISABLED)
    out = h.feed(f"APOP {USER} {RFC_DIGEST}\r\n".encode())
    assert out == fmt(R.ERR_APOP_BEFORE_TLS)
    assert out.startswith(b"-ERR [AUTH] No password of any kind before TLS")
    assert not any(isinstance(e, (UserPass, ApopLogin, AuthCredentials)) for e in h.events)
    assert h.conn.state is State.AUTHORIZATION


def capa(h: Harness) -> list[bytes]:
    out = h.feed(b"CAPA\r\n")
    lines = out.split(b"\r\n")
    assert lines[0] == b"+OK Capability list follows" and lines[-2:] == [b".", b""]
    return lines[1:-2]


def test_capa_before_and_after_stls():
    h = Harness(tls_active=False)
    assert capa(h) == [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING", b"STLS",
                       b"LANG", b"IMPLEMENTATION hatoba"]
    # Bytes pipelined after STLS are plaintext: dropped, never read inside TLS.
    out = h.feed(b"STLS\r\nUSER evil\r\n")
    assert out == b"+OK Begin TLS negotiation now\r\n"
    assert h.conn.discarded_after_stls == len(b"USER evil\r\n")
    assert h.conn.tls_active
    assert capa(h) == [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING", b"USER",
                       b"SASL PLAIN LOGIN SCRAM-SHA-256", b"LANG", b"IMPLEMENTATION hatoba"]
    assert h.feed(b"STLS\r\n") == fmt(R.ERR_TLS_ACTIVE)
    assert h.login().endswith(b"octets)\r\n")
    assert capa(h) == [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING", b"LANG",
                       b"IMPLEMENTATION hatoba"]


def test_tls_started_forgets_user():
    h = Harness(tls_active=False, allow_plaintext_auth=True)
    h.feed(f"USER {USER}\r\n".encode())
    h.feed(b"STLS\r\n")
    assert h.feed(b"PASS secret\r\n") == fmt(R.ERR_PASS_WITHOUT_USER)


def test_stls_unavailable_and_plaintext_allowed():
    h = Harness(tls_available=False, tls_active=False, allow_plaintext_auth=True, sasl_mechanisms=("plain",))
    caps = capa(h)
    assert b"STLS" not in caps and b"USER" in caps and b"SASL PLAIN" in caps
    assert h.feed(b"STLS\r\n") == fmt(R.ERR_TLS_UNAVAILABLE)
    assert h.feed(b"STLS now\r\n") == fmt(R.SYNTAX["STLS"])
    assert h.login().endswith(b"octets)\r\n")


def test_no_sasl_line_without_mechanisms():
    h = Harness(sasl_mechanisms=())
    assert not any(c.startswith(b"SASL") for c in capa(h))
    assert h.feed(b"AUTH PLAIN\r\n") == fmt(R.ERR_AUTH_MECHANISM)


# -- SASL (RFC 5034) ---------------------------------------------------------------------


def test_auth_plain_with_initial_response():
    h = Harness()
    out = h.feed(b"AUTH PLAIN " + b64(b"\0alice@example.test\0secret") + b"\r\n")
    assert out.startswith(b"+OK Logged in; 3 messages")
    ev = h.events[-1]
    assert isinstance(ev, AuthCredentials) and ev.mechanism == "PLAIN"
    assert ev.credentials.username == USER and ev.credentials.authzid == ""
    assert h.conn.login == USER


def test_auth_plain_with_continuation_and_failure():
    h = Harness()
    assert h.feed(b"auth plain\r\n") == b"+ \r\n"
    assert h.feed(b64(b"\0alice@example.test\0wrong") + b"\r\n") == fmt(R.ERR_LOGIN_FAILED)
    assert h.conn.state is State.AUTHORIZATION
    assert h.feed(b"AUTH PLAIN\r\n") == b"+ \r\n"
    assert h.feed(b64(b"\0alice@example.test\0secret") + b"\r\n").startswith(b"+OK Logged in")


def test_auth_login_and_empty_initial_response():
    h = Harness()
    assert h.feed(b"AUTH LOGIN\r\n") == b"+ VXNlcm5hbWU6\r\n"
    assert h.feed(b64(USER.encode()) + b"\r\n") == b"+ UGFzc3dvcmQ6\r\n"
    assert h.feed(b64(b"secret") + b"\r\n").startswith(b"+OK Logged in")
    assert h.events[-1].mechanism == "LOGIN"
    # "=" is the empty initial response: an empty PLAIN message is malformed.
    h2 = Harness()
    assert h2.feed(b"AUTH PLAIN =\r\n") == fmt(R.ERR_AUTH_BAD)
    assert h2.feed(b"AUTH LOGIN " + b64(USER.encode()) + b"\r\n") == b"+ UGFzc3dvcmQ6\r\n"
    assert h2.feed(b64(b"secret") + b"\r\n").startswith(b"+OK Logged in")


def test_auth_cancel_bad_base64_and_unknown_mechanism():
    h = Harness(sasl_mechanisms=("PLAIN",))
    assert h.feed(b"AUTH PLAIN\r\n") == b"+ \r\n"
    assert h.feed(b"*\r\n") == fmt(R.ERR_AUTH_CANCELLED)
    assert h.feed(b"AUTH PLAIN *\r\n") == fmt(R.ERR_AUTH_CANCELLED)
    assert h.feed(b"AUTH PLAIN\r\n") == b"+ \r\n"
    assert h.feed(b"!!notbase64\r\n") == fmt(R.ERR_AUTH_BAD)
    assert h.feed(b"AUTH PLAIN !!!\r\n") == fmt(R.ERR_AUTH_BAD)
    assert h.feed(b"AUTH LOGIN\r\n") == fmt(R.ERR_AUTH_MECHANISM)  # not enabled here
    assert h.feed(b"AUTH CRAM-MD5\r\n") == fmt(R.ERR_AUTH_MECHANISM)
    assert h.feed(b"AUTH PLAIN a b\r\n") == fmt(R.SYNTAX["AUTH"])
    assert h.feed(b"AUTH\r\n") == b"+OK SASL mechanisms follow\r\nPLAIN\r\n.\r\n"
    assert h.conn.state is State.AUTHORIZATION
    assert h.feed(b"NOOP\r\n") == b"+OK\r\n"


def test_auth_too_long_response_ends_exchange():
    h = Harness(max_line=100)
    assert h.feed(b"AUTH PLAIN\r\n") == b"+ \r\n"
    assert h.feed(b"A" * 500 + b"\r\n") == fmt(R.ERR_LINE_TOO_LONG)
    assert h.feed(b"NOOP\r\n") == b"+OK\r\n"


# -- APOP ---------------------------------------------------------------------------------


def test_apop_event_and_rules():
    h = Harness(secrets={"mrose": "tanstaaf"}, apop_timestamp=RFC_TIMESTAMP)
    assert h.feed(f"APOP mrose {RFC_DIGEST.upper()}\r\n".encode()).startswith(b"+OK Logged in")
    assert h.events[-1] == ApopLogin("mrose", RFC_DIGEST)  # lower-cased
    h = Harness(secrets={"mrose": "tanstaaf"}, apop_timestamp=RFC_TIMESTAMP)
    assert h.feed(b"APOP mrose 1234\r\n") == fmt(R.SYNTAX["APOP"])
    assert h.feed(b"APOP mrose " + b"g" * 32 + b"\r\n") == fmt(R.SYNTAX["APOP"])
    assert h.feed(b"APOP mrose\r\n") == fmt(R.SYNTAX["APOP"])
    assert h.feed(b"APOP mrose " + b"0" * 32 + b"\r\n") == fmt(R.ERR_LOGIN_FAILED)
    assert Harness().feed(f"APOP mrose {RFC_DIGEST}\r\n".encode()) == fmt(R.ERR_APOP_UNAVAILABLE)


# -- pipelining, limits, garbage ---------------------------------------------------------------


def test_pipelined_commands_answered_in_order():
    h = Harness()
    h.conn.receive_data(f"USER {USER}\r\nPASS {PASSWORD}\r\nSTAT\r\nLIST 2\r\nDELE 1\r\nUIDL\r\nQUIT\r\n".encode())
    ev = h.conn.next_event()
    assert isinstance(ev, CoreReply) and ev.verb == "USER"
    assert h.conn.next_event() is PAUSED  # answer first
    out = h.answer(ev)
    while (ev := h.conn.next_event()) is not NEED_DATA:
        h.events.append(ev)
        out += h.answer(ev)
    assert [l.split(b" ")[0] for l in status_lines(out)] == [b"+OK"] * 7
    assert status_lines(out)[2] == b"+OK 3 %d" % sum(map(wire_size, MESSAGES))
    assert [type(e).__name__ for e in h.events] == ["UserPass", "CoreReply", "CoreReply", "CoreReply", "CoreReply", "Quit"]
    assert h.removed == (0,)


def test_long_lines_nul_and_non_ascii():
    h = Harness(max_line=512)
    assert h.feed(b"A" * 100_000 + b"\r\n") == fmt(R.ERR_LINE_TOO_LONG)
    assert h.feed(b"NOOP\r\n") == b"+OK\r\n"
    assert h.feed(b"NO\x00OP\r\n") == fmt(R.ERR_NUL)
    assert h.feed(b"\xff\xfe\r\n") == fmt(R.ERR_NON_ASCII)
    assert h.feed(b"LIST \xc3\xa9\r\n") == fmt(R.ERR_NON_ASCII)
    assert h.feed(b"HELLO\r\n") == fmt(R.ERR_UNKNOWN_COMMAND)
    assert h.feed(b"\r\n") == fmt(R.ERR_UNKNOWN_COMMAND)
    assert h.conn.state is State.AUTHORIZATION


def test_bad_command_budget_closes():
    h = Harness(max_bad_commands=3)
    out = h.feed(b"X1\r\nX2\r\nX3\r\nNOOP\r\n")
    assert out == fmt(R.ERR_UNKNOWN_COMMAND) * 3 + b"-ERR [SYS/PERM] Too many errors; closing\r\n"
    assert h.conn.closed and h.conn.bad_commands == 3


def test_server_side_errors_do_not_count():
    h = Harness(max_bad_commands=2)
    h.login()
    for _ in range(3):
        h.conn.receive_data(b"RETR 1\r\n")
        ev = h.conn.next_event()
        assert isinstance(ev, Retrieve)
        assert h.conn.send(R.ERR_MESSAGE_UNAVAILABLE) == fmt(R.ERR_MESSAGE_UNAVAILABLE)
    assert not h.conn.closed and h.conn.bad_commands == 0


def test_command_limit_and_http():
    h = Harness(max_commands=3)
    assert h.feed(b"NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n").endswith(
        b"-ERR [SYS/PERM] Too many commands in this session; closing\r\n")
    assert h.conn.closed and h.conn.commands == 4
    h = Harness()
    assert h.feed(b"GET / HTTP/1.1\r\nHost: x\r\n") == fmt(R.ERR_HTTP)
    assert h.conn.closed


# -- adapter mistakes are hatoba bugs ------------------------------------------------------------


def test_adapter_misuse_raises_local_protocol_error():
    h = Harness()
    h.conn.receive_data(f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode())
    h.answer(h.conn.next_event())
    assert isinstance(h.conn.next_event(), UserPass)
    with pytest.raises(LocalProtocolError):
        h.conn.send(R.ok("in"))
    with pytest.raises(LocalProtocolError):
        h.conn.retr_ok()
    with pytest.raises(LocalProtocolError):
        h.conn.login_succeeded(USER, [MessageInfo(3, "bad uid")])
    with pytest.raises(LocalProtocolError):
        h.conn.login_succeeded(USER, [MessageInfo(3, "x" * 71)])
    h.conn.login_succeeded(USER, [MessageInfo(3, "u1")])
    with pytest.raises(LocalProtocolError):
        h.conn.login_succeeded(USER, [])
    h.conn.receive_data(b"RETR 1\r\n")
    assert h.conn.next_event() == Retrieve(0, MessageInfo(3, "u1"))
    with pytest.raises(LocalProtocolError):
        h.conn.message_sent()
    with pytest.raises(LocalProtocolError):
        h.conn.top_ok()
    assert h.conn.retr_ok() == b"+OK 3 octets\r\n"
    with pytest.raises(LocalProtocolError):
        h.conn.send(R.ERR_MESSAGE_UNAVAILABLE)
    assert h.conn.next_event() is PAUSED
    h.conn.message_sent()
    assert h.conn.next_event() is NEED_DATA


def test_a_language_chosen_before_stls_is_forgotten_with_it():
    h = Harness(tls_active=False)
    assert h.feed(b"LANG ja\r\n").decode() == "+OK ja これから日本語で応答します\r\n"
    assert not h.feed(b"NOOP x\r\n").isascii()  # the syntax error in Japanese
    assert h.feed(b"STLS\r\n").startswith(b"+OK ")  # still in the language asked for, in clear
    assert h.conn.tls_active and h.conn.language == "en"
    assert h.feed(b"NOOP x\r\n").isascii()  # English again: the choice made in clear is gone
