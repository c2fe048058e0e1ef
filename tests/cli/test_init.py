"""`hatoba init`: the files it makes, their modes, the config it writes, and its refusals."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hatoba.cli.main import main
from hatoba.config.load import load_config
from hatoba.config.schema import STANDARD_PORTS
from hatoba.pki.ca import load_certs
from hatoba.pki.tlsctx import server_context
from hatoba.store.directory import Directory

SERVING = {"smtp", "submission", "smtps", "pop3", "pop3s", "imap", "imaps"}


def init(root: Path, *extra: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(["init", str(root), "--hostname", "mail.example.test", *extra])
    out, err = capsys.readouterr()
    return status, out, err


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_a_private_working_setup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "h"
    old = os.umask(0)  # the modes must not depend on the operator's umask
    try:
        status, out, err = init(root, "--domain", "Example.TEST", capsys=capsys)
    finally:
        os.umask(old)
    assert (status, err) == (0, "")
    assert f"created {root}/hatoba.toml" in out
    assert f"hatoba -c {root}/hatoba.toml user add you@example.test" in out

    assert mode(root / "tls") == 0o700
    assert mode(root / "tls" / "ca.key") == 0o600
    assert mode(root / "tls" / "server.key") == 0o600
    assert mode(root / "tls" / "ca.crt") == 0o644
    for folder in ("data", "data/mail", "data/queue"):
        assert mode(root / folder) == 0o700, folder
    assert mode(root / "data" / "directory.sqlite3") == 0o600
    with Directory(root / "data" / "directory.sqlite3") as directory:
        assert directory.list_domains() == ["example.test"]

    ca_cert = load_certs(root / "tls" / "ca.crt")
    chain = load_certs(root / "tls" / "server.crt")
    assert len(chain) == 2 and chain[1] == ca_cert[0]  # leaf first, then the CA
    chain[0].verify_directly_issued_by(ca_cert[0])

    config = load_config(root / "hatoba.toml")
    assert config.server.hostname == "mail.example.test"
    assert config.paths.data_dir == root / "data"
    assert config.tls.ca_file == root / "tls" / "ca.crt"
    for name, port in STANDARD_PORTS.items():
        listener = config.listeners[name]
        assert (listener.host, listener.port) == ("0.0.0.0", port)
        assert listener.enabled == (name in SERVING), name
    server_context(config.tls)  # the key and the chain load together


def test_existing_loose_folders_are_tightened(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "h"
    for folder in ("data", "data/queue"):
        (root / folder).mkdir(parents=True)
        os.chmod(root / folder, 0o1777)
    status, out, _ = init(root, capsys=capsys)
    assert status == 0
    for folder in ("data", "data/mail", "data/queue"):
        assert mode(root / folder) == 0o700, folder
    assert f"tightened {root / 'data' / 'queue'} from mode 1777 to 0700" in out


def test_port_offset_binds_loopback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = init(tmp_path / "h", "--port-offset", "10000", capsys=capsys)
    assert status == 0
    assert "smtp 127.0.0.1:10025, submission 127.0.0.1:10587, smtps 127.0.0.1:10465" in out
    assert "imaps 127.0.0.1:10993 (http, https: off)" in out
    assert "domain add" in out  # no --domain: the first step is adding one
    config = load_config(tmp_path / "h" / "hatoba.toml")
    assert {name: (lc.host, lc.port) for name, lc in config.listeners.items()} == {
        name: ("127.0.0.1", port + 10000) for name, port in STANDARD_PORTS.items()
    }
    assert not config.listeners["http"].enabled and not config.listeners["https"].enabled
    assert config.listeners["http"].port == 10080 and config.listeners["https"].port == 10443
    assert all(config.listeners[name].enabled for name in ("smtp", "submission", "smtps", "pop3", "pop3s", "imap", "imaps"))
    with Directory(config.paths.directory_db) as directory:
        assert directory.list_domains() == []


def test_bind_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert init(tmp_path / "a", "--port-offset", "10000", "--bind", "::1", capsys=capsys)[0] == 0
    listener = load_config(tmp_path / "a" / "hatoba.toml").listeners["submission"]
    assert (listener.host, listener.port) == ("::1", 10587)
    assert '"[::1]:10587"' in (tmp_path / "a" / "hatoba.toml").read_text()
    assert init(tmp_path / "b", "--port-offset", "0", capsys=capsys)[0] == 0
    assert load_config(tmp_path / "b" / "hatoba.toml").listeners["smtp"].host == "0.0.0.0"


def test_never_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "h"
    assert init(root, capsys=capsys)[0] == 0
    before = {p: p.read_bytes() for p in (root / "tls").iterdir()}
    status, out, err = init(root, "--domain", "example.test", capsys=capsys)
    assert status == 1 and out == ""
    assert err == f"hatoba: {root}/hatoba.toml already exists; hatoba init never overwrites a setup\n"
    assert {p: p.read_bytes() for p in (root / "tls").iterdir()} == before


def test_failed_init_leaves_nothing_and_can_be_retried(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "h"
    (root / "tls").mkdir(parents=True)
    (root / "tls" / "server.key").write_text("an operator's own key\n")
    status, _, err = init(root, "--domain", "example.test", capsys=capsys)
    assert status == 1
    assert err == (
        f"hatoba: {root}/tls/server.key already exists; hatoba init never overwrites keys or "
        f"certificates: move {root}/tls away and run it again\n"
    )
    # What this run made is gone; what was there before is untouched.
    assert sorted(p.name for p in root.rglob("*")) == ["server.key", "tls"]
    assert (root / "tls" / "server.key").read_text() == "an operator's own key\n"
    (root / "tls" / "server.key").unlink()
    assert init(root, "--domain", "example.test", capsys=capsys)[0] == 0
    assert load_config(root / "hatoba.toml").server.hostname == "mail.example.test"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hostname", "mail_1.example"], "--hostname: 'mail_1.example' is not a valid DNS name"),
        (["--hostname", "192.0.2.1"], "--hostname: '192.0.2.1' is an IP address"),
        (["--hostname", "mail.example", "--domain", "bad domain"], "--domain: 'bad domain' is not a valid domain name"),
        (["--hostname", "mail.example", "--port-offset", "70000"], "--port-offset: 70000 must be from 0 to 64540"),
        (["--hostname", "mail.example", "--bind", "localhost"], "--bind: 'localhost' is not an IP address"),
    ],
)
def test_bad_arguments_create_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], args, message) -> None:
    status = main(["init", str(tmp_path / "h"), *args])
    out, err = capsys.readouterr()
    assert status == 1 and out == ""
    assert err.startswith(f"hatoba: {message}") and err.count("\n") == 1
    assert not (tmp_path / "h").exists()


def test_as_a_program(tmp_path: Path) -> None:
    """The real command line: exit status, one-line error, no traceback."""
    run = lambda: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "hatoba", "init", str(tmp_path / "h"), "--hostname", "mail.example.test"],
        capture_output=True, text=True, timeout=60,
    )
    first = run()
    assert first.returncode == 0 and first.stderr == ""
    second = run()
    assert second.returncode == 1 and second.stdout == ""
    assert second.stderr.splitlines() == [
        f"hatoba: {tmp_path}/h/hatoba.toml already exists; hatoba init never overwrites a setup"
    ]


def test_the_certificate_names_the_web_names_and_the_crl_on_the_offset_port(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography import x509

    status, _, _ = init(tmp_path / "h", "--port-offset", "10000", "--domain", "example.org", capsys=capsys)
    assert status == 0
    cert = x509.load_pem_x509_certificates((tmp_path / "h" / "tls" / "server.crt").read_bytes())[0]
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert {"autoconfig.example.org", "mta-sts.example.org"} <= set(names)
    [point] = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert point.full_name[0].value.endswith(":10080/crl/ca.crl")
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 398
