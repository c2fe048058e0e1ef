"""Certificates from an ACME CA: Debian's pebble as the CA, knot as the DNS it
asks (and the server DNS-01 records are written to), `hatoba serve` as a
child process, and openssl s_client to see what each port presents.

Each challenge type gets a certificate of its own; renewal happens by itself
when a short-lived certificate passes two thirds of its life, under an open
IMAP session; a CA that is down, one that refuses and a challenge that fails
each keep the certificate in use and cost one log line.
"""

from __future__ import annotations

import imaplib
import json
import re
import ssl
import subprocess
import time

import dns.query
import dns.rdatatype
import dns.tsigkeyring
import dns.update
import pytest
from cryptography import x509

from support.acme_peers import HOSTNAME, NAMES, TSIG_NAME, ZONE, AcmeSetup as Setup, Knot, Pebble
from support.harness import make_home, wait_for
from support.peers import require
from support.service import reachable_dir  # noqa: F401 - a fixture

pytestmark = [pytest.mark.interop, pytest.mark.slow]



def presented(port: int, name: str = HOSTNAME, starttls: str | None = None) -> list[x509.Certificate]:
    """The chain `openssl s_client` is shown on 127.0.0.1:`port` for SNI `name`."""
    openssl = require("openssl")
    command = [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name, "-showcerts"]
    if starttls:
        command += ["-starttls", starttls]
    done = subprocess.run(command, input=b"", capture_output=True, timeout=20)
    pems = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", done.stdout, re.S)
    return [x509.load_pem_x509_certificate(p) for p in pems]


def verified_by(root_pem: bytes, chain: list[x509.Certificate], name: str) -> bool:
    """Whether a client trusting only `root_pem` accepts `chain` for `name` (openssl verify)."""
    from cryptography.x509.verification import PolicyBuilder, Store

    store = Store([x509.load_pem_x509_certificate(root_pem)])
    verifier = PolicyBuilder().store(store).build_server_verifier(x509.DNSName(name))
    try:
        verifier.verify(chain[0], chain[1:])
    except Exception:  # noqa: BLE001 - any failure is "not verified"
        return False
    return True


def assert_served_everywhere(setup: Setup, serial: int) -> None:
    """Every TLS port presents the CA's certificate and its chain, verifiable from pebble's root."""
    root = setup.pebble.roots()
    for port, starttls in ((443, None), (993, None), (995, None), (465, None), (587, "smtp"), (143, "imap")):
        chain = presented(setup.port(port), starttls=starttls)
        assert chain and chain[0].serial_number == serial, (port, chain)
        assert len(chain) >= 2, f"port {port} sends no intermediate"
        assert verified_by(root, chain, HOSTNAME), port
    names = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(names.get_values_for_type(x509.DNSName)) == sorted(NAMES)


def test_http01_gets_a_certificate_every_port_serves(reachable_dir):
    with Setup(reachable_dir, '["http-01"]') as setup:
        serial = setup.wait_issued()
        assert_served_everywhere(setup, serial)
        key_file = setup.home.root / "data" / "acme" / "account.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert setup.cert_file.stat().st_mode & 0o777 == 0o600
        status = setup.home.cli("cert", "acme", "status")
        assert status.returncode == 0, status.stderr
        assert f"{serial:x}" in status.stdout and "(served)" in status.stdout
        check = setup.home.cli("check", "--no-live", "--no-dns", "--json")
        findings = {f["check"]: f for f in json.loads(check.stdout)["findings"]}
        assert findings["acme.ok"]["severity"] == "ok"
        assert "Traceback" not in setup.log()


def test_tls_alpn01_gets_a_certificate(reachable_dir):
    with Setup(reachable_dir, '["tls-alpn-01"]') as setup:
        serial = setup.wait_issued()
        assert_served_everywhere(setup, serial)
        assert "tls-alpn-01" not in setup.log() or "failed" not in setup.log()


def test_dns01_gets_a_certificate_and_takes_its_records_down(reachable_dir):
    with Setup(reachable_dir, '["dns-01"]') as setup:
        serial = setup.wait_issued()
        assert_served_everywhere(setup, serial)
        for name in NAMES:  # the TXT records went back out of the zone
            assert setup.knot.txt(f"_acme-challenge.{name}.") == []
        assert "acme.order" not in setup.log() or "harmless" not in setup.log()


