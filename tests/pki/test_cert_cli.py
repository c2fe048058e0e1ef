"""`hatoba cert ...` run in-process, every result judged by OpenSSL's own tools as well.

OpenSSL is the reference: what it accepts, mail servers and clients built
on it accept; what it refuses, they refuse.
"""

from __future__ import annotations

import datetime
import io
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from support.peers import needs

from hatoba.cli.main import main
from hatoba.pki.ca import create_ca, issue_leaf
from hatoba.pki.csr import common_name, subject_names
from hatoba.pki.keyfiles import read_signing_key
from hatoba.pki.keys import write_private_key

pytestmark = needs("openssl")

HOST = "mail.example.test"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def hatoba(capsys, monkeypatch):
    """Run `hatoba ARGS` in-process; `stdin` is what the command reads from standard input."""

    def run(*args: str | Path, stdin: str = "") -> Result:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def openssl(*args: str | Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def x509_text(path: Path) -> str:
    return openssl("x509", "-noout", "-text", "-in", path, check=True).stdout


def ok(result: Result) -> str:
    assert result.code == 0, result.err
    assert result.err == ""
    return result.out


def refused(result: Result) -> str:
    """The one-line message of a refused command."""
    assert result.code == 1, result.out
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hatoba: "), result.err
    assert "Traceback" not in result.err
    return lines[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@dataclass
class Pki:
    """A root CA, an intermediate made by it and a server certificate made by the intermediate."""

    dir: Path
    root: Path
    root_key: Path
    inter: Path
    inter_key: Path
    leaf: Path
    leaf_key: Path
    chain: Path  # leaf, intermediate, root


@pytest.fixture
def pki(tmp_path: Path, hatoba) -> Pki:
    d = tmp_path
    ok(hatoba("cert", "ca-init", d / "ca", "--cn", "Test Root", "--curve", "P-384"))
    ok(hatoba("cert", "key", d / "inter.key"))
    ok(
        hatoba(
            "cert", "ca-sign", "--ca-cert", d / "ca/ca.crt", "--ca-key", d / "ca/ca.key",
            "--cn", "Test Intermediate", "--key", d / "inter.key", "--intermediate", d / "inter.crt",
            "--chain-out", d / "inter-chain.crt",
        )
    )
    ok(hatoba("cert", "key", d / "leaf.key", "--type", "rsa", "--bits", "2048"))
    ok(hatoba("cert", "csr", "--key", d / "leaf.key", "--cn", HOST, "--san", "127.0.0.1", d / "leaf.csr"))
    ok(
        hatoba(
            "cert", "ca-sign", "--ca-cert", d / "inter-chain.crt", "--ca-key", d / "inter.key",
            "--csr", d / "leaf.csr", d / "leaf.crt", "--chain-out", d / "chain.crt",
        )
    )
    return Pki(d, d / "ca/ca.crt", d / "ca/ca.key", d / "inter.crt", d / "inter.key", d / "leaf.crt", d / "leaf.key", d / "chain.crt")


# -- keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "openssl_says"),
    [
        ((), "ASN1 OID: prime256v1"),
        (("--type", "ecdsa", "--curve", "P-384"), "ASN1 OID: secp384r1"),
        (("--type", "rsa", "--bits", "2048"), "Private-Key: (2048 bit"),
        (("--type", "rsa"), "Private-Key: (3072 bit"),
    ],
)
def test_key_types_are_0600_and_read_by_openssl(tmp_path: Path, hatoba, flags, openssl_says) -> None:
    key = tmp_path / "a.key"
    old = os.umask(0)
    try:
        out = ok(hatoba("cert", "key", key, *flags))
    finally:
        os.umask(old)
    assert mode(key) == 0o600
    assert f"wrote {key}" in out
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----\n")
    assert openssl_says in openssl("pkey", "-in", key, "-noout", "-text", check=True).stdout


def test_key_is_never_overwritten(tmp_path: Path, hatoba) -> None:
    key = tmp_path / "a.key"
    ok(hatoba("cert", "key", key))
    before = key.read_bytes()
    assert "already exists" in refused(hatoba("cert", "key", key, "--type", "rsa", "--bits", "2048"))
    assert key.read_bytes() == before


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (("--type", "rsa", "--bits", "1024"), "1024 bits are too weak"),
        (("--type", "rsa", "--bits", "5000"), "use --bits 2048, 3072 or 4096"),
        (("--type", "ecdsa", "--curve", "P-192"), "use --curve P-256 or P-384"),
        (("--type", "dsa"), "use --type ecdsa or --type rsa"),
        (("--bits", "2048"), "--bits is for RSA keys"),
    ],
)
def test_weak_or_unknown_keys_are_refused(tmp_path: Path, hatoba, flags, words) -> None:
    assert words in refused(hatoba("cert", "key", tmp_path / "weak.key", *flags))
    assert not (tmp_path / "weak.key").exists()


