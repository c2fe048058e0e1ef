"""The https listener (autoconfig, Autodiscover, the MTA-STS policy) and the
plain http listener's redirect, with curl verifying hatoba's own CA and the
names a mail program or a sending server would ask for."""

from __future__ import annotations

import plistlib
import socket
import ssl
import subprocess
import xml.etree.ElementTree as ET

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from support.harness import ServerThread, make_home, wait_for
from support.scrape import get, raw, status_of, wait_healthy

WEB = "[listeners.http]\nenabled = true\n[listeners.https]\nenabled = true\n"
DOMAIN = "example.test"
AUTODISCOVER_NS = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"
REQUEST = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">'
    "<Request><EMailAddress>{address}</EMailAddress>"
    "<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
    "</AcceptableResponseSchema></Request></Autodiscover>"
)


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    home = make_home(tmp_path_factory.mktemp("web") / "hatoba", extra_config=WEB)
    with ServerThread(home) as server:
        yield server, home


def curl(home, port: int, name: str, path: str, *extra: str) -> tuple[int, str, bytes]:
    """(status, content type, body) from curl over https to `name`, verifying the certificate."""
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--cacert", str(home.ca_file),
         "--resolve", f"{name}:{port}:127.0.0.1", "-o", "-", "-w", "\n%{http_code} %{content_type}",
         *extra, f"https://{name}:{port}{path}"],
        capture_output=True, timeout=20,
    )
    assert done.returncode == 0, done.stderr.decode()
    body, _, tail = done.stdout.rpartition(b"\n")
    status, _, kind = tail.decode().partition(" ")
    return int(status), kind, body


def listener_ports(server) -> dict[str, int]:
    return {name: server.port(name) for name in ("smtps", "submission", "imaps", "imap", "pop3s", "pop3")}


# -- Thunderbird autoconfig -----------------------------------------------------------


def test_thunderbird_autoconfig_lists_the_enabled_ports_implicit_tls_first(web):
    server, home = web
    status, kind, body = curl(home, server.port("https"), f"autoconfig.{DOMAIN}", "/mail/config-v1.1.xml")
    assert status == 200 and kind.startswith("application/xml")
    root = ET.fromstring(body)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    provider = root.find("emailProvider")
    assert provider is not None and provider.get("id") == DOMAIN and provider.findtext("domain") == DOMAIN
    ports = listener_ports(server)
    incoming = [(s.get("type"), int(s.findtext("port")), s.findtext("socketType")) for s in provider.iter("incomingServer")]
    assert incoming == [("imap", ports["imaps"], "SSL"), ("imap", ports["imap"], "STARTTLS"),
                        ("pop3", ports["pop3s"], "SSL"), ("pop3", ports["pop3"], "STARTTLS")]
    outgoing = [(s.get("type"), int(s.findtext("port")), s.findtext("socketType")) for s in provider.iter("outgoingServer")]
    assert outgoing == [("smtp", ports["smtps"], "SSL"), ("smtp", ports["submission"], "STARTTLS")]
    for entry in [*provider.iter("incomingServer"), *provider.iter("outgoingServer")]:
        # Values Thunderbird's config file format knows; the login is the whole address.
        assert entry.findtext("hostname") == "mail.example.test"
        assert entry.findtext("authentication") == "password-cleartext"
        assert entry.findtext("username") == "%EMAILADDRESS%"
    assert str(server.port("smtp")) not in {e.findtext("port") for e in provider.iter("outgoingServer")}


def test_the_well_known_path_answers_for_any_host_by_the_address_asked(web):
    server, home = web
    port = server.port("https")
    status, _, body = curl(home, port, "mail.example.test",
                           f"/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice%40{DOMAIN}")
    assert status == 200 and ET.fromstring(body).find("emailProvider").get("id") == DOMAIN
    assert curl(home, port, "mail.example.test",
                "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=x%40elsewhere.example")[0] == 404
    assert curl(home, port, "mail.example.test", "/mail/config-v1.1.xml")[0] == 404  # no domain named


# -- Outlook Autodiscover ---------------------------------------------------------------


