"""Before login an IMAP command may carry limits.max_command_before_login
bytes, literals included: strangers cannot make the server hold megabytes,
and its memory comes back down when they are gone. Measured on `hatoba serve`."""

import socket
import threading
import time

from support.harness import ServerProcess, free_port_offset, make_home
from support.probe import LatencyProbe, PeakRss, rss_kib, wait_listening

LITERAL = 16 * 2**20
ROUNDS, CLIENTS = 3, 4
BOUND_KIB = 40 * 1024  # growth allowed over the idle server (keeping every literal took 250 MiB and more)


def literal_flood(port: int, answers: list[bytes]) -> None:
    """LOGIN with three 16 MiB non-synchronizing literals; keep what the server says."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.makefile("rb").readline()
        payload = b"x" * LITERAL
        try:
            s.sendall(b"a LOGIN {%d+}\r\n" % LITERAL)
            for _ in range(3):
                s.sendall(payload + b" {%d+}\r\n" % LITERAL)
            s.sendall(b"\r\n")
        except OSError:
            pass  # closed on us: the answer is already there
        answers.append(_read_until_closed(s))


def _read_until_closed(s: socket.socket) -> bytes:
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except OSError:
        pass
    return got


def test_literals_before_login_are_capped_and_memory_returns(tmp_path):
    offset = free_port_offset()
    home = make_home(tmp_path / "h", port_offset=offset)
    with ServerProcess(home, offset) as proc:
        port = proc.port(143)
        wait_listening("127.0.0.1", port)
        time.sleep(0.5)
        before = rss_kib(proc.proc.pid)
        answers: list[bytes] = []
        with LatencyProbe("127.0.0.1", port, "imap") as probe, PeakRss(proc.proc.pid) as rss:
            for _ in range(ROUNDS):
                clients = [threading.Thread(target=literal_flood, args=(port, answers)) for _ in range(CLIENTS)]
                for t in clients:
                    t.start()
                for t in clients:
                    t.join(60)
            # A synchronizing literal or a line over the limit is refused, and the client may go on.
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                f = s.makefile("rb")
                f.readline()
                s.sendall(b"b LOGIN {100000}\r\n")
                sync_answer = f.readline()
                s.sendall(b"c LOGIN " + b"u" * 100000 + b" p\r\nd NOOP\r\n")
                line_answer, noop_answer = f.readline(), f.readline()
        time.sleep(0.5)
        after = rss_kib(proc.proc.pid)
        log = proc.log_path.read_text()
    print(f"RSS before {before} KiB, peak {rss.peak} KiB, after {after} KiB; {probe.summary()}")
    assert len(answers) == ROUNDS * CLIENTS
    for answer in answers:
        assert b"a NO [TOOBIG]" in answer and b"* BYE" in answer, answer[-300:]
    assert sync_answer.startswith(b"b NO [TOOBIG]")
    assert line_answer.startswith(b"c BAD Command line too long")
    assert noop_answer.startswith(b"d OK")
    assert rss.peak - before < BOUND_KIB
    assert after - before < BOUND_KIB / 2
    assert probe.worst < 1.0, probe.summary()
    assert "Traceback" not in log
