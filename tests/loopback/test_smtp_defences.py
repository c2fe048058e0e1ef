"""Port 25's defences against unwanted senders, with a real client and a loopback DNS server:
DNS blocklists and allowlists, greylisting, per-address rate limits and the slow-down of
address guessing. Each shows its reply code, and that what was acknowledged is delivered."""

from __future__ import annotations

import email
import smtplib
import time

import pytest

from support.dnsserver import DnsServer
from support.harness import ServerThread, make_home

# The client is 127.0.0.1: its name under a blocklist zone is 1.0.0.127.ZONE.
LISTED = "1.0.0.127"


@pytest.fixture(scope="module")
def dns():
    records = {
        f"{LISTED}.bl.test": [("A", "127.0.0.2")],
        f"{LISTED}.weak.test": [("A", "127.0.0.3")],
        f"{LISTED}.wl.test": [("A", "127.0.10.2")],
        f"{LISTED}.refused.test": [("A", "127.255.255.254")],  # "you may not query": not a listing
        "spf-ok.test": [("TXT", "v=spf1 ip4:127.0.0.1 -all")],
    }
    with DnsServer(records) as server:
        yield server


def start(tmp_path, dns, checks: str = "", limits: str = ""):  # type: ignore[no-untyped-def]
    extra = f'[dns]\nresolver = "{dns.address}"\n[checks]\n{checks}\n'
    if limits:
        extra += f"[limits]\n{limits}\n"
    home = make_home(tmp_path / "h", extra_config=extra)
    return home, ServerThread(home)


def message(subject: str) -> bytes:
    return (f"From: sender@elsewhere.test\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@elsewhere.test>\r\n\r\nHello.\r\n").encode()


def attempt(server, subject: str, rcpt: str = "bob@example.test", sender: str = "sender@elsewhere.test"):  # type: ignore[no-untyped-def]
    """(RCPT reply code and text, DATA reply code and text or None)."""
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as c:
        c.ehlo("mx.elsewhere.test")
        c.mail(sender)
        rcpt_reply = c.rcpt(rcpt)
        if rcpt_reply[0] != 250:
            return rcpt_reply, None
        return rcpt_reply, c.data(message(subject))


def subjects(home, address: str = "bob@example.test", folder: str = ""):  # type: ignore[no-untyped-def]
    return sorted(email.message_from_bytes(m)["Subject"] for m in home.messages(address, folder))


# -- blocklists ---------------------------------------------------------------------------


def test_a_listed_client_is_refused_at_rcpt_but_reaches_the_postmaster(tmp_path, dns):
    home, thread = start(tmp_path, dns, 'dnsbl = ["bl.test*2", "refused.test*5"]')
    with thread as server:
        (code, text), data = attempt(server, "listed")
        assert (code, data) == (550, None)
        assert text.startswith(b"5.7.1 ") and b"blocked using bl.test" in text and b"refused.test" not in text
        (code, _), (data_code, _) = attempt(server, "to-postmaster", rcpt="postmaster@example.test")
        assert (code, data_code) == (250, 250)
        home.wait_messages("alice@example.test", 1)  # postmaster@ is alice here
    assert subjects(home) == [] and subjects(home, "alice@example.test") == ["to-postmaster"]


def test_a_weight_below_the_threshold_counts_towards_junk_and_an_allowlist_takes_it_back(tmp_path, dns):
    home, thread = start(tmp_path, dns, 'dnsbl = ["weak.test*0.5"]\njunk_score = 0.5')
    with thread as server:
        (code, _), (data_code, _) = attempt(server, "weak")
        assert (code, data_code) == (250, 250)
        [junk] = home.wait_messages("bob@example.test", 1, folder=".Junk")
    assert email.message_from_bytes(junk)["X-Spam-Score"].startswith("0.5 /")

    home, thread = start(tmp_path / "2", dns, 'dnsbl = ["bl.test*2", "wl.test=127.0.[0..255].[1..3]*-2"]')
    with thread as server:
        (code, _), (data_code, _) = attempt(server, "allowed")
        assert (code, data_code) == (250, 250)
        home.wait_messages("bob@example.test", 1)
    assert subjects(home) == ["allowed"]


