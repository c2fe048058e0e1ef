"""The incoming-mail checks on port 25 with a real client and a loopback DNS server:
DMARC p=reject refused at the end of DATA, p=quarantine and forged local senders delivered
to Junk, Authentication-Results on what is delivered, forged ones removed, and mail from
logged-in users left alone."""

from __future__ import annotations

import email
import imaplib
import smtplib
import ssl

import pytest

from support.dnsserver import DnsServer
from support.harness import ServerThread, make_home
from support.mailauth import RsaKey, results, sign

HOST = "mail.example.test"
KEY = RsaKey()


@pytest.fixture(scope="module")
def dns():
    records = {
        "mx.sender.test": [("TXT", "v=spf1 ip4:127.0.0.1 -all")],
        "sender.test": [("TXT", "v=spf1 ip4:127.0.0.1 -all")],
        "_dmarc.sender.test": [("TXT", "v=DMARC1; p=reject")],
        "rsa._domainkey.sender.test": [("TXT", KEY.record)],
        "_dmarc.bank.test": [("TXT", "v=DMARC1; p=reject")],
        "bank.test": [("TXT", "v=spf1 ip4:192.0.2.1 -all")],
        "_dmarc.shop.test": [("TXT", "v=DMARC1; p=quarantine")],
        "lax.test": [("TXT", "v=spf1 -all")],
        "_dmarc.lax.test": [("TXT", "v=DMARC1; p=none")],
    }
    with DnsServer(records) as server:
        yield server


@pytest.fixture
def home(tmp_path, dns):
    return make_home(tmp_path / "h", extra_config=f'[dns]\nresolver = "{dns.address}"\n')


@pytest.fixture
def server(home):
    with ServerThread(home) as srv:
        yield srv


def message(from_: str, subject: str = "Hello", extra: str = "") -> bytes:
    return (f"{extra}From: {from_}\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
            "Date: Mon, 07 Dec 2026 01:00:00 +0000\r\nMessage-ID: <m1@sender.test>\r\n\r\nHi Bob.\r\n").encode()


def send(server, mail_from: str, data: bytes) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=20) as c:
        c.ehlo("mx.sender.test")
        c.mail(mail_from)
        assert c.rcpt("bob@example.test")[0] == 250
        return c.data(data)


def test_dmarc_reject_is_refused_at_the_end_of_data_and_nothing_is_delivered(server, home):
    code, text = send(server, "phisher@elsewhere.test", message("Bank <alerts@bank.test>"))
    assert code == 550 and text.startswith(b"5.7.1 ")
    assert b"DMARC" in text and b"bank.test" in text
    code, _ = send(server, "a@sender.test", sign(message("a@sender.test"), KEY, "sender.test", "rsa"))
    assert code == 250  # the server carries on; the next, authenticated message is taken
    [delivered] = home.wait_messages("bob@example.test", 1)
    assert b"alerts@bank.test" not in delivered


def test_authenticated_mail_gets_authentication_results_and_lands_in_the_inbox(server, home):
    forged = f"Authentication-Results: {HOST}; dmarc=pass header.from=bank.test\r\nX-Spam: No\r\n"
    data = sign(message("Alice <a@sender.test>"), KEY, "sender.test", "rsa")
    code, _ = send(server, "a@sender.test", forged.encode() + data)
    assert code == 250
    [stored] = home.wait_messages("bob@example.test", 1)
    got = results(stored.replace(b"\n", b"\r\n"), HOST)  # exactly one of ours: the forged one is gone
    assert got["dkim"][0].result == "pass" and got["dkim"][0].header_d == "sender.test"
    assert got["dmarc"][0].result == "pass" and got["dmarc"][0].header_from == "sender.test"
    assert {(r.result, r.smtp_mailfrom or r.smtp_helo) for r in got["spf"]} == {
        ("pass", "sender.test"), ("pass", "mx.sender.test")}
    msg = email.message_from_bytes(stored)
    assert msg.get_all("X-Spam") == ["No"]
    # Below our Received, above the message's own fields; the signature still verifies there.
    names = [k.lower() for k in msg.keys()]
    assert names.index("received") < names.index("authentication-results") < names.index("dkim-signature")
    assert home.messages("bob@example.test", ".Junk") == []


def test_dmarc_quarantine_and_a_forged_local_sender_go_to_junk(server, home):
    assert send(server, "news@elsewhere.test", message("Shop <news@shop.test>", "Sale"))[0] == 250
    assert send(server, "x@elsewhere.test", message("Principal <alice@example.test>", "Urgent"))[0] == 250
    junk = home.wait_messages("bob@example.test", 2, folder=".Junk")
    assert sorted(email.message_from_bytes(m)["Subject"] for m in junk) == ["Sale", "Urgent"]
    for stored in junk:
        msg = email.message_from_bytes(stored)
        assert msg["X-Spam"] == "Yes" and msg["X-Spam-Score"]
    assert home.messages("bob@example.test") == []
    # A mail program sees it in the folder marked \Junk.
    ctx = ssl.create_default_context(cafile=str(home.ca_file))
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=ctx) as imap:
        imap.login("bob@example.test", "bob-password-1")
        _, listing = imap.list()
        assert any(b"\\Junk" in line and line.endswith(b"Junk") for line in listing), listing
        status, data = imap.select("Junk")
        assert status == "OK" and data == [b"2"]


