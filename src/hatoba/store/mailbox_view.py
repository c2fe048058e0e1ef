"""One IMAP session's view of a selected folder: sync, read, headers, flags,
APPEND, COPY, MOVE, EXPUNGE, and the CONDSTORE/QRESYNC questions.

Rules:
- All methods block (file I/O, fsync); IMAP sessions call them from threads.
  The exception is read_now, which returns None rather than wait.
- Each Mailbox object is one session's view: the messages, flags and MODSEQs
  it has been told about. sync() moves the view to the folder's current
  state and says what changed, so sequence numbers change only when the
  session allows it (RFC 9051 §7.5.1).
- Delivery (new/) and POP3 (unlinks) change INBOX at any time: every
  operation re-reads the folder first.
- APPEND and COPY check the user's quota (UserMailboxes.check_quota); MOVE
  does not: the bytes stay in the same account.
- STORE, APPEND, COPY and MOVE are all or nothing: what fails half-way (a
  full disk: DiskFull) is undone before the error reaches the client.
- Folders are opened, listed and renamed by UserMailboxes (folder_tree.py);
  transfer_messages is shared with its RENAME of INBOX.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from hatoba.fsutil import NoWaitUnsupported, fsync_dir, read_if_cached, write_new_file
from hatoba.proto.imap.search import ParsedHeader
from hatoba.store.errors import DiskFull, Expunged, MailboxError, MailboxReset, ReadOnly
from hatoba.store.headercache import CACHED_FIELDS, cached_part
from hatoba.store.maildir import MaildirName
from hatoba.store.uidlist import (
    NO_SPACE_ERRNOS,
    UIDLIST,
    Entry,
    Folder,
    WouldWait,
    at_once_work,
    info_letters,
    normalize_flags,
    with_letters,
)

if TYPE_CHECKING:
    from hatoba.store.folder_tree import MailboxStore, UserMailboxes

log = logging.getLogger(__name__)


class StagedMessage(NamedTuple):
    """A message APPEND wrote to tmp/, waiting for its UID (Mailbox.stage)."""

    tmp: Path
    stem: str
    flags: frozenset[str]


def discard_staged(staged: list[StagedMessage]) -> None:
    """Remove staged files that were not added (gone already when they were)."""
    for message in staged:
        _unlink_quietly(message.tmp)


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


NO_RECENT: frozenset[int] = frozenset()


@dataclass
class SyncResult:
    added: list[MessageRecord]
    expunged: list[int]
    flags_changed: list[MessageRecord]


class Mailbox:
    """A selected folder as one IMAP session sees it (see the module Rules)."""

    # One lives as long as its session keeps the folder selected: hours, for IDLE.
    __slots__ = ("name", "readonly", "_claims", "_owner", "_folder", "_view", "_view_lent", "_generation", "recent",
                 "uidvalidity", "uidnext", "highestmodseq", "__weakref__")

    def __init__(self, owner: UserMailboxes, folder: Folder, name: str, *, readonly: bool = False,
                 target: bool = False) -> None:
        self.name = name
        self.readonly = readonly
        # Only a SELECT claims \Recent: not EXAMINE, nor the destination of APPEND, COPY or MOVE.
        self._claims = not readonly and not target
        self._owner = owner
        self._folder = folder
        self._view: dict[int, MessageRecord] = {}
        self._view_lent = False  # lend_view() gave _view out: it is copied before it changes
        self._generation = 0  # the folder generation the view last matched
        # RFC 3501 §2.3.2 \Recent, for this session only; most sessions never have any.
        self.recent: set[int] | frozenset[int] = NO_RECENT
        folder.views.add(self)
        with folder.lock():
            folder.refresh()
            self.uidvalidity = folder.uidvalidity
            self.uidnext = folder.uidnext
            self.highestmodseq = folder.highestmodseq
            self._take(folder)

    @property
    def folder(self) -> Folder:
        """The folder's shared state (one object per folder per process)."""
        return self._folder

    @property
    def keywords(self) -> list[str]:
        """Keywords defined in this folder (for FLAGS and PERMANENTFLAGS)."""
        return [k for k in self._folder.keywords if k is not None]

    def sync(self) -> SyncResult:
        # First a look under the shared lock, which other processes' looks do not wait
        # for; only news that must be written (new files, a \\Recent claim) takes it alone.
        with self._folder.lock(shared=True):
            result = self._sync_without_writing()
        if result is not None:
            return result
        if at_once_work() and not self._folder.small_enough_for_quick_refresh:
            raise WouldWait()  # a large folder's full look: in a thread, not on the event loop
        with self._folder.lock():
            self._folder.refresh()
            return self._take(self._folder)

    @property
    def at_once_allowed(self) -> bool:
        """Whether work on this folder may be tried at once on an event loop (see
        flushes_deferred): a folder small enough to list in well under a millisecond, on a
        file system that says when a read would wait."""
        return self._folder.reads_without_waiting and self._folder.small_enough_for_quick_refresh

    @property
    def quiet_look_at_once_allowed(self) -> bool:
        """Whether sync() may be tried at once on an event loop whatever the folder's size:
        it raises WouldWait before a large folder's listing or walk, so only the look that
        finds nothing changed (two stats and the lock) runs there."""
        return self._folder.reads_without_waiting

    def _sync_without_writing(self) -> SyncResult | None:
        """sync() under the lock, shared or not, if it needs no write and no message
        read; else None (and nothing changed)."""
        folder = self._folder
        if not folder.refresh_without_writing():
            return None
        if folder.generation != self._generation and (
                not self._quick_take(folder) or not folder.small_enough_for_quick_refresh):
            return None  # a large folder's changes: a walk over every message, left to sync()'s full look
        return self._take(folder)

    def _quick_take(self, folder: Folder) -> bool:
        """Whether _take(folder) writes nothing (no \\Recent to claim) and reads no message file."""
        if self._claims and folder.first_recent < folder.uidnext:
            return False
        return self._reads_no_file(folder)

    def _reads_no_file(self, folder: Folder) -> bool:
        """Whether _take(folder) learns every new message's size from its name."""
        last = next(reversed(self._view), 0)
        for uid in reversed(folder.entries):
            if uid <= last:
                break
            entry = folder.entries[uid]
            if entry.size is None and MaildirName.parse(entry.name).wire_size is None:
                return False  # its size would be read off the file
        return True

    def _take(self, folder: Folder) -> SyncResult:
        """Move the view to the folder's state; called with the lock held."""
        if folder.uidvalidity != self.uidvalidity:
            raise MailboxReset()
        if at_once_work() and not self._reads_no_file(folder):
            raise WouldWait()  # before the view changes
        if folder.generation == self._generation:
            # Nothing changed since the view last matched the folder: no per-message work.
            self.uidnext = folder.uidnext
            self.highestmodseq = folder.highestmodseq
            return SyncResult([], [], [])
        view = self._own_view()
        expunged = [uid for uid in view if uid not in folder.entries]
        for uid in expunged:
            del view[uid]
            self._forget_recent(uid)
        added: list[MessageRecord] = []
        changed: list[MessageRecord] = []
        for uid, entry in folder.entries.items():
            known = view.get(uid)
            if known is None:
                record = self._record(entry)
                added.append(record)
                view[uid] = record
            elif known.modseq != entry.modseq or known.name != entry.name:
                record = self._record(entry)
                view[uid] = record
                if record.modseq != known.modseq or record.flags != known.flags:
                    changed.append(record)
        if added and len(self._view) > len(added) and added[0].uid < max(self._view):
            self._view = dict(sorted(self._view.items()))
        recent = [r.uid for r in added if r.uid >= folder.first_recent]
        if recent:
            self.recent = {*self.recent, *recent}
        if self._claims and folder.first_recent < folder.uidnext:
            folder.first_recent = folder.uidnext  # claimed: no other session sees them \Recent
            _save_recent(folder)
        self.uidnext = folder.uidnext
        self.highestmodseq = folder.highestmodseq
        self._generation = folder.generation
        self._share_view(folder)
        return SyncResult(added, expunged, changed)

    def _forget_recent(self, uid: int) -> None:
        if uid in self.recent:  # then self.recent is a set of its own, not NO_RECENT
            self.recent.discard(uid)  # type: ignore[union-attr]

    def _record(self, entry: Entry) -> MessageRecord:
        """The entry's record, the one every session of this process shares while the
        message's name, MODSEQ and flags stay as they were (a session can keep
        thousands of them for hours)."""
        folder = self._folder
        flags = folder.flags(entry.name)
        record = entry.record
        if record is not None and record.name == entry.name and record.modseq == entry.modseq and record.flags is flags:
            return record
        date, size = folder.details(entry)
        record = MessageRecord(entry.uid, entry.name, flags, date, size, entry.modseq, folder.cur_dir)
        if entry.date is not None and entry.size is not None:  # else a guess (the file was gone): not kept
            entry.record = record
        return record

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

    def lend_view(self) -> dict[int, MessageRecord]:
        """The records this view holds, by uid in ascending order, to keep without a copy:
        the dict given is never changed again (the view copies it before its next change).
        A session that has told its client all the view knows holds this one dict, not two."""
        self._view_lent = True
        return self._view

    def view_matches(self, records: dict[int, MessageRecord]) -> bool:
        """Whether `records` holds just what this view does (the same record objects)."""
        return records is self._view or records == self._view

    def _share_view(self, folder: Folder) -> None:
        """Keep the folder's shared dict for this generation if it holds what this view does
        (sessions that all see the folder as it is hold one dict between them); else offer
        this one. Either way the dict is lent: whoever changes it copies it first."""
        shared = folder.shared_view
        if shared is not None and shared[0] == folder.generation and shared[1] == self._view:
            self._view = shared[1]
        else:
            folder.shared_view = (folder.generation, self._view)
        self._view_lent = True

    def _own_view(self) -> dict[int, MessageRecord]:
        """_view, copied first if it was lent: call before changing it."""
        if self._view_lent:
            self._view = dict(self._view)
            self._view_lent = False
        return self._view

    def open_file(self, uid: int) -> BinaryIO:
        """The message's file, open for reading. MailboxError for a name in cur/ that is not
        a regular file (a FIFO, a directory, a device a symlink leads to): never read."""
        for _ in range(3):  # another session may rename it (flags) between look-up and open
            path = self._folder.file_path(uid)  # no flock per message: it halved FETCH throughput
            if path is None:
                break
            try:
                # O_NONBLOCK: opening a FIFO someone put in cur/ must not wait for a writer.
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise MailboxError(f"{path} is not a regular file; not read")
            return os.fdopen(fd, "rb")
        raise Expunged()

    def read(self, uid: int) -> bytes:
        with self.open_file(uid) as f:
            # As many bytes as the file says it has (a file under /proc says 0: nothing).
            return f.read(os.fstat(f.fileno()).st_size)

    def read_now(self, uid: int, limit: int) -> bytes | None:
        """The message if it is at most `limit` bytes and reading it cannot wait on a disk.

        An event loop may call it (it takes no lock): None means "read it in a thread".
        Raises Expunged when the message is gone.
        """
        if not self._folder.reads_without_waiting:
            return None
        for _ in range(3):  # as in open_file
            path = self._folder.file_path(uid)
            if path is None:
                break
            try:
                return read_if_cached(path, limit)
            except FileNotFoundError:
                continue
            except NoWaitUnsupported:
                self._folder.reads_without_waiting = False  # e.g. NFS: threads from now on
                return None
        raise Expunged()

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
        """STORE: mode "+" adds, "-" removes, "" replaces. Returns (changed, failed UNCHANGEDSINCE).

        All or nothing: a refusal (TooManyKeywords, DiskFull) changes no message.
        """
        if mode not in ("+", "-", ""):
            raise ValueError(f"bad store mode {mode!r}")
        self._writable()
        wanted = normalize_flags(flags)
        folder = self._folder
        with folder.lock(), _refused_when_full("STORE", folder):
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
                if mode != "-":
                    folder.add_keywords(wanted)  # TooManyKeywords here, before any message changes
                letters = [(entry, folder.letters(new, entry.name)) for entry, new in pending]
                for entry in folder.relabel(letters):
                    record = self._record(entry)
                    self._own_view()[entry.uid] = record
                    changed.append(record)
                self._own_change(before, generation)
            return changed, failed

    def append(self, data: bytes, flags: Iterable[str] = (), internal_date: datetime | None = None) -> int:
        """APPEND: store the message (LF line ends) in cur/; returns its UID."""
        return self.append_many([(data, flags, internal_date)])[0]

    def append_many(self, messages: list[tuple[bytes, Iterable[str], datetime | None]]) -> list[int]:
        """APPEND of one or more messages (RFC 3502 MULTIAPPEND): their UIDs, in order.

        All or nothing: every file is written and fsynced in tmp/ first (stage),
        then all move into cur/ under one lock and get their UIDs in one UID list
        write (add_staged); a failure on the way (a full disk) leaves none behind.
        """
        staged = self.stage(messages)
        try:
            return self.add_staged(staged)
        finally:
            discard_staged(staged)

    def stage(self, messages: list[tuple[bytes, Iterable[str], datetime | None]]) -> list[StagedMessage]:
        """APPEND's first half, without the lock: the messages (LF line ends) written and
        fsynced in tmp/, quota checked. The caller passes them to add_staged, and to
        discard_staged whatever happens (it removes what was not added)."""
        prepared = [(data.replace(b"\r\n", b"\n"), normalize_flags(flags), when) for data, flags, when in messages]
        self._owner.check_quota(sum(len(body) for body, _, _ in prepared))
        folder = self._folder
        written: list[StagedMessage] = []
        with _refused_when_full("APPEND", folder):
            try:
                for body, wanted, when in prepared:
                    wire = len(body) + body.count(b"\n")
                    stem = self._owner.store.new_stem(f",S={len(body)},W={wire}")
                    tmp = folder.path / "tmp" / stem
                    write_new_file(tmp, body, 0o600)  # leaves nothing behind when the disk is full
                    written.append(StagedMessage(tmp, stem, wanted))
                    if when is not None:
                        stamp = when.timestamp()
                        os.utime(tmp, (stamp, stamp))
            except BaseException:
                discard_staged(written)
                raise
        return written

    def add_staged(self, staged: list[StagedMessage]) -> list[int]:
        """APPEND's second half: the staged files into cur/ with their UIDs, under the lock."""
        folder = self._folder
        with _refused_when_full("APPEND", folder), folder.lock():
            return self._add_files(staged)

    def _add_files(self, written: list[StagedMessage]) -> list[int]:
        """Move APPENDed files into cur/ and give them their UIDs; with the lock held.

        The UIDs exist once the UID list is written: if that fails, the files are
        removed again, so a client told NO finds no message.
        """
        folder = self._folder
        canonical = [(tmp, stem, folder.canonical(flags)) for tmp, stem, flags in written]
        folder.add_keywords({flag for _, _, flags in canonical for flag in flags})
        moved: list[Path] = []
        try:
            for tmp, stem, flags in canonical:
                final = folder.path / "cur" / with_letters(stem, folder.letters(flags))
                os.rename(tmp, final)
                moved.append(final)
            folder.names_changed("cur")
            folder.refresh(strict=True)
        except WouldWait:  # none raised after the moves today; if one were, the thread retries
            for message, final in zip(canonical, moved):
                os.rename(final, message[0])
            raise
        except BaseException:
            _remove_copies(moved, folder)
            raise
        return [folder.by_stem[stem] for _, stem, _ in canonical]

    def copy(self, uids: Iterable[int], dest: Mailbox) -> list[tuple[int, int]]:
        """COPY: hard links (copies across file systems), flags kept; (source uid, new uid) pairs."""
        return self._transfer(uids, dest, remove=False)

    def move(self, uids: Iterable[int], dest: Mailbox) -> list[tuple[int, int]]:
        """MOVE (RFC 6851): a rename into the destination, then the source entries are expunged."""
        self._writable()
        return self._transfer(uids, dest, remove=True)

    def _writable(self) -> None:
        if self.readonly:
            raise ReadOnly()

    def _transfer(self, uids: Iterable[int], dest: Mailbox, *, remove: bool) -> list[tuple[int, int]]:
        source, target = self._folder, dest._folder
        with ExitStack() as stack:
            for folder in sorted({source, target}, key=lambda f: str(f.path)):
                stack.enter_context(folder.lock())
            stack.enter_context(_refused_when_full("MOVE" if remove else "COPY", target))
            source.refresh()
            if target is not source:
                target.refresh()
            before = source.highestmodseq
            picked = [uid for uid in sorted(set(uids)) if uid in self._view and uid in source.entries]
            if not remove:
                self._owner.check_quota(sum(_stored_size(source, source.entries[uid]) for uid in picked))
            pairs = transfer_messages(self._owner.store, source, target, picked, remove=remove)
            if remove:
                for uid, _ in pairs:
                    self._own_view().pop(uid, None)
                    self._forget_recent(uid)
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
                del self._own_view()[uid]
                self._forget_recent(uid)
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


