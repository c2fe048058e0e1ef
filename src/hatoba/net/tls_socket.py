"""TlsSocketTransport: an implicit-TLS connection served straight from its socket.

Stream (net/stream.py) does TLS over an ssl.SSLObject and two memory BIOs,
fed by the event loop's transport. A memory BIO keeps the largest size it
ever held for as long as the connection lives: after one FETCH of a
message over 16 KB, an IMAP connection in IDLE holds about 33 KB of empty
buffers for hours, and a fresh one holds the handshake's 2.5 KB. Here
OpenSSL reads and writes the socket itself (an ssl.SSLSocket without
blocking, the documented way), so there are no BIOs, and no event-loop
transport beside it either: the loop only watches the descriptor.

Implicit-TLS ports (993, 995, 465, https) are served this way. STARTTLS
keeps Stream's BIOs: the plaintext transport that carried the command
cannot hand its socket over, and the client's first TLS bytes may already
have been read by it. So does a port whose ClientHello must be seen before
a certificate is chosen (TLS-ALPN-01, acme/challenges.py).

The transport gives its protocol (a Stream) decrypted bytes as a plaintext
transport would: connection_made at accept, data_received, eof_received,
connection_lost, pause_writing and resume_writing. start_handshake(done)
runs the handshake first; `done(None)` or `done(exc)` says how it went.

Rules kept from the loop's own transports:
- connection_lost runs once, in a later turn of the loop, after the socket
  is closed.
- Writing pauses the protocol above HIGH_WATER buffered bytes and resumes
  it below LOW_WATER.
- close() sends what is buffered, then close_notify, then closes; abort()
  closes now.
- One wake-up reads at most MAX_READS records, so a fast sender cannot
  hold the loop; what OpenSSL has already decrypted is read in the next turn.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
from collections.abc import Callable
from typing import Any

CHUNK = 16384  # the largest TLS record's payload: one SSL_write, one record
HIGH_WATER = 64 * 1024
LOW_WATER = 16 * 1024
MAX_READS = 16


class TlsSocketTransport(asyncio.Transport):
    __slots__ = ("_loop", "_sock", "_fd", "_protocol", "_peername", "_handshake_done",
                 "_pending", "_buffered", "_reading", "_paused", "_writer_on", "_closing", "_closed",
                 "_writing_paused", "_want_read_to_write", "_read_soon", "_secure")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: ssl.SSLSocket, protocol: asyncio.Protocol) -> None:
        """`sock`: a server-side SSLSocket, not blocking, its handshake not started."""
        self._loop = loop
        self._sock: ssl.SSLSocket | None = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        try:
            self._peername: Any = sock.getpeername()  # kept: asked for after a reset too (logs)
        except OSError:  # reset already: the handshake finds out
            self._peername = None
        self._handshake_done: Callable[[BaseException | None], None] | None = None
        # What waits to be written, the first being written; made when needed (an empty
        # deque is half a kilobyte, and an idle connection has nothing waiting).
        self._pending: collections.deque[bytes] | None = None
        self._buffered = 0
        self._reading = False  # the loop watches for input
        self._paused = False  # the protocol asked for no more input for now
        self._writer_on = False
        self._closing = False
        self._closed = False
        self._writing_paused = False
        self._want_read_to_write = False  # SSL_write must read the peer's next record first
        self._read_soon: asyncio.Handle | None = None
        self._secure = False  # the handshake is done: close_notify can be said
        protocol.connection_made(self)

    # -- the handshake -------------------------------------------------------------------

    def start_handshake(self, done: Callable[[BaseException | None], None]) -> None:
        if self._closed:
            done(ConnectionResetError("connection closed before the TLS handshake"))
            return
        self._handshake_done = done
        self._watch_input()
        self._step_handshake()

    def _step_handshake(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._stop_writer()
            return
        except ssl.SSLWantWriteError:
            self._start_writer()
            return
        except (ssl.SSLError, OSError, ValueError) as exc:
            self._end_handshake(exc)
            return
        self._stop_writer()
        self._secure = True
        self._end_handshake(None)
        if not self._closed:
            self._read_later()  # the client's first command may have come with its Finished

    def _end_handshake(self, exc: BaseException | None) -> None:
        done, self._handshake_done = self._handshake_done, None
        if exc is not None:
            self._close_now(None)  # the alert, if any, went with the failed step
        if done is not None:
            done(exc)

    # -- reading -------------------------------------------------------------------------

    def _watch_input(self) -> None:
        if not self._reading and not self._closed:
            self._loop.add_reader(self._fd, self._readable)
            self._reading = True

    def _unwatch_input(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def _read_later(self) -> None:
        if self._read_soon is None:
            self._read_soon = self._loop.call_soon(self._read_now)

    def _read_now(self) -> None:
        self._read_soon = None
        if not self._closed and not self._paused and self._handshake_done is None:
            self._readable()

    def _readable(self) -> None:
        if self._handshake_done is not None:
            self._step_handshake()
            return
        if self._want_read_to_write:
            self._want_read_to_write = False
            self._flush()
            if self._paused and not self._want_read_to_write:
                self._unwatch_input()  # it was watched for the write alone
                return
        sock = self._sock
        for _ in range(MAX_READS):
            if sock is None or self._paused or self._closed:
                return
            try:
                data = sock.recv(CHUNK)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLWantWriteError:  # a renegotiation-like step: wait until it can write
                self._start_writer()
                return
            except (ssl.SSLError, OSError) as exc:
                self._close_now(exc)
                return
            if not data:  # the peer's close_notify, or its end of the connection
                self._unwatch_input()
                if not self._protocol.eof_received():
                    self.close()
                return
            self._protocol.data_received(data)
            sock = self._sock
        if sock is not None and sock.pending():
            self._read_later()  # decrypted already: nothing on the socket would wake us for it

    def pause_reading(self) -> None:
        self._paused = True
        if not self._want_read_to_write:  # else the peer's next record lets a write go on
            self._unwatch_input()

    def resume_reading(self) -> None:
        if not self._paused or self._closed:
            return
        self._paused = False
        self._watch_input()
        self._read_later()

    def is_reading(self) -> bool:
        return not self._paused and not self._closed

    # -- writing -------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._closed or not data:
            return
        view = memoryview(data)
        if self._pending is None:
            self._pending = collections.deque()
        for start in range(0, len(view), CHUNK):
            self._pending.append(bytes(view[start:start + CHUNK]))
        self._buffered += len(view)
        if not self._writer_on and not self._want_read_to_write:
            self._flush()
        self._maybe_pause_protocol()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def get_write_buffer_size(self) -> int:
        return self._buffered

    def can_write_eof(self) -> bool:
        return False

    def _flush(self) -> None:
        """Write what is buffered until the socket is full. A record OpenSSL could not finish
        is offered again, the same bytes, when the socket takes more (SSL_write's rule)."""
        sock = self._sock
        pending = self._pending
        while pending and sock is not None:
            chunk = pending[0]
            try:
                sock.send(chunk)
            except ssl.SSLWantWriteError:
                self._start_writer()
                return
            except ssl.SSLWantReadError:
                self._stop_writer()
                self._want_read_to_write = True
                self._watch_input()  # even while reading is paused
                return
            except (ssl.SSLError, OSError) as exc:
                self._close_now(exc)
                return
            pending.popleft()
            self._buffered -= len(chunk)
        if not pending:
            self._pending = None
        self._stop_writer()
        self._maybe_resume_protocol()
        if self._closing and self._pending is None:
            self._finish_close()

    def _writable(self) -> None:
        if self._handshake_done is not None:
            self._step_handshake()
        else:
            self._flush()

    def _start_writer(self) -> None:
        if not self._writer_on and not self._closed:
            self._loop.add_writer(self._fd, self._writable)
            self._writer_on = True

    def _stop_writer(self) -> None:
        if self._writer_on:
            self._loop.remove_writer(self._fd)
            self._writer_on = False

    def _maybe_pause_protocol(self) -> None:
        if not self._writing_paused and self._buffered > HIGH_WATER:
            self._writing_paused = True
            self._protocol.pause_writing()

    def _maybe_resume_protocol(self) -> None:
        if self._writing_paused and self._buffered <= LOW_WATER:
            self._writing_paused = False
            self._protocol.resume_writing()

    # -- the end -------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing or self._closed

    def close(self) -> None:
        """Send what is buffered, then close_notify, then close."""
        if self._closing or self._closed:
            return
        self._closing = True
        self._unwatch_input()
        if not self._pending:
            self._finish_close()

    def abort(self) -> None:
        self._close_now(None)

    def _finish_close(self) -> None:
        sock = self._sock
        if sock is not None and self._secure:
            try:
                sock.unwrap()  # sends close_notify; the peer's is not waited for
            except (ssl.SSLError, OSError, ValueError):
                pass
        self._close_now(None)

    def _close_now(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = self._closing = True
        self._unwatch_input()
        self._stop_writer()
        if self._read_soon is not None:
            self._read_soon.cancel()
            self._read_soon = None
        self._pending = None
        self._buffered = 0
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        self._loop.call_soon(self._protocol.connection_lost, exc)

    # -- about the connection ------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peername if self._peername is not None else default
        if name == "sockname":
            try:
                return self._sock.getsockname() if self._sock is not None else default
            except OSError:
                return default
        if name in ("socket", "ssl_object"):
            return self._sock if self._sock is not None else default
        if name == "sslcontext":
            return self._sock.context if self._sock is not None else default
        return default

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        raise NotImplementedError("a TLS socket transport keeps its protocol")

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        raise NotImplementedError("the limits are HIGH_WATER and LOW_WATER")

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (LOW_WATER, HIGH_WATER)


def serve_tls_socket(loop: asyncio.AbstractEventLoop, conn: socket.socket, context: ssl.SSLContext,
                     protocol: asyncio.Protocol) -> TlsSocketTransport:
    """Wrap an accepted, non-blocking connection for the server side of TLS and hand it to
    `protocol` (connection_made runs now; the caller starts the handshake)."""
    sock = context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
    return TlsSocketTransport(loop, sock, protocol)
