"""The systemd unit shipped in the package, as `hatoba init --system` writes it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.peers import require

from hatoba.system.unit import hatoba_command, render_unit, shipped_unit

WHY = "Debian package systemd; scripts/install-test-peers.sh installs it"


def settings(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_the_shipped_unit_is_a_hardened_notify_service() -> None:
    unit = settings(shipped_unit())
    assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"]
    assert unit["ExecStart"] == ["/usr/local/bin/hatoba -c /etc/hatoba/hatoba.toml serve"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert "User" not in unit  # hatoba drops root itself, after binding (see docs/decisions.md)
    assert set(unit["CapabilityBoundingSet"][0].split()) == {
        "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_DAC_READ_SEARCH"}
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ReadWritePaths", "/var/lib/hatoba"),
                       ("PrivateTmp", "yes"), ("ProtectHome", "yes"), ("LockPersonality", "yes")]:
        assert unit[key] == [value], key
    assert set(unit["RestrictAddressFamilies"][0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}


def test_the_installed_unit_names_this_installation(tmp_path: Path) -> None:
    text = render_unit(["/opt/hatoba 1/bin/hatoba"], tmp_path / "etc" / "hatoba.toml", tmp_path / "data 100%")
    unit = settings(text)
    assert unit["ExecStart"] == [f"'/opt/hatoba 1/bin/hatoba' -c {tmp_path}/etc/hatoba.toml serve"]
    assert unit["ReadWritePaths"] == [f"'{tmp_path}/data 100%%'"]  # systemd's specifier escaped
    assert shipped_unit().count("\n") == text.count("\n")  # nothing else changed


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = require("systemd-analyze", WHY)
    unit = tmp_path / "hatoba.service"  # verify wants the program ExecStart names to exist
    unit.write_text(render_unit(hatoba_command(), Path("/etc/hatoba/hatoba.toml"), Path("/var/lib/hatoba")))
    run = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    ours = [line for line in (run.stdout + run.stderr).splitlines() if "hatoba" in line]
    assert run.returncode == 0 and ours == [], run.stdout + run.stderr
