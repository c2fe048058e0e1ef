"""`hatoba check`: each unsafe setup gives its finding and fix; a clean setup passes.

Every test builds a real setup with `hatoba init` (support.harness.make_home),
breaks one thing, runs `hatoba -c FILE check --json` in-process and reads
the findings by their stable `check` ids.
"""

from __future__ import annotations

import datetime
import json
import poplib
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from support.dnsserver import DnsServer
from support.harness import PASSWORDS, ServerThread, _merge_config, free_port_offset, make_home

from hatoba.cli.main import main
from hatoba.config.load import ConfigError, load_config
from hatoba.pki.ca import issue_leaf, issue_sub_ca, load_certs, self_signed_ca, write_cert_chain
from hatoba.pki.keyfiles import new_key, read_key, write_key
from hatoba.queue.spool import Spool

HOST = "mail.example.test"
OFFLINE = ("--no-live", "--no-dns")


def run_check(home, capsys, *args: str) -> tuple[int, dict]:
    capsys.readouterr()  # drop what setting up printed (hatoba init's summary)
    code = main(["-c", str(home.config_path), "check", "--json", *args])
    captured = capsys.readouterr()
    return code, json.loads(captured.out)


def findings(report: dict, check: str) -> list[dict]:
    return [f for f in report["findings"] if f["check"] == check]


def one(report: dict, check: str) -> dict:
    found = findings(report, check)
    assert len(found) == 1, (check, [f["check"] for f in report["findings"]])
    return found[0]


def criticals(report: dict) -> list[str]:
    return [f["check"] for f in report["findings"] if f["severity"] == "critical"]


@pytest.fixture
def home(tmp_path: Path):
    return make_home(tmp_path / "hatoba")


# -- certificates -----------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _home_ca(home):
    tls = home.root / "tls"
    return read_key(tls / "ca.key"), load_certs(tls / "ca.crt")[0]


def _install(home, name: str, key, chain: list[x509.Certificate], extra: str = "") -> None:
    """Write KEY and CHAIN as tls/NAME.key and tls/NAME.crt and make them [tls] cert and key."""
    tls = home.root / "tls"
    write_key(tls / f"{name}.key", key)
    write_cert_chain(tls / f"{name}.crt", chain)
    _merge_config(home.config_path, f'[tls]\ncert = "tls/{name}.crt"\nkey = "tls/{name}.key"\n{extra}')


def _leaf(ca_key, ca_cert, key, names=(HOST,), days=825, now=None) -> x509.Certificate:
    sans = [x509.DNSName(n) for n in names]
    return issue_leaf(ca_key, ca_cert, key.public_key(), _name(names[0]), sans, days=days, now=now)


def test_clean_setup_has_no_critical_finding(home, capsys):
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 0
    assert criticals(report) == []
    assert report["summary"]["critical"] == 0 and report["summary"]["exit_status"] == 0
    assert "STARTTLS required" in one(report, "listener.submission.encryption")["title"]
    assert one(report, "listener.smtp.encryption")["severity"] == "ok"
    assert one(report, "cert.tls.validity")["severity"] == "ok"
    assert one(report, "cert.tls.chain")["severity"] == "ok"
    assert one(report, "cert.tls.names")["severity"] == "ok"
    # hatoba init's private CA: trusted through tls.ca_file only, worth knowing, not critical.
    assert one(report, "cert.tls.trust")["severity"] == "info"
    kinds = {r["kind"] for r in report["dns_records"]}
    assert kinds == {"MX", "SPF", "DMARC", "MTA-STS", "TLS-RPT", "SRV", "TLSA"}
    dkim = one(report, "dns.example.test.dkim-key")
    assert dkim["severity"] == "warning" and "hatoba dkim keygen example.test" in dkim["fix"]


def test_clean_setup_text_report(home, capsys):
    capsys.readouterr()
    code = main(["-c", str(home.config_path), "check", *OFFLINE])
    out = capsys.readouterr().out
    assert code == 0
    for heading in ("== Listeners ==", "== Certificates ==", "== DNS records to publish =="):
        assert heading in out
    assert 'example.test. IN TXT "v=spf1 mx -all"' in out
    assert "example.test. IN MX 10 mail.example.test." in out
    assert "0 critical" in out and "[CRITICAL]" not in out


