"""postmaster@ every local domain, the bare <Postmaster> and abuse@ are
always accepted (RFC 5321 §4.5.1, RFC 2142), alias or not."""

from __future__ import annotations

import json
import smtplib
from pathlib import Path

import pytest

from support.harness import HatobaHome, ServerThread, _merge_config

from hatoba.cli.main import main
from hatoba.store.directory import Directory


def fresh_home(root: Path, *users: str) -> HatobaHome:
    """`hatoba init` and users, no alias at all."""
    assert main(["init", str(root), "--hostname", "mail.example.test", "--domain", "example.test"]) == 0
    directory = Directory(root / "data" / "directory.sqlite3")
    for user in users:
        directory.add_user(user, f"{user}-password-1")
    directory.close()
    return HatobaHome(root, root / "hatoba.toml")


def send(server: ServerThread, rcpt: str, subject: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as c:
        c.ehlo("client.example")
        c.mail("someone@elsewhere.example")
        code, text = c.rcpt(rcpt)
        if code == 250:
            c.data(f"From: someone@elsewhere.example\r\nSubject: {subject}\r\n\r\nhello\r\n".encode())
        return code, text


def test_role_addresses_reach_the_first_user_after_init(tmp_path):
    home = fresh_home(tmp_path / "hatoba", "alice@example.test", "bob@example.test")
    with ServerThread(home) as server:
        for n, rcpt in enumerate(["<postmaster@example.test>", "<Postmaster>", "<POSTMASTER>",
                                  "<abuse@example.test>"], start=1):
            assert send(server, rcpt, f"role {n}")[0] == 250, rcpt
            assert len(home.wait_messages("alice@example.test", n)) == n
    assert home.messages("bob@example.test") == []


def test_configured_postmaster_and_an_alias_that_overrides_it(tmp_path):
    home = fresh_home(tmp_path / "hatoba", "alice@example.test", "bob@example.test")
    _merge_config(home.config_path, '[server]\npostmaster = "bob@example.test"\n')
    directory = Directory(home.root / "data" / "directory.sqlite3")
    directory.add_alias("abuse@example.test", ["alice@example.test"])
    directory.close()
    with ServerThread(home) as server:
        assert send(server, "<postmaster@example.test>", "to bob")[0] == 250
        assert send(server, "<abuse@example.test>", "to alice")[0] == 250
        assert b"Subject: to bob" in home.wait_messages("bob@example.test", 1)[0]
        assert b"Subject: to alice" in home.wait_messages("alice@example.test", 1)[0]


def test_other_unknown_users_are_still_refused(tmp_path):
    home = fresh_home(tmp_path / "hatoba", "alice@example.test")
    with ServerThread(home) as server:
        assert send(server, "<nobody@example.test>", "x")[0] == 550


def check_postmaster(home: HatobaHome, capsys) -> dict:
    capsys.readouterr()
    main(["-c", str(home.config_path), "check", "--json", "--no-live", "--no-dns"])
    report = json.loads(capsys.readouterr().out)
    [found] = [f for f in report["findings"] if f["check"] == "config.postmaster"]
    return found


@pytest.mark.parametrize("postmaster, users, severity", [
    ("", [], "critical"),  # no user yet: postmaster@ goes nowhere
    ("nobody@example.test", ["alice@example.test"], "critical"),
    ("", ["alice@example.test"], "ok"),
    ("alice@example.test", ["alice@example.test"], "ok"),
])
def test_check_reports_a_postmaster_without_mailbox(tmp_path, capsys, postmaster, users, severity):
    home = fresh_home(tmp_path / "hatoba", *users)
    _merge_config(home.config_path, f'[server]\npostmaster = "{postmaster}"\n')
    assert check_postmaster(home, capsys)["severity"] == severity


def test_postmaster_that_is_no_address_is_refused_by_validation(tmp_path):
    from hatoba.config.load import ConfigError

    home = fresh_home(tmp_path / "hatoba", "alice@example.test")
    _merge_config(home.config_path, '[server]\npostmaster = "not an address"\n')
    with pytest.raises(ConfigError, match="server.postmaster: 'not an address' is not an address"):
        home.config()
