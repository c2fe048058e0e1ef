"""Stream: one connection's bytes both ways, with its TLS done here.

Every session (SMTP, POP3, IMAP) reads, writes and starts TLS through one
of these. TLS is an ssl.SSLObject over two memory BIOs, fed from a plain
transport, instead of asyncio's TLS transport and streams. Why: IMAP
clients keep IDLE connections open for hours, thousands at a time, and
asyncio's layers cost about 9 KiB per connection on top of OpenSSL's own
16 KiB (a 256 KiB receive buffer whose first page is always touched, a
StreamReader, StreamReaderProtocol and StreamWriter, three futures, two
deques). Here an idle connection is this object, its transport and
OpenSSL's state; a future exists only while someone waits.

Rules:
- read(n) returns what has arrived (at most n bytes), b"" at end of input.
  A cancelled or timed-out read loses nothing: the bytes stay for the next read.
- wait_for_input() waits without reading, and wake() ends that wait early.
  park() goes further: the session's task ends, and on_open runs again when
  there is something to do (an IMAP IDLE that lasts hours holds no task).
- TLS records go through the BIOs at most CHUNK bytes at a time, because a
  memory BIO keeps the largest size it ever held for as long as it lives.
- start_tls() drops plaintext that arrived after the command that asked
  for TLS: it is never read as if it had come encrypted (CVE-2011-0411).
- Receiving pauses while more than max_buffer bytes wait to be read.
- on_accept(stream) runs first, before any TLS handshake, so that a
  connection counts against the limits from accept on; when it returns
  False the connection is closed and nothing else runs. on_fail(stream) runs
  instead of on_open when the connection ends before it could carry a session.
- With a `chooser` whose reads_hello() is true, an implicit-TLS stream reads
  the ClientHello before it starts the handshake and lets the chooser pick
  the context from it (TLS-ALPN-01 answers, acme/challenges.py); the bytes
  are then fed to the handshake as they came. The wait is bounded by the
  handshake timeout and by one TLS record.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any, Protocol

from hatoba.net.tls_socket import TlsSocketTransport, serve_tls_socket

log = logging.getLogger(__name__)

CHUNK = 16384  # the largest TLS record's payload
HANDSHAKE_TIMEOUT = 30.0
CLOSE_TIMEOUT = 30.0
MAX_BUFFER = 2**20
MAX_HELLO = 16384 + 5  # one TLS record
HELLO_INCOMPLETE = "incomplete"


class ContextChooser(Protocol):
    def reads_hello(self) -> bool:
        """Whether the next implicit-TLS connection must show its ClientHello first."""

    def context_for(self, hello: bytes) -> ssl.SSLContext | None | str:
        """A context for this ClientHello, None for the usual one, HELLO_INCOMPLETE to read more."""


class Stream(asyncio.Protocol):
    __slots__ = (
        "_transport", "_on_open", "_implicit_tls", "_tls", "_tls_in", "_tls_out", "_handshake",
        "_timer", "_chunks", "_size", "_waiter", "_eof", "_error", "_write_paused", "_drain_waiter",
        "_read_paused", "_max_buffer", "_parked", "_on_accept", "_on_fail", "_handshake_timeout",
        "_chooser", "_hello",
    )

    def __init__(
        self,
        on_open: Callable[[Stream], None],
        implicit_tls: ssl.SSLContext | None = None,
        *,
        max_buffer: int = MAX_BUFFER,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        on_accept: Callable[[Stream], bool] | None = None,
        on_fail: Callable[[Stream], None] | None = None,
        chooser: ContextChooser | None = None,
    ) -> None:
        """`on_open(stream)` runs once the connection can carry a session: at
        once, or after the TLS handshake when `implicit_tls` is given."""
        self._transport: asyncio.Transport | None = None
        self._on_open = on_open
        self._implicit_tls = implicit_tls
        self._tls: ssl.SSLObject | None = None
        self._tls_in: ssl.MemoryBIO | None = None
        self._tls_out: ssl.MemoryBIO | None = None
        self._handshake: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._eof = False
        self._error: Exception | None = None
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        self._max_buffer = max_buffer
        self._parked = False
        self._on_accept = on_accept
        self._on_fail = on_fail
        self._handshake_timeout = handshake_timeout
        self._chooser = chooser
        self._hello: bytes | None = None  # the ClientHello so far, while the chooser waits for it

    # -- the transport's side ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
        accept, self._on_accept = self._on_accept, None
        if accept is not None and not accept(self):
            self._on_fail = None
            return
        if self._implicit_tls is None:
            self._opened()
            return
        handshake = self._handshake = asyncio.get_running_loop().create_future()
        self._timer = asyncio.get_running_loop().call_later(self._handshake_timeout, self._handshake_timed_out)
        handshake.add_done_callback(self._implicit_handshake_done)
        if isinstance(transport, TlsSocketTransport):  # OpenSSL on the socket: no BIOs here
            self._implicit_tls = None
            transport.start_handshake(self._socket_handshake_done)
            return
        if self._chooser is not None and self._chooser.reads_hello():
            self._hello = b""
            return
        self._begin_tls(self._implicit_tls)
        self._implicit_tls = None

    def socket_tls_context(self) -> ssl.SSLContext | None:
        """The context to serve this connection's TLS with straight from its socket
        (net/tls_socket.py), asked at accept; None for a plaintext port (STARTTLS may
        follow) and for one whose ClientHello must be seen before a context is chosen."""
        if self._implicit_tls is None or (self._chooser is not None and self._chooser.reads_hello()):
            return None
        return self._implicit_tls

    def _socket_handshake_done(self, exc: BaseException | None) -> None:
        if exc is not None:
            self._fail_handshake(exc)
            return
        handshake, self._handshake = self._handshake, None
        if handshake is not None and not handshake.done():
            handshake.set_result(None)

    def _opened(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return  # lost while the handshake finished: connection_lost runs on_fail
        self._on_fail = None  # from now on the session owns the connection's end
        self._on_open(self)

    def _implicit_handshake_done(self, handshake: asyncio.Future[None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if handshake.cancelled():
            return
        exc = handshake.exception()
        if exc is not None:
            peer = self.get_extra_info("peername") or ("?",)
            log.info("TLS handshake with %s failed: %s", peer[0], _reason(exc))
            self.abort()
            return
        self._opened()

    def _handshake_timed_out(self) -> None:
        self._timer = None
        self._fail_handshake(TimeoutError("no TLS handshake within %g s" % self._handshake_timeout))

    def data_received(self, data: bytes) -> None:
        if self._hello is not None:
            self._take_hello(data)
            return
        if self._tls is None:
            self._push(data)
            return
        assert self._tls_in is not None
        view = memoryview(data)
        for start in range(0, len(view), CHUNK):
            if self._error is not None:
                return  # a failed TLS layer reads nothing more
            self._tls_in.write(view[start:start + CHUNK])
            if self._handshake is not None:
                self._step_handshake()
                if self._handshake is not None:
                    continue
            if self._error is None:
                self._read_tls()

    def _take_hello(self, data: bytes) -> None:
        """Gather the ClientHello until the chooser can pick a context, then start the handshake on it."""
        assert self._hello is not None and self._chooser is not None
        if self._error is not None:
            return  # timed out or closed while the hello was arriving
        hello = self._hello + data
        choice = self._chooser.context_for(hello)
        if choice == HELLO_INCOMPLETE and len(hello) < MAX_HELLO:
            self._hello = hello
            return
        self._hello = None
        context = choice if isinstance(choice, ssl.SSLContext) else self._implicit_tls
        self._implicit_tls = None
        assert context is not None
        self._begin_tls(context)
        self.data_received(hello)

    def eof_received(self) -> bool:
        # Keep the transport open for writing: the session may still owe the
        # client a reply (a QUIT sent just before a half-close).
        self._eof = True
        self._wake_reader()
        self._fail_handshake(ConnectionResetError("connection closed during the TLS handshake"))
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        if exc is not None and self._error is None:
            self._error = exc
        self._wake_reader()
        self._fail_handshake(exc or ConnectionResetError("connection closed during the TLS handshake"))
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("Connection lost"))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        failed, self._on_fail = self._on_fail, None
        if failed is not None:
            failed(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the session's side -----------------------------------------------------------

    async def read(self, n: int, timeout: float | None = None) -> bytes:
        """Up to n bytes that arrived; waits when none did; b"" at the end of input.
        With `timeout`, TimeoutError when nothing arrives within that many seconds.

        The timeout is one loop timer, set only when the read must wait: a
        session reads once per command, and asyncio.timeout() around every
        read cost several times as much (a Timeout object, the task's
        cancel bookkeeping) for a timer that almost never fires."""
        deadline = None
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = None
            if timeout is not None:
                if deadline is None:
                    deadline = loop.time() + timeout
                timer = loop.call_at(deadline, _expire, waiter)
            try:
                await waiter
            except TimeoutError:
                if not self._chunks:
                    raise  # else the timer fired in the loop turn that brought bytes: take them
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        if len(data) > n:
            chunks.append(data[n:])
            data = data[:n]
        self._size -= len(data)
        if self._read_paused and self._size <= self._max_buffer // 2 and self._transport is not None:
            self._read_paused = False
            self._transport.resume_reading()
        return data

    def has_input(self) -> bool:
        """Bytes to read, or the end of input, are here now."""
        return bool(self._chunks) or self._eof or self._error is not None

    async def wait_for_input(self) -> bool:
        """Wait for bytes, the end of input, or wake(). False when woken with nothing to read."""
        if not self.has_input():
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.has_input()

    def wake(self) -> None:
        """End a wait_for_input() now (news for an IMAP IDLE, a WakeClock deadline)."""
        self._wake_reader()

    def park(self) -> None:
        """Wait with no task at all: on_open(stream) runs again, once, when input,
        its end or a wake() comes. The session decides what that call means."""
        self._parked = True
        if self.has_input():
            asyncio.get_running_loop().call_soon(self._wake_reader)

    def write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._tls is None:
            transport.write(data)
            return
        assert self._tls_out is not None
        records = []
        view = memoryview(data)
        try:
            for start in range(0, len(view), CHUNK):
                self._tls.write(view[start:start + CHUNK])
                records.append(self._tls_out.read())
        except ssl.SSLError as exc:
            self._error = exc
            transport.abort()
            return
        transport.writelines(records)

    @property
    def must_drain(self) -> bool:
        """drain() would wait or raise: the transport is full, failed or closing."""
        transport = self._transport
        return self._write_paused or self._error is not None or transport is None or transport.is_closing()

    async def drain(self) -> None:
        """Wait while the transport holds more than its high-water mark."""
        if self._error is not None:
            raise ConnectionResetError(f"Connection lost: {_reason(self._error)}")
        transport = self._transport
        if transport is None or transport.is_closing():
            await asyncio.sleep(0)  # let connection_lost run, as asyncio's drain does
            raise ConnectionResetError("Connection lost")
        if not self._write_paused:
            return
        self._drain_waiter = asyncio.get_running_loop().create_future()
        await self._drain_waiter

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """Turn this plaintext connection into a TLS one (STARTTLS, STLS)."""
        if self._tls is not None:
            raise RuntimeError("TLS is already on")
        self._chunks.clear()
        self._size = 0
        if self._read_paused and self._transport is not None:
            self._read_paused = False
            self._transport.resume_reading()
        await self._begin_tls(context)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object" and self._tls is not None:
            return self._tls
        if self._transport is None:
            return default
        try:
            return self._transport.get_extra_info(name, default)
        except (AttributeError, OSError, ValueError):  # uvloop, once the peer reset: no socket, or a closed descriptor
            return default

    def close(self) -> None:
        """Say close_notify when encrypted, then close once what was written has gone."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._tls is not None and self._handshake is None and self._error is None:
            assert self._tls_out is not None
            try:
                self._tls.unwrap()
            except (ssl.SSLError, ValueError):
                pass  # the peer's close_notify is not awaited
            closing = self._tls_out.read()
            if closing:
                transport.write(closing)
        transport.close()
        # A client that stopped reading would keep the socket (and what we
        # wrote) forever: what has not gone in CLOSE_TIMEOUT seconds is dropped.
        if transport.get_write_buffer_size():
            self._timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.abort)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- inside -----------------------------------------------------------------------

    def _push(self, data: bytes) -> None:
        if not data:
            return
        self._chunks.append(data)
        self._size += len(data)
        self._wake_reader()
        if self._size > self._max_buffer and not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()

    def _wake_reader(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._parked:
            self._parked = False
            self._on_open(self)

    def _begin_tls(self, context: ssl.SSLContext) -> asyncio.Future[None]:
        """Start the server side of a handshake; its future is the one made already, or a new one."""
        self._tls_in = ssl.MemoryBIO()
        self._tls_out = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._tls_in, self._tls_out, server_side=True)
        handshake = self._handshake
        if handshake is None:
            handshake = self._handshake = asyncio.get_running_loop().create_future()
        self._step_handshake()
        return handshake

    def _step_handshake(self) -> None:
        assert self._tls is not None
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._send_tls_output()
            return
        except (ssl.SSLError, ValueError) as exc:
            self._send_tls_output()  # the alert that tells the client why
            self._fail_handshake(exc)
            return
        self._send_tls_output()
        handshake, self._handshake = self._handshake, None
        if handshake is not None and not handshake.done():
            handshake.set_result(None)

    def _fail_handshake(self, exc: BaseException) -> None:
        handshake, self._handshake = self._handshake, None
        if handshake is None:
            return
        if self._error is None:
            self._error = exc if isinstance(exc, Exception) else ConnectionResetError(str(exc))
        if not handshake.done():
            handshake.set_exception(exc)
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()

    def _read_tls(self) -> None:
        assert self._tls is not None
        try:
            while True:
                data = self._tls.read(CHUNK)
                if not data:  # the peer's close_notify
                    self._eof = True
                    self._wake_reader()
                    break
                self._push(data)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            self._error = exc
            self._wake_reader()
            if self._transport is not None:
                self._transport.abort()
            return
        self._send_tls_output()  # post-handshake messages (key updates) want answers

    def _send_tls_output(self) -> None:
        assert self._tls_out is not None
        data = self._tls_out.read()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.replace("_", " ").lower()
    return str(exc) or type(exc).__name__


async def connect_accepted(loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.Protocol],
                           conn: socket.socket) -> None:
    """Give an accepted connection (not blocking) its protocol and transport: OpenSSL on
    the socket for a Stream that asks for it (socket_tls_context), else the loop's own."""
    protocol = factory()
    context = protocol.socket_tls_context() if isinstance(protocol, Stream) else None
    if context is None:
        await loop.connect_accepted_socket(lambda: protocol, sock=conn)
    else:
        serve_tls_socket(loop, conn, context, protocol)
