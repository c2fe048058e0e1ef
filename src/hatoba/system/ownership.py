"""Giving the data folder back to the service user.

Commands run as root (`hatoba user add`, `dkim keygen`, imports) make files
owned by root in the data folder, which the service user could then not
read or replace. Started as root, `serve` walks the data folder before it
drops root and gives every entry that is not the user's to it, as `postfix
set-permissions` does for the queue. Symbolic links are changed themselves,
never followed, so a link planted in the folder cannot hand out other files.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def give_to(root: Path, uid: int, gid: int) -> int:
    """Chown `root` and everything under it to uid:gid where it differs; how many entries changed."""
    changed = 0
    root = Path(os.path.realpath(root))  # the configured folder may be a link; what it holds is walked
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        return 0
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(root, uid, gid, follow_symlinks=False)
        changed += 1
    if not stat.S_ISDIR(st.st_mode):
        return changed
    folders = [root]
    while folders:
        folder = folders.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if (st.st_uid, st.st_gid) != (uid, gid):
                    os.chown(entry.path, uid, gid, follow_symlinks=False)
                    changed += 1
                if stat.S_ISDIR(st.st_mode):
                    folders.append(Path(entry.path))
    return changed
