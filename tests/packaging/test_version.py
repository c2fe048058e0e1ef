"""One version everywhere: the package, its metadata, `hatoba --version` and the changelog."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

import hatoba
from hatoba.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def changelog_versions() -> list[str]:
    """The section names of CHANGELOG.md ("Unreleased", "0.1.0", ...), newest first."""
    text = (ROOT / "CHANGELOG.md").read_text()
    return re.findall(r"^## \[([^\]]+)\]", text, flags=re.MULTILINE)


def test_version_is_a_release_number() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?", hatoba.__version__), hatoba.__version__


def test_pyproject_takes_the_version_from_the_package() -> None:
    # A second literal version in pyproject.toml could disagree with hatoba.__version__.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "hatoba.__version__"}


def test_changelog_has_an_entry_for_this_version() -> None:
    versions = changelog_versions()
    assert versions and versions[0] == "Unreleased", "CHANGELOG.md starts with an Unreleased section"
    assert hatoba.__version__ in versions, f"CHANGELOG.md has no section ## [{hatoba.__version__}]"


def test_version_option_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"hatoba {hatoba.__version__}"
