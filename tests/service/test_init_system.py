"""`hatoba init --system --root DIR`: /etc/hatoba, /var/lib/hatoba and the unit,
laid out under a temporary root, with their owners and modes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from support.harness import TEST_USER

from hatoba.cli.main import main
from hatoba.config.load import load_config
from hatoba.system.unit import hatoba_command, render_unit


def owner_mode(path: Path) -> tuple[str, int]:
    import pwd

    st = path.lstat()
    return pwd.getpwuid(st.st_uid).pw_name, stat.S_IMODE(st.st_mode)


def init_system(root: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    status = main(["init", "--system", "--root", str(root), "--hostname", "mail.example.test", *extra])
    out, err = capsys.readouterr()
    return status, out, err


def test_system_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "sysroot"
    old = os.umask(0)  # modes must not depend on the operator's umask
    try:
        status, out, err = init_system(root, capsys, "--domain", "example.test", "--user", TEST_USER)
    finally:
        os.umask(old)
    assert (status, err) == (0, "")
    etc, data = root / "etc" / "hatoba", root / "var" / "lib" / "hatoba"
    unit = root / "etc" / "systemd" / "system" / "hatoba.service"
    assert "systemctl daemon-reload && systemctl enable --now hatoba" in out and "journalctl -u hatoba" in out

    config = load_config(etc / "hatoba.toml")
    assert config.paths.data_dir == data and config.server.user == TEST_USER
    assert config.tls.key == etc / "tls" / "server.key"
    assert unit.read_text() == render_unit(hatoba_command(), etc / "hatoba.toml", data)

    service = TEST_USER if os.geteuid() == 0 else None  # who owns what is root's to decide
    expected = {
        etc: ("root", 0o755),
        etc / "hatoba.toml": ("root", 0o640),
        etc / "tls": (service, 0o700),
        etc / "tls" / "ca.key": ("root", 0o600),  # the server never needs the CA's key
        etc / "tls" / "server.key": (service, 0o600),
        etc / "tls" / "server.crt": (service, 0o644),
        etc / "tls" / "ca.crt": (service, 0o644),
        data: (service, 0o700),
        data / "mail": (service, 0o700),
        data / "queue": (service, 0o700),
        data / "directory.sqlite3": (service, 0o600),
        unit: ("root", 0o644),
        unit.parent: ("root", 0o755),
    }
    for path, (owner, mode) in expected.items():
        got_owner, got_mode = owner_mode(path)
        assert got_mode == mode, (path, oct(got_mode))
        if os.geteuid() == 0:
            assert got_owner == owner, (path, got_owner)
    if os.geteuid() == 0:
        import grp

        assert grp.getgrgid((etc / "hatoba.toml").stat().st_gid).gr_name == TEST_USER  # the user's group reads it


def test_never_overwrites_and_keeps_an_existing_unit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "sysroot"
    unit = root / "etc" / "systemd" / "system" / "hatoba.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    status, out, _ = init_system(root, capsys, "--user", TEST_USER)
    assert status == 0 and f"kept {unit} as it is" in out
    assert unit.read_text() == "[Service]\nExecStart=/bin/true\n"
    status, out, err = init_system(root, capsys, "--user", TEST_USER)
    assert status == 1 and out == ""
    assert err == f"hatoba: {root}/etc/hatoba/hatoba.toml already exists; hatoba init never overwrites a setup\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--system", "DIR"], "give DIR or --system, not both"),
    (["--root", "ROOT"], "--root goes with --system; for a setup in a folder, give DIR"),
    ([], "give a folder for the setup (hatoba init DIR --hostname HOST), or --system"),
    (["--system", "--root", "ROOT", "--user", "root"], "--user root would keep hatoba running as root"),
])
def test_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    args = [str(tmp_path / a) if a in ("DIR", "ROOT") else a for a in args]
    assert main(["init", *args, "--hostname", "mail.example.test"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"hatoba: {message}") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
