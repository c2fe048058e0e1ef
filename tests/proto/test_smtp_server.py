"""The SMTP server core alone: bytes in, events out, reply bytes back."""

import base64

import pytest

from hatoba.proto.smtp import replies as R
from hatoba.proto.smtp.events import (
    NEED_DATA, PAUSED, AuthCredentials, CoreReply, DataChunk, DataEnd, DataStart, Hello,
    MailFrom, QuitRequested, RcptTo, Reset, StartTlsRequested,
)
from hatoba.proto.smtp.server import SessionFacts, SmtpServerConn, State


class Harness:
    """Answers events like a permissive adapter and records what happened."""

    def __init__(self, **facts):
        facts.setdefault("hostname", "mail.example.test")
        self.conn = SmtpServerConn(SessionFacts(**facts))
        self.events = []
        self.message = b""
        self.messages = []

    def answer(self, ev):
        match ev:
            case CoreReply(reply=r) | Hello(reply=r) | Reset(reply=r):
                return r
            case StartTlsRequested():
                return R.R220_READY_TLS
            case AuthCredentials(credentials=c):
                return R.R235_AUTH_OK if c.password == "secret" else R.R535_AUTH_FAILED
            case MailFrom() | RcptTo():
                return R.R250_OK
            case DataStart():
                return R.R354_START_DATA
            case DataEnd(error=err):
                if err:
                    return err
                self.messages.append(self.message)
                self.message = b""
                return R.R250_QUEUED
            case QuitRequested():
                return R.R221_BYE
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
            if isinstance(ev, DataChunk):
                self.message += ev.data
                continue
            out += self.conn.send(self.answer(ev))
            if isinstance(ev, StartTlsRequested):
                self.conn.tls_started()
            if self.conn.closed:
                return out


def codes(out: bytes) -> list[int]:
    return [int(line[:3]) for line in out.split(b"\r\n") if line[3:4] == b" "]


