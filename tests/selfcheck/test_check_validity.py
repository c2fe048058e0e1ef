"""`hatoba check` on certificate dates: expired, not yet valid, expiring soon, for the server
certificate and for a CA certificate in its chain. Certificates are made with the
`cryptography` library; no outside program.

Helpers and fixtures come from test_check.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from test_check import OFFLINE, _home_ca, _install, _leaf, _name, findings, home, one, run_check  # noqa: F401

from hatoba.pki.ca import issue_sub_ca
from hatoba.pki.keyfiles import new_key, signature_hash
from hatoba.selfcheck.certificates import EXPIRY_WARNING_DAYS

HOST = "mail.example.test"
DAY = datetime.timedelta(days=1)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def install_leaf(home, name: str, *, days: int, start: datetime.datetime | None = None) -> None:
    """A server certificate from hatoba init's CA, issued at `start` (default now) for `days`."""
    ca_key, ca_cert = _home_ca(home)
    key = new_key()
    _install(home, name, key, [_leaf(ca_key, ca_cert, key, days=days, now=start), ca_cert])


def validity(report: dict) -> list[dict]:
    found = findings(report, "cert.tls.validity")
    assert found, [f["check"] for f in report["findings"]]
    return found


def test_expired_certificate_is_critical_and_says_when(home, capsys):
    install_leaf(home, "expired", days=30, start=now() - 40 * DAY)
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    (finding,) = validity(report)
    assert finding["severity"] == "critical" and finding["title"] == "tls: certificate expired"
    assert "expired 10 days ago" in finding["explanation"] and "clients refuse it" in finding["explanation"]


def test_not_yet_valid_certificate_is_critical_and_points_at_the_clock(home, capsys):
    install_leaf(home, "future", days=90, start=now() + 3 * DAY)
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    (finding,) = validity(report)
    assert finding["severity"] == "critical" and finding["title"] == "tls: certificate not yet valid"
    assert "valid only from" in finding["explanation"] and "date -u" in finding["fix"]


def test_expiring_within_the_warning_window_is_a_warning_and_outside_it_is_ok(home, capsys):
    install_leaf(home, "soon", days=EXPIRY_WARNING_DAYS - 4)
    code, report = run_check(home, capsys, *OFFLINE)
    (finding,) = validity(report)
    assert code == 0  # a warning, not yet a failure
    assert finding["severity"] == "warning"
    assert finding["title"] == f"tls: certificate expires in {EXPIRY_WARNING_DAYS - 5} days"
    assert "Renew it now" in finding["fix"]

    install_leaf(home, "later", days=EXPIRY_WARNING_DAYS + 6)
    code, report = run_check(home, capsys, *OFFLINE)
    (finding,) = validity(report)
    assert finding["severity"] == "ok" and finding["title"] == f"tls: valid for {EXPIRY_WARNING_DAYS + 5} more days"


def _chain_with_intermediate(home, name: str, *, inter_start: datetime.datetime, inter_days: int) -> None:
    """root (hatoba init's CA) -> an intermediate with the given dates -> a leaf valid now for 60 days."""
    root_key, root = _home_ca(home)
    inter_key, key = new_key(), new_key()
    inter = issue_sub_ca(root_key, root, inter_key.public_key(), _name("Dated Intermediate"),
                         days=inter_days, now=inter_start)
    # Built by hand: issue_leaf would cap the leaf at the intermediate's end.
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(HOST)).issuer_name(inter.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now() - DAY).not_valid_after(now() + 60 * DAY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(inter_key, signature_hash(inter_key))
    )
    _install(home, name, key, [leaf, inter, root])


def test_an_expired_intermediate_is_critical_though_the_leaf_is_valid(home, capsys):
    _chain_with_intermediate(home, "oldinter", inter_start=now() - 100 * DAY, inter_days=30)
    code, report = run_check(home, capsys, *OFFLINE)
    assert code == 1
    titles = {f["title"]: f["severity"] for f in validity(report)}
    assert titles == {"tls: CA certificate CN=Dated Intermediate expired": "critical", "tls: valid for 59 more days": "ok"}


def test_an_intermediate_expiring_soon_is_a_warning(home, capsys):
    _chain_with_intermediate(home, "soonint", inter_start=now(), inter_days=5)
    code, report = run_check(home, capsys, *OFFLINE)
    titles = {f["title"]: f["severity"] for f in validity(report)}
    assert code == 0
    assert titles == {"tls: CA certificate CN=Dated Intermediate expires in 4 days": "warning",
                      "tls: valid for 59 more days": "ok"}
