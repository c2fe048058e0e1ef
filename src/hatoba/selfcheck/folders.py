"""The folders that hold mail: the data folder, the mail store and the queue.

hatoba init makes them 0700, but a folder that already existed keeps the
mode it had. Like Postfix's queue and Dovecot's mail root they must be the
server's alone: whoever can write there can plant, swap or delete mail (and
point names elsewhere with symlinks); whoever can enter them reads it.
"""

from __future__ import annotations

import stat
from pathlib import Path

from hatoba.config.schema import Config
from hatoba.selfcheck.findings import Finding


def folder_findings(config: Config) -> list[Finding]:
    paths = config.paths
    folders = [("data", paths.data_dir), ("mail", paths.mail_dir), ("queue", paths.queue_dir)]
    return [_mode(name, path) for name, path in folders if path.is_dir()]


def _mode(name: str, path: Path) -> Finding:
    mode = stat.S_IMODE(path.stat().st_mode)
    check = f"files.{name}.mode"
    if mode & 0o022:
        who = "every user of this machine" if mode & 0o002 else "its group"
        return Finding(
            "files", check, "critical", f"{path} can be written by others (mode {mode:04o})",
            f"{who[0].upper()}{who[1:]} can create, replace or delete files in it, and so plant, swap or "
            "destroy mail and the server's data.",
            f"chmod 700 {path}",
        )
    if mode & 0o005:
        return Finding(
            "files", check, "warning", f"{path} can be read by every user (mode {mode:04o})",
            "Any user of this machine can list it and read the mail and data it holds.",
            f"chmod 700 {path}",
        )
    return Finding("files", check, "ok", f"{path}: mode {mode:04o}", "No one but its owner can change it.")
