"""Logging: a session id on every record and the mail-log vocabulary.

Two channels (as chasquid has):
- the mail log, logger "hatoba.mail": one `event key=value ...` line per
  connection, message and delivery (accepted, rejected, queued, delivered,
  deferred, auth, connect, disconnect), stable for operators and fail2ban;
- the debug trace, logger "hatoba.trace" at DEBUG: wire lines, with secrets
  redacted in the one place wire lines are logged (trace_line).
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from pathlib import Path

session_id: contextvars.ContextVar[str] = contextvars.ContextVar("session_id", default="-")

mail_logger = logging.getLogger("hatoba.mail")
trace_logger = logging.getLogger("hatoba.trace")

_UNSAFE = re.compile(r"[^\x21-\x7e]")


class _SessionFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.session = session_id.get()
        return True


def setup_logging(level: str = "INFO", file: Path | None = None) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s [%(session)s] %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if file is not None:
        handlers.append(logging.FileHandler(file))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        h.setFormatter(fmt)
        h.addFilter(_SessionFilter())
        root.addHandler(h)
    root.setLevel(level.upper())


def quote(value: object) -> str:
    """A value for a key=value log line: peer text escaped and capped."""
    text = "" if value is None else str(value)
    text = text[:200]
    if text and not _UNSAFE.search(text) and '"' not in text:
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').encode("unicode_escape").decode("ascii") + '"'


def mail_log(event: str, **fields: object) -> None:
    """One mail-log line: `accepted qid=... from=<...> ...`."""
    parts = [event] + [f"{k}={quote(v)}" for k, v in fields.items() if v is not None]
    mail_logger.info(" ".join(parts))


_SECRET_COMMANDS = (b"AUTH", b"AUTHENTICATE", b"LOGIN", b"PASS", b"APOP")


def trace_line(direction: str, line: bytes, *, secret: bool = False) -> None:
    """Log one wire line at DEBUG; credentials never reach the log."""
    if not trace_logger.isEnabledFor(logging.DEBUG):
        return
    # Words split at any white space, leading space dropped: "PASS\tsecret" and
    # " AUTH PLAIN ..." are refused as commands but still carry the password.
    words = line[:64].split(None, 2)
    verb = words[0].upper() if words else b""
    if secret:
        shown = b"<redacted>"
    elif verb in _SECRET_COMMANDS:
        shown = b" ".join(words[:2] if verb == b"AUTH" else words[:1]) + b" <redacted>"
    else:
        shown = line[:500]
    trace_logger.debug("%s %s", direction, shown.decode("utf-8", "replace").rstrip("\r\n"))