def test_a_short_lived_certificate_renews_by_itself_under_open_sessions(reachable_dir):
    # pebble's certificates live 24 s here: hatoba renews at two thirds, 16 s.
    with Setup(reachable_dir, '["http-01"]', validity=24) as setup:
        first = setup.wait_issued()
        assert_served_everywhere(setup, first)
        context = ssl.create_default_context(cadata=setup.pebble.roots().decode())
        context.check_hostname = False  # the chain is verified; the name was, by assert_served_everywhere
        imap = imaplib.IMAP4_SSL("127.0.0.1", setup.port(993), ssl_context=context)
        imap.login("alice@example.test", "alice-password-1")
        import smtplib

        smtp = smtplib.SMTP("127.0.0.1", setup.port(587), timeout=20)
        smtp.starttls(context=context)
        smtp.login("alice@example.test", "alice-password-1")
        issued_at = time.monotonic()
        second = setup.wait_issued(other_than=first, timeout=40)
        took = time.monotonic() - issued_at
        assert 8 < took < 30, took  # at two thirds of the life, not at once nor at the end
        assert imap.noop()[0] == "OK"  # the session opened before renewal goes on
        assert imap.select("INBOX")[0] == "OK"
        imap.logout()
        assert smtp.noop()[0] == 250  # and so does the submission session, sending after it
        smtp.sendmail("alice@example.test", ["bob@example.test"], b"Subject: across a renewal\r\n\r\nhi\r\n")
        smtp.quit()
        assert any(b"across a renewal" in m for m in setup.home.wait_messages("bob@example.test", 1))
        # The running server serves the new one, chain included, without a SIGHUP.
        assert wait_for(lambda: presented(setup.port(993))[0].serial_number == second, 20)
        assert_served_everywhere(setup, second)
        assert "two thirds of its lifetime are gone" in setup.log()


def _point(knot: Knot, name: str, address: str) -> None:
    """Move `name`'s A record (an RFC 2136 update, as an operator's DNS change would)."""
    keyring = dns.tsigkeyring.from_text({TSIG_NAME: knot.secret})
    update = dns.update.UpdateMessage(ZONE, keyring=keyring, keyalgorithm="hmac-sha256")
    update.replace(f"{name}.", 60, "A", address)
    answer = dns.query.tcp(update, "127.0.0.1", port=knot.port, timeout=5)
    assert answer.rcode() == 0


def test_failures_keep_the_certificate_in_use_and_say_why_in_one_line(reachable_dir):
    with Setup(reachable_dir, '["http-01"]') as setup:
        serial = setup.wait_issued()

        def renew_fails(expected: str) -> None:
            lines_before = setup.log().count("acme: no certificate from")
            done = setup.home.cli("cert", "acme", "renew")
            assert done.returncode == 1, done.stdout + done.stderr
            assert expected in done.stderr, done.stderr
            assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
            assert setup.serial() == serial
            assert presented(setup.port(993))[0].serial_number == serial
            assert setup.log().count("acme: no certificate from") == lines_before + 1
            status = setup.home.cli("cert", "acme", "status")
            assert expected in status.stdout and "next try" in status.stdout
            check = setup.home.cli("check", "--no-live", "--no-dns", "--json")
            failing = [f for f in json.loads(check.stdout)["findings"] if f["check"] == "acme.failing"]
            assert failing and expected in failing[0]["explanation"]

        # A challenge that fails: the hostname's A record points where nothing answers.
        _point(setup.knot, HOSTNAME, "127.0.0.2")
        renew_fails(f"{HOSTNAME}: http-01 failed")
        _point(setup.knot, HOSTNAME, "127.0.0.1")

        # The CA is down.
        setup.pebble.__exit__()
        renew_fails("cannot reach the CA")

        # The CA refuses the names (pebble's block list), on the same address.
        pebble = setup.pebble
        blocked = Pebble(pebble.folder, pebble.dns_address, pebble.http_port, pebble.tls_port)
        blocked.port, blocked.management_port = pebble.port, pebble.management_port
        blocked.blocklist = [ZONE]
        setup.pebble = setup.adopt(blocked)
        renew_fails("the CA refused")
        assert "Traceback" not in setup.log()


def test_renew_and_revoke_from_the_command_line(reachable_dir):
    with Setup(reachable_dir, '["http-01", "tls-alpn-01"]') as setup:
        first = setup.wait_issued()
        # Two operators at once: each command gets its answer.
        import sys

        command = [sys.executable, "-m", "hatoba", "-c", str(setup.home.config_path), "cert", "acme", "renew"]
        both = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for proc in both:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert "installed a certificate" in out or "nothing to do" in out, out
        second = setup.serial()
        assert second != first
        # Served by every worker by the time the command returns.
        for _ in range(4):
            assert presented(setup.port(993))[0].serial_number == second
        done = setup.home.cli("cert", "acme", "revoke")
        assert done.returncode == 0, done.stderr
        assert f"revoked {second:x}" in done.stdout and "installed a certificate" in done.stdout
        third = setup.serial()
        assert third not in (first, second)
        assert_served_everywhere(setup, third)


