"""Started as root, `hatoba serve` refuses in one line, binding nothing, what
cannot run as an unprivileged service: no traceback, exit status 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.harness import TEST_USER, _merge_config, free_port_offset, make_home
from support.service import service_account

from hatoba.system.accounts import useradd_line


def serve(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hatoba", "-c", str(config), "serve"],
                          capture_output=True, text=True, timeout=60)


def refusal(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 1, run.stderr
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith("hatoba: ")
    return run.stderr.removeprefix("hatoba: ").rstrip("\n")


def test_an_instance_under_a_0700_folder_of_roots_is_refused_naming_it(service_dir: Path) -> None:
    service_account()
    locked = service_dir / "locked"  # the user may pass service_dir, not this
    locked.mkdir(mode=0o700)
    home = make_home(locked / "h", port_offset=free_port_offset())
    message = refusal(serve(home.config_path))
    assert message == (
        f"user {TEST_USER} cannot reach {locked} (mode 0700, owner root), on the way to {home.config_path}; "
        f"let it pass (chmod o+x {locked}) or move what it holds elsewhere"
    )


def test_a_key_the_service_user_cannot_read_is_refused(service_dir: Path) -> None:
    service_account()
    home = make_home(service_dir / "h", port_offset=free_port_offset())
    key = home.root / "tls" / "server.key"
    os.chown(key, 0, 0)  # root's: the user could not re-read it on SIGHUP
    message = refusal(serve(home.config_path))
    assert message == (
        f"user {TEST_USER} cannot read {key} (mode 0600, owner root); give it to that user: chown {TEST_USER} {key}"
    )


@pytest.mark.parametrize("user", ["", "root"])
def test_staying_root_needs_allow_root(tmp_path: Path, user: str) -> None:
    service_account()
    home = make_home(tmp_path / "h", port_offset=free_port_offset(), extra_config=f'[server]\nuser = "{user}"\n')
    assert refusal(serve(home.config_path)) == (
        f'started as root with [server] user = "{user}", hatoba would keep running as root; set [server] user = '
        f'"hatoba" (create it with: {useradd_line("hatoba")}), or allow_root = true if you must'
    )


def test_a_missing_user_or_group_is_refused_with_how_to_make_it(tmp_path: Path) -> None:
    service_account()
    home = make_home(tmp_path / "h", port_offset=free_port_offset())
    _merge_config(home.config_path, '[server]\nuser = "hatoba-nobody"\n')
    assert refusal(serve(home.config_path)) == (
        f"[server] user 'hatoba-nobody' does not exist; create it with: {useradd_line('hatoba-nobody')}"
    )
    _merge_config(home.config_path, f'[server]\nuser = "{TEST_USER}"\ngroup = "hatoba-nogroup"\n')
    assert refusal(serve(home.config_path)) == (
        "[server] group 'hatoba-nogroup' does not exist; create it with: groupadd --system hatoba-nogroup, "
        f'or set group = "" for the primary group of {TEST_USER}'
    )


def test_a_secrets_key_that_is_no_key_is_refused(tmp_path: Path) -> None:
    # Past the service checks (kept as root here), at the start of the server itself.
    extra = '[server]\nuser = ""\nallow_root = true\n' if os.geteuid() == 0 else ""
    home = make_home(tmp_path / "h", port_offset=free_port_offset(), extra_config=extra)
    key = home.root / "data" / "secrets.key"  # APOP's secrets (on by default)
    key.write_text("!" * 44 + "\n")
    assert refusal(serve(home.config_path)) == f"{key} is not a secrets key; restore it from a backup"
