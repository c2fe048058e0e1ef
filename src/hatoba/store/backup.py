"""`hatoba backup DIR`: a consistent copy of an instance while it serves (layout in manifest.py).

The order of the steps is what makes the copy consistent (docs/decisions.md):

1. the config, certificates and keys, and the small files of the data folder;
2. the queue: a message leaves the queue only after it is in every mailbox,
   so each message acknowledged before this step is in the copy of the queue
   or in the mailboxes copied next;
3. the mail store, a user at a time (snapshot.py: links, renames followed);
4. the directory database, last: every user and alias that mail in the copy
   was accepted for is in it, users added meanwhile too.

Then every folder of the backup is fsynced and the manifest written; a
folder without a manifest is no backup, and a failed backup removes what it
wrote (on a full disk that space is wanted back).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hatoba import __version__
from hatoba.config.schema import Config
from hatoba.queue.snapshot import copy_queue
from hatoba.store.manifest import COUNTED, Manifest, file_entry, sha256_of, tally, write_manifest
from hatoba.store.snapshot import BackupError, Copier, copy_database, copy_mail, explained

DATABASE = "directory.sqlite3"
# SQLite's own files beside the database: the online backup reads through them.
_DATABASE_FILES = frozenset(DATABASE + suffix for suffix in ("", "-wal", "-shm", "-journal"))
# Config keys that name files, and whether a backup takes them (a test checks that
# every key of the schema naming a file is in one of the two).
BACKED_UP_KEYS = frozenset({
    "tls.cert", "tls.key", "tls.ca_file", "tls.domains.cert", "tls.domains.key",
    "delivery.relayhost_password_file", "paths.data_dir", "acme.ca_file", "acme.dns_update.tsig_key",
})
LEFT_OUT_KEYS = frozenset({"log.file"})  # a log is not state: the new instance starts its own


@dataclass
class Made:
    manifest: Manifest
    links: int
    copies: int
    seconds: float


def make_backup(config: Config, dest: Path) -> Made:
    started = time.monotonic()
    if config.config_path is None:
        raise BackupError("the config was not read from a file; name it with -c FILE")
    config_file = config.config_path.absolute()
    dest = Path(os.path.abspath(dest))
    named, folders = instance_files(config)
    _check_destination(dest, [config.paths.data_dir, *folders])
    created = _prepare(dest)
    copier = Copier()
    try:
        manifest = _copy_everything(config, config_file, named, dest, copier)
        with explained("cannot finish the backup"):
            copier.finish()
            write_manifest(dest, manifest)
    except BaseException:
        _remove(dest, created)
        raise
    return Made(manifest, copier.links, copier.copies, time.monotonic() - started)


def instance_files(config: Config) -> tuple[list[Path], list[Path]]:
    """(the files of the instance outside its data folder, the folders taken whole).

    The config file and every file it names; a key's own folder inside the
    config's folder is taken whole, since `hatoba init` keeps the private CA's
    key there without naming it in the config.
    """
    assert config.config_path is not None
    config_file = config.config_path.absolute()
    root = config_file.parent
    tls = config.tls
    named = [tls.cert, tls.key, tls.ca_file]
    for domain in tls.domains.values():
        named += [domain.cert, domain.key]
    if config.delivery.relayhost_password_file:
        named.append(root / Path(config.delivery.relayhost_password_file).expanduser())
    named += [config.acme.ca_file, config.acme.dns_update.tsig_key]  # data/acme goes with the data folder
    files = {config_file}
    folders: set[Path] = set()
    data_dir = config.paths.data_dir.absolute()
    for path in named:
        if path is None:
            continue
        path = Path(os.path.abspath(path))
        if path.is_relative_to(data_dir):
            continue  # copied with the data folder
        if path.is_file():
            files.add(path)
        folder = path.parent
        if folder != root and folder.is_relative_to(root) and not folder.is_relative_to(data_dir):
            folders.add(folder)
    for folder in folders:
        for entry in os.scandir(folder):
            if entry.is_file() and not entry.name.startswith("."):
                files.add(Path(entry.path))
    return sorted(files), sorted(folders)


def place_of(path: Path, root: Path) -> str:
    """Where a file of the instance goes in the backup (manifest.py)."""
    if path.is_relative_to(root):
        return "instance/" + path.relative_to(root).as_posix()
    return "outside/" + path.as_posix().lstrip("/")


def _check_destination(dest: Path, sources: list[Path]) -> None:
    real = Path(os.path.realpath(dest))
    for source in sources:
        source = Path(os.path.realpath(source))
        if real == source or real.is_relative_to(source):
            raise BackupError(
                f"{dest} is inside {source}, which the backup copies: it would copy itself; choose a folder outside it"
            )
    if dest.exists() and not dest.is_dir():
        raise BackupError(f"{dest} exists and is not a folder; name a new or empty folder")
    if dest.is_dir() and any(os.scandir(dest)):
        raise BackupError(f"{dest} is not empty; a backup goes into a new or empty folder")


def _prepare(dest: Path) -> bool:
    """Make the backup folder, private (it holds keys and password hashes); True when it is new."""
    with explained(f"cannot make the backup folder {dest}"):
        if dest.is_dir():
            os.chmod(dest, 0o700)
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(dest, 0o700)
        os.chmod(dest, 0o700)
        return True


def _remove(dest: Path, created: bool) -> None:
    """Remove what a failed backup wrote (best effort: the first error is the one to report)."""
    if created:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for entry in os.scandir(dest):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def _copy_everything(config: Config, config_file: Path, named: list[Path], dest: Path, copier: Copier) -> Manifest:
    root = config_file.parent
    data_dir = config.paths.data_dir.absolute()
    files: dict[str, dict[str, object]] = {}
    for path in named:
        with explained(f"cannot copy {path}"):
            place = place_of(path, root)
            _folders_to((dest / place).parent, dest, path.parent, copier)
            files[place] = _copy_listed(path, dest / place, copier)
    with explained(f"cannot copy {data_dir}"):
        copier.folder(dest / "data", like=data_dir)
        files.update(_copy_data_files(data_dir, dest / "data", copier))
    steps = {"queue": time.time()}
    with explained(f"cannot copy the queue {config.paths.queue_dir}"):
        copy_queue(config.paths.queue_dir, dest / "data" / "queue", copier)
    steps["mail"] = time.time()
    with explained(f"cannot copy the mail store {config.paths.mail_dir}"):
        vanished = copy_mail(config.paths.mail_dir, dest / "data" / "mail", copier) if config.paths.mail_dir.is_dir() else 0
    steps["directory"] = time.time()
    with explained(f"cannot copy the directory database {config.paths.directory_db}"):
        facts = copy_database(config.paths.directory_db, dest / "data" / DATABASE)
        st = (dest / "data" / DATABASE).stat()
        files["data/" + DATABASE] = file_entry(st.st_size, st.st_mode, sha256_of(dest / "data" / DATABASE))
    with explained("cannot count what the backup holds"):
        tallies = {area: vars(tally(dest, area)) for area in COUNTED}
    return Manifest(
        hatoba=__version__,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        hostname=config.server.hostname,
        source=str(config_file),
        config=place_of(config_file, root),
        data_dir=data_dir.relative_to(root).as_posix() if data_dir.is_relative_to(root) else str(data_dir),
        directory=vars(facts),
        files=files,
        tallies=tallies,
        vanished=vanished,
        steps=steps,
    )


def _copy_listed(source: Path, target: Path, copier: Copier) -> dict[str, object]:
    """Copy a file the manifest lists; returns its entry there."""
    size, digest = copier.copy(source, target, digest=True)
    return file_entry(size, target.stat().st_mode, digest)


def _folders_to(folder: Path, dest: Path, like: Path, copier: Copier) -> None:
    """Make `folder` and its parents up to `dest`, each like the source folder at the same depth."""
    if folder == dest or folder.is_dir():
        return
    _folders_to(folder.parent, dest, like.parent, copier)
    copier.folder(folder, like=like)


def _copy_data_files(source: Path, target: Path, copier: Copier, prefix: str = "data/") -> dict[str, dict[str, object]]:
    """The data folder but for the mail store, the queue and the database (secrets.key, dkim/, ...)."""
    places: dict[str, dict[str, object]] = {}
    for entry in sorted(os.scandir(source), key=lambda e: e.name):
        top = prefix == "data/"
        if entry.name.startswith(".") or (top and (entry.name in ("mail", "queue") or entry.name in _DATABASE_FILES)):
            continue
        if entry.is_dir(follow_symlinks=False):
            copier.folder(target / entry.name, like=Path(entry.path))
            places.update(_copy_data_files(Path(entry.path), target / entry.name, copier, f"{prefix}{entry.name}/"))
        elif entry.is_file(follow_symlinks=False):
            try:
                places[prefix + entry.name] = _copy_listed(Path(entry.path), target / entry.name, copier)
            except FileNotFoundError as exc:
                if exc.filename != entry.path:
                    raise
                # removed meanwhile
    return places
