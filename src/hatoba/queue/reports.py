"""What the delivery process tells the server: one line each on its stdout.

    ready                               the queue manager runs (/healthz waits for it)
    delivered MAILBOX                   a new message in MAILBOX (IMAP IDLE wakes on it)
    delivery KIND TLS RESULT SECONDS    one recipient's attempt ended (for /metrics)
    bounce KIND                         a delivery status notification was queued (for /metrics)
    queued QID                          a message this process queued for another delivery process

Rules:
- parse_report reads one line and format_report makes one; ReportWriter
  alone writes, so the rest of this module does no I/O.
- A line that does not parse is ignored: a bad line must not stop the
  server's reader, and both ends are the same hatoba version anyway.
- Label values come from the fixed sets below, so no line can make a new
  metric series (Prometheus keeps every series it ever saw).
- The counters live in the server: a delivery process that crashes and is
  started again does not take them back to zero.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from hatoba.queue.ids import is_queue_id

KINDS = ("local", "remote")
RESULTS = ("delivered", "deferred", "bounced")
# The mail log's words: a failure report, a delay warning, and a failed
# bounce of ours sent on to the postmaster.
BOUNCE_KINDS = ("bounce", "delay-warning", "double-bounce")


class DeliveryStats(Protocol):
    """Where the queue manager counts what its attempts did."""

    def delivery(self, kind: str, tls: bool, result: str, seconds: float) -> None:
        """One recipient (local: one mailbox) of one attempt: KINDS, RESULTS, seconds since arrival."""

    def bounce(self, kind: str) -> None:
        """A delivery status notification of BOUNCE_KINDS was queued."""


@dataclass(frozen=True, slots=True)
class Ready:
    pass


@dataclass(frozen=True, slots=True)
class Idle:
    """Its part of the queue has been empty a while: the server may ask it to stop."""


@dataclass(frozen=True, slots=True)
class Busy:
    """Asked to stop, it holds mail again: it runs on, and wants the ids kept meanwhile."""


@dataclass(frozen=True, slots=True)
class Delivered:
    mailbox: str


@dataclass(frozen=True, slots=True)
class DeliveryDone:
    kind: str
    tls: bool
    result: str
    seconds: float


@dataclass(frozen=True, slots=True)
class BounceQueued:
    kind: str


@dataclass(frozen=True, slots=True)
class Queued:
    qid: str


Report = Ready | Idle | Busy | Delivered | DeliveryDone | BounceQueued | Queued


def format_report(report: Report) -> bytes:
    match report:
        case Ready():
            text = "ready"
        case Idle():
            text = "idle"
        case Busy():
            text = "busy"
        case Delivered(mailbox=mailbox):
            text = f"delivered {mailbox}"
        case DeliveryDone(kind=kind, tls=tls, result=result, seconds=seconds):
            text = f"delivery {kind} {'yes' if tls else 'no'} {result} {seconds:.6f}"
        case BounceQueued(kind=kind):
            text = f"bounce {kind}"
        case Queued(qid=qid):
            text = f"queued {qid}"
    return text.encode("utf-8") + b"\n"


def parse_report(line: bytes) -> Report | None:
    """The report on one line, or None for anything else."""
    word, _, rest = line.decode("utf-8", "replace").strip().partition(" ")
    if word == "ready" and not rest:
        return Ready()
    if word == "idle" and not rest:
        return Idle()
    if word == "busy" and not rest:
        return Busy()
    if word == "delivered" and rest:
        return Delivered(rest)
    if word == "bounce" and rest in BOUNCE_KINDS:
        return BounceQueued(rest)
    if word == "queued" and is_queue_id(rest):
        return Queued(rest)
    if word == "delivery":
        fields = rest.split(" ")
        if len(fields) != 4 or fields[0] not in KINDS or fields[1] not in ("yes", "no") or fields[2] not in RESULTS:
            return None
        try:
            seconds = float(fields[3])
        except ValueError:
            return None
        if not math.isfinite(seconds):
            return None
        return DeliveryDone(fields[0], fields[1] == "yes", fields[2], max(0.0, seconds))
    return None


def apply_report(report: DeliveryDone | BounceQueued, stats: DeliveryStats) -> None:
    """Count a report from the delivery process as if it had happened here."""
    if isinstance(report, DeliveryDone):
        stats.delivery(report.kind, report.tls, report.result, report.seconds)
    else:
        stats.bounce(report.kind)


class ReportWriter:
    """The delivery process's end: DeliveryStats (and the other reports) as lines on `out`.

    The queue manager counts from its threads and from the event loop; one
    lock keeps each line whole."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def send(self, report: Report) -> None:
        data = format_report(report)
        with self._lock:
            try:
                self._out.write(data)
                self._out.flush()
            except (BrokenPipeError, ValueError):  # the server is gone; end of file on stdin stops us
                pass

    def delivery(self, kind: str, tls: bool, result: str, seconds: float) -> None:
        self.send(DeliveryDone(kind, tls, result, seconds))

    def bounce(self, kind: str) -> None:
        self.send(BounceQueued(kind))
