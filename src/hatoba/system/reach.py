"""Can the service user reach what hatoba needs? Asked as that user.

A forked child becomes the user and tries each path with access(2), so
modes, ACLs and read-only mounts count exactly as they will after start-up.
The answer names the first folder the user cannot pass (an instance under
a 0700 folder of root's) or the first file it cannot use, in one line.

Rules:
- Only root can ask about another user; the child never returns to the caller's code.
- Folders are checked from / down: the first one refused is the one to fix.
"""

from __future__ import annotations

import os
import pwd
import stat
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

from hatoba.system.privileges import PrivilegeError, ServiceUser, drop

Need = tuple[Path, int]  # a path and the access(2) mode needed on it

_WORDS = {os.R_OK: "read", os.R_OK | os.W_OK: "write", os.R_OK | os.X_OK: "read",
          os.R_OK | os.W_OK | os.X_OK: "write in", os.X_OK: "run"}


def program_needs() -> list[Need]:
    """What the interpreter needs to go on after the drop: itself, the standard
    library, the installed packages and hatoba (modules load as they are used)."""
    import hatoba

    folders = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    folders.add(str(Path(hatoba.__file__).parent))
    needs: list[Need] = [(Path(os.path.realpath(sys.executable)), os.X_OK)]
    needs += [(Path(folder), os.R_OK | os.X_OK) for folder in sorted(folders) if os.path.isdir(folder)]
    return needs


def unreachable(user: ServiceUser, needs: Iterable[Need]) -> str | None:
    """One line about the first need `user` cannot meet, or None. Needs root."""
    needs = [(Path(os.path.abspath(path)), mode) for path, mode in needs]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child; its answer is what the tests see)
        status = 1
        try:
            os.close(read_end)
            drop(user)
            os.write(write_end, (first_problem(user.name, needs) or "").encode("utf-8", "replace"))
            status = 0
        except PrivilegeError as exc:
            os.write(write_end, str(exc).encode())
        except BaseException as exc:  # noqa: BLE001 - the child must never return into the caller
            os.write(write_end, f"cannot check what user {user} can reach: {exc}".encode())
        finally:
            os._exit(status)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode("utf-8", "replace") or None


def first_problem(name: str, needs: Iterable[Need]) -> str | None:
    """As the user itself: the first folder it cannot pass or file it cannot use."""
    for path, mode in needs:
        for folder in reversed(path.parents):
            if not os.access(folder, os.X_OK):
                return (
                    f"user {name} cannot reach {folder} ({_describe(folder)}), on the way to {path}; "
                    f"let it pass (chmod o+x {folder}) or move what it holds elsewhere"
                )
        if not os.path.lexists(path):
            continue  # whoever needs it says so
        if not os.access(path, mode):
            word = _WORDS.get(mode, "use")
            return f"user {name} cannot {word} {path} ({_describe(path)}); give it to that user: chown {name} {path}"
    return None


def _describe(path: Path) -> str:
    try:
        st = os.stat(path)
    except OSError as exc:
        return exc.strerror or "cannot be read"
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    return f"mode {stat.S_IMODE(st.st_mode):04o}, owner {owner}"
