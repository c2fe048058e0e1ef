"""IMAP mailboxes over a user's Maildir: folders, UIDs, flags, MODSEQ.

Layout (Dovecot's Maildir++): INBOX is the Maildir root that delivery and
POP3 use; a folder "Parent.Child" is the directory ".Parent.Child" in it,
each name component in modified UTF-7 (RFC 3501 §5.1.3), with tmp/ new/ cur/
and an empty "maildirfolder" file. Per-folder state is in uidlist.py;
per-user state (special-use, subscriptions, the last UIDVALIDITY handed out)
is the small JSON file "hatoba-mailboxes.json" in the Maildir root.

Rules:
- All methods block (file I/O, fsync); IMAP sessions call them from threads.
- Each Mailbox object is one session's view: the messages, flags and MODSEQs
  it has been told about. sync() moves the view to the folder's current
  state and says what changed, so sequence numbers change only when the
  session allows it (RFC 9051 §7.5.1).
- Deleting a folder that has children deletes its messages and leaves the
  name as \\Noselect, as RFC 3501 §6.3.4 describes; deleting a \\Noselect
  name that still has children is refused with [HASCHILDREN].
- Delivery (new/) and POP3 (unlinks) change INBOX at any time: every
  operation re-reads the folder first.
- Quota counts stored bytes (LF line ends) in every folder; delivery does not
  check it, APPEND and COPY do.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, NamedTuple

from hatoba.fsutil import fsync_dir, make_private_dir, write_atomic
from hatoba.proto.imap import mutf7
from hatoba.proto.imap.search import ParsedHeader
from hatoba.store.headercache import CACHED_FIELDS, cached_part
from hatoba.store.maildir import MaildirName, MaildirStore
from hatoba.store.uidlist import (
    NONEXISTENT,
    SYSTEM_FLAGS,
    Entry,
    Folder,
    MailboxError,
    info_letters,
    normalize_flags,
    with_letters,
)

__all__ = [
    "DELIMITER",
    "SYSTEM_FLAGS",
    "Mailbox",
    "MailboxError",
    "MailboxInfo",
    "MailboxStatus",
    "MailboxStore",
    "MessageRecord",
    "SyncResult",
    "UserMailboxes",
]

DELIMITER = "."
META = "hatoba-mailboxes.json"
# RFC 6154 special-use folders every user gets.
DEFAULT_FOLDERS = (
    ("Drafts", "\\Drafts"),
    ("Sent", "\\Sent"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)
MAX_DIRNAME = 200  # bytes; file systems allow 255 per name
_INVALID = "[CANNOT] Invalid mailbox name"
_name_counter = itertools.count()


@dataclass(frozen=True)
class MailboxInfo:
    name: str
    special_use: str | None
    subscribed: bool
    has_children: bool
    selectable: bool = True


@dataclass(frozen=True)
class MailboxStatus:
    messages: int
    recent: int
    uidnext: int
    uidvalidity: int
    unseen: int
    deleted: int
    size: int  # sum of RFC822.SIZE (RFC 8438)
    highestmodseq: int


class MessageRecord(NamedTuple):
    """One message as a session saw it. A tuple: a SELECT makes one per message."""

    uid: int
    name: str  # file name in cur/
    flags: frozenset[str]
    internal_date: datetime
    size: int  # with CRLF line ends
    modseq: int
    cur: str  # the folder's cur/ directory

    @property
    def path(self) -> Path:
        return Path(self.cur, self.name)


@dataclass
class SyncResult:
    added: list[MessageRecord]
    expunged: list[int]
    flags_changed: list[MessageRecord]


# -- names ---------------------------------------------------------------------------


# Folder names on disk are modified UTF-7, as Dovecot writes them (RFC 3501 §5.1.3).
encode_mutf7 = mutf7.encode
decode_mutf7 = mutf7.decode


def normalize_name(name: str) -> str:
    """A valid mailbox name, "INBOX" spelled in capitals (RFC 3501 §5.1), or MailboxError."""
    if not name or any(ord(c) < 0x20 or c in "\x7f/*%" for c in name):
        raise MailboxError(_INVALID)
    parts = name.split(DELIMITER)
    if any(not part for part in parts):
        raise MailboxError(_INVALID)
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    normal = DELIMITER.join(parts)
    if len(dirname_of(normal).encode()) > MAX_DIRNAME:
        raise MailboxError("[CANNOT] Mailbox name is too long")
    return normal


def dirname_of(name: str) -> str:
    return "." + ".".join(encode_mutf7(part) for part in name.split(DELIMITER))


def name_of_dirname(dirname: str) -> str | None:
    """The mailbox a ".Name" directory holds, or None for anything else."""
    if not dirname.startswith(".") or dirname.startswith(".."):
        return None
    try:
        name = normalize_name(DELIMITER.join(decode_mutf7(p) for p in dirname[1:].split(".")))
    except (ValueError, MailboxError):
        return None
    if name == "INBOX" or dirname_of(name) != dirname:
        return None
    return name


# -- the store -----------------------------------------------------------------------


class MailboxStore:
    """Every user's mailboxes; holds the per-folder state and locks all sessions share."""

    def __init__(self, mail_root: Path, *, quota_bytes: int = 0, hostname: str | None = None) -> None:
        self.mail_root = Path(mail_root)
        self.quota_bytes = quota_bytes
        host = hostname or os.uname().nodename
        self._host = host.replace("/", "\\057").replace(":", "\\072")
        self._addresses = MaildirStore(self.mail_root, hostname=host)
        self._lock = threading.Lock()
        self._folders: dict[Path, Folder] = {}
        self._meta_locks: dict[Path, threading.Lock] = {}

    def for_user(self, address: str) -> UserMailboxes:
        return UserMailboxes(self, self._addresses.maildir(address))

    def folder(self, path: Path, new_uidvalidity: Callable[[], int]) -> Folder:
        with self._lock:
            folder = self._folders.get(path)
            if folder is None or not folder.same_directory():
                folder = self._folders[path] = Folder(path, new_uidvalidity)
            return folder

    def retire(self, path: Path) -> None:
        """Forget a deleted or renamed folder's state (call with its lock held)."""
        with self._lock:
            folder = self._folders.pop(path, None)
        if folder is not None:
            folder.retire()

    def meta_lock(self, root: Path) -> threading.Lock:
        with self._lock:
            return self._meta_locks.setdefault(root, threading.Lock())

    def new_stem(self, fields: str = "") -> str:
        """A unique Maildir base name; names made later sort later (COPYUID order)."""
        unique = f"M{next(_name_counter):010d}R{secrets.token_hex(4)}P{os.getpid()}"
        return f"{int(time.time())}.{unique}.{self._host}{fields}"