# -- greylisting --------------------------------------------------------------------------


def test_greylisting_defers_a_new_sender_and_lets_its_retry_through(tmp_path, dns):
    home, thread = start(tmp_path, dns, "greylisting = true\ngreylist_delay = 2\ngreylist_auto_allow = 2")
    with thread as server:
        _, (code, text) = attempt(server, "first")
        assert code == 451 and text.startswith(b"4.7.1 ") and b"greylisted" in text
        _, (code, _) = attempt(server, "too-soon")
        assert code == 451  # retried before the delay: still waiting
        time.sleep(2.2)
        _, (code, _) = attempt(server, "retried")
        assert code == 250
        _, (code, _) = attempt(server, "known")  # the triplet passed: no more waiting
        assert code == 250
        # A sender whose SPF passes is not made to wait.
        _, (code, _) = attempt(server, "spf", sender="news@spf-ok.test")
        assert code == 250
        home.wait_messages("bob@example.test", 3)
        # Only what got 250 is delivered, once each.
        assert subjects(home) == ["known", "retried", "spf"]
        # One more pass from this network and it is let through without waiting.
        _, (code, _) = attempt(server, "carol-1", rcpt="carol@example.test")
        assert code == 451
        time.sleep(2.2)
        _, (code, _) = attempt(server, "carol-2", rcpt="carol@example.test")
        assert code == 250
        _, (code, _) = attempt(server, "alice", rcpt="alice@example.test", sender="new@elsewhere.test")
        assert code == 250  # a new triplet, but the network passed twice


# -- rates --------------------------------------------------------------------------------


def test_message_and_connection_rates_per_address(tmp_path, dns):
    home, thread = start(tmp_path, dns, limits="client_message_rate = 3\nclient_connection_rate = 5")
    with thread as server:
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as c:  # connection 1
            c.ehlo("mx.elsewhere.test")
            for i in range(3):
                assert c.sendmail("s@elsewhere.test", ["bob@example.test"], message(f"m{i}")) == {}
            code, text = c.mail("s@elsewhere.test")
            assert code == 450 and text.startswith(b"4.7.1 ") and b"last minute (3)" in text
        for _ in range(4):  # connections 2..5 are served (and refused at MAIL)
            with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as c:
                c.ehlo("x")
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30)
        assert refused.value.smtp_code == 421 and b"Too many connections" in refused.value.smtp_error
        home.wait_messages("bob@example.test", 3)
    assert subjects(home) == ["m0", "m1", "m2"]


def test_guessing_addresses_slows_down_the_answers(tmp_path, dns):
    _home, thread = start(tmp_path, dns, limits="unknown_recipient_limit = 3")
    with thread as server:
        with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as c:
            c.ehlo("x")
            c.mail("s@elsewhere.test")
            for name in ("adam", "bert", "cleo"):
                started = time.monotonic()
                assert c.rcpt(f"{name}@example.test")[0] == 550
                assert time.monotonic() - started < 0.9
            started = time.monotonic()
            assert c.rcpt("dora@example.test")[0] == 550
            assert time.monotonic() - started >= 1.0
            started = time.monotonic()
            assert c.rcpt("bob@example.test")[0] == 250  # known ones wait too: no way to tell them apart by time
            assert time.monotonic() - started >= 2.0


def test_a_client_that_talks_before_the_greeting_is_refused(tmp_path, dns):
    import socket

    _home, thread = start(tmp_path, dns, "greet_pause = 1.0")
    with thread as server:
        with socket.create_connection(("127.0.0.1", server.port("smtp")), timeout=10) as rude:
            rude.sendall(b"EHLO spambot\r\nMAIL FROM:<x@y.test>\r\n")
            answer = rude.recv(4096)
            assert answer.startswith(b"554 5.5.1 ") and b"before the greeting" in answer
            assert rude.recv(4096) == b""  # and the connection is closed
        started = time.monotonic()
        (code, _), (data_code, _) = attempt(server, "polite")  # waits for the greeting, as MTAs do
        assert (code, data_code) == (250, 250)
        assert time.monotonic() - started >= 1.0
