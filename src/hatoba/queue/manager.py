"""The queue manager: picks committed messages and runs their deliveries.

- New messages are announced by the spool (notify) and delivered at once.
- At start-up everything left in the queue is delivered again; deliveries
  are idempotent (see store/maildir.py), so a crash never duplicates mail.
- Temporary failures are retried with exponential backoff between
  delivery.retry_min and delivery.retry_max.
- `hatoba queue flush|release` leave a request file that the manager sees
  within a second; `hold` is a flag in the message's state, read before
  every attempt.

Deliveries run in a small thread pool of their own, so a burst of
deliveries never delays the fsyncs that SMTP sessions wait for.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from hatoba.config.schema import DeliveryConfig
from hatoba.delivery.local import Attempt, deliver_locally
from hatoba.logs import mail_log
from hatoba.queue.spool import Spool, SpoolError
from hatoba.store.api import MailStore, UserDB

log = logging.getLogger(__name__)

# Deliveries in flight at once. More threads only fight over the interpreter
# lock; four keep the disk busy while one waits in fsync.
WORKERS = 4
FLUSH_POLL = 1.0  # seconds between looks for a flush request


class QueueManager:
    def __init__(
        self,
        spool: Spool,
        directory: UserDB,
        store: MailStore,
        *,
        retry: DeliveryConfig | None = None,
        workers: int = WORKERS,
        on_delivered: Callable[[str], None] | None = None,
        mailbox_full: Callable[[str], bool] | None = None,
    ) -> None:
        """`on_delivered(mailbox)` runs in the event loop after each new message in a mailbox."""
        self.on_delivered = on_delivered
        self.mailbox_full = mailbox_full
        self.spool = spool
        self.directory = directory
        self.store = store
        self.retry = retry or DeliveryConfig()
        self._workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="delivery")
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()  # in _ready or being delivered
        self._deferred: list[tuple[float, str]] = []  # heap of (next_try, qid)
        self._waiting: set[str] = set()  # the qids in _deferred
        self._recovered: set[str] = set()
        self._busy = 0
        self._idle = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()

    # -- life cycle --------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # The server cleaned the spool (Spool.recover) before it began to accept
        # mail; here we only list, as messages may be committed meanwhile.
        recovered = await loop.run_in_executor(self._executor, self.spool.list_ids)
        if recovered:
            log.info("queue: %d message(s) waiting from before the start; delivering", len(recovered))
        self._recovered = set(recovered)
        for qid in recovered:
            self._enqueue(qid)
        self._tasks = [loop.create_task(self._worker()) for _ in range(self._workers)]
        self._tasks.append(loop.create_task(self._scheduler()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        # Deliveries already in a thread finish; each step of them is crash-safe anyway.
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)

    def notify(self, qid: str) -> None:
        """A new message is ready for delivery (one already deferred keeps its schedule)."""
        if qid in self._waiting:
            return
        self._enqueue(qid)

    def _enqueue(self, qid: str) -> None:
        if qid in self._queued:
            return
        self._queued.add(qid)
        self._idle.clear()
        self._ready.put_nowait(qid)

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Until nothing is waiting to be delivered now (deferred messages may remain)."""
        async with asyncio.timeout(timeout):
            while self._queued:
                self._idle.clear()
                await self._idle.wait()

    # -- workers -----------------------------------------------------------------

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            qid = await self._ready.get()
            try:
                next_try, delivered = await loop.run_in_executor(self._executor, self._attempt, qid)
                if self.on_delivered is not None:
                    for mailbox in delivered:
                        self.on_delivered(mailbox)
            except Exception:
                log.exception("queue: delivery of %s failed; will retry", qid)
                next_try = time.time() + self.retry.retry_min
            finally:
                self._queued.discard(qid)
                if not self._queued:
                    self._idle.set()
            if next_try is not None:
                heapq.heappush(self._deferred, (next_try, qid))
                self._waiting.add(qid)
                self._wake.set()

    def _attempt(self, qid: str) -> tuple[float | None, list[str]]:
        """One delivery attempt (in a thread): when to try again (None when done or gone), and
        the mailboxes that got the message."""
        try:
            queued = self.spool.read(qid)
            state = self.spool.state(qid)
            if state.held:
                return None, []  # `hatoba queue release` brings it back
            thorough = qid in self._recovered or state.attempts > 0
            attempt = deliver_locally(
                queued, state, directory=self.directory, store=self.store, thorough=thorough,
                mailbox_full=self.mailbox_full,
            )
        except FileNotFoundError:
            if self.spool.exists(qid):
                raise
            return None, []  # delivered by an earlier attempt, or `hatoba queue delete`
        except SpoolError as exc:
            log.error("%s; left in place for the operator, not delivered", exc)
            return None, []
        self._recovered.discard(qid)
        if attempt.finished:
            self.spool.remove(qid)
            mail_log("removed", qid=qid)
            return None, attempt.delivered
        return self._defer(qid, attempt), attempt.delivered

    def _defer(self, qid: str, attempt: Attempt) -> float:
        state = attempt.state
        state.attempts += 1
        delay = min(self.retry.retry_max, self.retry.retry_min * 2 ** (state.attempts - 1))
        state.next_try = time.time() + delay
        if attempt.temporary_error:
            state.last_error = attempt.temporary_error
        else:
            targets = ", ".join(f"<{t}>" for t in attempt.pending_remote)
            state.last_error = f"waiting for remote delivery to {targets}"
        self.spool.save_state(qid, state)
        return state.next_try

    # -- scheduler -----------------------------------------------------------------

    async def _scheduler(self) -> None:
        """Moves deferred messages back to the workers when due; answers flush requests."""
        loop = asyncio.get_running_loop()
        while True:
            now = time.time()
            while self._deferred and self._deferred[0][0] <= now:
                _, qid = heapq.heappop(self._deferred)
                self._waiting.discard(qid)
                self._enqueue(qid)
            if await loop.run_in_executor(self._executor, self.spool.take_flush_request):
                await self._flush_all()
            timeout = FLUSH_POLL
            if self._deferred:
                timeout = min(timeout, max(0.0, self._deferred[0][0] - now))
            self._wake.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _flush_all(self) -> None:
        """Try every queued message now (`hatoba queue flush` and `release`)."""
        loop = asyncio.get_running_loop()
        ids = await loop.run_in_executor(self._executor, self.spool.list_ids)
        log.info("queue: flush requested; trying %d message(s) now", len(ids))
        self._deferred = []
        self._waiting = set()
        for qid in ids:
            self._enqueue(qid)