def test_dkim_key_gives_its_record(home, capsys):
    assert main(["-c", str(home.config_path), "dkim", "keygen", "example.test", "--selector", "s1"]) == 0
    capsys.readouterr()
    _, report = run_check(home, capsys, *OFFLINE)
    assert findings(report, "dns.example.test.dkim-key") == []
    record = next(r for r in report["dns_records"] if r["kind"] == "DKIM")
    assert record["name"] == "s1._domainkey.example.test"
    assert record["value"].startswith("v=DKIM1; k=rsa; p=MII")


def test_expired_certificate(home, capsys):
    ca_key, ca_cert = _home_ca(home)
    key = new_key()
    long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=400)
    _install(home, "expired", key, [_leaf(ca_key, ca_cert, key, days=30, now=long_ago), ca_cert])
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    validity = one(report, "cert.tls.validity")
    assert validity["severity"] == "critical" and "expired" in validity["title"]
    assert "Renew" in validity["fix"]


def test_certificate_expiring_soon_is_a_warning(home, capsys):
    ca_key, ca_cert = _home_ca(home)
    key = new_key()
    _install(home, "soon", key, [_leaf(ca_key, ca_cert, key, days=5), ca_cert])
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 0
    validity = one(report, "cert.tls.validity")
    assert validity["severity"] == "warning" and "expires in 4 days" in validity["title"]


def test_certificate_for_the_wrong_host(home, capsys):
    ca_key, ca_cert = _home_ca(home)
    key = new_key()
    _install(home, "wrong", key, [_leaf(ca_key, ca_cert, key, names=("other.example.net",)), ca_cert])
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    names = one(report, "cert.tls.names")
    assert names["severity"] == "critical"
    assert "does not cover mail.example.test" in names["title"]
    assert "DNS:other.example.net" in names["explanation"]
    assert "mail.example.test" in names["fix"]


def _root_and_intermediate():
    root_key, inter_key = new_key(), new_key()
    root = self_signed_ca(root_key, _name("Test Root"), path_length=None)
    inter = issue_sub_ca(root_key, root, inter_key.public_key(), _name("Test Intermediate"))
    return root, inter_key, inter


def test_missing_intermediate(home, capsys):
    _, inter_key, inter = _root_and_intermediate()
    key = new_key()
    _install(home, "leafonly", key, [_leaf(inter_key, inter, key)])
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    chain = one(report, "cert.tls.chain")
    assert chain["severity"] == "critical"
    assert "intermediate certificate missing" in chain["title"]
    assert "CN=Test Intermediate" in chain["explanation"]
    assert "Append" in chain["fix"]


def test_full_chain_to_a_trusted_root_is_complete(home, capsys):
    root, inter_key, inter = _root_and_intermediate()
    write_cert_chain(home.root / "tls" / "root.crt", [root])
    key = new_key()
    _install(home, "full", key, [_leaf(inter_key, inter, key), inter], extra='ca_file = "tls/root.crt"\n')
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 0, criticals(report)
    assert one(report, "cert.tls.chain")["severity"] == "ok"
    assert one(report, "cert.tls.trust")["severity"] == "info"


def test_rsa_1024_key(home, capsys):
    ca_key, ca_cert = _home_ca(home)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    _install(home, "weak", weak, [_leaf(ca_key, ca_cert, weak), ca_cert])
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    strength = one(report, "cert.tls.key-strength")
    assert strength["severity"] == "critical" and "RSA 1024 bits" in strength["title"]
    assert "new key" in strength["fix"]


def test_key_that_does_not_match(home, capsys):
    ca_key, ca_cert = _home_ca(home)
    key = new_key()
    _install(home, "mismatch", new_key(), [_leaf(ca_key, ca_cert, key), ca_cert])
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    assert one(report, "cert.tls.key")["severity"] == "critical"
    assert one(report, "cert.load")["severity"] == "critical"


# -- listeners and relaying (from the config) ----------------------------------------


