"""Runs the judgement of incoming mail off the event loop, bounded in time and memory.

- Its own thread pool: a DNS outage that makes every lookup wait for its
  timeout must not take the threads logins and the spool need.
- Bounded memory: a message is read into memory only to be judged, at most
  SMALL_AT_ONCE small ones and one large one at a time per worker.
- Bounded time: past `[checks] timeout` (and a little for the work itself)
  the message is delivered to Junk with "none (checks did not finish)": a
  filter that fails never loses or refuses mail, and never lets unjudged mail
  into an inbox either. Any exception is logged once and treated the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from hatoba.checks.dnsbl import DnsblScore
from hatoba.checks.headers import parse_header
from hatoba.checks.judge import DEFER, JUNK, Judge, MessageFacts, Verdict
from hatoba.checks.lookup import NeedsNetwork

log = logging.getLogger(__name__)

THREADS = 16
LARGE = 1024 * 1024  # bytes: from here a message is judged alone
SMALL_AT_ONCE = 16
GRACE = 5.0  # seconds beyond the lookup budget for the parsing and the crypto
DNSBL_THREADS = 8
DNSBL_MAX_WAITING = 400  # blocklist questions queued or running at most, per worker
FROM_CACHE_MAX = 64 * 1024  # bytes: smaller messages are first judged on the loop from the cache


class CheckRunner:
    def __init__(self, judge: Judge) -> None:
        self.judge = judge
        self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="hatoba-checks")
        self._strip_pool = ThreadPoolExecutor(2, thread_name_prefix="hatoba-checks-strip")
        # Blocklists have their own threads and a bound on what waits for them: a list that
        # stops answering must not hold up the judging, nor pile up work from a flood.
        self._dnsbl_pool = ThreadPoolExecutor(DNSBL_THREADS, thread_name_prefix="hatoba-dnsbl")
        self._dnsbl_waiting = 0
        self._small = asyncio.Semaphore(SMALL_AT_ONCE)
        self._large = asyncio.Semaphore(1)

    async def assess(self, facts: MessageFacts, size: int, read: Callable[[], Awaitable[bytes]]) -> tuple[Verdict, bytes]:
        """The verdict on the message `read()` returns (`size` bytes), and those bytes.

        Waiting for a turn counts against the same time limit as the checks; a message
        whose checks do not finish goes to Junk, unjudged, and the turn it held is
        given back only when its thread is done, so memory stays bounded."""
        if size <= FROM_CACHE_MAX and self.judge.judges_from_cache:
            # A sender seen a moment ago: every answer is cached, and judging here costs less
            # than handing the message to a thread and back.
            message = await read()
            try:
                return self.judge.assess_from_cache(facts, message), message
            except NeedsNetwork:
                pass
            except Exception:
                pass  # judged again in a thread, where a failure is logged and handled
        gate = self._large if size >= LARGE else self._small
        loop = asyncio.get_running_loop()
        limit = self.judge.config.timeout + GRACE
        started = loop.time()
        message = b""
        try:
            async with asyncio.timeout(limit):
                await gate.acquire()
        except TimeoutError:  # overloaded: the sender keeps it and tries again (nothing read, nothing lost)
            log.warning("no turn for the checks of a message from %s within %gs; deferred", facts.client_ip, limit)
            busy = "the server is busy checking other mail"
            return Verdict(DEFER, busy, "", summary="checks-busy", log_reason="checks-busy"), b""
        try:
            message = await read()  # the message cannot be read (disk): the caller answers for it
        except BaseException:
            gate.release()
            raise
        handed_over = False
        try:
            job = loop.run_in_executor(self._pool, self.judge.assess, facts, message)
            job.add_done_callback(lambda _f: gate.release())
            handed_over = True
            async with asyncio.timeout(max(0.1, limit - (loop.time() - started))):
                return await asyncio.shield(job), message
        except TimeoutError:
            log.warning("the checks of a message from %s took more than %gs; delivered to Junk unjudged",
                        facts.client_ip, limit)
            note = "checks did not finish in time"
        except Exception:
            log.exception("the checks of a message from %s failed; delivered to Junk unjudged", facts.client_ip)
            note = "checks failed"
        finally:
            if not handed_over:
                gate.release()
        return await self._unjudged(note, message), message

    async def _unjudged(self, note: str, message: bytes) -> Verdict:
        """Junk with the forged fields cut out (found in a pool of its own: the checks' may be
        full), or the refusal of a header no reader could be shown safely."""
        loop = asyncio.get_running_loop()
        header = await loop.run_in_executor(self._strip_pool, parse_header, message)
        refusal = self.judge.refusal_for(header)
        if refusal is not None:
            return refusal
        fields = (f"Authentication-Results: {self.judge.hostname}; none ({note})\r\n"
                  f"X-Spam: Yes\r\nX-Spam-Score: unjudged ({note})\r\n")
        return Verdict(JUNK, note, fields, self.judge.strip_spans(header.fields), summary=note.replace(" ", "-"),
                       log_reason="unjudged")

    @property
    def asks_blocklists(self) -> bool:
        return bool(self.judge.sites)

    async def dnsbl(self, ip: str) -> DnsblScore:
        """The client's blocklist score: every site asked at once, within `[checks] timeout`.
        With too many questions already waiting, none is asked (the score is 0, and said so)."""
        sites = self.judge.sites
        if self._dnsbl_waiting + len(sites) > DNSBL_MAX_WAITING:
            return DnsblScore(0.0, (), ("blocklists not asked: too many questions waiting",))
        loop = asyncio.get_running_loop()
        self._dnsbl_waiting += len(sites)
        jobs = [loop.run_in_executor(self._dnsbl_pool, self.judge.dnsbl_site, ip, site) for site in sites]
        for job in jobs:
            job.add_done_callback(self._dnsbl_done)
        try:
            done, pending = await asyncio.wait(jobs, timeout=self.judge.config.timeout)
        finally:  # answered, timed out, or the client left: what has not started never will
            for job in jobs:
                job.cancel()
        results = [job.result() for job in done if job.exception() is None]
        listed = [r.site for r in results if r.listed]
        errors = [r.error for r in results if r.error]
        errors += [f"{len(pending)} blocklist(s) did not answer in time"] if pending else []
        return DnsblScore(sum(site.weight for site in listed), tuple(site.zone for site in listed), tuple(errors))

    def _dnsbl_done(self, _job: object) -> None:
        self._dnsbl_waiting -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._strip_pool.shutdown(wait=False, cancel_futures=True)
        self._dnsbl_pool.shutdown(wait=False, cancel_futures=True)
