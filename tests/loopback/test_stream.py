"""net/stream.py over real loopback sockets: implicit TLS, STARTTLS, big writes,
cancelled reads, close_notify, failed handshakes.

Implicit TLS is tested both ways a Stream can carry it: over memory BIOs on the
loop's transport ("bio": STARTTLS, and ports that read the ClientHello first)
and with OpenSSL on the socket itself ("socket", net/tls_socket.py: what the
server's acceptor uses for implicit-TLS ports)."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import struct
import time

import pytest

from hatoba.net.stream import CHUNK, Stream, connect_accepted
from hatoba.net.tls_socket import TlsSocketTransport
from hatoba.pki.tlsctx import server_context

PATHS = ("bio", "socket")


class _AcceptingServer:
    """A listening socket whose connections go through connect_accepted, as the server's
    acceptor does (an implicit-TLS Stream gets OpenSSL on its socket)."""

    def __init__(self, factory) -> None:  # type: ignore[no-untyped-def]
        self.factory = factory
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.sock.fileno(), self._accept)
        self.sockets = [self.sock]

    def _accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        self.loop.create_task(connect_accepted(self.loop, self.factory, conn))

    async def __aenter__(self):  # type: ignore[no-untyped-def]
        return self

    async def __aexit__(self, *exc) -> None:  # type: ignore[no-untyped-def]
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


async def start_server(factory, path: str = "bio"):  # type: ignore[no-untyped-def]
    if path == "socket":
        return _AcceptingServer(factory)
    return await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)


def serve(handler, tls: ssl.SSLContext | None, path: str = "bio", **options):  # type: ignore[no-untyped-def]
    """Start a loopback server whose sessions run handler(stream); returns (server, port, tasks)."""
    tasks: list[asyncio.Task] = []

    def opened(stream: Stream) -> None:
        tasks.append(asyncio.get_running_loop().create_task(handler(stream)))

    async def start():
        server = await start_server(lambda: Stream(opened, tls, **options), path)
        return server, server.sockets[0].getsockname()[1], tasks

    return start()


async def session_of(tasks: list[asyncio.Task]) -> None:
    """Wait until the server side has opened its session (after its end of the handshake)."""
    for _ in range(500):
        if tasks:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no session opened")


def flooder(ended: list[float]):  # type: ignore[no-untyped-def]
    """A session that writes far more than the kernel buffers hold, closes, and notes in
    `ended` how long the connection took to end after that."""

    async def flood_then_close(stream: Stream) -> None:
        stream.write(b"x" * (32 * 1024 * 1024))
        stream.close()
        closed_at = asyncio.get_running_loop().time()
        while not stream._eof:  # connection_lost sets it
            await asyncio.sleep(0.05)
        ended.append(asyncio.get_running_loop().time() - closed_at)

    return flood_then_close


def carried_as(stream: Stream) -> str:
    """How the stream's TLS is carried: "socket" (no BIOs at all) or "bio"."""
    if stream._tls is not None:
        assert stream._tls_in is not None
        return "bio"
    assert stream._tls_in is None and stream._tls_out is None
    assert isinstance(stream._transport, TlsSocketTransport)
    assert isinstance(stream.get_extra_info("ssl_object"), ssl.SSLSocket)
    return "socket"


async def tls_client(port: int, client_ctx: ssl.SSLContext):
    return await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname="mail.example.test")


async def ready_then_hello_world(handler, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext,
                                 path: str = "bio") -> None:
    """A client that waits for "ready", sends one line, waits 0.4 s and closes; the session is `handler`."""
    server, port, tasks = await serve(handler, server_ctx, path)
    async with server:
        reader, writer = await tls_client(port, client_ctx)
        assert await reader.readline() == b"ready\n"
        writer.write(b"hello world\n")
        await writer.drain()
        await asyncio.sleep(0.4)
        writer.close()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)


@pytest.fixture
def contexts(hatoba_home):
    return server_context(hatoba_home.config().tls), hatoba_home.client_context()


