"""DMARC aggregate reports: recorded as messages are judged, sent once the day is over, to
the rua addresses that may have them, in the XML of RFC 7489 Appendix C (validated here
against its schema)."""

from __future__ import annotations

import datetime
import email
import gzip
import random
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import xmlschema

from hatoba.checks.dmarc_reports import DmarcReporter, ReportStore
from hatoba.checks.judge import Judge, MessageFacts
from hatoba.checks.lookup import Lookup
from hatoba.config.schema import ChecksConfig
from hatoba.store.directory import Directory
from support.dnsserver import DnsServer
from support.mailauth import RsaKey, sign

SCHEMA = xmlschema.XMLSchema(Path(__file__).parent / "schemas" / "dmarc-rua.xsd")
KEY = RsaKey()


@pytest.fixture
def world(tmp_path):
    dns = DnsServer({
        "_dmarc.reports.test": [("TXT", "v=DMARC1; p=quarantine; rua=mailto:agg@reports.test")],
        "rsa._domainkey.reports.test": [("TXT", KEY.record)],
        "_dmarc.third.test": [("TXT", "v=DMARC1; p=none; rua=mailto:agg@collector.test!10m")],
        "third.test._report._dmarc.collector.test": [("TXT", "v=DMARC1")],
        "_dmarc.nocollect.test": [("TXT", "v=DMARC1; p=none; rua=mailto:x@other.test")],
        "_dmarc.quiet.test": [("TXT", "v=DMARC1; p=reject")],
    }).start()
    path = tmp_path / "directory.sqlite3"
    Directory(path)
    store = ReportStore(path)
    lookup = Lookup(dns.address, timeout=2.0)
    judge = Judge(ChecksConfig(), hostname="mx.hatoba.test", is_local_domain=lambda d: False, lookup=lookup,
                  reports=store, rng=random.Random(1))
    yield judge, store, lookup, dns
    store.close()
    dns.stop()


def message(from_: str, subject: str = "Hi") -> bytes:
    return f"From: {from_}\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\r\nHello.\r\n".encode()


def judged(judge, data: bytes, ip: str = "192.0.2.10") -> None:  # type: ignore[no-untyped-def]
    judge.assess(MessageFacts(client_ip=ip, helo="mx.sender.test", mail_from="bounce@sender.test",
                              recipients=("bob@example.test",)), data)


def test_a_day_of_results_becomes_one_valid_report_per_domain_that_asks(world):
    judge, store, lookup, _dns = world
    good = sign(message("a@reports.test"), KEY, "reports.test", "rsa")
    judged(judge, good)
    judged(judge, good)
    judged(judge, message("forged@reports.test"), ip="2001:db8::7")
    judged(judge, message("b@third.test"))
    judged(judge, message("c@nocollect.test"))
    judged(judge, message("d@quiet.test"))  # no rua: nothing recorded
    queued: list[tuple[tuple[str, ...], bytes]] = []
    reporter = DmarcReporter(store, lookup, hostname="mx.hatoba.test", sender="dmarc-reports@mx.hatoba.test",
                             inject=lambda to, data: queued.append((to, data)))
    today = datetime.datetime.now(datetime.timezone.utc)
    assert reporter.send_due(today) == [] and queued == []  # the day is not over
    sent = reporter.send_due(today + datetime.timedelta(days=1))
    assert sorted((q.policy_domain, q.to) for q in sent) == [
        ("reports.test", ("agg@reports.test",)), ("third.test", ("agg@collector.test",))]
    by_domain = {}
    for to, data in queued:
        msg = email.message_from_bytes(data)
        subject = " ".join(msg["Subject"].split())  # folded: a long subject
        assert subject.startswith(f"Report Domain: {subject.split()[2]} Submitter: mx.hatoba.test Report-ID: <")
        [attachment] = [p for p in msg.walk() if p.get_content_type() == "application/gzip"]
        assert attachment.get_filename().endswith(".xml.gz")
        xml = gzip.decompress(attachment.get_payload(decode=True))
        SCHEMA.validate(xml)  # raises with the reason when the report does not follow the schema
        root = ET.fromstring(xml)
        by_domain[root.findtext("policy_published/domain")] = root
    report = by_domain["reports.test"]
    assert report.findtext("policy_published/p") == "quarantine"
    rows = {(r.findtext("row/source_ip"), r.findtext("row/policy_evaluated/disposition"),
             r.findtext("row/policy_evaluated/dkim")): int(r.findtext("row/count")) for r in report.iter("record")}
    assert rows == {("192.0.2.10", "none", "pass"): 2,
                    ("2001:0db8:0000:0000:0000:0000:0000:0007", "quarantine", "fail"): 1}
    assert report.findtext("record/auth_results/dkim/domain") == "reports.test"
    assert reporter.send_due(today + datetime.timedelta(days=1)) == []  # sent once, then forgotten


def test_a_hostile_report_address_is_dropped_and_holds_up_no_other_report(world):
    judge, store, lookup, dns = world
    # rua values are anyone's text: one with a line break, one pointing elsewhere unasked.
    for domain, rua in (("aaa.test", "mailto:a\r\nBcc: x@evil.test"), ("zzz.test", "mailto:agg@zzz.test")):
        dns.add(f"_dmarc.{domain}", "TXT", f"v=DMARC1; p=none; rua={rua}")
        judged(judge, message(f"x@{domain}"))
    queued: list[tuple[tuple[str, ...], bytes]] = []
    reporter = DmarcReporter(store, lookup, hostname="mx.hatoba.test", sender="r@mx.hatoba.test",
                             inject=lambda to, data: queued.append((to, data)))
    sent = reporter.send_due(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1))
    assert [(q.policy_domain, q.to) for q in sent] == [("zzz.test", ("agg@zzz.test",))]
    assert reporter.send_due(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)) == []
