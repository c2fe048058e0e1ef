"""Delivery processes other than the first stop while their part of the queue is empty.

With one delivery process per core (queue/process.py), an idle server would
keep an interpreter per core for nothing. All but the first offer to stop
("idle") once their part has held nothing for RETIRE_AFTER seconds; the
server lets them go by closing their stdin, and starts one again for the
next message of its part. A message that reaches a stopping process makes
it exit STILL_HOLDS, and the server starts it again at once.

Real delivery processes, a real server on loopback, real SMTP.
"""

from __future__ import annotations

import email
import logging
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
        wait_for(lambda: second.dormant, 20)
        assert second.pid is None
        assert first.pid is not None and not first.dormant  # the first always runs
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

        # ...and rests again once its part is empty.
        wait_for(lambda: second.dormant, 20)
        assert first.pid is not None
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
def test_a_stopping_delivery_process_says_whether_its_part_holds_mail_again(tmp_path, message_meanwhile):
    home = make_home(tmp_path / "h")
    proc = child(home, "--retire-after", str(RETIRE_AFTER))
    try:
        lines = read_until(proc, b"idle")
        assert lines[0] == b"ready"
        if message_meanwhile:  # queued after "idle", never told to it: found on disk at the end
            spool = Spool(home.config().paths.queue_dir)
            envelope = Envelope(mail_from="", recipients=(ALICE,), received_at=time.time())
            while part_of(spool.inject(envelope, b"Subject: late\r\n\r\nbody\r\n"), 2) != 1:
                pass
        proc.stdin.close()
        status = proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert status == (process.STILL_HOLDS if message_meanwhile else 0)


def test_the_first_delivery_process_never_offers_to_stop(tmp_path):
    home = make_home(tmp_path / "h")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hatoba.queue.process", str(home.config_path), "--log-level", "WARNING"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert read_until(proc, b"ready")[-1] == b"ready"
        time.sleep(1.0)
        proc.stdin.close()
        rest = proc.stdout.read()
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert b"idle" not in rest
