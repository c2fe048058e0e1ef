"""`hatoba check` on setups that look fine at a glance: a chain with a hole, a readable key,
a weak self-signed certificate, dangerous SPF, a better MX than ours, a relay test that
only got "try later", and a resolver that breaks.

Helpers and fixtures come from test_check.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from support.dnsserver import DnsServer
from support.harness import _merge_config
from support.peers import needs, require
from test_check import OFFLINE, _install, _leaf, _root_and_intermediate, home, one, run_check  # noqa: F401

from hatoba.dnsutil.resolver import Resolver
from hatoba.pki.keyfiles import new_key
from hatoba.selfcheck.dnscompare import compare_records
from hatoba.selfcheck.findings import DnsRecord

HOST = "mail.example.test"


# -- certificates ---------------------------------------------------------------------


def test_leaf_and_root_without_the_intermediate_is_not_complete(home, capsys):
    root, inter_key, inter = _root_and_intermediate()
    key = new_key()
    _install(home, "gap", key, [_leaf(inter_key, inter, key), root])
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    chain = one(report, "cert.tls.chain")
    assert chain["severity"] == "critical" and "intermediate certificate missing" in chain["title"]


@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_key_readable_by_others_is_critical(home, capsys, mode):
    key = home.root / "tls" / "server.key"
    os.chmod(key, mode)
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    finding = one(report, "cert.tls.key-mode")
    assert finding["severity"] == "critical" and f"chmod 600 {key}" in finding["fix"]
    os.chmod(key, 0o600)
    code, report = run_check(home, capsys, *OFFLINE)
    assert one(report, "cert.tls.key-mode")["severity"] == "ok"


@needs("openssl")
def test_self_signed_sha1_server_certificate_is_weak(home, capsys):
    tls = home.root / "tls"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-sha1",
         "-days", "30", "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST}",
         "-keyout", str(tls / "ss1.key"), "-out", str(tls / "ss1.crt")],
        capture_output=True, text=True,
    )
    if made.returncode != 0:
        pytest.skip("this OpenSSL refuses to sign with SHA-1")
    os.chmod(tls / "ss1.key", 0o600)
    _merge_config(home.config_path, '[tls]\ncert = "tls/ss1.crt"\nkey = "tls/ss1.key"\n')
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    assert one(report, "cert.tls.signature")["severity"] == "critical"


# -- DNS comparison ---------------------------------------------------------------------


def _compare(published: dict[str, list[tuple[str, str]]], *wanted: DnsRecord) -> list[DnsRecord]:
    with DnsServer(published) as dns:
        records, _ = asyncio.run(compare_records(list(wanted), Resolver(dns.address, timeout=5)))
    return records


MX = DnsRecord("example.test", "MX", "example.test", "MX", f"10 {HOST}.")
SPF = DnsRecord("example.test", "SPF", "example.test", "TXT", "v=spf1 mx -all")


@pytest.mark.parametrize(
    ("spf", "status"),
    [
        ("v=spf1 mx -all", "match"),
        ("v=spf1 mx ~all", "match"),
        (f"v=spf1 a:{HOST} -all", "match"),
        ("v=spf1 mx +all", "mismatch"),
        ("v=spf1 mx ?all", "mismatch"),
        ("v=spf1 mx all", "mismatch"),
        ("v=spf1 mx", "mismatch"),
        ("v=spf1 mx -all +all", "mismatch"),
        ("v=spf1mx -all", "missing"),
        ("v=spf1 redirect=_spf.example.net", "mismatch"),
        ("v=spf1 ip4:192.0.2.1 -all", "mismatch"),
    ],
)
def test_spf_match_means_it_lets_us_send_and_no_one_else(spf, status):
    records = _compare({"example.test": [("MX", f"10 {HOST}."), ("TXT", spf)]}, MX, SPF)
    assert records[1].status == status, spf


def test_spf_redirect_is_explained():
    with DnsServer({"example.test": [("TXT", "v=spf1 redirect=_spf.example.net")]}) as dns:
        _, found = asyncio.run(compare_records([MX, SPF], Resolver(dns.address, timeout=5)))
    spf = next(f for f in found if f.check == "dns.example.test.SPF")
    assert "redirect" in spf.explanation


def test_mx_matches_only_when_no_other_host_is_preferred():
    better = _compare({"example.test": [("MX", f"10 {HOST}."), ("MX", "5 mx.elsewhere.example.")]}, MX)
    assert better[0].status == "mismatch"
    backup = _compare({"example.test": [("MX", f"10 {HOST}."), ("MX", "20 mx.elsewhere.example.")]}, MX)
    assert backup[0].status == "match"


def test_dkim_record_without_version_tag_matches():
    dkim = DnsRecord("example.test", "DKIM", "s1._domainkey.example.test", "TXT", "v=DKIM1; k=rsa; p=MIIBkey")
    plain = _compare({"s1._domainkey.example.test": [("TXT", "k=rsa; p=MIIBkey")]}, dkim)
    assert plain[0].status == "match"
    other = _compare({"s1._domainkey.example.test": [("TXT", "k=rsa; p=MIIBother")]}, dkim)
    assert other[0].status == "mismatch"


class _BrokenResolver(Resolver):
    """A resolver whose TXT lookups fail with an error that is not a DnsError (a malformed answer)."""

    async def txt(self, name: str) -> list[str]:
        raise UnicodeDecodeError("ascii", b"\xff", 0, 1, "not text")


def test_unexpected_lookup_error_is_an_info_finding():
    with DnsServer({"example.test": [("MX", f"10 {HOST}.")]}) as dns:
        records, found = asyncio.run(compare_records([MX, SPF], _BrokenResolver(dns.address, timeout=5)))
    assert [r.status for r in records] == ["match", "unknown"]
    spf = next(f for f in found if f.check == "dns.example.test.SPF")
    assert spf.severity == "info"


# -- the relay probe ------------------------------------------------------------------


class _TryLater:
    """An SMTP server on loopback that answers every RCPT with 451."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> _TryLater:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        self.thread.join(10)

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 busy.example ESMTP\r\n")
            for line in lines:
                verb = line[:4].upper()
                reply = {b"EHLO": b"250 busy.example", b"MAIL": b"250 ok", b"RSET": b"250 ok",
                         b"RCPT": b"451 4.3.0 try again later", b"QUIT": b"221 bye"}.get(verb, b"502 no")
                conn.sendall(reply + b"\r\n")
                if verb == b"QUIT":
                    return


