"""The http listener: the right status for each kind of bad input, and the
server still answering after it; /healthz; who may read /metrics."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from support.harness import ServerThread, make_home, wait_for
from support.scrape import get, raw, read_answer, scrape, status_of, value, wait_healthy

TLS_CLIENT_HELLO = bytes.fromhex("160301") + b"\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(32) + b"\x00" * 64
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def serve(tmp_path, extra: str = ""):
    home = make_home(tmp_path / "hatoba", extra_config="[listeners.http]\nenabled = true\n" + extra)
    return ServerThread(home)


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    """One server for the tests that leave it as they found it."""
    with serve(tmp_path_factory.mktemp("http"), "[limits]\nhttp_request_timeout = 1.0\n") as server:
        port = server.port("http")
        wait_healthy(port)
        yield server, port


def test_healthz_and_metrics_answer_loopback(http):
    _, port = http
    status, headers, body = get(port, "/healthz")
    assert (status, body) == (200, b"ok\n")
    assert headers["connection"] == "close" and headers["content-type"].startswith("text/plain")
    assert "date" in headers and headers["cache-control"] == "no-store"
    samples = scrape(port)
    assert value(samples, "hatoba_http_responses_total", code="200") >= 1


def test_head_has_the_length_and_no_body(http):
    _, port = http
    status, headers, body = get(port, "/metrics", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 1000
    answer = raw(port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n", head=True)
    assert answer.endswith(b"\r\n\r\n") and b"Content-Length: 3\r\n" in answer


def test_unknown_paths_and_methods(http):
    _, port = http
    assert get(port, "/nothing-here")[0] == 404
    assert get(port, "/metrics/")[0] == 404
    status, headers, _ = get(port, "/metrics", method="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert get(port, "/healthz", method="DELETE")[0] == 405
    assert get(port, "/healthz?verbose=1")[0] == 200  # the query does not change the route
    assert status_of(raw(port, b"GET http://mail.example.test/healthz HTTP/1.1\r\nHost: x\r\n\r\n")) == 200
    assert status_of(raw(port, b"GET /healthz HTTP/1.0\r\n\r\n")) == 200  # no Host needed in 1.0


@pytest.mark.parametrize("data, status", [
    (b"garbage\r\n\r\n", 400),
    (b"\x00\xff\xfe\r\n\r\n", 400),
    (TLS_CLIENT_HELLO, 400),
    (HTTP2_PREFACE, 505),
    (b"GET /healthz HTTP/3.0\r\nHost: x\r\n\r\n", 505),
    (b"GET /healthz HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host (RFC 9112 §3.2)
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", 400),
    (b"GET /" + b"a" * 1_000_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Endless: header line\r\n" * 50_000, 431),
])
def test_bad_input_gets_its_status_and_the_server_stays_up(http, data, status):
    _, port = http
    answer = raw(port, data)
    assert status_of(answer) == status, answer[:200]
    assert b"Connection: close" in answer
    assert b"garbage" not in answer and b"Traceback" not in answer  # no client text, no internals
    assert get(port, "/healthz")[0] == 200


def test_a_slow_drip_is_cut_at_the_request_timeout(http):
    _, port = http
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n":
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.05)  # the head takes ~1.7 s, past http_request_timeout (1 s)
        answer = read_answer(sock)
    assert status_of(answer) == 408
    assert time.monotonic() - started < 5
    assert get(port, "/healthz")[0] == 200


def test_a_silent_connection_gets_408(http):
    _, port = http
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        assert status_of(read_answer(sock)) == 408


def test_connections_past_the_per_address_limit_get_503(tmp_path):
    with serve(tmp_path, "[limits]\nhttp_request_timeout = 20.0\nmax_connections_per_ip = 20\n") as server:
        port = server.port("http")
        wait_healthy(port)
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(20)]
        try:
            assert wait_for(lambda: open_http(server) == 20, timeout=5)
            answer = raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status_of(answer) == 503 and b"Too many connections from your address" in answer
        finally:
            for sock in held:
                sock.close()
        wait_healthy(port, timeout=10)  # room again once they are gone
        assert wait_for(lambda: open_http(server) == 0, timeout=5)


def open_http(server) -> float:
    """Open http connections, from the registry itself (a scrape would need a connection)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(server.server.metrics.render().decode()):
        for s in family.samples:
            if s.name == "hatoba_connections_open" and s.labels == {"listener": "http"}:
                return s.value
    return -1


def test_metrics_refused_outside_the_configured_networks(tmp_path):
    with serve(tmp_path, '[metrics]\nnetworks = ["192.0.2.0/24"]\n') as server:
        port = server.port("http")
        for path in ("/metrics", "/healthz"):
            status, _, body = get(port, path)
            assert status == 403 and b"hatoba_" not in body
        assert get(port, "/metrics", method="POST")[0] == 403  # refused before the method is looked at
        assert get(port, "/elsewhere")[0] == 404


def test_healthz_is_503_while_the_delivery_process_is_down(tmp_path):
    with serve(tmp_path) as server:
        port = server.port("http")
        wait_healthy(port)
        check_restart(server, port)


def check_restart(server, port):
    before = scrape(port)
    child = server.server.manager
    os.kill(child.pid, signal.SIGKILL)
    seen = []

    def unhealthy() -> bool:
        status, _, body = get(port, "/healthz")
        seen.append((status, body))
        return status == 503

    assert wait_for(unhealthy, timeout=10)
    assert seen[-1][1] == b"the delivery process is not running\n"
    wait_healthy(port, timeout=20)  # started again
    after = scrape(port)
    assert value(after, "hatoba_delivery_process_restarts_total") - value(
        before, "hatoba_delivery_process_restarts_total") == 1
    assert value(after, "hatoba_delivery_process_up") == 1
