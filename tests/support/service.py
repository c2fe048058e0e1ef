"""Running hatoba as its service user in tests: the account, folders it may
pass, and what /proc says each process runs as.

Started as root, `hatoba serve` drops to [server] user (support.harness.TEST_USER
for homes made as root) and refuses to start when that user cannot reach its
config, data or interpreter. pytest's temporary folders are root's and 0700,
and every pytest run tightens them again when it starts (another run may
start while a test runs): homes served as the user live in `service_dir`, a
folder of their own in /tmp. The interpreter may live under /root: `open_for`
lets the user pass (search permission only, o+x, as tests/interop/postfix_peer.py
does for Postfix) and puts the modes back afterwards.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.harness import TEST_USER

from hatoba.config.schema import ServerConfig
from hatoba.system.accounts import ensure_user
from hatoba.system.privileges import ServiceUser, service_user
from hatoba.system.reach import program_needs

NEEDS_ROOT = "only root can start hatoba so that it drops to its service user"


def service_account() -> ServiceUser:
    """The unprivileged test user (created if missing); skips the test when not root."""
    if os.geteuid() != 0:
        pytest.skip(NEEDS_ROOT)
    ensure_user(TEST_USER)
    user = service_user(ServerConfig(hostname="-", user=TEST_USER))
    assert user is not None and user.uid != 0
    return user


@pytest.fixture
def service_dir() -> Iterator[Path]:
    """An empty folder the service user may pass (root's, 0711), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="hatoba-service-"))
    os.chmod(folder, 0o711)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def reachable_dir(tmp_path: Path) -> Iterator[Path]:
    """Where a home served by `hatoba serve` lives: as root, a folder of its own the
    service user may pass (the server drops to it, and `hatoba cert acme` run as root
    becomes it), with the interpreter reachable; as any other user, tmp_path."""
    if os.geteuid() != 0:
        yield tmp_path
        return
    service_account()
    folder = Path(tempfile.mkdtemp(prefix="hatoba-home-"))
    os.chmod(folder, 0o711)
    try:
        with open_for():
            yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def open_for(*paths: Path) -> Iterator[None]:
    """Every root-owned folder in `paths` or above them (and the interpreter's) that
    others cannot pass gets o+x for the duration; the old modes come back after."""
    changed: list[tuple[Path, int]] = []
    targets = [Path(p) for p in paths] + [path for path, _ in program_needs()]
    for target in targets:
        target = Path(os.path.abspath(target))
        for folder in [*reversed(target.parents), *([target] if target.is_dir() else [])]:
            st = folder.stat()
            if st.st_uid == 0 and not st.st_mode & stat.S_IXOTH:
                changed.append((folder, stat.S_IMODE(st.st_mode)))
                os.chmod(folder, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
    try:
        yield
    finally:
        for folder, mode in reversed(changed):
            os.chmod(folder, mode)


@dataclass(frozen=True)
class Credentials:
    uids: tuple[int, ...]  # real, effective, saved, file system
    gids: tuple[int, ...]
    groups: tuple[int, ...]


def credentials(pid: int) -> dict[int, Credentials]:
    """The ids of every thread of process `pid`, from /proc/PID/task/TID/status."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = {}
        for line in (task / "status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                fields[key] = tuple(int(v) for v in value.split())
        if "Uid" in fields:
            found[int(task.name)] = Credentials(fields["Uid"], fields["Gid"], fields.get("Groups", ()))
    return found


def blocked_signals(pid: int) -> int:
    """The signal mask of process `pid`'s main thread (SigBlk in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no SigBlk for {pid}")


def children(pid: int) -> list[int]:
    """The process ids whose parent is `pid`."""
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_line = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        if int(stat_line.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry.name))
    return kids
