"""rspamd (Debian's, started here on loopback) as the spam verdict: GTUBE goes to Junk with
rspamd's score; with rspamd stopped mail still arrives, judged by hatoba's own checks, and
the log says rspamd is unreachable."""

from __future__ import annotations

import email
import logging
import smtplib

import pytest

from support.dnsserver import shared_server
from support.harness import ServerThread, make_home
from support.rspamd import GTUBE, PASSWORD, RspamdPeer, needs_rspamd

pytestmark = [pytest.mark.interop, pytest.mark.slow, *needs_rspamd]


@pytest.fixture(scope="module")
def rspamd():
    with RspamdPeer(shared_server().address) as peer:
        yield peer


def message(subject: str, body: str) -> bytes:
    return (f"From: Carol <carol@elsewhere.test>\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
            f"Date: Mon, 07 Dec 2026 01:00:00 +0000\r\nMessage-ID: <{subject.replace(' ', '.')}@elsewhere.test>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()


def send(server, data: bytes) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as c:
        c.ehlo("mx.elsewhere.test")
        c.mail("carol@elsewhere.test")
        assert c.rcpt("bob@example.test")[0] == 250
        return c.data(data)


def home_for(tmp_path, url: str, controller: str = ""):  # type: ignore[no-untyped-def]
    return make_home(tmp_path / "h", extra_config=(
        f'[checks]\nrspamd_url = "{url}"\nrspamd_controller_url = "{controller}"\nrspamd_password = "{PASSWORD}"\n'
    ))


def test_gtube_goes_to_junk_with_rspamd_s_score_and_plain_mail_to_the_inbox(tmp_path, rspamd):
    home = home_for(tmp_path, rspamd.url, rspamd.controller_url)
    with ServerThread(home) as server:
        assert send(server, message("Offer", f"Buy now.\r\n{GTUBE}"))[0] == 250
        assert send(server, message("Lunch", "Shall we have lunch on Friday at the usual place?"))[0] == 250
        [junk] = home.wait_messages("bob@example.test", 1, folder=".Junk")
        [inbox] = home.wait_messages("bob@example.test", 1)
    spam = email.message_from_bytes(junk)
    assert spam["Subject"] == "Offer" and spam["X-Spam"] == "Yes"
    score, _, rest = spam["X-Spam-Score"].partition(" / ")
    assert float(score) >= 15.0 and rest.endswith("(rspamd)")  # GTUBE's score, not ours (at most a few points)
    ham = email.message_from_bytes(inbox)
    assert ham["Subject"] == "Lunch" and ham["X-Spam"] == "No" and ham["X-Spam-Score"].endswith("(rspamd)")


def test_rspamd_stopped_leaves_mail_to_hatoba_s_own_checks_and_says_so(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="hatoba.checks.rspamd")
    with RspamdPeer(shared_server().address) as own:  # this test's own rspamd: it is stopped halfway
        home = home_for(tmp_path, own.url)
        with ServerThread(home) as server:
            assert send(server, message("Before", "While rspamd runs."))[0] == 250
            [before] = home.wait_messages("bob@example.test", 1)
            own.stop()
            assert send(server, message("Hello", f"Despite the test string: {GTUBE}"))[0] == 250
            assert send(server, message("Again", "A second one, while rspamd is still down."))[0] == 250
            stored = home.wait_messages("bob@example.test", 3)
    assert email.message_from_bytes(before)["X-Spam-Score"].endswith("(rspamd)")
    later = [email.message_from_bytes(m) for m in stored if m != before]
    assert sorted(m["Subject"] for m in later) == ["Again", "Hello"]
    for msg in later:
        assert msg["X-Spam"] == "No" and not msg["X-Spam-Score"].endswith("(rspamd)")
        assert "Authentication-Results" in msg
    lines = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(lines) == 1, lines  # said once, not per message
    assert f"127.0.0.1:{own.port}" in lines[0] and "hatoba's own checks" in lines[0]


def test_what_a_user_moves_into_junk_is_taught_to_rspamd(tmp_path, rspamd):
    import imaplib
    import ssl

    home = home_for(tmp_path, rspamd.url, rspamd.controller_url)
    before = rspamd.learned()
    with ServerThread(home) as server:
        assert send(server, message("Cheap pills", "Cheap pills, best prices, order today!"))[0] == 250
        home.wait_messages("bob@example.test", 1)
        ctx = ssl.create_default_context(cafile=str(home.ca_file))
        with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=ctx) as imap:
            imap.login("bob@example.test", "bob-password-1")
            imap.select("INBOX")
            assert imap.copy("1", "Junk")[0] == "OK"
        server.call(server.server.imap.feedback.idle())
    assert rspamd.learned() == before + 1