@pytest.mark.parametrize("setting", ["[auth]\nplaintext_networks", "[pop3]\nplaintext_auth_networks"])
def test_plaintext_login_on_110_and_143(tmp_path, capsys, setting):
    # The old spelling (pop3.plaintext_auth_networks) is reported under the new name.
    home = make_home(tmp_path / "h", extra_config=f'{setting} = ["0.0.0.0/0"]\n')
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    for name in ("pop3", "imap"):
        finding = one(report, f"listener.{name}.plaintext-login")
        assert finding["severity"] == "critical" and "plaintext login allowed" in finding["title"]
        assert "0.0.0.0/0" in finding["explanation"]
        assert "[auth] plaintext_networks" in finding["explanation"]
        assert finding["fix"].startswith("Empty [auth] plaintext_networks")
    config = one(report, "config.auth.plaintext_networks")
    assert config["severity"] == "critical" and "0.0.0.0/0" in config["title"] + config["explanation"]


def test_plaintext_login_from_loopback_only_is_not_critical(tmp_path, capsys):
    home = make_home(tmp_path / "h", extra_config='[auth]\nplaintext_networks = ["127.0.0.1/32"]\n')
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 0
    assert one(report, "listener.pop3.plaintext-login")["severity"] == "info"


def test_auth_offered_on_25_in_clear(tmp_path, capsys):
    home = make_home(tmp_path / "h", extra_config="[smtp]\nauth_on_smtp_port = true\nallow_plaintext_auth = true\n")
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    auth = one(report, "listener.smtp.auth")
    assert auth["severity"] == "critical" and "AUTH offered in clear text" in auth["title"]
    assert "allow_plaintext_auth" in auth["fix"]


def test_auth_on_25_after_starttls_is_a_warning(tmp_path, capsys):
    home = make_home(tmp_path / "h", extra_config="[smtp]\nauth_on_smtp_port = true\n")
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 0
    assert one(report, "listener.smtp.auth")["severity"] == "warning"


def test_submission_without_starttls_required(tmp_path, capsys):
    # smtp.allow_plaintext_auth is the switch that lifts "STARTTLS required" on 587.
    home = make_home(tmp_path / "h", extra_config="[smtp]\nallow_plaintext_auth = true\n")
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    finding = one(report, "listener.submission.encryption")
    assert finding["severity"] == "critical" and "STARTTLS not required" in finding["title"]
    assert "allow_plaintext_auth" in finding["fix"]
    assert findings(report, "listener.smtp.auth") == []  # no AUTH on 25 without auth_on_smtp_port


@pytest.mark.parametrize("network", ["0.0.0.0/0", "::/0"])
def test_open_relay_by_trusted_network(tmp_path, capsys, network):
    home = make_home(tmp_path / "h", extra_config=f'[smtp]\ntrusted_networks = ["{network}"]\n')
    with pytest.raises(ConfigError, match="open relay"):
        load_config(home.config_path)  # hatoba serve refuses it; check must still report it
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    relay = one(report, "relay.open-network")
    assert relay["severity"] == "critical" and network in relay["title"]
    assert f"Remove {network}" in relay["fix"]
    assert one(report, "config.smtp.trusted_networks")["severity"] == "critical"


@pytest.mark.parametrize(("minutes", "severity", "code"), [(60, "critical", 1), (20, "warning", 0)])
def test_pop_before_smtp(tmp_path, capsys, minutes, severity, code):
    home = make_home(tmp_path / "h", extra_config=f"[smtp]\npop_before_smtp_minutes = {minutes}\n")
    status, report = run_check(home, capsys, *OFFLINE)
    assert status == code
    finding = one(report, "relay.pop-before-smtp")
    assert finding["severity"] == severity and f"{minutes} minutes" in finding["title"]
    assert "pop_before_smtp_minutes = 0" in finding["fix"]


# -- the live open-relay probe ------------------------------------------------------


def _probe(home, srv, capsys) -> tuple[int, dict]:
    return run_check(home, capsys, "--no-dns", "--probe", f"127.0.0.1:{srv.port('smtp')}")


def test_probe_of_a_safe_server(home, capsys):
    with ServerThread(home) as srv:
        code, report = _probe(home, srv, capsys)
    assert code == 0
    result = one(report, "relay-probe.result")
    assert result["severity"] == "ok" and "Not an open relay" in result["title"]
    assert "554" in result["explanation"] and "550" in result["explanation"]
    assert Spool(home.root / "data" / "queue").list_ids() == []


