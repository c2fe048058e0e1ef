"""The durable spool: every accepted message is on stable storage before "250".

Layout under data/queue (folders 0700, files 0600):

    incoming/QID        a message being received (removed on abort or restart)
    active/QID.msg      a queued message: the bytes as received (CRLF,
                        dot-unstuffed), then its envelope as JSON, then a
                        fixed-size footer giving the JSON's length
    active/QID.state    delivery progress (JSON); optional, rewritten atomically

commit() writes the rest of the message and the envelope to incoming/QID,
fsyncs it, renames it into active/ and fsyncs active/. One file per message
means one fsync and one rename; the folder fsyncs of concurrent commits are
shared (group commit): a commit waits for one fsync of active/ that started
after its rename. Only then does the SMTP session answer 250.

The envelope goes last because the body may already be on disk (large
messages stream to incoming/ as they arrive) when the envelope is known.
A crash leaves at worst an incoming/ file, never acknowledged, which
recover() removes before the server accepts mail again.
"""

from __future__ import annotations

import asyncio
import contextvars
import fcntl
import functools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from hatoba.fsutil import fsync_dir, make_private_dir, write_all, write_atomic
from hatoba.queue.ids import arrival_time, is_queue_id, new_queue_id
from hatoba.store.api import QueueState

log = logging.getLogger(__name__)

# Bodies up to this size stay in memory until commit (one write, one fsync);
# larger ones are streamed to incoming/ as they arrive.
MEMORY_LIMIT = 256 * 1024


# How long a free-space figure of the queue's file system is reused: a busy
# server asks the file system at most once a second, whatever its MAIL rate.
FREE_SPACE_TTL = 1.0

FOOTER_FORMAT = b"\nHATOBA-ENVELOPE %010d\n"
FOOTER_SIZE = len(FOOTER_FORMAT % 0)


class SpoolError(Exception):
    """The spool could not store a message (disk full, permissions); the client gets 451."""


@dataclass(frozen=True)
class Envelope:
    """Everything about a message that is not in its bytes."""

    mail_from: str  # "" for the null sender <>
    recipients: tuple[str, ...]
    received_at: float  # Unix time
    client_ip: str = ""
    helo: str = ""
    auth_login: str | None = None
    smtputf8: bool = False
    body_8bit: bool = False
    listener: str = ""
    session_id: str = ""
    received: str = ""  # the header fields we add (Received, Authentication-Results), CRLF-terminated
    # Judged as spam on arrival (why: "score", "rspamd", "dmarc-quarantine", "local-forgery"):
    # local copies go to each recipient's Junk folder, unless the recipient's sender lists say otherwise.
    junk: str = ""
    header_from: str = ""  # the From address of mail judged on arrival (for the recipients' sender lists)
    from_authenticated: bool = False  # that address's domain passed DMARC (or aligned SPF/DKIM)

    def to_json(self) -> bytes:
        # Every field is a str, float, bool, None or a tuple of str: no deep copy (asdict) needed.
        values = {name: getattr(self, name) for name in _ENVELOPE_ORDER}
        return json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Envelope:
        raw = json.loads(data)
        values = {k: v for k, v in raw.items() if k in _ENVELOPE_FIELDS}
        values["recipients"] = tuple(values.get("recipients", ()))
        return cls(**values)


_ENVELOPE_ORDER = tuple(f.name for f in fields(Envelope))
_ENVELOPE_FIELDS = frozenset(_ENVELOPE_ORDER)


@dataclass(frozen=True)
class QueuedMessage:
    """A committed message: its envelope, and its bytes at path[0:body_length]."""

    qid: str
    envelope: Envelope
    path: Path
    body_length: int

    def body(self) -> bytes:
        """The message bytes as received (FileNotFoundError once it left the queue)."""
        with open(self.path, "rb") as f:
            return f.read(self.body_length)


# Commits wait in fsync, not on the interpreter: each in a thread of its own, up to
# this many at once, so the disk sees every session's fsync together (its journal
# commits them in a few flushes). asyncio's default pool (cores + 4 threads) made
# 20 sessions queue behind 6 fsyncs. Threads are made as commits need them.
COMMIT_THREADS = 32
_commits: ThreadPoolExecutor | None = None


def _commit_pool() -> ThreadPoolExecutor:
    global _commits
    if _commits is None:
        _commits = ThreadPoolExecutor(max_workers=COMMIT_THREADS, thread_name_prefix="commit")
    return _commits


async def _in_commit_thread(func: Callable[..., object], *args: object) -> object:
    call = functools.partial(contextvars.copy_context().run, func, *args)
    return await asyncio.get_running_loop().run_in_executor(_commit_pool(), call)