def test_mail_from_a_logged_in_user_is_not_judged(server, home):
    ctx = ssl.create_default_context(cafile=str(home.ca_file))
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=20) as c:
        c.starttls(context=ctx)
        c.login("alice@example.test", "alice-password-1")
        c.sendmail("alice@example.test", ["bob@example.test"], message("alice@example.test", "From Alice"))
    [stored] = home.wait_messages("bob@example.test", 1)
    assert b"Authentication-Results" not in stored and b"X-Spam" not in stored


def test_checks_off_accepts_everything_unjudged(tmp_path, dns):
    home = make_home(tmp_path / "off", extra_config=f'[dns]\nresolver = "{dns.address}"\n[checks]\nenabled = false\n')
    with ServerThread(home) as srv:
        assert send(srv, "phisher@elsewhere.test", message("alerts@bank.test"))[0] == 250
        [stored] = home.wait_messages("bob@example.test", 1)
    assert b"Authentication-Results" not in stored


def spam_lists(home):  # type: ignore[no-untyped-def]
    from hatoba.store.spamlists import SpamLists

    return SpamLists(home.root / "data" / "directory.sqlite3")


def test_moving_into_and_out_of_junk_is_recorded_as_spam_and_ham(server, home):
    assert send(server, "a@sender.test", sign(message("a@sender.test", "Keep me"), KEY, "sender.test", "rsa"))[0] == 250
    home.wait_messages("bob@example.test", 1)
    ctx = ssl.create_default_context(cafile=str(home.ca_file))
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=ctx) as imap:
        imap.login("bob@example.test", "bob-password-1")
        imap.select("INBOX")
        assert imap.copy("1", "Junk")[0] == "OK"
        server.call(server.server.imap.feedback.idle())
        lists = spam_lists(home)
        assert lists.feedback("bob@example.test") == [("<m1@sender.test>", "spam")]
        imap.select("Junk")
        assert imap.copy("1", "Archive")[0] == "OK"  # out of Junk: wanted after all
        assert imap.copy("1", "Trash")[0] == "OK"  # deleting is no verdict
        server.call(server.server.imap.feedback.idle())
        assert lists.feedback("bob@example.test") == [("<m1@sender.test>", "ham")]
        lists.close()


def test_a_user_s_sender_lists_move_mail_into_and_out_of_junk_but_never_let_a_forgery_in(tmp_path, dns):
    dns.add("rsa._domainkey.lax.test", "TXT", KEY.record)
    home = make_home(tmp_path / "lists", extra_config=f'[dns]\nresolver = "{dns.address}"\n[checks]\njunk_score = 2.0\n')
    for kind, sender in (("allow", "@lax.test"), ("block", "pest@elsewhere.test"), ("allow", "alice@example.test")):
        done = home.cli("spam", kind, "bob@example.test", sender)
        assert done.returncode == 0, done.stderr
    listing = home.cli("spam", "list", "bob@example.test").stdout.split("\n")
    assert listing[:3] == ["allow @lax.test", "allow alice@example.test", "block pest@elsewhere.test"]
    assert home.cli("spam", "allow", "nobody@example.test", "x@y.test").returncode == 1

    def send_lax(subject: str, signed: bool) -> None:
        data = message("news@lax.test", subject)
        if signed:
            data = sign(data, KEY, "lax.test", "rsa")
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=20) as c:
            c.ehlo("mx.sender.test")
            c.mail("news@lax.test")  # lax.test's SPF says -all: 2 points, Junk at this server's 2.0
            assert c.rcpt("bob@example.test")[0] == c.rcpt("carol@example.test")[0] == 250
            assert c.data(data)[0] == 250

    with ServerThread(home) as server:
        # Scored as spam, but signed by lax.test (DMARC passes), which bob allows: his inbox.
        send_lax("Allowed", signed=True)
        # The same From unsigned: nothing says lax.test sent it, so bob's list does not apply.
        send_lax("Forged", signed=False)
        # Nothing wrong with it, but blocked by bob: Junk.
        assert send(server, "pest@elsewhere.test", message("pest@elsewhere.test", "Blocked"))[0] == 250
        # A forged From of our own domain stays in Junk even though alice@ is allowed.
        assert send(server, "x@elsewhere.test", message("alice@example.test", "Local"))[0] == 250
        home.wait_messages("bob@example.test", 3, folder=".Junk")
        home.wait_messages("bob@example.test", 1)
        home.wait_messages("carol@example.test", 2, folder=".Junk")

    def subjects(address: str, folder: str = "") -> list[str]:
        return sorted(email.message_from_bytes(m)["Subject"] for m in home.messages(address, folder))

    assert subjects("bob@example.test") == ["Allowed"]
    assert subjects("bob@example.test", ".Junk") == ["Blocked", "Forged", "Local"]
    assert subjects("carol@example.test", ".Junk") == ["Allowed", "Forged"]  # carol has no lists
