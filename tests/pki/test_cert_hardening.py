"""`hatoba cert` on hostile or stale input: requests with names a CA must not certify, weak
and expired certificates, out-of-range lifetimes, and passphrases typed at a terminal.

The fixtures (a root, an intermediate and a server certificate) are those of test_cert_cli.
"""

from __future__ import annotations

import datetime
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from support.peers import needs
from test_cert_cli import HOST, Pki, hatoba, ok, openssl, pki, refused  # noqa: F401 (fixtures)

from hatoba.pki.ca import issue_leaf, issue_sub_ca, self_signed_ca
from hatoba.pki.csr import common_name, subject_names
from hatoba.pki.keyfiles import new_key, read_signing_key, write_key

pytestmark = needs("openssl")

NOW = datetime.datetime.now(datetime.timezone.utc)


def _csr(path: Path, key_path: Path, subject: x509.Name, names: list[x509.GeneralName]) -> Path:
    key = read_signing_key(key_path)
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    path.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(Encoding.PEM))
    return path


def _sign(pki: Pki, hatoba, csr: Path, out: Path):
    return hatoba("cert", "ca-sign", "--ca-cert", pki.inter, "--ca-key", pki.inter_key, "--csr", csr, out)


def _pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certs))
    return path


def _inter(pki: Pki):
    return read_signing_key(pki.inter_key), x509.load_pem_x509_certificate(pki.inter.read_bytes())


# -- 1. ca-sign --csr checks the request's names and keeps only a CN ----------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        (x509.DNSName("*"), "'*'"),
        (x509.DNSName("*.com"), "a wildcard needs at least two labels"),
        (x509.DNSName("bad_name.example"), "neither an IP address nor a valid DNS name"),
        (x509.UniformResourceIdentifier("https://evil.example/"), "only DNS names and IP addresses"),
        (x509.RFC822Name("root@evil.example"), "only DNS names and IP addresses"),
    ],
)
def test_ca_sign_refuses_request_names_that_are_not_host_names(pki: Pki, hatoba, name, words) -> None:
    csr = _csr(pki.dir / "evil.csr", pki.leaf_key, common_name(HOST), [x509.DNSName(HOST), name])
    message = refused(_sign(pki, hatoba, csr, pki.dir / "evil.crt"))
    assert words in message and str(csr) in message
    assert not (pki.dir / "evil.crt").exists()


