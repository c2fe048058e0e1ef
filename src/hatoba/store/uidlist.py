"""One Maildir folder's IMAP state: UIDs, MODSEQs, keyword letters.

A folder (INBOX = the Maildir root, or a Maildir++ ".Name" subfolder) keeps:

  hatoba-uidlist       "V1 UIDVALIDITY UIDNEXT HIGHESTMODSEQ FIRSTRECENT VANISHEDFLOOR",
                       then "UID MODSEQ FILENAME" per message (FILENAME is in cur/)
                       and "X UID MODSEQ" per remembered expunge (QRESYNC, RFC 7162 §3.2.10),
                       then "C UIDNEXT HIGHESTMODSEQ FIRSTRECENT VANISHEDFLOOR"; after that,
                       one batch per change: lines of the same kinds ("UID MODSEQ FILENAME"
                       sets a message's entry, "X UID MODSEQ" expunges it), ended by a "C" line
  dovecot-keywords     "N keyword" lines: letter chr(ord("a") + N) in the ":2,FLAGS"
                       part of a file name means that keyword (Dovecot's format, so
                       Dovecot and hatoba read each other's keyword letters)
  hatoba-uidlist.lock  flock()ed around every change, for other processes

Rules:
- The file names are the truth for which messages exist and which flags they
  have; the UID list only remembers which UID and MODSEQ each file got.
- A message is known by its "stem", the name before ":" (flags change the rest).
- Every change is written before the lock is released, so the next holder (in
  any process) reads it: appended as a batch, which other processes read alone;
  the whole list is written again (write_atomic) once the batches outgrow the
  rest. A batch without its "C" line (a crash while it was written) is ignored,
  and no batch is written after one: the next change writes the list whole.
- Writes are flushed (fsync) after the lock is released, before the caller is
  told it is done (flush_changes, which threads share): holding the lock across
  fsyncs made every session of a busy folder wait for each other's disk.
  What another process wrote is flushed too before a session tells of it.
  UIDs are never reused within a UIDVALIDITY: UIDNEXT is in every "C" line.
  On a full disk a UID is taken back before anyone sees it (_unsaved); what
  the files themselves tell (expunges, outside flag changes) may wait in
  memory for the next write, as a restart finds it again in the files.
- A change a client asked for is all or nothing: keyword letters are given
  before any file is touched (add_keywords), the list is written before
  files are renamed (relabel).
- Callers hold Folder.lock() around every other method. An event loop may run
  folder work itself inside flushes_deferred(at_once=True): every wait (a lock
  held elsewhere, a whole list to write, a file to read) raises WouldWait
  before anything changed, and the caller runs the work in a thread instead.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hatoba.fsutil import write_all, write_atomic
from hatoba.store.errors import InvalidFlag, NoSuchMailbox, TooManyKeywords
from hatoba.store.headercache import HeaderCache
from hatoba.store.maildir import MaildirName

# A folder time this much older than the start of a listing means the listing saw every
# change up to it: a later change cannot share its clock tick. Coarse unless the folder's
# file system was seen to keep fine times from this host's clock, which ticks in milliseconds
# (a network file system's server may keep fine times from a clock far behind ours).
STAMP_TRUST_NS = 2_000_000_000
STAMP_TRUST_FINE_NS = 100_000_000
CLOCK_SLACK_NS = 20_000_000  # how far a file's fresh time may sit from our clock and still be ours

log = logging.getLogger(__name__)

UIDLIST = "hatoba-uidlist"
KEYWORDS = "dovecot-keywords"
LOCKFILE = "hatoba-uidlist.lock"
MAX_VANISHED = 10_000  # expunges remembered for QRESYNC; older ones fall back to "all missing UIDs"
MAX_KEYWORDS = 26  # one lower-case letter each
# refresh_without_writing() looks at folders up to this size only (a scan is one
# listdir and a dict look-up per message) and re-reads UID lists up to this many bytes.
QUICK_REFRESH_MESSAGES = 2_000
QUICK_REFRESH_LIST_BYTES = 128 * 1024
# The appended batches are written again as one list once they outgrow the rest of it
# (and this much at least): reading a list costs a parse of every line.
JOURNAL_MIN_BYTES = 64 * 1024
# Each change to a folder's entries gets a number from here, unique in the process,
# so a session's view can tell "nothing changed" without comparing every message.
_generations = itertools.count(1)

# Maildir info letters (Dovecot, maildir(5)); letters are kept in ASCII order.
SYSTEM_FLAGS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}
_FLAG_OF_LETTER = {letter: flag for flag, letter in SYSTEM_FLAGS.items()}
_SYSTEM_BY_LOWER = {flag.lower(): flag for flag in SYSTEM_FLAGS}
_ATOM_SPECIALS = frozenset('(){ %*"\\]')

# A full disk or file-system quota: both refused as DiskFull.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class WouldWait(Exception):
    """Work run at_once() would have to wait: for a lock held elsewhere, a flush, a
    whole list to write or a message to read. Raised before anything changed.

    `busy`: only the lock stood in the way (held by another thread or process for a
    moment); trying again soon may succeed, where the other reasons stay.
    """

    def __init__(self, *, busy: bool = False) -> None:
        super().__init__("the lock is held elsewhere" if busy else "it would wait")
        self.busy = busy


_mode = threading.local()


def _work_mode() -> tuple[bool, bool]:
    """(flushes deferred to the caller, nothing may wait) for this thread's folder work."""
    return getattr(_mode, "state", None) or (False, False)


def at_once_work() -> bool:
    """Whether this thread's folder work runs at_once (flushes_deferred)."""
    return _work_mode()[1]


@contextmanager
def flushes_deferred(*, at_once: bool = False) -> Iterator[None]:
    """Folder work in this block leaves its flushes to the caller, who runs
    Folder.flush_changes() (in a thread) before telling a client of the change.

    With `at_once` (for an event loop), locks are taken only when free and work
    that would wait for a disk raises WouldWait before it changes anything.
    """
    old = getattr(_mode, "state", None)
    _mode.state = (True, at_once)
    try:
        yield
    finally:
        _mode.state = old


def normalize_flags(flags: Iterable[str]) -> frozenset[str]:
    """Canonical spelling of system flags; keywords checked to be atoms (RFC 9051 §9 flag-keyword)."""
    out: set[str] = set()
    for flag in flags:
        if flag.startswith("\\"):
            canonical = _SYSTEM_BY_LOWER.get(flag.lower())
            if canonical is None:
                if flag.lower() == "\\recent":
                    continue  # RFC 3501 §2.3.2: a session flag, never stored
                raise InvalidFlag(f"Flag {flag[:40]} cannot be stored")
            out.add(canonical)
        elif not flag or len(flag) > 100 or any(c in _ATOM_SPECIALS or not 0x20 < ord(c) < 0x7F for c in flag):
            raise InvalidFlag()
        else:
            out.add(flag)
    return frozenset(out)


