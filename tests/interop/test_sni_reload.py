"""Per-domain certificates by SNI, seen by `openssl s_client -servername`, and
certificates reloaded on SIGHUP while a connection stays open."""

from __future__ import annotations

import imaplib
import os
import signal
import subprocess
from pathlib import Path

import pytest

from hatoba.pki.ca import cert_to_pem, create_ca, issue_server_cert, load_certs
from hatoba.pki.keys import key_to_pem, load_private_key
from support.harness import ServerProcess, _merge_config, free_port_offset, make_home, wait_for
from support.peers import needs

pytestmark = [
    pytest.mark.interop,
    needs("openssl"),
]


def served_certificate(port: int, server_name: str) -> str:
    """subject and SHA-256 fingerprint of the certificate the server shows for `server_name`."""
    shown = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", server_name],
        input="", capture_output=True, text=True, timeout=20,
    ).stdout
    pem = shown[shown.index("-----BEGIN CERTIFICATE-----"): shown.index("-----END CERTIFICATE-----") + 25]
    details = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-fingerprint", "-sha256"],
        input=pem, capture_output=True, text=True, timeout=20, check=True,
    ).stdout
    return details


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_suffix(".new")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    os.replace(tmp, path)


@pytest.fixture
def home(tmp_path):
    home = make_home(tmp_path / "hatoba", port_offset=free_port_offset())
    # A second domain with its own CA and certificate, chosen by SNI.
    org_ca_key, org_ca = create_ca("example.org CA")
    org_key, org_cert = issue_server_cert(org_ca_key, org_ca, "mail.example.org")
    tls = home.root / "tls"
    (tls / "org.crt").write_bytes(cert_to_pem(org_cert) + cert_to_pem(org_ca))
    (tls / "org.key").write_bytes(key_to_pem(org_key))
    (tls / "org.key").chmod(0o600)
    _merge_config(home.config_path, '[tls.domains."example.org"]\ncert = "tls/org.crt"\nkey = "tls/org.key"\n')
    return home


def test_sni_picks_the_domain_certificate_and_sighup_reloads_without_dropping(home):
    offset = int(home.config().listeners["smtp"].port) - 25
    with ServerProcess(home, offset) as server:
        imaps = server.port(993)
        assert "CN = mail.example.org" in served_certificate(imaps, "mail.example.org")
        before = served_certificate(imaps, "mail.example.test")
        assert "CN = mail.example.test" in before

        # A client logged in before the reload...
        kept = imaplib.IMAP4_SSL("127.0.0.1", imaps, ssl_context=home.client_context())
        kept.login("alice@example.test", "alice-password-1")
        kept.select("INBOX")

        # ...the certificate is renewed on disk (same name, new key), then SIGHUP.
        tls = home.root / "tls"
        ca_key = load_private_key(tls / "ca.key")
        (ca_cert,) = load_certs(tls / "ca.crt")
        key, cert = issue_server_cert(ca_key, ca_cert, "mail.example.test")
        write_atomically(tls / "server.key", key_to_pem(key), 0o600)
        write_atomically(tls / "server.crt", cert_to_pem(cert) + cert_to_pem(ca_cert), 0o644)
        server.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "certificates reloaded" in server.log_path.read_text(), 10)

        after = served_certificate(imaps, "mail.example.test")
        assert "CN = mail.example.test" in after and after != before
        assert "CN = mail.example.org" in served_certificate(imaps, "mail.example.org")
        assert kept.noop()[0] == "OK"  # the old connection is still up
        kept.logout()

        # A broken renewal is refused and the working certificate stays.
        (tls / "server.crt").write_text("not a certificate\n")
        server.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "certificate reload failed" in server.log_path.read_text(), 10)
        assert served_certificate(imaps, "mail.example.test") == after
        assert server.proc.poll() is None
