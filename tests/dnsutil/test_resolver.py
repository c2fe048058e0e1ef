"""Resolver round trips against a real DNS server on loopback (support.dnsserver)."""

from __future__ import annotations

import asyncio
import socket
import time

import dns.flags
import dns.message
import dns.query
import pytest
from support.dnsserver import DnsServer

from hatoba.dnsutil.resolver import DnsError, MxHost, NullMx, Resolver, parse_nameserver

DKIM_KEY = "v=DKIM1; k=rsa; p=" + "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" * 11  # 502 bytes
HUGE_TXT = "x" * 2000  # over the 1232-byte EDNS size: needs TCP

RECORDS = {
    "example.org": [("MX", "20 b.example.org."), ("MX", "10 a.example.org."), ("MX", "30 c.example.org.")],
    "a.example.org": [("A", "127.0.0.1")],
    "equal.example": [("MX", "5 first.example."), ("MX", "10 x.example."), ("MX", "10 y.example.")],
    "noreply.example": [("MX", "0 .")],
    "implicit.example": [("A", "192.0.2.7")],
    "implicit6.example": [("AAAA", "2001:db8::7")],
    "bare.example": [("TXT", "v=spf1 -all")],
    "xn--bcher-kva.example": [("MX", "10 MX1.Example.ORG.")],
    "dual.example": [("AAAA", "::1"), ("A", "127.0.0.1")],
    "half.example": [("AAAA", "::1"), ("A", "127.0.0.1")],
    "alias.example": [("CNAME", "dual.example.")],
    "s._domainkey.example.org": [("TXT", DKIM_KEY)],
    "huge.example": [("TXT", HUGE_TXT)],
    "multi.example": [("TXT", "one"), ("TXT", "two")],
}


@pytest.fixture
def server():
    with DnsServer(RECORDS, servfail={"broken.example", "half.example AAAA"}) as srv:
        yield srv


@pytest.fixture
def resolver(server):
    return Resolver(server.address, timeout=2.0)


def run(coro):
    return asyncio.run(coro)


def dns_error(coro) -> DnsError:
    with pytest.raises(DnsError) as info:
        run(coro)
    return info.value


# -- mx_hosts --------------------------------------------------------------


def test_mx_sorted_by_preference(resolver):
    assert run(resolver.mx_hosts("example.org")) == [
        MxHost("a.example.org", 10),
        MxHost("b.example.org", 20),
        MxHost("c.example.org", 30),
    ]


def test_equal_preference_in_random_order(resolver):
    async def orders():
        seen = set()
        for _ in range(50):
            hosts = await resolver.mx_hosts("equal.example")
            assert hosts[0] == MxHost("first.example", 5)
            seen.add(tuple(h.name for h in hosts[1:]))
        return seen

    # Both orders have probability 1/2; missing one over 50 tries is 2**-49.
    assert run(orders()) == {("x.example", "y.example"), ("y.example", "x.example")}


def test_no_mx_falls_back_to_the_domain_with_an_address(resolver):
    assert run(resolver.mx_hosts("implicit.example")) == [MxHost("implicit.example", 0, implicit=True)]
    assert run(resolver.mx_hosts("Implicit6.Example.")) == [MxHost("implicit6.example", 0, implicit=True)]


def test_no_mx_and_no_address_is_permanent(resolver):
    err = dns_error(resolver.mx_hosts("bare.example"))
    assert err.temporary is False
    assert str(err) == "no MX or address records for bare.example"


def test_null_mx(resolver):
    with pytest.raises(NullMx) as info:
        run(resolver.mx_hosts("noreply.example"))
    assert info.value.domain == "noreply.example"
    assert "accepts no mail" in str(info.value)


def test_nxdomain_is_permanent(resolver):
    err = dns_error(resolver.mx_hosts("nope.example"))
    assert err.temporary is False
    assert str(err) == "no such domain nope.example (NXDOMAIN)"


def test_servfail_is_temporary(resolver):
    err = dns_error(resolver.mx_hosts("broken.example"))
    assert err.temporary is True
    assert "SERVFAIL" in str(err)
    assert "\n" not in str(err)


def test_closed_port_is_temporary():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    err = dns_error(Resolver(f"127.0.0.1:{port}", timeout=0.5).mx_hosts("example.org"))
    assert err.temporary is True
    assert time.monotonic() - started < 2
    assert "example.org MX" in str(err)


def test_silent_server_times_out_temporary():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        started = time.monotonic()
        err = dns_error(Resolver(f"127.0.0.1:{port}", timeout=0.3).mx_hosts("example.org"))
    assert err.temporary is True
    assert "timed out" in str(err)
    assert time.monotonic() - started < 2


