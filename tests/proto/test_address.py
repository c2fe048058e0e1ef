"""Tests for hatoba.proto.address: paths, addresses, domains, ESMTP parameters."""

import re

import pytest

from hatoba.proto.address import (
    Address,
    AddressError,
    Path,
    parse_address,
    parse_domain,
    parse_path,
    quote_local,
    split_esmtp_params,
)
from hatoba.proto.errors import RemoteProtocolError

# --- valid paths -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "local", "domain", "quoted"),
    [
        ("<user@example.org>", "user", "example.org", False),
        ("<User@EXAMPLE.Org>", "User", "example.org", False),
        ("<first.last@example.org>", "first.last", "example.org", False),
        ("<a+tag@example.org>", "a+tag", "example.org", False),
        ("<!#$%&'*+-/=?^_`{|}~@example.org>", "!#$%&'*+-/=?^_`{|}~", "example.org", False),
        ('<"john doe"@example.org>', "john doe", "example.org", True),
        ('<"john"@example.org>', "john", "example.org", True),
        ('<"a\\"b\\\\c"@example.org>', 'a"b\\c', "example.org", True),
        ('<"\\a"@example.org>', "a", "example.org", True),  # quoted-pair of a plain char
        ('<"a..b"@example.org>', "a..b", "example.org", True),
        ('<"a>b"@example.org>', "a>b", "example.org", True),
        ("<user@localhost>", "user", "localhost", False),  # single label: policy's concern
        ("<user@123.example>", "user", "123.example", False),
        ("<user@a-b.example>", "user", "a-b.example", False),
        ("<user@[127.0.0.1]>", "user", "[127.0.0.1]", False),
        ("<user@[IPv6:2001:DB8::1]>", "user", "[IPv6:2001:db8::1]", False),
        ("<user@[ipv6:::1]>", "user", "[IPv6:::1]", False),
        ("<user@[IPv6:::ffff:192.0.2.1]>", "user", "[IPv6:::ffff:c000:201]", False),
        ("<user@xn--bcher-kva.example>", "user", "xn--bcher-kva.example", False),
        ("<user@XN--BCHER-KVA.example>", "user", "xn--bcher-kva.example", False),
    ],
)
def test_parse_path_valid(text: str, local: str, domain: str, quoted: bool) -> None:
    path = parse_path(text)
    assert path.source_route == ()
    assert path.address is not None
    assert (path.address.local, path.address.domain, path.address.quoted) == (local, domain, quoted)


def test_null_path_only_when_allowed() -> None:
    assert parse_path("<>", allow_null=True) == Path(None)
    assert str(parse_path("<>", allow_null=True)) == "<>"
    with pytest.raises(AddressError, match="null path"):
        parse_path("<>")


def test_source_route_is_kept_for_logging_and_ignored() -> None:
    # RFC 5321 §4.1.2 / §3.6.1: accept A-d-l, deliver to the mailbox.
    path = parse_path("<@local.test:user@other.example>")
    assert path.source_route == ("local.test",)
    assert path.address == Address("user", "other.example", False)
    assert str(path) == "<user@other.example>"
    path = parse_path("<@a.example,@B.Example:user@c.example>")
    assert path.source_route == ("a.example", "b.example")
    assert str(path.address) == "user@c.example"


@pytest.mark.parametrize(
    "text",
    [
        "<@a.example user@c.example>",  # no colon
        "<@a.example,b.example:user@c.example>",  # hop without @
        "<@:user@c.example>",
        "<@a..example:user@c.example>",
        "<@[127.0.0.1]:user@c.example>",  # At-domain = "@" Domain, no literal
        "<@a.example,:user@c.example>",
    ],
)
def test_bad_source_route(text: str) -> None:
    with pytest.raises(AddressError):
        parse_path(text)


# --- relay-test tricks: parsed, then flagged for the relay policy -------------


@pytest.mark.parametrize(
    ("text", "routing"),
    [
        ("<user%other.example@local.test>", True),
        ('<"user@other.example"@local.test>', True),
        ("<other.example!user@local.test>", True),
        ('<"user%other.example"@local.test>', True),
        ("<user@local.test>", False),
        ('<"user"@local.test>', False),
    ],
)
def test_routing_chars(text: str, routing: bool) -> None:
    address = parse_path(text).address
    assert address is not None
    assert address.domain == "local.test"
    assert address.has_routing_chars is routing