def test_greeting_and_ehlo_extensions():
    h = Harness(tls_available=True)
    assert h.conn.greeting() == b"220 mail.example.test ESMTP hatoba\r\n"
    out = h.feed(b"EHLO client.example\r\n")
    lines = out.decode().split("\r\n")
    assert lines[0] == "250-mail.example.test"
    for kw in ("PIPELINING", "SIZE 26214400", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING", "STARTTLS"):
        assert any(l[4:] == kw for l in lines), kw
    assert not any("AUTH" in l for l in lines)  # port 25 default: no AUTH


def test_auth_not_offered_before_tls_on_submission():
    h = Harness(tls_available=True, auth_enabled=True, require_auth=True, require_tls=True)
    out = h.feed(b"EHLO c\r\n")
    assert b"AUTH" not in out
    out = h.feed(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n")
    assert out.startswith(b"538 5.7.11")
    out = h.feed(b"MAIL FROM:<a@example.test>\r\n")
    assert out == R.format_reply(R.R530_STARTTLS_FIRST)
    assert b"Must issue a STARTTLS command first" in out
    out = h.feed(b"STARTTLS\r\n")
    assert out.startswith(b"220 2.0.0")
    out = h.feed(b"EHLO c\r\n")
    assert b"250-AUTH PLAIN LOGIN" in out or b"250 AUTH PLAIN LOGIN" in out
    assert b"STARTTLS" not in out
    out = h.feed(b"MAIL FROM:<a@example.test>\r\n")
    assert out == R.format_reply(R.R530_AUTH_REQUIRED)


def test_auth_plain_and_login():
    h = Harness(tls_active=True, auth_enabled=True, require_auth=True)
    h.feed(b"EHLO c\r\n")
    out = h.feed(b"AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0wrong") + b"\r\n")
    assert out.startswith(b"535 5.7.8")
    out = h.feed(b"AUTH LOGIN\r\n")
    assert out == b"334 VXNlcm5hbWU6\r\n"
    out = h.feed(base64.b64encode(b"alice@example.test") + b"\r\n")
    assert out == b"334 UGFzc3dvcmQ6\r\n"
    out = h.feed(base64.b64encode(b"secret") + b"\r\n")
    assert out.startswith(b"235 2.7.0")
    assert h.conn.auth_login == "alice@example.test"
    out = h.feed(b"AUTH PLAIN\r\n")
    assert out.startswith(b"503 5.5.1")  # already authenticated


def test_auth_cancel_and_bad_base64():
    h = Harness(tls_active=True, auth_enabled=True)
    h.feed(b"EHLO c\r\n")
    assert h.feed(b"AUTH LOGIN\r\n").startswith(b"334")
    assert h.feed(b"*\r\n").startswith(b"501 5.7.0")
    assert h.conn.state is State.READY
    assert h.feed(b"AUTH LOGIN\r\n").startswith(b"334")
    assert h.feed(b"!!!notbase64\r\n").startswith(b"501")
    assert h.feed(b"NOOP\r\n").startswith(b"250")


def test_auth_disabled_on_port_25():
    h = Harness(tls_active=True)
    h.feed(b"EHLO c\r\n")
    out = h.feed(b"AUTH PLAIN AGEAYg==\r\n")
    assert out == R.format_reply(R.R503_AUTH_NOT_AVAILABLE)


def test_full_transaction_pipelined():
    h = Harness()
    out = h.feed(
        b"EHLO c\r\nMAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<x@example.test>\r\n"
        b"DATA\r\nSubject: hi\r\n\r\n..body\r\n.\r\nQUIT\r\n"
    )
    assert codes(out) == [250, 250, 250, 354, 250, 221]
    assert h.messages == [b"Subject: hi\r\n\r\n.body\r\n"]
    mail = next(e for e in h.events if isinstance(e, MailFrom))
    assert mail.size == 100 and mail.body_8bit and str(mail.path.address) == "a@b.example"
    assert h.conn.closed


def test_null_sender_and_sequence_errors():
    h = Harness()
    assert h.feed(b"MAIL FROM:<>\r\n") == R.format_reply(R.R503_HELO_FIRST)
    h.feed(b"EHLO c\r\n")
    assert h.feed(b"RCPT TO:<x@example.test>\r\n") == R.format_reply(R.R503_MAIL_FIRST)
    assert h.feed(b"DATA\r\n") == R.format_reply(R.R503_MAIL_FIRST)
    assert codes(h.feed(b"MAIL FROM:<>\r\n")) == [250]
    assert h.feed(b"MAIL FROM:<>\r\n") == R.format_reply(R.R503_NESTED_MAIL)
    assert h.feed(b"DATA\r\n") == R.format_reply(R.R503_RCPT_FIRST)


def test_size_limits():
    h = Harness(max_message_size=100)
    h.feed(b"EHLO c\r\n")
    assert h.feed(b"MAIL FROM:<a@b.example> SIZE=101\r\n").startswith(b"552 5.3.4")
    h.feed(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.test>\r\nDATA\r\n")
    out = h.feed(b"x" * 200 + b"\r\n.\r\n")
    assert out == R.format_reply(R.R552_TOO_BIG)
    assert h.messages == [] and h.conn.state is State.READY
    # the session goes on
    assert codes(h.feed(b"MAIL FROM:<a@b.example>\r\n")) == [250]


def test_too_many_recipients():
    h = Harness(max_recipients=2)
    h.feed(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
    out = h.feed(b"RCPT TO:<x1@e.test>\r\nRCPT TO:<x2@e.test>\r\nRCPT TO:<x3@e.test>\r\n")
    assert codes(out) == [250, 250, 452]


def test_bad_parameters_and_addresses():
    h = Harness()
    h.feed(b"EHLO c\r\n")
    assert h.feed(b"MAIL FROM:<a@b.example> FOO=BAR\r\n").startswith(b"555 5.5.4")
    assert h.feed(b"MAIL FROM:a@b.example\r\n")[:3] in (b"501", b"553")
    assert h.feed("MAIL FROM:<jösé@b.example>\r\n".encode()).startswith(b"553 5.6.7")
    assert codes(h.feed("MAIL FROM:<jösé@b.example> SMTPUTF8\r\n".encode())) == [250]


def test_garbage_nul_and_long_lines():
    h = Harness(max_command_line=512)
    assert h.feed(b"HELLO\r\n").startswith(b"500 5.5.2")
    assert h.feed(b"NO\x00OP\r\n").startswith(b"500 5.5.2")
    assert h.feed(b"\xff\xfe\r\n").startswith(b"500")
    assert h.feed(b"A" * 100_000 + b"\r\n") == R.format_reply(R.R500_LINE_TOO_LONG)
    assert codes(h.feed(b"NOOP\r\n")) == [250]


def test_bad_command_budget_closes():
    h = Harness(max_bad_commands=3)
    out = h.feed(b"X1\r\nX2\r\nX3\r\nNOOP\r\n")
    assert codes(out) == [500, 500, 500, 421]
    assert h.conn.closed


def test_http_request_closes():
    h = Harness()
    out = h.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"421") and h.conn.closed


def test_starttls_discards_pipelined_plaintext():
    h = Harness(tls_available=True)
    h.feed(b"EHLO c\r\n")
    out = h.feed(b"STARTTLS\r\nMAIL FROM:<evil@x.example>\r\n")
    assert codes(out) == [220]
    assert h.conn.discarded_after_starttls > 0
    assert h.conn.state is State.CONNECTED and h.conn.helo is None
    assert not any(isinstance(e, MailFrom) for e in h.events)


def test_bare_lf_reject_mode_closes_with_550():
    h = Harness(reject_bare_lf=True)
    h.feed(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@e.test>\r\nDATA\r\n")
    out = h.feed(b"line\nmore\r\n.\r\n")
    assert out == R.format_reply(R.R550_BARE_LF)
    assert h.conn.closed and h.messages == []


def test_bdat_chunks():
    h = Harness()
    h.feed(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@e.test>\r\n")
    out = h.feed(b"BDAT 5\r\nhel")
    assert out == b""
    out = h.feed(b"lo")
    assert out.startswith(b"250 2.0.0 5 octets")
    out = h.feed(b"BDAT 6 LAST\r\n world")
    assert codes(out) == [250]
    assert h.messages == [b"hello world"]
    assert codes(h.feed(b"BDAT 0 LAST\r\n")) == [503]  # no transaction: read, then refused


def test_bdat_without_recipient_consumes_chunk():
    h = Harness()
    h.feed(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
    out = h.feed(b"BDAT 9\r\nRSET\r\nXYZ")
    assert codes(out) == [503]  # the 9 bytes were data, not a RSET command
    assert not any(isinstance(e, Reset) for e in h.events)


def test_rset_and_ehlo_reset_transaction():
    h = Harness()
    h.feed(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@e.test>\r\n")
    assert codes(h.feed(b"RSET\r\n")) == [250]
    assert h.conn.state is State.READY
    assert codes(h.feed(b"DATA\r\n")) == [503]


def test_vrfy_does_not_enumerate():
    h = Harness()
    h.feed(b"EHLO c\r\n")
    assert h.feed(b"VRFY root\r\n").startswith(b"252")


def test_paused_until_reply():
    h = Harness()
    h.conn.receive_data(b"EHLO c\r\nNOOP\r\n")
    ev = h.conn.next_event()
    assert isinstance(ev, Hello)
    assert h.conn.next_event() is PAUSED
    h.conn.send(ev.reply)
    assert isinstance(h.conn.next_event(), CoreReply)


def test_refused_data_end_resets_transaction():
    h = Harness()
    h.feed(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@e.test>\r\nDATA\r\n")
    h.conn.receive_data(b"x\r\n.\r\n")
    ev = None
    while not isinstance(ev, DataEnd):
        ev = h.conn.next_event()
    h.conn.send(R.R451_LOCAL_ERROR)
    assert h.conn.state is State.READY


def test_auth_bad_initial_response():
    h = Harness(tls_active=True, auth_enabled=True)
    h.feed(b"EHLO c\r\n")
    assert h.feed(b"AUTH PLAIN !!!\r\n").startswith(b"501")
    assert h.feed(b"AUTH PLAIN " + __import__("base64").b64encode(b"\0\0pw") + b"\r\n").startswith(b"501")
    assert h.conn.state is State.READY