@pytest.mark.parametrize("path", PATHS)
def test_implicit_tls_echo_of_a_large_write_and_close_notify(contexts, path):
    server_ctx, client_ctx = contexts
    payload = bytes(range(256)) * 4096 + b"end"  # 1 MiB + 3: many TLS records

    async def echo_all(stream: Stream) -> None:
        got = bytearray()
        while len(got) < len(payload):
            data = await stream.read(65536)
            assert data, "input ended early"
            got += data
        assert stream.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        assert carried_as(stream) == path
        stream.write(bytes(got))
        await stream.drain()
        stream.close()

    async def main():
        server, port, tasks = await serve(echo_all, server_ctx, path)
        async with server:
            reader, writer = await tls_client(port, client_ctx)
            writer.write(payload)
            back = await asyncio.wait_for(reader.readexactly(len(payload)), 20)
            # A clean TLS close (close_notify) reads as the end of input, not as an error.
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
            await asyncio.gather(*tasks)
            return back

    assert asyncio.run(main()) == payload


@pytest.mark.parametrize("path", PATHS)
def test_reads_wait_and_a_cancelled_read_loses_nothing(contexts, path):
    server_ctx, client_ctx = contexts
    seen: list[bytes] = []

    async def reader_task(stream: Stream) -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await stream.read(100)  # nothing sent yet: waits, then is cancelled
        stream.write(b"ready\n")
        await stream.drain()
        await asyncio.sleep(0.2)  # the client's line arrives while nobody reads
        seen.append(await stream.read(3))
        seen.append(await stream.read(100))
        seen.append(await stream.read(100))  # the client closed: end of input
        stream.close()

    asyncio.run(ready_then_hello_world(reader_task, server_ctx, client_ctx, path))
    assert seen == [b"hel", b"lo world\n", b""]


@pytest.mark.parametrize("path", PATHS)
def test_a_timed_read_times_out_once_loses_nothing_and_a_wake_does_not_restart_it(contexts, path):
    server_ctx, client_ctx = contexts
    seen: list[object] = []

    async def reader_task(stream: Stream) -> None:
        loop = asyncio.get_running_loop()
        # A wake() with nothing to read goes on waiting, for what is left of the time.
        loop.call_later(0.15, stream.wake)
        started = loop.time()
        with pytest.raises(TimeoutError):
            await stream.read(100, 0.3)
        seen.append(round(loop.time() - started, 1))
        stream.write(b"ready\n")
        await stream.drain()
        await asyncio.sleep(0.2)  # the client's line arrives while nobody reads
        seen.append(await stream.read(100, 0.01))  # here already: no wait, no timeout
        seen.append(await stream.read(100, 5))  # the client closed: end of input
        stream.close()

    asyncio.run(ready_then_hello_world(reader_task, server_ctx, client_ctx, path))
    assert seen == [0.3, b"hello world\n", b""]


def test_starttls_drops_plaintext_sent_after_the_command(contexts):
    server_ctx, client_ctx = contexts
    after_tls: list[bytes] = []

    async def starttls(stream: Stream) -> None:
        line = await stream.read(100)
        assert line.startswith(b"STARTTLS\r\n")
        stream.write(b"OK go\r\n")
        await stream.drain()
        await stream.start_tls(server_ctx)
        after_tls.append(await stream.read(100))
        stream.close()

    async def main():
        server, port, tasks = await serve(starttls, None)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            # The injected command rides in the same packet as STARTTLS.
            writer.write(b"STARTTLS\r\nINJECTED\r\n")
            assert await reader.readline() == b"OK go\r\n"
            await writer.start_tls(client_ctx, server_hostname="mail.example.test")
            writer.write(b"SECRET\r\n")
            await writer.drain()
            await asyncio.wait_for(asyncio.gather(*tasks), 10)
            writer.close()

    asyncio.run(main())
    assert after_tls == [b"SECRET\r\n"]


