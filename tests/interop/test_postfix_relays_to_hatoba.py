"""Debian's Postfix as a real peer: it relays to hatoba's port 25 with
smtp_tls_security_level = encrypt and our CA, and the message lands in Maildir."""

import email

import pytest

from interop.postfix_peer import PostfixPeer, free_port, postfix_peer_marks

pytestmark = [
    pytest.mark.interop,
    *postfix_peer_marks(),
]


def test_postfix_relays_over_verified_tls(server, hatoba_home, tmp_path):
    relay = f"127.0.0.1:{server.port('smtp')}"
    with PostfixPeer(
        tmp_path / "postfix",
        smtp_port=free_port(),
        relay_to=relay,
        tls_level="verify",
        ca_file=hatoba_home.ca_file,
        main_cf_extra={"smtp_tls_verify_cert_match": "mail.example.test"},
    ) as peer:
        peer.send("someone@peer.example.net", ["bob@example.test", "team@example.test"],
                  b"From: someone@peer.example.net\r\nSubject: via postfix\r\n\r\nHello from Postfix.\r\n")
        peer.wait_log(r"Verified TLS connection established to 127\.0\.0\.1", timeout=30)
        peer.wait_log(r"status=sent \(250 2\.0\.0 OK: queued as", timeout=30)
        peer.wait_queue_empty(30)
    [stored] = hatoba_home.wait_messages("bob@example.test", 1)
    msg = email.message_from_bytes(stored)
    assert msg["Subject"] == "via postfix"
    first_received = msg.get_all("Received")[0]
    assert "by mail.example.test (hatoba) with ESMTPS" in first_received
    assert "(using TLSv1.3 with cipher" in first_received or "(using TLSv1.2 with cipher" in first_received
    assert msg["Return-Path"] == "<someone@peer.example.net>"
    # the alias fanned out, one copy per mailbox
    assert len(hatoba_home.wait_messages("carol@example.test", 1)) == 1
    assert len(hatoba_home.messages("bob@example.test")) == 1