# -- the listeners' side, with challenges put up by hand ------------------------------------


def s_client(port: int, name: str, alpn: str | None) -> tuple[list[x509.Certificate], str]:
    openssl = require("openssl")
    command = [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name, "-showcerts"]
    if alpn:
        command += ["-alpn", alpn]
    done = subprocess.run(command, input=b"", capture_output=True, timeout=20)
    pems = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", done.stdout, re.S)
    negotiated = re.search(rb"ALPN protocol: (\S+)", done.stdout)
    return [x509.load_pem_x509_certificate(p) for p in pems], negotiated.group(1).decode() if negotiated else ""


@pytest.fixture()
def board_server(tmp_path):
    """A server with ACME on (its CA unreachable: the order fails, backs off, and the listeners stay)."""
    from support.harness import ServerThread

    web = "[listeners.http]\nenabled = true\n[listeners.https]\nenabled = true\n"
    home = make_home(tmp_path / "hatoba", extra_config=web + '[acme]\ndirectory = "https://127.0.0.1:9/dir"\n')
    with ServerThread(home) as server:
        state = home.root / "data" / "acme" / "state.json"
        assert wait_for(lambda: state.exists() and "cannot reach the CA" in state.read_text())
        yield server, home


def test_only_an_acme_tls_client_is_shown_the_challenge_certificate(board_server, tmp_path):
    from cryptography import x509

    from hatoba.acme.challenges import ACME_IDENTIFIER

    server, home = board_server
    board = server.server.acme_board
    port = server.port("https")
    board.put_tls_alpn01(HOSTNAME, "token.thumbprint", tmp_path)
    chain, alpn = s_client(port, HOSTNAME, "acme-tls/1")
    assert alpn == "acme-tls/1" and len(chain) == 1
    assert chain[0].extensions.get_extension_for_oid(x509.ObjectIdentifier(ACME_IDENTIFIER)).critical
    # The validation ends with the handshake: nothing is served on that connection.
    import socket

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_alpn_protocols(["acme-tls/1"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw_socket:
        with context.wrap_socket(raw_socket, server_hostname=HOSTNAME) as tls:
            assert tls.selected_alpn_protocol() == "acme-tls/1"
            try:
                tls.sendall(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.test\r\n\r\n")
                answer = tls.recv(4096)
            except (ssl.SSLError, OSError):
                answer = b""
            assert answer == b""
    ordinary = x509.load_pem_x509_certificate(home.ca_file.read_bytes()).subject
    for name, offered in ((HOSTNAME, "http/1.1"), (HOSTNAME, None), (f"autoconfig.{ZONE}", "acme-tls/1")):
        chain, _ = s_client(port, name, offered)
        assert chain and chain[0].issuer == ordinary, (name, offered)
    # A client that sends a piece of a hello and stops holds nothing up: the others are served.
    import socket

    with socket.create_connection(("127.0.0.1", port)) as stalled:
        stalled.sendall(b"\x16\x03\x01\x02\x00\x01")
        chain, _ = s_client(port, HOSTNAME, "http/1.1")
        assert chain and chain[0].issuer == ordinary
    board.take_down(name=HOSTNAME)
    chain, alpn = s_client(port, HOSTNAME, "acme-tls/1")
    assert chain and chain[0].issuer == ordinary and alpn == ""


def test_http01_answers_are_served_plain_and_nothing_else(board_server):
    from support.scrape import get

    server, _home = board_server
    board = server.server.acme_board
    port = server.port("http")
    board.put_http01("Tok_en-1", "Tok_en-1.thumbprint")
    status, headers, body = get(port, "/.well-known/acme-challenge/Tok_en-1")
    assert status == 200 and body == b"Tok_en-1.thumbprint"
    assert get(port, "/.well-known/acme-challenge/other")[0] == 404
    assert get(port, "/.well-known/acme-challenge/../../etc/passwd")[0] in (400, 404)
    assert get(port, "/.well-known/acme-challenge/Tok_en-1", method="POST")[0] in (404, 405)
    board.take_down(token="Tok_en-1")
    assert get(port, "/.well-known/acme-challenge/Tok_en-1")[0] == 404
