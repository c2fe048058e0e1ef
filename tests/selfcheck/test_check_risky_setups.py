"""`hatoba check` on setups that pass at a glance but put mail at risk: a whole private
range trusted for relaying, APOP before STLS, TLS demanded of every MX, a smarthost
password others can read or hand to an unchecked certificate, a loose data folder,
a host name no public DNS knows.

Helpers and fixtures come from test_check.
"""

from __future__ import annotations

import os

import pytest
from support.harness import _merge_config, make_home
from test_check import OFFLINE, findings, home, one, run_check  # noqa: F401

HOST = "mail.example.test"
RELAYHOST = '[delivery]\nrelayhost = "[smtp.provider.example]:587"\nrelayhost_username = "me@provider.example"\n'


# -- relaying -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "network", ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "10.0.0.0/15", "fd00::/40"],
)
def test_trusting_a_whole_private_range_is_a_warning(tmp_path, capsys, network):
    home = make_home(tmp_path / "h", extra_config=f'[smtp]\ntrusted_networks = ["{network}"]\n')
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 0
    wide = one(report, "relay.wide-network")
    assert wide["severity"] == "warning" and network in wide["title"]
    assert "compromised PC" in wide["explanation"] and "587" in wide["fix"]


def test_trusting_a_small_subnet_or_loopback_is_not_flagged(tmp_path, capsys):
    networks = '["192.168.1.0/24", "10.20.0.0/16", "127.0.0.0/8", "fd00:1:2::/48"]'
    home = make_home(tmp_path / "h", extra_config=f"[smtp]\ntrusted_networks = {networks}\n")
    _, report = run_check(home, capsys, *OFFLINE)
    assert findings(report, "relay.wide-network") == []


# -- APOP -------------------------------------------------------------------------------


def test_apop_before_stls_is_a_warning(tmp_path, capsys):
    home = make_home(tmp_path / "h", extra_config='[auth]\nplaintext_networks = ["192.168.1.0/24"]\n')
    _, report = run_check(home, capsys, *OFFLINE)
    apop = one(report, "listener.pop3.apop")
    assert apop["severity"] == "warning" and "APOP offered before STLS" in apop["title"]
    assert "192.168.1.0/24" in apop["explanation"] and "MD5" in apop["explanation"]
    assert "apop = false" in apop["fix"]
    _merge_config(home.config_path, "[pop3]\napop = false\n")
    _, report = run_check(home, capsys, *OFFLINE)
    assert findings(report, "listener.pop3.apop") == []


def test_apop_from_loopback_only_is_not_flagged(tmp_path, capsys):
    home = make_home(tmp_path / "h", extra_config='[auth]\nplaintext_networks = ["127.0.0.1/32"]\n')
    _, report = run_check(home, capsys, *OFFLINE)
    assert findings(report, "listener.pop3.apop") == []


# -- outgoing mail ----------------------------------------------------------------------


@pytest.mark.parametrize("level", ["encrypt", "verify"])
def test_tls_required_of_every_destination_is_a_warning(tmp_path, capsys, level):
    home = make_home(tmp_path / "h", extra_config=f'[delivery]\ntls = "{level}"\n')
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 0
    tls = one(report, "delivery.tls")
    assert tls["severity"] == "warning" and f'"{level}"' in tls["title"]
    assert "RFC 3207" in tls["explanation"] and "[delivery.tls_policies]" in tls["fix"]


def test_tls_required_towards_a_smarthost_is_fine(tmp_path, capsys):
    smarthost = '[delivery]\ntls = "verify"\nrelayhost = "[smtp.provider.example]:587"\n'
    home = make_home(tmp_path / "h", extra_config=smarthost)
    _, report = run_check(home, capsys, *OFFLINE)
    assert findings(report, "delivery.tls") == []


