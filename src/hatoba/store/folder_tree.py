"""A user's IMAP folder tree over their Maildir: names, CREATE, DELETE, RENAME,
SUBSCRIBE, LIST, STATUS, quota, and opening a folder as a Mailbox.

Layout (Dovecot's Maildir++): INBOX is the Maildir root that delivery and
POP3 use; a folder "Parent.Child" is the directory ".Parent.Child" in it,
each name component in modified UTF-7 (RFC 3501 §5.1.3), with tmp/ new/ cur/
and an empty "maildirfolder" file. Per-folder state is in uidlist.py;
per-user state (special-use, subscriptions, the last UIDVALIDITY handed out)
is the small JSON file "hatoba-mailboxes.json" in the Maildir root. One
session's view of an open folder is mailbox_view.py.

Rules:
- All methods block (file I/O, fsync); IMAP sessions call them from threads.
- Deleting a folder that has children deletes its messages and leaves the
  name as \\Noselect, as RFC 3501 §6.3.4 describes; deleting a \\Noselect
  name that still has children is refused (HasChildren).
- Quota counts stored bytes (LF line ends) in every folder; delivery does not
  check it, APPEND and COPY do.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from hatoba.fsutil import fsync_dir, make_private_dir, write_atomic
from hatoba.proto.imap import mutf7
from hatoba.store.errors import (
    HasChildren,
    ImpossibleChange,
    InvalidName,
    MailboxError,
    MailboxExists,
    NoSuchMailbox,
    OverQuota,
)
from hatoba.store.mailbox_view import Mailbox, MessageRecord, SyncResult, transfer_messages
from hatoba.store.maildir import MaildirName, MaildirStore, host_part, unique_part
from hatoba.store.uidlist import (
    SYSTEM_FLAGS,
    UIDLIST,
    Entry,
    Folder,
    WouldWait,
    at_once_work,
    info_letters,
    renew_uidvalidity,
)

__all__ = [
    "DELIMITER",
    "SYSTEM_FLAGS",
    "Mailbox",
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


# -- names ---------------------------------------------------------------------------


# Folder names on disk are modified UTF-7, as Dovecot writes them (RFC 3501 §5.1.3).
encode_mutf7 = mutf7.encode
decode_mutf7 = mutf7.decode


def normalize_name(name: str) -> str:
    """A valid mailbox name, "INBOX" spelled in capitals (RFC 3501 §5.1), or InvalidName."""
    if not name or any(ord(c) < 0x20 or c in "\x7f/*%" for c in name):
        raise InvalidName()
    parts = name.split(DELIMITER)
    if any(not part for part in parts):
        raise InvalidName()
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    normal = DELIMITER.join(parts)
    if len(dirname_of(normal).encode()) > MAX_DIRNAME:
        raise InvalidName("Mailbox name is too long")
    return normal


def dirname_of(name: str) -> str:
    return "." + ".".join(encode_mutf7(part) for part in name.split(DELIMITER))


def special_use_dirname(root: Path, use: str) -> str:
    """The directory of the folder of `root` marked `use` (e.g. "\\Junk"); "" when none is marked."""
    try:
        meta = json.loads((root / META).read_text("utf-8"))
    except (OSError, ValueError):
        return ""
    for name, marked in (meta.get("special_use") or {}).items():
        if marked == use and isinstance(name, str) and name != "INBOX":
            try:
                return dirname_of(normalize_name(name))
            except InvalidName:
                return ""
    return ""


def name_of_dirname(dirname: str) -> str | None:
    """The mailbox a ".Name" directory holds, or None for anything else."""
    if not dirname.startswith(".") or dirname.startswith(".."):
        return None
    try:
        name = normalize_name(DELIMITER.join(decode_mutf7(p) for p in dirname[1:].split(".")))
    except (ValueError, InvalidName):
        return None
    if name == "INBOX" or dirname_of(name) != dirname:
        return None
    return name


# -- the store -----------------------------------------------------------------------


RECENT_FOLDERS = 32  # folder states kept after their last user let go
UNHELD_HEADER_CACHE_MESSAGES = 5_000  # about 10 MiB of header caches no session holds

class MailboxStore:
    """Every user's mailboxes; holds the per-folder state and locks all sessions share."""

    def __init__(
        self,
        mail_root: Path,
        *,
        quota_bytes: int = 0,
        hostname: str | None = None,
        user_quota_mb: Callable[[str], int | None] | None = None,
    ) -> None:
        """`quota_bytes` is every user's limit (0 = none) unless `user_quota_mb(address)`
        gives the user's own, in MiB (0 = none; None = the default)."""
        self.mail_root = Path(mail_root)
        self.quota_bytes = quota_bytes
        self.user_quota_mb = user_quota_mb
        self._host = host_part(hostname or "")
        self._addresses = MaildirStore(self.mail_root, hostname=hostname or "")
        self._lock = threading.Lock()
        # A folder's state lives while a session or operation holds it, and the
        # RECENT_FOLDERS used last stay besides (clients poll STATUS); the rest
        # is read from disk again when needed, so memory does not grow with
        # every folder of every user ever opened.
        self._folders: weakref.WeakValueDictionary[Path, Folder] = weakref.WeakValueDictionary()
        self._recent: OrderedDict[Path, Folder] = OrderedDict()
        # Weak: a user's lock lives while some thread holds or waits for it, not forever.
        self._meta_locks: weakref.WeakValueDictionary[Path, threading.Lock] = weakref.WeakValueDictionary()
        # One per address while some session holds it: a user's many IMAP connections share it.
        # Its own lock: for_user runs on the event loop, and _lock is held around file looks.
        self._users: weakref.WeakValueDictionary[str, UserMailboxes] = weakref.WeakValueDictionary()
        self._users_lock = threading.Lock()

    def for_user(self, address: str) -> UserMailboxes:
        with self._users_lock:
            user = self._users.get(address)
            if user is None:
                user = self._users[address] = UserMailboxes(self, self._addresses.maildir(address), address)
            return user

    def quota_limit(self, address: str) -> int:
        """The storage limit of `address` in bytes (0 = none)."""
        if self.user_quota_mb is not None:
            own = self.user_quota_mb(address)
            if own is not None:
                return own * 1024 * 1024
        return self.quota_bytes

    def folder(self, path: Path, new_uidvalidity: Callable[[], int]) -> Folder:
        with self._lock:
            folder = self._folders.get(path)
            if folder is None or not folder.same_directory():
                folder = self._folders[path] = Folder(path, new_uidvalidity)
            self._recent[path] = folder
            self._recent.move_to_end(path)
            if len(self._recent) > RECENT_FOLDERS:
                self._recent.popitem(last=False)
            # Recent folders no session holds keep their header caches up to a budget, the
            # most recently opened first; larger ones are read again from their files.
            budget = UNHELD_HEADER_CACHE_MESSAGES
            for other in reversed(self._recent.values()):
                if other is not folder:
                    budget -= other.unheld_header_cache_size()
                    if budget < 0:
                        other.drop_unused_header_cache()
            return folder

    def retire(self, path: Path) -> None:
        """Forget a deleted or renamed folder's state (call with its lock held)."""
        with self._lock:
            folder = self._folders.pop(path, None)
            self._recent.pop(path, None)
        if folder is not None:
            folder.retire()

    def meta_lock(self, root: Path) -> threading.Lock:
        with self._lock:
            lock = self._meta_locks.get(root)
            if lock is None:
                self._meta_locks[root] = lock = threading.Lock()
            return lock

    def new_stem(self, fields: str = "") -> str:
        """A unique Maildir base name; names made later sort later (COPYUID order)."""
        return f"{int(time.time())}.{unique_part()}.{self._host}{fields}"