def test_ca_sign_subject_is_the_common_name_only(pki: Pki, hatoba) -> None:
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bank of Somewhere"),
        x509.NameAttribute(NameOID.COMMON_NAME, HOST),
    ])
    csr = _csr(pki.dir / "o.csr", pki.leaf_key, subject, [x509.DNSName(HOST)])
    ok(_sign(pki, hatoba, csr, pki.dir / "o.crt"))
    cert = x509.load_pem_x509_certificate((pki.dir / "o.crt").read_bytes())
    assert cert.subject.rfc4514_string() == f"CN={HOST}"
    # No CN in the request: the first SAN becomes it.
    csr = _csr(pki.dir / "n.csr", pki.leaf_key, x509.Name([]), [x509.DNSName("smtp.example.test"), x509.DNSName(HOST)])
    ok(_sign(pki, hatoba, csr, pki.dir / "n.crt"))
    cert = x509.load_pem_x509_certificate((pki.dir / "n.crt").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=smtp.example.test"


# -- 2. and 12. verify judges the strength of every certificate and names SHA-1 -------------------


def test_verify_fails_a_weak_rsa_1024_leaf(pki: Pki, hatoba) -> None:
    ca_key, ca_cert = _inter(pki)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    leaf = issue_leaf(ca_key, ca_cert, weak.public_key(), common_name(HOST), subject_names(HOST, []), days=30)
    path = _pem(pki.dir / "weak.crt", leaf, ca_cert)
    result = hatoba("cert", "verify", path, "--ca-file", pki.root)
    assert result.code == 1
    assert f"FAIL strength of CN={HOST}: RSA 1024 bits" in result.out
    assert "ok   strength of CN=Test Intermediate: ECDSA P-256" in result.out


def _sha1_leaf(pki: Pki) -> Path:
    """A server certificate the intermediate signed with SHA-1 (only OpenSSL still makes those)."""
    csr, ext, crt = pki.dir / "sha1.csr", pki.dir / "sha1.ext", pki.dir / "sha1.crt"
    openssl("req", "-new", "-key", pki.leaf_key, "-subj", f"/CN={HOST}", "-out", csr, check=True)
    ext.write_text(f"basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:{HOST}\n")
    made = openssl("x509", "-req", "-in", csr, "-CA", pki.inter, "-CAkey", pki.inter_key, "-sha1", "-days", "30",
                   "-extfile", ext, "-out", crt)
    if made.returncode != 0:
        pytest.skip("this OpenSSL refuses to sign with SHA-1")
    return crt


def test_verify_names_a_sha1_signature_instead_of_blaming_the_key(pki: Pki, hatoba) -> None:
    crt = _sha1_leaf(pki)
    chain = pki.dir / "sha1chain.crt"
    chain.write_bytes(crt.read_bytes() + pki.inter.read_bytes())
    result = hatoba("cert", "verify", chain, "--ca-file", pki.root)
    assert result.code == 1
    order = next(line for line in result.out.splitlines() if "chain order" in line)
    assert "SHA-1" in order and "another key" not in order
    assert f"FAIL strength of CN={HOST}:" in result.out and "SHA-1" in result.out.split("strength of", 1)[1]


def test_verify_advice_fits_the_problem(pki: Pki, hatoba) -> None:
    # Leaf and root, intermediate missing, root given with --ca-file: the advice is the intermediate.
    gap = pki.dir / "gap.crt"
    gap.write_bytes(pki.leaf.read_bytes() + pki.root.read_bytes())
    result = hatoba("cert", "verify", gap, "--ca-file", pki.root)
    trust = next(line for line in result.out.splitlines() if line.startswith("FAIL trust"))
    assert "give it with --ca-file" not in trust and "intermediate" in trust
    # An expired leaf with its whole chain: renew it, nothing is missing.
    ca_key, ca_cert = _inter(pki)
    key = read_signing_key(pki.leaf_key)
    old = issue_leaf(ca_key, ca_cert, key.public_key(), common_name(HOST), subject_names(HOST, []), days=30,
                     now=NOW - datetime.timedelta(days=400))
    result = hatoba("cert", "verify", _pem(pki.dir / "old.crt", old, ca_cert), "--ca-file", pki.root)
    trust = next(line for line in result.out.splitlines() if line.startswith("FAIL trust"))
    assert "intermediate" not in trust and "renew" in trust


# -- 4. import prefers current certificates, warns about stale ones, refuses weak keys -------------


def test_import_prefers_the_current_certificates(pki: Pki, hatoba) -> None:
    ca_key, ca_cert = _inter(pki)
    root_key = read_signing_key(pki.root_key)
    root = x509.load_pem_x509_certificate(pki.root.read_bytes())
    key = read_signing_key(pki.leaf_key)
    past = NOW - datetime.timedelta(days=400)
    old_leaf = issue_leaf(ca_key, ca_cert, key.public_key(), common_name(HOST), subject_names(HOST, []), days=30, now=past)
    old_inter = issue_sub_ca(root_key, root, ca_key.public_key(), ca_cert.subject, days=30, now=past)
    new_leaf = x509.load_pem_x509_certificate(pki.leaf.read_bytes())
    combined = _pem(pki.dir / "mixed.pem", old_leaf, old_inter, new_leaf, ca_cert, root)
    combined.write_bytes(combined.read_bytes() + pki.leaf_key.read_bytes())
    out = ok(hatoba("cert", "import", combined, "--out-dir", pki.dir / "imp"))
    chain = x509.load_pem_x509_certificates((pki.dir / "imp/server.crt").read_bytes())
    assert chain == [new_leaf, ca_cert]
    assert "left out" in out

    # Only an expired server certificate: imported, with a warning on stderr.
    stale = _pem(pki.dir / "stale.pem", old_leaf, ca_cert)
    stale.write_bytes(stale.read_bytes() + pki.leaf_key.read_bytes())
    result = hatoba("cert", "import", stale, "--out-dir", pki.dir / "imp2")
    assert result.code == 0
    assert "warning:" in result.err and "expired" in result.err


def test_import_refuses_a_weak_key(pki: Pki, hatoba) -> None:
    ca_key, ca_cert = _inter(pki)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    write_key(pki.dir / "weak.key", weak)
    leaf = issue_leaf(ca_key, ca_cert, weak.public_key(), common_name(HOST), subject_names(HOST, []), days=30)
    combined = _pem(pki.dir / "weak.pem", leaf, ca_cert)
    combined.write_bytes(combined.read_bytes() + (pki.dir / "weak.key").read_bytes())
    assert "1024 bits" in refused(hatoba("cert", "import", combined, "--out-dir", pki.dir / "w"))
    assert not (pki.dir / "w").exists()


# -- 5. and 6. expired CAs and lifetimes out of range ----------------------------------------------


def test_ca_sign_refuses_an_expired_ca(tmp_path: Path, hatoba) -> None:
    key = new_key()
    ca = self_signed_ca(key, common_name("Old CA"), days=10, path_length=None, now=NOW - datetime.timedelta(days=100))
    write_key(tmp_path / "ca.key", key)
    _pem(tmp_path / "ca.crt", ca)
    ok(hatoba("cert", "key", tmp_path / "s.key"))
    for extra in ((), ("--intermediate",)):
        message = refused(hatoba("cert", "ca-sign", "--ca-cert", tmp_path / "ca.crt", "--ca-key", tmp_path / "ca.key",
                                 "--cn", HOST, "--key", tmp_path / "s.key", *extra, tmp_path / "s.crt"))
        assert "expired" in message
    assert not (tmp_path / "s.crt").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("ca-init", "{d}/ca", "--days", "99999999"),
        ("ca-init", "{d}/ca", "--days", "36501"),
        ("selfsign", "--key", "{d}/k.key", "--cn", HOST, "--days", "99999999", "{d}/s.crt"),
        ("ca-sign", "--ca-cert", "{d}/ca0/ca.crt", "--ca-key", "{d}/ca0/ca.key", "--cn", "Sub", "--key", "{d}/k.key",
         "--intermediate", "--days", "99999999", "{d}/sub.crt"),
    ],
)
def test_days_out_of_range_are_one_line_errors(tmp_path: Path, hatoba, args) -> None:
    ok(hatoba("cert", "key", tmp_path / "k.key"))
    ok(hatoba("cert", "ca-init", tmp_path / "ca0"))
    message = refused(hatoba("cert", *(a.format(d=tmp_path) for a in args)))
    assert "--days" in message and "at most" in message


