"""A backup's manifest.json: what it holds, and the check that it still does.

A backup folder:

    manifest.json        written last: a folder without it is no (complete) backup
    instance/NAME        the config file, and files in the config's folder it names
                         (certificates, keys, init's tls/ with the private CA)
    outside/ABS/PATH     files the config names outside its folder, by absolute path
    data/                the data folder: directory.sqlite3 (one consistent copy),
                         mail/, queue/, and the rest as it was (secrets.key, dkim/)

Every file outside data/mail and data/queue is listed with its size, mode and
SHA-256; the mail store and the queue, far too many files for that, are
counted (files and bytes), and every message's size is checked against the
S= of its name. That finds a backup cut short, a file truncated or changed,
and one missing; a message swapped for another of the same size is beyond it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from hatoba.fsutil import fsync_dir, write_atomic
from hatoba.queue.snapshot import is_queued_message
from hatoba.store.maildir import MaildirName
from hatoba.store.snapshot import CHUNK, BackupError, is_message

FORMAT = 1
NAME = "manifest.json"
AREAS = ("instance", "outside", "data")
# Counted, not listed file by file; and which of their files are messages.
COUNTED = {"data/mail": is_message, "data/queue": is_queued_message}


@dataclass
class Tally:
    """Files and bytes of a counted tree, and the messages among them."""

    files: int = 0
    bytes: int = 0
    messages: int = 0


@dataclass
class Manifest:
    hatoba: str  # the version that made the backup
    created: str  # when it was finished, ISO 8601 UTC
    hostname: str
    source: str  # the config file that was backed up
    config: str  # its place in the backup: "instance/NAME"
    data_dir: str  # relative to the config's folder, or absolute
    directory: dict[str, int]  # schema_version, domains, users, aliases
    files: dict[str, dict[str, object]]  # backup path -> size, mode, sha256
    tallies: dict[str, dict[str, int]]  # "data/mail", "data/queue" -> Tally
    vanished: int = 0  # messages expunged while the backup ran
    # Unix time each step began: every message acknowledged before "queue" is in the backup.
    steps: dict[str, float] = field(default_factory=dict)
    format: int = FORMAT
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode() + b"\n"


def write_manifest(backup: Path, manifest: Manifest) -> None:
    """The last step of a backup: the manifest, durable, then the backup folder's name."""
    write_atomic(backup / NAME, manifest.to_json(), mode=0o600)
    fsync_dir(backup.parent)


def read_manifest(backup: Path) -> Manifest:
    path = backup / NAME
    if not backup.is_dir():
        raise BackupError(f"{backup} is not a folder; name the folder `hatoba backup` wrote")
    try:
        raw = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise BackupError(f"{backup} has no {NAME}: not a hatoba backup, or one that did not finish") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path} cannot be read ({exc}); the backup is damaged") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise BackupError(f"{path} is not a hatoba backup manifest of format {FORMAT}")
    try:
        manifest = Manifest(**raw)
        for name in (manifest.config, *manifest.files):
            _checked_place(name)
        int(manifest.directory["schema_version"])
        for area in COUNTED:
            Tally(**manifest.tallies[area])
    except (TypeError, KeyError, ValueError) as exc:
        raise BackupError(f"{path} is damaged ({exc})") from None
    return manifest


def _checked_place(name: str) -> PurePosixPath:
    """A path inside the backup, as the manifest names it: relative, no "..", in a known area."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or len(path.parts) < 2 or path.parts[0] not in AREAS:
        raise ValueError(f"{name!r} is not a place in a backup")
    return path


def file_entry(size: int, mode: int, sha256: str) -> dict[str, object]:
    return {"size": size, "mode": f"{mode & 0o7777:04o}", "sha256": sha256}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tally(backup: Path, area: str) -> Tally:
    """Count an area of the backup; raises BackupError for a Maildir message shorter or longer than its name says."""
    count = Tally()
    root, is_item = backup / area, COUNTED[area]
    if not root.is_dir():
        return count
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            size = path.lstat().st_size
            count.files += 1
            count.bytes += size
            if is_item(path):
                count.messages += 1
            if is_message(path):
                expected = MaildirName.parse(name).size
                if expected is not None and expected != size:
                    raise BackupError(f"{path} has {size} bytes, its name says {expected}: the backup is damaged")
    return count


def verify(backup: Path, manifest: Manifest) -> None:
    """Raise BackupError at the first file that is not as the manifest says."""
    if manifest.config not in manifest.files:
        raise BackupError(f"{backup / NAME} does not list the config file; the backup is damaged")
    for name, entry in sorted(manifest.files.items()):
        path = backup / name
        try:
            size = path.stat().st_size
            same = size == entry["size"] and sha256_of(path) == entry["sha256"]
        except FileNotFoundError:
            raise BackupError(f"{path} is missing; the backup is incomplete") from None
        except OSError as exc:
            raise BackupError(f"{path} cannot be read ({exc.strerror}); the backup is damaged") from None
        if not same:
            raise BackupError(f"{path} is not the file that was backed up (size or checksum differ); the backup is damaged")
    for area in COUNTED:
        try:
            found = tally(backup, area)
        except OSError as exc:
            raise BackupError(f"{backup / area} cannot be read ({exc.strerror}); the backup is damaged") from None
        expected = Tally(**manifest.tallies[area])
        if found != expected:
            raise BackupError(
                f"{backup / area} holds {found.files} files ({found.bytes} bytes), the manifest says "
                f"{expected.files} ({expected.bytes} bytes); the backup is incomplete or damaged"
            )
