"""Bringing one user's Maildir tree over: every folder's messages with their flags and
keywords, the IMAP UIDs and UIDVALIDITY the old server gave them, INBOX's POP3 UIDLs,
and the subscriptions.

Rules:
- The source is never written to. A message is hard-linked when the link can be
  hatoba's as it is (same file system, same owner as hatoba's files), copied
  otherwise: a link shares its owner, and giving it to hatoba would take it from
  the old server.
- A folder is changed under its UID list's lock, and files are placed before the
  list that names them is written: a running server never gives an imported
  message a UID of its own, and re-reads the list when it changes.
- The base names brought over, with the flags they had, are remembered per folder
  (hatoba-imported). A second run brings new messages, applies flags changed at the
  source since, removes what was removed at the source, and does not bring back
  what a user deleted in hatoba meanwhile.
- A folder hatoba already holds mail in, under another UIDVALIDITY, keeps it: the
  imported messages get new UIDs there (said in the report).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterator
from typing import BinaryIO
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hatoba.fsutil import fsync_dir, make_private_dir, write_atomic
from hatoba.migrate.model import Problem, SourceFileError, at, open_dir, read_source
from hatoba.migrate.uidl import UidlFormat
from hatoba.migrate.uidsources import FolderUids, read_folder_uids
from hatoba.store.errors import InvalidName
from hatoba.store.folder_tree import decode_mutf7, dirname_of, name_of_dirname, normalize_name
from hatoba.store.pop3_maildrop import UIDL_FILE, default_uidl, read_uidls
from hatoba.store.uidlist import (
    MAX_KEYWORDS,
    SYSTEM_FLAGS,
    LOCKFILE,
    Entry,
    ParsedList,
    list_for_import,
    order_key,
    parse_list,
    read_keywords,
    write_keywords,
    write_whole_list,
    UIDLIST,
)

IMPORTED = "hatoba-imported"
MAX_SMALL_FILE = 4 * 1024 * 1024  # subscriptions, keywords: a few KiB in real life
FLUSH_THREADS = 16
_SYSTEM_LETTERS = frozenset(SYSTEM_FLAGS.values())
_DOVECOT_SUBSCRIPTIONS = "subscriptions"
_COURIER_SUBSCRIPTIONS = "courierimapsubscribed"


@dataclass
class Counts:
    folders: int = 0
    messages: int = 0  # brought over in this run
    bytes: int = 0
    linked: int = 0
    flag_changes: int = 0
    removed: int = 0  # removed at the source since the last run
    new_uids: int = 0  # messages that could not keep their old UID


@dataclass
class Placement:
    """How this run writes: for real or not (dry run), and as whom."""

    dry_run: bool
    owner: tuple[int, int] | None  # (uid, gid) hatoba's files belong to; None = whoever runs this
    new_uidvalidity: Callable[[], int]
    counts: Counts = field(default_factory=Counts)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # said, but nothing was skipped
    highest_uidvalidity: int = 0  # of the folders written: the user's next ones must be above it

    def own(self, path: Path) -> None:
        if self.owner is not None and not self.dry_run:
            os.chown(path, *self.owner, follow_symlinks=False)

    def make_dir(self, path: Path) -> None:
        if self.dry_run or path.is_dir():
            return
        missing = [p for p in (path, *path.parents) if not p.exists()]
        make_private_dir(path)
        for made in missing:
            self.own(made)

    def may_link(self, st: os.stat_result) -> bool:
        """Whether a hard link to this file can be hatoba's as it is. A link shares owner,
        group and mode: the file must already be the service user's (uid and group), so
        `serve`, giving the data folder to that user, never changes the old server's
        file; root's files are never linked (whoever serves later would be handed them)."""
        owner = self.owner if self.owner is not None else (os.geteuid(), os.getegid())
        return owner[0] != 0 and (st.st_uid, st.st_gid) == owner