def test_autodiscover_answers_a_local_address_with_the_enabled_ports(web):
    server, home = web
    port = server.port("https")
    for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"):
        status, kind, body = curl(home, port, "mail.example.test", path, "-X", "POST", "-H",
                                  "Content-Type: text/xml", "--data-binary", REQUEST.format(address=f"alice@{DOMAIN}"))
        assert status == 200 and kind.startswith("text/xml"), body
        account = ET.fromstring(body).find(f"{AUTODISCOVER_NS}Response/{AUTODISCOVER_NS}Account")
        assert account.findtext(f"{AUTODISCOVER_NS}AccountType") == "email"
        assert account.findtext(f"{AUTODISCOVER_NS}Action") == "settings"
        found = [(p.findtext(f"{AUTODISCOVER_NS}Type"), int(p.findtext(f"{AUTODISCOVER_NS}Port")),
                  p.findtext(f"{AUTODISCOVER_NS}Encryption"), p.findtext(f"{AUTODISCOVER_NS}LoginName"))
                 for p in account.iter(f"{AUTODISCOVER_NS}Protocol")]
        ports = listener_ports(server)
        login = f"alice@{DOMAIN}"
        assert found == [("IMAP", ports["imaps"], "SSL", login), ("IMAP", ports["imap"], "TLS", login),
                         ("POP3", ports["pop3s"], "SSL", login), ("POP3", ports["pop3"], "TLS", login),
                         ("SMTP", ports["smtps"], "SSL", login), ("SMTP", ports["submission"], "TLS", login)]


@pytest.mark.parametrize("body, status", [
    (REQUEST.format(address="bob@elsewhere.example"), 404),
    (REQUEST.format(address="not an address"), 400),
    ("<Autodiscover/>", 400),
    ('<!DOCTYPE a [<!ENTITY b "' + "c" * 100 + '">]><EMailAddress>&b;</EMailAddress>', 400),
    ("x" * 20_000, 413),
])
def test_autodiscover_refuses_what_it_cannot_answer(web, body, status):
    server, home = web
    got, _, text = curl(home, server.port("https"), "mail.example.test", "/autodiscover/autodiscover.xml",
                        "-X", "POST", "--data-binary", body)
    assert got == status, text
    assert curl(home, server.port("https"), "mail.example.test", "/autodiscover/autodiscover.xml")[0] == 405


# -- MTA-STS ---------------------------------------------------------------------------------


def test_mta_sts_policy_is_served_for_mta_sts_host_only(web):
    server, home = web
    port = server.port("https")
    status, kind, body = curl(home, port, f"mta-sts.{DOMAIN}", "/.well-known/mta-sts.txt")
    assert status == 200 and kind.startswith("text/plain")
    assert body.decode().splitlines() == ["version: STSv1", "mode: testing", "mx: mail.example.test",
                                          "max_age: 604800"]
    assert body.endswith(b"\r\n")
    head = subprocess.run(["curl", "-sS", "-I", "--cacert", str(home.ca_file), "--resolve",
                           f"mta-sts.{DOMAIN}:{port}:127.0.0.1", f"https://mta-sts.{DOMAIN}:{port}/.well-known/mta-sts.txt"],
                          capture_output=True, timeout=20).stdout.decode().lower()
    assert "strict-transport-security: max-age=31536000" in head  # https only, as testssl.sh asks
    assert "strict-transport-security" not in raw(server.port("http"), b"GET / HTTP/1.1\r\nHost: mail.example.test\r\n\r\n").decode().lower()
    assert curl(home, port, "mail.example.test", "/.well-known/mta-sts.txt")[0] == 404
    assert curl(home, port, "mta-sts.elsewhere.example", "/.well-known/mta-sts.txt", "-k")[0] == 404


def test_the_certificate_names_the_web_names_of_the_domain(web):
    server, home = web
    for name in (f"autoconfig.{DOMAIN}", f"mta-sts.{DOMAIN}", "mail.example.test"):
        with socket.create_connection(("127.0.0.1", server.port("https")), timeout=10) as sock:
            with home.client_context().wrap_socket(sock, server_hostname=name) as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")


# -- plain http -----------------------------------------------------------------------------