def transfer_messages(
    store: MailboxStore, source: Folder, target: Folder, uids: list[int], *, remove: bool
) -> list[tuple[int, int]]:
    """Copy or move messages between folders whose locks are held; returns (old uid, new uid).

    All or nothing (RFC 9051 §6.4.7, RFC 6851 §3.3): every copy is made and
    the target's UID list written before any source message is removed; a
    failure on the way (a full disk) removes the copies made so far.
    """
    entries = [source.entries[uid] for uid in uids]
    target.add_keywords({flag for entry in entries for flag in source.flags(entry.name)})
    made: list[Path] = []
    planned: list[tuple[int, str]] = []
    try:
        for entry in entries:
            stem = entry.stem
            fields = stem[stem.index(",") :] if "," in stem else ""  # keep S= and W=
            new_stem = store.new_stem(fields)
            name = with_letters(new_stem, target.letters(source.flags(entry.name)))
            destination = target.path / "cur" / name
            try:
                _link_or_copy(source.path / "cur" / entry.name, destination, target.path / "tmp" / new_stem)
            except FileNotFoundError:
                continue  # expunged by someone else meanwhile
            made.append(destination)
            planned.append((entry.uid, new_stem))
        if not planned:
            return []
        target.names_changed("cur")
        target.refresh(strict=True)
    except BaseException:
        _remove_copies(made, target)
        raise
    pairs = [(uid, target.by_stem[stem]) for uid, stem in planned if stem in target.by_stem]
    if remove:  # only now: every copy is in place
        source.remove([uid for uid, _ in pairs])
    return pairs


