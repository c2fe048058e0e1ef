"""Logging: a session id on every record and the mail-log vocabulary.

Two channels (as chasquid has):
- the mail log, logger "hatoba.mail": one `event key=value ...` line per
  connection, message and delivery (accepted, rejected, queued, delivered,
  deferred, auth, connect, disconnect), stable for operators and fail2ban;
- the debug trace, logger "hatoba.trace" at DEBUG: wire lines, with secrets
  redacted in the one place wire lines are logged (trace_line).

Under systemd (stderr is the journal stream) lines carry an sd-daemon `<N>`
priority and no time stamp: journald adds both to each entry.
"""

from __future__ import annotations

import contextvars
import logging
import os
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


_FORMAT = "%(levelname)s [%(session)s] %(name)s: %(message)s"

# sd-daemon(3) priority prefixes: journald files each line under its level.
_PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


class _JournalFormatter(logging.Formatter):
    """For stderr read by journald: no time stamp (the journal adds its own) and
    `<N>` before every line, so a traceback's lines keep their record's level."""

    def __init__(self) -> None:
        super().__init__(_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_PRIORITIES.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def stderr_is_journal() -> bool:
    """Whether stderr is systemd's journal stream: $JOURNAL_STREAM names its device and
    inode (systemd.exec(5)); a redirected stderr no longer matches."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(sys.stderr.fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (ValueError, OSError, AttributeError):
        return False


def setup_logging(level: str = "INFO", file: Path | None = None, *, file_fd: int | None = None) -> logging.Handler | None:
    """Log to stderr (journal form under systemd) and to `file`, or to the open
    descriptor `file_fd` of it (the delivery process gets the server's, opened
    before root was dropped). Returns the file's handler."""
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(_JournalFormatter() if stderr_is_journal() else logging.Formatter("%(asctime)s " + _FORMAT))
    handlers: list[logging.Handler] = [stderr]
    to_file: logging.Handler | None = None
    if file_fd is not None:
        to_file = logging.StreamHandler(open(file_fd, "a", encoding="utf-8", closefd=True))
    elif file is not None:
        to_file = logging.FileHandler(file)
    if to_file is not None:
        to_file.setFormatter(logging.Formatter("%(asctime)s " + _FORMAT))
        handlers.append(to_file)
    # Fields no line of ours shows, which the logging module would otherwise work out
    # for every record (the caller's frame walk is the dearest): a mail log line per
    # delivery is then about a fifth cheaper. The logging HOWTO's "Optimization" names these.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.logAsyncioTasks = False  # type: ignore[attr-defined]  # 3.12 and later
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        h.addFilter(_SessionFilter())
        root.addHandler(h)
    root.setLevel(level.upper())
    return to_file


def quote(value: object) -> str:
    """A value for a key=value log line: peer text escaped and capped."""
    text = "" if value is None else str(value)
    text = text[:200]
    if text and not _UNSAFE.search(text) and '"' not in text:
        return text
    # unicode_escape escapes backslashes and controls; the quotes after it, so read_fields can undo both.
    return '"' + text.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def read_fields(text: str) -> dict[str, str]:
    """The key=value fields of a mail-log line's text, as quote() wrote them (quoted values unquoted)."""
    out = {}
    for key, value in _FIELD.findall(text):
        if value.startswith('"'):
            value = value[1:-1].encode("ascii", "backslashreplace").decode("unicode_escape")
        out[key] = value
    return out


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