def test_quoted_at_sign_stays_in_local_part() -> None:
    address = parse_path('<"user@other.example"@local.test>').address
    assert address == Address("user@other.example", "local.test", True)
    assert str(address) == '"user@other.example"@local.test'


# --- invalid paths -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "missing path"),
        ("user@example.org", "angle brackets"),
        ("<user@example.org", "angle brackets"),
        ("user@example.org>", "angle brackets"),
        ("<", "angle brackets"),
        (">", "angle brackets"),
        ("<postmaster>", "missing @domain"),
        ("<user>", "missing @domain"),
        ("<user@>", "missing domain"),
        ("<@example.org>", "source route"),
        ('<""@example.org>', "empty local part"),
        ("<.user@example.org>", "empty atom"),
        ("<user.@example.org>", "empty atom"),
        ("<us..er@example.org>", "empty atom"),
        ("<us er@example.org>", "U+0020"),
        ("<us(er)@example.org>", "U+0028"),
        ("<a@b@example.org>", "U+0040"),
        ('<us"er"@example.org>', "U+0022"),
        ('<"user@example.org>', "unterminated"),
        ('<"user\\"@example.org>', "unterminated"),
        ('<"user"x@example.org>', "expected '@'"),
        ('<"user">', "missing @domain"),
        ("<user@example..org>", "empty label"),
        ("<user@.example.org>", "empty label"),
        ("<user@example.org.>", "empty label"),  # no trailing dot in SMTP
        ("<user@-example.org>", "hyphens"),
        ("<user@example-.org>", "hyphens"),
        ("<user@exa_mple.org>", "hyphens"),
        ("<user@exa mple.org>", "hyphens"),
        ("<user@example.org>>", "hyphens"),
        ("<<user@example.org>>", "U+003C"),
        ("<user@[127.0.0.1>", "unterminated address literal"),
        ("<user@[127.0.0.256]>", "IPv4"),
        ("<user@[127.0.0]>", "IPv4"),
        ("<user@[127.0.0.01]>", "IPv4"),
        ("<user@[IPv6:1::2::3]>", "IPv6"),
        ("<user@[IPv6:fe80::1%eth0]>", "IPv6"),
        ("<user@[IPv6:127.0.0.1]>", "IPv6"),
        ("<user@[::1]>", "address literal"),
        ("<user@[x-tag:data]>", "unsupported address literal"),
        ("<user@[]>", "address literal"),
        ("<user@[127.0.0.1]x>", "address literal"),
        ("<user@xn--abc.example>", "A-label"),  # not valid Punycode
        ("<user@xn--bcher.example>", "A-label"),  # decodes to ASCII
        ("<user\x00@example.org>", "U+0000"),
        ("<user@example.org\r\nRCPT TO:<x@y>>", "U+000D"),
        ('<"a\tb"@example.org>', "U+0009"),
        ("<user\x7f@example.org>", "U+007F"),
    ],
)
def test_parse_path_invalid(text: str, message: str) -> None:
    with pytest.raises(AddressError, match=re.escape(message)) as info:
        parse_path(text)
    assert "\n" not in str(info.value) and "\r" not in str(info.value)
    assert str(info.value).isascii()


def test_address_error_is_a_remote_protocol_error() -> None:
    assert issubclass(AddressError, RemoteProtocolError)


def test_length_limits() -> None:
    # RFC 5321 §4.5.3.1.1: local part up to 64 octets.
    assert parse_path(f"<{'a' * 64}@example.org>").address is not None
    with pytest.raises(AddressError, match="64 octets"):
        parse_path(f"<{'a' * 65}@example.org>")
    # Octets, not characters: 33 two-octet characters is 66 octets.
    with pytest.raises(AddressError, match="64 octets"):
        parse_path(f"<{'é' * 33}@example.org>", smtputf8=True)
    # Labels up to 63 octets (RFC 1035 §2.3.4).
    assert parse_path(f"<a@{'b' * 63}.example>").address is not None
    with pytest.raises(AddressError, match="63 octets"):
        parse_path(f"<a@{'b' * 64}.example>")
    # Domain up to 255 octets (RFC 5321 §4.5.3.1.2).
    domain = ".".join(["c" * 63] * 4)  # 255 octets
    assert parse_path(f"<a@{domain}>").address == Address("a", domain, False)
    with pytest.raises(AddressError, match="255 octets"):
        parse_path(f"<a@{domain}.x>")


