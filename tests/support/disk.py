"""File systems for tests: a real small one for a full disk (a tmpfs, mounted and
filled), and a directory where a file's pages can be dropped from the page cache.

Mounting needs root (CAP_SYS_ADMIN): a capability of the machine, not an outside
program, so where it is refused the test is skipped and says why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_disk(path: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of `size` mounted on `path` for the duration; skips the test where mounting is refused."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                              capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount program here")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(folder: Path) -> Path:
    """Write a file in `folder` until its file system has no byte left; returns the file."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return filler


def fs_type(path: Path) -> str:
    """The type of the file system holding `path` (ext4, tmpfs, ...), from /proc/mounts."""
    path = Path(path).resolve()
    best, kind = "", "unknown"
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1].replace("\\040", " ")
        if (path == Path(mount) or Path(mount) in path.parents) and len(mount) >= len(best):
            best, kind = mount, fields[2]
    return kind


def _page_cache_problem(folder: Path, drop_pages: bool) -> str | None:
    """Why reads in `folder` cannot be told not to wait (RWF_NOWAIT), or with `drop_pages`
    why a file's clean pages do not leave memory on POSIX_FADV_DONTNEED; None when all is
    well. A tmpfs refuses RWF_NOWAIT on some kernels and never drops pages."""
    probe = folder / "probe"
    probe.write_bytes(b"x" * 8192)
    fd = os.open(probe, os.O_RDONLY)
    try:
        os.fsync(fd)
        try:
            os.preadv(fd, [bytearray(8192)], 0, os.RWF_NOWAIT)
        except BlockingIOError:
            pass  # not cached after all: reading without waiting is supported
        except OSError as exc:
            return f"reads with RWF_NOWAIT fail ({errno.errorcode.get(exc.errno, exc.errno)})"
        if not drop_pages:
            return None
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        try:
            os.preadv(fd, [bytearray(8192)], 0, os.RWF_NOWAIT)
        except BlockingIOError:
            return None
        return "a file's pages stay in memory after POSIX_FADV_DONTNEED"
    finally:
        os.close(fd)
        probe.unlink()


@contextlib.contextmanager
def nowait_dir(*candidates: Path, drop_pages: bool) -> Iterator[Path]:
    """A new empty directory in the first candidate whose file system reads without waiting
    and, with `drop_pages`, can drop a file from the page cache (see _page_cache_problem);
    removed after. Skips the test, naming each candidate's file system and problem, when
    none can: a limit of the machine, not a missing program."""
    problems = []
    for candidate in candidates:
        try:
            folder = Path(tempfile.mkdtemp(prefix="hatoba-pages-", dir=candidate))
        except OSError as exc:
            problems.append(f"{candidate}: {exc.strerror}")
            continue
        try:
            problem = _page_cache_problem(folder, drop_pages)
            if problem is None:
                yield folder
                return
            problems.append(f"{candidate} ({fs_type(candidate)}): {problem}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    wanted = "reads without waiting and drops a file from the page cache" if drop_pages else "reads without waiting"
    pytest.skip(f"no file system here {wanted}: " + "; ".join(problems))
