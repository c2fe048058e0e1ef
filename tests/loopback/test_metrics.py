"""/metrics counts what happened, exactly: mail in over SMTP, read over IMAP
and POP3, a failed login, a refused recipient, a bounce, scraped before and
after with prometheus_client's own parser. The delivery counters come from
the delivery process, so this also shows its reports reach the server."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import time

import pytest

from support.fakesmtp import ScriptedSmtp
from support.harness import ServerThread, make_home, wait_for
from support.scrape import scrape, value, wait_healthy

ALICE = ("alice@example.test", "alice-password-1")
BOB = ("bob@example.test", "bob-password-1")


@pytest.fixture
def refusing_mx():
    with ScriptedSmtp(rcpt_reply="550 5.1.1 no such user here") as mx:
        yield mx


@pytest.fixture
def metered(tmp_path, refusing_mx):
    home = make_home(tmp_path / "hatoba", extra_config=(
        "[listeners.http]\nenabled = true\n"
        f'[delivery.routes]\n"refusing.example" = "[127.0.0.1]:{refusing_mx.port}"\n'
    ))
    with ServerThread(home) as server:
        wait_healthy(server.port("http"))
        yield server, home


def test_counters_move_by_exactly_what_happened(metered, refusing_mx):
    server, home = metered
    http = server.port("http")
    before = scrape(http)

    # Mail in on port 25, and a recipient refused in the same session.
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as c:
        c.sendmail("someone@elsewhere.example", [BOB[0]], "Subject: hello\r\n\r\nbody\r\n")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            c.sendmail("someone@elsewhere.example", ["nobody@example.test"], "Subject: no\r\n\r\nbody\r\n")
    assert len(home.wait_messages(BOB[0], 1)) == 1

    # Read it over IMAP and POP3; one wrong password.
    imap = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=home.client_context(), timeout=10)
    imap.login(*BOB)
    imap.select("INBOX")
    assert imap.fetch("1", "(BODY.PEEK[])")[0] == "OK"
    imap.logout()
    wrong = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=home.client_context(), timeout=10)
    with pytest.raises(imaplib.IMAP4.error):
        wrong.login(BOB[0], "not-the-password")
    wrong.logout()
    pop = poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), context=home.client_context(), timeout=10)
    pop.user(BOB[0])
    pop.pass_(BOB[1])
    assert pop.stat()[0] == 1
    pop.retr(1)
    pop.quit()

    # Alice sends to a server that refuses the recipient: a bounce comes back to her.
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10) as c:
        c.starttls(context=home.client_context())
        c.login(*ALICE)
        c.sendmail(ALICE[0], ["someone@refusing.example"], f"From: {ALICE[0]}\r\nSubject: out\r\n\r\nbody\r\n")
    assert len(home.wait_messages(ALICE[0], 1)) == 1

    def settled() -> bool:
        now = scrape(http)
        return (value(now, "hatoba_deliveries_total", kind="local", tls="no", result="delivered")
                - value(before, "hatoba_deliveries_total", kind="local", tls="no", result="delivered")) >= 2 \
            and value(now, "hatoba_queue_messages") == 0 \
            and value(now, "hatoba_connections_open", listener="smtp") == 0 \
            and value(now, "hatoba_connections_open", listener="submission") == 0
    assert wait_for(settled, timeout=15)
    time.sleep(0.3)  # nothing late may follow
    after = scrape(http)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("hatoba_smtp_messages_accepted_total", listener="smtp") == 1
    assert moved("hatoba_smtp_messages_accepted_total", listener="submission") == 1
    assert moved("hatoba_smtp_messages_rejected_total", reason="unknown-user") == 1
    assert moved("hatoba_logins_total", protocol="imap", result="ok") == 1
    assert moved("hatoba_logins_total", protocol="imap", result="failed") == 1
    assert moved("hatoba_logins_total", protocol="pop3", result="ok") == 1
    assert moved("hatoba_logins_total", protocol="smtp", result="ok") == 1
    assert moved("hatoba_logins_total", protocol="pop3", result="failed") == 0
    # Bob's message and the bounce to Alice went into mailboxes; Alice's message bounced.
    assert moved("hatoba_deliveries_total", kind="local", tls="no", result="delivered") == 2
    assert moved("hatoba_deliveries_total", kind="remote", tls="no", result="bounced") == 1
    assert moved("hatoba_deliveries_total", kind="remote", tls="no", result="delivered") == 0
    assert moved("hatoba_deliveries_total", kind="local", tls="no", result="deferred") == 0
    assert moved("hatoba_bounces_total", kind="bounce") == 1
    assert moved("hatoba_delivery_latency_seconds_count", kind="local") == 2
    assert moved("hatoba_delivery_latency_seconds_count", kind="remote") == 0
    assert moved("hatoba_connections_total", listener="smtp") == 1
    assert moved("hatoba_connections_total", listener="submission") == 1
    assert moved("hatoba_connections_total", listener="imaps") == 2
    assert moved("hatoba_connections_total", listener="pop3s") == 1
    assert moved("hatoba_tls_handshakes_total", listener="imaps") == 2
    assert moved("hatoba_tls_handshakes_total", listener="pop3s") == 1
    assert moved("hatoba_tls_handshakes_total", listener="submission") == 1  # STARTTLS
    assert moved("hatoba_tls_handshake_failures_total", listener="imaps") == 0
    assert value(after, "hatoba_connections_open", listener="imaps") == 0
    assert refusing_mx.messages == []  # refused at RCPT: no DATA
    # Memory of both processes, and the version.
    assert value(after, "process_resident_memory_bytes") > 1_000_000
    assert value(after, "hatoba_delivery_process_resident_memory_bytes") > 1_000_000
    assert value(after, "hatoba_delivery_process_up") == 1
    assert value(after, "hatoba_build_info", version=__import__("hatoba").__version__) == 1


def test_queue_gauges_show_waiting_mail(metered):
    server, home = metered
    http = server.port("http")
    # forward@ goes to elsewhere.example, routed to a closed port: it waits in the queue.
    sent = time.time()
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as c:
        c.sendmail("someone@elsewhere.example", ["forward@example.test"], "Subject: waits\r\n\r\nbody\r\n")

    def deferred() -> bool:
        return value(scrape(http), "hatoba_deliveries_total", kind="remote", tls="no", result="deferred") == 1
    assert wait_for(deferred, timeout=15)
    now = scrape(http)
    assert value(now, "hatoba_queue_messages") == 1
    age = value(now, "hatoba_queue_oldest_message_age_seconds")
    assert 0 < age <= time.time() - sent + 1
