"""Chain ordering, host-name matching, SAN parsing and PEM splitting, without the CLI."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509

from hatoba.pki.ca import issue_leaf, issue_sub_ca, self_signed_ca
from hatoba.pki.chain import find_leaf, is_self_signed, issued_by, order_chain
from hatoba.pki.checks import check_order, host_matches
from hatoba.pki.csr import common_name, parse_name, subject_names
from hatoba.pki.errors import PkiError
from hatoba.pki.keyfiles import new_key
from hatoba.pki.pemfiles import split_pem


@pytest.fixture(scope="module")
def chain() -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
    root_key, inter_key, leaf_key = new_key(), new_key(), new_key()
    root = self_signed_ca(root_key, common_name("Root"), path_length=None)
    inter = issue_sub_ca(root_key, root, inter_key.public_key(), common_name("Inter"))
    leaf = issue_leaf(inter_key, inter, leaf_key.public_key(), common_name("a.example"), subject_names("a.example", []))
    return leaf, inter, root


def test_issued_by_needs_the_signature_not_just_the_name(chain) -> None:
    leaf, inter, root = chain
    assert issued_by(leaf, inter) and issued_by(inter, root) and is_self_signed(root)
    assert not issued_by(leaf, root) and not is_self_signed(leaf)
    # Same name, another key: an impostor CA does not count as the issuer.
    impostor = self_signed_ca(new_key(), common_name("Inter"))
    assert leaf.issuer == impostor.subject and not issued_by(leaf, impostor)


@pytest.mark.parametrize("order", [(0, 1, 2), (1, 0, 2), (2, 1, 0), (1, 2, 0)])
def test_order_chain_puts_the_leaf_first_whatever_the_input_order(chain, order) -> None:
    certs = [chain[i] for i in order]
    ordered, rest = order_chain(certs)
    assert ordered == list(chain) and rest == []
    assert find_leaf(certs) == chain[0]
    verdict, fixed = check_order(certs)
    assert verdict.ok is (order == (0, 1, 2))
    assert fixed == list(chain)
    if not verdict.ok:
        assert "wrong order" in verdict.detail


def test_unrelated_certificate_is_left_aside(chain) -> None:
    leaf, inter, root = chain
    stranger = self_signed_ca(new_key(), common_name("Stranger"))
    ordered, rest = order_chain([stranger, leaf, inter])
    assert ordered == [leaf, inter] and rest == [stranger]


@pytest.mark.parametrize(
    ("host", "names", "match"),
    [
        ("mail.example.org", ["mail.example.org"], "mail.example.org"),
        ("MAIL.Example.org.", ["mail.example.org"], "mail.example.org"),
        ("mail.example.org", ["*.example.org"], "*.example.org"),
        ("example.org", ["*.example.org"], None),
        ("a.mail.example.org", ["*.example.org"], None),
        ("mail.example.org", ["other.example.org", "127.0.0.1"], None),
        ("127.0.0.1", ["127.0.0.1"], "127.0.0.1"),
        ("::1", ["0:0::1"], "::1"),
        ("127.0.0.1", ["localhost"], None),
    ],
)
def test_host_matches(host, names, match) -> None:
    sans = [parse_name(n) for n in names]
    found = host_matches(host, sans)
    if match is None:
        assert found is None
    else:
        assert found == parse_name(match)


def test_parse_name_tells_addresses_from_dns_names() -> None:
    assert parse_name("192.0.2.1") == x509.IPAddress(ipaddress.ip_address("192.0.2.1"))
    assert parse_name("[2001:db8::1]") == x509.IPAddress(ipaddress.ip_address("2001:db8::1"))
    assert parse_name("Mail.Example.ORG.") == x509.DNSName("mail.example.org")
    for bad in ("under_score.example", "a.-b.example", "*.org", "a.*.example", "x" * 64 + ".example"):
        with pytest.raises(PkiError):
            parse_name(bad)


def test_common_name_becomes_the_first_san_once() -> None:
    assert subject_names("mail.example.org", ["mail.example.org", "10.0.0.1"]) == [
        x509.DNSName("mail.example.org"),
        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
    ]
    # A CN that is not a host name stays out of the SANs.
    assert subject_names("Example Mail", ["mx.example.org"]) == [x509.DNSName("mx.example.org")]
    with pytest.raises(PkiError):
        subject_names("Example Mail", [])


def test_split_pem_keeps_order_and_ignores_text_between_blocks() -> None:
    data = (
        b"Bag Attributes: junk\n"
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        b"comment\r\n"
        b"-----BEGIN PRIVATE KEY-----\r\nBBBB\r\n-----END PRIVATE KEY-----"
        b"-----BEGIN DH PARAMETERS-----\nCCCC\n-----END DH PARAMETERS-----\n"
    )
    blocks = split_pem(data)
    assert [(b.label, b.kind) for b in blocks] == [
        ("CERTIFICATE", "certificate"),
        ("PRIVATE KEY", "key"),
        ("DH PARAMETERS", "other"),
    ]
    assert blocks[0].data == b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