def info_letters(name: str) -> str:
    info = name.partition(":")[2]
    return info[2:] if info.startswith("2,") else ""


def with_letters(name: str, letters: str) -> str:
    return f"{name.split(':', 1)[0]}:2,{''.join(sorted(set(letters)))}"


def order_key(stem: str) -> tuple[int, str]:
    """New files get UIDs in delivery-time order, then name order."""
    head = stem.split(".", 1)[0]
    return (int(head) if head.isdigit() else 0, stem)


@dataclass(slots=True)  # one per message of every folder kept in memory
class Entry:
    uid: int
    modseq: int
    name: str  # file name in cur/
    date: datetime | None = None  # cached file mtime
    size: int | None = None  # cached size with CRLF line ends
    # The MessageRecord (store/mailbox_view.py) last made of this entry: every session
    # that selects the folder shares it instead of holding a copy per message.
    record: Any = field(default=None, compare=False, repr=False)

    @property
    def stem(self) -> str:
        return self.name.split(":", 1)[0]


class Folder:
    """Shared state of one folder; one object per folder per process (MailboxStore caches it)."""

    def __init__(self, path: Path, new_uidvalidity: Callable[[], int]) -> None:
        self.path = path
        self._cur = f"{path}/cur/"  # plain string prefixes: joined once per message in a scan
        self.cur_dir = f"{path}/cur"  # what MessageRecord.cur holds, one string for every session
        # (generation, records by uid) that a session's view matched at that generation: the
        # others that match it too keep this dict instead of an equal one (mailbox_view.py).
        self.shared_view: tuple[int, dict[int, Any]] | None = None
        self._new = f"{path}/new/"
        self._identity = _identity(path)
        self._thread_lock = threading.Lock()
        self._new_uidvalidity = new_uidvalidity
        self._list_stat: tuple[int, int, int] | None = None
        # The list on disk: its first line, the bytes read (whole batches), the size of its
        # first part (the batches follow it), and whether a batch may follow.
        self._list_head = b""
        self._list_read_to = 0
        self._base_bytes = 0
        self._appendable = False
        self._pending: list[str] = []  # lines for the next batch: the changes made under this lock
        # Written but not yet flushed (flush_changes): paths, and counters of writes and flushes.
        self._flush_state = threading.Condition()
        self._unflushed: set[str] = set()
        self._written = 0
        self._flushed = 0
        self._flushing = False
        # (cur/ mtime, new/ mtime, uid list stat) at the last full scan, when old enough to trust.
        self._scanned: tuple[object, ...] | None = None
        # Whether the last uid list written got a fine time from our clock (see STAMP_TRUST_NS).
        self._fine_times = False
        # False once a read with RWF_NOWAIT failed as unsupported here (Mailbox.read_now).
        self.reads_without_waiting = True
        # The sessions' views of this folder (mailbox_view.Mailbox) alive now.
        self.views: weakref.WeakSet[object] = weakref.WeakSet()
        # (generation, names in cur/) after a scan that found the entries exactly matching the files.
        self._quiet: tuple[int, set[str]] | None = None
        self._keywords_stat: tuple[int, int, int] | None = None
        self._loaded = False
        self._retired = False
        self.uidvalidity = 0
        self.uidnext = 1
        self.highestmodseq = 1
        self.first_recent = 1
        self.vanished_floor = 0  # expunges at or below this MODSEQ were forgotten
        self.entries: dict[int, Entry] = {}  # uid -> entry, ascending
        self.by_stem: dict[str, int] = {}
        self.vanished: list[tuple[int, int]] = []  # (uid, modseq), oldest first
        self.keywords: list[str | None] = []  # index = letter - "a"; None = a gap in the file
        self.generation = next(_generations)  # changes whenever entries may have changed
        self._flag_sets: dict[str, frozenset[str]] = {}  # info letters -> flags (few distinct ones)
        self._header_cache: HeaderCache | None = None
        # Whose turn it is to work on this folder in the serving process (the FolderTurn
        # that imap.folder_work keeps there); the store never looks at it.
        self.work_turn: object | None = None

    def same_directory(self) -> bool:
        """False once the folder was deleted or renamed (maybe re-created under the same name)."""
        return not self._retired and _identity(self.path) == self._identity

    def retire(self) -> None:
        """The folder was deleted or renamed: views still holding this object get NoSuchMailbox.

        (The inode check alone is not enough: a folder made again may get the same inode.)
        """
        self._retired = True

    @contextmanager
    def lock(self, *, shared: bool = False) -> Iterator[None]:
        """The folder's lock: this process's thread lock and the lock file's flock.

        `shared`: other processes may hold it shared at the same time, for looks
        that write nothing (refresh_without_writing); the state in memory is
        still this process's alone. What the work under it wrote is flushed
        once the lock is released (flush_changes), unless the caller said it
        flushes itself (flushes_deferred); in at_once() work, a lock that is
        not free raises WouldWait.
        """
        deferred, at_once = _work_mode()
        try:
            with self._held(shared, at_once):
                yield
        finally:
            if not deferred and self.needs_flush:
                self.flush_changes()

    @contextmanager
    def _held(self, shared: bool, at_once: bool) -> Iterator[None]:
        if at_once and not self.reads_without_waiting:
            raise WouldWait()  # e.g. NFS: any look may wait
        if not self._thread_lock.acquire(blocking=not at_once):
            raise WouldWait(busy=True)
        try:
            fd = self._open_lock_file()
            try:
                try:
                    fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (fcntl.LOCK_NB if at_once else 0))
                except BlockingIOError:
                    raise WouldWait(busy=True) from None
                if os.fstat(fd).st_nlink == 0 or not self.same_directory():
                    # Deleted or renamed by another process while this one waited: the
                    # lock is on a file no longer there, and the path may be a new folder.
                    raise NoSuchMailbox()
                if at_once and not shared:
                    self._ready_at_once()
                yield
            finally:
                os.close(fd)  # releases the flock
        finally:
            self._thread_lock.release()

    @property
    def _due_for_rewrite(self) -> bool:
        """The batches appended since the list was last written whole outgrew the rest."""
        return self._list_read_to - self._base_bytes > max(JOURNAL_MIN_BYTES, self._base_bytes)

    def _ready_at_once(self) -> None:
        """Before at_once() work changes anything: WouldWait if the folder is too large to
        list at once, or a change would have to write the whole list (and flush it)."""
        self._load()  # raises WouldWait itself when the list must be made again
        if len(self.entries) > QUICK_REFRESH_MESSAGES:
            raise WouldWait()
        if not self._appendable or self._due_for_rewrite:
            raise WouldWait()

    def _open_lock_file(self) -> int:
        """The lock file's descriptor. Whether it is still this folder's is checked once
        the flock is held (_held): a check before the wait could be out of date after it."""
        if self._retired:
            raise NoSuchMailbox()
        try:
            return os.open(self.path / LOCKFILE, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            raise NoSuchMailbox() from None

    # -- loading and saving -------------------------------------------------------

    def _load(self, *, may_write: bool = True) -> bool:
        """Read the UID list and keywords again when another process changed them.

        With may_write=False, False when that would take a write (a list to make
        again) or a large read; True when the state in memory is up to date.
        Lines another process appended are read alone (_read_appended).
        """
        stat = _stat_key(self.path / KEYWORDS)
        if stat != self._keywords_stat:
            self.keywords = _parse_keywords(self.path / KEYWORDS) if stat else []
            self._keywords_stat = stat
            self._flag_sets = {}
        path = self.path / UIDLIST
        stat = _stat_key(path)
        if stat is None:
            if not may_write or at_once_work():
                return self._would_write(may_write)
            if not self._loaded:
                self._start_fresh()
            # A list removed under us: the state in memory is still right; rewrite it.
            self._rewrite()
        elif stat != self._list_stat:
            if self._read_appended(path, stat):
                pass
            elif (not may_write or at_once_work()) and stat[2] > QUICK_REFRESH_LIST_BYTES:
                return self._would_write(may_write)  # a large read: not on an event loop
            else:
                try:
                    self._parse(path.read_bytes())
                except (ValueError, IndexError):
                    if not may_write or at_once_work():
                        return self._would_write(may_write)
                    log.warning("unreadable %s in %s, new UIDVALIDITY", UIDLIST, self.path)
                    self._start_fresh()
                    self._rewrite()
                else:
                    self._list_stat = stat
            # What another process wrote and this one may now tell a client about
            # (new UIDs) is flushed before that: a crash must not give them again.
            self._needs_flush(str(path))
        self._loaded = True
        return True

    @staticmethod
    def _would_write(may_write: bool) -> bool:
        """False for a look that may not write; WouldWait for at_once() work (a rewrite
        would flush, a large read would wait on the caller's thread)."""
        if may_write:
            raise WouldWait()
        return False

    def _read_appended(self, path: Path, stat: tuple[int, int, int]) -> bool:
        """Apply the batches another process appended since the last read; False when
        the whole list must be read (a new file, a torn tail, a list not read before)."""
        if not self._appendable or self._list_stat is None or stat[0] != self._list_stat[0]:
            return False
        if stat[2] <= self._list_read_to:
            return False
        try:
            with open(path, "rb") as f:
                if f.read(len(self._list_head)) != self._list_head:
                    return False  # the same inode number, another file
                f.seek(self._list_read_to)
                tail = f.read()
        except FileNotFoundError:
            return False
        batches = _scan_batches(tail, 0)
        if batches.end != len(tail) or not batches.done:
            return False  # not whole batches: read everything (it sees the torn tail)
        for ops, numbers, _ in batches.done:
            self._apply(ops, numbers)
        self._sort_if_needed()
        self._list_read_to += batches.end
        self._list_stat = stat
        self.generation = next(_generations)
        return True

    def _start_fresh(self) -> None:
        self.uidvalidity = self._new_uidvalidity()
        self.uidnext = self.first_recent = 1
        self.highestmodseq = 1
        self.vanished_floor = 0
        self.entries, self.by_stem, self.vanished = {}, {}, []
        self._pending = []

    def _parse(self, data: bytes) -> None:
        """The whole list; raises ValueError (changing nothing) when it cannot be read."""
        parsed = parse_list(data)
        old = self.entries
        known = (self.uidnext, self.highestmodseq, self.first_recent, self.vanished_floor)
        self.generation = next(_generations)
        same_uids = self._loaded and parsed.uidvalidity == self.uidvalidity
        self.uidvalidity = parsed.uidvalidity
        self.entries = dict(sorted(parsed.entries.items()))
        # Numbers given out here and not written (a full disk) are not given again.
        numbers = [max(a, b) for a, b in zip(parsed.numbers, known)] if same_uids else parsed.numbers
        self.uidnext, self.highestmodseq, self.first_recent, self.vanished_floor = numbers
        self.uidnext = max([self.uidnext, *(uid + 1 for uid in self.entries)])
        self.highestmodseq = max([self.highestmodseq, *(e.modseq for e in self.entries.values())])
        self.vanished = parsed.vanished
        self._trim_vanished()
        self.by_stem = {e.stem: e.uid for e in self.entries.values()}
        for uid, entry in self.entries.items():  # keep what was learnt about unchanged files
            known = old.get(uid)
            if known is not None and known.stem == entry.stem:
                entry.date, entry.size = known.date, known.size
        self._pending = []
        self._list_head = data[: data.find(b"\n") + 1]
        self._list_read_to = parsed.end
        self._base_bytes = parsed.base_end
        # Old lists have no batches; a torn tail must not have batches written after it.
        self._appendable = parsed.batched and parsed.end == len(data)

    def _apply(self, ops: list[tuple[str, int, int, str]], numbers: tuple[int, int, int, int]) -> None:
        """One appended batch, read back: entries set or expunged, then the list's numbers."""
        for kind, uid, modseq, name in ops:
            if kind == "X":
                entry = self.entries.pop(uid, None)
                if entry is not None:
                    self.by_stem.pop(entry.stem, None)
                self.vanished.append((uid, modseq))
                continue
            known = self.entries.get(uid)
            entry = Entry(uid, modseq, name)
            if known is not None:
                if known.stem == entry.stem:
                    entry.date, entry.size = known.date, known.size
                else:
                    self.by_stem.pop(known.stem, None)
            self.entries[uid] = entry
            self.by_stem[entry.stem] = uid
        uidnext, highest, first_recent, floor = numbers
        self.uidnext = max(self.uidnext, uidnext)
        self.highestmodseq = max(self.highestmodseq, highest)
        self.first_recent = max(self.first_recent, first_recent)
        self.vanished_floor = max(self.vanished_floor, floor)
        self._trim_vanished()

    def _sort_if_needed(self) -> None:
        uids = list(self.entries)
        if any(a > b for a, b in zip(uids, uids[1:])):
            self.entries = dict(sorted(self.entries.items()))

    def _numbers_line(self) -> str:
        return f"C {self.uidnext} {self.highestmodseq} {self.first_recent} {self.vanished_floor}\n"

    def save(self) -> None:
        """Write what changed since the last save: a batch appended to the list, or the whole
        list again when the appended part has grown past the rest (or cannot take more).

        Lines are only written here; they are flushed after the lock (flush_changes).
        """
        # At once (on an event loop) a list due to be written whole waits for the next
        # thread: _ready_at_once saw it appendable, so only a failure earlier under this
        # lock (a full disk) brings a rewrite here, which then blocks the loop once.
        if not self._appendable or (self._due_for_rewrite and not at_once_work()):
            self._rewrite()
            return
        lines, self._pending = self._pending, []
        data = ("".join(line + "\n" for line in lines) + self._numbers_line()).encode("utf-8", "surrogateescape")
        path = self.path / UIDLIST
        before = time.time_ns()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            self._rewrite()
            return
        try:
            st = os.fstat(fd)
            if st.st_size != self._list_read_to or self._list_stat is None or st.st_ino != self._list_stat[0]:
                # Not the file last read (changed without the lock, by hand or an older
                # program): the state in memory, read under the lock, is written whole.
                os.close(fd)
                fd = -1
                self._rewrite()
                return
            try:
                write_all(fd, data)
            except BaseException:
                os.ftruncate(fd, st.st_size)  # no half batch for the next one to follow
                after = os.fstat(fd)  # the same bytes as read: not another process's change
                self._list_stat = (after.st_ino, after.st_mtime_ns, after.st_size)
                raise
            st = os.fstat(fd)
        except BaseException:
            self._appendable = False  # the next save writes the whole list
            raise
        finally:
            if fd >= 0:
                os.close(fd)
        self._list_read_to += len(data)
        self._list_stat = (st.st_ino, st.st_mtime_ns, st.st_size)
        self._fine_times = _our_clock(st.st_mtime_ns, before, time.time_ns())
        if lines:  # a \Recent claim alone need not survive a crash
            self._needs_flush(str(path))
        # Every change to the entries is saved before the lock is released, so this is enough.
        self.generation = next(_generations)

    def _rewrite(self) -> None:
        """The whole list, replaced atomically and flushed (write_atomic)."""
        head = (
            f"V1 {self.uidvalidity} {self.uidnext} {self.highestmodseq} {self.first_recent} {self.vanished_floor}\n"
        )
        lines = [head]
        lines += [f"{e.uid} {e.modseq} {e.name}\n" for e in self.entries.values()]
        lines += [f"X {uid} {modseq}\n" for uid, modseq in self.vanished]
        lines.append(self._numbers_line())
        data = "".join(lines).encode("utf-8", "surrogateescape")
        path = self.path / UIDLIST
        before = time.time_ns()
        self._pending = []
        self._appendable = False
        write_atomic(path, data)
        self._list_stat = _stat_key(path)
        if self._list_stat is not None:
            self._fine_times = _our_clock(self._list_stat[1], before, time.time_ns())
        self._list_head = head.encode("utf-8", "surrogateescape")
        self._list_read_to = self._base_bytes = len(data)
        self._appendable = True
        self.generation = next(_generations)

    # -- flushing -------------------------------------------------------------------

    def _needs_flush(self, path: str) -> None:
        with self._flush_state:
            self._unflushed.add(path)
            self._written += 1

    def flush_all_written(self) -> None:
        """flush_changes(), and the list, cur/ and new/ whoever wrote them: with the lock
        held, before the folder's path changes (another process's flush would miss it)."""
        self.flush_changes()
        for name in (UIDLIST, "cur", "new"):
            _fsync_path(f"{self.path}/{name}")

    @property
    def needs_flush(self) -> bool:
        """Something written here (or read from another process) is not flushed yet."""
        return self._flushed < self._written

    def flush_changes(self) -> None:
        """fsync what was written so far and not yet flushed: the list's appended lines and
        the folders whose names changed. Threads arriving during a flush share the next one.
        """
        with self._flush_state:
            target = self._written
            while self._flushed < target:
                if self._flushing:
                    self._flush_state.wait()
                    continue
                self._flushing = True
                batch, self._unflushed = self._unflushed, set()
                upto = self._written
                self._flush_state.release()
                try:
                    for path in sorted(batch):
                        _fsync_path(path)
                except BaseException:
                    self._flush_state.acquire()
                    self._unflushed |= batch
                    self._flushing = False
                    self._flush_state.notify_all()
                    raise
                self._flush_state.acquire()
                self._flushed = max(self._flushed, upto)
                self._flushing = False
                self._flush_state.notify_all()

    def header_cache(self) -> HeaderCache:
        """The folder's header cache, loaded and matched to the current UIDVALIDITY and entries."""
        if self._header_cache is None:
            self._header_cache = HeaderCache(self.path)
        cache = self._header_cache
        cache.use(self.uidvalidity)
        cache.prune(self.entries, self.generation)
        return cache

    def file_path(self, uid: int) -> str | None:
        """Where `uid`'s file is in cur/ now; None when the folder has no such UID.

        Read without any lock: one dict look-up and one attribute, each atomic with
        respect to the threads that change them under the lock. Waiting for the lock
        here made every message of a FETCH queue behind whole refreshes and fsyncs of
        other sessions. The name may be out of date by the time the file is opened
        (a flag change renames it): callers look again on FileNotFoundError.
        """
        entry = self.entries.get(uid)
        return self._cur + entry.name if entry is not None else None

    def unheld_header_cache_size(self) -> int:
        """Messages in a header cache that no session's view holds (0: none, or held)."""
        cache = self._header_cache
        return len(cache) if cache is not None and not self.views else 0

    def drop_unused_header_cache(self) -> None:
        """Free the header cache when no session's view holds the folder.

        Its search forms take about 2 KiB a message (20 MiB for 10,000) and would
        stay as long as the folder is among the store's recent ones; the file keeps
        the fields, read again by the next SEARCH. Never waits for the lock.
        """
        cache = self._header_cache
        if cache is None or self.views or cache.unsaved:
            return
        if not self._thread_lock.acquire(blocking=False):
            return
        try:
            if not self.views and not cache.unsaved and self._header_cache is cache:
                self._header_cache = None
        finally:
            self._thread_lock.release()

    # -- reading the folder ---------------------------------------------------------

    def refresh(self, *, strict: bool = False) -> None:
        """Bring the state in line with the files: new ones get UIDs, vanished ones are expunged.

        New UIDs exist once the UID list is written. When it cannot be (a full
        disk), new messages wait unseen for a later refresh; with `strict` the
        OSError is raised too (APPEND and COPY, whose messages must get theirs).
        """
        self._load()
        stamp = self._stamp()
        if stamp is not None and stamp == self._scanned:
            return  # nothing in cur/ or new/ changed since the last scan
        listed_at = time.time_ns()
        self._scanned = None  # until this scan is complete
        if not self._full_refresh(strict):
            return  # the UID list could not be written: scan again next time
        self._mark_scanned(listed_at)

    @property
    def small_enough_for_quick_refresh(self) -> bool:
        """Whether refresh_without_writing() may answer; a larger folder is left to refresh()."""
        return self._loaded and len(self.entries) <= QUICK_REFRESH_MESSAGES

    def refresh_without_writing(self) -> bool:
        """refresh() for a caller that may neither write nor wait long, with the lock held:
        True when the state in memory matches the files afterwards; False when only
        refresh() can tell (new or renamed files, a UID list to write, a large folder
        whose folder times changed since its last scan).

        It reads what the other processes wrote (the UID list, keywords) and lists
        cur/ and new/; it changes nothing on disk.
        """
        if not self.small_enough_for_quick_refresh and at_once_work():
            if not self._lists_unchanged():
                return False  # another process's changes to a large folder: read in a thread, not on a loop
        elif not self._load(may_write=False):
            return False
        stamp = self._stamp()
        if stamp is not None and stamp == self._scanned:
            return True  # nothing in cur/ or new/ changed since the last scan: any size
        if not self.small_enough_for_quick_refresh:
            return False
        listed_at = time.time_ns()
        cur, new = self._list()
        if any(not name.startswith(".") for name in new):
            return False  # new messages get UIDs: a write
        matched = 0
        entries, by_stem = self.entries, self.by_stem
        for name in cur:
            if name.startswith(".") or "\n" in name:
                continue
            uid = by_stem.get(name.split(":", 1)[0])
            if uid is None or entries[uid].name != name:
                return False  # a new file, or flags changed by another program
            matched += 1
        if matched != len(entries):
            return False  # files gone (or two with one stem)
        self._mark_scanned(listed_at)
        return True

    def _lists_unchanged(self) -> bool:
        """The UID list and the keywords file are as this process last read or wrote them."""
        return (self._loaded and _stat_key(self.path / UIDLIST) == self._list_stat
                and _stat_key(self.path / KEYWORDS) == self._keywords_stat)

    def _mark_scanned(self, listed_at: int) -> None:
        """After a scan that began at `listed_at` left the state matching the files:
        trust the folder times from now on, if they are old enough that a change in
        the same clock tick cannot hide behind them (Dovecot does the same)."""
        after = self._stamp()
        self._scanned = after if after is not None and _settled(after, listed_at, self._fine_times) else None

    def _stamp(self) -> tuple[object, ...] | None:
        try:
            cur_st = os.stat(self.path / "cur")
            new = os.stat(self.path / "new").st_mtime_ns
        except FileNotFoundError:
            return None
        if not self._fine_times and cur_st.st_dev in _FINE_DEVICES:
            self._fine_times = True
        return (cur_st.st_mtime_ns, new, self._list_stat)

    def _full_refresh(self, strict: bool) -> bool:
        """The scan behind refresh(); False when the UID list could not be written."""
        listing = self._list()
        cur_names = set(listing[0])
        if not listing[1] and self._quiet == (self.generation, cur_names):
            return True  # the same files as at the last scan, which changed nothing: still nothing to do
        self._quiet = None
        found = self._scan(listing)
        if not found.keys() - self.by_stem.keys() and len(found) == len(self.entries) and not listing[1]:
            quiet: tuple[int, set[str]] | None = (0, cur_names)
        else:
            quiet = None
        changed = False
        modseq: int | None = None

        def bump() -> int:
            nonlocal modseq
            if modseq is None:
                modseq = self.next_modseq()
            return modseq

        moved = False
        first_new = self.uidnext
        gone: list[int] = []
        for uid, entry in self.entries.items():
            where = found.pop(entry.stem, None)
            if where is not None and where[0] == "new":  # put back by some tool
                where = ("cur", self._move_to_cur(where[1]) or "")
                moved = True
            if where is None or not where[1]:
                gone.append(uid)  # POP3, another process or a user removed it
                continue
            if where[1] != entry.name:
                if info_letters(where[1]) != info_letters(entry.name):
                    entry.modseq = bump()  # flags changed by an outside tool
                entry.name = where[1]
                self._pending.append(f"{uid} {entry.modseq} {entry.name}")
                changed = True
        if gone:
            self.forget(gone, bump())
        for stem, (sub, name) in sorted(found.items(), key=lambda item: order_key(item[0])):
            if sub == "new":
                # Dovecot moves a message to cur/ once a client has seen it (maildir(5)).
                moved_name = self._move_to_cur(name)
                if moved_name is None:
                    continue  # removed while we looked
                name, moved = moved_name, True
            entry = self.entries[self.uidnext] = Entry(self.uidnext, bump(), name)
            self._pending.append(f"{entry.uid} {entry.modseq} {name}")
            self.by_stem[stem] = self.uidnext
            self.uidnext += 1
        if moved:
            self.names_changed("cur")
            self.names_changed("new")
        if changed or modseq is not None:
            try:
                self.save()
            except OSError as exc:
                if exc.errno not in NO_SPACE_ERRNOS:
                    raise
                self._unsaved(first_new, exc.strerror)
                if strict:
                    raise
                return False
        elif quiet is not None and not moved:
            self._quiet = (self.generation, quiet[1])
        return True

    def _unsaved(self, first_new: int, reason: str) -> None:
        """The UID list could not be written: UIDs from `first_new` on are taken back.

        Never shown, they may be given again. What else changed (expunges and
        flags found in the files) stays in memory and is written with the next
        change; after a restart the scan finds it again in the files.
        """
        self._pending = []
        self._appendable = False  # the next save writes the state in memory whole
        for uid in range(first_new, self.uidnext):
            entry = self.entries.pop(uid)
            self.by_stem.pop(entry.stem, None)
        if first_new < self.uidnext:
            log.warning("%s in %s not written (%s): %d new messages wait", UIDLIST, self.path, reason,
                        self.uidnext - first_new)
        else:
            log.warning("%s in %s not written (%s)", UIDLIST, self.path, reason)
        self.uidnext = first_new
        self.generation = next(_generations)  # as save() would: views look again

    def _list(self) -> tuple[list[str], list[str]]:
        """The names in cur/ and new/."""
        try:
            return os.listdir(self.path / "cur"), os.listdir(self.path / "new")
        except FileNotFoundError:
            raise NoSuchMailbox() from None

    def _scan(self, listing: tuple[list[str], list[str]]) -> dict[str, tuple[str, str]]:
        found: dict[str, tuple[str, str]] = {}
        for sub, names in zip(("cur", "new"), listing):
            for name in names:
                if name.startswith(".") or "\n" in name:
                    continue
                found.setdefault(name.split(":", 1)[0], (sub, name))
        return found

    def _move_to_cur(self, name: str) -> str | None:
        target = name if ":" in name else name + ":2,"
        try:
            os.rename(self._new + name, self._cur + target)
        except FileNotFoundError:
            return None
        return target

    def details(self, entry: Entry) -> tuple[datetime, int]:
        """(internal date, size with CRLF line ends), learnt once per file."""
        if entry.date is None or entry.size is None:
            path = self._cur + entry.name
            parsed = MaildirName.parse(entry.name)
            try:
                entry.date = datetime.fromtimestamp(int(os.stat(path).st_mtime), UTC)
                if parsed.wire_size is not None:
                    entry.size = parsed.wire_size
                else:
                    with open(path, "rb") as f:
                        data = f.read()
                    entry.size = len(data) + data.count(b"\n") - data.count(b"\r\n")
            except FileNotFoundError:  # gone since the last look; the next sync says so
                return datetime.now(UTC), parsed.wire_size or parsed.size or 0
        return entry.date, entry.size

    # -- changes --------------------------------------------------------------------

    def next_modseq(self) -> int:
        self.highestmodseq += 1
        return self.highestmodseq

    def forget(self, uids: Iterable[int], modseq: int) -> None:
        """Drop entries (their files are gone) and remember the expunge for QRESYNC."""
        for uid in uids:
            entry = self.entries.pop(uid, None)
            if entry is None:
                continue
            self.by_stem.pop(entry.stem, None)
            self.vanished.append((uid, modseq))
            self._pending.append(f"X {uid} {modseq}")
        self._trim_vanished()

    def names_changed(self, folder: str) -> None:
        """Files were added, renamed or removed in `folder` ("cur", "new"): flush its names
        with the next flush_changes()."""
        self._needs_flush(f"{self.path}/{folder}")

    def _trim_vanished(self) -> None:
        if len(self.vanished) > MAX_VANISHED:
            cut = len(self.vanished) - MAX_VANISHED
            self.vanished_floor = max(self.vanished_floor, *(m for _, m in self.vanished[:cut]))
            del self.vanished[:cut]

    def remove(self, uids: Iterable[int]) -> list[int]:
        """Delete these messages' files and entries; returns the UIDs removed."""
        removed = []
        for uid in uids:
            entry = self.entries.get(uid)
            if entry is None:
                continue
            try:
                os.unlink(self.path / "cur" / entry.name)
            except FileNotFoundError:
                pass  # someone else removed it: still expunged
            removed.append(uid)
        if removed:
            self.names_changed("cur")
            self.forget(removed, self.next_modseq())
            self._save_after_unlinks()
        return removed

    def _save_after_unlinks(self) -> None:
        """The files are gone whatever happens now: a full disk does not undo the expunge.

        The state in memory stays right and is written with the next change;
        after a restart before then, the scan finds the files gone.
        """
        try:
            self.save()
        except OSError as exc:
            if exc.errno not in NO_SPACE_ERRNOS:
                raise
            self._unsaved(self.uidnext, exc.strerror)

    def flags(self, name: str) -> frozenset[str]:
        letters = info_letters(name)
        known = self._flag_sets.get(letters)
        if known is not None:
            return known  # one shared frozenset per distinct letter string
        out = set()
        for letter in letters:
            if letter in _FLAG_OF_LETTER:
                out.add(_FLAG_OF_LETTER[letter])
            elif (keyword := self._keyword_of(letter)) is not None:
                out.add(keyword)
        self._flag_sets[letters] = frozen = frozenset(out)
        return frozen

    def canonical(self, flags: frozenset[str]) -> frozenset[str]:
        """Keywords in the spelling this folder already knows them by."""
        known = {k.lower(): k for k in self.keywords if k is not None}
        return frozenset(known.get(f.lower(), f) if f not in SYSTEM_FLAGS else f for f in flags)

    def _keyword_of(self, letter: str) -> str | None:
        index = ord(letter) - ord("a")
        return self.keywords[index] if 0 <= index < len(self.keywords) else None

    def letters(self, flags: frozenset[str], old_name: str = "") -> str:
        """Info letters for `flags`, keeping letters of `old_name` IMAP has no name for (e.g. P).

        Every keyword in `flags` must have a letter already (add_keywords).
        """
        out = {c for c in info_letters(old_name) if not self._managed(c)}
        for flag in flags:
            if flag in SYSTEM_FLAGS:
                out.add(SYSTEM_FLAGS[flag])
            else:
                index = self._keyword_index(flag)
                if index is None:
                    raise AssertionError(f"keyword {flag!r} has no letter; add_keywords first")
                out.add(chr(ord("a") + index))
        return "".join(sorted(out))

    def _managed(self, letter: str) -> bool:
        return letter in _FLAG_OF_LETTER or self._keyword_of(letter) is not None

    def _keyword_index(self, keyword: str) -> int | None:
        lowered = keyword.lower()
        for index, known in enumerate(self.keywords):
            if known is not None and known.lower() == lowered:  # keywords match without regard to case, like Dovecot's
                return index
        return None

    def add_keywords(self, flags: Iterable[str]) -> None:
        """Give each keyword in `flags` a letter: all of them, or none and TooManyKeywords.

        Checked before anything is written, so a refused STORE, APPEND or COPY
        takes no letter. When the letters run out, letters no message uses any
        more are given to the new keywords (never one of `flags`).
        """
        flags = list(flags)
        new: dict[str, str] = {}  # lower case -> first spelling, in a repeatable order
        for flag in sorted(flags):
            if flag not in SYSTEM_FLAGS and self._keyword_index(flag) is None:
                new.setdefault(flag.lower(), flag)
        if not new:
            return
        if at_once_work():
            raise WouldWait()  # the keyword file is written and flushed at once
        keywords = list(self.keywords) + [None] * (MAX_KEYWORDS - len(self.keywords))
        free = [i for i, k in enumerate(keywords) if k is None]
        if len(free) < len(new):
            wanted = {f.lower() for f in flags}
            free += self._unused_slots(keywords, wanted)
        if len(free) < len(new):
            raise TooManyKeywords()
        for index, keyword in zip(sorted(free), new.values()):
            keywords[index] = keyword
        while keywords and keywords[-1] is None:
            keywords.pop()
        self._write_keywords(keywords)

    def _unused_slots(self, keywords: list[str | None], keep: set[str]) -> list[int]:
        """Letters of keywords that no message in cur/ carries (and not in `keep`)."""
        used = {c for entry in self.entries.values() for c in info_letters(entry.name)}
        return [
            i for i, k in enumerate(keywords)
            if k is not None and k.lower() not in keep and chr(ord("a") + i) not in used
        ]

    def _write_keywords(self, keywords: list[str | None]) -> None:
        """Written before any file name uses a new letter; memory changes only once it is on disk."""
        path = self.path / KEYWORDS
        text = "".join(f"{i} {k}\n" for i, k in enumerate(keywords) if k is not None)
        write_atomic(path, text.encode())
        self.keywords = keywords
        self._flag_sets = {}
        self._keywords_stat = _stat_key(path)

    def relabel(self, changes: list[tuple[Entry, str]]) -> list[Entry]:
        """Give messages new flag letters under one new MODSEQ; returns the entries changed.

        The UID list is written first, then the files are renamed: a failure
        (a full disk) leaves the files as they were, so no flag the client is
        told failed is set. Files gone meanwhile are left out (expunged).
        """
        saved = [(entry, entry.name, entry.modseq) for entry, _ in changes]
        highest = self.highestmodseq
        modseq = self.next_modseq()
        for entry, letters in changes:
            entry.name, entry.modseq = with_letters(entry.name, letters), modseq
            self._pending.append(f"{entry.uid} {modseq} {entry.name}")
        try:
            self.save()
        except BaseException:
            for entry, name, old_modseq in saved:
                entry.name, entry.modseq = name, old_modseq
            self.highestmodseq = highest
            self._pending = []
            self._appendable = False
            raise
        renamed: list[tuple[str, str]] = []
        done: list[Entry] = []
        try:
            for entry, name, _ in saved:
                if name != entry.name:
                    try:
                        os.rename(self._cur + name, self._cur + entry.name)
                    except FileNotFoundError:
                        continue  # expunged by someone else: the next refresh says so
                    renamed.append((name, entry.name))
                done.append(entry)
            if renamed:
                self.names_changed("cur")  # the new flags survive a crash once answered
        except BaseException:
            # The files go back to their old names, and so do the entries; the UID list
            # on disk, which has the new ones, is written again with the next change.
            for old, new in reversed(renamed):
                os.rename(self._cur + new, self._cur + old)
            for entry, name, old_modseq in saved:
                entry.name, entry.modseq = name, old_modseq
            self._appendable = False  # the list has the new names: write it whole next time
            self.generation = next(_generations)
            raise
        return done


def listed_stems(folder: Path) -> set[str]:
    """The messages (stems) a folder's UID list names: files that were in cur/ when it was
    written, or went since without the list knowing yet. Empty when there is no list."""
    try:
        parsed = parse_list((folder / UIDLIST).read_bytes())
    except FileNotFoundError:
        return set()
    except (ValueError, IndexError):
        return set()
    return {entry.stem for entry in parsed.entries.values()}


@dataclass(slots=True)
class _Batches:
    """What _scan_batches found: whole batches, and where the last one ends."""

    done: list[tuple[list[tuple[str, int, int, str]], tuple[int, int, int, int], int]]  # (lines, numbers, end)
    end: int  # offset just after the last whole batch (the start when there is none)
    after: list[tuple[str, int, int, str]]  # well-formed lines after it, with no "C" line yet
    clean: bool  # nothing but such lines follows the last batch


def _scan_batches(data: bytes, start: int) -> _Batches:
    """The batches in data[start:]: lines ("UID MODSEQ NAME" sets an entry, "X UID MODSEQ"
    expunges one), each batch ended by "C UIDNEXT HIGHESTMODSEQ FIRSTRECENT VANISHEDFLOOR".
    A batch cut short by a crash has no "C" line and is not taken."""
    done: list[tuple[list[tuple[str, int, int, str]], tuple[int, int, int, int], int]] = []
    ops: list[tuple[str, int, int, str]] = []
    end = pos = start
    while pos < len(data):
        newline = data.find(b"\n", pos)
        if newline < 0:
            return _Batches(done, end, ops, False)  # a line cut short
        line = data[pos:newline]
        pos = newline + 1
        if line.startswith(b"C "):
            fields = line.split(b" ")[1:]
            if len(fields) != 4 or not all(f.isdigit() for f in fields):
                return _Batches(done, end, ops, False)
            uidnext, highest, first_recent, floor = (int(f) for f in fields)
            done.append((ops, (uidnext, highest, first_recent, floor), pos))
            ops, end = [], pos
            continue
        op = _parse_op(line)
        if op is None:
            return _Batches(done, end, ops, False)
        ops.append(op)
    return _Batches(done, end, ops, True)


def _parse_op(line: bytes) -> tuple[str, int, int, str] | None:
    if line.startswith(b"X "):
        fields = line.split(b" ")
        if len(fields) != 3 or not fields[1].isdigit() or not fields[2].isdigit():
            return None
        return ("X", int(fields[1]), int(fields[2]), "")
    fields = line.split(b" ", 2)
    if len(fields) != 3 or not fields[0].isdigit() or not fields[1].isdigit() or not fields[2]:
        return None
    return ("E", int(fields[0]), int(fields[1]), fields[2].decode("utf-8", "surrogateescape"))


@dataclass(slots=True)
class ParsedList:
    """A UID list read whole (parse_list)."""

    uidvalidity: int
    numbers: tuple[int, int, int, int]  # UIDNEXT, HIGHESTMODSEQ, FIRSTRECENT, VANISHEDFLOOR
    entries: dict[int, Entry]
    vanished: list[tuple[int, int]]
    base_end: int  # where the part written whole ends (after its own "C" line)
    end: int  # where the last whole batch ends
    batched: bool  # written with "C" lines (a list from before them has none)


def parse_list(data: bytes) -> ParsedList:
    """A UID list: the head line, then batches. Raises ValueError when unreadable.

    The part written whole is the first batch. A list written before batches
    existed has no "C" line: all its lines are taken, as written whole then.
    """
    head_end = data.find(b"\n")
    head = data[: head_end if head_end >= 0 else len(data)].split()
    if len(head) < 4 or head[0] != b"V1":
        raise ValueError("not a V1 uid list")
    values = [int(x) for x in head[1:]] + [1, 0]
    uidvalidity = values[0]
    numbers = (values[1], values[2], values[3], values[4])
    batches = _scan_batches(data, head_end + 1)
    if not batches.done:
        if not batches.clean:
            raise ValueError("unreadable line in the uid list")
        batches.done.append((batches.after, numbers, len(data)))  # a list from before batches
        batched = False
    else:
        batched = True
        numbers = batches.done[-1][1]  # each batch ends with the list's numbers after it
    entries: dict[int, Entry] = {}
    vanished: list[tuple[int, int]] = []
    for ops, _numbers, _end in batches.done:
        for kind, uid, modseq, name in ops:
            if kind == "X":
                entries.pop(uid, None)
                vanished.append((uid, modseq))
            else:
                entries[uid] = Entry(uid, modseq, name)
    return ParsedList(uidvalidity, numbers, entries, vanished, batches.done[0][2], batches.done[-1][2], batched)


@contextmanager
def list_for_import(folder: Path) -> Iterator[ParsedList | None]:
    """The folder's UID list read whole under the folder's lock (None when it has none),
    for a change made outside any server (migrate/mailfolders.py) and written with
    write_whole_list() before the lock is released. A server's sessions re-read it."""
    fd = os.open(folder / LOCKFILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            data = (folder / UIDLIST).read_bytes()
        except FileNotFoundError:
            yield None
            return
        yield parse_list(data)
    finally:
        os.close(fd)


def write_whole_list(folder: Path, parsed: ParsedList) -> None:
    """Write `parsed` as the folder's whole UID list (atomically, flushed)."""
    uidnext, highest, first_recent, floor = parsed.numbers
    vanished = parsed.vanished[-MAX_VANISHED:]
    if len(parsed.vanished) > MAX_VANISHED:  # forgotten expunges: QRESYNC clients then get all missing UIDs
        floor = max([floor, *(modseq for _, modseq in parsed.vanished[:-MAX_VANISHED])])
    lines = [f"V1 {parsed.uidvalidity} {uidnext} {highest} {first_recent} {floor}\n"]
    lines += [f"{e.uid} {e.modseq} {e.name}\n" for e in sorted(parsed.entries.values(), key=lambda e: e.uid)]
    lines += [f"X {uid} {modseq}\n" for uid, modseq in vanished]
    lines.append(f"C {uidnext} {highest} {first_recent} {floor}\n")
    write_atomic(folder / UIDLIST, "".join(lines).encode("utf-8", "surrogateescape"))


def read_keywords(folder: Path) -> list[str | None]:
    """The folder's keyword letters: index = letter - "a"; None = a gap."""
    return _parse_keywords(folder / KEYWORDS)


def write_keywords(folder: Path, keywords: list[str | None]) -> None:
    text = "".join(f"{i} {k}\n" for i, k in enumerate(keywords) if k)
    write_atomic(folder / KEYWORDS, text.encode("utf-8"))


def _fsync_path(path: str) -> None:
    """fsync a file or folder; gone (a folder deleted, a list replaced) is nothing to flush."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def renew_uidvalidity(folder: Path, floor: int) -> int | None:
    """Give a folder's UID list a new UIDVALIDITY, at least `floor` and above the old one.

    UIDs, MODSEQs and names stay. For a folder restored from a backup, whose
    UIDs handed out since the backup may be given again to other messages
    (RFC 3501 §2.3.1.1: never within one UIDVALIDITY). Returns the value, or
    None when the folder has no readable list (it gets a new one when opened).
    No server may have the folder open: its state in memory would not know.
    """
    path = folder / UIDLIST
    if not path.is_file():
        return None
    fd = os.open(folder / LOCKFILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            text = path.read_text("utf-8", "surrogateescape")
        except FileNotFoundError:
            return None
        head, newline, rest = text.partition("\n")
        fields = head.split()
        if len(fields) < 4 or fields[0] != "V1" or not fields[1].isdigit():
            return None
        fields[1] = str(max(floor, int(fields[1]) + 1))
        write_atomic(path, (" ".join(fields) + newline + rest).encode("utf-8", "surrogateescape"))
        return int(fields[1])
    finally:
        os.close(fd)


def _parse_keywords(path: Path) -> list[str | None]:
    found: dict[int, str] = {}
    try:
        text = path.read_text("utf-8", "replace")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        number, _, keyword = line.partition(" ")
        if number.isdigit() and keyword and int(number) < MAX_KEYWORDS:
            found[int(number)] = keyword
    return [found.get(i) for i in range(max(found, default=-1) + 1)]


def _settled(stamp: tuple[object, ...], listed_at: int, fine_times: bool) -> bool:
    """Whether cur/ and new/ last changed long enough before a listing started at `listed_at`.

    `fine_times`: the file system was seen to stamp files from our clock in nanoseconds.
    """
    cur, new = stamp[0], stamp[1]
    assert isinstance(cur, int) and isinstance(new, int)
    fine = fine_times and cur % 1_000_000_000 and new % 1_000_000_000
    return listed_at - max(cur, new) > (STAMP_TRUST_FINE_NS if fine else STAMP_TRUST_NS)


# Devices whose file system was seen to stamp a file written here with our clock in
# nanoseconds (learn_file_times), so that a Folder this process never wrote can
# trust its folder times after STAMP_TRUST_FINE_NS too: a folder another worker
# changed a second ago is then listed again for a tenth of a second, not for two.
_FINE_DEVICES: set[int] = set()


def learn_file_times(folder: Path) -> bool:
    """Write and remove a probe file in `folder` (at start, not on the event loop):
    whether its file system stamps files from our clock in nanoseconds. Remembered
    for every folder on that device in this process."""
    probe = folder / f".hatoba-clock-{os.getpid()}"
    before = time.time_ns()
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"x")
            st = os.fstat(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError:
        return False  # not writable here: folders keep the coarse window
    fine = _our_clock(st.st_mtime_ns, before, time.time_ns())
    if fine:
        _FINE_DEVICES.add(st.st_dev)
    return fine


def _our_clock(mtime_ns: int, before: int, after: int) -> bool:
    """Whether a file written between `before` and `after` (our clock) got a fine time from it."""
    return bool(mtime_ns % 1_000_000_000) and before - CLOCK_SLACK_NS <= mtime_ns <= after + CLOCK_SLACK_NS


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)
