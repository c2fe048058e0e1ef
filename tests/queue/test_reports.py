"""The delivery process's report lines: what goes out comes back, and junk is ignored."""

from __future__ import annotations

import io
import threading

import pytest

from hatoba.queue.reports import (
    BounceQueued, Delivered, DeliveryDone, Queued, Ready, ReportWriter, format_report, parse_report,
)
from hatoba.queue.ids import new_queue_id


@pytest.mark.parametrize("report", [
    Ready(),
    Delivered("alice@example.test"),
    Delivered("odd name@example.test"),
    DeliveryDone("local", False, "delivered", 0.125),
    DeliveryDone("remote", True, "deferred", 3600.0),
    DeliveryDone("remote", False, "bounced", 0.0),
    BounceQueued("bounce"),
    BounceQueued("delay-warning"),
    BounceQueued("double-bounce"),
    Queued(new_queue_id()),
])
def test_round_trip(report):
    line = format_report(report)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert parse_report(line) == report


@pytest.mark.parametrize("line", [
    b"", b"\n", b"ready now\n", b"delivered\n", b"delivered \n", b"bounce\n", b"bounce spam\n",
    b"delivery local no delivered\n", b"delivery local no delivered 1 2\n",
    b"delivery lmtp no delivered 1\n", b"delivery local maybe delivered 1\n",
    b"delivery local no lost 1\n", b"delivery local no delivered soon\n",
    b"delivery local no delivered nan\n", b"delivery local no delivered inf\n",
    b"\xff\xfe garbage\n", b"DELIVERED alice@example.test\n",
    b"queued\n", b"queued ../../etc/passwd\n", b"queued 18b4c2e9a1f03a9c41\n", b"queued 18B4C2E9A1F03A9C41E\n",
])
def test_anything_else_is_ignored(line):
    assert parse_report(line) is None


def test_negative_seconds_become_zero():  # a clock set back must not give a negative latency
    assert parse_report(b"delivery local no delivered -2.5\n") == DeliveryDone("local", False, "delivered", 0.0)


def test_lines_from_many_threads_stay_whole():
    out = io.BytesIO()
    writer = ReportWriter(out)

    def work() -> None:
        for _ in range(500):
            writer.delivery("remote", True, "delivered", 1.5)
            writer.bounce("bounce")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = out.getvalue().splitlines(keepends=True)
    assert len(lines) == 4000
    assert all(parse_report(line) is not None for line in lines)
