"""The IMAP UIDs another server gave a folder's messages: Dovecot's dovecot-uidlist
and Courier-IMAP's courierimapuiddb (formats: docs/import-formats.md).

Messages are known by their Maildir base name (the file name before ":"), which
stays when flags change or a file moves from new/ to cur/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hatoba.migrate.model import Problem, SourceFileError, at, read_source

DOVECOT_UIDLIST = "dovecot-uidlist"
COURIER_UIDDB = "courierimapuiddb"
MAX_UID = 2**32 - 1  # IMAP's UIDs and UIDVALIDITY are 32-bit (RFC 3501 §2.3.1.1)
MAX_LIST_BYTES = 64 * 1024 * 1024  # a million messages take about 60 MiB


@dataclass
class FolderUids:
    uidvalidity: int
    uidnext: int
    uid_of: dict[str, int] = field(default_factory=dict)  # base name -> UID
    saved_uidl: dict[str, str] = field(default_factory=dict)  # base name -> POP3 UIDL Dovecot kept (P)
    guid_of: dict[str, str] = field(default_factory=dict)  # base name -> GUID (G), for %g


def read_folder_uids(folder: Path, problems: list[Problem], dir_fd: int | None = None) -> FolderUids | None:
    """What the folder's old server recorded; None when it recorded nothing readable
    (the messages then get new UIDs, and a problem says why when a list was there)."""
    for name, reader in ((DOVECOT_UIDLIST, _read_dovecot), (COURIER_UIDDB, _read_courier)):
        lines = _lines(folder / name, problems, dir_fd, name)
        if lines is not None:
            return reader(folder / name, lines, problems)
    return None


def _lines(path: Path, problems: list[Problem], dir_fd: int | None, name: str) -> list[str] | None:
    """The file's lines (read as `name` in `dir_fd` when given); None when it is absent or unreadable."""
    try:
        data = read_source(name if dir_fd is not None else path, MAX_LIST_BYTES, dir_fd)
    except SourceFileError as exc:
        problems.append(Problem(at(path), f"{exc}; the folder gets new UIDs"))
        return None
    return None if data is None else data.decode("utf-8", "surrogateescape").split("\n")


def _base(name: str) -> str:
    return name.split(":", 1)[0]


def _read_dovecot(path: Path, lines: list[str], problems: list[Problem]) -> FolderUids | None:
    """Version 3 (Dovecot 1.1 and later): "3 V<uidvalidity> N<nextuid> G<guid>", then
    "UID [KEYVALUE ...] :FILENAME"; version 1: "1 UIDVALIDITY NEXTUID", then "UID FILENAME"."""
    head = lines[0].split()
    if not head or not head[0].isdigit():
        problems.append(Problem(at(path, 1), "not a dovecot-uidlist header; the folder gets new UIDs"))
        return None
    version = int(head[0])
    if version not in (1, 3):  # Dovecot itself never wrote a version 2
        newer = "newer than hatoba reads (1 or 3)" if version > 3 else "not one Dovecot writes (1 or 3)"
        problems.append(Problem(at(path, 1), f"dovecot-uidlist version {version} is {newer}; "
                                "the folder gets new UIDs"))
        return None
    if version == 1:
        if len(head) < 3 or not head[1].isdigit() or not head[2].isdigit():
            problems.append(Problem(at(path, 1), "damaged dovecot-uidlist header; the folder gets new UIDs"))
            return None
        uids = FolderUids(int(head[1]), int(head[2]))
    else:
        fields = {item[:1]: item[1:] for item in head[1:] if item}
        if not fields.get("V", "").isdigit() or not fields.get("N", "").isdigit():
            problems.append(Problem(at(path, 1), "dovecot-uidlist header without V and N; the folder gets new UIDs"))
            return None
        uids = FolderUids(int(fields["V"]), int(fields["N"]))
    if not 0 < uids.uidvalidity <= MAX_UID or uids.uidnext > MAX_UID + 1:
        problems.append(Problem(at(path, 1), "UIDVALIDITY or next UID out of IMAP's range (1 to 2^32-1); "
                                "the folder gets new UIDs"))
        return None
    last = 0
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        uid_text, _, rest = line.partition(" ")
        if version == 1:
            name, extras = rest, ""
        else:
            extras, colon, name = rest.partition(":")
            if not colon:
                problems.append(Problem(at(path, number), "a line without \":FILENAME\"; skipped"))
                continue
        if not uid_text.isdigit() or not name or int(uid_text) <= last or int(uid_text) > MAX_UID:
            problems.append(Problem(at(path, number), "a damaged line; skipped"))
            continue
        uid = last = int(uid_text)
        base = _base(name)
        uids.uid_of[base] = uid
        for item in extras.split():
            if item.startswith("P"):
                uids.saved_uidl[base] = item[1:] or base  # an empty P: the base name
            elif item.startswith("G") and len(item) > 1:
                uids.guid_of[base] = item[1:]
    # Dovecot appends lines without rewriting the header: its N may be behind them.
    uids.uidnext = max(uids.uidnext, last + 1)
    return uids


def _read_courier(path: Path, lines: list[str], problems: list[Problem]) -> FolderUids | None:
    """Courier's list is Dovecot's version 1: "1 UIDVALIDITY NEXTUID", then "UID BASENAME".
    Courier's POP3 server showed "UID<uid>-<uidvalidity>" (courierpop3dsizelist)."""
    if not lines[0].startswith("1 "):
        problems.append(Problem(at(path, 1), "not a version-1 courierimapuiddb header; the folder gets new UIDs"))
        return None
    return _read_dovecot(path, lines, problems)
