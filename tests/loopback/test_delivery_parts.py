"""Delivery processes other than the first stop while their part of the queue is empty.

With one delivery process per core (queue/process.py), an idle server would
keep an interpreter per core for nothing. All but the first offer to stop
("idle") once their part has held nothing for RETIRE_AFTER seconds; the
server asks them to ("retire", after the ids it sent before) and keeps the
ids that come meanwhile. A process whose part holds nothing exits RETIRED
at once; one that holds mail again answers "busy", runs on and is sent the
ids kept. The server starts a stopped one again for the next message of
its part.

Real delivery processes, a real server on loopback, real SMTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import logging
import os
import resource
import smtplib
import subprocess
import sys
import time

import pytest

from hatoba.queue import process
from hatoba.queue.ids import part_of
from hatoba.queue.spool import Envelope, Spool
from support.harness import ServerThread, make_home, wait_for

ALICE = "alice@example.test"
RETIRE_AFTER = 0.4  # seconds: the tests' stand-in for a minute


def send(port: int, subject: str) -> str:
    """One message to alice over SMTP; its queue id, from the 250 reply."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.example.net")
        client.mail("someone@elsewhere.example")
        client.rcpt(ALICE)
        code, text = client.data(f"Subject: {subject}\r\n\r\nbody\r\n".encode())
    assert code == 250, text
    return text.decode().rsplit(" ", 1)[-1]


