"""`hatoba restore DIR`: a backup (manifest.py) put back as the instance a config file names.

Rules:
- The backup is checked against its manifest before anything is written.
- Restore makes an instance where there is none: the config file, a data
  folder with anything in it, or any other file it would write is in the
  way. With `force` what is in the way is moved aside
  (NAME.before-restore-TIME), never deleted.
- Where things go: the config to FILE; files from the config's folder into
  FILE's folder; files from outside it to the same absolute path (left
  alone where they are already there as they were: a system CA bundle, say);
  the data folder where the restored config puts it (relative: beside FILE).
- The config is written last, as `hatoba init` does: a restore that fails
  leaves no config to start half an instance with; what it wrote is removed
  and what it moved aside is put back.
- The directory database is opened once, which migrates an older schema.
- Every folder gets a new UIDVALIDITY unless `keep_uidvalidity` (see
  store/uidlist.py renew_uidvalidity, docs/decisions.md).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from hatoba.fsutil import fsync_dir
from hatoba.queue.snapshot import is_queued_message
from hatoba.store.api import DirectoryError
from hatoba.store.backup import DATABASE
from hatoba.store.directory import SCHEMA_VERSION, Directory
from hatoba.store.folder_tree import renew_uidvalidities
from hatoba.store.manifest import Manifest, read_manifest, sha256_of, verify
from hatoba.store.snapshot import BackupError, Copier, copy_tree, explained, is_message


@dataclass
class Restored:
    manifest: Manifest
    config_file: Path
    data_dir: Path
    moved_aside: list[tuple[Path, Path]]  # (what was in the way, where it is now)
    renewed: int | None  # folders given a new UIDVALIDITY; None when kept
    links: int
    copies: int


@dataclass
class _Undo:
    """What a failed restore takes back: files and folders it made, things it moved aside."""

    made: list[Path] = field(default_factory=list)
    filled: Path | None = None  # an empty data folder that was there and got files
    moved: list[tuple[Path, Path]] = field(default_factory=list)  # (original place, aside)

    def run(self) -> None:
        for path in reversed(self.made):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        if self.filled is not None:
            for entry in os.scandir(self.filled):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
        for original, aside in reversed(self.moved):
            try:
                os.rename(aside, original)
            except OSError:
                pass  # best effort: the error that made us undo is the one to report


def restore_backup(backup: Path, config_file: Path, *, force: bool = False,
                   keep_uidvalidity: bool = False) -> Restored:
    backup = Path(os.path.abspath(backup))
    manifest = read_manifest(backup)
    schema = int(manifest.directory["schema_version"])
    if schema > SCHEMA_VERSION:
        raise BackupError(
            f"{backup} was made by hatoba {manifest.hatoba}, whose directory database (schema {schema}) "
            f"is newer than this hatoba knows ({SCHEMA_VERSION}); restore it with that version or later"
        )
    verify(backup, manifest)
    config_file = Path(os.path.abspath(config_file))
    root = config_file.parent
    data_dir = Path(os.path.abspath(root / manifest.data_dir))  # an absolute data_dir stays as it is
    plan = [(place, target) for place, target in _plan(manifest, root, data_dir)
            if not (place.startswith("outside/") and _same_file(target, manifest.files[place]))]
    if backup == data_dir or backup.is_relative_to(data_dir):
        raise BackupError(f"{backup} is inside the data folder {data_dir} it would restore: move the backup elsewhere first")
    in_the_way = _in_the_way(config_file, data_dir, plan)
    if in_the_way and not force:
        raise BackupError(
            f"{in_the_way[0]} already exists; restore makes an instance where there is none: "
            "move it away, or add --force to have restore move it aside"
        )
    undo = _Undo()
    copier = Copier()
    try:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for path in in_the_way:
            aside = path.with_name(f"{path.name}.before-restore-{stamp}")
            with explained(f"cannot move {path} aside"):
                os.rename(path, aside)
            undo.moved.append((path, aside))
        _restore_data(backup, manifest, data_dir, plan, copier, undo)
        try:
            Directory(data_dir / DATABASE).close()  # migrates an older schema now, not at the first start
        except DirectoryError as exc:
            raise BackupError(f"the restored directory database does not open: {exc}") from None
        renewed = None
        if not keep_uidvalidity:
            with explained("cannot give the restored folders a new UIDVALIDITY"):
                renewed = renew_uidvalidities(data_dir / "mail") if (data_dir / "mail").is_dir() else 0
        with explained("cannot restore the instance's files"):
            _ensure_folder(root, None, copier, undo)
            for place, target in plan:
                if not place.startswith("data/"):
                    _ensure_folder(target.parent, (backup / place).parent, copier, undo)
                    copier.copy(backup / place, target)
                    undo.made.append(target)
            copier.finish()
        with explained(f"cannot write {config_file}"):
            copier.copy(backup / manifest.config, config_file)
            undo.made.append(config_file)
            fsync_dir(root)
    except BaseException:
        undo.run()
        raise
    return Restored(manifest, config_file, data_dir, [(a, b) for a, b in undo.moved], renewed,
                    copier.links, copier.copies)


def _plan(manifest: Manifest, root: Path, data_dir: Path) -> list[tuple[str, Path]]:
    """(place in the backup, where it goes) for every listed file but the config."""
    plan = []
    for place in sorted(manifest.files):
        if place == manifest.config:
            continue
        area, _, rest = place.partition("/")
        if area == "instance":
            plan.append((place, root / rest))
        elif area == "outside":
            plan.append((place, Path("/" + rest)))
        else:
            plan.append((place, data_dir / rest))
    return plan


def _same_file(path: Path, entry: dict[str, object]) -> bool:
    try:
        return path.stat().st_size == entry["size"] and sha256_of(path) == entry["sha256"]
    except OSError:
        return False


def _in_the_way(config_file: Path, data_dir: Path, plan: list[tuple[str, Path]]) -> list[Path]:
    found = [config_file] if config_file.exists() or config_file.is_symlink() else []
    if data_dir.exists() and (not data_dir.is_dir() or any(os.scandir(data_dir))):
        found.append(data_dir)
    for place, target in plan:
        if not place.startswith("data/") and (target.exists() or target.is_symlink()):
            found.append(target)
    return found


def _restore_data(backup: Path, manifest: Manifest, data_dir: Path, plan: list[tuple[str, Path]],
                  copier: Copier, undo: _Undo) -> None:
    with explained(f"cannot restore into {data_dir}"):
        if data_dir.is_dir():
            undo.filled = data_dir
        else:
            _ensure_folder(data_dir.parent, None, copier, undo)
            copier.folder(data_dir, like=backup / "data")
            undo.made.append(data_dir)
        # The messages as links where the backup is on the same file system: neither
        # side ever writes into a message file.
        for area in ("queue", "mail"):
            if (backup / "data" / area).is_dir():
                copy_tree(backup / "data" / area, data_dir / area, copier, _immutable)
        for place, target in plan:
            if place.startswith("data/"):
                _ensure_folder(target.parent, (backup / place).parent, copier, undo)
                copier.copy(backup / place, target)


def _immutable(path: Path) -> bool:
    return is_message(path) or is_queued_message(path)


def _ensure_folder(folder: Path, like: Path | None, copier: Copier, undo: _Undo) -> None:
    """Make `folder` and missing parents, each like the backup's folder at that place (else 0755)."""
    if folder.is_dir():
        return
    _ensure_folder(folder.parent, like.parent if like is not None else None, copier, undo)
    copier.folder(folder, like=like, mode=0o755)
    undo.made.append(folder)