@dataclass
class Imported:
    """A folder's hatoba-imported file: for each source folder brought in ("S PATH" line),
    the base names it gave with their flag letters there ("BASE LETTERS" lines)."""

    by_source: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def read(cls, folder: Path) -> Imported:
        found = cls()
        try:
            lines = (folder / IMPORTED).read_text("utf-8", "surrogateescape").splitlines()
        except FileNotFoundError:
            return found
        current: dict[str, str] | None = None
        for line in lines[1:] if lines and lines[0] == "I2" else []:
            if line.startswith("S "):
                current = found.by_source.setdefault(line[2:], {})
            elif current is not None:
                base, _, letters = line.partition(" ")
                if base:
                    current[base] = letters
        return found

    def brought(self, base: str) -> bool:
        return any(base in letters for letters in self.by_source.values())

    def write(self, folder: Path) -> None:
        lines = ["I2"]
        for source, letters in sorted(self.by_source.items()):
            lines.append(f"S {source}")
            lines += [f"{base} {flags}" for base, flags in sorted(letters.items())]
        write_atomic(folder / IMPORTED, ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))


@dataclass
class SourceMessage:
    path: Path  # for messages
    sub: str  # "cur" or "new": the name is opened in the folder read then, never by its path
    name: str
    letters: str  # info letters as the source named them ("" for new/)


def source_messages(folder: Path, folder_fd: int, problems: list[Problem],
                    subs: dict[str, int]) -> dict[str, SourceMessage]:
    """The folder's messages by base name; broken names are reported and left. The cur/
    and new/ folders are opened once, without following links, into `subs` (the caller
    closes them): a user who swaps one for a link later reaches nothing through it."""
    found: dict[str, SourceMessage] = {}
    for sub in ("cur", "new"):
        try:
            subs[sub] = open_dir(sub, dir_fd=folder_fd)
            entries = list(os.scandir(subs[sub]))
        except FileNotFoundError:
            continue
        except OSError as exc:
            reason = "a link, not a folder" if exc.errno in (errno.ELOOP, errno.ENOTDIR) else \
                f"cannot read it ({exc.strerror})"
            problems.append(Problem(at(folder / sub), f"{reason}; its mail is left out"))
            continue
        for entry in entries:
            path = folder / sub / entry.name
            if entry.name.startswith("."):
                continue
            base, colon, info = entry.name.partition(":")
            if not entry.is_file(follow_symlinks=False):
                problems.append(Problem(at(path), "not a plain file; left out"))
                continue
            if (not base or any(c.isspace() or ord(c) < 0x20 or c == "/" for c in entry.name)
                    or (colon and not info.startswith("2,")) or not base.isprintable()):
                problems.append(Problem(at(path), "not a Maildir message file name; left out"))
                continue
            if base in found:
                problems.append(Problem(at(path), "a second file with this base name; left out"))
                continue
            found[base] = SourceMessage(path, sub, entry.name, info[2:] if colon else "")
    return found


def source_folders(root: Path, root_fd: int, problems: list[Problem]) -> list[tuple[str, str]]:
    """(IMAP name, directory name) of each Maildir++ folder below INBOX (the root). Names
    in modified UTF-7 are kept; UTF-8 names (Courier 5) are given their UTF-7 spelling."""
    folders = []
    try:
        entries = sorted(os.scandir(root_fd), key=lambda e: e.name)
    except OSError as exc:
        problems.append(Problem(at(root), f"cannot read it ({exc.strerror}); only INBOX is looked at"))
        return folders
    for entry in entries:
        if not entry.name.startswith(".") or entry.name in (".", "..") or not entry.is_dir(follow_symlinks=False):
            continue
        name = name_of_dirname(entry.name)
        if name is None:
            name = _utf8_folder_name(entry.name)
        if name is None:
            problems.append(Problem(at(root / entry.name), "a folder name hatoba cannot read; left out"))
            continue
        folders.append((name, entry.name))
    return folders


def _utf8_folder_name(dirname: str) -> str | None:
    try:
        return normalize_name(dirname[1:])
    except InvalidName:
        return None