def test_probe_of_a_server_relaying_for_trusted_loopback(tmp_path, capsys):
    home = make_home(tmp_path / "h", extra_config='[smtp]\ntrusted_networks = ["127.0.0.1/32"]\n')
    with ServerThread(home) as srv:
        code, report = _probe(home, srv, capsys)
    result = one(report, "relay-probe.result")
    # The probe's own address is trusted: relaying is what the config asks for, so a warning.
    assert result["severity"] == "warning"
    assert "open relay for 127.0.0.1" in result["title"]
    assert "relay-test@example.com" in result["explanation"]
    assert "percent hack" not in result["explanation"]  # routing tricks stay refused for local domains
    assert code == 0
    assert Spool(home.root / "data" / "queue").list_ids() == []  # no DATA was ever sent


def test_probe_of_a_server_relaying_for_strangers(tmp_path, capsys):
    # POP-before-SMTP opens relaying for 127.0.0.1 after a POP3 login; 127.0.0.1
    # is in no trusted network, so to the probe this is an open relay.
    home = make_home(tmp_path / "h", extra_config="[smtp]\npop_before_smtp_minutes = 10\n")
    with ServerThread(home) as srv:
        pop = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=home.client_context(), timeout=10)
        pop.user("alice@example.test")
        pop.pass_(PASSWORDS["alice@example.test"])
        pop.quit()
        code, report = _probe(home, srv, capsys)
    assert code == 1
    result = one(report, "relay-probe.result")
    assert result["severity"] == "critical" and result["title"].startswith("Open relay")
    assert "pop_before_smtp_minutes = 0" in result["fix"]


def test_probe_skipped_when_port_25_is_not_reachable(tmp_path, capsys):
    home = make_home(tmp_path / "h", port_offset=free_port_offset())
    code, report = run_check(home, capsys, "--no-dns")
    assert code == 0
    skipped = one(report, "relay-probe.unreachable")
    assert skipped["severity"] == "info" and "not reachable" in skipped["title"]


# -- DNS comparison -----------------------------------------------------------------


def test_dns_records_compared_with_what_dns_answers(home, capsys):
    records = {
        "example.test": [("MX", "10 mail.example.test."), ("TXT", "v=spf1 ip4:192.0.2.1 -all")],
        "_mta-sts.example.test": [("TXT", "v=STSv1; id=20240101")],
    }
    with DnsServer(records) as dns:
        _merge_config(home.config_path, f'[dns]\nresolver = "{dns.address}"\n[delivery]\n')
        _, offline = run_check(home, capsys, *OFFLINE)
        tlsa = next(r for r in offline["dns_records"] if r["kind"] == "TLSA")
        dns.add(tlsa["name"], "TLSA", tlsa["value"])
        srv = {r["name"]: r["value"] for r in offline["dns_records"] if r["kind"] == "SRV"}
        imaps_port = srv["_imaps._tcp.example.test"].split()[2]
        assert srv["_imaps._tcp.example.test"] == f"0 1 {imaps_port} mail.example.test."
        dns.add("_imaps._tcp.example.test", "SRV", f"5 0 {imaps_port} MAIL.example.test.")  # own priority: fine
        dns.add("_imap._tcp.example.test", "SRV", "0 1 143 other.example.")  # another host
        code, report = run_check(home, capsys, "--no-live")
    assert code == 0
    status = {r["name"] if r["kind"] == "SRV" else r["kind"]: r["status"] for r in report["dns_records"]}
    assert status == {"MX": "match", "SPF": "mismatch", "DMARC": "missing", "MTA-STS": "match",
                      "TLS-RPT": "missing", "TLSA": "match",
                      "_imaps._tcp.example.test": "match", "_imap._tcp.example.test": "mismatch",
                      "_submissions._tcp.example.test": "missing", "_submission._tcp.example.test": "missing",
                      "_pop3s._tcp.example.test": "missing", "_pop3._tcp.example.test": "missing"}
    assert one(report, "dns.example.test.MX")["severity"] == "ok"
    spf = one(report, "dns.example.test.SPF")
    assert spf["severity"] == "warning" and "v=spf1 ip4:192.0.2.1 -all" in spf["explanation"]
    assert 'example.test. IN TXT "v=spf1 mx -all"' in spf["fix"]
    dmarc = one(report, "dns.example.test.DMARC")
    assert dmarc["severity"] == "warning" and "missing" in dmarc["title"]
    assert one(report, "dns.mail.example.test.TLSA")["severity"] == "ok"
    assert one(report, "dns.example.test.SRV.imaps")["severity"] == "ok"
    assert one(report, "dns.example.test.SRV.imap")["severity"] == "warning"
    assert not [f for f in report["findings"] if f["check"].endswith("mta-sts-mx")]  # the MX is ours


