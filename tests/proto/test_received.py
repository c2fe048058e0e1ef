"""The Received header: RFC 5321 §4.4 form, RFC 3848 with-keywords, TLS comment."""

from datetime import datetime, timezone
from email import message_from_bytes

from hatoba.proto.smtp.received import TraceInfo, format_received, with_keyword


def info(**kw):
    base = dict(helo="mx.example.org", client_ip="192.0.2.7", extended=True, tls_version=None, tls_cipher=None,
                tls_bits=None, auth_login=None, show_login=False, server_hostname="mail.example.test",
                session_id="ABCD2345", recipients=("bob@example.test",),
                when=datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc))
    base.update(kw)
    return TraceInfo(**base)


def test_with_keywords():
    assert with_keyword(extended=False, tls=False, authenticated=False) == "SMTP"
    assert with_keyword(extended=True, tls=False, authenticated=False) == "ESMTP"
    assert with_keyword(extended=True, tls=True, authenticated=False) == "ESMTPS"
    assert with_keyword(extended=True, tls=False, authenticated=True) == "ESMTPA"
    assert with_keyword(extended=True, tls=True, authenticated=True) == "ESMTPSA"


def test_received_with_tls_and_login():
    raw = format_received(info(tls_version="TLSv1.3", tls_cipher="TLS_AES_256_GCM_SHA384", tls_bits=256,
                               auth_login="alice@example.test", show_login=True))
    assert raw.endswith(b"\r\n")
    value = message_from_bytes(raw + b"\r\n")["Received"]
    assert value.startswith("from mx.example.org ([192.0.2.7])")
    assert "(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))" in value
    assert "(authenticated sender: alice@example.test)" in value
    assert "by mail.example.test (hatoba) with ESMTPSA id ABCD2345" in value
    assert value.endswith("for <bob@example.test>; Tue, 24 Nov 2026 12:00:00 +0000")


def test_received_hides_login_and_multiple_recipients():
    raw = format_received(info(auth_login="alice@example.test", recipients=("a@x.test", "b@x.test")))
    assert b"alice" not in raw and b"a@x.test" not in raw
    assert b"with ESMTPA" in raw


def test_received_ipv6_and_hostile_helo():
    raw = format_received(info(client_ip="2001:db8::1", helo="evil)\r\nX-Injected: 1 (x"))
    assert b"[IPv6:2001:db8::1]" in raw
    assert b"\r\nX-Injected" not in raw
