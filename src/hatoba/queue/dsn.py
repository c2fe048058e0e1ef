"""Delivery status notifications: the bounce and the delay warning.

build_dsn() writes the multipart/report message (RFC 6522) that tells a
sender what became of a message: part 1 in plain words, part 2 the
machine-readable message/delivery-status (RFC 3464), part 3 the original
message's headers, so the sender can tell which message it was.

Rules:
- Pure: arguments in, bytes out. No files, no config, no clock unless
  `now` is left out.
- Output uses CRLF only and every line is shorter than 998 octets
  (RFC 5322 §2.1.1); long diagnostics are folded, never cut.
- Never a report to the null reverse-path (RFC 5321 §4.5.5): build_dsn
  refuses an empty sender, and is_delivery_report() lets the queue spot
  a bounce that arrived with a sender anyway.
- An all-ASCII envelope gets message/delivery-status and
  text/rfc822-headers, and any non-ASCII text in a diagnostic is masked,
  so the report is 7-bit unless the original headers were 8-bit. A
  non-ASCII address switches to message/global-delivery-status,
  message/global-headers and the "utf-8" address type (RFC 6533); such
  a report needs SMTPUTF8 on the way back, like the message it answers.
"""

from __future__ import annotations

import re
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import collapse_rfc2231_value, format_datetime

ACTIONS = ("failed", "delayed")  # RFC 3464 §2.3.3: the two we report

# RFC 3463 §2: class.subject.detail; a report only ever carries 4 or 5.
_STATUS = re.compile(r"^[45]\.\d{1,3}\.\d{1,3}$")
# An SMTP reply line: RFC 5321 §4.2 Reply-code, then SP or "-".
_REPLY = re.compile(r"^[2-5]\d\d(?:[ -]|$)")
_MESSAGE_ID = re.compile(r"^<[\x21-\x3b\x3d\x3f-\x7e]{1,250}>$")

_FOLD_AT = 78  # RFC 5322 §2.1.1 "SHOULD": fold header lines here
_HARD_LINE = 990  # under the 998-octet MUST, with room for CRLF
_TEXT_WIDTH = 76

_FAILED_SUBJECT = "Undelivered Mail Returned to Sender"
_DELAYED_SUBJECT = "Delayed Mail (still being retried)"

# Words for a status when no diagnostic text was given, keyed by the
# subject.detail of RFC 3463 §3 (the class says failed/delayed already).
_STATUS_WORDS = {
    "1.1": "the mailbox does not exist",
    "1.2": "the destination domain does not exist or does not accept mail",
    "2.2": "the mailbox is full",
    "3.4": "the message is too big for the receiving system",
    "4.1": "the receiving server did not answer",
    "4.2": "the connection to the receiving server was lost",
    "4.3": "the receiving domain could not be looked up in the DNS",
    "4.4": "no route to the receiving domain",
    "4.7": "the message was in the queue for too long",
    "7.1": "the receiving system refused the message",
}


@dataclass(frozen=True)
class RecipientReport:
    """What happened to one recipient, as the queue knows it.

    `diagnostic` is the remote server's reply when `diagnostic_from_remote`
    is true (it goes out as `Diagnostic-Code: smtp; <reply>`), otherwise a
    few words of ours ("mailbox full") that the report wraps into an SMTP
    style reply built from `status`.
    """

    recipient: str
    action: str
    status: str
    diagnostic: str = ""
    remote_mta: str = ""
    original: str = ""
    diagnostic_from_remote: bool = False
    last_attempt: float | None = None


