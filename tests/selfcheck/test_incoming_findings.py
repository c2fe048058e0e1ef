"""`hatoba check` says which defences judge mail from other servers."""

from __future__ import annotations

import dataclasses
import json

from hatoba.selfcheck.incoming import incoming_findings
from support.harness import _merge_config, make_home


def by_id(findings):  # type: ignore[no-untyped-def]
    return {f.check: f for f in findings}


def test_the_defaults_are_reported_on(tmp_path):
    config = make_home(tmp_path / "h").config()
    found = by_id(incoming_findings(config))
    assert found["checks.on"].severity == "ok" and "DMARC" in found["checks.on"].title
    assert "refused" in found["checks.on"].explanation
    assert found["checks.local-forgery"].severity == "ok" and "Junk" in found["checks.local-forgery"].title


def test_checks_off_and_forgeries_let_through_are_warnings(tmp_path):
    config = make_home(tmp_path / "h").config()
    off = by_id(incoming_findings(dataclasses.replace(config, checks=dataclasses.replace(config.checks, enabled=False))))
    assert list(off) == ["checks.off"] and off["checks.off"].severity == "warning"
    lax = dataclasses.replace(config, checks=dataclasses.replace(config.checks, local_forgery="accept"))
    assert by_id(incoming_findings(lax))["checks.local-forgery"].severity == "warning"


def test_the_cli_report_names_the_section(tmp_path):
    home = make_home(tmp_path / "h")
    _merge_config(home.config_path, '[checks]\nlocal_forgery = "reject"\ntrusted_arc_sealers = ["lists.example.org"]\n')
    done = home.cli("check", "--no-live", "--no-dns", "--json")
    report = json.loads(done.stdout)
    mine = {f["check"]: f for f in report["findings"] if f["section"] == "incoming"}
    assert set(mine) == {"checks.on", "checks.local-forgery", "checks.arc", "checks.rspamd", "checks.dnsbl",
                         "checks.greylisting", "checks.rates"}
    assert mine["checks.greylisting"]["severity"] == "info" and mine["checks.dnsbl"]["severity"] == "info"
    assert mine["checks.local-forgery"]["title"] == "Forged senders of your own domains are refused"
    text = home.cli("check", "--no-live", "--no-dns").stdout
    assert "Incoming mail checks" in text and "lists.example.org" in text


def test_each_defence_that_is_on_is_named(tmp_path):
    home = make_home(tmp_path / "h")
    _merge_config(home.config_path, '[checks]\nrspamd_url = "http://127.0.0.1:11333"\ndnsbl = ["bl.example*2"]\n'
                                    'greylisting = true\n[limits]\nclient_message_rate = 30\n')
    found = by_id(incoming_findings(home.config()))
    assert found["checks.rspamd"].severity == "ok" and "127.0.0.1:11333" in found["checks.rspamd"].explanation
    assert found["checks.dnsbl"].severity == "ok" and "bl.example*2" in found["checks.dnsbl"].explanation
    assert found["checks.greylisting"].title == "Greylisting is on"
    assert found["checks.rates"].title == "At most 30 messages a minute from one address"