@pytest.mark.parametrize("path", PATHS)
def test_a_failed_handshake_never_opens_a_session_and_is_one_log_line(contexts, caplog, path):
    server_ctx, _ = contexts
    opened: list[Stream] = []

    async def never(stream: Stream) -> None:
        opened.append(stream)

    async def main():
        server, port, _tasks = await serve(never, server_ctx, path)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            # Not a ClientHello: a TLS record header for an unknown content type.
            writer.write(struct.pack("!BHH", 0x99, 0x0303, 5) + b"hello")
            closed = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            return closed

    with caplog.at_level(logging.INFO, logger="hatoba.net.stream"):
        answer = asyncio.run(main())
    assert opened == []
    assert answer == b"" or answer[0] == 0x15  # closed, perhaps after a TLS alert record
    lines = [r.getMessage() for r in caplog.records if r.name == "hatoba.net.stream"]
    assert len(lines) == 1 and lines[0].startswith("TLS handshake with 127.0.0.1 failed")
    assert "\n" not in lines[0]


def test_receiving_pauses_while_much_waits_unread():
    limit = 4 * CHUNK
    total = 64 * CHUNK
    held: list[int] = []

    async def slow_reader(stream: Stream) -> None:
        await asyncio.sleep(0.5)  # the client writes much more than the limit meanwhile
        held.append(stream._size)
        got = 0
        while got < total:
            data = await stream.read(CHUNK)
            assert data
            got += len(data)
        held.append(got)
        stream.close()

    async def main():
        tasks: list[asyncio.Task] = []

        def opened(stream: Stream) -> None:
            tasks.append(asyncio.get_running_loop().create_task(slow_reader(stream)))

        server = await asyncio.get_running_loop().create_server(
            lambda: Stream(opened, max_buffer=limit), "127.0.0.1", 0
        )
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"x" * total)
            await asyncio.wait_for(asyncio.gather(*tasks), 20)
            writer.close()

    asyncio.run(main())
    unread_at_pause, received = held
    # Held back at the limit plus at most one receive's worth; the rest waited in the kernel.
    assert unread_at_pause <= limit + 256 * 1024
    assert unread_at_pause < total
    assert received == total


@pytest.mark.parametrize("path", PATHS)
def test_tls_receiving_pauses_while_much_waits_unread_and_loses_nothing(contexts, path):
    server_ctx, client_ctx = contexts
    limit = 4 * CHUNK
    payload = bytes(range(256)) * (64 * CHUNK // 256)
    held: list[object] = []

    async def slow_reader(stream: Stream) -> None:
        await asyncio.sleep(0.5)  # the client writes much more than the limit meanwhile
        held.append(stream._size)
        got = bytearray()
        while len(got) < len(payload):
            data = await stream.read(CHUNK)
            assert data
            got += data
        held.append(bytes(got) == payload)
        stream.close()

    async def main():
        server, port, tasks = await serve(slow_reader, server_ctx, path, max_buffer=limit)
        async with server:
            reader, writer = await tls_client(port, client_ctx)
            writer.write(payload)
            await session_of(tasks)
            await asyncio.wait_for(asyncio.gather(*tasks), 20)
            writer.close()

    asyncio.run(main())
    unread_at_pause, intact = held
    assert unread_at_pause <= limit + 256 * 1024  # held back near the limit; the rest waited
    assert unread_at_pause < len(payload)
    assert intact


@pytest.mark.parametrize("path", ("plain", *PATHS))
def test_close_drops_what_a_client_that_stopped_reading_never_took(contexts, path, monkeypatch):
    from hatoba.net import stream as stream_module

    server_ctx, client_ctx = contexts
    tls = None if path == "plain" else server_ctx
    monkeypatch.setattr(stream_module, "CLOSE_TIMEOUT", 0.5)
    ended: list[float] = []

    async def main():
        server, port, tasks = await serve(flooder(ended), tls, "bio" if path == "plain" else path)
        async with server:
            # The client's reader pauses its transport once 2 x 4 KiB wait unread: then the
            # kernel's buffers fill, and nothing more is taken.
            _reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, limit=4096,
                **({} if tls is None else {"ssl": client_ctx, "server_hostname": "mail.example.test"}))
            await session_of(tasks)
            await asyncio.wait_for(asyncio.gather(*tasks), 10)
            writer.close()

    asyncio.run(main())
    assert ended and ended[0] < 5


