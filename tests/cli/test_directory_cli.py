"""`hatoba domain|user|alias` run as a real program: output, exit status, one-line errors."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hatoba.store.directory import Directory

CONFIG = """\
[server]
hostname = "mail.example.test"

[listeners.smtp]
address = "127.0.0.1:20025"
enabled = true

[tls]
cert = "tls/server.crt"
key = "tls/server.key"

[paths]
data_dir = "data"
"""


class Home:
    """A hand-written config in a temporary folder and a way to run hatoba on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.config = root / "hatoba.toml"
        self.config.write_text(CONFIG)
        (root / "tls").mkdir()
        self.db = root / "data" / "directory.sqlite3"

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hatoba", "-c", str(self.config), *args],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        result = self.run(*args, stdin=stdin)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        return result.stdout

    def fails(self, *args: str, stdin: str | None = None) -> str:
        """Run a command that must be refused; return its one-line message."""
        result = self.run(*args, stdin=stdin)
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("hatoba: "), result.stderr
        return lines[0].removeprefix("hatoba: ")


@pytest.fixture
def home(tmp_path: Path) -> Home:
    home = Home(tmp_path / "hatoba")
    _make_tls_files(home.root / "tls")
    return home


def _make_tls_files(folder: Path) -> None:
    """A real self-signed certificate, in case the config loader checks it."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.example.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("mail.example.test")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (folder / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (folder / "server.key").chmod(0o600)


def test_domain_add_list_remove(home: Home) -> None:
    assert home.ok("domain", "list") == ""
    assert home.db.stat().st_mode & 0o777 == 0o600
    assert home.ok("domain", "add", "Example.ORG") == "added domain example.org\n"
    assert home.ok("domain", "add", "example.test") == "added domain example.test\n"
    assert home.fails("domain", "add", "example.org") == "example.org is already a local domain"
    assert "is not a valid domain name" in home.fails("domain", "add", "bad_name!")
    assert home.ok("domain", "list") == "example.org\nexample.test\n"
    assert home.ok("domain", "remove", "example.test") == "removed domain example.test\n"
    assert home.fails("domain", "remove", "example.test") == (
        "example.test is not a local domain: add it first with `hatoba domain add example.test`"
    )
    assert home.ok("domain", "list") == "example.org\n"


def test_user_add_passwd_remove_list_with_password_stdin(home: Home) -> None:
    password, new_password = "first-secret-1", "second-secret-2"
    assert home.fails("user", "add", "alice@example.org", "--password-stdin", stdin=password + "\n") == (
        "example.org is not a local domain: add it first with `hatoba domain add example.org`"
    )
    home.ok("domain", "add", "example.org")
    home.ok("domain", "add", "example.test")
    out = home.ok("user", "add", "Alice@Example.ORG", "--password-stdin", stdin=password + "\n")
    assert out == "added user Alice@example.org\n"
    assert password not in out
    assert home.ok("user", "add", "bob@example.test", "--password-stdin", stdin=password) == (
        "added user bob@example.test\n"
    )
    with Directory(home.db) as directory:
        assert directory.verify_password("alice@example.org", password)
        assert directory.verify_password("bob@example.test", password)  # no newline needed

    assert "already exists" in home.fails("user", "add", "alice@example.org", "--password-stdin", stdin=password)
    assert home.fails("user", "add", "carol@example.org") == (
        "standard input is not a terminal: use --password-stdin and write the password to it"
    )
    assert home.fails("user", "add", "carol@example.org", "--password-stdin", stdin="") == (
        "no password on standard input; write it as one line"
    )
    assert "too short" in home.fails("user", "add", "carol@example.org", "--password-stdin", stdin="short\n")
    assert "may not hold '%'" in home.fails("user", "add", "a%b@example.org", "--password-stdin", stdin=password)
    assert home.ok("user", "list") == "Alice@example.org\nbob@example.test\n"
    assert home.ok("user", "list", "example.test") == "bob@example.test\n"

    out = home.ok("user", "passwd", "alice@example.org", "--password-stdin", stdin=new_password + "\n")
    assert out == "changed the password of Alice@example.org\n"
    with Directory(home.db) as directory:
        assert directory.verify_password("alice@example.org", new_password)
        assert not directory.verify_password("alice@example.org", password)
    assert home.fails("user", "passwd", "nobody@example.org", "--password-stdin", stdin=new_password) == (
        "no user nobody@example.org; see `hatoba user list`"
    )

    assert home.ok("user", "remove", "ALICE@example.org") == (
        "removed user Alice@example.org (its stored mail was left in place)\n"
    )
    assert home.fails("user", "remove", "alice@example.org") == "no user alice@example.org; see `hatoba user list`"
    assert home.ok("user", "list", "example.org") == ""
    assert "still has 1 user" in home.fails("domain", "remove", "example.test")


def test_alias_add_list_remove(home: Home) -> None:
    home.ok("domain", "add", "example.org")
    home.ok("user", "add", "alice@example.org", "--password-stdin", stdin="alice-password-1")
    out = home.ok("alias", "add", "team@example.org", "alice@example.org, Bob@Elsewhere.example")
    assert out == "alias team@example.org -> alice@example.org, Bob@elsewhere.example\n"
    home.ok("alias", "add", "@example.org", "alice@example.org")
    home.ok("alias", "add", "a@example.org", "b@example.org", "c@elsewhere.example")
    assert "already had every target" in home.ok("alias", "add", "a@example.org", "B@example.org")
    assert home.ok("alias", "list") == (
        "@example.org alice@example.org\n"
        "a@example.org b@example.org,c@elsewhere.example\n"
        "team@example.org alice@example.org,Bob@elsewhere.example\n"
    )
    assert home.fails("alias", "add", "b@example.org", "a@example.org") == (
        "alias b@example.org -> a@example.org refused (alias loop b@example.org -> a@example.org -> "
        "b@example.org); change or remove one of those aliases"
    )
    assert "is a user" in home.fails("alias", "add", "alice@example.org", "x@elsewhere.example")
    assert "not a local domain" in home.fails("alias", "add", "x@elsewhere.example", "alice@example.org")
    assert "give at least one target" in home.fails("alias", "add", "x@example.org", ",")

    assert home.ok("alias", "remove", "team@example.org", "bob@elsewhere.example") == (
        "removed bob@elsewhere.example from alias team@example.org\n"
    )
    assert "is not a target of alias team@example.org" in home.fails(
        "alias", "remove", "team@example.org", "bob@elsewhere.example"
    )
    assert home.ok("alias", "remove", "team@example.org") == "removed alias team@example.org\n"
    assert home.fails("alias", "remove", "team@example.org") == "no alias team@example.org; see `hatoba alias list`"
    assert home.ok("alias", "list") == (
        "@example.org alice@example.org\na@example.org b@example.org,c@elsewhere.example\n"
    )


def test_missing_action_and_missing_config(home: Home, tmp_path: Path) -> None:
    for noun, actions in (("domain", "add|remove|list"), ("user", "add|passwd|apop|quota|forward|remove|list"), ("alias", "add|remove|list")):
        assert home.fails(noun) == f"give an action: hatoba {noun} {actions} (see --help)"
    result = subprocess.run(
        [sys.executable, "-m", "hatoba", "-c", str(tmp_path / "missing.toml"), "domain", "list"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def _run_on_terminal(home: Home, args: list[str], answers: list[str]) -> subprocess.CompletedProcess[str]:
    """Run hatoba with a pseudo-terminal as stdin and type each answer after its prompt."""
    controller, terminal = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hatoba", "-c", str(home.config), *args],
        stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,  # no controlling terminal: getpass prompts on stderr, reads the pty
    )
    os.close(terminal)
    assert proc.stderr is not None
    seen = b""
    try:
        for answer in answers:
            # getpass flushes pending input when it switches echo off, so
            # each answer is typed only once its prompt has appeared.
            deadline = time.monotonic() + 30
            while not seen.rstrip().endswith(b":"):
                ready, _, _ = select.select([proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
                assert ready, f"no prompt, got {seen!r}"
                chunk = os.read(proc.stderr.fileno(), 1024)
                assert chunk, f"hatoba exited early: {seen!r}"
                seen += chunk
            seen = b""
            time.sleep(0.05)
            os.write(controller, answer.encode() + b"\n")
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        os.close(controller)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout.decode(), stderr.decode())


def test_password_typed_twice_at_a_terminal(home: Home) -> None:
    home.ok("domain", "add", "example.org")
    result = _run_on_terminal(home, ["user", "add", "carol@example.org"], ["terminal-pass-1", "terminal-pass-1"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "added user carol@example.org\n"
    assert "terminal-pass-1" not in result.stderr  # echo was off
    with Directory(home.db) as directory:
        assert directory.verify_password("carol@example.org", "terminal-pass-1")

    result = _run_on_terminal(home, ["user", "passwd", "carol@example.org"], ["new-pass-one", "new-pass-two"])
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "hatoba: the two passwords differ; nothing was changed, try again"
    assert "Traceback" not in result.stderr
    with Directory(home.db) as directory:
        assert directory.verify_password("carol@example.org", "terminal-pass-1")