# --- SMTPUTF8 (RFC 6531) -----------------------------------------------------


def test_utf8_needs_smtputf8() -> None:
    for text in ("<用户@example.org>", "<user@bücher.example>", '<"jöhn doe"@example.org>'):
        with pytest.raises(AddressError, match="SMTPUTF8"):
            parse_path(text)
        assert parse_path(text, smtputf8=True).address is not None


def test_utf8_local_and_domain() -> None:
    address = parse_path("<用户@例子.广告>", smtputf8=True).address
    assert address is not None
    assert address.local == "用户"
    assert address.domain == "xn--fsqu00a.xn--4rr70v"
    assert address.requires_smtputf8
    ascii_local = parse_path("<user@bücher.example>", smtputf8=True).address
    assert ascii_local is not None and not ascii_local.requires_smtputf8


def test_invalid_utf8_and_unicode_controls() -> None:
    # What bytes.decode("utf-8", "surrogateescape") makes of invalid UTF-8.
    broken = b"<us\xffer@example.org>".decode("utf-8", "surrogateescape")
    with pytest.raises(AddressError, match="not valid UTF-8"):
        parse_path(broken, smtputf8=True)
    for c in ("\x85", "\u2028", "\u2029", "\x9b"):
        with pytest.raises(AddressError, match="control character"):
            parse_path(f"<us{c}er@example.org>", smtputf8=True)


def test_quoted_pair_is_ascii_only() -> None:
    # RFC 6531 does not extend quoted-pairSMTP to UTF-8.
    with pytest.raises(AddressError, match="backslash"):
        parse_path('<"\\é"@example.org>', smtputf8=True)
    assert parse_path('<"é x"@example.org>', smtputf8=True).address == Address("é x", "example.org")


# --- domains and IDNA --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.org", "example.org"),
        ("Example.ORG", "example.org"),
        ("example.org.", "example.org"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("straße.example", "xn--strae-oqa.example"),  # IDNA2008, not IDNA2003 "strasse"
        ("ＥＸＡＭＰＬＥ.org", "example.org"),  # full-width letters fold to ASCII
        ("мойдомен.рф", "xn--d1acklchcc.xn--p1ai"),
        ("localhost", "localhost"),
    ],
)
def test_parse_domain(text: str, expected: str) -> None:
    assert parse_domain(text) == expected
    assert parse_domain(expected) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        ".",
        "example..org",
        "example.org..",
        "-example.org",
        "exam_ple.org",
        "[127.0.0.1]",
        "user@example.org",
        "a♥.example",  # symbols are not IDNA2008 PVALID
        "\u0301a.example",  # leading combining mark
        "ab--ü.example",  # hyphens in positions 3-4 of a U-label
        "-ü.example",
        "xn--.example",
        "exa\x00mple.org",
        "ü" * 60 + ".example",  # A-label too long
    ],
)
def test_parse_domain_invalid(text: str) -> None:
    with pytest.raises(AddressError):
        parse_domain(text)


def test_domain_comparison_is_case_insensitive_local_keeps_case() -> None:
    a = parse_address("John.Smith@Example.ORG")
    b = parse_address("John.Smith@example.org")
    assert a == b and hash(a) == hash(b)
    assert a.local == "John.Smith"
    assert a != parse_address("john.smith@example.org")


# --- parse_address (operator input) ------------------------------------------


def test_parse_address() -> None:
    assert parse_address("user@example.org") == Address("user", "example.org", False)
    assert parse_address("  user@example.org\t") == Address("user", "example.org", False)
    assert parse_address("用户@bücher.example") == Address("用户", "xn--bcher-kva.example", False)
    with pytest.raises(AddressError, match="SMTPUTF8"):
        parse_address("用户@example.org", smtputf8=False)
    for bad, message in [
        ("", "empty address"),
        ("user", "missing @domain"),
        ("user@", "missing domain"),
        ("@example.org", "empty local part"),
        ("<user@example.org>", "without angle brackets"),
        ("user@example.org\n", "U+000A"),
    ]:
        with pytest.raises(AddressError, match=re.escape(message)):
            parse_address(bad)