def test_relay_probe_with_only_temporary_refusals_is_inconclusive(home, capsys):
    with _TryLater() as server:
        code, report = run_check(home, capsys, "--no-dns", "--probe", f"127.0.0.1:{server.port}")
    result = one(report, "relay-probe.result")
    assert result["severity"] == "warning"
    assert "relay test inconclusive: the server answered 4xx" in result["title"].lower()
    assert code == 0



def sha1_chain(home) -> Path:
    """tls/s1chain.crt: the server key certified by hatoba init's CA with SHA-1 (only OpenSSL
    still does that), then the CA."""
    require("openssl")
    tls = home.root / "tls"
    (tls / "ext").write_text(f"basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:{HOST}\n")
    steps = [
        ["req", "-new", "-key", tls / "server.key", "-subj", f"/CN={HOST}", "-out", tls / "s1.csr"],
        ["x509", "-req", "-in", tls / "s1.csr", "-CA", tls / "ca.crt", "-CAkey", tls / "ca.key", "-sha1",
         "-days", "30", "-extfile", tls / "ext", "-out", tls / "s1.crt"],
    ]
    for step in steps:
        if subprocess.run(["openssl", *map(str, step)], capture_output=True).returncode != 0:
            pytest.skip("this OpenSSL refuses to sign with SHA-1")
    (tls / "s1chain.crt").write_bytes((tls / "s1.crt").read_bytes() + (tls / "ca.crt").read_bytes())
    return tls / "s1chain.crt"


def test_sha1_leaf_with_its_issuer_is_not_called_a_missing_intermediate(home, capsys):
    sha1_chain(home)
    _merge_config(home.config_path, '[tls]\ncert = "tls/s1chain.crt"\n')
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    chain = one(report, "cert.tls.chain")
    assert chain["severity"] == "critical" and "SHA-1" in chain["title"] and "missing" not in chain["title"]
