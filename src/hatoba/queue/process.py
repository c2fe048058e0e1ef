"""The queue manager in a process of its own.

The SMTP listeners and the deliveries then run on different cores and
never wait for each other's interpreter lock (Postfix separates smtpd and
local(8) for similar reasons). The server starts this process, writes the
id of each committed message to its stdin, one a line, and closes stdin to
stop it. When the server dies (even by kill -9) stdin reaches end of file
and the process finishes its deliveries in flight and exits. It recovers
the queue from disk at start, so nothing depends on the notifications
arriving: they only make delivery immediate. `hatoba serve` starts it (and
restarts it) only after dropping root: it is the service user from its
first instruction and never holds root to give up.

The child answers on its stdout, one report a line (queue/reports.py): that
it is ready, each new message in a mailbox, and what each delivery attempt
did, which the server counts for /metrics.

With several delivery processes (one per core, each owning a part of the
queue), all but the first stop once their part of the queue has been empty
for RETIRE_AFTER seconds, as Postfix's delivery agents stop after max_idle:
an idle server keeps one delivery interpreter, not one per core. Such a
process says "idle"; the server writes "retire" after the ids it sent
before, and keeps the ids of its part that come meanwhile. The process,
having read every id before "retire", exits at once if its part holds
nothing (so no delivery is ever cut short), or answers "busy" and runs on,
and the server then sends it the ids it kept. The server starts a stopped
process again for the next message of its part; the process finds that
message, and any other of its part, on disk.

It runs at a lower CPU priority (DELIVERY_NICENESS) than the listeners: when
the cores are all busy, accepting a message (the client waits for our 250)
goes before delivering one (the queue holds it, on disk), as Postfix's queue
absorbs a burst. Idle cores still go to delivery at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from hatoba.config.schema import Config
from hatoba.queue.ids import is_queue_id
from hatoba.queue.ids import part_of
from hatoba.queue.reports import BounceQueued, Busy, Delivered, DeliveryDone, DeliveryStats, Idle, Queued, Ready
from hatoba.queue.reports import ReportWriter
from hatoba.queue.reports import apply_report, parse_report
from hatoba.linebatch import LineBatch
from hatoba.runloop import run_child, start_child

log = logging.getLogger(__name__)

RESTART_DELAY = 1.0
# Ten steps below the listeners: under full load the delivery processes get about a
# tenth of a busy core's time (Linux CFS weights 110 against 1024) until the burst ends.
DELIVERY_NICENESS = 10
STOP_TIMEOUT = 30.0
# A delivery process other than the first offers to stop once its part of the queue
# has been empty this long (Postfix's max_idle is 100 s).
RETIRE_AFTER = 60.0
RETIRE = b"retire"  # on a delivery process's stdin: stop now if your part holds nothing
RETIRED = 3  # its exit status when it stopped so (any other exit is a crash, started again)


class DeliveryProcess:
    """The server's handle on the child process (start, notify, stop, restart on a crash)."""

    def __init__(
        self, config_path: Path, log_level: str, *, on_delivered: Callable[[str], None] | None = None,
        log_fd: int | None = None,
        stats: DeliveryStats | None = None, on_restart: Callable[[], None] | None = None,
        part: int = 0, parts: int = 1, on_queued: Callable[[str], None] | None = None,
        retire_after: float | None = None,
    ) -> None:
        """`on_delivered(mailbox)` is called for each new message the child reports,
        `stats` counts its deliveries and bounces, `on_restart()` runs when it is
        started again after a crash. `log_fd`: the server's open log file, which the
        child writes to as well (the server opened it before dropping root; the child
        could not open it itself). With several delivery processes this one
        delivers part `part` of `parts` (queue/ids.part_of), and `on_queued(qid)`
        gets the bounces it queued for another part. With `retire_after` it may
        stop once its part has been empty that long, until notify() needs it."""
        self.part = part
        self.parts = parts
        self.on_queued = on_queued
        self.config_path = config_path
        self.log_level = log_level
        self.log_fd = log_fd
        self.on_delivered = on_delivered
        self.stats = stats
        self.on_restart = on_restart
        self._proc: asyncio.subprocess.Process | None = None
        self._ready = False  # the running child said "ready"
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False
        self._ids = LineBatch(self._stdin)  # committed queue ids, one write per turn of the loop
        self.retire_after = retire_after
        # Resting: the child says "idle", is asked to retire, and stops (dormant) or says "busy".
        self._retiring = False  # "retire" sent, no answer yet: ids of its part are kept in _held
        self._held: list[bytes] = []
        self._retire_count = 0  # which "retire" a kill timer belongs to
        self._dormant = False  # stopped with its part empty: notify() wakes it
        self._waking = False  # being started for a message: healthy until it says ready (or fails)
        self._wanted = asyncio.Event()  # a message of its part came while it was retiring or resting

    @property
    def alive(self) -> bool:
        """The child runs and has said it is ready, or it rests with nothing to deliver, or
        it is being started for a message (for /healthz)."""
        if self._watcher is None or self._watcher.done():
            return False
        if self._dormant or self._retiring or self._waking:
            return True
        return self._ready and self._proc is not None and self._proc.returncode is None

    @property
    def dormant(self) -> bool:
        """Stopped because its part of the queue was empty; the next message of its part starts it."""
        return self._dormant

    @property
    def pid(self) -> int | None:
        """The running child's process id (its memory is read from /proc for /metrics)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def start(self) -> None:
        await self._spawn()
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _spawn(self) -> None:
        log_file = () if self.log_fd is None else ("--log-fd", str(self.log_fd))
        retire = () if self.retire_after is None else ("--retire-after", str(self.retire_after))
        self._ready = False
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hatoba.queue.process", str(self.config_path), "--log-level", self.log_level,
            *log_file, "--part", str(self.part), "--parts", str(self.parts), *retire,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            pass_fds=() if self.log_fd is None else (self.log_fd,),
        )
        # A new child lists its part of the queue: what an old one was asked or kept is void.
        self._retiring = self._dormant = False
        self._held = []
        asyncio.get_running_loop().create_task(self._read_reports(self._proc))

    async def _start_again(self) -> None:
        """_spawn, tried again every RESTART_DELAY while the system refuses (descriptors, memory)."""
        while not self._stopping:
            try:
                await self._spawn()
                return
            except OSError as exc:
                self._waking = False  # not healthy until a child runs
                log.error("cannot start delivery process %d of %d: %s; trying again in %.0f s",
                          self.part + 1, self.parts, exc.strerror or exc, RESTART_DELAY)
                await asyncio.sleep(RESTART_DELAY)

    async def _read_reports(self, proc: asyncio.subprocess.Process) -> None:
        """What the child writes on its stdout, one report a line (queue/reports.py)."""
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            current = proc is self._proc and proc.returncode is None  # not a line left by a dead child
            match parse_report(line):
                case Delivered(mailbox=mailbox) if self.on_delivered is not None:
                    self.on_delivered(mailbox)
                case Ready() if current:
                    self._ready = True
                    self._waking = False
                case Idle() if current and self.retire_after is not None and not (self._stopping or self._retiring):
                    self._retire(proc)
                case Busy() if current and self._retiring:
                    self._retiring = False
                    held, self._held = self._held, []
                    for line in held:
                        self._ids.add(line)
                case DeliveryDone() | BounceQueued() as report if self.stats is not None:
                    apply_report(report, self.stats)
                case Queued(qid=qid) if self.on_queued is not None:
                    self.on_queued(qid)

    def notify(self, qid: str) -> None:
        """Tell the child of a committed message (a restarted child finds it on disk)."""
        line = qid.encode("ascii") + b"\n"
        if self._dormant or self._retiring:
            self._wanted.set()  # a resting part is started; one that stays ("busy") is told
            self._held.append(line)
            return
        self._ids.add(line)

    def _retire(self, proc: asyncio.subprocess.Process) -> None:
        """Ask the child to stop, after every id told so far."""
        self._ids.flush()
        stdin = proc.stdin
        if stdin is None or stdin.is_closing():
            return
        self._retiring = True
        self._retire_count += 1
        self._wanted.clear()
        stdin.write(RETIRE + b"\n")
        # It answers at once (a look at its part of the queue); one that neither stops nor
        # answers is killed, and started again like one that crashed.
        asyncio.get_running_loop().call_later(STOP_TIMEOUT, self._kill_if_silent, proc, self._retire_count, True)

    def _kill_if_silent(self, proc: asyncio.subprocess.Process, request: int, first_look: bool) -> None:
        if not (proc is self._proc and proc.returncode is None and self._retiring
                and request == self._retire_count and not self._stopping):
            return  # answered, stopped, or asked again since
        if first_look:
            # After a stalled loop (a paused server) timers run before the lines already in
            # the pipe are read: an answer may be there. Judge once they have been.
            asyncio.get_running_loop().call_later(1.0, self._kill_if_silent, proc, request, False)
            return
        log.warning("delivery process %d of %d did not answer \"retire\" within %.0f s; killed",
                    self.part + 1, self.parts, STOP_TIMEOUT)
        proc.kill()

    def _stdin(self) -> asyncio.StreamWriter | None:
        proc = self._proc
        return proc.stdin if proc is not None and proc.returncode is None else None

    async def _watch(self) -> None:
        while not self._stopping:
            assert self._proc is not None
            status = await self._proc.wait()
            if self._stopping:
                return
            if self._retiring and status == RETIRED:  # it stopped as asked: its part held nothing
                if not self._wanted.is_set():
                    log.info("delivery process %d of %d stopped: its part of the queue is empty",
                             self.part + 1, self.parts)
                    self._dormant, self._retiring = True, False
                    await self._wanted.wait()
                    if self._stopping:
                        return
                # Healthy while it starts; the ids that come meanwhile it finds on disk.
                self._dormant, self._retiring, self._waking = False, False, True
                await self._start_again()
                continue
            self._retiring = self._waking = False
            log.error("delivery process %d of %d exited with status %s; starting it again",
                      self.part + 1, self.parts, status)
            if self.on_restart is not None:
                self.on_restart()
            await asyncio.sleep(RESTART_DELAY)
            await self._start_again()

    async def stop(self) -> None:
        self._stopping = True
        self._wanted.set()  # a dormant watcher returns
        proc = self._proc
        if proc is None:
            return
        self._ids.flush()  # ids committed in this last turn of the loop
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await proc.wait()
        except TimeoutError:
            log.warning("delivery process did not stop within %.0f s; killed", STOP_TIMEOUT)
            proc.kill()
            await proc.wait()
        if self._watcher is not None:
            self._watcher.cancel()


class DeliveryProcesses:
    """Several delivery processes, each owning the messages of one part of the
    queue (queue/ids.part_of): remote delivery then uses more than one core.
    Each message has exactly one owner, so no two processes ever try it at once,
    and a restarted process recovers exactly its own."""

    def __init__(self, parts: int, config_path: Path, log_level: str, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.parts = [
            DeliveryProcess(config_path, log_level, part=i, parts=parts, on_queued=self.notify,
                            retire_after=RETIRE_AFTER if i else None, **kwargs)
            for i in range(parts)
        ]

    @property
    def alive(self) -> bool:
        return all(p.alive for p in self.parts)

    @property
    def pid(self) -> int | None:
        """The first part's (hatoba_delivery_process_*)."""
        return self.parts[0].pid

    @property
    def pids(self) -> dict[int, int]:
        """Part -> process id, of those running."""
        return {i: pid for i, p in enumerate(self.parts) if (pid := p.pid) is not None}

    async def start(self) -> None:
        await asyncio.gather(*(p.start() for p in self.parts))

    def notify(self, qid: str) -> None:
        self.parts[part_of(qid, len(self.parts))].notify(qid)

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.parts))


