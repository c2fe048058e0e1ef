"""The other worker processes, as the first worker sees them.

`hatoba serve` is the first worker: it binds every port, drops root, starts
the delivery process and serves connections itself. With `[server] workers`
above 1 it also starts the others (`python -m hatoba.net.worker_main`),
each with the same listening sockets (taken by load, see net/acceptor.py),
and

- passes their messages on (net/worker_link.py): a committed message to the
  delivery process, a mailbox change to its own sessions and every other
  worker;
- starts a worker again when it dies, on the same sockets (the others
  take new connections meanwhile), after clearing what it counted in the
  shared connection counts;
- asks each for its counters when /metrics is scraped;
- tells them to reload the certificates (SIGHUP) and to stop (end of file on
  their stdin, which is also what they see when the first worker dies).

The workers run as the service user from their first instruction: they are
started after root is gone and never hold it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from hatoba.linebatch import LineBatch
from hatoba.metrics import OtherWorkers, SampleKey, departed_counters
from hatoba.net import worker_link as W

log = logging.getLogger(__name__)

RESTART_DELAY = 1.0
STOP_TIMEOUT = 30.0  # sessions get SHUTDOWN_GRACE; this is for a worker that hangs
METRICS_TIMEOUT = 2.0


class _Worker:
    __slots__ = ("index", "sockets", "proc", "ready", "metrics", "last_metrics", "watcher", "reader", "lines")

    def __init__(self, index: int, sockets: dict[str, list[socket.socket]]) -> None:
        self.index = index
        self.sockets = sockets
        self.proc: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()
        self.metrics: asyncio.Future[bytes] | None = None  # the answer a scrape waits for
        self.last_metrics: bytes | None = None  # this process's last answer
        self.watcher: asyncio.Task[None] | None = None
        self.reader: asyncio.Task[None] | None = None
        self.lines = LineBatch(self._stdin)

    def send(self, line: bytes) -> None:
        """One encoded message (worker_link.encode); those of one turn of the loop go in one write."""
        self.lines.add(line)

    def _stdin(self) -> asyncio.StreamWriter | None:
        proc = self.proc  # a restarted worker starts with a fresh view of every mailbox
        return proc.stdin if proc is not None and proc.returncode is None else None

    def exited(self) -> bytes | None:
        """The process ended: forget it was ready and what a scrape waits for; its last answer."""
        self.ready.clear()
        if self.metrics is not None and not self.metrics.done():
            self.metrics.cancel()  # no answer comes now; the next scrape asks the new process
        self.metrics = None
        last, self.last_metrics = self.last_metrics, None
        return last


class WorkerProcesses:
    def __init__(
        self,
        config_path: Path,
        sockets: list[dict[str, list[socket.socket]]],
        *,
        log_level: str,
        log_fd: int | None,
        counts_fd: int | None,
        on_queued: Callable[[str], None],
        on_changed: Callable[[W.Changed], None],
        on_restart: Callable[[int], None] | None = None,
    ) -> None:
        """`sockets[i]`: the listening sockets of worker i + 1 (the first worker is
        this process). `on_queued(qid)` and `on_changed(message)` get what the workers
        report; `on_restart(index)` runs before a dead worker is started again."""
        self.config_path = config_path
        self.log_level = log_level
        self.log_fd = log_fd
        self.counts_fd = counts_fd
        self.count = len(sockets) + 1
        self.on_queued = on_queued
        self.on_changed = on_changed
        self.on_restart = on_restart
        self._workers = [_Worker(i + 1, s) for i, s in enumerate(sockets)]
        self._stopping = False
        self._departed: dict[SampleKey, float] = {}  # counters of worker processes that died

    @property
    def pids(self) -> dict[int, int]:
        """Worker index -> process id, of those running."""
        return {w.index: w.proc.pid for w in self._workers if w.proc is not None and w.proc.returncode is None}

    def starting(self) -> list[int]:
        """Indices of the workers running but not listening yet (started again after a death)."""
        return [w.index for w in self._workers
                if w.proc is not None and w.proc.returncode is None and not w.ready.is_set()]

    async def start(self, timeout: float = 60.0) -> None:
        """Start every worker and wait until each listens (or `timeout`; a worker
        slower than that is told about in the log and keeps starting)."""
        for worker in self._workers:
            await self._spawn(worker)
            worker.watcher = asyncio.get_running_loop().create_task(self._watch(worker))
        waits = [asyncio.ensure_future(w.ready.wait()) for w in self._workers]
        if waits:
            _done, pending = await asyncio.wait(waits, timeout=timeout)
            for wait in pending:
                wait.cancel()
            if pending:
                log.warning("%d worker process(es) not listening after %.0f s", len(pending), timeout)

    async def _spawn(self, worker: _Worker) -> None:
        fds: list[int] = []
        args = [sys.executable, "-m", "hatoba.net.worker_main", str(self.config_path),
                "--index", str(worker.index), "--workers", str(self.count), "--log-level", self.log_level]
        if self.log_fd is not None:
            args += ["--log-fd", str(self.log_fd)]
            fds.append(self.log_fd)
        if self.counts_fd is not None:
            args += ["--counts-fd", str(self.counts_fd)]
            fds.append(self.counts_fd)
        for name, socks in worker.sockets.items():
            args += ["--listener", f"{name}=" + ",".join(str(s.fileno()) for s in socks)]
            fds += [s.fileno() for s in socks]
        worker.ready.clear()
        worker.proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, pass_fds=fds, limit=W.MAX_LINE,
        )
        worker.reader = asyncio.get_running_loop().create_task(self._read(worker, worker.proc))

    async def _read(self, worker: _Worker, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            try:
                line = await proc.stdout.readline()
            except ValueError:  # over MAX_LINE: a broken worker; its restart reads afresh
                log.error("worker %d wrote an over-long line; stopping it", worker.index)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                return
            if not line:
                return
            match W.decode(line):
                case W.Queued(qid=qid):
                    self.on_queued(qid)
                case W.Changed() as changed:
                    self.on_changed(changed)
                    self._send_all(line, exclude=worker.index)  # passed on as it came
                case W.Ready() if proc is worker.proc:
                    worker.ready.set()
                case W.MetricsText(text=text) if worker.metrics is not None and not worker.metrics.done():
                    worker.metrics.set_result(text)

    def broadcast(self, message: W.Message) -> None:
        self._send_all(W.encode(message))

    def _send_all(self, line: bytes, *, exclude: int | None = None) -> None:
        for worker in self._workers:
            if worker.index != exclude:
                worker.send(line)

    def reload(self) -> None:
        self.broadcast(W.Reload())

    async def metrics(self) -> OtherWorkers:
        """Each worker's counters: its answer within METRICS_TIMEOUT, else the last it
        gave (so no total goes down), and those of the worker processes that died."""
        loop = asyncio.get_running_loop()
        asked = []
        for worker in self._workers:
            if worker.ready.is_set():
                if worker.metrics is None or worker.metrics.done():
                    worker.metrics = loop.create_future()
                    worker.send(W.encode(W.MetricsAsked()))
                asked.append(worker.metrics)
        if asked:
            await asyncio.wait(asked, timeout=METRICS_TIMEOUT)
        texts = []
        for worker in self._workers:
            answer = worker.metrics
            if answer is not None and answer.done() and not answer.cancelled():
                worker.last_metrics = answer.result()
            if worker.last_metrics is not None:
                texts.append(worker.last_metrics)
        return OtherWorkers(texts, dict(self._departed))

    async def _watch(self, worker: _Worker) -> None:
        while not self._stopping:
            assert worker.proc is not None
            status = await worker.proc.wait()
            if self._stopping:
                return
            last = worker.exited()
            if last is not None:
                for key, value in departed_counters(last).items():
                    self._departed[key] = self._departed.get(key, 0.0) + value
            log.error("worker process %d exited with status %s; starting it again", worker.index, status)
            if self.on_restart is not None:
                self.on_restart(worker.index)
            await asyncio.sleep(RESTART_DELAY)
            if not self._stopping:
                await self._spawn(worker)

    async def stop(self) -> None:
        """Tell every worker to stop (they close their listeners and give their
        sessions SHUTDOWN_GRACE) and wait for them."""
        self._stopping = True
        running = [w.proc for w in self._workers if w.proc is not None and w.proc.returncode is None]
        for proc in running:
            if proc.stdin is not None:
                proc.stdin.close()
        for worker in self._workers:
            if worker.watcher is not None:
                worker.watcher.cancel()
        if running:  # one deadline for all of them
            waits = {asyncio.ensure_future(proc.wait()): proc for proc in running}
            _done, hung = await asyncio.wait(waits, timeout=STOP_TIMEOUT)
            for wait in hung:
                proc = waits[wait]
                log.warning("worker process %d did not stop within %.0f s; killed", proc.pid, STOP_TIMEOUT)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            if hung:
                await asyncio.wait(hung)
        # Their last lines (the ids of the last messages they took) before the delivery processes stop.
        readers = [w.reader for w in self._workers if w.reader is not None and not w.reader.done()]
        if readers:
            await asyncio.wait(readers, timeout=5)
