"""What the first worker and the other worker processes say to each other.

One message a line, on the other worker's stdin (from the first worker) and
stdout (to it): a keyword, then its argument. The first worker is the hub:
it owns the delivery process, so every committed message and every mailbox
change goes through it, and it passes changes on to every other worker.

    to a worker        changed <json>   mailbox news from elsewhere: wake IDLE, NOTIFY
                       metrics?         send your counters
                       reload           take the certificates from disk again
    from a worker      ready            listening
                       queued <qid>     a message is committed to the queue
                       changed <json>   a session of mine changed a mailbox
                       metrics <b64>    my counters, in Prometheus' text format
    end of file on a worker's stdin: stop (the first worker stopped or died).

Parsing is separate from the pipes, so each side can be tested alone.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from hatoba.queue.ids import is_queue_id
from hatoba.store.changes import Change, MessagesChanged, NameChanged, SubscriptionChanged

# A line longer than this is broken: the pipe readers' limit (metrics are the longest).
MAX_LINE = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Ready:
    pass


@dataclass(frozen=True, slots=True)
class Queued:
    qid: str


@dataclass(frozen=True, slots=True)
class Changed:
    user: str
    changes: tuple[Change, ...]  # empty: something changed, nobody knows what


@dataclass(frozen=True, slots=True)
class MetricsAsked:
    pass


@dataclass(frozen=True, slots=True)
class MetricsText:
    text: bytes


@dataclass(frozen=True, slots=True)
class Reload:
    pass


Message = Ready | Queued | Changed | MetricsAsked | MetricsText | Reload


def encode(message: Message) -> bytes:
    match message:
        case Ready():
            return b"ready\n"
        case Queued(qid=qid):
            return b"queued " + qid.encode("ascii") + b"\n"
        case Changed(user=user, changes=changes):
            body = {"u": user, "c": [_change_to_json(c) for c in changes]}
            return b"changed " + json.dumps(body, separators=(",", ":")).encode() + b"\n"
        case MetricsAsked():
            return b"metrics?\n"
        case MetricsText(text=text):
            return b"metrics " + base64.b64encode(text) + b"\n"
        case Reload():
            return b"reload\n"
    raise TypeError(f"not a worker message: {message!r}")


def decode(line: bytes) -> Message | None:
    """The message on `line`; None for anything else (never an exception)."""
    keyword, _, rest = line.strip().partition(b" ")
    try:
        match keyword:
            case b"ready":
                return Ready()
            case b"queued":
                qid = rest.decode("ascii")
                return Queued(qid) if is_queue_id(qid) else None
            case b"changed":
                body = json.loads(rest)
                user = body["u"]
                if not isinstance(user, str):
                    return None
                return Changed(user, tuple(_change_from_json(c) for c in body["c"]))
            case b"metrics?":
                return MetricsAsked()
            case b"metrics":
                return MetricsText(base64.b64decode(rest, validate=True))
            case b"reload":
                return Reload()
    except (ValueError, KeyError, TypeError, IndexError, binascii.Error):
        return None
    return None


def _change_to_json(change: Change) -> list[object]:
    match change:
        case MessagesChanged(name=name, kinds=kinds):
            return ["m", name, sorted(kinds)]
        case NameChanged(name=name, old=old):
            return ["n", name, old]
        case SubscriptionChanged(name=name, subscribed=subscribed):
            return ["s", name, subscribed]
    raise TypeError(f"not a mailbox change: {change!r}")


def _change_from_json(item: list[object]) -> Change:
    kind, name, extra = item
    if not isinstance(name, str):
        raise ValueError("folder name")
    if kind == "m" and isinstance(extra, list) and all(isinstance(k, str) for k in extra):
        return MessagesChanged(name, frozenset(extra))
    if kind == "n" and (extra is None or isinstance(extra, str)):
        return NameChanged(name, extra)
    if kind == "s" and isinstance(extra, bool):
        return SubscriptionChanged(name, extra)
    raise ValueError("unknown change")
