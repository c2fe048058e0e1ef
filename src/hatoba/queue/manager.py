"""The queue manager: picks committed messages and runs their deliveries.

- New messages are announced by the spool (notify) and delivered at once.
- Each attempt: local deliveries in a thread (delivery/local.py), then the
  remote recipients in the event loop (delivery/remote.py), then the
  bookkeeping in a thread again (_finish: state, bounces, next try).
- At start-up everything left in the queue is tried again. Local
  deliveries are idempotent (see store/maildir.py), so a crash never
  duplicates them; a remote one that a crash interrupted is sent again.
- Temporary failures are retried with exponential backoff between
  delivery.retry_min and delivery.retry_max; after
  delivery.max_queue_lifetime the rest bounces (RFC 3464 reports, queue/dsn.py).
- `hatoba queue flush|release` leave a request file that the manager sees
  within a second; `hold` is a flag in the message's state, read before
  every attempt.

Blocking steps run in a small thread pool of their own, so a burst of
deliveries never delays the fsyncs that SMTP sessions wait for.
"""
from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hatoba.config.schema import DeliveryConfig
from hatoba.delivery.local import Attempt, deliver_locally
from hatoba.dkim.sign import DkimSigner, from_domain
from hatoba.logs import mail_log
from hatoba.queue.ids import part_of
from hatoba.queue.dsn import RecipientReport, build_dsn, header_block, is_delivery_report
from hatoba.queue.reports import DeliveryStats
from hatoba.queue.spool import Envelope, QueuedMessage, Spool, SpoolError
from hatoba.store.api import MailStore, UserDB

if TYPE_CHECKING:
    from hatoba.delivery.remote import Outcome, RemoteDelivery

log = logging.getLogger(__name__)

# Threads for the blocking steps (local delivery, spool files). They spend
# their time waiting in fsync and unlink (with discard, an unlink of a synced
# file waits for the disk too), not on the interpreter: with 4, deliveries
# queued behind each other's disk waits; 16 keep the disk and the event loop busy.
WORKERS = 16
# Messages in progress at once: remote deliveries mostly wait on the network,
# so many more than threads (delivery.destination_concurrency still caps
# the connections per destination).
IN_FLIGHT = 64
FLUSH_POLL = 1.0  # seconds between looks for a flush request
DSN_LISTENER = "dsn"  # Envelope.listener of the bounces we write
DOUBLE_BOUNCE_LISTENER = "dsn-postmaster"


@dataclass
class _Step:
    """A message after its local deliveries, with what is left for remote delivery."""

    queued: QueuedMessage
    attempt: Attempt
    remote_targets: list[str]
    data: bytes  # the wire form for the remote targets


def _status(reason: str, default: str) -> str:
    first = reason.split(" ", 1)[0]
    parts = first.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return first
    words = reason.split(" ", 2)
    if len(words) > 1 and words[0].isdigit():
        return _status(words[1], default)
    return default


def _local_report(rcpt: str, reason: str) -> RecipientReport:
    status = _status(reason, "5.0.0")
    text = reason[len(status):].strip() if reason.startswith(status) else reason
    return RecipientReport(recipient=rcpt, action="failed", status=status, diagnostic=f"550 {status} {text}",
                           last_attempt=time.time())


def _remote_report(outcome: Outcome, action: str) -> RecipientReport:
    reply = outcome.reply
    return RecipientReport(
        recipient=outcome.recipient, action=action, status=reply.enhanced, diagnostic=str(reply),
        remote_mta=outcome.remote_mta, diagnostic_from_remote=reply.remote, last_attempt=time.time(),
    )