def test_plain_http_only_redirects_names_we_serve_to_https(web):
    server, _ = web
    port, https = server.port("http"), server.port("https")
    for host in ("mail.example.test", f"autoconfig.{DOMAIN}", f"MTA-STS.{DOMAIN}."):
        answer = raw(port, f"GET /mail/config-v1.1.xml?emailaddress=a%40{DOMAIN} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        assert status_of(answer) == 301, answer
        name = host.lower().rstrip(".")
        assert f"\r\nLocation: https://{name}:{https}/mail/config-v1.1.xml?emailaddress=a%40{DOMAIN}\r\n".encode() in answer
    for host in ("evil.example", "autoconfig.elsewhere.example", "127.0.0.1"):
        assert status_of(raw(port, f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())) == 404, host
    assert status_of(raw(port, b"GET /../../etc/passwd HTTP/1.1\r\nHost: evil.example\r\n\r\n")) == 404
    wait_healthy(port)  # monitoring stays on http, for loopback
    assert get(port, "/metrics")[0] == 200


def test_bad_input_on_https_gets_a_4xx_and_the_server_stays_up(web):
    server, home = web
    port = server.port("https")
    ctx = home.client_context()
    for data in (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Long: header line\r\n" * 5000,
                 b"\x00\xff garbage\r\n\r\n",
                 b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            with ctx.wrap_socket(sock, server_hostname="mail.example.test") as tls:
                try:
                    tls.sendall(data)
                except OSError:
                    pass
                answer = b""
                try:
                    while chunk := tls.recv(65536):
                        answer += chunk
                except (OSError, ssl.SSLError):
                    pass
        assert 400 <= status_of(answer) < 500, answer[:200]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # not TLS at all
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(10)
        try:
            sock.recv(100)
        except OSError:
            pass
    assert curl(home, port, f"mta-sts.{DOMAIN}", "/.well-known/mta-sts.txt")[0] == 200


# -- Apple configuration profile ----------------------------------------------------------


def test_apple_profile_is_signed_by_the_server_and_sets_up_the_account(web, tmp_path):
    server, home = web
    port = server.port("https")
    status, kind, body = curl(home, port, "mail.example.test", f"/apple/mail.mobileconfig?emailaddress=alice%40{DOMAIN}")
    assert status == 200 and kind == "application/x-apple-aspen-config"
    signed = tmp_path / "profile.der"
    signed.write_bytes(body)
    verified = subprocess.run(
        ["openssl", "smime", "-verify", "-inform", "DER", "-in", str(signed), "-CAfile", str(home.ca_file),
         "-purpose", "any"], capture_output=True, timeout=20)
    assert verified.returncode == 0, verified.stderr.decode()
    assert b"Verification successful" in verified.stderr
    document = plistlib.loads(verified.stdout)  # the signed content, as plutil would read it
    assert document["PayloadType"] == "Configuration" and document["PayloadVersion"] == 1
    [mail] = document["PayloadContent"]
    assert mail["PayloadType"] == "com.apple.mail.managed"
    assert mail["EmailAccountType"] == "EmailTypeIMAP" and mail["EmailAddress"] == f"alice@{DOMAIN}"
    assert (mail["IncomingMailServerPortNumber"], mail["OutgoingMailServerPortNumber"]) == (
        server.port("imaps"), server.port("smtps"))  # implicit TLS first
    assert mail["IncomingMailServerUseSSL"] is True and mail["OutgoingMailServerUseSSL"] is True
    assert mail["IncomingMailServerUsername"] == f"alice@{DOMAIN}"
    uuids = {document["PayloadUUID"], mail["PayloadUUID"]}
    again = curl(home, port, "mail.example.test", f"/apple/mail.mobileconfig?emailaddress=ALICE%40{DOMAIN}")[2]
    signed.write_bytes(again)
    reread = plistlib.loads(subprocess.run(
        ["openssl", "smime", "-verify", "-inform", "DER", "-in", str(signed), "-noverify"],
        capture_output=True, timeout=20).stdout)
    assert {reread["PayloadUUID"], reread["PayloadContent"][0]["PayloadUUID"]} == uuids  # replaces, not adds
    tampered = bytearray(body)
    at = bytes(body).index(b"EmailTypeIMAP")
    tampered[at:at + 13] = b"EmailTypePOPX"
    signed.write_bytes(bytes(tampered))
    refused = subprocess.run(
        ["openssl", "smime", "-verify", "-inform", "DER", "-in", str(signed), "-CAfile", str(home.ca_file),
         "-purpose", "any"], capture_output=True, timeout=20)
    assert refused.returncode != 0
    assert curl(home, port, "mail.example.test", "/apple/mail.mobileconfig?emailaddress=x%40elsewhere.example")[0] == 404
    assert curl(home, port, "mail.example.test", "/apple/mail.mobileconfig")[0] == 400


# -- the private CA's CRL -------------------------------------------------------------------


def test_certificates_name_the_crl_the_http_listener_serves_and_revoke_updates_it(web, tmp_path):
    server, home = web
    cert = x509.load_pem_x509_certificates((home.root / "tls" / "server.crt").read_bytes())[0]
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert days <= 398  # testssl.sh's limit for any CA
    [point] = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    url = point.full_name[0].value
    assert url == "http://mail.example.test/crl/ca.crl"  # port 80: this home has no port offset
    port = server.port("http")

    def fetch_crl() -> x509.CertificateRevocationList:
        status, headers, body = get(port, "/crl/ca.crl")
        assert status == 200 and headers["content-type"] == "application/pkix-crl"
        (tmp_path / "ca.crl").write_bytes(body)
        checked = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(tmp_path / "ca.crl"), "-noout",
                                  "-CAfile", str(home.ca_file)], capture_output=True, timeout=20)
        assert checked.returncode == 0 and b"verify OK" in checked.stdout + checked.stderr, checked.stderr
        return x509.load_der_x509_crl(body)

    assert fetch_crl().get_revoked_certificate_by_serial_number(cert.serial_number) is None
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem_crl = tmp_path / "ca.crl.pem"

    def openssl_verify() -> subprocess.CompletedProcess[bytes]:
        pem_crl.write_bytes(fetch_crl().public_bytes(serialization.Encoding.PEM))
        return subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", str(home.ca_file),
                               "-CRLfile", str(pem_crl), str(leaf)], capture_output=True, timeout=20)

    assert openssl_verify().returncode == 0
    done = home.cli("cert", "revoke", str(leaf))
    assert done.returncode == 0 and "revoked" in done.stdout, done.stderr
    assert home.cli("cert", "revoke", f"{cert.serial_number:x}").stdout.endswith("revoked already\n")
    assert fetch_crl().get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    refused = openssl_verify()
    assert refused.returncode != 0 and b"revoked" in refused.stdout + refused.stderr
    bad = home.cli("cert", "revoke", "not-hex-and-no-file")
    assert bad.returncode == 1 and "neither a file nor a serial" in bad.stderr