# -- requests and self-signed certificates ------------------------------------------------


def test_csr_carries_the_sans_and_the_cn_and_verifies(tmp_path: Path, hatoba) -> None:
    ok(hatoba("cert", "key", tmp_path / "a.key"))
    csr = tmp_path / "a.csr"
    ok(hatoba("cert", "csr", "--key", tmp_path / "a.key", "--cn", HOST, "--san", "smtp.example.test", "--san", "192.0.2.7", "--san", "::1", csr))
    verdict = openssl("req", "-verify", "-noout", "-in", csr)
    assert verdict.returncode == 0 and "verify OK" in verdict.stdout + verdict.stderr
    text = openssl("req", "-noout", "-text", "-in", csr, check=True).stdout
    assert f"Subject: CN = {HOST}" in text
    assert f"DNS:{HOST}, DNS:smtp.example.test, IP Address:192.0.2.7, IP Address:0:0:0:0:0:0:0:1" in text
    assert "ecdsa-with-SHA256" in text


@pytest.mark.parametrize("bad", ["bad_name.example", "-x.example", "*.test", "a..b", "mäil.example"])
def test_csr_refuses_names_that_are_neither_hosts_nor_addresses(tmp_path: Path, hatoba, bad) -> None:
    ok(hatoba("cert", "key", tmp_path / "a.key"))
    message = refused(hatoba("cert", "csr", "--key", tmp_path / "a.key", "--cn", HOST, f"--san={bad}", tmp_path / "a.csr"))
    assert repr(bad) in message
    assert not (tmp_path / "a.csr").exists()


def test_selfsign_is_accepted_by_openssl_as_its_own_anchor(tmp_path: Path, hatoba) -> None:
    ok(hatoba("cert", "key", tmp_path / "a.key"))
    crt = tmp_path / "self.crt"
    ok(hatoba("cert", "selfsign", "--key", tmp_path / "a.key", "--cn", HOST, "--days", "30", crt))
    assert mode(crt) == 0o644
    assert openssl("verify", "-CAfile", crt, "-verify_hostname", HOST, crt).returncode == 0
    text = x509_text(crt)
    assert "CA:FALSE" in text and f"DNS:{HOST}" in text and "TLS Web Server Authentication" in text
    out = ok(hatoba("cert", "verify", crt, "--ca-file", crt, "--host", HOST, "--key", tmp_path / "a.key"))
    assert "self-signed" in out and "FAIL" not in out
    assert "--days 900" in refused(hatoba("cert", "selfsign", "--key", tmp_path / "a.key", "--cn", HOST, "--days", "900", tmp_path / "long.crt"))


# -- a CA, an intermediate and a server certificate ------------------------------------------


def test_ca_init_makes_a_ca_openssl_accepts(pki: Pki) -> None:
    assert mode(pki.root_key) == 0o600
    text = x509_text(pki.root)
    assert "CA:TRUE" in text and "pathlen" not in text
    assert "Certificate Sign" in text
    assert "ecdsa-with-SHA384" in text  # P-384 CA key signs with SHA-384
    assert openssl("verify", "-CAfile", pki.root, pki.root).returncode == 0