def _remove_copies(made: list[Path], target: Folder) -> None:
    """Undo a transfer that failed half-way: its copies go (none got a UID)."""
    for path in made:
        _unlink_quietly(path)
    try:
        fsync_dir(target.path / "cur")
    except OSError:
        pass  # the unlinks are done; a crash now could at worst bring back a copy


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
    except OSError as exc:
        if exc.errno not in _LINK_REFUSED:
            raise  # gone, or a full disk: a copy would not fare better
    try:
        shutil.copy2(origin, tmp)  # keeps the mtime, which is the internal date
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, destination)
    except BaseException:
        _unlink_quietly(tmp)
        raise


# Why a hard link may be refused where a copy works: another file system, links
# not allowed there, or too many links to one file.
_LINK_REFUSED = frozenset({errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP})


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@contextmanager
def _refused_when_full(what: str, folder: Folder) -> Iterator[None]:
    """A full disk (or file-system quota) is a refusal, DiskFull, not a server bug.

    The change was undone before the error arrives here; one line goes to the log.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno not in NO_SPACE_ERRNOS:
            raise
        log.warning("%s refused in %s: %s", what, folder.path, exc.strerror)
        raise DiskFull() from None


def _save_recent(folder: Folder) -> None:
    """Write who saw which messages first (\\Recent); a full disk only loses that after a restart."""
    try:
        folder.save()
    except OSError as exc:
        if exc.errno not in NO_SPACE_ERRNOS:
            raise
        log.warning("cannot write %s in %s: %s", UIDLIST, folder.path, exc.strerror)