def judged_with_results(received: str, hostname: str) -> bool:
    """Whether our trace fields hold an Authentication-Results with results (ARC has
    something to vouch for), not the "none (checks did not finish)" of an unjudged message."""
    marker = f"\nAuthentication-Results: {hostname};"
    at = received.find(marker)
    return at >= 0 and not received[at + len(marker):].lstrip().startswith("none")

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
        sender_lists: Callable[[str, str], str] | None = None,
        remote: RemoteDelivery | None = None,
        dkim: DkimSigner | None = None,
        hostname: str = "localhost",
        postmaster: str = "",
        in_flight: int = IN_FLIGHT,
        stats: DeliveryStats | None = None,
        part: int = 0,
        parts: int = 1,
        on_foreign: Callable[[str], None] | None = None,
    ) -> None:
        """`on_delivered(mailbox)` runs in the event loop after each new message in a mailbox.
        Without `remote`, mail for other domains stays queued (and expires). `stats`
        counts each recipient's result and each bounce (for /metrics).
        With several delivery processes this one delivers the messages of `part`
        (queue/ids.part_of); a bounce it queues for another part goes to `on_foreign(qid)`."""
        if parts > 1 and on_foreign is None:
            raise ValueError("several delivery parts need on_foreign for the bounces of other parts")
        self.part = part
        self.parts = parts
        self.on_foreign = on_foreign
        self.stats = stats
        self.remote = remote
        self.dkim = dkim
        self.hostname = hostname
        self.postmaster = postmaster
        self._in_flight = max(in_flight, workers)
        self.on_delivered = on_delivered
        self.mailbox_full = mailbox_full
        self.sender_lists = sender_lists
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
        self._taking_none = False  # stopping with nothing to do: what comes stays on disk

    # -- life cycle --------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # The server cleaned the spool (Spool.recover) before it began to accept
        # mail; here we only list, as messages may be committed meanwhile.
        recovered, untried = await loop.run_in_executor(self._executor, self._listing)
        if recovered:
            log.info("queue: %d message(s) waiting from before the start; delivering", len(recovered))
        self._recovered = set(recovered)
        for qid in recovered:
            self._enqueue(qid)
        # Bounces another part queued and died before handing over: their owner lists
        # its part only at its own start, so it is told now (it ignores what it knows).
        for qid in untried:
            assert self.on_foreign is not None
            self.on_foreign(qid)
        if self.remote is not None:
            self.remote.start()
        self._tasks = [loop.create_task(self._worker()) for _ in range(self._in_flight)]
        self._tasks.append(loop.create_task(self._scheduler()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.remote is not None:
            await self.remote.close()
        # Deliveries already in a thread finish; each step of them is crash-safe anyway.
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)

    def _is_own(self, qid: str) -> bool:
        return part_of(qid, self.parts) == self.part

    def _listing(self) -> tuple[list[str], list[str]]:
        """(this part's queued ids, other parts' ids never tried: no state file yet)."""
        ids = self.spool.list_ids()
        own = [qid for qid in ids if self._is_own(qid)]
        if self.parts == 1:
            return own, []
        return own, self.spool.untried_ids([q for q in ids if not self._is_own(q)])

    def notify(self, qid: str) -> None:
        """A new message is ready for delivery (one already deferred keeps its schedule).
        One of another part is not ours to deliver: told twice, it would go out twice."""
        if not self._is_own(qid):
            log.error("queue: %s belongs to delivery part %d, not %d; left to it",
                      qid, part_of(qid, self.parts), self.part)
            return
        if qid in self._waiting:
            return
        self._enqueue(qid)

    def _enqueue(self, qid: str) -> None:
        if qid in self._queued or self._taking_none:
            return
        self._queued.add(qid)
        self._idle.clear()
        self._ready.put_nowait(qid)

    @property
    def alive(self) -> bool:
        """Started, and no worker has ended (for /healthz)."""
        return bool(self._tasks) and not any(task.done() for task in self._tasks)

    async def holds_nothing(self) -> bool:
        """No message of this part is waiting, deferred, being delivered or on disk (held
        ones included): its delivery process may stop until the next one arrives."""
        if self._queued or self._waiting:
            return False
        ids = await asyncio.to_thread(self.spool.list_ids)
        return not self._queued and not any(self._is_own(qid) for qid in ids)

    def take_nothing_more(self) -> None:
        """After holds_nothing() said so, with no await between: no message is started from
        now on (a flush, a late notify), so stopping cuts nothing short. What comes stays on
        disk for the next start."""
        self._taking_none = True

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
            next_try: float | None = None
            try:
                step, finished = await loop.run_in_executor(self._executor, self._local_step_finished, qid)
                if step is not None:
                    if finished is None:
                        outcomes: list[Outcome] = await self.remote.deliver(  # type: ignore[union-attr]
                            step.queued, step.remote_targets, step.data)
                        finished = await loop.run_in_executor(self._executor, self._finish, step, outcomes)
                    next_try, new_ids = finished
                    for new_qid in new_ids:
                        if self._is_own(new_qid):
                            self._enqueue(new_qid)
                        else:
                            assert self.on_foreign is not None
                            self.on_foreign(new_qid)
                    if self.on_delivered is not None:
                        for mailbox in step.attempt.delivered:
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

    def _local_step_finished(self, qid: str) -> tuple[_Step | None, tuple[float | None, list[str]] | None]:
        """_local_step(), and _finish() at once when nothing is left to send to another
        server (in one thread trip: most mail to local users needs no second one)."""
        step = self._local_step(qid)
        if step is None or (step.remote_targets and self.remote is not None):
            return step, None
        return step, self._finish(step, [])

    def _local_step(self, qid: str) -> _Step | None:
        """Local deliveries (in a thread), and the bytes for the remote ones; None when
        the message is gone, held or unreadable."""
        try:
            queued = self.spool.read(qid)
            state = self.spool.state(qid)
            if state.held:
                return None  # `hatoba queue release` brings it back
            thorough = qid in self._recovered or state.attempts > 0
            attempt = deliver_locally(
                queued, state, directory=self.directory, store=self.store, thorough=thorough,
                mailbox_full=self.mailbox_full, sender_lists=self.sender_lists,
            )
            remote_targets = [t for t in dict.fromkeys(attempt.pending_remote) if t not in state.done]
            data = self._wire_form(queued) if remote_targets and self.remote is not None else b""
        except FileNotFoundError:
            if self.spool.exists(qid):
                raise
            return None  # delivered by an earlier attempt, or `hatoba queue delete`
        except SpoolError as exc:
            log.error("%s; left in place for the operator, not delivered", exc)
            return None
        self._recovered.discard(qid)
        return _Step(queued, attempt, remote_targets, data)

    def _wire_form(self, queued: QueuedMessage) -> bytes:
        """The message as it leaves: a DKIM signature for mail of our own users, our Received, the bytes."""
        body = queued.body()
        envelope = queued.envelope
        signature = b""
        if self.dkim is not None and envelope.auth_login:
            domain = from_domain(body)
            if domain:
                try:
                    signature = self.dkim.sign(body, domain) or b""
                except Exception as exc:  # a broken key must not stop the mail
                    log.error("DKIM signing for %s failed (%s); sending %s unsigned", domain, exc, queued.qid)
        elif self.dkim is not None and judged_with_results(envelope.received, self.hostname):
            # Mail judged on arrival and now forwarded (an alias to another server): seal what we saw.
            return self._arc_sealed(queued, envelope.received.encode("utf-8") + body)
        return signature + envelope.received.encode("utf-8") + body

    def _arc_sealed(self, queued: QueuedMessage, message: bytes) -> bytes:
        assert self.dkim is not None
        for domain in dict.fromkeys(r.rpartition("@")[2].lower() for r in queued.envelope.recipients):
            try:
                seal = self.dkim.arc_seal(message, domain, self.hostname)
            except Exception as exc:  # a broken key must not stop the mail
                log.error("ARC sealing for %s failed (%s); forwarding %s unsealed", domain, exc, queued.qid)
                return message
            if seal is not None:
                return seal + message
        return message

    def _finish(self, step: _Step, outcomes: list[Outcome]) -> tuple[float | None, list[str]]:
        """Record what the attempt did (in a thread): state, bounces, delay warnings, the
        next try. Returns when to try again (None: done) and the ids of new bounces."""
        queued, attempt = step.queued, step.attempt
        state = attempt.state
        failed = [_local_report(rcpt, reason) for rcpt, reason in attempt.failed]
        waiting: list[tuple[str, str, str]] = list(attempt.deferred)  # (recipient, done-key, reason)
        # For the stats: (kind, tls, result) of each recipient, and (kind, tls) of each in `waiting`.
        results = [("local", False, "delivered")] * len(attempt.delivered)
        results += [("local", False, "bounced")] * len(attempt.failed)
        waiting_via = [("local", False)] * len(waiting)
        for outcome in outcomes:
            if outcome.delivered:
                state.done.append(outcome.recipient)
                results.append(("remote", outcome.tls, "delivered"))
            elif outcome.bounced:
                state.done.append(outcome.recipient)
                failed.append(_remote_report(outcome, "failed"))
                results.append(("remote", outcome.tls, "bounced"))
            else:
                waiting.append((outcome.recipient, outcome.recipient, str(outcome.reply)))
                waiting_via.append(("remote", outcome.tls))
        if step.remote_targets and self.remote is None:
            waiting += [(t, t, "4.4.0 remote delivery is switched off here") for t in step.remote_targets]
            waiting_via += [("remote", False)] * len(step.remote_targets)
        now = time.time()
        age = now - queued.envelope.received_at
        self._count(results, waiting_via, expired=bool(waiting) and age >= self.retry.max_queue_lifetime, age=age)
        if waiting and age >= self.retry.max_queue_lifetime:
            days = self.retry.max_queue_lifetime / 86400
            for rcpt, key, reason in waiting:
                state.done.append(key)
                failed.append(RecipientReport(
                    recipient=rcpt, action="failed", status="4.4.7",
                    diagnostic=f"gave up after {days:g} days in the queue; last error: {reason}",
                    last_attempt=now,
                ))
                mail_log("expired", qid=queued.qid, to=f"<{rcpt}>", reason=reason)
            waiting = []
        new_ids: list[str] = []
        if failed:
            new_ids += self._bounce(queued, failed, now=now)
        warn_after = self.retry.delay_warning_hours * 3600
        if waiting and warn_after and age >= warn_after and not state.warned:
            state.warned = True
            delayed = [RecipientReport(recipient=r, action="delayed", status=_status(reason, "4.0.0"),
                                       diagnostic=reason, last_attempt=now) for r, _, reason in waiting]
            new_ids += self._bounce(queued, delayed, now=now,
                                    retry_until=queued.envelope.received_at + self.retry.max_queue_lifetime)
        if not waiting:
            self.spool.remove(queued.qid, sync=False)
            mail_log("removed", qid=queued.qid)
            return None, new_ids
        state.attempts += 1
        delay = min(self.retry.retry_max, self.retry.retry_min * 2 ** (state.attempts - 1))
        state.next_try = now + delay
        state.last_error = "; ".join(dict.fromkeys(reason for _, _, reason in waiting))
        state.pending = list(dict.fromkeys(rcpt for rcpt, _, _ in waiting))
        self.spool.save_state(queued.qid, state)
        return state.next_try, new_ids

    def _count(
        self, results: list[tuple[str, bool, str]], waiting: list[tuple[str, bool]], *, expired: bool, age: float
    ) -> None:
        """Tell the stats what this attempt did: recipients still waiting are deferred,
        or bounced when the queue lifetime is over."""
        if self.stats is None:
            return
        for kind, tls, result in results:
            self.stats.delivery(kind, tls, result, age)
        for kind, tls in waiting:
            self.stats.delivery(kind, tls, "bounced" if expired else "deferred", age)

    def _bounce(
        self, queued: QueuedMessage, reports: list[RecipientReport], *, now: float, retry_until: float | None = None
    ) -> list[str]:
        """Queue a DSN about `reports` to the sender; none for the null sender, except that
        a bounce of ours that fails goes to the postmaster."""
        envelope = queued.envelope
        kind = "delay warning" if retry_until else "bounce"
        if envelope.mail_from:
            to, listener = envelope.mail_from, DSN_LISTENER
        elif envelope.listener == DSN_LISTENER and retry_until is None:
            to, listener = self._postmaster(), DOUBLE_BOUNCE_LISTENER
        else:
            mail_log("no-bounce", qid=queued.qid, reason=f"null sender; no {kind} sent")
            return []
        if not to:
            log.error("queue: no postmaster address for the undeliverable bounce %s; set delivery.postmaster", queued.qid)
            return []
        headers = header_block(queued.body())
        if listener == DSN_LISTENER and is_delivery_report(headers):
            # RFC 3464 §6.2: a delivery report is never answered with another one.
            mail_log("no-bounce", qid=queued.qid, reason=f"the message is itself a delivery report; no {kind} sent")
            return []
        try:
            message = build_dsn(
                reporting_mta=self.hostname, sender=to, original_headers=headers, reports=reports,
                arrival=envelope.received_at, queue_id=queued.qid, now=now, will_retry_until=retry_until,
            )
        except ValueError as exc:
            log.error("queue: cannot write the %s for %s (%s); logged only", kind, queued.qid, exc)
            return []
        utf8 = not to.isascii() or any(not r.recipient.isascii() or not r.original.isascii() for r in reports)
        dsn = Envelope(mail_from="", recipients=(to,), received_at=now, listener=listener,
                       smtputf8=utf8, body_8bit=not message.isascii())
        qid = self.spool.inject(dsn, message)
        event = "bounce" if retry_until is None else "delay-warning"
        mail_log(event, qid=queued.qid, notice=qid, to=f"<{to}>")
        if self.stats is not None:
            self.stats.bounce("double-bounce" if listener == DOUBLE_BOUNCE_LISTENER else event)
        return [qid]

    def _postmaster(self) -> str:
        if self.postmaster:
            return self.postmaster
        domains = self.directory.list_domains()
        return f"postmaster@{domains[0]}" if domains else ""

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
        ids = [qid for qid in await loop.run_in_executor(self._executor, self.spool.list_ids) if self._is_own(qid)]
        log.info("queue: flush requested; trying %d message(s) now", len(ids))
        self._deferred = []
        self._waiting = set()
        for qid in ids:
            self._enqueue(qid)
