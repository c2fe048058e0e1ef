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
from hatoba.i18n import T
from hatoba.selfcheck.findings import Finding


def folder_findings(config: Config) -> list[Finding]:
    paths = config.paths
    folders = [("data", paths.data_dir), ("mail", paths.mail_dir), ("queue", paths.queue_dir)]
    return [_mode(name, path) for name, path in folders if path.is_dir()]


def _mode(name: str, path: Path) -> Finding:
    mode = stat.S_IMODE(path.stat().st_mode)
    check = f"files.{name}.mode"
    octal = f"{mode:04o}"
    if mode & 0o022:
        if mode & 0o002:
            explanation = T("Every user of this machine can create, replace or delete files in it, and so plant, "
                            "swap or destroy mail and the server's data.")
        else:
            explanation = T("Its group can create, replace or delete files in it, and so plant, swap or "
                            "destroy mail and the server's data.")
        return Finding(
            "files", check, "critical",
            T("%(path)s can be written by others (mode %(mode)s)", path=str(path), mode=octal),
            explanation, T("chmod 700 %(path)s", path=str(path)),
        )
    if mode & 0o005:
        return Finding(
            "files", check, "warning",
            T("%(path)s can be read by every user (mode %(mode)s)", path=str(path), mode=octal),
            T("Any user of this machine can list it and read the mail and data it holds."),
            T("chmod 700 %(path)s", path=str(path)),
        )
    return Finding("files", check, "ok", T("%(path)s: mode %(mode)s", path=str(path), mode=octal),
                   T("No one but its owner can change it."))
