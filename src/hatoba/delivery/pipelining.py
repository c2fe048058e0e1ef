"""One SMTP transaction with PIPELINING (RFC 2920): MAIL, every RCPT and DATA in
one write, their replies read together, then the message and its final reply.

aiosmtplib (which opens the session: greeting, EHLO, STARTTLS, AUTH) waits
for each reply before the next command and drops what arrives beyond the one
reply it waits for, so it cannot pipeline. For the transaction the
connection's input is taken over by `_ReplyReader` (transport.set_protocol)
and given back afterwards: RSET and QUIT go through aiosmtplib again. Two
round trips per message instead of three plus one per recipient, which is
what Postfix does and what a server across an ocean notices most.

A server that offers PIPELINING and then leaves pipelined commands
unanswered (some firewalls and old servers read one command per packet)
gets one command at a time for a day after the first timeout.

This module only speaks; what the replies mean for each recipient is
decided by SmtpConnection.send, the same as for the step-by-step path.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from dataclasses import dataclass

import aiosmtplib

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 64 * 1024  # one reply's lines together (aiosmtplib's own cap is 8 KiB a line)
_LINE_ENDINGS = re.compile(rb"\r\n|\r|\n")
_UNSAFE_IN_COMMAND = re.compile(r"[\r\n\x00]")


@dataclass(frozen=True)
class WireReply:
    code: int
    text: str  # the lines' texts joined by spaces, white space folded


@dataclass(frozen=True)
class PipelinedReplies:
    mail: WireReply
    rcpts: list[WireReply]
    data: WireReply  # the reply to DATA (354 when the message may follow)


# Servers that offered PIPELINING and then left pipelined commands unanswered (a
# timeout waiting for the envelope's replies): (address, port) -> until when they
# get one command at a time. Per delivery process; a restart forgets them.
DISTRUST_SECONDS = 24 * 3600
_distrusted: dict[tuple[str, int], float] = {}


def pipelining_trusted(ip: str, port: int) -> bool:
    until = _distrusted.get((ip, port))
    if until is None:
        return True
    if time.monotonic() >= until:
        del _distrusted[(ip, port)]
        return True
    return False


def distrust_pipelining(ip: str, port: int) -> None:
    if len(_distrusted) > 10_000:  # bounded: forget the lot rather than grow
        _distrusted.clear()
    _distrusted[(ip, port)] = time.monotonic() + DISTRUST_SECONDS
    log.warning("%s:%s offered PIPELINING but did not answer pipelined commands; "
                "sending it one command at a time for %d hours", ip, port, DISTRUST_SECONDS // 3600)


def can_pipeline(mail_from: str, recipients: list[str], options: list[str]) -> bool:
    """Whether the commands can be written as they are (no line break or NUL to smuggle)."""
    return not any(_UNSAFE_IN_COMMAND.search(text) for text in (mail_from, *recipients, *options))


def commands(mail_from: str, recipients: list[str], options: list[str], encoding: str) -> bytes:
    mail = f"MAIL FROM:<{mail_from}>" + "".join(f" {o}" for o in options)
    lines = [mail, *(f"RCPT TO:<{rcpt}>" for rcpt in recipients), "DATA"]
    return "".join(line + "\r\n" for line in lines).encode(encoding)


def stuffed(data: bytes) -> bytes:
    """The message as it goes after DATA: CRLF line ends, leading dots doubled, the "." line.

    Every CR or LF alone becomes a CRLF, as aiosmtplib's step-by-step DATA does. Not
    POP3's RetrEncoder, which keeps a bare CR as data: a server further on that
    takes a bare CR for a line end would read "<CR>.<CR>" in a message as the end
    of its data (SMTP smuggling), and inbound SMTP accepts bare CRs as data."""
    if data.count(b"\n") != data.count(b"\r\n") or data.count(b"\r") != data.count(b"\r\n"):
        data = _LINE_ENDINGS.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..") + b".\r\n"


class _ReplyReader(asyncio.Protocol):
    """Holds the connection's input during one transaction: complete replies in order."""

    def __init__(self, previous: asyncio.BaseProtocol) -> None:
        self.previous = previous
        self.buffer = bytearray()
        self.replies: deque[WireReply] = deque()
        self.lines: list[str] = []  # the current reply's texts so far
        self.line_bytes = 0  # their length together
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.error is not None:
            return
        self.buffer += data
        try:
            self._parse()
        except aiosmtplib.SMTPException as exc:
            self.error = exc
        self._wake()

    def eof_received(self) -> bool | None:
        self._fail(aiosmtplib.SMTPServerDisconnected("the server closed the connection"))
        return self.previous.eof_received()  # type: ignore[attr-defined, no-any-return]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(aiosmtplib.SMTPServerDisconnected(f"connection lost ({exc})" if exc else "connection lost"))
        self.previous.connection_lost(exc)

    def pause_writing(self) -> None:
        self.previous.pause_writing()

    def resume_writing(self) -> None:
        self.previous.resume_writing()

    # -- replies -----------------------------------------------------------------------

    async def next(self, timeout: float | None) -> WireReply:
        while not self.replies:
            if self.error is not None:
                raise self.error
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self.waiter
            except TimeoutError:
                raise aiosmtplib.SMTPReadTimeoutError("timed out waiting for the server's reply") from None
            finally:
                self.waiter = None
        return self.replies.popleft()

    def _parse(self) -> None:
        while (end := self.buffer.find(b"\n")) >= 0:
            line = bytes(self.buffer[: end + 1])
            del self.buffer[: end + 1]
            code = line[:3]
            if len(code) < 3 or not code.isdigit() or line[3:4] not in (b" ", b"-", b"\r", b"\n"):
                raise aiosmtplib.SMTPServerDisconnected(f"malformed reply line {line[:40]!r}")
            self.lines.append(line[4:].decode("utf-8", "replace"))
            self.line_bytes += len(line)
            if line[3:4] != b"-":
                text = " ".join(" ".join(self.lines).split())
                self.replies.append(WireReply(int(code), text))
                self.lines = []
                self.line_bytes = 0
        if len(self.buffer) + self.line_bytes > MAX_REPLY_BYTES:
            raise aiosmtplib.SMTPServerDisconnected("reply too long")

    def _fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class Pipeline:
    """The connection's input taken for one transaction (`async with`), given back after."""

    def __init__(self, smtp: aiosmtplib.SMTP) -> None:
        transport = smtp.transport
        if transport is None or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("not connected")
        self.transport: asyncio.WriteTransport = transport  # type: ignore[assignment]
        self.timeout = smtp.timeout
        self.reader = _ReplyReader(transport.get_protocol())

    async def __aenter__(self) -> Pipeline:
        self.transport.set_protocol(self.reader)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if not self.transport.is_closing():
            self.transport.set_protocol(self.reader.previous)

    async def envelope(self, mail_from: str, recipients: list[str], options: list[str], encoding: str) -> PipelinedReplies:
        """MAIL, RCPT ... and DATA at once; their replies in order."""
        self.transport.write(commands(mail_from, recipients, options, encoding))
        mail = await self.reader.next(self.timeout)
        rcpts = [await self.reader.next(self.timeout) for _ in recipients]
        data = await self.reader.next(self.timeout)
        return PipelinedReplies(mail, rcpts, data)

    async def message(self, data: bytes) -> WireReply:
        """After a 354: the message and its final reply."""
        self.transport.write(stuffed(data))
        return await self.reader.next(self.timeout)

    async def abandon_data(self) -> WireReply:
        """After a 354 that came although no recipient was taken (RFC 2920 §3.1): end the
        data at once; the server refuses the empty message for want of recipients."""
        self.transport.write(b".\r\n")
        return await self.reader.next(self.timeout)