class UserMailboxes:
    """One user's folders: LIST, CREATE, DELETE, RENAME, SUBSCRIBE, STATUS, SELECT."""

    def __init__(self, store: MailboxStore, root: Path) -> None:
        self.store = store
        self.root = root

    # -- paths and per-user metadata ---------------------------------------------------

    def _path(self, name: str) -> Path:
        return self.root if name == "INBOX" else self.root / dirname_of(name)

    def _ensure_root(self) -> None:
        for sub in ("tmp", "new", "cur"):
            make_private_dir(self.root / sub)

    def _folder(self, name: str) -> Folder:
        return self.store.folder(self._path(name), self._next_uidvalidity)

    def _read_meta(self) -> dict:  # type: ignore[type-arg]
        try:
            meta = json.loads((self.root / META).read_text("utf-8"))
        except FileNotFoundError:
            meta = {}
        meta.setdefault("special_use", {})
        meta.setdefault("subscribed", [])
        meta.setdefault("last_uidvalidity", 0)
        return meta  # type: ignore[no-any-return]

    def _update_meta(self, change) -> object:  # type: ignore[no-untyped-def]
        with self.store.meta_lock(self.root):
            self._ensure_root()
            meta = self._read_meta()
            result = change(meta)
            write_atomic(self.root / META, json.dumps(meta, indent=1, sort_keys=True).encode())
            return result

    def _next_uidvalidity(self) -> int:
        # The time, but always above the last one given, so a folder deleted and
        # made again within a second never repeats a UIDVALIDITY (RFC 3501 §2.3.1.1).
        def bump(meta: dict) -> int:  # type: ignore[type-arg]
            meta["last_uidvalidity"] = max(int(time.time()), meta["last_uidvalidity"] + 1)
            return meta["last_uidvalidity"]  # type: ignore[no-any-return]

        return self._update_meta(bump)  # type: ignore[return-value]

    def _names(self) -> dict[str, bool]:
        """Every folder name -> selectable; parents that only exist through children are not."""
        self._ensure_root()
        names = {"INBOX": True}
        for entry in os.scandir(self.root):
            name = name_of_dirname(entry.name)
            if name is not None and entry.is_dir():
                names[name] = os.path.isdir(os.path.join(entry.path, "cur"))
        for name in list(names):
            parts = name.split(DELIMITER)
            for i in range(1, len(parts)):
                names.setdefault(DELIMITER.join(parts[:i]), False)
        return names

    # -- the IMAP commands --------------------------------------------------------------

    def list(self) -> list[MailboxInfo]:
        names = self._names()
        meta = self._read_meta()
        parents = {name.rpartition(DELIMITER)[0] for name in names if DELIMITER in name}
        subscribed = set(meta["subscribed"])
        order = sorted(names, key=lambda n: (n != "INBOX", n))
        return [
            MailboxInfo(n, meta["special_use"].get(n), n in subscribed, n in parents, names[n]) for n in order
        ]

    def subscriptions(self) -> list[str]:
        """Subscribed names, existing or not (RFC 3501 §6.3.6 keeps them after a DELETE)."""
        return sorted(self._read_meta()["subscribed"])

    def ensure_defaults(self) -> None:
        """Make the RFC 6154 folders a client expects, unless a folder already has that use."""
        names = self._names()
        meta = self._read_meta()
        for name, use in DEFAULT_FOLDERS:
            if use in meta["special_use"].values():
                continue
            if not names.get(name):
                try:
                    self.create(name)
                except MailboxError:
                    # Another login of the same user made it a moment ago.
                    if not self._names().get(name):
                        raise

            def mark(meta: dict, name: str = name, use: str = use) -> None:  # type: ignore[type-arg]
                meta["special_use"][name] = use
                if name not in meta["subscribed"]:
                    meta["subscribed"].append(name)

            self._update_meta(mark)
        if "INBOX" not in meta["subscribed"]:
            self.subscribe("INBOX")

    def create(self, name: str) -> None:
        # RFC 3501 §6.3.3: a trailing delimiter only declares the intent to make children.
        name = normalize_name(name[:-1] if name.endswith(DELIMITER) else name)
        names = self._names()
        if names.get(name):
            raise MailboxError("[ALREADYEXISTS] Mailbox already exists")
        parts = name.split(DELIMITER)
        # RFC 3501 §6.3.3: superior names are created too.
        for i in range(1, len(parts) + 1):
            prefix = DELIMITER.join(parts[:i])
            if not names.get(prefix):
                self._make_folder(prefix)

    def _make_folder(self, name: str) -> None:
        path = self._path(name)
        for sub in ("tmp", "new", "cur"):
            make_private_dir(path / sub)
        (path / "maildirfolder").touch(mode=0o600)
        fsync_dir(path)
        fsync_dir(self.root)
        folder = self._folder(name)
        with folder.lock():
            folder.refresh()  # hands out the UIDVALIDITY now

    def delete(self, name: str) -> None:
        name = normalize_name(name)
        if name == "INBOX":
            raise MailboxError("[CANNOT] INBOX cannot be deleted")
        names = self._names()
        if name not in names:
            raise MailboxError(NONEXISTENT)
        has_children = any(other.startswith(name + DELIMITER) for other in names)
        path = self._path(name)
        if not names[name] and has_children:
            raise MailboxError("[HASCHILDREN] Mailbox has children; delete them first")
        if path.is_dir():
            folder = self._folder(name) if names[name] else None
            with folder.lock() if folder else ExitStack():
                trash = self.root / f"..deleted.{secrets.token_hex(6)}"
                os.rename(path, trash)  # one step, so no reader sees half a folder
                fsync_dir(self.root)
                self.store.retire(path)
            shutil.rmtree(trash, ignore_errors=True)

        def drop(meta: dict) -> None:  # type: ignore[type-arg]
            meta["special_use"].pop(name, None)

        self._update_meta(drop)

    def rename(self, old: str, new: str) -> None:
        old = normalize_name(old)
        new = normalize_name(new)
        names = self._names()
        if old not in names:
            raise MailboxError(NONEXISTENT)
        if new == "INBOX" or new in names:
            raise MailboxError("[ALREADYEXISTS] Target mailbox already exists")
        if new.startswith(old + DELIMITER):
            raise MailboxError("[CANNOT] Cannot move a mailbox into itself")
        if old == "INBOX":
            # RFC 3501 §6.3.5: the messages move to the new name; INBOX stays, empty,
            # and its children do not move.
            self.create(new)
            inbox = self._folder("INBOX")
            target = self._folder(new)
            with ExitStack() as stack:
                for folder in sorted((inbox, target), key=lambda f: str(f.path)):
                    stack.enter_context(folder.lock())
                inbox.refresh()
                target.refresh()
                _transfer(self.store, inbox, target, list(inbox.entries), remove=True)
            return
        parent = new.rpartition(DELIMITER)[0]
        if parent and not names.get(parent):
            self.create(parent)
        moving = [n for n in names if (n == old or n.startswith(old + DELIMITER)) and self._path(n).is_dir()]
        for name in moving:
            folder = self._folder(name) if names[name] else None
            with folder.lock() if folder else ExitStack():
                os.rename(self._path(name), self._path(new + name[len(old) :]))
                self.store.retire(self._path(name))
        fsync_dir(self.root)

        def remap(meta: dict) -> None:  # type: ignore[type-arg]
            def moved(n: str) -> str:
                return new + n[len(old) :] if n == old or n.startswith(old + DELIMITER) else n

            meta["special_use"] = {moved(n): use for n, use in meta["special_use"].items()}
            meta["subscribed"] = sorted({moved(n) for n in meta["subscribed"]})

        self._update_meta(remap)

    def subscribe(self, name: str) -> None:
        name = normalize_name(name)

        def add(meta: dict) -> None:  # type: ignore[type-arg]
            if name not in meta["subscribed"]:
                meta["subscribed"].append(name)

        self._update_meta(add)

    def unsubscribe(self, name: str) -> None:
        name = normalize_name(name)

        def remove(meta: dict) -> None:  # type: ignore[type-arg]
            if name in meta["subscribed"]:
                meta["subscribed"].remove(name)

        self._update_meta(remove)

    def open(self, name: str, *, readonly: bool = False) -> Mailbox:
        """SELECT (or EXAMINE with readonly: \\Recent is not claimed)."""
        name = normalize_name(name)
        if name == "INBOX":
            self._ensure_root()
        elif not (self._path(name) / "cur").is_dir():
            raise MailboxError(NONEXISTENT)
        return Mailbox(self, self._folder(name), name, readonly=readonly)

    def status(self, name: str) -> MailboxStatus:
        name = normalize_name(name)
        if name == "INBOX":
            self._ensure_root()
        elif not (self._path(name) / "cur").is_dir():
            raise MailboxError(NONEXISTENT)
        folder = self._folder(name)
        with folder.lock():
            folder.refresh()
            entries = list(folder.entries.values())
            return MailboxStatus(
                messages=len(entries),
                recent=sum(1 for e in entries if e.uid >= folder.first_recent),
                uidnext=folder.uidnext,
                uidvalidity=folder.uidvalidity,
                unseen=sum(1 for e in entries if "S" not in info_letters(e.name)),
                deleted=sum(1 for e in entries if "T" in info_letters(e.name)),
                size=sum(folder.details(e)[1] for e in entries),
                highestmodseq=folder.highestmodseq,
            )

    def quota(self) -> tuple[int, int]:
        """(bytes stored in all folders, limit; 0 = none)."""
        used = 0
        for name, selectable in self._names().items():
            if not selectable:
                continue
            for sub in ("cur", "new"):
                folder = self._path(name) / sub
                try:
                    files = os.listdir(folder)
                except FileNotFoundError:
                    continue
                for file in files:
                    size = MaildirName.parse(file).size
                    if size is None:
                        try:
                            size = os.stat(folder / file).st_size
                        except FileNotFoundError:
                            continue
                    used += size
        return used, self.store.quota_bytes

    def check_quota(self, extra: int) -> None:
        used, limit = self.quota()
        if limit and used + extra > limit:
            raise MailboxError("[OVERQUOTA] Quota exceeded")