@contextmanager
def _target_list(folder: Path, dry_run: bool) -> Iterator[ParsedList | None]:
    if dry_run:
        try:
            yield parse_list((folder / UIDLIST).read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            yield None
        return
    with list_for_import(folder) as parsed:
        yield parsed


class FolderSync:
    """One folder brought over (see the module's rules)."""

    def __init__(self, source: Path, source_fd: int, target: Path, place: Placement) -> None:
        """`source_fd`: the source folder, opened by the caller (who closes it after run())."""
        self.source, self.target, self.place = source, target, place
        self.problems = place.problems
        self.uids: FolderUids | None = read_folder_uids(source, self.problems, source_fd)
        self.source_keywords = _source_keywords(source, source_fd, self.problems)
        self._subs: dict[str, int] = {}
        self.messages = source_messages(source, source_fd, self.problems, self._subs)
        self._copies: list[tuple[Path, Path]] = []  # (tmp/ file, its cur/ name), flushed together
        if _entry_kind(source_fd, "courierimapkeywords") == stat.S_IFDIR:
            self.problems.append(Problem(at(source / "courierimapkeywords"),
                                         "Courier-IMAP keywords are not carried over (flags are)"))

    def run(self, label: str) -> None:
        try:
            self._run(label)
        finally:
            for fd in self._subs.values():
                os.close(fd)
            self._subs = {}

    def _run(self, label: str) -> None:
        place = self.place
        place.make_dir(self.target)
        for sub in ("tmp", "new", "cur"):
            place.make_dir(self.target / sub)
        if self.target.name.startswith(".") and not (self.target / "maildirfolder").exists() and not place.dry_run:
            (self.target / "maildirfolder").touch(mode=0o600)
            place.own(self.target / "maildirfolder")
        place.counts.folders += 1
        with _target_list(self.target, place.dry_run) as parsed:
            try:
                self._merge(parsed, label)
            except BaseException:
                for tmp, _ in self._copies:  # copies no list names: a full disk keeps no space for them
                    try:
                        os.unlink(tmp)
                    except OSError:
                        pass
                raise

    def _merge(self, parsed: ParsedList | None, label: str) -> None:
        place, uids = self.place, self.uids
        record = Imported.read(self.target)
        # Only what this source gave is mirrored from it: a second Maildir imported into the
        # same folder (import maildir) leaves the first one's messages alone.
        imported = record.by_source.setdefault(os.path.realpath(self.source), {})
        entries: dict[int, Entry] = dict(parsed.entries) if parsed else {}
        vanished = list(parsed.vanished) if parsed else []
        uidnext, highest, first_recent, floor = parsed.numbers if parsed else (1, 1, 1, 0)
        if uids is not None and (parsed is None or not entries):
            uidvalidity = uids.uidvalidity  # the folder is hatoba's only through this import: the old numbers
        elif parsed is not None:
            uidvalidity = parsed.uidvalidity
        else:
            uidvalidity = place.new_uidvalidity()
        keep_uids = uids is not None and uids.uidvalidity == uidvalidity
        if parsed is not None and uidvalidity != parsed.uidvalidity:
            uidnext, first_recent, vanished = 1, 1, []  # hatoba's numbers for the empty folder go with it
        if uids is not None and not keep_uids:
            place.notes.append(f"{label}: hatoba already holds mail here under its own UIDVALIDITY; "
                               "the imported messages get new UIDs (mail programs fetch this folder again)")
        by_stem = {entry.stem: entry for entry in entries.values()}
        used = set(entries) | {uid for uid, _ in vanished}
        keywords = read_keywords(self.target)
        keywords_before = list(keywords)
        modseq = highest + 1
        changed = parsed is None and uids is not None  # even an empty folder keeps its UIDVALIDITY
        fresh: list[tuple[str, SourceMessage, str]] = []
        for base, message in self.messages.items():
            letters = self._letters(message.letters, keywords, label)
            entry = by_stem.get(base)
            if entry is not None:
                if base in imported and imported[base] != message.letters:
                    # Changed at the source since the last run: the source's flags win.
                    if self._relabel(entry, letters, modseq):
                        place.counts.flag_changes += 1
                        changed = True
                imported[base] = message.letters
                continue
            if record.brought(base):
                continue  # brought over before and deleted in hatoba since
            fresh.append((base, message, letters))
        # Messages with their old UIDs first, then the others in delivery order.
        fresh.sort(key=lambda item: (self._old_uid(item[0]) or 1 << 62, order_key(item[0])))
        start_next = max(uidnext, uids.uidnext if keep_uids and uids else 1)
        for base, message, letters in fresh:
            uid = self._old_uid(base) if keep_uids else None
            # Never below a UIDNEXT hatoba may have shown: a client would not look there.
            if uid is None or uid in used or not (uid >= uidnext or not entries and not vanished):
                if uid is not None:
                    place.counts.new_uids += 1
                uid = None
            if uid is None:
                uid = start_next
            name = f"{base}:2,{letters}"
            if not self._place(message, name):
                continue
            entries[uid] = Entry(uid, modseq, name)
            used.add(uid)
            start_next = max(start_next, uid + 1)
            imported[base] = message.letters
            changed = True
        for base in [b for b in imported if b not in self.messages]:
            entry = by_stem.get(base)
            del imported[base]
            changed = True
            if entry is None:
                continue  # deleted on both sides
            if not place.dry_run:
                try:
                    os.unlink(self.target / "cur" / entry.name)
                except FileNotFoundError:
                    pass
            del entries[entry.uid]
            vanished.append((entry.uid, modseq))
            place.counts.removed += 1
        if not changed or place.dry_run:
            return
        if keywords != keywords_before:
            write_keywords(self.target, keywords)
            place.own(self.target / "dovecot-keywords")
        uidnext = max([start_next, uidnext, *(uid + 1 for uid in entries)])
        if parsed is None:
            first_recent = uidnext  # nothing imported is \Recent
        self._finish_copies()
        fsync_dir(self.target / "cur")  # the names before the list that gives them UIDs
        write_whole_list(self.target, ParsedList(
            uidvalidity, (uidnext, modseq, first_recent, floor), entries, vanished, 0, 0, True))
        place.highest_uidvalidity = max(place.highest_uidvalidity, uidvalidity)
        record.write(self.target)
        for name in (UIDLIST, IMPORTED, LOCKFILE):
            place.own(self.target / name)

    def _old_uid(self, base: str) -> int | None:
        return self.uids.uid_of.get(base) if self.uids is not None else None

    def _letters(self, source_letters: str, keywords: list[str | None], label: str) -> str:
        """The target's letters for the source's: system flags kept, keywords by name."""
        out = set()
        for letter in source_letters:
            if letter in _SYSTEM_LETTERS:
                out.add(letter)
            elif "a" <= letter <= "z":
                index = ord(letter) - ord("a")
                keyword = self.source_keywords[index] if index < len(self.source_keywords) else None
                if keyword is None:
                    continue  # a letter its own server did not know either
                if keyword not in keywords:
                    if len(keywords) >= MAX_KEYWORDS:
                        self.place.notes.append(f"{label}: more than {MAX_KEYWORDS} keywords; {keyword} left off")
                        continue
                    gap = keywords.index(None) if None in keywords else len(keywords)
                    if gap == len(keywords):
                        keywords.append(keyword)
                    else:
                        keywords[gap] = keyword
                out.add(chr(ord("a") + keywords.index(keyword)))
        return "".join(sorted(out))

    def _relabel(self, entry: Entry, letters: str, modseq: int) -> bool:
        name = f"{entry.stem}:2,{letters}"
        if name == entry.name:
            return False
        if not self.place.dry_run:
            try:
                os.rename(self.target / "cur" / entry.name, self.target / "cur" / name)
            except FileNotFoundError:
                return False  # removed in hatoba meanwhile: its next scan tells
        entry.name, entry.modseq = name, modseq
        return True

    def _place(self, message: SourceMessage, name: str) -> bool:
        """Link or copy one message into cur/ under `name`; False when it could not be read.

        The source is opened without following links and must be a plain file: a user's
        own folder could otherwise swap a message for a link to a file of the system's."""
        place = self.place
        source = message.path
        sub_fd = self._subs[message.sub]
        try:
            fd = os.open(message.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=sub_fd)
        except OSError as exc:
            reason = "a link, not a message" if exc.errno == errno.ELOOP else f"cannot read it ({exc.strerror})"
            self.problems.append(Problem(at(source), f"{reason}; left out"))
            return False
        with os.fdopen(fd, "rb") as src:
            st = os.fstat(src.fileno())
            if not stat.S_ISREG(st.st_mode):
                self.problems.append(Problem(at(source), "not a plain file; left out"))
                return False
            place.counts.messages += 1
            place.counts.bytes += st.st_size
            if place.dry_run:
                return True
            if st.st_nlink > 1 and st.st_uid != os.fstat(sub_fd).st_uid:
                # another name of someone else's file, put here by the folder's owner
                self.problems.append(Problem(at(source), "a second name of a file its folder's owner does "
                                             "not own; left out"))
                place.counts.messages -= 1
                place.counts.bytes -= st.st_size
                return False
            target = self.target / "cur" / name
            if place.may_link(st) and self._link(message, sub_fd, st, target):
                return True
            return self._copy(src, source, st, target)

    def _link(self, message: SourceMessage, sub_fd: int, st: os.stat_result, target: Path) -> bool:
        """A hard link to the very file opened (same inode), else False (then it is copied)."""
        try:
            os.link(message.name, target, src_dir_fd=sub_fd, follow_symlinks=False)
        except FileExistsError:
            pass  # placed by a run that stopped before writing its list
        except OSError:
            return False  # another file system, or links not allowed
        linked = os.lstat(target)
        if (linked.st_ino, linked.st_dev) != (st.st_ino, st.st_dev) or not stat.S_ISREG(linked.st_mode):
            os.unlink(target)  # swapped since it was opened, or a stale other file
            return False
        self.place.counts.linked += 1
        return True

    def _copy(self, src: BinaryIO, source: Path, st: os.stat_result, target: Path) -> bool:
        place = self.place
        tmp = self.target / "tmp" / f"{target.name.split(':', 1)[0]}.import"
        try:
            os.unlink(tmp)  # left by a run that stopped on a full disk
        except FileNotFoundError:
            pass
        try:
            with open(tmp, "wb", buffering=0, opener=_private) as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))  # INTERNALDATE is the file's time
            place.own(tmp)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # nothing after it would fit either
                raise
            self.problems.append(Problem(at(source), f"cannot copy it ({exc.strerror}); left out"))
            place.counts.messages -= 1
            place.counts.bytes -= st.st_size
            return False
        self._copies.append((tmp, target))
        return True

    def _finish_copies(self) -> None:
        """The copies made durable, then moved into cur/, before the list naming them is
        written. The flushes run side by side: the disk takes them in fewer journal commits."""
        copies, self._copies = self._copies, []
        if not copies:
            return
        with ThreadPoolExecutor(max_workers=FLUSH_THREADS) as pool:
            list(pool.map(_fsync_file, [tmp for tmp, _ in copies]))
        for tmp, target in copies:
            os.rename(tmp, target)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _entry_kind(dir_fd: int, name: str) -> int | None:
    """S_IFDIR, S_IFLNK... of `name` in the folder `dir_fd` (links not followed); None when absent."""
    try:
        return stat.S_IFMT(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return None


def _source_keywords(folder: Path, folder_fd: int, problems: list[Problem]) -> list[str | None]:
    """The old server's dovecot-keywords ("N keyword" lines; letter "a" + N)."""
    try:
        data = read_source("dovecot-keywords", MAX_SMALL_FILE, folder_fd)
    except SourceFileError as exc:
        problems.append(Problem(at(folder / "dovecot-keywords"), f"{exc}; keywords left out"))
        return []
    found: dict[int, str] = {}
    for line in (data or b"").decode("utf-8", "replace").splitlines():
        number, _, keyword = line.partition(" ")
        if number.isdigit() and int(number) < MAX_KEYWORDS and keyword.strip():
            found[int(number)] = keyword.strip()
    return [found.get(i) for i in range(max(found, default=-1) + 1)]


def _private(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_EXCL, 0o600)


def sync_mailbox(source_root: Path, target_root: Path, place: Placement, *, label: str,
                 uidl_format: UidlFormat) -> list[str]:
    """Bring a user's whole Maildir tree over; returns the subscribed folder names. Everything
    below `source_root` is reached through descriptors opened without following links."""
    try:
        root_fd = open_dir(source_root)
    except OSError as exc:
        reason = "a link, not a folder" if exc.errno in (errno.ELOOP, errno.ENOTDIR) else \
            f"cannot read it ({exc.strerror})"
        place.problems.append(Problem(at(source_root), f"{reason}; its mail is left out"))
        return []
    try:
        place.make_dir(target_root)
        inbox = FolderSync(source_root, root_fd, target_root, place)
        inbox.run(f"{label} INBOX")
        for name, dirname in source_folders(source_root, root_fd, place.problems):
            try:
                folder_fd = open_dir(dirname, dir_fd=root_fd)
            except OSError as exc:
                place.problems.append(Problem(at(source_root / dirname), f"cannot read it ({exc.strerror}); "
                                              "left out"))
                continue
            try:
                if _entry_kind(folder_fd, "cur") is None:
                    continue  # a parent that only exists through its children
                sync = FolderSync(source_root / dirname, folder_fd, target_root / dirname_of(name), place)
                sync.run(f"{label} {name}")
            finally:
                os.close(folder_fd)
        _keep_uidls(inbox, target_root, uidl_format, place)
        return read_subscriptions(source_root, root_fd, place.problems)
    finally:
        os.close(root_fd)


def _keep_uidls(inbox: FolderSync, target_root: Path, uidl_format: UidlFormat, place: Placement) -> None:
    """INBOX's POP3 UIDLs as the old server showed them. With UIDs in the format (Dovecot,
    Courier) every imported message is listed, in UID order, which was the old POP3 order;
    otherwise only those whose UIDL is not hatoba's own."""
    uids = inbox.uids
    kept = read_uidls(target_root)
    wanted = {base: uidl for base, uidl in kept.items() if base not in inbox.messages}
    ordered = uidl_format.needs_uid and uids is not None

    def old_order(base: str) -> tuple[int, tuple[int, str]]:
        uid = uids.uid_of.get(base) if uids is not None else None
        return (uid if uid is not None else 1 << 62, order_key(base))

    shown = set(wanted.values())
    for base in sorted(inbox.messages, key=old_order):
        uidl = uids.saved_uidl.get(base) if uids is not None else None
        if uidl is None:
            uid = uids.uid_of.get(base) if uids is not None else None
            uidl = uidl_format.render(uid=uid, uidvalidity=uids.uidvalidity if uids else None, base=base,
                                      guid=uids.guid_of.get(base, "") if uids else "")
        if uidl is None or (uidl == default_uidl(base) and not ordered):
            continue
        if uidl in shown:  # RFC 1939 §7: unique in the maildrop; hatoba's own for the second
            place.problems.append(Problem(at(inbox.source / "cur" / base), f"POP3 UIDL {uidl!r} was shown for "
                                          "another message too; this one gets hatoba's own"))
        elif 0 < len(uidl) <= 70 and uidl.isascii() and uidl.isprintable() and " " not in uidl:
            wanted[base] = uidl
            shown.add(uidl)
        else:
            place.problems.append(Problem(at(inbox.source / "cur"), f"POP3 UIDL {uidl[:80]!r} is not one POP3 "
                                          "allows (1-70 printable characters); hatoba's own is shown"))
    if list(wanted.items()) != list(kept.items()) and not place.dry_run:
        text = "".join(f"{base} {uidl}\n" for base, uidl in wanted.items())
        write_atomic(target_root / UIDL_FILE, text.encode("utf-8", "surrogateescape"))
        place.own(target_root / UIDL_FILE)


def read_subscriptions(root: Path, root_fd: int, problems: list[Problem]) -> list[str]:
    """Subscribed names from Dovecot's "subscriptions" (version 2: a "V\\t2" line and a blank
    line, then one name a line with TAB between levels; before that, one name a line) or
    Courier's "courierimapsubscribed" ("INBOX.Name" a line)."""
    names: list[str] = []
    for filename in (_DOVECOT_SUBSCRIPTIONS, _COURIER_SUBSCRIPTIONS):
        path = root / filename
        try:
            data = read_source(filename, MAX_SMALL_FILE, root_fd)
        except SourceFileError as exc:
            problems.append(Problem(at(path), f"{exc}; subscriptions left out"))
            continue
        if data is None:
            continue
        lines = data.decode("utf-8", "surrogateescape").split("\n")
        if lines and lines[0].startswith("V\t"):
            lines = lines[lines.index("") + 1:] if "" in lines else []
        for line in lines:
            line = line.strip("\r")
            if not line:
                continue
            if filename == _COURIER_SUBSCRIPTIONS and line.upper().startswith("INBOX."):
                line = line[6:]
            levels = line.split("\t") if filename == _DOVECOT_SUBSCRIPTIONS else line.split(".")
            try:  # on disk in modified UTF-7, as the folders' names
                names.append(normalize_name(".".join(decode_mutf7(level) for level in levels)))
            except (ValueError, InvalidName):
                continue
    return names