def quota_check(config: Config, directory) -> Callable[[str], bool]:  # type: ignore[no-untyped-def]
    """The delivery-time quota check: imap.quota_mb, or the user's own (hatoba user quota)."""
    from hatoba.store.folder_tree import MailboxStore

    boxes = MailboxStore(
        config.paths.mail_dir, quota_bytes=config.imap.quota_mb * 1024 * 1024, user_quota_mb=directory.quota_mb
    )

    def full(mailbox: str) -> bool:
        if not boxes.quota_limit(mailbox):
            return False  # no limit: no need to count the mailbox
        used, limit = boxes.for_user(mailbox).quota()
        return bool(limit) and used >= limit

    return full


def sender_lists(config: Config):  # type: ignore[no-untyped-def]
    """The users' spam allow/block lists (hatoba spam allow|block), as local delivery asks them."""
    from hatoba.store.spamlists import SpamLists

    try:
        lists = SpamLists(config.paths.directory_db)
    except Exception as exc:  # an old database: upgraded when the server opens it; lists off until then
        log.warning("sender lists unavailable: %s", exc)
        return None
    return lists.verdict_for


def build_manager(config: Config, spool, directory, store, *, on_delivered=None, stats=None,  # type: ignore[no-untyped-def]
                  part=0, parts=1, on_foreign=None):
    """The queue manager with everything the config asks for: remote delivery, DKIM, quota;
    `stats` counts deliveries and bounces (queue/reports.DeliveryStats)."""
    from hatoba.delivery.remote import RemoteDelivery
    from hatoba.dkim.sign import DkimSigner
    from hatoba.queue.manager import QueueManager

    return QueueManager(
        spool, directory, store, retry=config.delivery, on_delivered=on_delivered,
        mailbox_full=quota_check(config, directory),
        sender_lists=sender_lists(config),
        remote=RemoteDelivery(config, share=(part, parts)),
        dkim=DkimSigner(config.paths.dkim_dir) if config.dkim.sign else None,
        hostname=config.server.hostname,
        postmaster=config.delivery.postmaster,
        stats=stats,
        part=part, parts=parts, on_foreign=on_foreign,
    )


