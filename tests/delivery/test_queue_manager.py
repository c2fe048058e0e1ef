"""Queue manager + local delivery over the real directory, spool and Maildir."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from hatoba.config.schema import DeliveryConfig
from hatoba.delivery.local import trace_prefix
from hatoba.queue.manager import QueueManager
from hatoba.queue.spool import Envelope, Spool
from hatoba.store.directory import Directory
from hatoba.store.maildir import MaildirStore

CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class Setup:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.directory = Directory(root / "dir.sqlite3", hasher=CHEAP)
        d = self.directory
        d.add_domain("example.test")
        for user in ("alice", "bob", "carol"):
            d.add_user(f"{user}@example.test", "password-123456")
        d.add_alias("team@example.test", ["alice@example.test", "bob@example.test", "friends@example.test"])
        d.add_alias("friends@example.test", ["carol@example.test", "bob@example.test"])
        d.add_alias("forward@example.test", ["someone@elsewhere.example", "alice@example.test"])
        self.store = MaildirStore(root / "mail", hostname="mail.example.test")

    def spool(self, on_commit=None) -> Spool:
        return Spool(self.root / "queue", on_commit=on_commit)

    def manager(self, spool: Spool) -> QueueManager:
        return QueueManager(spool, self.directory, self.store, retry=self.retry, stats=self.stats)

    retry = DeliveryConfig(retry_min=0.2, retry_max=1.0, max_queue_lifetime=100 * 365 * 86400.0)
    stats = None

    def messages(self, user: str) -> list[bytes]:
        new = self.root / "mail" / "example.test" / user / "Maildir" / "new"
        return [p.read_bytes() for p in sorted(new.iterdir())] if new.is_dir() else []


@pytest.fixture
def setup(tmp_path):
    return Setup(tmp_path)


async def queue_one(
    spool: Spool, rcpts: tuple[str, ...], body: bytes = b"Subject: t\r\n\r\nhello\r\n",
    mail_from: str = "sender@example.net",
) -> str:
    msg = spool.new_message()
    await msg.write(body)
    env = Envelope(mail_from=mail_from, recipients=rcpts, received_at=1700000000.0)
    return await msg.commit(env, "Received: from x by mail.example.test; Tue, 14 Nov 2023 22:13:20 +0000\r\n")


def run_server(setup: Setup, rcpts_list: list[tuple[str, ...]], mail_from: str = "sender@example.net") -> list[str]:
    async def main() -> list[str]:
        manager: QueueManager | None = None
        spool = setup.spool(on_commit=lambda qid: manager.notify(qid))
        manager = setup.manager(spool)
        await manager.start()
        ids = [await queue_one(spool, r, mail_from=mail_from) for r in rcpts_list]
        await manager.wait_idle()
        await manager.stop()
        return ids

    return asyncio.run(main())


def test_alias_fan_out_gives_one_copy_per_mailbox(setup):
    run_server(setup, [("team@example.test", "bob@example.test")])
    assert len(setup.messages("alice")) == 1
    assert len(setup.messages("bob")) == 1  # reached three ways, delivered once
    assert len(setup.messages("carol")) == 1
    assert setup.spool().list_ids() == []


def test_trace_headers_come_first_with_lf_endings(setup):
    run_server(setup, [("bob@example.test",)])
    (msg,) = setup.messages("bob")
    lines = msg.split(b"\n")
    assert lines[0] == b"Return-Path: <sender@example.net>"
    assert lines[1] == b"Delivered-To: bob@example.test"
    assert lines[2].startswith(b"Received: from x by mail.example.test")
    assert b"\r" not in msg and msg.endswith(b"hello\n")


def test_remote_forward_stays_queued_while_local_part_is_delivered(setup):
    (qid,) = run_server(setup, [("forward@example.test",)])
    assert len(setup.messages("alice")) == 1
    spool = setup.spool()
    assert spool.list_ids() == [qid]
    state = spool.state(qid)
    assert state.attempts == 1 and "alice@example.test" in state.done
    assert "remote" in state.last_error
    # A retry does not deliver to alice again.
    run_server(setup, [])
    assert len(setup.messages("alice")) == 1


def test_restart_delivers_what_was_queued_and_nothing_twice(setup):
    async def accept_only() -> str:
        spool = setup.spool()  # no manager: the "server" dies after the 250
        return await queue_one(spool, ("alice@example.test", "bob@example.test"))

    qid = asyncio.run(accept_only())
    # Simulate a crash after alice's copy was written but before the queue entry went.
    spool = setup.spool()
    queued = spool.read(qid)
    setup.store.deliver(
        "alice@example.test", queued.path, length=queued.body_length, unique_key=qid,
        prefix=trace_prefix(queued.envelope, "alice@example.test"), timestamp=1700000000.0,
    )
    run_server(setup, [])
    assert len(setup.messages("alice")) == 1
    assert len(setup.messages("bob")) == 1
    assert spool.list_ids() == []


def test_unknown_recipient_at_delivery_time_bounces_to_the_sender(setup, caplog):
    caplog.set_level("INFO", logger="hatoba.mail")
    run_server(setup, [("ghost@example.test", "bob@example.test")], mail_from="alice@example.test")
    assert len(setup.messages("bob")) == 1
    assert any("bounced" in r.getMessage() and "ghost@example.test" in r.getMessage() for r in caplog.records)
    assert setup.spool().list_ids() == []
    (dsn,) = setup.messages("alice")
    report = email.message_from_bytes(dsn, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    assert report["To"] == "alice@example.test"
    assert b"Return-Path: <>" in dsn
    status = report.get_payload()[1].get_payload()
    (rcpt,) = status[1:]
    assert rcpt["Final-Recipient"] == "rfc822; ghost@example.test" and rcpt["Action"] == "failed"
    assert rcpt["Status"] == "5.1.1"


def test_no_bounce_for_the_null_sender(setup, caplog):
    caplog.set_level("INFO", logger="hatoba.mail")
    run_server(setup, [("ghost@example.test",)], mail_from="")
    assert setup.spool().list_ids() == []  # nothing queued in return
    assert any(r.getMessage().startswith("no-bounce") for r in caplog.records)


def test_held_message_waits_for_release(setup):
    async def main():
        manager = None
        spool = setup.spool(on_commit=lambda q: None)  # hold before the manager sees it
        qid = await queue_one(spool, ("carol@example.test",))
        spool.set_held(qid, True)
        manager = setup.manager(spool)
        await manager.start()
        await manager.wait_idle()
        assert setup.messages("carol") == []
        spool.set_held(qid, False)
        spool.request_flush()
        for _ in range(100):
            if setup.messages("carol"):
                break
            await asyncio.sleep(0.05)
        await manager.stop()

    asyncio.run(main())
    assert len(setup.messages("carol")) == 1


def test_mailbox_write_failure_is_retried(setup):
    # bob's Maildir is a file: delivery fails (as on a full or broken disk), then works once fixed.
    bob = setup.root / "mail" / "example.test" / "bob"
    bob.parent.mkdir(parents=True)
    bob.write_bytes(b"")

    async def main():
        manager = None
        spool = setup.spool(on_commit=lambda q: manager.notify(q))
        manager = setup.manager(spool)
        await manager.start()
        qid = await queue_one(spool, ("bob@example.test",))
        await manager.wait_idle()
        assert spool.state(qid).attempts >= 1
        os.unlink(bob)
        for _ in range(100):
            if not spool.list_ids():
                break
            await asyncio.sleep(0.05)
        await manager.stop()
        return spool

    spool = asyncio.run(main())
    assert spool.list_ids() == []
    assert len(setup.messages("bob")) == 1


class Tally:
    """The stats a queue manager reports (queue/reports.DeliveryStats), kept as data."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, bool, str]] = []
        self.bounces: list[str] = []

    def delivery(self, kind: str, tls: bool, result: str, seconds: float) -> None:
        assert seconds >= 0
        self.deliveries.append((kind, tls, result))

    def bounce(self, kind: str) -> None:
        self.bounces.append(kind)


