"""Records the file-system calls that make data durable, in the order they run.

A kill -9 test cannot see a missing fsync (the page cache outlives a killed
process); this record can. `record(monkeypatch)` patches the os module itself,
so every caller is seen whichever way it imported hatoba.fsutil.fsync_dir
(which calls os.fsync on a folder descriptor):

    os.fsync, os.fdatasync  "sync-start" and "sync" (when it returned), with the
                            descriptor's path read from /proc at call time,
                            whether it is a folder, and a file's size then
    os.rename, os.replace   "rename"/"replace" (path -> target, size of path)
    os.link, os.unlink      "link"/"unlink"
    FsOrder.mark(label)     "mark": the test's own points ("returned")

Paths are real paths (symlinks resolved), as /proc gives them.
"""

from __future__ import annotations

import itertools
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Call:
    op: str
    path: str
    target: str = ""
    folder: bool = False
    size: int = -1
    serial: int = 0  # pairs a "sync-start" with its "sync"


def real(path: object) -> str:
    return os.path.realpath(os.fspath(path))  # type: ignore[arg-type]


class FsOrder:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._serials = itertools.count(1)
        # Called (in the syncing thread) with the index of a folder fsync's "sync-start"
        # before it runs: a test holds one there to make other work overlap it.
        self.before_folder_sync: Callable[[int], None] | None = None

    def add(self, call: Call) -> int:
        with self._lock:
            self.calls.append(call)
            return len(self.calls) - 1

    def mark(self, label: str) -> int:
        return self.add(Call("mark", label))

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()

    def dump(self) -> str:
        return "\n".join(
            f"  {i}: {c.op} {c.path}" + (f" -> {c.target}" if c.target else "") + (" (folder)" if c.folder else "")
            for i, c in enumerate(self.calls)
        )

    def index(self, op: str, path: object, target: object = None) -> int:
        """The one call `op` on `path` (-> `target`); fails when there is none or several."""
        want, to = real(path), None if target is None else real(target)
        found = [i for i, c in enumerate(self.calls) if c.op == op and c.path == want and (to is None or c.target == to)]
        assert len(found) == 1, f"expected one {op} of {want}{' -> ' + to if to else ''}, found {len(found)}:\n{self.dump()}"
        return found[0]

    def temp_of(self, final: object, *, op: str = "replace", after: int = -1) -> str:
        """The temporary file the first `op` after call `after` moved onto `final`.

        Checks that it was named as `write_atomic` names one: hidden, beside `final`."""
        want = real(final)
        found = [c.path for i, c in enumerate(self.calls) if i > after and c.op == op and c.target == want]
        assert found, f"no {op} onto {want} after call {after}:\n{self.dump()}"
        tmp = Path(found[0])
        assert tmp.parent == Path(want).parent and tmp.name.startswith(f".{Path(want).name}.") \
            and tmp.name.endswith(".tmp"), f"{tmp} is not a temporary file of {want}"
        return found[0]

    def file_synced_before(self, path: object, before: int, size: int) -> None:
        """The data of file `path` was fsynced before call `before`, once all `size` bytes were written."""
        want = real(path)
        syncs = [i for i, c in enumerate(self.calls[:before]) if c.op == "sync" and not c.folder and c.path == want]
        assert syncs, f"{want} was not fsynced before call {before}:\n{self.dump()}"
        got = self.calls[syncs[-1]].size
        assert got == size, f"{want} was fsynced at {got} bytes, before its last write ({size} bytes):\n{self.dump()}"

    def folder_synced_between(self, folder: object, after: int, before: int) -> None:
        """A fsync of `folder` started after call `after` and returned before call `before`."""
        want = real(folder)
        starts = {c.serial: i for i, c in enumerate(self.calls) if c.op == "sync-start" and c.folder and c.path == want}
        for i, c in enumerate(self.calls):
            if c.op == "sync" and c.folder and c.path == want and starts.get(c.serial, -1) > after and i < before:
                return
        raise AssertionError(
            f"no fsync of folder {want} started after call {after} and returned before call {before}:\n{self.dump()}"
        )

    def put_durably(self, tmp: object, final: object, done: int, *, op: str = "rename", after: int | None = None) -> int:
        """`tmp` was written and fsynced, then renamed to `final`, whose folder was fsynced, all before `done`.

        The rename is the only one of `tmp` to `final`, or with `after`, the first
        after that call. Returns its index.
        """
        if after is None:
            moved = self.index(op, tmp, final)
        else:
            found = [i for i, c in enumerate(self.calls)
                     if i > after and c.op == op and c.path == real(tmp) and c.target == real(final)]
            assert found, f"no {op} of {tmp} -> {final} after call {after}:\n{self.dump()}"
            moved = found[0]
        assert moved < done, f"{tmp} was renamed into place after the operation returned:\n{self.dump()}"
        self.file_synced_before(tmp, moved, self.calls[moved].size)
        self.folder_synced_between(Path(final).parent, moved, done)
        return moved


def _describe(fd: int) -> tuple[str, bool, int]:
    st = os.fstat(fd)
    return os.readlink(f"/proc/self/fd/{fd}"), stat.S_ISDIR(st.st_mode), st.st_size


def record(monkeypatch: pytest.MonkeyPatch) -> FsOrder:
    """Start recording (until the test ends); returns the record."""
    rec = FsOrder()
    real_fsync, real_fdatasync = os.fsync, os.fdatasync
    real_rename, real_replace, real_link, real_unlink = os.rename, os.replace, os.link, os.unlink

    def syncer(real_call):  # type: ignore[no-untyped-def]
        def sync(fd):  # type: ignore[no-untyped-def]
            fd = fd if isinstance(fd, int) else fd.fileno()
            path, folder, size = _describe(fd)
            serial = next(rec._serials)
            started = rec.add(Call("sync-start", path, folder=folder, size=size, serial=serial))
            if folder and rec.before_folder_sync is not None:
                rec.before_folder_sync(started)
            result = real_call(fd)
            rec.add(Call("sync", path, folder=folder, size=size, serial=serial))
            return result

        return sync

    def mover(op, real_call):  # type: ignore[no-untyped-def]
        def move(src, dst, *args, **kw):  # type: ignore[no-untyped-def]
            try:
                size = os.stat(src).st_size
            except OSError:
                size = -1
            result = real_call(src, dst, *args, **kw)
            rec.add(Call(op, real(src), real(dst), size=size))
            return result

        return move

    def unlink(path, *args, **kw):  # type: ignore[no-untyped-def]
        result = real_unlink(path, *args, **kw)
        rec.add(Call("unlink", real(path)))
        return result

    monkeypatch.setattr(os, "fsync", syncer(real_fsync))
    monkeypatch.setattr(os, "fdatasync", syncer(real_fdatasync))
    monkeypatch.setattr(os, "rename", mover("rename", real_rename))
    monkeypatch.setattr(os, "replace", mover("replace", real_replace))
    monkeypatch.setattr(os, "link", mover("link", real_link))
    monkeypatch.setattr(os, "unlink", unlink)
    return rec