def test_idna_domain_goes_out_as_a_label(server, resolver):
    assert run(resolver.mx_hosts("Bücher.example")) == [MxHost("mx1.example.org", 10)]
    assert ("xn--bcher-kva.example", "MX") in server.queries


def test_invalid_domain_is_permanent(resolver):
    assert dns_error(resolver.mx_hosts("bad domain.example")).temporary is False
    assert dns_error(resolver.mx_hosts("")).temporary is False


# -- addresses -------------------------------------------------------------


def test_addresses_ipv6_and_ipv4(server, resolver):
    assert run(resolver.addresses("dual.example")) == ["::1", "127.0.0.1"]
    assert {("dual.example", "AAAA"), ("dual.example", "A")} <= set(server.queries)


def test_addresses_follow_cname(resolver):
    assert run(resolver.addresses("alias.example")) == ["::1", "127.0.0.1"]


def test_one_family_failing_keeps_the_other(resolver):
    assert run(resolver.addresses("half.example")) == ["127.0.0.1"]


def test_addresses_errors(resolver):
    nx = dns_error(resolver.addresses("nope.example"))
    assert (nx.temporary, str(nx)) == (False, "no such domain nope.example (NXDOMAIN)")
    nodata = dns_error(resolver.addresses("bare.example"))
    assert (nodata.temporary, str(nodata)) == (False, "no address records for bare.example")
    assert dns_error(resolver.addresses("broken.example")).temporary is True


def test_ip_literals_pass_through_without_a_query(server, resolver):
    assert run(resolver.addresses("192.0.2.1")) == ["192.0.2.1"]
    assert run(resolver.addresses("2001:db8::1")) == ["2001:db8::1"]
    assert server.queries == []


# -- txt -------------------------------------------------------------------


def test_long_txt_strings_are_joined(server, resolver):
    assert run(resolver.txt("s._domainkey.example.org")) == [DKIM_KEY]
    assert server.tcp_queries == []  # fits in one EDNS UDP reply


def test_txt_too_big_for_udp_retries_over_tcp(server, resolver):
    assert run(resolver.txt("huge.example")) == [HUGE_TXT]
    assert ("huge.example", "TXT") in server.tcp_queries


def test_txt_records_stay_separate(resolver):
    assert sorted(run(resolver.txt("multi.example"))) == ["one", "two"]


def test_txt_absent_is_empty(resolver):
    assert run(resolver.txt("nope.example")) == []
    assert run(resolver.txt("implicit.example")) == []
    assert run(resolver.txt("_domainkey.example.org")) == []  # empty non-terminal


def test_txt_servfail_is_temporary(resolver):
    assert dns_error(resolver.txt("broken.example")).temporary is True


def test_server_changes_are_seen(server, resolver):
    server.add("late.example", "MX", "10 a.example.org.")
    assert run(resolver.mx_hosts("late.example")) == [MxHost("a.example.org", 10)]
    server.remove("late.example")
    assert dns_error(resolver.mx_hosts("late.example")).temporary is False


def test_server_truncates_udp_without_edns(server):
    query = dns.message.make_query("s._domainkey.example.org", "TXT", use_edns=False)
    reply = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=2)
    assert reply.flags & dns.flags.TC and not reply.answer
    reply = dns.query.tcp(query, "127.0.0.1", port=server.port, timeout=2)
    assert b"".join(reply.answer[0][0].strings).decode() == DKIM_KEY


# -- parse_nameserver ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", ("192.0.2.1", 53)),
        ("192.0.2.1:5353", ("192.0.2.1", 5353)),
        (" 127.0.0.1:53 ", ("127.0.0.1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("[2001:db8::1]", ("2001:db8::1", 53)),
        ("2001:db8::1", ("2001:db8::1", 53)),
    ],
)
def test_parse_nameserver(text, expected):
    assert parse_nameserver(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("dns.example:53", "must be an IP address"),
        ("192.0.2.1:", "empty port"),
        ("192.0.2.1:dns", "1 to 65535"),
        ("192.0.2.1:0", "1 to 65535"),
        ("192.0.2.1:70000", "1 to 65535"),
        ("[::1:53", "without ']'"),
        ("[::1]53", "after ']'"),
        ("[::1]:", "empty port"),
    ],
)
def test_parse_nameserver_errors(text, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_nameserver(text)
    assert "\n" not in str(info.value)


def test_resolver_rejects_a_bad_server_address():
    with pytest.raises(ValueError, match="must be an IP address"):
        Resolver("dns.example")