def test_the_second_delivery_process_stops_when_idle_and_starts_for_a_message_of_its_part(
        tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(process, "RETIRE_AFTER", RETIRE_AFTER)
    caplog.set_level(logging.INFO, logger="hatoba.queue.process")
    home = make_home(tmp_path / "h")
    with ServerThread(home, delivery_parts=2) as srv:
        first, second = srv.server.manager.parts
        first_pid = first.pid
        wait_for(lambda: second.dormant, 20)
        assert second.pid is None
        assert first.pid == first_pid and not first.dormant  # the first always runs
        assert srv.server.health() is None, "a resting delivery process is not a fault"

        # Messages until one belongs to the resting part: it starts and delivers it.
        qids = []
        while not any(part_of(qid, 2) == 1 for qid in qids):
            qids.append(send(srv.port("smtp"), f"message {len(qids)}"))
            assert len(qids) < 40, "no queue id fell in part 1"
        wait_for(lambda: len(home.messages(ALICE)) == len(qids), 20)
        subjects = sorted(email.message_from_bytes(m)["Subject"] for m in home.messages(ALICE))
        assert subjects == sorted(f"message {i}" for i in range(len(qids)))
        assert not any(srv.server.spool.list_ids()), "nothing may stay queued"

        # ...and rests again once its part is empty; the first never stopped meanwhile.
        wait_for(lambda: second.dormant, 20)
        assert first.pid == first_pid
    stops = [r.getMessage() for r in caplog.records if "its part of the queue is empty" in r.getMessage()]
    assert stops and all(text.startswith("delivery process 2 of 2 stopped") for text in stops), stops
    assert "exited with status" not in caplog.text  # resting is no crash


def child(home, *more: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hatoba.queue.process", str(home.config_path), "--log-level", "WARNING",
         "--part", "1", "--parts", "2", *more],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def read_until(proc: subprocess.Popen, word: bytes, timeout: float = 20.0) -> list[bytes]:
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.strip() == word:
            return lines
    proc.kill()
    raise AssertionError(f"no {word!r}: {lines} {proc.stderr.read()[-2000:]!r}")


@pytest.mark.parametrize("message_meanwhile", [False, True])
def test_a_delivery_process_asked_to_retire_stops_only_when_its_part_is_empty(tmp_path, message_meanwhile):
    home = make_home(tmp_path / "h")
    proc = child(home, "--retire-after", str(RETIRE_AFTER))
    try:
        lines = read_until(proc, b"idle")
        assert lines[0] == b"ready"
        if message_meanwhile:  # queued after "idle", never told to it: found on disk at "retire"
            spool = Spool(home.config().paths.queue_dir)
            envelope = Envelope(mail_from="", recipients=(ALICE,), received_at=time.time())
            queue_in_part(spool, envelope, b"Subject: late\r\n\r\nbody\r\n", 1)
        proc.stdin.write(b"retire\n")
        proc.stdin.flush()
        if message_meanwhile:
            assert read_until(proc, b"busy")[-1] == b"busy"
            assert proc.poll() is None, "it holds mail: it must run on"
            proc.stdin.close()  # the end of stdin still stops it, as a server's stop does
            assert proc.wait(20) == 0
        else:
            assert proc.wait(20) == process.RETIRED
    finally:
        if proc.poll() is None:
            proc.kill()


@contextlib.contextmanager
def resting_parts(tmp_path, monkeypatch):
    """A server with two delivery parts, the second resting after RETIRE_AFTER: (home, server, second part)."""
    monkeypatch.setattr(process, "RETIRE_AFTER", RETIRE_AFTER)
    home = make_home(tmp_path / "h")
    with ServerThread(home, delivery_parts=2) as srv:
        yield home, srv, srv.server.manager.parts[1]


def queue_in_part(spool: Spool, envelope: Envelope, message: bytes, part: int) -> str:
    """A message queued (never told to anyone) whose queue id falls in `part` of 2."""
    while True:
        qid = spool.inject(envelope, message)
        if part_of(qid, 2) == part:
            return qid
        spool.remove(qid)


def test_a_message_told_as_the_part_goes_idle_is_finished_and_reported(tmp_path, monkeypatch):
    """Told in the very turn its "idle" is handled: the part delivers it before it stops, the
    mailbox it reached is reported (IMAP IDLE hears of it), and the bounce it queued for
    another part is handed over, not left untried. The bounce's part is chance: rounds
    go on until one bounce has gone to the first part."""
    monkeypatch.setattr(process, "RETIRE_AFTER", RETIRE_AFTER)
    home = make_home(tmp_path / "h")
    rounds, heard_first, heard_second = [], [], []
    with ServerThread(home, delivery_parts=2) as srv:
        spool = srv.server.spool
        first, second = srv.server.manager.parts
        first.on_delivered, second.on_delivered = heard_first.append, heard_second.append
        retire = process.DeliveryProcess._retire

        def told_at_retire(self, proc):
            if self is second and "bob@example.test" not in heard_first and len(rounds) < 12:
                to_alice = Envelope(mail_from="x@elsewhere.example", recipients=(ALICE,), received_at=time.time())
                to_nobody = Envelope(mail_from="bob@example.test", recipients=("nosuchuser@example.test",),
                                     received_at=time.time())
                told = [queue_in_part(spool, to_alice, b"Subject: hi\r\n\r\nbody\r\n", 1),
                        queue_in_part(spool, to_nobody, b"Subject: lost\r\n\r\nbody\r\n", 1)]
                rounds.append(told)
                for qid in told:
                    self.notify(qid)
            retire(self, proc)

        monkeypatch.setattr(process.DeliveryProcess, "_retire", told_at_retire)
        wait_for(lambda: "bob@example.test" in heard_first or len(rounds) >= 12, 60)
        wait_for(lambda: not spool.list_ids() and second.dormant, 20)
        assert spool.list_ids() == [], "a message left in the queue with nobody to try it"
        assert "bob@example.test" in heard_first, f"no bounce went to the first part in {len(rounds)} rounds"
        n = len(rounds)
        assert len(home.messages(ALICE)) == n and len(home.messages("bob@example.test")) == n
        assert heard_second.count(ALICE) == n, "a delivery made while stopping was not reported"


def test_a_message_told_after_retire_was_asked_is_delivered_either_way(tmp_path, monkeypatch):
    """Told while the server waits for the answer to "retire": kept, then sent to a part that
    answers "busy", or found on disk by the part started again after it stopped."""
    told = []
    with resting_parts(tmp_path, monkeypatch) as (home, srv, second):
        spool = srv.server.spool
        retire = process.DeliveryProcess._retire

        def told_after_retire(self, proc):
            retire(self, proc)
            if self is second and len(told) < 4:
                envelope = Envelope(mail_from="x@elsewhere.example", recipients=(ALICE,), received_at=time.time())
                qid = queue_in_part(spool, envelope, f"Subject: late {len(told)}\r\n\r\nbody\r\n".encode(), 1)
                told.append(qid)
                self.notify(qid)

        monkeypatch.setattr(process.DeliveryProcess, "_retire", told_after_retire)
        wait_for(lambda: len(told) == 4 and len(home.messages(ALICE)) == 4 and second.dormant, 60)
        assert len(home.messages(ALICE)) == 4
        assert spool.list_ids() == []


def test_a_part_that_is_woken_counts_as_healthy_all_along(tmp_path, monkeypatch):
    with resting_parts(tmp_path, monkeypatch) as (home, srv, second):
        wait_for(lambda: second.dormant, 20)
        envelope = Envelope(mail_from="", recipients=(ALICE,), received_at=time.time())
        qid = queue_in_part(srv.server.spool, envelope, b"Subject: wake\r\n\r\nbody\r\n", 1)

        async def wake_and_watch() -> list[str | None]:
            srv.server.manager.notify(qid)
            seen = []
            while not home.messages(ALICE):  # until the new child has started and delivered it
                seen.append(srv.server.health())
                await asyncio.sleep(0.002)
                assert len(seen) < 10_000, "the part did not start"
            return seen

        seen = srv.call(wake_and_watch())
        assert len(seen) > 10 and [h for h in seen if h] == [], f"unhealthy while waking: {set(seen)}"


def test_a_part_that_answered_busy_is_not_killed_after_the_server_stalled(tmp_path, monkeypatch, caplog):
    """The server's loop stalls past the answer's deadline just after "retire" (a paused
    process, swapping): on resuming, the timer must not kill a part whose "busy" is
    already in the pipe, in the middle of a delivery."""
    monkeypatch.setattr(process, "STOP_TIMEOUT", 1.0)
    caplog.set_level(logging.INFO, logger="hatoba.queue.process")
    told = []
    with resting_parts(tmp_path, monkeypatch) as (home, srv, second):
        spool = srv.server.spool
        retire = process.DeliveryProcess._retire

        def busy_then_stall(self, proc):
            if self is second and not told:
                envelope = Envelope(mail_from="x@elsewhere.example", recipients=(ALICE,), received_at=time.time())
                told.append(queue_in_part(spool, envelope, b"Subject: busy\r\n\r\nbody\r\n", 1))
                told.append(proc.pid)
                self.notify(told[0])  # before "retire" in the pipe: the part answers "busy"
                retire(self, proc)
                asyncio.get_running_loop().call_soon(time.sleep, 2.5)  # the stall
                return
            retire(self, proc)

        monkeypatch.setattr(process.DeliveryProcess, "_retire", busy_then_stall)
        wait_for(lambda: told, 20)
        wait_for(lambda: home.messages(ALICE) and second.dormant, 30)
        assert len(home.messages(ALICE)) == 1
    assert "did not answer" not in caplog.text and "exited with status" not in caplog.text, caplog.text


def test_a_part_that_cannot_be_started_is_unhealthy_and_started_once_it_can(tmp_path, monkeypatch, caplog):
    """The server is out of descriptors when a resting part is needed: /healthz says so, and
    the start is tried again until it works; the message is then delivered."""
    caplog.set_level(logging.INFO, logger="hatoba.queue.process")
    with resting_parts(tmp_path, monkeypatch) as (home, srv, second):
        wait_for(lambda: second.dormant, 20)
        envelope = Envelope(mail_from="", recipients=(ALICE,), received_at=time.time())
        qid = queue_in_part(srv.server.spool, envelope, b"Subject: later\r\n\r\nbody\r\n", 1)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        spent = []
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 4096), hard))
            with contextlib.suppress(OSError):
                while True:
                    spent.append(os.open("/dev/null", os.O_RDONLY))

            async def wake() -> None:
                srv.server.manager.notify(qid)

            srv.call(wake())
            wait_for(lambda: "cannot start delivery process 2 of 2" in caplog.text, 10)
            health = srv.server.health()
        finally:
            for fd in spent:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert "cannot start delivery process 2 of 2" in caplog.text
        assert health == "the delivery process is not running"
        wait_for(lambda: home.messages(ALICE), 20)
        assert len(home.messages(ALICE)) == 1 and srv.server.health() is None
