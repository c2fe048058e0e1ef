"""limits.login_deadline: a client that has not logged in (on port 25: has not
started a mail transaction) is closed in time, however it drips its bytes,
on every listener; once past it, only the idle timeouts apply."""

import dataclasses
import imaplib
import smtplib
import socket
import threading
import time

from support.harness import PASSWORDS, ServerThread, _merge_config
from support.probe import LatencyProbe

from hatoba.imap.wakeclock import TICK

DEADLINE = 3.0
# IMAP meets its deadlines on the shared WakeClock, up to a TICK late.
CLOSED_BY = DEADLINE + TICK + 1.0


def deadline_server(home) -> ServerThread:
    _merge_config(home.config_path, '[auth]\nplaintext_networks = ["127.0.0.1/32"]\n')
    config = home.config()
    limits = dataclasses.replace(config.limits, login_deadline=DEADLINE)
    return ServerThread(home, dataclasses.replace(config, limits=limits))


def drip(port: int, farewells: dict[int, tuple[float, bytes]]) -> None:
    """Connect, then send a command one byte every 0.3 s; record when and how the server closed."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE * 3) as s:
        s.settimeout(0.3)
        got = b""
        while time.monotonic() - start < CLOSED_BY + 2:
            try:
                s.sendall(b"a")
                chunk = s.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            got += chunk
        farewells[port] = (time.monotonic() - start, got)


def test_dripping_and_silent_clients_are_closed_at_the_deadline(hatoba_home):
    with deadline_server(hatoba_home) as server:
        ports = [server.port(name) for name in ("smtp", "submission", "pop3", "imap")]
        closed: dict[int, tuple[float, bytes]] = {}
        drippers = [threading.Thread(target=drip, args=(port, closed)) for port in ports]
        for t in drippers:
            t.start()
        silent = socket.create_connection(("127.0.0.1", server.port("pop3")), timeout=DEADLINE * 3)
        with LatencyProbe("127.0.0.1", server.port("imap"), "imap") as probe:
            time.sleep(DEADLINE / 2)  # the probe has not logged in either: it stops before its deadline
        for t in drippers:
            t.join(DEADLINE * 3)
        data = silent.makefile("rb").read()  # until the server closes it (TimeoutError: it did not)
        silent.close()
    assert probe.worst < 1.0, probe.summary()
    assert set(closed) == set(ports), "a dripping client was not closed"
    for port, (after, got) in closed.items():
        assert after < CLOSED_BY, (port, after, got)
    smtp, submission, pop3, imap = (closed[p][1] for p in ports)
    assert b"421 4.4.2 Too slow" in smtp and b"421 4.4.2 Too slow" in submission
    assert b"-ERR Too slow" in pop3
    assert b"* BYE Too slow" in imap
    assert data.startswith(b"+OK") and b"-ERR Too slow" in data


def test_a_logged_in_client_and_a_mail_transaction_outlive_the_deadline(hatoba_home):
    with deadline_server(hatoba_home) as server:
        imap = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10)
        imap.login("alice@example.test", PASSWORDS["alice@example.test"])
        smtp = smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10)
        smtp.ehlo("mx.sender.example")
        assert smtp.mail("someone@sender.example")[0] == 250
        time.sleep(DEADLINE + 0.5)
        assert imap.noop()[0] == "OK"
        assert smtp.rcpt("bob@example.test")[0] == 250
        assert smtp.data(b"Subject: after the deadline\r\n\r\nstill here\r\n")[0] == 250
        smtp.quit()
        imap.logout()
        assert any(b"still here" in m for m in hatoba_home.wait_messages("bob@example.test", 1))