def build_dsn(
    *,
    reporting_mta: str,
    sender: str,
    original_headers: bytes,
    reports: Sequence[RecipientReport],
    arrival: float,
    queue_id: str,
    now: float | None = None,
    will_retry_until: float | None = None,
) -> bytes:
    """The complete report message for `sender`, CRLF line ends.

    Raises ValueError for an empty sender, no reports, or a report whose
    action or status is not one a DSN can carry: each is a caller bug.
    """
    if not sender:
        raise ValueError("no delivery report to the null sender (RFC 5321 §4.5.5)")
    if not reports:
        raise ValueError("a delivery report needs at least one recipient")
    for report in reports:
        if report.action not in ACTIONS:
            raise ValueError(f"action must be failed or delayed, not {report.action!r}")
        if not _STATUS.match(report.status):
            raise ValueError(f"not an enhanced status code: {report.status!r}")
    if now is None:
        now = time.time()

    host = _clean(reporting_mta, ascii_only=True)
    qid = _clean(queue_id, ascii_only=True)
    addresses = [sender] + [a for r in reports for a in (r.recipient, r.original) if a]
    utf8 = not all(a.isascii() for a in addresses)
    failed = any(r.action == "failed" for r in reports)

    notice = _notice_part(host, qid, reports, arrival, will_retry_until, utf8)
    status = _status_part(host, qid, reports, arrival, will_retry_until, utf8)
    parts = [notice, status]
    headers = _header_lines(original_headers)
    if headers:
        parts.append(_headers_part(headers, failed, utf8))

    boundary = _boundary(f"{_stamp(now)}.{qid}", parts)
    top = [
        f"From: Mail Delivery System <MAILER-DAEMON@{host}>",
        f"To: <{_clean(sender, ascii_only=False)}>",
        f"Date: {_date(now)}",
        f"Subject: {_FAILED_SUBJECT if failed else _DELAYED_SUBJECT}",
        f"Message-ID: <{_stamp(now)}.{qid}.{'bounce' if failed else 'delay'}@{host}>",
    ]
    # Lets the sender's mail program thread the report under the message.
    original_id = _original_message_id(original_headers)
    if original_id:
        top += [f"In-Reply-To: {original_id}", f"References: {original_id}"]
    top += [
        "Auto-Submitted: auto-replied",  # RFC 3834 §5
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f' boundary="{boundary}"',
    ]
    if not all(part.isascii() for part in parts):
        top.append("Content-Transfer-Encoding: 8bit")  # RFC 2045 §6.4: inherited
    out = [line.encode() for line in top]
    out += [b"", b"This is a MIME-encapsulated message.", b""]
    for part in parts:
        out.append(b"--" + boundary.encode())
        out.extend(part.split(b"\r\n"))
        out.append(b"")
    out.append(b"--" + boundary.encode() + b"--")
    return b"\r\n".join(out) + b"\r\n"


def header_block(message: bytes, limit: int = 64 * 1024) -> bytes:
    """The header section of `message` (up to its first empty line), CRLF ends.

    Cut at a line boundary so that the result holds at most `limit` octets:
    a report that quotes a huge header should still get through.
    """
    out: list[bytes] = []
    size = 0
    for line in _header_lines(message):
        size += len(line) + 2
        if size > limit:
            break
        out.append(line + b"\r\n")
    return b"".join(out)


def is_delivery_report(message_headers: bytes) -> bool:
    """True when the headers describe a DSN: multipart/report; report-type=delivery-status.

    The queue asks this before bouncing, so that a report is never answered
    with another one (RFC 3464 §6.2). Never raises, whatever the bytes.
    """
    # compat32 is the lenient parser: malformed headers stay plain strings.
    msg = BytesHeaderParser(policy=compat32).parsebytes(message_headers)
    if msg.get_content_type() != "multipart/report":
        return False
    value = msg.get_param("report-type")
    if not value:
        return False
    text = collapse_rfc2231_value(value).strip().lower()
    # "global-delivery-status" is not registered but some senders use it.
    return text in ("delivery-status", "global-delivery-status")


# -- the three parts -------------------------------------------------------
# Each part is returned as its MIME headers, a blank line and its body,
# joined with CRLF and without a trailing line end.


def _notice_part(
    host: str,
    qid: str,
    reports: Sequence[RecipientReport],
    arrival: float,
    will_retry_until: float | None,
    utf8: bool,
) -> bytes:
    """Part 1: plain words for someone who has never heard of SMTP."""
    failed = [r for r in reports if r.action == "failed"]
    delayed = [r for r in reports if r.action == "delayed"]
    paragraphs = [f"This is the mail system at {host}."]
    if failed:
        paragraphs.append(
            "Your message could not be delivered to one or more of its "
            "recipients. The mail system has given up on them; each address "
            "is listed below with the reason. The headers of your message "
            "are attached, so you can tell which message this was."
        )
    if delayed:
        until = f"until {_date(will_retry_until)}" if will_retry_until is not None else "for a while"
        paragraphs.append(
            ("Delivery to some other recipients is late. " if failed else "Your message has not been delivered yet. ")
            + f"The mail system keeps trying {until}, and will write to you "
            "again if it gives up. This is only a warning: you do not need "
            "to send the message again."
        )
    paragraphs.append("If you need help, forward this message to your postmaster.")
    lines: list[str] = []
    for paragraph in paragraphs:
        lines += _wrap(paragraph) + [""]
    lines += [f"Queue ID:   {qid}", f"Queued on:  {_date(arrival)}"]
    for title, group in (("Given up:", failed), ("Still trying:", delayed)):
        if group:
            lines += ["", title]
            for report in group:
                lines += [""] + _wrap(_explain(report, utf8), subsequent="    ")
    body = "\r\n".join(lines).encode()
    head = ["Content-Description: Notification", "Content-Type: text/plain; charset=utf-8"]
    return _part(head, body)


