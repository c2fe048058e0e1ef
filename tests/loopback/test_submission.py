"""Ports 587 and 465: TLS before AUTH, AUTH before MAIL, whose sender a login may use."""

import email
import smtplib

from hatoba.proto.smtp import replies as R

ALICE = ("alice@example.test", "alice-password-1")


def submission(server):
    return smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10)


def test_587_requires_starttls_then_auth(server, hatoba_home):
    with submission(server) as c:
        c.ehlo("laptop")
        assert c.has_extn("starttls")
        assert not c.has_extn("auth")  # never offered in clear
        code, text = c.mail("alice@example.test")
        assert (code, text.decode()) == (530, "5.7.0 Must issue a STARTTLS command first")
        code, text = c.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wYXNzd29yZC0x")
        assert code == 538
        c.starttls(context=hatoba_home.client_context())
        c.ehlo("laptop")
        assert "PLAIN" in c.esmtp_features["auth"] and "LOGIN" in c.esmtp_features["auth"]
        code, text = c.mail("alice@example.test")
        assert code == 530 and text.startswith(b"5.7.0 Authentication required")
        c.rset()
        c.login(*ALICE)
        c.sendmail("alice@example.test", ["bob@example.test", "someone@elsewhere.example"], b"Subject: s\r\n\r\nx\r\n")
    [stored] = hatoba_home.wait_messages("bob@example.test", 1)
    received = email.message_from_bytes(stored)["Received"]
    assert "with ESMTPSA id" in received
    assert "alice@example.test" not in received  # login hidden by default


def test_wrong_password(server, hatoba_home):
    with submission(server) as c:
        c.starttls(context=hatoba_home.client_context())
        try:
            c.login("alice@example.test", "wrong")
            raise AssertionError("login accepted")
        except smtplib.SMTPAuthenticationError as exc:
            assert exc.smtp_code == 535
        try:
            c.login("nobody@example.test", "whatever")
            raise AssertionError("login accepted")
        except smtplib.SMTPAuthenticationError as exc:
            assert exc.smtp_code == 535


def test_sender_restricted_to_login_and_aliases(server, hatoba_home):
    with submission(server) as c:
        c.starttls(context=hatoba_home.client_context())
        c.login(*ALICE)
        code, text = c.mail("bob@example.test")
        assert code == 553 and text.startswith(b"5.7.1")
        code, _ = c.mail("postmaster@example.test")  # alias pointing to alice
        assert code == 250
        c.rset()
        code, _ = c.mail("ALICE@example.test")  # case-insensitive
        assert code == 250


def test_465_implicit_tls_auth_login(server, hatoba_home):
    with smtplib.SMTP_SSL("127.0.0.1", server.port("smtps"), context=hatoba_home.client_context(), timeout=10) as c:
        c.ehlo("laptop")
        assert not c.has_extn("starttls")
        assert c.has_extn("auth")
        c.user, c.password = ALICE
        code, _ = c.auth("LOGIN", c.auth_login, initial_response_ok=False)
        assert code == 235
        c.sendmail("alice@example.test", ["bob@example.test"], b"Subject: via 465\r\n\r\nx\r\n")
    [stored] = hatoba_home.wait_messages("bob@example.test", 1)
    assert "with ESMTPSA" in email.message_from_bytes(stored)["Received"]


def test_received_shows_login_when_configured(hatoba_home):
    from support.harness import ServerThread, _merge_config

    _merge_config(hatoba_home.config_path, "[smtp]\nreceived_shows_login = true\n")
    with ServerThread(hatoba_home) as srv:
        with smtplib.SMTP_SSL("127.0.0.1", srv.port("smtps"), context=hatoba_home.client_context(), timeout=10) as c:
            c.login(*ALICE)
            c.sendmail("alice@example.test", ["bob@example.test"], b"Subject: s\r\n\r\nx\r\n")
        [stored] = hatoba_home.wait_messages("bob@example.test", 1)
        assert "(authenticated sender: alice@example.test)" in email.message_from_bytes(stored)["Received"]


def test_trusted_network_may_relay_without_auth(hatoba_home):
    from support.harness import ServerThread, _merge_config

    _merge_config(hatoba_home.config_path, '[smtp]\ntrusted_networks = ["127.0.0.0/8"]\n')
    with ServerThread(hatoba_home) as srv:
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as c:
            c.ehlo("app-server")
            c.mail("app@example.test")
            assert c.rcpt("customer@elsewhere.example")[0] == 250