def test_inline_smarthost_password_in_a_readable_config_is_critical(tmp_path, capsys):
    home = make_home(tmp_path / "h", extra_config=RELAYHOST + 'relayhost_password = "s3cret"\n')
    os.chmod(home.config_path, 0o644)
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    password = one(report, "delivery.relayhost-password")
    assert password["severity"] == "critical" and str(home.config_path) in password["title"]
    assert f"chmod 600 {home.config_path}" in password["fix"]
    os.chmod(home.config_path, 0o600)
    _, report = run_check(home, capsys, *OFFLINE)
    assert findings(report, "delivery.relayhost-password") == []


def test_readable_smarthost_password_file_is_critical(tmp_path, capsys):
    # hatoba serve refuses to start with it; check says so before.
    home = make_home(tmp_path / "h", extra_config=RELAYHOST + 'relayhost_password_file = "relay-password"\n')
    secret = home.root / "relay-password"
    secret.write_text("s3cret\n")
    os.chmod(secret, 0o644)
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    assert f"chmod 600 {secret}" in one(report, "delivery.relayhost-password")["fix"]


@pytest.mark.parametrize(
    ("extra", "severity"),
    [
        (RELAYHOST + 'relayhost_password = "s3cret"\n', "critical"),
        ('[delivery]\nrelayhost = "[smtp.provider.example]:587"\n', "warning"),
    ],
)
def test_smarthost_tls_may_is_flagged(tmp_path, capsys, extra, severity):
    home = make_home(tmp_path / "h", extra_config=extra + 'relayhost_tls = "may"\n')
    os.chmod(home.config_path, 0o600)
    _, report = run_check(home, capsys, *OFFLINE)
    finding = one(report, "delivery.relayhost-tls")
    assert finding["severity"] == severity and '"may"' in finding["title"]
    assert 'relayhost_tls = "verify"' in finding["fix"]
    _merge_config(home.config_path, '[delivery]\nrelayhost_tls = "verify"\n')
    _, report = run_check(home, capsys, *OFFLINE)
    assert findings(report, "delivery.relayhost-tls") == []


# -- data folders ---------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["data", "data/mail", "data/queue"])
def test_data_folder_writable_by_others_is_critical(home, capsys, folder):
    path = home.root / folder
    name = path.name if folder != "data" else "data"
    os.chmod(path, 0o1777)
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    finding = one(report, f"files.{name}.mode")
    assert finding["severity"] == "critical" and "1777" in finding["title"]
    assert finding["fix"] == f"chmod 700 {path}"
    os.chmod(path, 0o700)
    _, report = run_check(home, capsys, *OFFLINE)
    assert one(report, f"files.{name}.mode")["severity"] == "ok"


# -- DNS ----------------------------------------------------------------------------------


@pytest.mark.parametrize("hostname", ["localhost", "mail", "mx.localhost"])
def test_no_dns_records_for_a_host_name_public_dns_cannot_know(home, capsys, hostname):
    _merge_config(home.config_path, f'[server]\nhostname = "{hostname}"\n')
    _, report = run_check(home, capsys, *OFFLINE)
    assert report["dns_records"] == []
    finding = one(report, "dns.hostname")
    assert finding["severity"] == "warning" and hostname in finding["title"]
    assert "public" in finding["fix"]


# -- metrics ----------------------------------------------------------------------------


def test_metrics_beyond_loopback_are_worth_knowing(tmp_path, capsys):
    home = make_home(tmp_path / "h", extra_config="[listeners.http]\nenabled = true\n")
    _, report = run_check(home, capsys, *OFFLINE)
    assert one(report, "listener.http.metrics")["severity"] == "ok"
    _merge_config(home.config_path, '[metrics]\nnetworks = ["127.0.0.1/32", "192.0.2.0/24"]\n')
    _, report = run_check(home, capsys, *OFFLINE)
    found = one(report, "listener.http.metrics")
    assert found["severity"] == "info" and "192.0.2.0/24" in found["explanation"]