def test_stats_count_each_recipient_and_each_bounce(setup):
    setup.stats = Tally()
    run_server(setup, [("ghost@example.test", "team@example.test")], mail_from="alice@example.test")
    # team@ reaches alice, bob and carol; the bounce about ghost@ goes to alice.
    assert sorted(setup.stats.deliveries) == sorted(
        [("local", False, "delivered")] * 4 + [("local", False, "bounced")]
    )
    assert setup.stats.bounces == ["bounce"]


def test_stats_count_recipients_past_the_queue_lifetime_as_bounced(setup):
    setup.stats = Tally()
    setup.retry = DeliveryConfig(retry_min=0.2, retry_max=1.0, max_queue_lifetime=86400.0)  # the message is older
    run_server(setup, [("forward@example.test",)], mail_from="alice@example.test")
    # Without remote delivery the outside recipient waits, and it has waited too long.
    assert sorted(setup.stats.deliveries) == sorted(
        [("local", False, "delivered"), ("remote", False, "bounced"), ("local", False, "delivered")]
    )
    assert setup.stats.bounces == ["bounce"]


def test_two_delivery_processes_share_the_queue_each_message_going_to_exactly_one(setup):
    """queue/ids.part_of splits the queue; a restarted part recovers its own messages only,
    and a flush request reaches every part."""
    from hatoba.queue.ids import part_of

    async def main() -> tuple[list[str], list[str], list[str]]:
        spool = setup.spool()
        ids = [await queue_one(spool, ("alice@example.test",)) for _ in range(12)]
        while len({part_of(q, 2) for q in ids}) < 2 and len(ids) < 64:  # random ids: both parts, surely
            ids.append(await queue_one(spool, ("alice@example.test",)))
        handed: list[str] = []
        first = QueueManager(spool, setup.directory, setup.store, retry=setup.retry, part=0, parts=2,
                             on_foreign=handed.append)
        await first.start()  # only the first part runs: it recovers and delivers its own
        await first.wait_idle()
        left = spool.list_ids()
        first.notify(left[0])  # another part's message, told by mistake: not delivered here
        await first.wait_idle()
        await first.stop()
        return ids, handed, left

    ids, handed, left = asyncio.run(main())
    theirs = sorted(q for q in ids if part_of(q, 2) == 1)
    assert 0 < len(theirs) < len(ids)
    assert sorted(left) == theirs  # all of its own delivered, none of the other part's
    assert setup.spool().list_ids() == theirs
    assert len(setup.messages("alice")) == len(ids) - len(theirs)
    # never tried by their owner (no state file): handed to it at this start, in case a
    # part that queued them as bounces died before it could
    assert sorted(handed) == theirs


