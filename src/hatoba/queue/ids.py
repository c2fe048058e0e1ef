"""Queue ids: unique, sortable by arrival time, safe as file names.

Twelve hex digits of microseconds since the epoch, then six random hex
digits: "18b4c2e9a1f03a9c41e7". Sorting ids sorts messages by arrival.
"""

from __future__ import annotations

import re
import secrets
import time
import zlib

_QID = re.compile(r"^[0-9a-f]{13}[0-9a-f]{6}$")


def new_queue_id() -> str:
    return f"{time.time_ns() // 1000:013x}{secrets.token_hex(3)}"


def arrival_time(qid: str) -> float:
    """Seconds since the epoch when the message with this id arrived (its first 13 digits)."""
    return int(qid[:13], 16) / 1_000_000


def is_queue_id(text: str) -> bool:
    """True for a string new_queue_id() could have made (guards CLI input and file names)."""
    return bool(_QID.match(text))


def part_of(qid: str, parts: int) -> int:
    """Which of `parts` delivery processes owns this message (the same answer in every process)."""
    return zlib.crc32(qid.encode("ascii")) % parts if parts > 1 else 0
