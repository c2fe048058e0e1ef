"""The checks' runner: a message whose checks do not finish goes to Junk, unjudged but with
forged fields removed; when every turn is taken the message is deferred, never read into
memory; a turn is given back only when its thread is done."""

from __future__ import annotations

import asyncio
import threading

import pytest

from hatoba.checks import runner as R
from hatoba.checks.judge import ACCEPT, DEFER, JUNK, Judge, MessageFacts, Verdict
from hatoba.checks.lookup import Lookup
from hatoba.config.schema import ChecksConfig

FACTS = MessageFacts(client_ip="192.0.2.1", helo="mx.x.test", mail_from="a@x.test")
MESSAGE = b"Authentication-Results: mx.hatoba.test; dmarc=pass\r\nFrom: a@x.test\r\n\r\nHi\r\n"


class SlowJudge(Judge):
    def __init__(self, release: threading.Event) -> None:
        super().__init__(ChecksConfig(timeout=0.3), hostname="mx.hatoba.test", is_local_domain=lambda d: False,
                         lookup=Lookup("127.0.0.1:9"))
        self.release = release

    judges_from_cache = False  # always in a thread, where its slowness shows

    def assess(self, facts: MessageFacts, message: bytes) -> Verdict:
        self.release.wait(10)
        return Verdict(ACCEPT, "", "")


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setattr(R, "GRACE", 0.0)
    monkeypatch.setattr(R, "SMALL_AT_ONCE", 1)


def test_checks_that_do_not_finish_send_the_message_to_junk_with_forgeries_removed(quick):
    release = threading.Event()
    runner = R.CheckRunner(SlowJudge(release))

    async def main() -> None:
        async def read() -> bytes:
            return MESSAGE

        verdict, data = await runner.assess(FACTS, len(MESSAGE), read)
        assert verdict.action == JUNK and verdict.log_reason == "unjudged"
        assert "none (checks did not finish in time)" in verdict.fields and "X-Spam: Yes" in verdict.fields
        assert data == MESSAGE and verdict.strip == ((0, MESSAGE.index(b"From:")),)
        # Its thread still runs: the only turn is still taken, so the next message is deferred
        # without being read.
        reads = []

        async def second_read() -> bytes:
            reads.append(1)
            return MESSAGE

        verdict, data = await runner.assess(FACTS, len(MESSAGE), second_read)
        assert verdict.action == DEFER and data == b"" and reads == []
        release.set()
        await asyncio.sleep(0.2)  # the first thread ends and gives its turn back
        verdict, _ = await runner.assess(FACTS, len(MESSAGE), read)
        assert verdict.action == ACCEPT

    try:
        asyncio.run(main())
    finally:
        release.set()
        runner.close()


def test_a_sender_seen_a_moment_ago_is_judged_from_the_cache_with_the_same_verdict():
    import time

    from support.dnsserver import DnsServer

    with DnsServer({"x.test": [("TXT", "v=spf1 ip4:192.0.2.1 -all")],
                    "_dmarc.x.test": [("TXT", "v=DMARC1; p=reject")]}) as dns:
        judge = Judge(ChecksConfig(), hostname="mx.hatoba.test", is_local_domain=lambda d: False,
                      lookup=Lookup(dns.address))
        from hatoba.checks.lookup import NeedsNetwork

        with pytest.raises(NeedsNetwork):  # nothing cached yet
            judge.assess_from_cache(FACTS, MESSAGE)
        first = judge.assess(FACTS, MESSAGE)
        asked = len(dns.queries)
        started = time.monotonic()
        again = judge.assess_from_cache(FACTS, MESSAGE)
        assert time.monotonic() - started < 0.05 and len(dns.queries) == asked
        assert (again.action, again.fields, again.strip) == (first.action, first.fields, first.strip)
        spoof = MESSAGE.replace(b"From: a@x.test", b"From: boss@y.test")
        with pytest.raises(NeedsNetwork):  # a new From domain: its policy is not cached
            judge.assess_from_cache(FACTS, spoof)
