"""`hatoba check` and `hatoba cert verify` on SHA-1 and self-signed certificates: a weak
signature is reported as what it is, never as a chain in the wrong order, and a
self-signed certificate is called so.

Helpers and fixtures come from test_check and test_check_hardening.
"""

from __future__ import annotations

from cryptography import x509
from support.harness import _merge_config
from test_check import OFFLINE, _install, _name, findings, home, one, run_check  # noqa: F401
from test_check_hardening import sha1_chain

from hatoba.pki.ca import self_signed_leaf
from hatoba.pki.checks import check_order, check_trust
from hatoba.pki.keyfiles import new_key
from hatoba.pki.pemfiles import read_certs

HOST = "mail.example.test"


def test_sha1_certificate_is_not_called_out_of_order(home, capsys):
    leaf, ca = read_certs(sha1_chain(home))
    order, chain = check_order([leaf, ca])
    assert order.ok and "SHA-1" in order.detail and chain == [leaf, ca]
    reversed_order, chain = check_order([ca, leaf])
    assert not reversed_order.ok and "is #2, not #1" in reversed_order.detail and chain == [leaf, ca]
    _merge_config(home.config_path, '[tls]\ncert = "tls/s1chain.crt"\n')
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    assert findings(report, "cert.tls.order") == []
    signature = one(report, "cert.tls.signature")
    assert signature["severity"] == "critical" and "sha1" in signature["title"].lower()


def test_self_signed_server_certificate_is_named(home, capsys):
    key = new_key()
    cert = self_signed_leaf(key, _name(HOST), [x509.DNSName(HOST)])
    _install(home, "selfsigned", key, [cert])
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 0
    finding = one(report, "cert.tls.self-signed")
    assert finding["severity"] == "info" and "self-signed" in finding["title"]
    assert "trust this certificate explicitly" in finding["explanation"]
    assert one(report, "cert.tls.chain")["severity"] == "ok"
    trust = check_trust([cert], None, cert.not_valid_before_utc)
    assert not trust.ok and "self-signed" in trust.fix and "intermediate" not in trust.fix


def test_certificate_from_a_ca_is_not_called_self_signed(home, capsys):
    _, report = run_check(home, capsys, *OFFLINE)
    assert findings(report, "cert.tls.self-signed") == []
