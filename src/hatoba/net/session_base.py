"""What every protocol session (SMTP, POP3, IMAP) shares: its connection facts,
the output buffer, flushing, and the STARTTLS/STLS upgrade."""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

from hatoba.config.schema import ListenerConfig
from hatoba.logs import mail_log, trace_line
from hatoba.net.stream import Stream
from hatoba.net.tlsbinding import channel_bindings


class SessionBase:
    # Slots here let a subclass with __slots__ of its own (ImapSession, whose
    # IDLE connections last for hours) go without a per-instance dict.
    __slots__ = (
        "ctx", "listener", "stream", "session_id", "client_ip", "tls_info", "started", "login_account", "out",
        "login_due",
    )
    # Log each line written at DEBUG (hatoba serve --debug); IMAP logs its own.
    trace_output = True

    def __init__(
        self,
        ctx: Any,
        listener: ListenerConfig,
        stream: Stream,
        session_id: str,
        client_ip: str,
    ) -> None:
        self.ctx = ctx
        self.listener = listener
        self.stream = stream
        self.session_id = session_id
        self.client_ip = client_ip
        self.tls_info: tuple[str, str, int] | None = None  # (version, cipher, bits) once encrypted
        self.started = time.monotonic()
        # The canonical account once logged in (net/login.py sets it); the
        # server gives its connection back to that account's count on close.
        self.login_account: str | None = None
        self.out: list[bytes] = []
        # Loop time by which the client must have logged in (limits.login_deadline);
        # None once the session has passed it (SMTP: a MAIL FROM was accepted).
        self.login_due: float | None = (
            asyncio.get_running_loop().time() + ctx.config.limits.login_deadline
        )
        if listener.implicit_tls:
            self._record_tls()

    # -- time limits -------------------------------------------------------------------

    def read_timeout(self, idle: float) -> float:
        """Seconds the next read may wait: `idle`, or less when the login
        deadline is nearer. Idle timeouts restart with each byte; this does not."""
        if self.login_due is None or self.login_account is not None:
            return idle
        return min(idle, max(0.0, self.login_due - asyncio.get_running_loop().time()))

    def login_overdue(self) -> bool:
        """The login deadline, not an idle timeout, ended the wait."""
        return (self.login_due is not None and self.login_account is None
                and asyncio.get_running_loop().time() >= self.login_due)

    # -- output ------------------------------------------------------------------------

    def write(self, data: bytes, *, trace: bool = True) -> None:
        if data:
            if trace and self.trace_output:
                for line in data.splitlines(keepends=True):
                    # SASL challenges (SMTP 334, POP3 "+ "): SCRAM's salt and
                    # server signature would let a reader of the log test
                    # passwords offline.
                    trace_line("->", line, secret=line.startswith((b"334 ", b"+ ")))
            self.out.append(data)

    def trace_received(self, taken: tuple[bytes, bool] | None) -> None:
        """Log the client line a core just read (conn.take_line()) at DEBUG."""
        if taken is not None:
            trace_line("<-", taken[0], secret=taken[1])

    def wire_form(self, data: bytes) -> bytes:
        """`data` as it goes on the wire (IMAP compresses after COMPRESS)."""
        return data

    async def flush(self) -> bool:
        """Send what was written; False when the client is gone or too slow to take it."""
        if not self.out:
            return True
        data, self.out = self.wire_form(b"".join(self.out)), []
        try:
            self.stream.write(data)
            if not self.stream.must_drain:  # the common case: no timer to set up and cancel
                return True
            async with asyncio.timeout(self.ctx.config.limits.command_timeout):
                await self.stream.drain()
        except (OSError, ConnectionError, TimeoutError):
            return False
        return True

    # -- TLS ----------------------------------------------------------------------------

    async def upgrade_tls(self, proto: str) -> bool:
        """STARTTLS / STLS after the go-ahead was flushed; False when the handshake
        failed (the session must then close: the stream is in no usable state)."""
        assert self.ctx.tls_context is not None
        try:
            async with asyncio.timeout(self.ctx.config.limits.tls_handshake_timeout):
                await self.stream.start_tls(self.ctx.tls_context)
        except (ssl.SSLError, OSError, TimeoutError, ConnectionError) as exc:
            mail_log("tls-failed", ip=self.client_ip, proto=proto, reason=type(exc).__name__)
            self.ctx.metrics.listener(self.listener.name).tls_failures.inc()
            return False
        self._record_tls()
        self.ctx.metrics.listener(self.listener.name).tls_handshakes.inc()
        return True

    def _record_tls(self) -> None:
        obj = self.stream.get_extra_info("ssl_object")
        if obj is not None:
            cipher = obj.cipher() or ("?", "?", 0)
            self.tls_info = (obj.version() or "TLS", cipher[0], cipher[2])

    def channel_bindings(self) -> dict[str, bytes]:
        """SCRAM-PLUS channel-binding data of this TLS connection ({} without TLS)."""
        obj = self.stream.get_extra_info("ssl_object")
        return {} if obj is None else channel_bindings(obj)