# -- 9. a passphrase typed at a terminal: no echo, asked twice for a new key ----------------------


def _on_terminal(args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run `hatoba ARGS` with a pseudo-terminal as stdin/stdout/stderr; type an answer after each prompt."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hatoba", *args], stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
    )
    os.close(slave)
    seen, typed = b"", 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the program ended and closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        # Type only once the prompt is out: turning echo off flushes what was typed before.
        if typed < len(answers) and seen.lower().count(b"passphrase") > typed and seen.rstrip().endswith(b":"):
            time.sleep(0.2)
            os.write(master, answers[typed].encode() + b"\n")
            typed += 1
        elif not ready and proc.poll() is not None:
            break
    if proc.poll() is None:
        proc.kill()
    code = proc.wait(10)
    os.close(master)
    return code, seen.decode("utf-8", "replace")


def test_passphrase_on_a_terminal_is_hidden_and_confirmed(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    code, screen = _on_terminal(["cert", "key", str(key), "--passphrase-stdin"], ["sesame-7", "sesame-7"])
    assert code == 0, screen
    assert "sesame-7" not in screen  # not echoed
    assert "ENCRYPTED PRIVATE KEY" in key.read_text()
    mismatch = tmp_path / "m.key"
    code, screen = _on_terminal(["cert", "key", str(mismatch), "--passphrase-stdin"], ["sesame-7", "sesame-8"])
    assert code == 1 and "do not match" in screen
    assert not mismatch.exists()
