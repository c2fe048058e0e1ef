"""Certificate dates in the pki code: `hatoba cert verify`, `cert show` and `cert import`
name an expired or not-yet-valid certificate. Certificates are made with the
`cryptography` library (no openssl command), so these run everywhere.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from test_cert_cli import hatoba  # noqa: F401 (fixture)

from hatoba.pki.bundle import split_bundle
from hatoba.pki.ca import cert_to_pem, issue_leaf, issue_sub_ca, self_signed_ca
from hatoba.pki.checks import check_validity
from hatoba.pki.csr import common_name, subject_names
from hatoba.pki.keyfiles import new_key
from hatoba.pki.keys import key_to_pem

HOST = "mail.example.test"
DAY = datetime.timedelta(days=1)
NOW = datetime.datetime.now(datetime.timezone.utc)


@pytest.fixture(scope="module")
def ca():
    root_key, inter_key = new_key(), new_key()
    root = self_signed_ca(root_key, common_name("Dates Root"), path_length=None, now=NOW - 1000 * DAY, days=3650)
    inter = issue_sub_ca(root_key, root, inter_key.public_key(), common_name("Dates Intermediate"),
                         now=NOW - 900 * DAY, days=1825)
    return root, inter_key, inter


def leaf(ca, *, start: datetime.datetime, days: int):
    _, inter_key, inter = ca
    key = new_key()
    cert = issue_leaf(inter_key, inter, key.public_key(), common_name(HOST), subject_names(HOST, []), days=days, now=start)
    return key, cert


def test_check_validity_names_expired_not_yet_valid_and_days_left(ca):
    _, expired = leaf(ca, start=NOW - 40 * DAY, days=30)
    _, future = leaf(ca, start=NOW + 3 * DAY, days=30)
    _, current = leaf(ca, start=NOW, days=30)
    verdict = check_validity(expired, NOW)
    assert not verdict.ok and verdict.detail.startswith("EXPIRED 10 days ago") and "issue a new certificate" in verdict.fix
    verdict = check_validity(future, NOW)
    assert not verdict.ok and verdict.detail.startswith("not valid until") and "date -u" in verdict.fix
    verdict = check_validity(current, NOW)
    assert verdict.ok and "(29 days left)" in verdict.detail
    # The same certificate, judged at other times: the dates decide, not the moment it was made.
    assert not check_validity(current, NOW + 31 * DAY).ok
    assert not check_validity(current, NOW - 2 * DAY).ok


def write(path: Path, *certs) -> Path:
    path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certs))
    return path


@pytest.mark.parametrize(
    ("start", "days", "line"),
    [
        (NOW - 40 * DAY, 30, f"FAIL validity of CN={HOST}: EXPIRED 10 days ago"),
        (NOW + 3 * DAY, 30, f"FAIL validity of CN={HOST}: not valid until"),
    ],
)
def test_cert_verify_fails_on_dates(ca, tmp_path, hatoba, start, days, line):  # noqa: F811
    root, _, inter = ca
    key, cert = leaf(ca, start=start, days=days)
    result = hatoba("cert", "verify", write(tmp_path / "leaf.crt", cert), "--chain", write(tmp_path / "i.crt", inter),
                    "--ca-file", write(tmp_path / "root.crt", root), "--host", HOST)
    assert result.code == 1, result.out
    assert line in result.out
    assert "ok   validity of CN=Dates Intermediate" in result.out


def test_cert_verify_passes_a_current_chain(ca, tmp_path, hatoba):  # noqa: F811
    root, _, inter = ca
    _, cert = leaf(ca, start=NOW, days=30)
    result = hatoba("cert", "verify", write(tmp_path / "leaf.crt", cert), "--chain", write(tmp_path / "i.crt", inter),
                    "--ca-file", write(tmp_path / "root.crt", root), "--host", HOST)
    assert result.code == 0, result.out
    assert f"ok   validity of CN={HOST}: valid until" in result.out


def test_cert_show_says_expired(ca, tmp_path, hatoba):  # noqa: F811
    _, cert = leaf(ca, start=NOW - 40 * DAY, days=30)
    result = hatoba("cert", "show", write(tmp_path / "old.crt", cert))
    assert result.code == 0 and "(EXPIRED 10 days ago)" in result.out


@pytest.mark.parametrize(
    ("start", "words"),
    [(NOW - 40 * DAY, "expired on"), (NOW + 3 * DAY, "is valid only from")],
)
def test_import_bundle_warns_about_dates(ca, start, words):
    root, _, inter = ca
    key, cert = leaf(ca, start=start, days=30)
    data = key_to_pem(key) + cert_to_pem(cert) + cert_to_pem(inter) + cert_to_pem(root)
    bundle = split_bundle(data, "bundle.pem", now=NOW)
    assert [w for w in bundle.warnings if f"CN={HOST}" in w and words in w], bundle.warnings


def test_import_bundle_has_no_date_warning_for_a_current_chain(ca):
    root, _, inter = ca
    key, cert = leaf(ca, start=NOW, days=30)
    data = key_to_pem(key) + cert_to_pem(cert) + cert_to_pem(inter) + cert_to_pem(root)
    assert split_bundle(data, "bundle.pem", now=NOW).warnings == []
