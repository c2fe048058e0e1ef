"""swaks, the SMTP test tool operators use, against a running hatoba."""

import email
import subprocess

from support.peers import needs

pytestmark = needs("swaks")


def swaks(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["swaks", "--timeout", "15", *args], capture_output=True, text=True, timeout=60)


def tls_args(home) -> list[str]:
    return ["--tls-ca-path", str(home.ca_file), "--tls-verify", "--tls-sni", "mail.example.test"]


def test_587_starttls_auth_plain(server, hatoba_home):
    r = swaks("-s", f"127.0.0.1:{server.port('submission')}", "--tls", *tls_args(hatoba_home),
              "-a", "PLAIN", "-au", "alice@example.test", "-ap", "alice-password-1",
              "-f", "alice@example.test", "-t", "bob@example.test", "--h-Subject", "swaks-587")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "<~  250 2.0.0 OK: queued as" in r.stdout
    [stored] = hatoba_home.wait_messages("bob@example.test", 1)
    msg = email.message_from_bytes(stored)
    assert msg["Subject"] == "swaks-587" and "with ESMTPSA" in msg["Received"]


def test_465_implicit_tls_auth_login(server, hatoba_home):
    r = swaks("-s", f"127.0.0.1:{server.port('smtps')}", "--tlsc", *tls_args(hatoba_home),
              "-a", "LOGIN", "-au", "bob@example.test", "-ap", "bob-password-1",
              "-f", "bob@example.test", "-t", "alice@example.test", "--h-Subject", "swaks-465")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "<~  235 2.7.0" in r.stdout
    [stored] = hatoba_home.wait_messages("alice@example.test", 1)
    assert email.message_from_bytes(stored)["Subject"] == "swaks-465"


def test_25_plain_and_starttls(server, hatoba_home):
    r = swaks("-s", f"127.0.0.1:{server.port('smtp')}", "-f", "someone@elsewhere.example",
              "-t", "bob@example.test", "--h-Subject", "swaks-25")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "<-  250 2.0.0 OK: queued" in r.stdout
    r = swaks("-s", f"127.0.0.1:{server.port('smtp')}", "--tls", *tls_args(hatoba_home),
              "-f", "someone@elsewhere.example", "-t", "bob@example.test", "--h-Subject", "swaks-25-tls")
    assert r.returncode == 0, r.stdout + r.stderr
    msgs = hatoba_home.wait_messages("bob@example.test", 2)
    received = {email.message_from_bytes(m)["Subject"]: email.message_from_bytes(m)["Received"] for m in msgs}
    assert "with ESMTP id" in received["swaks-25"]
    assert "with ESMTPS id" in received["swaks-25-tls"]


def test_25_open_relay_refused(server):
    r = swaks("-s", f"127.0.0.1:{server.port('smtp')}", "-f", "someone@elsewhere.example",
              "-t", "victim@elsewhere.net", "--quit-after", "RCPT")
    assert "554 5.7.1 Relay access denied" in r.stdout, r.stdout


def test_587_auth_before_tls_refused(server):
    r = swaks("-s", f"127.0.0.1:{server.port('submission')}", "-a", "PLAIN", "-au", "alice@example.test",
              "-ap", "alice-password-1", "-f", "alice@example.test", "-t", "bob@example.test")
    assert r.returncode != 0
    # AUTH is not even advertised before STARTTLS, so swaks refuses to send the password
    assert "alice-password-1" not in r.stdout and "YWxpY2" not in r.stdout
    r = swaks("-s", f"127.0.0.1:{server.port('submission')}", "-f", "alice@example.test", "-t", "bob@example.test",
              "--quit-after", "RCPT")
    assert "530 5.7.0 Must issue a STARTTLS command first" in r.stdout


def test_587_sender_restriction(server, hatoba_home):
    r = swaks("-s", f"127.0.0.1:{server.port('submission')}", "--tls", *tls_args(hatoba_home),
              "-a", "PLAIN", "-au", "alice@example.test", "-ap", "alice-password-1",
              "-f", "carol@example.test", "-t", "bob@example.test")
    assert r.returncode != 0
    assert "553 5.7.1" in r.stdout


def test_wrong_password(server, hatoba_home):
    r = swaks("-s", f"127.0.0.1:{server.port('smtps')}", "--tlsc", *tls_args(hatoba_home),
              "-a", "PLAIN", "-au", "alice@example.test", "-ap", "not-the-password",
              "-f", "alice@example.test", "-t", "bob@example.test")
    assert "535 5.7.8" in r.stdout