def test_chain_is_verified_by_openssl_and_by_cert_verify(pki: Pki, hatoba) -> None:
    verdict = openssl("verify", "-CAfile", pki.root, "-untrusted", pki.inter, "-verify_hostname", HOST, pki.leaf)
    assert verdict.returncode == 0, verdict.stderr
    inter = x509_text(pki.inter)
    assert "CA:TRUE, pathlen:0" in inter and "Certificate Sign" in inter
    leaf = x509_text(pki.leaf)
    assert "CA:FALSE" in leaf
    assert "Digital Signature, Key Encipherment" in leaf  # RSA server key
    assert "TLS Web Server Authentication" in leaf
    assert f"DNS:{HOST}, IP Address:127.0.0.1" in leaf
    assert "X509v3 Subject Key Identifier" in leaf and "X509v3 Authority Key Identifier" in leaf
    assert "ecdsa-with-SHA256" in leaf  # signed by the P-256 intermediate

    # --chain-out: leaf first, then the intermediate, then the root.
    subjects = [c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(pki.chain.read_bytes())]
    assert subjects == [f"CN={HOST}", "CN=Test Intermediate", "CN=Test Root"]
    assert openssl("verify", "-CAfile", pki.root, "-untrusted", pki.chain, pki.chain).returncode == 0

    out = ok(hatoba("cert", "verify", pki.chain, "--key", pki.leaf_key, "--host", HOST, "--ca-file", pki.root))
    lines = out.splitlines()
    assert lines[-1] == "all 10 checks passed"  # 7 + one strength line per certificate
    assert all(line.startswith("ok ") for line in lines[:-1])
    # The intermediates may also come from a file of their own.
    out = ok(hatoba("cert", "verify", pki.leaf, "--chain", pki.inter, "--ca-file", pki.root, "--host", "127.0.0.1"))
    assert "127.0.0.1 matches IP:127.0.0.1" in out


def test_wrong_order_chain_is_rejected_with_the_expected_order(pki: Pki, hatoba) -> None:
    bad = pki.dir / "bad.crt"
    bad.write_bytes(pki.inter.read_bytes() + pki.leaf.read_bytes())
    # OpenSSL takes the first certificate as the server's: the intermediate, with no server name.
    assert openssl("verify", "-CAfile", pki.root, "-untrusted", bad, "-verify_hostname", HOST, bad).returncode != 0
    result = hatoba("cert", "verify", bad, "--key", pki.leaf_key, "--ca-file", pki.root)
    assert result.code == 1
    order = next(line for line in result.out.splitlines() if "chain order" in line)
    assert order.startswith("FAIL chain order: the certificates are in the wrong order")
    assert f"the server certificate CN={HOST} is #2, not #1" in order
    assert "expected order is the server certificate first, then the CA certificate that issued it" in order
    assert f"CN={HOST} -> CN=Test Intermediate" in order


def test_missing_intermediate_is_named(pki: Pki, hatoba) -> None:
    gap = pki.dir / "gap.crt"
    gap.write_bytes(pki.leaf.read_bytes() + pki.root.read_bytes())
    assert openssl("verify", "-CAfile", pki.root, "-untrusted", gap, pki.leaf).returncode != 0
    result = hatoba("cert", "verify", gap, "--ca-file", pki.root)
    assert result.code == 1
    assert "FAIL chain order: certificate #2 (CN=Test Root) did not issue certificate #1" in result.out
    assert "put the certificate of CN=Test Intermediate right after it" in result.out
    assert "FAIL trust" in result.out


def test_key_mismatch(pki: Pki, hatoba) -> None:
    ok(hatoba("cert", "key", pki.dir / "other.key"))
    cert_pub = openssl("x509", "-in", pki.leaf, "-noout", "-pubkey", check=True).stdout
    key_pub = openssl("pkey", "-in", pki.dir / "other.key", "-pubout", check=True).stdout
    assert cert_pub != key_pub  # OpenSSL agrees they are not a pair
    result = hatoba("cert", "verify", pki.chain, "--key", pki.dir / "other.key", "--ca-file", pki.root)
    assert result.code == 1
    assert f"FAIL private key: {pki.dir / 'other.key'} does not belong to CN={HOST}" in result.out
    assert "1 of 9 checks failed" in result.out