# -- one session's view of a folder --------------------------------------------------------


class Mailbox:
    """A selected folder as one IMAP session sees it (see the module Rules)."""

    def __init__(self, owner: UserMailboxes, folder: Folder, name: str, *, readonly: bool = False) -> None:
        self.name = name
        self.readonly = readonly
        self._owner = owner
        self._folder = folder
        self._view: dict[int, MessageRecord] = {}
        self._generation = 0  # the folder generation the view last matched
        self._cur = os.path.join(folder.path, "cur")
        self.recent: set[int] = set()  # RFC 3501 §2.3.2 \Recent, for this session only
        with folder.lock():
            folder.refresh()
            self.uidvalidity = folder.uidvalidity
            self.uidnext = folder.uidnext
            self.highestmodseq = folder.highestmodseq
            self._take(folder)

    @property
    def keywords(self) -> list[str]:
        """Keywords defined in this folder (for FLAGS and PERMANENTFLAGS)."""
        return [k for k in self._folder.keywords if k is not None]

    def sync(self) -> SyncResult:
        with self._folder.lock():
            self._folder.refresh()
            return self._take(self._folder)

    def _take(self, folder: Folder) -> SyncResult:
        """Move the view to the folder's state; called with the lock held."""
        if folder.uidvalidity != self.uidvalidity:
            raise MailboxError("[CANNOT] Mailbox was reset (new UIDVALIDITY); select it again")
        if folder.generation == self._generation:
            # Nothing changed since the view last matched the folder: no per-message work.
            self.uidnext = folder.uidnext
            self.highestmodseq = folder.highestmodseq
            return SyncResult([], [], [])
        expunged = [uid for uid in self._view if uid not in folder.entries]
        for uid in expunged:
            del self._view[uid]
            self.recent.discard(uid)
        added: list[MessageRecord] = []
        changed: list[MessageRecord] = []
        for uid, entry in folder.entries.items():
            known = self._view.get(uid)
            if known is None:
                record = self._record(entry)
                added.append(record)
                self._view[uid] = record
            elif known.modseq != entry.modseq or known.name != entry.name:
                record = self._record(entry)
                self._view[uid] = record
                if record.modseq != known.modseq or record.flags != known.flags:
                    changed.append(record)
        if added and len(self._view) > len(added) and added[0].uid < max(self._view):
            self._view = dict(sorted(self._view.items()))
        self.recent.update(r.uid for r in added if r.uid >= folder.first_recent)
        if not self.readonly and folder.first_recent < folder.uidnext:
            folder.first_recent = folder.uidnext  # claimed: no other session sees them \Recent
            folder.save()
        self.uidnext = folder.uidnext
        self.highestmodseq = folder.highestmodseq
        self._generation = folder.generation
        return SyncResult(added, expunged, changed)

    def _record(self, entry: Entry) -> MessageRecord:
        date, size = self._folder.details(entry)
        return MessageRecord(entry.uid, entry.name, self._folder.flags(entry.name), date, size, entry.modseq,
                             self._cur)

    def _own_change(self, before: int, generation: int | None = None) -> None:
        """Advance HIGHESTMODSEQ past our own change only if no unseen change lies between.

        `generation` is the folder's before the change: if the view matched it,
        the view (which the caller updated) matches the folder now.
        """
        if self.highestmodseq == before:
            self.highestmodseq = self._folder.highestmodseq
        if self._generation == generation:
            self._generation = self._folder.generation

    def messages(self) -> list[MessageRecord]:
        return list(self._view.values())

    def open_file(self, uid: int) -> BinaryIO:
        for _ in range(3):  # another session may rename it (flags) between look-up and open
            # Only the in-memory entry is read: the thread lock is enough (no flock, no
            # lock-file open per message, which halved FETCH throughput).
            with self._folder._thread_lock:
                entry = self._folder.entries.get(uid)
                path = os.path.join(self._cur, entry.name) if entry else None
            if path is None:
                break
            try:
                return open(path, "rb")
            except FileNotFoundError:
                continue
        raise MailboxError("[EXPUNGEISSUED] Message was expunged")

    def read(self, uid: int) -> bytes:
        with self.open_file(uid) as f:
            return f.read()

    def message(self, uid: int) -> bytes | None:
        """The whole message; None when it is gone (SEARCH BODY / TEXT)."""
        try:
            return self.read(uid)
        except (FileNotFoundError, MailboxError):
            return None

    def read_header(self, uid: int) -> bytes:
        """The header block of a message, up to and with its empty line."""
        lines = []
        with self.open_file(uid) as f:
            for line in f:
                lines.append(line)
                if line in (b"\n", b"\r\n"):
                    break
        return b"".join(lines)

    def headers(self, uids: Iterable[int], names: frozenset[str] = CACHED_FIELDS) -> dict[int, ParsedHeader]:
        """Headers of these messages holding at least the fields `names` (lower case); gone ones left out.

        When the folder's header cache keeps every one of `names`, hits come
        from it and misses are read once and added; otherwise each header is
        read from its file. A UID the folder no longer has (expunged by
        someone, not yet told to this session) is gone.
        """
        folder = self._folder
        cacheable = names <= CACHED_FIELDS
        out: dict[int, ParsedHeader] = {}
        missing: list[tuple[int, str]] = []
        with folder.lock():
            folder.refresh()
            entries = folder.entries
            cache = folder.header_cache() if cacheable else None
            for uid in uids:
                entry = entries.get(uid)
                if entry is None:
                    continue
                stem = entry.stem
                header = cache.get(uid, stem) if cache is not None else None
                if header is None:
                    missing.append((uid, stem))
                else:
                    out[uid] = header
        read: list[tuple[int, str, bytes]] = []
        for uid, stem in missing:  # without the lock: other sessions go on meanwhile
            try:
                read.append((uid, stem, self.read_header(uid)))
            except (FileNotFoundError, MailboxError):
                continue
        if not cacheable:
            out.update((uid, ParsedHeader(block)) for uid, _, block in read)
        elif read:
            with folder.lock():
                cache = folder.header_cache()
                for uid, stem, block in read:
                    out[uid] = cache.add(uid, stem, cached_part(block))
                cache.save()
        return out

    def store_flags(
        self, uids: Iterable[int], mode: str, flags: Iterable[str], *, unchangedsince: int | None = None
    ) -> tuple[list[MessageRecord], list[int]]:
        """STORE: mode "+" adds, "-" removes, "" replaces. Returns (changed, failed UNCHANGEDSINCE)."""
        if mode not in ("+", "-", ""):
            raise ValueError(f"bad store mode {mode!r}")
        self._writable()
        wanted = normalize_flags(flags)
        folder = self._folder
        with folder.lock():
            folder.refresh()
            before, generation = folder.highestmodseq, folder.generation
            wanted = folder.canonical(wanted)
            failed: list[int] = []
            pending: list[tuple[Entry, frozenset[str]]] = []
            for uid in sorted(set(uids)):
                entry = folder.entries.get(uid)
                if entry is None or uid not in self._view:
                    continue
                # RFC 7162 §3.1.3: compared with the message's current MODSEQ.
                if unchangedsince is not None and entry.modseq > unchangedsince:
                    failed.append(uid)
                    continue
                current = folder.flags(entry.name)
                new = current | wanted if mode == "+" else current - wanted if mode == "-" else wanted
                if new != current:
                    pending.append((entry, new))
            changed: list[MessageRecord] = []
            if pending:
                modseq = folder.next_modseq()
                for entry, new in pending:
                    if folder.rename_entry(entry, folder.letters(new, entry.name), modseq):
                        record = self._record(entry)
                        self._view[entry.uid] = record
                        changed.append(record)
                folder.save()
                self._own_change(before, generation)
            return changed, failed

    def append(self, data: bytes, flags: Iterable[str] = (), internal_date: datetime | None = None) -> int:
        """APPEND: store the message (LF line ends) in cur/; returns its UID."""
        wanted = normalize_flags(flags)
        body = data.replace(b"\r\n", b"\n")
        self._owner.check_quota(len(body))
        wire = len(body) + body.count(b"\n")
        stem = self._owner.store.new_stem(f",S={len(body)},W={wire}")
        folder = self._folder
        tmp = folder.path / "tmp" / stem
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        if internal_date is not None:
            stamp = internal_date.timestamp()
            os.utime(tmp, (stamp, stamp))
        with folder.lock():
            try:
                name = with_letters(stem, folder.letters(wanted))
            except MailboxError:
                os.unlink(tmp)
                raise
            os.rename(tmp, folder.path / "cur" / name)
            fsync_dir(folder.path / "cur")
            folder.refresh()
            return folder.by_stem[stem]

    def copy(self, uids: Iterable[int], dest: Mailbox) -> list[tuple[int, int]]:
        """COPY: hard links (copies across file systems), flags kept; (source uid, new uid) pairs."""
        return self._transfer(uids, dest, remove=False)

    def move(self, uids: Iterable[int], dest: Mailbox) -> list[tuple[int, int]]:
        """MOVE (RFC 6851): a rename into the destination, then the source entries are expunged."""
        self._writable()
        return self._transfer(uids, dest, remove=True)

    def _writable(self) -> None:
        if self.readonly:
            raise MailboxError("[READ-ONLY] Mailbox was opened read-only")

    def _transfer(self, uids: Iterable[int], dest: Mailbox, *, remove: bool) -> list[tuple[int, int]]:
        source, target = self._folder, dest._folder
        with ExitStack() as stack:
            for folder in sorted({source, target}, key=lambda f: str(f.path)):
                stack.enter_context(folder.lock())
            source.refresh()
            if target is not source:
                target.refresh()
            before = source.highestmodseq
            picked = [uid for uid in sorted(set(uids)) if uid in self._view and uid in source.entries]
            if not remove:
                self._owner.check_quota(sum(_stored_size(source, source.entries[uid]) for uid in picked))
            pairs = _transfer(self._owner.store, source, target, picked, remove=remove)
            if remove:
                for uid, _ in pairs:
                    self._view.pop(uid, None)
                    self.recent.discard(uid)
                self._own_change(before)
            return pairs

    def expunge(self, uids: Iterable[int] | None = None) -> list[int]:
        """EXPUNGE, or UID EXPUNGE (RFC 4315) with `uids`: removes \\Deleted messages this view knows."""
        self._writable()
        only = None if uids is None else set(uids)
        folder = self._folder
        with folder.lock():
            folder.refresh()
            before, generation = folder.highestmodseq, folder.generation
            targets = [
                uid
                for uid in self._view
                if uid in folder.entries
                and "T" in info_letters(folder.entries[uid].name)
                and (only is None or uid in only)
            ]
            removed = folder.remove(targets)
            for uid in removed:
                del self._view[uid]
                self.recent.discard(uid)
            if removed:
                self._own_change(before, generation)
            return removed

    def vanished_since(self, modseq: int) -> list[int]:
        """UIDs expunged after `modseq` (RFC 7162 §3.2.5.1); may say more than needed, never less."""
        with self._folder.lock():
            folder = self._folder
            if modseq < folder.vanished_floor:
                return [uid for uid in range(1, self.uidnext) if uid not in self._view]
            return sorted({uid for uid, m in folder.vanished if m > modseq and uid not in self._view})

    def changed_since(self, modseq: int) -> list[MessageRecord]:
        return [record for record in self._view.values() if record.modseq > modseq]