async def _serve(config: Config, part: int = 0, parts: int = 1, retire_after: float | None = None) -> int:
    from hatoba.queue.spool import Spool
    from hatoba.store.directory import Directory
    from hatoba.store.maildir import MaildirStore

    paths = config.paths
    directory = Directory(paths.directory_db)
    directory.postmaster = config.server.postmaster
    store = MaildirStore(paths.mail_dir, hostname=config.server.hostname)

    reports = ReportWriter(sys.stdout.buffer)

    def report(mailbox: str) -> None:
        reports.send(Delivered(mailbox))

    def foreign(qid: str) -> None:
        reports.send(Queued(qid))

    manager = build_manager(config, Spool(paths.queue_dir), directory, store, on_delivered=report, stats=reports,
                            part=part, parts=parts, on_foreign=foreign)
    await manager.start()
    reports.send(Ready())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    retired = False

    async def read_ids() -> None:
        nonlocal retired
        while line := await reader.readline():
            word = line.strip()
            if word == RETIRE:  # every id written before it has been taken
                if await may_retire():
                    manager.take_nothing_more()  # no await since the look: nothing started since
                    retired = True
                    break
                reports.send(Busy())
                continue
            qid = word.decode("ascii", "replace")
            if is_queue_id(qid):
                manager.notify(qid)
        stop.set()  # asked to retire, or end of file: the server stopped or died

    async def may_retire() -> bool:
        try:
            return await manager.holds_nothing()
        except OSError as exc:  # the queue folder unreadable: keep running, and say why
            log.warning("delivery part %d cannot list the queue: %s", part + 1, exc.strerror)
            return False

    async def offer_to_retire(after: float) -> None:
        """Say "idle" each time the part has held nothing for `after` seconds."""
        empty_since = None
        while True:
            await asyncio.sleep(min(after / 4, 15.0))
            if not await may_retire():
                empty_since = None
            elif empty_since is None:
                empty_since = loop.time()
            elif loop.time() - empty_since >= after:
                reports.send(Idle())
                empty_since = None

    reading = loop.create_task(read_ids())
    offering = None
    if retire_after is not None:
        offering = loop.create_task(offer_to_retire(retire_after))
        offering.add_done_callback(_log_failure)
    await stop.wait()
    reading.cancel()
    if offering is not None:
        offering.cancel()
    await manager.stop()
    directory.close()
    return RETIRED if retired else 0


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("delivery part stopped offering to rest", exc_info=task.exception())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hatoba-delivery")
    parser.add_argument("config", type=Path)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-fd", type=int, help="the server's open log file")
    parser.add_argument("--part", type=int, default=0, help="the part of the queue this process delivers")
    parser.add_argument("--parts", type=int, default=1, help="delivery processes in all")
    parser.add_argument("--retire-after", type=float, help="offer to stop after the part held nothing this long")
    args = parser.parse_args(argv)
    _lower_priority()
    config = start_child("hatoba delivery", args.config, args.log_level, args.log_fd)
    if config is None:
        return 1
    return run_child("hatoba delivery", _serve(config, args.part, args.parts, args.retire_after))

def _lower_priority() -> None:
    """Leave the cores to the listeners when both want them (see the module docstring)."""
    try:
        os.nice(DELIVERY_NICENESS)
    except OSError:  # not allowed here (a container's seccomp policy): run at the listeners' priority
        pass


if __name__ == "__main__":
    raise SystemExit(main())