def _status_part(
    host: str,
    qid: str,
    reports: Sequence[RecipientReport],
    arrival: float,
    will_retry_until: float | None,
    utf8: bool,
) -> bytes:
    """Part 2: RFC 3464 §2.2 per-message fields, then one group per recipient."""
    lines = [
        f"Reporting-MTA: dns; {host}",
        f"X-Hatoba-Queue-ID: {qid}",
        f"Arrival-Date: {_date(arrival)}",
    ]
    for report in reports:
        lines.append("")  # RFC 3464 §2.1: groups are separated by blank lines
        lines += _fold("Final-Recipient", _address(report.recipient, utf8))
        if report.original:
            lines += _fold("Original-Recipient", _address(report.original, utf8))
        lines += [f"Action: {report.action}", f"Status: {report.status}"]
        if report.remote_mta:
            lines += _fold("Remote-MTA", f"dns; {_clean(report.remote_mta, ascii_only=True)}")
        if report.diagnostic:
            lines += _fold("Diagnostic-Code", f"smtp; {_reply_text(report, utf8)}")
        if report.last_attempt is not None:
            lines.append(f"Last-Attempt-Date: {_date(report.last_attempt)}")
        if report.action == "delayed" and will_retry_until is not None:
            lines.append(f"Will-Retry-Until: {_date(will_retry_until)}")
    kind = "message/global-delivery-status" if utf8 else "message/delivery-status"
    head = ["Content-Description: Delivery report", f"Content-Type: {kind}"]
    return _part(head, "\r\n".join(lines).encode())


def _headers_part(headers: list[bytes], failed: bool, utf8: bool) -> bytes:
    """Part 3: the original headers (RFC 6522 §4, RFC 6533 §6.3 when global)."""
    kind = "message/global-headers" if utf8 else "text/rfc822-headers"
    what = "Undelivered Message Headers" if failed else "Delayed Message Headers"
    lines = [piece for line in headers for piece in _split_long(line)]
    return _part([f"Content-Description: {what}", f"Content-Type: {kind}"], b"\r\n".join(lines))


def _part(head: list[str], body: bytes) -> bytes:
    if not body.isascii():
        # 8-bit text goes as is (RFC 6152), never re-encoded: an 8-bit
        # original could only reach us over 8BITMIME or SMTPUTF8.
        head = head + ["Content-Transfer-Encoding: 8bit"]
    return "\r\n".join(head).encode() + b"\r\n\r\n" + body


# -- field values ----------------------------------------------------------


def _explain(report: RecipientReport, utf8: bool) -> str:
    """One recipient's line in part 1: address, then why."""
    who = f"<{_clean(report.recipient, not utf8)}>"
    if report.original and report.original != report.recipient:
        who += f" (expanded from <{_clean(report.original, not utf8)}>)"
    diagnostic = _clean(report.diagnostic, not utf8)
    if not diagnostic:
        words = _STATUS_WORDS.get(report.status.split(".", 1)[1], "delivery did not succeed")
        return f"{who}: {words} (status {report.status})"
    if report.diagnostic_from_remote and report.remote_mta:
        return f"{who}: the receiving server {_clean(report.remote_mta, True)} said: {diagnostic}"
    if report.diagnostic_from_remote:
        return f"{who}: the receiving server said: {diagnostic}"
    return f"{who}: {diagnostic} (status {report.status})"


def _reply_text(report: RecipientReport, utf8: bool) -> str:
    """The reply for Diagnostic-Code: smtp; (RFC 3464 §2.3.6).

    A remote reply is quoted as received, its lines joined with spaces.
    Our own words become an SMTP-style reply built from the status, so
    that parsers which expect "smtp; 550 5.1.1 ..." find one.
    """
    text = _clean(report.diagnostic, ascii_only=not utf8)
    if report.diagnostic_from_remote or _REPLY.match(text):
        return text
    code = "550" if report.status.startswith("5") else "450"
    return f"{code} {report.status} {text}"