def test_an_mx_the_mta_sts_policy_does_not_name_is_flagged(home, capsys):
    records = {"example.test": [("MX", "10 mail.example.test."), ("MX", "5 backup.example.net.")]}
    with DnsServer(records) as dns:
        _merge_config(home.config_path, f'[dns]\nresolver = "{dns.address}"\n[delivery]\n')
        _, report = run_check(home, capsys, "--no-live")
    finding = one(report, "dns.example.test.mta-sts-mx")
    assert finding["severity"] == "warning" and "backup.example.net" in finding["explanation"]


def test_dns_unreachable_is_one_info_finding(home, capsys):
    _merge_config(home.config_path, '[dns]\nresolver = "127.0.0.1:9"\n')
    code, report = run_check(home, capsys, "--no-live")
    assert code == 0
    assert one(report, "dns.lookup")["severity"] == "info"
    assert {r["status"] for r in report["dns_records"]} == {"unknown"}


# -- the command itself ---------------------------------------------------------------


def test_missing_config_is_a_one_line_error(tmp_path, capsys):
    code = main(["-c", str(tmp_path / "nope.toml"), "check"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "not found" in err and "Traceback" not in err


@pytest.mark.parametrize("broken", ["[server]\nhostname = 3\n", "[server\n", None])
def test_json_on_a_config_that_does_not_load(tmp_path, capsys, broken):
    # Scripts parse stdout whatever happened; the one-line error still goes to stderr.
    path = tmp_path / "hatoba.toml"
    if broken is not None:
        path.write_text(broken)
    code = main(["-c", str(path), "check", "--json", *OFFLINE])
    out, err = capsys.readouterr()
    assert code == 1
    report = json.loads(out)
    assert report["summary"]["critical"] == 1 and report["summary"]["exit_status"] == 1
    finding = one(report, "config.load")
    assert finding["severity"] == "critical" and str(path) in finding["explanation"]
    assert err.count("\n") == 1 and str(path) in err


def test_old_keys_warn_on_stderr_and_json_stays_clean(tmp_path):
    """A config of an earlier version: `check --json` still prints one JSON document on
    stdout; the warnings about its old keys go to stderr, one line each."""
    home = make_home(tmp_path / "h", extra_config=(
        '[pop3]\nplaintext_auth_networks = ["127.0.0.1/32"]\n[limits]\nauth_failures_per_ip = 10\n'
    ))
    run = subprocess.run(
        [sys.executable, "-m", "hatoba", "-c", str(home.config_path), "check", "--json", *OFFLINE],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert one(report, "listener.imap.plaintext-login")["severity"] == "info"
    path = home.config_path
    assert run.stderr.splitlines() == [
        f"{path}: pop3.plaintext_auth_networks is deprecated; rename it to [auth] plaintext_networks "
        "(it covers POP3 110 and IMAP 143)",
        f"{path}: limits.auth_failures_per_ip is ignored; the login throttle is now [auth] "
        "pair_failures/address_failures/account_failures, max_delay and max_block; remove the line",
    ]


def test_critical_text_report_says_what_to_fix(tmp_path, capsys):
    home = make_home(tmp_path / "h", extra_config='[smtp]\ntrusted_networks = ["0.0.0.0/0"]\n')
    capsys.readouterr()
    code = main(["-c", str(home.config_path), "check", *OFFLINE])
    out = capsys.readouterr().out
    assert code == 1
    assert "[CRITICAL]" in out and "Open relay: smtp.trusted_networks holds 0.0.0.0/0" in out
    assert "Fix: Remove 0.0.0.0/0 from smtp.trusted_networks" in out


def test_sni_certificate_must_cover_its_domain(home, capsys):
    # The default certificate (for mail.example.test) reused for example.org: clients asking for it refuse it.
    _merge_config(
        home.config_path,
        '[tls.domains."example.org"]\ncert = "tls/server.crt"\nkey = "tls/server.key"\n',
    )
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    names = one(report, 'cert.tls.domains."example.org".names')
    assert names["severity"] == "critical" and "does not cover example.org" in names["title"]
    assert one(report, "cert.tls.names")["severity"] == "ok"