def test_a_flush_request_reaches_every_delivery_process_once(setup):
    spools = [setup.spool(), setup.spool()]  # one per process
    assert not any(s.take_flush_request() for s in spools)
    spools[0].request_flush()
    assert all(s.take_flush_request() for s in spools)
    assert not any(s.take_flush_request() for s in spools)  # once each
    spools[1].request_flush()  # again at once, in the same clock tick
    assert all(s.take_flush_request() for s in spools)
    late = setup.spool()  # a process started after the request: its start looks at everything
    assert not late.take_flush_request()


def test_a_bounce_for_another_part_goes_to_its_owner_and_one_of_ours_is_delivered_here(setup):
    from hatoba.queue.ids import part_of

    async def main() -> tuple[list[str], int]:
        foreign: list[str] = []
        spool = setup.spool()
        manager: QueueManager | None = None
        # Every part-0 message to a ghost queues a bounce; its id falls into either part.
        manager = QueueManager(spool, setup.directory, setup.store, retry=setup.retry, part=0, parts=2,
                               on_foreign=foreign.append)
        # As the first worker routes them: each part is told of its own messages only.
        spool.on_commit = lambda qid: manager.notify(qid) if part_of(qid, 2) == 0 else None
        await manager.start()
        ours = 0
        while ours < 16:  # 16 bounces: all in one part once in 65,536 runs
            qid = await queue_one(spool, ("ghost@example.test",), mail_from="alice@example.test")
            ours += part_of(qid, 2) == 0
        await manager.wait_idle()
        await manager.stop()
        return foreign, ours

    foreign, ours = asyncio.run(main())
    left = setup.spool().list_ids()
    assert foreign and all(part_of(q, 2) == 1 for q in foreign)  # handed over, not delivered here
    assert all(q in left for q in foreign)  # still queued for their owner
    delivered_here = len(setup.messages("alice"))
    assert delivered_here + len(foreign) == ours  # one bounce per message of ours, each in one place
