"""IMAP COMPRESS=DEFLATE (RFC 4978) against hostile input: a deflate bomb is
inflated a bounded piece at a time (the server's memory stays put), and
invalid deflate data ends the session with one log line, no traceback.
Measured on `hatoba serve`."""

import socket
import threading
import time
import zlib

from support.harness import PASSWORDS, ServerProcess, free_port_offset, make_home, wait_for
from support.probe import LatencyProbe, PeakRss, rss_kib, wait_listening

SESSIONS = 4
INFLATED = 128 * 2**20  # what each session's bomb inflates to
BOUND_KIB = 40 * 1024  # growth allowed over the idle server (inflating a whole read at once took 64 MiB a read)


def deflate_bomb() -> bytes:
    """ "c NOOP AAAA…" (INFLATED bytes, one line) then "d NOOP", as one COMPRESS stream."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = b"A" * 2**20
    parts = [z.compress(b"c NOOP ")]
    parts += [z.compress(chunk) for _ in range(INFLATED // len(chunk))]
    parts.append(z.compress(b"\r\nd NOOP\r\n") + z.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(parts)


def compressed_session(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"a LOGIN alice@example.test %s\r\n" % PASSWORDS["alice@example.test"].encode())
    assert f.readline().startswith(b"a OK")
    s.sendall(b"b COMPRESS DEFLATE\r\n")
    assert f.readline().startswith(b"b OK")
    return s


def read_inflated(s: socket.socket, until: bytes) -> bytes:
    """The server's compressed answers, inflated, until `until` or the end."""
    z, got = zlib.decompressobj(-15), b""
    while until not in got:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += z.decompress(chunk)
    return got


def bomb_session(s: socket.socket, bomb: bytes, answers: list[bytes]) -> None:
    with s:
        s.sendall(bomb)
        answers.append(read_inflated(s, b"d OK"))


def start_server(tmp_path):
    offset = free_port_offset()
    home = make_home(tmp_path / "h", port_offset=offset,
                     extra_config='[auth]\nplaintext_networks = ["127.0.0.1/32"]\n')
    return ServerProcess(home, offset)


def test_a_deflate_bomb_is_inflated_a_piece_at_a_time(tmp_path):
    bomb = deflate_bomb()
    with start_server(tmp_path) as proc:
        port = proc.port(143)
        wait_listening("127.0.0.1", port)
        # Logged in first: a login's Argon2 check takes 64 MiB for a moment.
        socks = [compressed_session(port) for _ in range(SESSIONS)]
        time.sleep(0.5)
        before = rss_kib(proc.proc.pid)
        answers: list[bytes] = []
        with LatencyProbe("127.0.0.1", port, "imap") as probe, PeakRss(proc.proc.pid) as rss:
            sessions = [threading.Thread(target=bomb_session, args=(s, bomb, answers)) for s in socks]
            for t in sessions:
                t.start()
            for t in sessions:
                t.join(120)
        log = proc.log_path.read_text()
    print(f"bomb {len(bomb)} bytes; RSS before {before} KiB, peak {rss.peak} KiB; {probe.summary()}")
    assert len(answers) == SESSIONS
    for answer in answers:
        assert b"c BAD Command line too long" in answer and b"d OK" in answer, answer[-300:]
    assert rss.peak - before < BOUND_KIB
    assert probe.worst < 1.0, probe.summary()
    assert "Traceback" not in log


def test_invalid_deflate_data_closes_the_session_with_one_line(tmp_path):
    with start_server(tmp_path) as proc:
        port = proc.port(143)
        wait_listening("127.0.0.1", port)
        with compressed_session(port) as s:
            s.sendall(b"\xff" * 64)  # block type 3: not deflate
            answer = read_inflated(s, b"never")  # until the server closes
        assert b"* BYE Invalid compressed data" in answer
        with compressed_session(port) as s:  # the server goes on
            pass
        assert wait_for(lambda: "invalid compressed input" in proc.log_path.read_text())
        log = proc.log_path.read_text()
    assert "Traceback" not in log
    assert sum("invalid compressed input" in line for line in log.splitlines()) == 1
