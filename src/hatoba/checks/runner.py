"""Runs the judgement of incoming mail off the event loop, bounded in time and memory.

- Its own thread pool: a DNS outage that makes every lookup wait for its
  timeout must not take the threads logins and the spool need.
- Bounded memory: a message is read into memory only to be judged, at most
  SMALL_AT_ONCE small ones and one large one at a time per worker.
- Bounded time: past `[checks] timeout` (and a little for the work itself)
  the message is accepted with "none (checks did not finish)"; a filter that
  fails never loses or refuses mail. Any exception is logged once and treated
  the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from hatoba.checks.authresults import forged_spans
from hatoba.checks.dnsbl import DnsblScore
from hatoba.checks.headers import header_fields
from hatoba.checks.judge import ACCEPT, OUR_FIELDS, Judge, MessageFacts, Verdict

log = logging.getLogger(__name__)

THREADS = 16
LARGE = 1024 * 1024  # bytes: from here a message is judged alone
SMALL_AT_ONCE = 16
GRACE = 5.0  # seconds beyond the lookup budget for the parsing and the crypto


class CheckRunner:
    def __init__(self, judge: Judge) -> None:
        self.judge = judge
        self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="hatoba-checks")
        self._small = asyncio.Semaphore(SMALL_AT_ONCE)
        self._large = asyncio.Semaphore(1)

    async def assess(self, facts: MessageFacts, size: int, read: Callable[[], Awaitable[bytes]]) -> tuple[Verdict, bytes]:
        """The verdict on the message `read()` returns (`size` bytes), and those bytes."""
        gate = self._large if size >= LARGE else self._small
        async with gate:
            message = await read()
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self.judge.config.timeout + GRACE):
                    return await loop.run_in_executor(self._pool, self.judge.assess, facts, message), message
            except TimeoutError:
                log.warning("the checks of a message from %s took more than %gs; accepted unjudged",
                            facts.client_ip, self.judge.config.timeout + GRACE)
                note = "checks did not finish in time"
            except Exception:
                log.exception("the checks of a message from %s failed; accepted unjudged", facts.client_ip)
                note = "checks failed"
            strip = await loop.run_in_executor(self._pool, self._strip_spans, message)
            return self._unjudged(note, strip), message

    @property
    def asks_blocklists(self) -> bool:
        return bool(self.judge.sites)

    async def dnsbl(self, ip: str) -> DnsblScore:
        """The client's blocklist score: every site asked at once, within `[checks] timeout`."""
        loop = asyncio.get_running_loop()
        jobs = [loop.run_in_executor(self._pool, self.judge.dnsbl_site, ip, site) for site in self.judge.sites]
        done, pending = await asyncio.wait(jobs, timeout=self.judge.config.timeout)
        for job in pending:
            job.cancel()
        results = [job.result() for job in done if job.exception() is None]
        listed = [r.site for r in results if r.listed]
        errors = [r.error for r in results if r.error]
        errors += [f"{len(pending)} blocklist(s) did not answer in time"] if pending else []
        return DnsblScore(sum(site.weight for site in listed), tuple(site.zone for site in listed), tuple(errors))

    def _strip_spans(self, message: bytes) -> tuple[tuple[int, int], ...]:
        fields = header_fields(message)
        spans = forged_spans(fields, self.judge.hostname) + [(f.start, f.end) for f in fields if f.name in OUR_FIELDS]
        return tuple(sorted(spans))

    def _unjudged(self, note: str, strip: tuple[tuple[int, int], ...]) -> Verdict:
        field = f"Authentication-Results: {self.judge.hostname}; none ({note})\r\n"
        return Verdict(ACCEPT, note, field, strip, summary=note.replace(" ", "-"))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
