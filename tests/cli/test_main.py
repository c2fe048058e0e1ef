"""The `hatoba` command line: which command modules a run loads."""

from __future__ import annotations

import json
import subprocess
import sys

from hatoba.cli.main import SUBCOMMAND_MODULES, _module_of


def loaded_after_parsing(argv: list[str] | None) -> list[str]:
    """The command modules in memory once build_parser(argv) has run, in a fresh interpreter."""
    code = (
        "import json, sys\n"
        "from hatoba.cli.main import SUBCOMMAND_MODULES, build_parser\n"
        f"build_parser({argv!r})\n"
        "print(json.dumps([m for m in SUBCOMMAND_MODULES if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def test_a_command_loads_its_own_module_only():
    # serve runs for months: what the other commands use stays out of its memory.
    assert loaded_after_parsing(["-c", "/etc/hatoba/hatoba.toml", "serve", "--debug"]) == ["hatoba.cli.serve"]
    importing = loaded_after_parsing(["--config=x.toml", "import", "dovecot"])
    assert "hatoba.cli.importing" in importing  # what it imports itself comes along
    assert "hatoba.cli.serve" not in importing and len(importing) < len(SUBCOMMAND_MODULES)


def test_help_and_unknown_commands_see_every_command():
    assert loaded_after_parsing(None) == list(SUBCOMMAND_MODULES)
    assert _module_of([]) is None and _module_of(["--help"]) is None and _module_of(["bogus"]) is None
    assert _module_of(["-c", "serve"]) is None  # "serve" is the config file's name there
    out = subprocess.run([sys.executable, "-m", "hatoba", "bogus"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "'import'" in out.stderr and "'serve'" in out.stderr
