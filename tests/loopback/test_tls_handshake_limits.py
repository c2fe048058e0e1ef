"""Implicit-TLS ports (465, 995, 993): a connection counts against the
limits from accept on, not from the end of its TLS handshake, and a
handshake that does not come is given up after limits.tls_handshake_timeout.
The server also makes sure it has a descriptor for every connection it allows."""

import dataclasses
import imaplib
import select
import socket
import subprocess
import sys
import time

from support.harness import ServerThread, wait_for
from support.probe import LatencyProbe

PER_IP = 20
HANDSHAKE_TIMEOUT = 3.0


def closed_by_server(sock: socket.socket) -> bool:
    """The server closed (or reset) this silent connection."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(1) == b""
    except OSError:
        return True


def wait_closed(socks: list[socket.socket], seconds: float) -> list[socket.socket]:
    """The sockets still open after `seconds` (or once all are closed)."""
    deadline = time.monotonic() + seconds
    open_ = list(socks)
    while open_ and time.monotonic() < deadline:
        time.sleep(0.05)
        open_ = [s for s in open_ if not closed_by_server(s)]
    return open_


def test_half_open_handshakes_count_and_time_out(hatoba_home):
    config = hatoba_home.config()
    limits = dataclasses.replace(config.limits, max_connections_per_ip=PER_IP,
                                 tls_handshake_timeout=HANDSHAKE_TIMEOUT)
    with ServerThread(hatoba_home, dataclasses.replace(config, limits=limits)) as server:
        tls_ports = [server.port(name) for name in ("smtps", "pop3s", "imaps")]
        with LatencyProbe("127.0.0.1", server.port("smtp"), "smtp") as probe:  # holds 1 of the address's PER_IP
            silent = [socket.create_connection(("127.0.0.1", tls_ports[i % 3]), timeout=5) for i in range(150)]
            # Those past the address's limit are closed at once, long before any handshake timeout.
            kept = wait_closed(silent, 1.0)
            assert len(kept) == PER_IP - 1
            # The kept ones are given up when their handshake does not come.
            started = time.monotonic()
            assert wait_closed(kept, HANDSHAKE_TIMEOUT + 2) == []
            assert time.monotonic() - started < HANDSHAKE_TIMEOUT + 2
            # Their places are free again: a real client gets in.
            imap = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=hatoba_home.client_context(),
                                     timeout=10)
            assert imap.noop()[0] == "OK"
            imap.logout()
            for s in silent:
                s.close()
        # Every connection was counted once and given back once.
        limiter = server.server.limiter
        assert wait_for(lambda: limiter.total == 0 and limiter.connections_from("127.0.0.1") == 0), (
            limiter.total, limiter.connections_from("127.0.0.1"))
    assert probe.worst < 1.0, probe.summary()


def test_too_few_descriptors_for_max_connections_is_said_at_start():
    # In a child process: the test runner's own descriptor limit stays as it is.
    script = (
        "import resource, logging, sys\n"
        "logging.basicConfig(level=logging.WARNING, stream=sys.stdout)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))\n"
        "from hatoba.net.server import room_for_connections\n"
        "print(room_for_connections(150), room_for_connections(1000))\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60).stdout
    assert "True False" in out
    assert "only 300 file descriptors (ulimit -n) for limits.max_connections = 1000" in out
    assert "set max_connections to 200" in out