def _transfer(
    store: MailboxStore, source: Folder, target: Folder, uids: list[int], *, remove: bool
) -> list[tuple[int, int]]:
    """Copy or move messages between folders whose locks are held; returns (old uid, new uid)."""
    planned: list[tuple[int, str]] = []
    for uid in uids:
        entry = source.entries[uid]
        stem = entry.stem
        fields = stem[stem.index(",") :] if "," in stem else ""  # keep S= and W=
        new_stem = store.new_stem(fields)
        name = with_letters(new_stem, target.letters(source.flags(entry.name)))
        origin = source.path / "cur" / entry.name
        destination = target.path / "cur" / name
        try:
            if remove:
                os.rename(origin, destination)
            else:
                _link_or_copy(origin, destination, target.path / "tmp" / new_stem)
        except FileNotFoundError:
            continue  # expunged by someone else meanwhile
        planned.append((uid, new_stem))
    if not planned:
        return []
    fsync_dir(target.path / "cur")
    if remove:
        if source is not target:
            fsync_dir(source.path / "cur")
        source.forget([uid for uid, _ in planned], source.next_modseq())
        source.save()
    target.refresh()
    return [(uid, target.by_stem[stem]) for uid, stem in planned if stem in target.by_stem]


def _stored_size(folder: Folder, entry: Entry) -> int:
    size = MaildirName.parse(entry.name).size
    if size is None:
        try:
            size = os.stat(folder.path / "cur" / entry.name).st_size
        except FileNotFoundError:
            size = 0
    return size


def _link_or_copy(origin: Path, destination: Path, tmp: Path) -> None:
    try:
        os.link(origin, destination)
        return
    except FileNotFoundError:
        raise
    except OSError:
        pass  # another file system, or links not allowed: copy
    shutil.copy2(origin, tmp)  # keeps the mtime, which is the internal date
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, destination)
