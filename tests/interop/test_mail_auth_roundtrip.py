"""hatoba to hatoba: a message DKIM-signed by one server passes SPF, DKIM and DMARC at
another, and what the second forwards through an alias carries an ARC set that dkimpy's
own ARC verifier accepts (Postfix's smtp-sink is the next hop)."""

from __future__ import annotations

import email
import smtplib
import ssl

import dkim
import pytest

from hatoba.checks.lookup import Lookup
from hatoba.dkim.keys import list_keys
from hatoba.store.directory import Directory
from support.dnsserver import DnsServer
from support.harness import ServerThread, _merge_config, make_home
from support.mailauth import results
from support.sink import SmtpSink, envelope_of, needs_sink

pytestmark = [pytest.mark.interop, needs_sink]

B_HOST = "mx.b.test"


def publish_key(home, domain: str, dns: DnsServer) -> None:  # type: ignore[no-untyped-def]
    assert home.cli("dkim", "keygen", domain, "--algorithm", "rsa").returncode == 0
    [key] = [k for k in list_keys(home.config().paths.dkim_dir) if k.domain == domain]
    dns.add(key.dns_name(), "TXT", key.txt_value())


def test_signed_by_one_hatoba_passes_at_another_and_is_arc_sealed_when_forwarded(tmp_path):
    with DnsServer({
        "example.test": [("TXT", "v=spf1 ip4:127.0.0.1 -all")],
        "_dmarc.example.test": [("TXT", "v=DMARC1; p=reject")],
        "mail.example.test": [("TXT", "v=spf1 ip4:127.0.0.1 -all")],
    }) as dns, SmtpSink(tmp_path / "sink") as sink:
        resolver = f'[dns]\nresolver = "{dns.address}"\n'
        sender = make_home(tmp_path / "a", extra_config=resolver)
        receiver = make_home(tmp_path / "b", hostname=B_HOST, domain="b.test",
                             extra_config=resolver + f'[delivery.routes]\n"c.test" = "{sink.address}"\n')
        directory = Directory(receiver.root / "data" / "directory.sqlite3")
        directory.add_user("bob@b.test", "bob-b-password-1")
        directory.add_alias("fwd@b.test", ["carol@c.test"])
        publish_key(sender, "example.test", dns)
        publish_key(receiver, "b.test", dns)

        with ServerThread(receiver) as b:
            _merge_config(sender.config_path, f'[delivery.routes]\n"b.test" = "[127.0.0.1]:{b.port("smtp")}"\n')
            with ServerThread(sender) as a:
                with smtplib.SMTP("127.0.0.1", a.port("submission"), timeout=20) as c:
                    c.starttls(context=ssl.create_default_context(cafile=str(sender.ca_file)))
                    c.login("alice@example.test", "alice-password-1")
                    c.sendmail("alice@example.test", ["bob@b.test", "fwd@b.test"],
                               b"From: Alice <alice@example.test>\r\nTo: bob@b.test, fwd@b.test\r\n"
                               b"Subject: Round trip\r\nMessage-ID: <rt1@example.test>\r\n\r\nHello.\r\n")
                [stored] = receiver.wait_messages("bob@b.test", 1, timeout=30)
                [dump] = sink.wait_messages(1, timeout=30)

    got = results(stored.replace(b"\n", b"\r\n"), B_HOST)
    assert got["dkim"][0].result == "pass" and got["dkim"][0].header_d == "example.test"
    assert got["dmarc"][0].result == "pass" and got["dmarc"][0].header_from == "example.test"
    assert [r.result for r in got["spf"]] == ["pass", "pass"]
    assert email.message_from_bytes(stored)["X-Spam"] == "No"

    _sender, rcpts, forwarded = envelope_of(dump)
    assert rcpts == ["carol@c.test"]
    msg = email.message_from_bytes(forwarded)
    assert msg["ARC-Seal"] and "d=b.test" in msg["ARC-Seal"] and "cv=none" in msg["ARC-Seal"]
    assert "dkim=pass" in msg["ARC-Authentication-Results"] and B_HOST in msg["ARC-Authentication-Results"]
    with DnsServer() as again:  # the keys, published for dkimpy's verifier
        for key in list_keys(sender.config().paths.dkim_dir) + list_keys(receiver.config().paths.dkim_dir):
            again.add(key.dns_name(), "TXT", key.txt_value())
        lookup = Lookup(again.address)
        cv, _results, reason = dkim.arc_verify(forwarded, dnsfunc=lookup.for_dkimpy)
        assert cv == b"pass", reason
        # The original signature survived the forward too.
        assert dkim.verify(forwarded, dnsfunc=lookup.for_dkimpy)