def test_wrong_host_and_one_label_wildcards(pki: Pki, hatoba) -> None:
    assert openssl("verify", "-CAfile", pki.root, "-untrusted", pki.inter, "-verify_hostname", "www.example.test", pki.leaf).returncode != 0
    result = hatoba("cert", "verify", pki.chain, "--host", "www.example.test", "--ca-file", pki.root)
    assert result.code == 1
    assert "FAIL host name: www.example.test matches none of the certificate's names" in result.out

    ok(hatoba("cert", "key", pki.dir / "w.key"))
    wild = pki.dir / "wild.crt"
    ok(
        hatoba(
            "cert", "ca-sign", "--ca-cert", pki.inter, "--ca-key", pki.inter_key, "--cn", "wild",
            "--key", pki.dir / "w.key", "--san", "*.example.test", wild,
        )
    )
    for host, good in (("a.example.test", True), ("example.test", False), ("a.b.example.test", False)):
        openssl_ok = openssl("verify", "-CAfile", pki.root, "-untrusted", pki.inter, "-verify_hostname", host, wild).returncode == 0
        ours = hatoba("cert", "verify", wild, "--chain", pki.inter, "--host", host, "--ca-file", pki.root)
        assert openssl_ok is good and (ours.code == 0) is good, host


def test_expired_certificate(pki: Pki, hatoba) -> None:
    ca_key = read_signing_key(pki.inter_key)
    ca_cert = x509.load_pem_x509_certificate(pki.inter.read_bytes())
    key = read_signing_key(pki.leaf_key)
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=400)
    old = issue_leaf(ca_key, ca_cert, key.public_key(), common_name(HOST), subject_names(HOST, []), days=30, now=past)
    path = pki.dir / "old.crt"
    path.write_bytes(old.public_bytes(Encoding.PEM))
    verdict = openssl("verify", "-CAfile", pki.root, "-untrusted", pki.inter, path)
    assert verdict.returncode != 0 and "certificate has expired" in verdict.stdout + verdict.stderr
    result = hatoba("cert", "verify", path, "--chain", pki.inter, "--ca-file", pki.root, "--key", pki.leaf_key)
    assert result.code == 1
    assert f"FAIL validity of CN={HOST}: EXPIRED 370 days ago" in result.out
    assert "ok   validity of CN=Test Intermediate" in result.out
    assert "FAIL trust" in result.out
    assert "(EXPIRED 370 days ago)" in ok(hatoba("cert", "show", path))


# -- what ca-sign refuses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("genkey", "digest", "words"),
    [
        (("EC", "ec_paramgen_curve:P-256"), "-sha1", "signed with SHA1, which can be forged"),
        (("RSA", "rsa_keygen_bits:2048"), "-md5", "signed with MD5, which can be forged"),
        (("RSA", "rsa_keygen_bits:1024"), "-sha256", "RSA key of 1024 bits; 2048 bits is the minimum"),
    ],
)
def test_ca_sign_refuses_weak_requests(pki: Pki, hatoba, genkey, digest, words) -> None:
    key, csr = pki.dir / "weak.key", pki.dir / "weak.csr"
    openssl("genpkey", "-algorithm", genkey[0], "-pkeyopt", genkey[1], "-out", key, check=True)
    made = openssl("req", "-new", digest, "-key", key, "-subj", f"/CN={HOST}", "-out", csr)
    if made.returncode != 0:
        pytest.skip(f"this OpenSSL refuses to make a {digest} request")
    message = refused(hatoba("cert", "ca-sign", "--ca-cert", pki.inter, "--ca-key", pki.inter_key, "--csr", csr, pki.dir / "weak.crt"))
    assert words in message and str(csr) in message
    assert not (pki.dir / "weak.crt").exists()


def test_ca_sign_with_an_openssl_request_adds_the_cn(pki: Pki, hatoba) -> None:
    key, csr, crt = pki.dir / "o.key", pki.dir / "o.csr", pki.dir / "o.crt"
    openssl("genrsa", "-out", key, "2048", check=True)
    openssl("req", "-new", "-sha256", "-key", key, "-subj", "/CN=imap.example.test", "-out", csr, check=True)
    ok(hatoba("cert", "ca-sign", "--ca-cert", pki.inter, "--ca-key", pki.inter_key, "--csr", csr, crt))
    assert openssl("verify", "-CAfile", pki.root, "-untrusted", pki.inter, "-verify_hostname", "imap.example.test", crt).returncode == 0