class UserMailboxes:
    """One user's folders: LIST, CREATE, DELETE, RENAME, SUBSCRIBE, STATUS, SELECT."""

    def __init__(self, store: MailboxStore, root: Path, address: str = "") -> None:
        self.store = store
        self.root = root
        self.address = address

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

    def renew_uidvalidities(self) -> int:
        """A new UIDVALIDITY for every folder (uidlist.renew_uidvalidity); returns how many changed."""
        changed = 0
        if not any(sel and (self._path(n) / UIDLIST).is_file() for n, sel in self._names().items()):
            return 0  # never opened over IMAP: no UID was handed out

        def renew(meta: dict) -> None:  # type: ignore[type-arg]
            nonlocal changed
            for name, selectable in self._names().items():
                if not selectable:
                    continue
                value = renew_uidvalidity(self._path(name), max(int(time.time()), meta["last_uidvalidity"] + 1))
                if value is not None:
                    meta["last_uidvalidity"] = value  # a folder made later gets a higher one
                    changed += 1

        self._update_meta(renew)
        return changed

    def last_uidvalidity(self) -> int:
        """The highest UIDVALIDITY handed out to this user's folders (0 before any)."""
        return int(self._read_meta()["last_uidvalidity"]) if self.root.is_dir() else 0

    def adopt_imported(self, subscribed: list[str], uidvalidity_floor: int) -> None:
        """After folders were brought over from another server (migrate/): their
        subscriptions, and UIDVALIDITYs handed out later stay above theirs."""
        def adopt(meta: dict) -> None:  # type: ignore[type-arg]
            meta["last_uidvalidity"] = max(meta["last_uidvalidity"], uidvalidity_floor)
            for name in subscribed:
                if name not in meta["subscribed"]:
                    meta["subscribed"].append(name)

        self._update_meta(adopt)

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

    def create(self, name: str) -> list[str]:
        """Make folder `name` and any missing parents; the names made, parents first."""
        # RFC 3501 §6.3.3: a trailing delimiter only declares the intent to make children.
        name = normalize_name(name[:-1] if name.endswith(DELIMITER) else name)
        names = self._names()
        if names.get(name):
            raise MailboxExists()
        parts = name.split(DELIMITER)
        made = []
        # RFC 3501 §6.3.3: superior names are created too.
        for i in range(1, len(parts) + 1):
            prefix = DELIMITER.join(parts[:i])
            if not names.get(prefix):
                self._make_folder(prefix)
                made.append(prefix)
        return made

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
            raise ImpossibleChange("INBOX cannot be deleted")
        names = self._names()
        if name not in names:
            raise NoSuchMailbox()
        has_children = any(other.startswith(name + DELIMITER) for other in names)
        path = self._path(name)
        if not names[name] and has_children:
            raise HasChildren()
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

    def rename(self, old: str, new: str) -> list[tuple[str, str | None]]:
        """RENAME; (name, old name) of every folder moved, children included, and
        (name, None) of each folder made (renaming INBOX moves its messages to a new one)."""
        old = normalize_name(old)
        new = normalize_name(new)
        names = self._names()
        if old not in names:
            raise NoSuchMailbox()
        if new == "INBOX" or new in names:
            raise MailboxExists("Target mailbox already exists")
        if new.startswith(old + DELIMITER):
            raise ImpossibleChange("Cannot move a mailbox into itself")
        if old == "INBOX":
            # RFC 3501 §6.3.5: the messages move to the new name; INBOX stays, empty,
            # and its children do not move.
            made = self.create(new)
            inbox = self._folder("INBOX")
            target = self._folder(new)
            with ExitStack() as stack:
                for folder in sorted((inbox, target), key=lambda f: str(f.path)):
                    stack.enter_context(folder.lock())
                inbox.refresh()
                target.refresh()
                transfer_messages(self.store, inbox, target, list(inbox.entries), remove=True)
            return [(name, None) for name in made]
        parent = new.rpartition(DELIMITER)[0]
        changed: list[tuple[str, str | None]] = []
        if parent and not names.get(parent):
            changed += [(name, None) for name in self.create(parent)]
        moving = [n for n in names if (n == old or n.startswith(old + DELIMITER)) and self._path(n).is_dir()]
        for name in moving:
            folder = self._folder(name) if names[name] else None
            with folder.lock() if folder else ExitStack():
                if folder:
                    # What any process wrote there and has not flushed yet would be flushed
                    # under the old path, which is gone after the rename: flush it now.
                    folder.flush_all_written()
                os.rename(self._path(name), self._path(new + name[len(old) :]))
                self.store.retire(self._path(name))
        fsync_dir(self.root)

        def remap(meta: dict) -> None:  # type: ignore[type-arg]
            def moved(n: str) -> str:
                return new + n[len(old) :] if n == old or n.startswith(old + DELIMITER) else n

            meta["special_use"] = {moved(n): use for n, use in meta["special_use"].items()}
            meta["subscribed"] = sorted({moved(n) for n in meta["subscribed"]})

        self._update_meta(remap)
        return changed + [(new + name[len(old) :], name) for name in sorted(names)
                          if name == old or name.startswith(old + DELIMITER)]

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

    def open(self, name: str, *, readonly: bool = False, target: bool = False) -> Mailbox:
        """SELECT (or EXAMINE with readonly); with target, a destination of APPEND, COPY or MOVE.

        Only a SELECT claims \\Recent (RFC 3501 §2.3.2): EXAMINE and a target
        leave it to the first session that selects the folder.
        """
        name = normalize_name(name)
        if name == "INBOX":
            self._ensure_root()
        elif not (self._path(name) / "cur").is_dir():
            raise NoSuchMailbox()
        return Mailbox(self, self._folder(name), name, readonly=readonly, target=target)

    def read_message(self, name: str, uid: int) -> tuple[int, bytes | None]:
        """(UIDVALIDITY, message `uid` as stored, None when there is none) of folder `name`.

        For CATENATE's URLs: no session view of the folder is made.
        """
        name = normalize_name(name)
        if name == "INBOX":
            self._ensure_root()
        elif not (self._path(name) / "cur").is_dir():
            raise NoSuchMailbox()
        folder = self._folder(name)
        with folder.lock():
            folder.refresh()
        for _ in range(3):  # another session may rename it (flags) between look-up and open
            path = folder.file_path(uid)
            if path is None:
                break
            try:
                with open(path, "rb") as f:
                    return folder.uidvalidity, f.read()
            except FileNotFoundError:
                continue
        return folder.uidvalidity, None

    def status(self, name: str, *, with_size: bool = True) -> MailboxStatus:
        """STATUS of folder `name`; with_size=False skips SIZE (it may stat every new file)."""
        name = normalize_name(name)
        if name == "INBOX":
            self._ensure_root()
        elif not (self._path(name) / "cur").is_dir():
            raise NoSuchMailbox()
        folder = self._folder(name)
        with folder.lock():
            folder.refresh()
            entries = list(folder.entries.values())
            if with_size and at_once_work() and any(
                    e.size is None and MaildirName.parse(e.name).wire_size is None for e in entries):
                raise WouldWait()  # a size read off a file
            return MailboxStatus(
                messages=len(entries),
                recent=sum(1 for e in entries if e.uid >= folder.first_recent),
                uidnext=folder.uidnext,
                uidvalidity=folder.uidvalidity,
                unseen=sum(1 for e in entries if "S" not in info_letters(e.name)),
                deleted=sum(1 for e in entries if "T" in info_letters(e.name)),
                size=sum(_wire_size(folder, e) for e in entries) if with_size else 0,
                highestmodseq=folder.highestmodseq,
            )

    def folder_of(self, name: str) -> Folder:
        """The shared state of folder `name`, for the caller to order work on it (one stat);
        NoSuchMailbox when it is not there. INBOX always is (open() makes it)."""
        name = normalize_name(name)
        if name != "INBOX" and not (self._path(name) / "cur").is_dir():
            raise NoSuchMailbox()
        return self._folder(name)

    def quota(self) -> tuple[int, int]:
        """(bytes stored in all folders, limit; 0 = none)."""
        limit = self.store.quota_limit(self.address)
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
        return used, limit

    def check_quota(self, extra: int) -> None:
        if not self.store.quota_limit(self.address):
            return  # no limit: no need to add up every folder
        used, limit = self.quota()
        if limit and used + extra > limit:
            raise OverQuota()


def _wire_size(folder: Folder, entry: Entry) -> int:
    """A message's size with CRLF line ends: known, or in its name (W=), else off its file."""
    if entry.size is not None:
        return entry.size
    wire = MaildirName.parse(entry.name).wire_size
    return wire if wire is not None else folder.details(entry)[1]


def renew_uidvalidities(mail_root: Path) -> int:
    """A new UIDVALIDITY for every folder of every user under DATA/mail (after a restore); returns how many."""
    store = MailboxStore(mail_root)
    changed = 0
    for domain in sorted(_subfolders(mail_root)):
        for local in sorted(_subfolders(domain)):
            if (local / "Maildir" / "cur").is_dir():
                changed += UserMailboxes(store, local / "Maildir").renew_uidvalidities()
    return changed


def _subfolders(path: Path) -> list[Path]:
    return [Path(e.path) for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