def test_a_certificate_of_hatobas_ca_past_two_thirds_of_its_life_is_renewed_and_served(tmp_path):
    import datetime

    from hatoba.pki.ca import issue_leaf, load_certs, write_cert_chain
    from hatoba.pki.keyfiles import read_signing_key

    home = make_home(tmp_path / "hatoba", extra_config=WEB)
    tls = home.root / "tls"
    ca_cert = load_certs(tls / "ca.crt")[0]
    old = load_certs(tls / "server.crt")[0]
    names = old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    aged = issue_leaf(read_signing_key(tls / "ca.key"), ca_cert, old.public_key(), old.subject, list(names), 30,
                      now=datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=21))
    (tls / "server.crt").unlink()
    write_cert_chain(tls / "server.crt", [aged, ca_cert])
    with ServerThread(home) as server:
        assert wait_for(lambda: load_certs(tls / "server.crt")[0].serial_number != aged.serial_number, 10)
        fresh = load_certs(tls / "server.crt")[0]
        assert fresh.public_key() == aged.public_key()  # the key is kept: a TLSA record stays valid
        assert (fresh.not_valid_after_utc - fresh.not_valid_before_utc).days >= 396
        assert fresh.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == names

        def served_serial() -> int:
            with socket.create_connection(("127.0.0.1", server.port("imaps")), timeout=10) as sock:
                with home.client_context().wrap_socket(sock, server_hostname="mail.example.test") as conn:
                    return x509.load_der_x509_certificate(conn.getpeercert(binary_form=True)).serial_number

        assert wait_for(lambda: served_serial() == fresh.serial_number, 10)


@pytest.mark.parametrize("target", [b"@evil.example/://", b".evil.example/://", b"x:://evil.example", b"*",
                                    b"http:evil.example/://", b"mail.example.test:443"])
def test_no_request_target_can_steer_the_redirect_elsewhere(web, target):
    server, _ = web
    for method in (b"GET", b"OPTIONS", b"CONNECT"):
        answer = raw(server.port("http"), method + b" " + target + b" HTTP/1.1\r\nHost: mail.example.test\r\n\r\n")
        assert status_of(answer) == 400, answer[:300]
        assert b"Location" not in answer
    ok = raw(server.port("http"), b"GET https://elsewhere.example/x?y=1 HTTP/1.1\r\nHost: mail.example.test\r\n\r\n")
    assert b"\r\nLocation: https://mail.example.test:" in ok and b"/x?y=1\r\n" in ok  # absolute-form: its path only


def test_a_head_sent_at_once_is_bounded_too(web):
    server, _ = web
    port = server.port("http")
    assert status_of(raw(port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: mail.example.test\r\n\r\n")) == 414
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 60) for i in range(200))  # ~14 KiB, one read
    assert status_of(raw(port, b"GET / HTTP/1.1\r\nHost: mail.example.test\r\n" + headers + b"\r\n")) == 431


def test_expect_100_continue_is_answered_before_the_body(web):
    server, home = web
    with socket.create_connection(("127.0.0.1", server.port("https")), timeout=10) as sock:
        with home.client_context().wrap_socket(sock, server_hostname="mail.example.test") as tls:
            body = REQUEST.format(address=f"alice@{DOMAIN}").encode()
            tls.sendall(b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: mail.example.test\r\n"
                        b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
            assert tls.recv(100).startswith(b"HTTP/1.1 100 ")
            tls.sendall(body)
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    assert status_of(answer) == 200


def test_profiles_are_refused_for_addresses_with_hidden_or_quoted_text(web):
    server, home = web
    port = server.port("https")
    for asked in ("%E2%80%AEalice%40example.test", "%22%3C%2Fstring%3E%22%40example.test", "a%01b%40example.test"):
        assert curl(home, port, "mail.example.test", f"/apple/mail.mobileconfig?emailaddress={asked}")[0] == 400, asked
