"""The systemd unit: the one shipped in the package, made for this installation.

hatoba.service beside this module is the unit as a distribution would ship
it (/usr/local/bin/hatoba, /etc/hatoba, /var/lib/hatoba); `hatoba init
--system` writes it with the program, config and data folder of the
installation at hand, and changes nothing else.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from importlib import resources
from pathlib import Path

UNIT_NAME = "hatoba.service"


def shipped_unit() -> str:
    return resources.files("hatoba.system").joinpath(UNIT_NAME).read_text(encoding="utf-8")


def hatoba_command() -> list[str]:
    """How to run this hatoba: its console script beside the interpreter, else on PATH, else `python -m hatoba`."""
    beside = Path(sys.executable).parent / "hatoba"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("hatoba")
    if found:
        return [str(Path(found).absolute())]
    return [sys.executable, "-m", "hatoba"]


def render_unit(command: list[str], config: Path, data_dir: Path) -> str:
    """The shipped unit with ExecStart running `command` on `config`, and `data_dir` writable."""
    lines = []
    for line in shipped_unit().splitlines():
        if line.startswith("ExecStart="):
            line = "ExecStart=" + _words([*command, "-c", str(config), "serve"], dollar=True)
        elif line.startswith("ReadWritePaths="):
            line = "ReadWritePaths=" + _words([str(data_dir)])
        lines.append(line)
    return "\n".join(lines) + "\n"


def _words(words: list[str], *, dollar: bool = False) -> str:
    """Words quoted as systemd reads them: shell-like quotes, "%" doubled (its
    specifiers) and, in command lines, "$" doubled (its variables)."""
    def escape(word: str) -> str:
        word = word.replace("%", "%%")
        return word.replace("$", "$$") if dollar else word

    return " ".join(shlex.quote(escape(w)) for w in words)