class _GroupFsync:
    """One fsync of a folder shared by every commit that asked while it was pending."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._next: asyncio.Future[None] | None = None
        self._running = False

    async def sync(self) -> None:
        loop = asyncio.get_running_loop()
        if self._next is None:
            self._next = loop.create_future()
        waiter = self._next
        if not self._running:
            self._running = True
            loop.create_task(self._run())
        await waiter

    async def _run(self) -> None:
        try:
            while self._next is not None:
                # Requests that arrive during this fsync wait for the next one:
                # their renames may not be covered by it.
                waiter, self._next = self._next, None
                try:
                    await _in_commit_thread(fsync_dir, self.folder)
                except OSError as exc:
                    if not waiter.done():
                        waiter.set_exception(SpoolError(f"cannot sync {self.folder}: {exc.strerror}"))
                else:
                    if not waiter.done():
                        waiter.set_result(None)
        finally:
            self._running = False


class IncomingMessage:
    """A message being received; commit() makes it durable, abort() forgets it."""

    def __init__(self, spool: Spool) -> None:
        self._spool = spool
        self.qid = new_queue_id()
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._fd: int | None = None
        self.size = 0
        self._finished = False

    @property
    def _tmp_path(self) -> Path:
        return self._spool.incoming_dir / self.qid

    async def write(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        self.size += len(data)
        if self._buffered >= MEMORY_LIMIT:
            chunks, self._chunks, self._buffered = self._chunks, [], 0
            await asyncio.to_thread(self._write_out, chunks)

    def _write_out(self, chunks: list[bytes]) -> None:
        try:
            if self._fd is None:
                self._fd = os.open(self._tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            write_all(self._fd, b"".join(chunks))
        except OSError as exc:
            raise SpoolError(f"cannot write {self._tmp_path}: {exc.strerror}") from exc

    async def contents(self) -> bytes:
        """Every byte written so far (read back from the file for what went to disk)."""
        held = b"".join(self._chunks)
        if self._fd is None:
            return held
        return await asyncio.to_thread(self._read_back) + held

    def _read_back(self) -> bytes:
        try:
            with open(self._tmp_path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise SpoolError(f"cannot read {self._tmp_path}: {exc.strerror}") from exc

    async def replace_contents(self, data: bytes) -> None:
        """Make `data` the whole message (before commit; a check removed forged header fields)."""
        if self._finished:
            raise RuntimeError("message already committed or aborted")
        if self._fd is not None:
            fd, self._fd = self._fd, None
            await asyncio.to_thread(_discard, fd, self._tmp_path)
        self._chunks, self._buffered, self.size = [data], len(data), len(data)

    async def commit(self, envelope: Envelope, received: bytes | str) -> str:
        """Make message and envelope durable; returns the queue id. Only then may the caller say 250."""
        if self._finished:
            raise RuntimeError("message already committed or aborted")
        self._finished = True
        if isinstance(received, bytes):
            received = received.decode("utf-8", "replace")
        envelope = replace(envelope, received=received)
        chunks, self._chunks = self._chunks, []
        try:
            await _in_commit_thread(self._store, chunks, envelope.to_json())
        except OSError as exc:
            await asyncio.to_thread(self._spool._forget, self.qid)
            raise SpoolError(f"cannot store message {self.qid}: {exc.strerror}") from exc
        await self._spool._active_sync.sync()
        if self._spool.on_commit is not None:
            self._spool.on_commit(self.qid)
        return self.qid

    def _store(self, chunks: list[bytes], envelope_json: bytes) -> None:
        spool = self._spool
        tmp = self._tmp_path
        if self._fd is None:
            self._fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        chunks += [envelope_json, FOOTER_FORMAT % len(envelope_json)]
        try:
            write_all(self._fd, b"".join(chunks))
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None
        os.rename(tmp, spool.message_path(self.qid))

    async def abort(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._chunks = []
        if self._fd is not None:
            fd, self._fd = self._fd, None
            await asyncio.to_thread(_discard, fd, self._tmp_path)



def _discard(fd: int, path: Path) -> None:
    os.close(fd)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class Spool:
    def __init__(self, queue_dir: Path, *, on_commit: Callable[[str], None] | None = None) -> None:
        self.queue_dir = Path(queue_dir)
        self.incoming_dir = make_private_dir(self.queue_dir / "incoming")
        self.active_dir = make_private_dir(self.queue_dir / "active")
        self.on_commit = on_commit
        self._active_sync = _GroupFsync(self.active_dir)
        self._free: tuple[float, int] | None = None  # (time.monotonic(), bytes free)
        # A flush asked before now is answered by the start's own look at the whole queue.
        self._flush_seen = self._flush_stamp()

    # -- room ------------------------------------------------------------------

    async def has_room(self, size: int | None, reserve: int) -> bool:
        """Whether a message of `size` bytes (None: not said) fits and leaves `reserve` bytes free.

        Asked at MAIL FROM, as Postfix does (queue_minfree), so a client hears
        "try later" before it sends the message, not after.
        """
        return await self.free_space() >= reserve + (size or 0)

    async def free_space(self) -> int:
        """Bytes an unprivileged writer may still use on the queue's file system, at most FREE_SPACE_TTL old."""
        now = time.monotonic()
        if self._free is None or now - self._free[0] > FREE_SPACE_TTL:
            st = await asyncio.to_thread(os.statvfs, self.queue_dir)  # a network file system may be slow
            self._free = (now, st.f_bavail * st.f_frsize)
        return self._free[1]

    # -- receiving -------------------------------------------------------------

    def new_message(self) -> IncomingMessage:
        return IncomingMessage(self)

    def inject(self, envelope: Envelope, message: bytes) -> str:
        """Queue a message hatoba wrote itself (a bounce), durably, from a worker thread.

        The same steps as a commit: write and fsync in incoming/, rename into
        active/, fsync active/. The caller notifies the queue manager."""
        qid = new_queue_id()
        tmp = self.incoming_dir / qid
        envelope_json = envelope.to_json()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                write_all(fd, b"".join([message, envelope_json, FOOTER_FORMAT % len(envelope_json)]))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.message_path(qid))
            fsync_dir(self.active_dir)
        except OSError as exc:
            self._forget(qid)
            raise SpoolError(f"cannot store message {qid}: {exc.strerror}") from exc
        return qid

    # -- paths -------------------------------------------------------------------

    def message_path(self, qid: str) -> Path:
        return self.active_dir / f"{qid}.msg"

    def state_path(self, qid: str) -> Path:
        return self.active_dir / f"{qid}.state"

    @property
    def flush_request_path(self) -> Path:
        """`hatoba queue flush` touches this file; every running delivery process acts on it."""
        return self.queue_dir / "flush-request"

    # -- reading and bookkeeping (blocking: call from a thread) ------------------

    def recover(self) -> list[str]:
        """Clean what a crash left behind; returns the queued ids, oldest first.

        Only while no message is being received: it removes incoming/ files
        and bodies whose envelope is not there (yet).
        """
        for entry in os.scandir(self.incoming_dir):
            os.unlink(entry.path)
        messages: set[str] = set()
        states: set[str] = set()
        for entry in os.scandir(self.active_dir):
            qid, _, kind = entry.name.partition(".")
            if kind in ("msg", "state") and is_queue_id(qid):
                (messages if kind == "msg" else states).add(qid)
            elif not entry.name.startswith("."):
                log.warning("queue: unexpected file %s left alone", entry.path)
        for qid in states - messages:
            os.unlink(self.state_path(qid))
        fsync_dir(self.active_dir)
        return sorted(messages)

    def list_ids(self) -> list[str]:
        names = (e.name for e in os.scandir(self.active_dir))
        return sorted(n[:-4] for n in names if n.endswith(".msg") and is_queue_id(n[:-4]))

    def untried_ids(self, ids: list[str] | None = None) -> list[str]:
        """The queued ids (of `ids`, or all) no delivery process has tried yet: no state file."""
        return [qid for qid in (self.list_ids() if ids is None else ids) if not self.state_path(qid).exists()]

    def census(self) -> tuple[int, float | None]:
        """How many messages are queued, and when the oldest arrived (None: none is).
        One listing of active/ and no file opened: a queue id carries its arrival time."""
        count, oldest = 0, ""
        for entry in os.scandir(self.active_dir):
            qid, _, kind = entry.name.partition(".")
            if kind == "msg" and is_queue_id(qid):
                count += 1
                if not oldest or qid < oldest:
                    oldest = qid
        return count, arrival_time(oldest) if oldest else None

    def exists(self, qid: str) -> bool:
        return is_queue_id(qid) and self.message_path(qid).exists()

    def read(self, qid: str) -> QueuedMessage:
        """The envelope of a queued message and where its bytes are. FileNotFoundError if gone."""
        path = self.message_path(qid)
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size < FOOTER_SIZE:
                raise SpoolError(f"queue file {path} is damaged (too short)")
            f.seek(size - FOOTER_SIZE)
            footer = f.read(FOOTER_SIZE)
            try:
                length = int(footer[len(b"\nHATOBA-ENVELOPE "):-1])
            except ValueError:
                raise SpoolError(f"queue file {path} is damaged (no envelope footer)") from None
            body_length = size - FOOTER_SIZE - length
            if body_length < 0 or footer != FOOTER_FORMAT % length:
                raise SpoolError(f"queue file {path} is damaged (bad envelope footer)")
            f.seek(body_length)
            envelope = Envelope.from_json(f.read(length))
        return QueuedMessage(qid, envelope, path, body_length)

    def envelope(self, qid: str) -> Envelope:
        return self.read(qid).envelope

    def body(self, qid: str) -> bytes:
        """The message as received (for tests and small tools; delivery streams it)."""
        return self.read(qid).body()

    def state(self, qid: str) -> QueueState:
        try:
            raw = json.loads(self.state_path(qid).read_bytes())
        except FileNotFoundError:
            return QueueState()
        except ValueError:
            log.warning("queue: unreadable state of %s; starting over (deliveries are not repeated)", qid)
            return QueueState()
        known = {f.name for f in fields(QueueState)}
        return QueueState(**{k: v for k, v in raw.items() if k in known})

    def save_state(self, qid: str, state: QueueState) -> None:
        """Write the delivery progress of an attempt. `held` is the operator's
        (`hatoba queue hold|release`): the value on disk is kept, so a hold made
        while the attempt ran is not undone by it."""
        with self._message_lock(qid) as present:
            if not present:
                return  # deleted by the operator while the attempt ran
            state.held = self.state(qid).held
            self._write_state(qid, state)

    def set_held(self, qid: str, held: bool) -> None:
        """`hatoba queue hold|release`: change the flag alone, whatever an attempt is doing."""
        with self._message_lock(qid) as present:
            if not present:  # deleted meanwhile: no state file without its message
                raise SpoolError(f"no message {qid} in the queue (already delivered or deleted?)")
            state = self.state(qid)
            state.held = held
            self._write_state(qid, state)

    def _write_state(self, qid: str, state: QueueState) -> None:
        # No folder fsync: a lost state file means a retry, and delivery is idempotent.
        write_atomic(self.state_path(qid), json.dumps(asdict(state)).encode(), sync_dir=False)

    @contextmanager
    def _message_lock(self, qid: str) -> Iterator[bool]:
        """Serialises read-change-write of one message's state file and its removal,
        between delivery processes and the CLI: an flock on the message file itself,
        so that removals of different messages never wait for each other (one lock
        on active/ made every delivery process queue behind every unlink). Yields
        whether the message is still there once the lock is held."""
        try:
            fd = os.open(self.message_path(qid), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            yield False
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            st = os.fstat(fd)
            try:
                now = os.stat(self.message_path(qid), follow_symlinks=False)
            except FileNotFoundError:
                yield False  # removed while we waited for the lock
            else:  # the name still ours (st_nlink alone: a backup's hard link keeps it above 0)
                yield (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)
        finally:
            os.close(fd)  # releases the lock

    def remove(self, qid: str, *, sync: bool = True) -> None:
        """Forget a message (delivered, or deleted by the operator).

        sync=False skips the folder fsync, as Postfix's queue manager does: if a
        crash undoes the unlink, the message is tried again; local deliveries
        notice they are done (store/maildir.py), remote ones are sent again."""
        with self._message_lock(qid):  # a hold or release in between would leave a state file behind
            for path in (self.message_path(qid), self.state_path(qid)):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        if sync:
            fsync_dir(self.active_dir)

    def _forget(self, qid: str) -> None:
        """Remove every trace of a commit that failed half-way (it was never acknowledged)."""
        for path in (self.message_path(qid), self.incoming_dir / qid):
            try:
                os.unlink(path)
            except OSError:
                pass

    def request_flush(self) -> None:
        """Ask every running delivery process to try its whole queue now: the request
        file gets a new time, which each compares with the last one it saw."""
        path = self.flush_request_path
        path.touch(mode=0o600)
        now = time.time_ns()
        os.utime(path, ns=(now, now))  # to the nanosecond: two requests in one clock tick differ

    def take_flush_request(self) -> bool:
        """Whether `hatoba queue flush` asked since this Spool last looked (or was made)."""
        stamp = self._flush_stamp()
        if stamp == self._flush_seen:
            return False
        self._flush_seen = stamp
        return True

    def _flush_stamp(self) -> int | None:
        try:
            return os.stat(self.flush_request_path).st_mtime_ns
        except FileNotFoundError:
            return None
