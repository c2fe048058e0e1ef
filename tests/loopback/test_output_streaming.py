"""Large answers are streamed: a FETCH that names one big message many times,
and pipelined POP3 RETRs, cost the server about one message of memory, not
the whole answer, even while the client reads nothing.

Each test runs `hatoba serve` as a child process, weighs it (RSS) while a
client asks and then waits before reading, checks every byte it gets, and
keeps a second client (LatencyProbe) asking NOOP meanwhile.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from support.harness import ServerProcess, ServerThread, free_port_offset, make_home
from support.probe import LatencyProbe, rss_kib

BOB = ("bob@example.test", "bob-password-1")
PLAINTEXT_LOGINS = '[auth]\nplaintext_networks = ["127.0.0.1/32"]\n'
# What one client's large answer may add to the server's resident memory. The
# answers below are 240 MB (IMAP) and 100 MB (POP3); streamed, they cost a few
# messages' worth at a time.
GROWTH_LIMIT_KIB = 64 * 1024
PAUSE = 2.0  # seconds the client reads nothing after asking


def text_message(size: int, serial: int) -> bytes:
    """About `size` bytes of mail with LF line ends, some lines starting with a dot."""
    head = f"From: ann@elsewhere.example\nTo: bob@example.test\nSubject: big {serial}\n\n".encode()
    lines = []
    total = len(head)
    n = 0
    while total < size:
        n += 1
        line = (b"." if n % 50 == 0 else b"") + b"%d:%d " % (serial, n) + b"x" * 60 + b"\n"
        lines.append(line)
        total += len(line)
    return head + b"".join(lines)


def drop_file(home, name: str, data: bytes) -> None:
    """What a delivery program other than hatoba does: tmp/, then new/."""
    maildir = home.maildir(BOB[0])
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    (maildir / "tmp" / name).write_bytes(data)
    os.rename(maildir / "tmp" / name, maildir / "new" / name)


class PeakRss:
    """The highest resident memory a process reaches while this is open, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_kib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_kib(self.pid))


@pytest.fixture
def served(tmp_path: Path):
    """A `hatoba serve` child whose users may log in without TLS on 127.0.0.1."""
    offset = free_port_offset()
    home = make_home(tmp_path / "h", port_offset=offset, extra_config=PLAINTEXT_LOGINS)
    return home, offset


def connect(port: int) -> socket.socket:
    """A connection to a listener of the child, which may open a moment after its SMTP port."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def assert_bounded(growth: int, probe: LatencyProbe) -> None:
    print(f"RSS growth {growth // 1024} MiB; {probe.summary()}")
    assert growth < GROWTH_LIMIT_KIB, f"the server grew by {growth // 1024} MiB"
    assert probe.worst < 1.0, probe.summary()


def inbox(port: int) -> tuple[socket.socket, BinaryIO]:
    """An IMAP connection, logged in as Bob, with INBOX selected."""
    sock = connect(port)
    f = sock.makefile("rb")
    expect_line(f, rb"\* OK .*\r\n")
    sock.sendall(b"a LOGIN %s %s\r\nb SELECT INBOX\r\n" % (BOB[0].encode(), BOB[1].encode()))
    while not f.readline().startswith(b"b OK"):
        pass
    return sock, f


def expect_line(f: BinaryIO, pattern: bytes) -> re.Match[bytes]:
    line = f.readline()
    m = re.fullmatch(pattern, line)
    assert m, line[:200]
    return m


def test_fetch_of_one_message_many_times_is_streamed(served):
    home, offset = served
    message = text_message(4 * 1024 * 1024, 1)
    drop_file(home, "1700000000.big.host", message)
    wire = message.replace(b"\n", b"\r\n")
    copies = 60
    with ServerProcess(home, offset) as proc:
        sock, f = inbox(proc.port(143))
        with LatencyProbe("127.0.0.1", proc.port(143), kind="imap") as probe:
            before = rss_kib(proc.proc.pid)
            with PeakRss(proc.proc.pid) as rss:
                sock.sendall(b"c FETCH 1 (" + b" ".join([b"BODY.PEEK[]"] * copies) + b")\r\n")
                time.sleep(PAUSE)  # a client that does not read
                expect_line(f, rb"\* 1 FETCH \(BODY\[\] \{%d\}\r\n" % len(wire))
                for n in range(copies):
                    assert f.read(len(wire)) == wire, f"literal {n + 1} differs"
                    end = rb" BODY\[\] \{%d\}\r\n" % len(wire) if n < copies - 1 else rb"\)\r\n"
                    expect_line(f, end)
                expect_line(f, rb"c OK .*\r\n")
        sock.close()
    assert_bounded(rss.peak - before, probe)


def pop3_wire(message: bytes) -> bytes:
    """A RETR answer's body as RFC 1939 §3 sends it: CRLF, dot-stuffed, then the ending dot."""
    lines = message.split(b"\n")[:-1]
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines) + b".\r\n"


def test_pipelined_retrs_are_streamed_one_at_a_time(served):
    home, offset = served
    count = 400
    messages = [text_message(250_000, n) for n in range(1, count + 1)]
    for n, data in enumerate(messages, start=1):
        drop_file(home, f"{1700000000 + n}.m{n}.host", data)
    with ServerProcess(home, offset) as proc:
        sock = connect(proc.port(110))
        f = sock.makefile("rb")
        expect_line(f, rb"\+OK .*\r\n")
        sock.sendall(b"USER %s\r\nPASS %s\r\n" % (BOB[0].encode(), BOB[1].encode()))
        expect_line(f, rb"\+OK .*\r\n")
        expect_line(f, rb"\+OK .*\r\n")
        with LatencyProbe("127.0.0.1", proc.port(143), kind="imap") as probe:
            before = rss_kib(proc.proc.pid)
            with PeakRss(proc.proc.pid) as rss:
                sock.sendall(b"".join(b"RETR %d\r\n" % n for n in range(1, count + 1)))
                time.sleep(PAUSE)  # a client that does not read
                for n in range(count):
                    expect_line(f, rb"\+OK .*\r\n")
                    wire = pop3_wire(messages[n])
                    assert f.read(len(wire)) == wire, f"message {n + 1} differs"
        sock.sendall(b"QUIT\r\n")
        expect_line(f, rb"\+OK .*\r\n")
        sock.close()
    assert_bounded(rss.peak - before, probe)


def test_fetch_naming_too_many_items_is_refused(tmp_path):
    most = 20
    home = make_home(tmp_path / "h", extra_config=PLAINTEXT_LOGINS + f"[limits]\nmax_fetch_items = {most}\n")
    drop_file(home, "1700000000.small.host", text_message(2000, 1))
    with ServerThread(home) as server:
        sock, f = inbox(server.port("imap"))
        items = [b"BODY.PEEK[]<%d.1>" % n for n in range(most + 1)]
        sock.sendall(b"c FETCH 1 (" + b" ".join(items) + b")\r\n")
        expect_line(f, rb"c NO \[LIMIT\] .*\r\n")
        sock.sendall(b"d FETCH 1 (" + b" ".join(items[:most]) + b")\r\n")
        answer = f.readline()
        assert answer.startswith(b"* 1 FETCH (BODY[]<0> {1}"), answer[:80]
        while not answer.startswith(b"d "):
            answer = f.readline()
        assert answer.startswith(b"d OK"), answer
        sock.close()