def _address(address: str, utf8: bool) -> str:
    """An address with its RFC 3464 §2.1.2 type: rfc822, or utf-8 (RFC 6533 §3)."""
    if address.isascii():
        return f"rfc822; {_clean(address, ascii_only=True)}"
    return f"utf-8; {_unitext(_clean(address, ascii_only=False))}"


def _unitext(address: str) -> str:
    """RFC 6533 §3 utf-8-addr-unitext, the form used inside a global DSN.

        utf-8-addr-unitext = 1*(QUTF8CHAR / EmbeddedUnicodeChar)
        QCHAR = %x21-2a / %x2c-3c / %x3e-5b / %x5d-7e
        EmbeddedUnicodeChar = %x5C.78 "{" HEXPOINT "}"

    So "+", "=", "\\" and space are written as \\x{2B} and so on.
    """
    return "".join(f"\\x{{{ord(c):X}}}" if c in "+=\\ " else c for c in address)


def _clean(text: str, ascii_only: bool) -> str:
    """One line of printable text: controls (CR, LF, TAB...) become spaces.

    Joins a multi-line SMTP reply into one line, as Postfix does, and
    masks non-ASCII with "?" where the report must stay 7-bit.
    """
    out = []
    for c in text:
        if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029":
            out.append(" ")
        elif ascii_only and not c.isascii():
            out.append("?")
        else:
            out.append(c)
    return " ".join("".join(out).split())


def _fold(name: str, value: str) -> list[str]:
    """`name: value` folded at spaces near 78 octets (RFC 5322 §2.2.3).

    A word too long for one line is split into pieces; unfolding then
    shows a space inside it, which beats a line that breaks the 998 rule.
    """
    lines: list[str] = []
    current = f"{name}:"
    for word in _pieces(value.split(" ")):
        if _octets(current) + 1 + _octets(word) <= _FOLD_AT or current.strip() in ("", f"{name}:"):
            current += " " + word
        else:
            lines.append(current)
            current = " " + word
    lines.append(current)
    return lines


def _pieces(words: list[str]) -> Iterator[str]:
    for word in words:
        while _octets(word) > _HARD_LINE - 100:
            cut = _HARD_LINE - 100
            while _octets(word[:cut]) > _HARD_LINE - 100:
                cut -= 1
            yield word[:cut]
            word = word[cut:]
        if word:
            yield word


def _wrap(text: str, subsequent: str = "") -> list[str]:
    """Paragraph lines for part 1; long words are broken, never overlong."""
    return textwrap.wrap(text, width=_TEXT_WIDTH, subsequent_indent=subsequent, break_on_hyphens=False)


# -- original headers ------------------------------------------------------


def _header_lines(message: bytes) -> list[bytes]:
    """The header lines of `message`, without line ends, up to the first empty line.

    Accepts CRLF or bare LF; a stray CR inside a line becomes a space so the
    report itself never carries a bare CR.
    """
    lines: list[bytes] = []
    for line in message.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            break
        lines.append(line.replace(b"\r", b" "))
    return lines


def _split_long(line: bytes) -> list[bytes]:
    """A header line longer than the limit, as a folded header (RFC 5322 §2.2.3)."""
    out = []
    while len(line) > _HARD_LINE:
        cut = _HARD_LINE
        while cut > 1 and 0x80 <= line[cut] < 0xC0:  # not inside a UTF-8 character
            cut -= 1
        out.append(line[:cut])
        line = b" " + line[cut:]
    out.append(line)
    return out


def _original_message_id(headers: bytes) -> str:
    msg = BytesHeaderParser(policy=compat32).parsebytes(header_block(headers))
    value = msg.get("Message-ID")
    if not isinstance(value, str):
        return ""
    value = value.strip()
    return value if _MESSAGE_ID.match(value) else ""


# -- small helpers ---------------------------------------------------------


def _boundary(seed: str, parts: list[bytes]) -> str:
    """A boundary found in no part (RFC 2046 §5.1.1); deterministic, so tests can repeat."""
    base = "=_" + re.sub(r"[^0-9A-Za-z.]", "", seed)[:60]
    n = 0
    candidate = base
    while any(candidate.encode() in part for part in parts):
        n += 1
        candidate = f"{base}.{n}"
    return candidate


def _stamp(now: float) -> str:
    return f"{round(now * 1_000_000):x}"


def _date(when: float) -> str:
    """RFC 5322 §3.3 date-time, in UTC."""
    return format_datetime(datetime.fromtimestamp(when, timezone.utc))


def _octets(text: str) -> int:
    return len(text.encode())