def test_sub_ca_from_a_path_length_0_ca_is_refused(tmp_path: Path, hatoba) -> None:
    ca_key, ca_cert = create_ca("init CA")  # what `hatoba init` makes: path length 0
    write_private_key(tmp_path / "ca.key", ca_key)
    (tmp_path / "ca.crt").write_bytes(ca_cert.public_bytes(Encoding.PEM))
    ok(hatoba("cert", "key", tmp_path / "sub.key"))
    message = refused(
        hatoba(
            "cert", "ca-sign", "--ca-cert", tmp_path / "ca.crt", "--ca-key", tmp_path / "ca.key",
            "--cn", "Sub", "--key", tmp_path / "sub.key", "--intermediate", tmp_path / "sub.crt",
        )
    )
    assert "path length 0" in message
    # A server certificate from it is fine.
    ok(hatoba("cert", "ca-sign", "--ca-cert", tmp_path / "ca.crt", "--ca-key", tmp_path / "ca.key", "--cn", HOST, "--key", tmp_path / "sub.key", tmp_path / "s.crt"))
    assert openssl("verify", "-CAfile", tmp_path / "ca.crt", tmp_path / "s.crt").returncode == 0


def test_ca_sign_refuses_a_key_that_is_not_the_cas(pki: Pki, hatoba) -> None:
    message = refused(hatoba("cert", "ca-sign", "--ca-cert", pki.inter, "--ca-key", pki.leaf_key, "--csr", pki.dir / "leaf.csr", pki.dir / "x.crt"))
    assert "does not belong to the CA certificate" in message
    message = refused(hatoba("cert", "ca-sign", "--ca-cert", pki.leaf, "--ca-key", pki.leaf_key, "--csr", pki.dir / "leaf.csr", pki.dir / "x.crt"))
    assert "is not a CA certificate" in message


# -- passphrases ------------------------------------------------------------------------------


def test_passphrase_key_and_unprotect(tmp_path: Path, hatoba) -> None:
    enc, plain = tmp_path / "enc.key", tmp_path / "plain.key"
    ok(hatoba("cert", "key", enc, "--passphrase-stdin", stdin="correct horse\n"))
    assert mode(enc) == 0o600
    assert enc.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert openssl("pkey", "-in", enc, "-noout", "-passin", "pass:wrong").returncode != 0
    assert openssl("pkey", "-in", enc, "-noout", "-passin", "pass:correct horse").returncode == 0

    message = refused(hatoba("cert", "csr", "--key", enc, "--cn", HOST, tmp_path / "a.csr"))
    assert "is encrypted" in message and "--passphrase-stdin" in message
    ok(hatoba("cert", "csr", "--key", enc, "--cn", HOST, tmp_path / "a.csr", "--passphrase-stdin", stdin="correct horse\n"))
    assert openssl("req", "-verify", "-noout", "-in", tmp_path / "a.csr").returncode == 0

    assert "wrong passphrase" in refused(hatoba("cert", "unprotect", enc, plain, "--passphrase-stdin", stdin="nope\n"))
    assert not plain.exists()
    assert "--passphrase-stdin" in refused(hatoba("cert", "unprotect", enc, plain))
    ok(hatoba("cert", "unprotect", enc, plain, "--passphrase-stdin", stdin="correct horse\n"))
    assert mode(plain) == 0o600
    assert plain.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert openssl("pkey", "-in", plain, "-noout").returncode == 0
    pub_enc = openssl("pkey", "-in", enc, "-pubout", "-passin", "pass:correct horse", check=True).stdout
    assert openssl("pkey", "-in", plain, "-pubout", check=True).stdout == pub_enc


def test_openssl_encrypted_traditional_key_is_read(tmp_path: Path, hatoba) -> None:
    key = tmp_path / "legacy.key"
    openssl("genrsa", "-aes256", "-traditional", "-passout", "pass:pw", "-out", key, "2048", check=True)
    assert "--passphrase-stdin" in refused(hatoba("cert", "selfsign", "--key", key, "--cn", HOST, tmp_path / "s.crt"))
    ok(hatoba("cert", "selfsign", "--key", key, "--cn", HOST, tmp_path / "s.crt", "--passphrase-stdin", stdin="pw\n"))
    assert "Digital Signature, Key Encipherment" in x509_text(tmp_path / "s.crt")


# -- import of a combined file -------------------------------------------------------------------


