"""Port 25 with real smtplib clients: local delivery, STARTTLS, relay refusal."""

import email
import smtplib

import pytest

MSG = b"From: someone@elsewhere.example\r\nTo: bob@example.test\r\nSubject: hello\r\n\r\nHi Bob.\r\n"


def smtp(server, name="smtp"):
    return smtplib.SMTP("127.0.0.1", server.port(name), timeout=10)


def test_inbound_plain_lands_in_maildir(server, hatoba_home):
    with smtp(server) as c:
        code, caps = c.ehlo("mx.elsewhere.example")
        assert code == 250
        assert not c.has_extn("auth")  # no AUTH on port 25
        for ext in ("starttls", "size", "8bitmime", "pipelining", "enhancedstatuscodes", "smtputf8", "chunking"):
            assert c.has_extn(ext), ext
        c.sendmail("someone@elsewhere.example", ["bob@example.test"], MSG)
    [stored] = hatoba_home.wait_messages("bob@example.test", 1)
    msg = email.message_from_bytes(stored)
    assert msg["Return-Path"] == "<someone@elsewhere.example>"
    assert msg["Delivered-To"] == "bob@example.test"
    received = msg["Received"]
    assert "from mx.elsewhere.example ([127.0.0.1])" in received
    assert "by mail.example.test (hatoba) with ESMTP id" in received
    assert "for <bob@example.test>" in received
    assert "using" not in received  # no TLS comment without TLS
    assert msg["Subject"] == "hello"
    assert b"\r\n" not in stored  # Maildir files use LF line ends


def test_inbound_starttls_received_records_tls(server, hatoba_home):
    with smtp(server) as c:
        c.starttls(context=hatoba_home.client_context())
        c.ehlo("mx.elsewhere.example")
        assert not c.has_extn("auth")
        c.sendmail("someone@elsewhere.example", ["bob@example.test"], MSG)
    [stored] = hatoba_home.wait_messages("bob@example.test", 1)
    received = email.message_from_bytes(stored)["Received"]
    assert "with ESMTPS id" in received
    assert "(using TLSv1.3 with cipher" in received or "(using TLSv1.2 with cipher" in received


def test_unknown_local_user_refused_at_rcpt(server):
    with smtp(server) as c:
        c.ehlo("x.example")
        c.mail("someone@elsewhere.example")
        code, text = c.rcpt("nobody@example.test")
        assert (code, text[:5]) == (550, b"5.1.1")


@pytest.mark.parametrize(
    "rcpt",
    [
        "victim@elsewhere.example",
        "victim%elsewhere.example@example.test",
        "elsewhere.example!victim@example.test",
        '"victim@elsewhere.example"@example.test',
        "@example.test:victim@elsewhere.example",
        "victim@[192.0.2.1]",
        "VICTIM@ELSEWHERE.EXAMPLE",
    ],
)
def test_no_relay_for_strangers(server, rcpt):
    with smtp(server) as c:
        c.ehlo("x.example")
        c.mail("someone@elsewhere.example")
        code, text = c.docmd(f"RCPT TO:<{rcpt}>")  # smtplib would rewrite source routes
        assert code in (550, 554), (rcpt, code, text)
        assert text.startswith(b"5.7.1") or text.startswith(b"5.1.1"), text
        code, _ = c.docmd("DATA")
        assert code == 503  # nothing was accepted


def test_auth_refused_on_port_25(server, hatoba_home):
    with smtp(server) as c:
        c.starttls(context=hatoba_home.client_context())
        c.ehlo("x.example")
        code, text = c.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wYXNzd29yZC0x")
        assert code == 503 and b"587" in text


def test_alias_expansion_one_copy_per_mailbox(server, hatoba_home):
    with smtp(server) as c:
        c.sendmail("someone@elsewhere.example", ["team@example.test", "bob@example.test"], MSG)
    for user in ("alice@example.test", "bob@example.test", "carol@example.test"):
        msgs = hatoba_home.wait_messages(user, 1)
        assert len(msgs) == 1, user
        assert email.message_from_bytes(msgs[0])["Delivered-To"] == user
    # forwards to a remote address stay queued, nothing is lost
    assert len(hatoba_home.messages("bob@example.test")) == 1


def test_size_limit(server, hatoba_home):
    limit = server.config.limits.max_message_size
    with smtp(server) as c:
        c.ehlo("x.example")
        assert c.esmtp_features["size"] == str(limit)
        code, text = c.mail("someone@elsewhere.example", [f"SIZE={limit + 1}"])
        assert (code, text[:5]) == (552, b"5.3.4")
        c.rset()
        c.mail("someone@elsewhere.example")
        c.rcpt("bob@example.test")
        code, text = c.data(b"Subject: big\r\n\r\n" + (b"x" * 999 + b"\r\n") * (limit // 1000 + 2))
        assert (code, text[:5]) == (552, b"5.3.4")
        assert c.noop()[0] == 250  # session goes on
    assert hatoba_home.messages("bob@example.test") == []


def test_pipelined_transactions_and_rset(server, hatoba_home):
    with smtp(server) as c:
        c.ehlo("x.example")
        for i in range(5):
            c.sendmail("a@elsewhere.example", ["alice@example.test"], MSG.replace(b"hello", b"hello %d" % i))
    msgs = hatoba_home.wait_messages("alice@example.test", 5)
    subjects = sorted(email.message_from_bytes(m)["Subject"] for m in msgs)
    assert subjects == [f"hello {i}" for i in range(5)]
