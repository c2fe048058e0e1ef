"""`hatoba check` on who the server runs as: root is critical, a missing service user too."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from support.harness import _merge_config, make_home

from hatoba.cli.main import main
from hatoba.config.schema import Config
from hatoba.selfcheck.service import service_findings


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return make_home(tmp_path_factory.mktemp("check-service") / "h").config()


def finding(config: Config, euid: int, **server: object) -> tuple[str, str]:
    changed = dataclasses.replace(config, server=dataclasses.replace(config.server, **server))
    [found] = service_findings(changed, euid=euid)
    assert found.check == "service.user"
    return found.severity, found.title


@pytest.mark.parametrize("euid", [0, 1000])
def test_allow_root_with_no_user_is_critical(config: Config, euid: int) -> None:
    assert finding(config, euid, user="", allow_root=True) == ("critical", "hatoba runs as root when started as root")
    assert finding(config, euid, user="root", allow_root=True)[0] == "critical"


def test_no_user_while_root_is_critical_else_worth_knowing(config: Config) -> None:
    assert finding(config, 0, user="") == ("critical", "Started as root, hatoba refuses to start")
    assert finding(config, 1000, user="") == ("info", "Runs as the user who starts it")


def test_a_missing_user_or_group(config: Config) -> None:
    assert finding(config, 0, user="hatoba-nobody") == ("critical", "Service user hatoba-nobody does not exist")
    assert finding(config, 1000, user="hatoba-nobody")[0] == "warning"
    assert finding(config, 0, user="nobody", group="hatoba-nogroup") == (
        "critical", "Service group hatoba-nogroup does not exist")
    assert finding(config, 0, user="nobody", group="root")[0] == "critical"


def test_an_unprivileged_user_is_fine(config: Config) -> None:
    severity, title = finding(config, 0, user="nobody")
    assert severity == "ok" and title.startswith("Runs as user nobody")


def test_check_exits_1_for_allow_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = make_home(tmp_path / "h")
    _merge_config(home.config_path, '[server]\nuser = ""\nallow_root = true\n')
    capsys.readouterr()
    code = main(["-c", str(home.config_path), "check", "--json", "--no-live", "--no-dns"])
    report = json.loads(capsys.readouterr().out)
    [found] = [f for f in report["findings"] if f["check"] == "service.user"]
    assert code == 1 and found["severity"] == "critical" and found["section"] == "service"
    assert 'Set [server] user = "hatoba"' in found["fix"]