def test_import_combined_pem(pki: Pki, hatoba) -> None:
    combined = pki.dir / "qmail.pem"
    # Any order, as such files are found in the wild: intermediate, root, key, leaf.
    combined.write_bytes(pki.inter.read_bytes() + pki.root.read_bytes() + pki.leaf_key.read_bytes() + pki.leaf.read_bytes())
    out_dir = pki.dir / "imported"
    out = ok(hatoba("cert", "import", combined, "--out-dir", out_dir))
    key, crt, ca = out_dir / "server.key", out_dir / "server.crt", out_dir / "ca.crt"
    assert f"wrote {key}" in out and f"wrote {crt}" in out and f"wrote {ca}" in out
    assert mode(key) == 0o600
    subjects = [c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(crt.read_bytes())]
    assert subjects == [f"CN={HOST}", "CN=Test Intermediate"]  # root left out
    assert x509.load_pem_x509_certificate(ca.read_bytes()).subject.rfc4514_string() == "CN=Test Root"
    assert openssl("verify", "-CAfile", ca, "-untrusted", crt, "-verify_hostname", HOST, crt).returncode == 0
    assert openssl("x509", "-in", crt, "-noout", "-pubkey", check=True).stdout == openssl("pkey", "-in", key, "-pubout", check=True).stdout
    assert ok(hatoba("cert", "verify", crt, "--key", key, "--ca-file", ca, "--host", HOST)).endswith("checks passed\n")
    # Never over an earlier import.
    assert "already exists" in refused(hatoba("cert", "import", combined, "--out-dir", out_dir))


def test_import_without_root_and_with_a_foreign_key(pki: Pki, hatoba) -> None:
    no_root = pki.dir / "noroot.pem"
    no_root.write_bytes(pki.leaf.read_bytes() + pki.inter.read_bytes() + pki.leaf_key.read_bytes())
    out = ok(hatoba("cert", "import", no_root, "--out-dir", pki.dir / "a"))
    assert "ca.crt not written" in out and not (pki.dir / "a/ca.crt").exists()

    foreign = pki.dir / "foreign.pem"
    foreign.write_bytes(pki.inter_key.read_bytes() + pki.leaf.read_bytes())
    assert "belongs to none of its certificates" in refused(hatoba("cert", "import", foreign, "--out-dir", pki.dir / "b"))
    assert not (pki.dir / "b").exists()


# -- show ---------------------------------------------------------------------------------------


def test_show_prints_every_field(pki: Pki, hatoba) -> None:
    out = ok(hatoba("cert", "show", pki.chain))
    fingerprint = openssl("x509", "-in", pki.leaf, "-noout", "-fingerprint", "-sha256", check=True).stdout.split("=", 1)[1].strip()
    leaf_part, inter_part, root_part = out.split("certificate ")[1:]
    assert leaf_part.startswith("1 of 3:")
    for field in (
        f"subject:    CN={HOST}",
        f"SANs:       DNS:{HOST}, IP:127.0.0.1",
        "issuer:     CN=Test Intermediate",
        "not before: ",
        "days left)",
        "key:        RSA 2048 bits",
        "signature:  ecdsa-with-SHA256",
        f"SHA-256:    {fingerprint}",
        "CA:         no",
    ):
        assert field in leaf_part, field
    assert "CA:         yes (path length 0)" in inter_part and "key:        ECDSA P-256" in inter_part
    assert "CA:         yes (no limit)" in root_part and "ecdsa-with-SHA384" in root_part

    csr_out = ok(hatoba("cert", "show", pki.dir / "leaf.csr"))
    assert "certificate request:" in csr_out and f"DNS:{HOST}, IP:127.0.0.1" in csr_out and "(valid)" in csr_out
    key_out = ok(hatoba("cert", "show", pki.leaf_key))
    assert "key:                RSA 2048 bits" in key_out and "not encrypted" in key_out


def test_show_and_verify_name_missing_files(tmp_path: Path, hatoba) -> None:
    assert "cannot read" in refused(hatoba("cert", "show", tmp_path / "nothing.pem"))
    (tmp_path / "empty.pem").write_text("hello\n")
    assert "no PEM" in refused(hatoba("cert", "verify", tmp_path / "empty.pem"))
    assert "give an action" in refused(hatoba("cert"))
