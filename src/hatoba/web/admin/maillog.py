"""Reading the mail log file ([log] file) for the web admin: recent deliveries, one message's lines.

Only the end of the file is read (TAIL_BYTES): the pages answer in a moment
however large the log grew. Lines are the mail log's own (logs.py):
`TIME LEVEL [session] hatoba.mail: EVENT key=value ...`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hatoba.logs import read_fields

__all__ = ["lines_of", "recent_deliveries"]

TAIL_BYTES = 1 << 20
EVENTS = ("delivered", "deferred", "bounced")
MAX_RECENT = 20
_MAIL = " hatoba.mail: "


def _tail(path: Path) -> list[str]:
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read(TAIL_BYTES)
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[1:] if size > TAIL_BYTES else lines  # the first may be cut


def _mail_part(line: str) -> tuple[str, str] | None:
    """(time stamp, `EVENT key=value ...`) of a mail log line; None for other lines."""
    stamp, found, event = line.partition(_MAIL)
    if not found:
        return None
    return " ".join(stamp.split(" ")[:2]).split(",")[0], event


def recent_deliveries(path: Path) -> list[tuple[str, str, dict[str, str]]]:
    """(time, event, fields) of the last MAX_RECENT delivered / deferred / bounced lines, newest first."""
    found: list[tuple[str, str, dict[str, str]]] = []
    for line in reversed(_tail(path)):
        part = _mail_part(line)
        if part is None:
            continue
        stamp, text = part
        event, _, rest = text.partition(" ")
        if event in EVENTS:
            found.append((stamp, event, read_fields(rest)))
            if len(found) >= MAX_RECENT:
                break
    return found


def lines_of(path: Path, qid: str) -> list[str]:
    """Every mail log line (in the file's end) that names queue id `qid`."""
    needle = f"qid={qid}"
    out = []
    for line in _tail(path):
        part = _mail_part(line)
        if part is not None and re.search(rf"(^| ){re.escape(needle)}( |$)", part[1]):
            out.append(f"{part[0]} {part[1]}")
    return out
