"""Autoconfig, Autodiscover and the SRV records offer exactly the enabled
listeners, implicit TLS first, and never a port without TLS."""

from __future__ import annotations

import dataclasses
import plistlib
import xml.etree.ElementTree as ET
from pathlib import Path

from hatoba.config.schema import STANDARD_PORTS, Config, ListenerConfig, PathsConfig, ServerConfig, TlsConfig
from hatoba.selfcheck.dnsrecords import srv_records
from hatoba.web.autoconfig import autodiscover_address, autodiscover_xml, offers, thunderbird_xml
from hatoba.web.mobileconfig import profile
from hatoba.web.mta_sts import policy_id, policy_text
from hatoba.web.routes import Request


def config(enabled: set[str]) -> Config:
    listeners = {name: ListenerConfig(name, "0.0.0.0", port, enabled=name in enabled)
                 for name, port in STANDARD_PORTS.items()}
    return Config(server=ServerConfig(hostname="mail.example.org"), listeners=listeners,
                  tls=TlsConfig(cert=Path("c"), key=Path("k")), paths=PathsConfig(data_dir=Path("d")))


def test_only_enabled_listeners_are_offered_in_order():
    only = config({"imaps", "submission", "smtp", "pop3"})
    assert [(o.kind, o.port, o.implicit_tls) for o in offers(only)] == [
        ("imap", 993, True), ("pop3", 110, False), ("smtp", 587, False)]
    root = ET.fromstring(thunderbird_xml(only, "example.org"))
    assert [s.findtext("port") for s in root.iter("incomingServer")] == ["993", "110"]
    assert [s.findtext("port") for s in root.iter("outgoingServer")] == ["587"]  # never port 25
    assert "25" not in [p.text for p in root.iter("port")]


def test_the_bound_port_is_offered_when_the_server_says_so():
    every = config(set(STANDARD_PORTS))
    assert {o.port for o in offers(every, lambda name: 40000 + STANDARD_PORTS[name])} == {
        40993, 40143, 40995, 40110, 40465, 40587}


def test_autodiscover_escapes_and_finds_the_address():
    every = config(set(STANDARD_PORTS))
    xml = autodiscover_xml(every, "a&b@example.org")
    assert b"<LoginName>a&amp;b@example.org</LoginName>" in xml
    ET.fromstring(xml)  # well formed
    assert autodiscover_address(b"<a:EMailAddress> x@example.org </a:EMailAddress>") == "x@example.org"
    assert autodiscover_address(b"<EMailAddress>\xff@example.org</EMailAddress>") is None
    assert autodiscover_address(b"<EMailAddress></EMailAddress>") is None


def test_srv_records_say_which_services_are_off():
    records = {r.name: r.value for r in srv_records(config({"imaps", "smtps"}), "example.org")}
    assert records == {
        "_submissions._tcp.example.org": "0 1 465 mail.example.org.",
        "_submission._tcp.example.org": "0 0 0 .",
        "_imaps._tcp.example.org": "0 1 993 mail.example.org.",
        "_imap._tcp.example.org": "0 0 0 .",
        "_pop3s._tcp.example.org": "0 0 0 .",
        "_pop3._tcp.example.org": "0 0 0 .",
    }


def test_mta_sts_policy_follows_the_config_and_its_id_changes_with_it():
    testing = config(set())
    enforce = dataclasses.replace(testing, mta_sts=dataclasses.replace(testing.mta_sts, mode="enforce"))
    assert policy_text(enforce) == "version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmax_age: 604800\r\n"
    assert policy_id(policy_text(testing)) != policy_id(policy_text(enforce))


def test_request_hostname_drops_port_case_and_final_dot():
    assert Request("GET", "/", "", "Mail.Example.org.:8443", "127.0.0.1").hostname == "mail.example.org"
    assert Request("GET", "/", "", "[::1]:443", "::1").hostname == "[::1]"


def test_apple_profile_needs_a_way_in_and_a_way_out():
    assert profile(config({"imaps"}), "a@example.org") is None  # nothing to send with
    assert profile(config({"smtps"}), "a@example.org") is None
    pop_only = plistlib.loads(profile(config({"pop3", "submission"}), "a@example.org"))
    [mail] = pop_only["PayloadContent"]
    assert mail["EmailAccountType"] == "EmailTypePOP"
    assert (mail["IncomingMailServerPortNumber"], mail["OutgoingMailServerPortNumber"]) == (110, 587)


def test_autodiscover_answers_are_valid_against_the_2006a_schema():
    """Our XSD of the POX reference (tests/web/schemas), checked by xmlschema: element
    names, cardinality and values; a wrong value or element is caught, so the check bites."""
    import xmlschema

    schema = xmlschema.XMLSchema(str(Path(__file__).parent / "schemas" / "autodiscover-2006.xsd"))
    for enabled in ({"imaps", "imap", "pop3s", "pop3", "smtps", "submission"}, {"imaps", "submission"}, {"pop3"}):
        schema.validate(autodiscover_xml(config(enabled), "you@example.org").decode())
    good = autodiscover_xml(config({"imaps"}), "you@example.org").decode()
    for broken in (good.replace("<SSL>on</SSL>", "<SSL>yes</SSL>"), good.replace("<Type>IMAP</Type>", "<Type>imap4</Type>"),
                   good.replace("<Port>993</Port>", "<Port>0</Port>"), good.replace("<SPA>off</SPA>", "<SPA>off</SPA><Secret/>")):
        assert not schema.is_valid(broken)