# --- canonical form and round trips -------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("user@example.org", "user@example.org"),
        ('"user"@example.org', "user@example.org"),
        ('"first.last"@example.org', "first.last@example.org"),
        ('"john doe"@example.org', '"john doe"@example.org'),
        ('"a\\b"@example.org', "ab@example.org"),
        ('"a\\"b"@example.org', '"a\\"b"@example.org'),
        ('"a\\\\b"@example.org', '"a\\\\b"@example.org'),
        ('".a"@example.org', '".a"@example.org'),
        ('"a."@example.org', '"a."@example.org'),
        ('"a@b"@example.org', '"a@b"@example.org'),
        ('" "@example.org', '" "@example.org'),
        ("user@BÜCHER.example", "user@xn--bcher-kva.example"),
        ("user@[IPv6:0:0:0:0:0:0:0:1]", "user@[IPv6:::1]"),
    ],
)
def test_canonical_form_round_trips(text: str, canonical: str) -> None:
    address = parse_address(text)
    assert str(address) == canonical
    again = parse_address(str(address))
    assert again == address
    assert str(again) == canonical
    assert parse_path(f"<{address}>", smtputf8=True).address == address


def test_quote_local() -> None:
    assert quote_local("plain") == "plain"
    assert quote_local("") == '""'
    assert quote_local('say "hi"') == '"say \\"hi\\""'


def test_path_str() -> None:
    assert str(parse_path('<"john doe"@Example.org>')) == '<"john doe"@example.org>'


# --- ESMTP parameters ----------------------------------------------------------


def test_split_esmtp_params() -> None:
    assert split_esmtp_params("<a@b> SIZE=1000 BODY=8BITMIME SMTPUTF8") == (
        "<a@b>",
        {"SIZE": "1000", "BODY": "8BITMIME", "SMTPUTF8": None},
    )
    assert split_esmtp_params("<a@b>") == ("<a@b>", {})
    assert split_esmtp_params("<>") == ("<>", {})
    assert split_esmtp_params("<> size=12 ") == ("<>", {"SIZE": "12"})
    assert split_esmtp_params("<a@b>  body=7bit   ret=HDRS") == ("<a@b>", {"BODY": "7bit", "RET": "HDRS"})
    # Spaces and '>' inside a quoted local part belong to the path.
    assert split_esmtp_params('<"a >b\\" c"@x.example> SIZE=1') == ('<"a >b\\" c"@x.example>', {"SIZE": "1"})
    # RFC 3461 ORCPT value with '+' and ';'.
    assert split_esmtp_params("<a@b> ORCPT=rfc822;a+2Bb@c NOTIFY=SUCCESS,FAILURE")[1] == {
        "ORCPT": "rfc822;a+2Bb@c",
        "NOTIFY": "SUCCESS,FAILURE",
    }
    # RFC 6531 §3.3: UTF-8 in a value.
    assert split_esmtp_params("<a@b> X-NOTE=héllo")[1] == {"X-NOTE": "héllo"}
    # No brackets: the path ends at the first space; parse_path then refuses it.
    path, params = split_esmtp_params("a@b SIZE=1")
    assert (path, params) == ("a@b", {"SIZE": "1"})
    with pytest.raises(AddressError, match="angle brackets"):
        parse_path(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "missing path"),
        ("<a@b", "closing '>'"),
        ('<"a>@b', "closing '>'"),
        ("<a@b>SIZE=1", "expected a space"),
        ("<a@b> SIZE=", "no value"),
        ("<a@b> SIZE=1=2", "invalid character"),
        ("<a@b> =1", "keyword"),
        ("<a@b> -SIZE=1", "keyword"),
        ("<a@b> SI_ZE=1", "keyword"),
        ("<a@b> SIZE=1\x00", "invalid character"),
        ("<a@b> X=a\tb", "invalid character"),
        ("<a@b> X=a\x85", "invalid character"),
        ("<a@b> SIZE=1 size=2", "twice"),
    ],
)
def test_split_esmtp_params_invalid(text: str, message: str) -> None:
    with pytest.raises(AddressError, match=re.escape(message)):
        split_esmtp_params(text)