@pytest.mark.parametrize("path", PATHS)
def test_a_client_that_half_closes_without_close_notify_still_gets_its_answer(contexts, path):
    """`a LOGOUT`, then FIN without close_notify (some clients end so): the reply still goes out."""
    server_ctx, client_ctx = contexts
    heard: list[bytes] = []

    async def answer_after_the_end(stream: Stream) -> None:
        got = b""
        while data := await stream.read(100, 10):
            got += data
        heard.append(got)
        stream.write(b"* BYE done\r\n")
        await stream.drain()
        stream.close()

    def client(port: int) -> bytes:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        tls = client_ctx.wrap_socket(raw, server_hostname="mail.example.test")
        tls.sendall(b"a LOGOUT\r\n")
        socket.socket.shutdown(tls, socket.SHUT_WR)  # the TCP FIN alone: no close_notify
        answer = b""
        try:
            while chunk := tls.recv(100):
                answer += chunk
        finally:
            tls.close()
        return answer

    async def main() -> bytes:
        server, port, tasks = await serve(answer_after_the_end, server_ctx, path)
        async with server:
            answer = await asyncio.to_thread(client, port)
            await asyncio.wait_for(asyncio.gather(*tasks), 10)
            return answer

    assert asyncio.run(main()) == b"* BYE done\r\n"
    assert heard == [b"a LOGOUT\r\n"]


@pytest.mark.parametrize("path", PATHS)
def test_a_client_that_never_says_hello_is_dropped_at_the_handshake_timeout(contexts, path):
    server_ctx, _ = contexts
    opened: list[Stream] = []
    failed: list[Stream] = []

    async def main() -> tuple[bytes, float]:
        loop = asyncio.get_running_loop()

        def factory() -> Stream:
            return Stream(opened.append, server_ctx, handshake_timeout=0.3, on_fail=failed.append)

        async with await start_server(factory, path) as server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            started = loop.time()
            answer = await asyncio.wait_for(reader.read(), 10)
            waited = loop.time() - started
            writer.close()
            await asyncio.sleep(0.1)  # connection_lost runs on_fail
            return answer, waited

    answer, waited = asyncio.run(main())
    assert answer == b"" and 0.25 < waited < 5
    assert opened == [] and len(failed) == 1


class _QuietTransport(asyncio.Transport):
    """A transport that is never closing and drops what is written (Stream's own logic only)."""

    def is_closing(self) -> bool:
        return False

    def write(self, data) -> None:  # type: ignore[no-untyped-def]
        pass


def test_bytes_that_come_in_the_loop_turn_the_read_timed_out_are_read_not_a_timeout():
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        stream = Stream(lambda s: None)
        stream.connection_made(_QuietTransport())
        reading = asyncio.ensure_future(stream.read(100, 0.01))
        await asyncio.sleep(0)  # waiting now, its timer set
        loop.call_later(0.02, stream.data_received, b"a1 NOOP\r\n")  # due after the read's deadline
        time.sleep(0.05)  # both are due when the loop next looks: the timer runs first
        return await reading

    assert asyncio.run(main()) == b"a1 NOOP\r\n"


def test_a_lone_server_serves_implicit_tls_from_the_socket_and_answers_a_half_close(server, hatoba_home):
    """One worker (no balancing): imaps, pop3s and smtps still get the socket transport, and
    a client that says its last command and half-closes gets the answer."""
    from hatoba.net.acceptor import BalancedAcceptor

    listening = server.server._listening
    assert all(isinstance(listening[name], BalancedAcceptor) for name in ("imaps", "pop3s", "smtps"))
    assert not isinstance(listening["imap"], BalancedAcceptor)  # STARTTLS: the loop's own server
    ctx = hatoba_home.client_context()
    raw = socket.create_connection(("127.0.0.1", server.port("imaps")), timeout=10)
    tls = ctx.wrap_socket(raw, server_hostname="mail.example.test")
    try:
        assert tls.recv(1000).startswith(b"* OK")
        tls.sendall(b"a LOGOUT\r\n")
        socket.socket.shutdown(tls, socket.SHUT_WR)  # FIN, no close_notify
        answer = b""
        while chunk := tls.recv(1000):
            answer += chunk
    finally:
        tls.close()
    assert answer.startswith(b"* BYE") and b"a OK" in answer
