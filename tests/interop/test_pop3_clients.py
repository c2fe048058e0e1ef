"""Real POP3 clients against hatoba: curl, openssl s_client, fetchmail."""

from __future__ import annotations

import smtplib
import subprocess

from support.peers import needs

BOB = ("bob@example.test", "bob-password-1")


def deliver(server, home, n: int) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as c:
        for i in range(n):
            c.sendmail("someone@elsewhere.example", [BOB[0]],
                       f"From: someone@elsewhere.example\r\nSubject: interop {i}\r\n\r\nbody {i}\r\n")
    assert len(home.wait_messages(BOB[0], n)) == n


needs_curl = needs("curl")


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "--silent", "--show-error", "--max-time", "20", *args],
                          capture_output=True, text=True, timeout=30)


@needs_curl
def test_curl_pop3s_lists_and_retrieves(server, hatoba_home):
    deliver(server, hatoba_home, 2)
    url = f"pop3s://127.0.0.1:{server.port('pop3s')}/"
    r = curl("--cacert", str(hatoba_home.ca_file), "--user", ":".join(BOB), url)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 2  # "1 SIZE", "2 SIZE"
    r = curl("--cacert", str(hatoba_home.ca_file), "--user", ":".join(BOB), url + "2")
    assert r.returncode == 0, r.stderr
    assert "Subject: interop 1" in r.stdout and "Delivered-To: bob@example.test" in r.stdout


@needs_curl
def test_curl_pop3_with_ssl_reqd_upgrades_with_stls(server, hatoba_home):
    deliver(server, hatoba_home, 1)
    url = f"pop3://127.0.0.1:{server.port('pop3')}/1"
    r = curl("--ssl-reqd", "--cacert", str(hatoba_home.ca_file), "--user", ":".join(BOB), url)
    assert r.returncode == 0, r.stderr
    assert "Subject: interop 0" in r.stdout


@needs_curl
def test_curl_pop3_without_tls_cannot_log_in(server, hatoba_home):
    r = curl("--user", ":".join(BOB), f"pop3://127.0.0.1:{server.port('pop3')}/")
    assert r.returncode != 0  # curl finds no way to log in without STLS
    # That is curl's own choice; what the server refuses is in loopback/test_plaintext_wire.py.


@needs("openssl")
def test_openssl_starttls_pop3(server, hatoba_home):
    r = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port('pop3')}", "-starttls", "pop3",
         "-CAfile", str(hatoba_home.ca_file), "-verify_return_error", "-crlf", "-quiet"],
        input=f"CAPA\nUSER {BOB[0]}\nPASS {BOB[1]}\nSTAT\nQUIT\n", capture_output=True, text=True, timeout=30,
    )
    out = r.stdout
    assert "USER" in out and "SASL PLAIN LOGIN" in out
    assert "+OK Logged in" in out or "+OK" in out.split("\n")[-3]
    assert "+OK 0 0" in out


@needs("fetchmail")
def test_fetchmail_over_pop3s_into_a_file(server, hatoba_home, tmp_path):
    deliver(server, hatoba_home, 3)
    out = tmp_path / "fetched.mbox"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f'poll 127.0.0.1 service {server.port("pop3s")} protocol pop3 '
        f'user "{BOB[0]}" password "{BOB[1]}" '
        f'ssl sslcertck sslcertfile "{hatoba_home.ca_file}" sslproto "TLS1.2+" sslcommonname "mail.example.test" '
        f'mda "/bin/sh -c \'cat >> {out}\'"\n'
    )
    rc.chmod(0o600)
    r = subprocess.run(["fetchmail", "-f", str(rc), "--nodetach", "--nosyslog", "-v",
                        "--pidfile", str(tmp_path / "pid"), "--idfile", str(tmp_path / "ids")],
                       capture_output=True, text=True, timeout=60, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    text = out.read_text()
    assert all(f"Subject: interop {i}" in text for i in range(3))
    assert hatoba_home.messages(BOB[0]) == []  # fetchmail deletes what it fetched
