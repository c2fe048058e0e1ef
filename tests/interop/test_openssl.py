"""openssl s_client: STARTTLS on 25/587, implicit TLS on 465, TLS 1.0/1.1 refused."""

import subprocess

import pytest

from support.peers import needs

pytestmark = needs("openssl")


def s_client(port: int, *args: str, stdin: str = "QUIT\n") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-crlf", "-ign_eof", *args],
        input=stdin, capture_output=True, text=True, timeout=30,
    )


@pytest.mark.parametrize("listener,extra", [("smtp", ["-starttls", "smtp"]), ("submission", ["-starttls", "smtp"]),
                                            ("smtps", [])])
def test_tls_verified_with_our_ca(server, hatoba_home, listener, extra):
    r = s_client(server.port(listener), *extra, "-CAfile", str(hatoba_home.ca_file), "-verify_return_error",
                 "-servername", "mail.example.test", "-verify_hostname", "mail.example.test",
                 stdin="EHLO openssl.test\nQUIT\n")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Verify return code: 0 (ok)" in r.stdout
    assert "Protocol  : TLSv1.3" in r.stdout or "TLSv1.3" in r.stdout
    if listener != "smtp":
        assert "250-AUTH PLAIN LOGIN" in r.stdout or "250 AUTH PLAIN LOGIN" in r.stdout
    else:
        assert "AUTH" not in r.stdout.split("---")[-1]


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_old_tls_versions_refused(server, version):
    # SECLEVEL=0 lets this OpenSSL client try the old version at all; the server must still say no.
    r = s_client(server.port("smtps"), version, "-cipher", "DEFAULT@SECLEVEL=0")
    assert r.returncode != 0
    assert "Cipher is (NONE)" in r.stdout or "no protocols available" in r.stderr or "alert" in r.stderr


def test_tls12_accepted(server, hatoba_home):
    r = s_client(server.port("smtps"), "-tls1_2", "-CAfile", str(hatoba_home.ca_file), "-verify_return_error")
    assert r.returncode == 0, r.stderr[-1000:]
    assert "Protocol  : TLSv1.2" in r.stdout
    cipher = [l for l in r.stdout.splitlines() if "Cipher    :" in l][0]
    assert "GCM" in cipher or "CHACHA20" in cipher  # modern AEAD ciphers only
