"""Reading the http listener as a monitoring system would: /metrics through
prometheus_client's own text parser, /healthz, and raw bytes for bad input."""

from __future__ import annotations

import http.client
import socket
import time

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(port: int, path: str, method: str = "GET", timeout: float = 10.0,
        source: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """`source`: the loopback address to connect from (the connection limits count per address)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def scrape(port: int, source: str | None = None) -> Samples:
    status, headers, body = get(port, "/metrics", source=source)
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series is not there (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_healthy(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = get(port, "/healthz")
        if status == 200:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"/healthz still {status}: {body!r}")
        time.sleep(0.05)


def raw(port: int, data: bytes, *, timeout: float = 10.0, head: bool = False) -> bytes:
    """Send `data` as it is, then end our side, and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # EPIPE, ECONNRESET, ENOTCONN
            pass  # the server answered and closed while we still sent: read what it said
        return read_answer(sock, head=head)


def read_answer(sock: socket.socket, *, head: bool = False) -> bytes:
    """One HTTP answer: its head, then Content-Length bytes (none after HEAD), or up to the close."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
        header_block, _, body = data.partition(b"\r\n\r\n")
        length = 0 if head else next(
            (int(line.split(b":", 1)[1]) for line in header_block.split(b"\r\n")
             if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return header_block + b"\r\n\r\n" + body
    except ConnectionResetError:
        return data


def status_of(answer: bytes) -> int:
    line = answer.split(b"\r\n", 1)[0]
    assert line.startswith(b"HTTP/1.1 "), answer[:200]
    return int(line.split()[1])
