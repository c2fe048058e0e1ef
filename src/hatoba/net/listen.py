"""Listening sockets, bound before anything else starts.

`hatoba serve` binds every port first, while it may still be root (ports
below 1024), and hands the sockets to the Server after dropping root; the
in-process Server of the tests binds through the same function. The
options are asyncio's own: SO_REUSEADDR, IPv6 sockets IPv6-only, one socket
per address a host name stands for.

Several worker processes (`[server] workers`) share one socket per address,
passed to each: every worker watches it and they take turns by load
(net/acceptor.py), so four long sessions end up two on each of two workers.
SO_REUSEPORT sockets, one per worker, would let the kernel hash each
connection to a worker at random, and a few busy sessions often landed on
one core while the other idled.
"""

from __future__ import annotations

import socket

from hatoba.config.schema import ListenerConfig

BACKLOG = 1024


# Served by the first worker only: its answers (/metrics, /healthz) speak for the whole server,
# and web requests are few.
FIRST_WORKER_ONLY = ("http", "https")

Sockets = dict[str, list[socket.socket]]  # listener name -> one listening socket per address


def bind(listener: ListenerConfig, backlog: int = BACKLOG) -> list[socket.socket]:
    """A listening socket for every address of `listener.host`; OSError (closing
    what was bound) if one fails."""
    infos = socket.getaddrinfo(listener.host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            _listen(sock, address, backlog)
    except OSError:
        for sock in bound:
            sock.close()
        raise
    return bound


def _listen(sock: socket.socket, address: tuple, backlog: int = BACKLOG) -> None:  # type: ignore[type-arg]
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sock.family == socket.AF_INET6:  # "::" must not take the IPv4 port too
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind(address)
    sock.listen(backlog)
    sock.setblocking(False)


def bind_all(listeners: list[ListenerConfig]) -> Sockets:
    """Every listener bound, or none (OSError naming the one that failed)."""
    return bind_workers(listeners, 1)[0]


def bind_workers(listeners: list[ListenerConfig], workers: int) -> list[Sockets]:
    """Every listener bound, the same sockets for each of `workers` processes
    (only the first gets FIRST_WORKER_ONLY's), or none (OSError naming the one
    that failed)."""
    per_worker: list[Sockets] = [{} for _ in range(workers)]
    try:
        for listener in listeners:
            shared = 1 if listener.name in FIRST_WORKER_ONLY else workers
            try:
                # One queue for all the workers that share it: as deep as theirs would be together
                # (the kernel caps it at net.core.somaxconn).
                bound = bind(listener, BACKLOG * shared)
            except OSError as exc:
                exc.strerror = f"{listener.name} on {listener.host}:{listener.port}: {exc.strerror or exc}"
                raise
            for sockets in per_worker[:shared]:
                sockets[listener.name] = bound
    except OSError:
        for sockets in per_worker:
            close_all(sockets)
        raise
    return per_worker


def close_all(sockets: dict[str, list[socket.socket]]) -> None:
    """Close them (a socket the workers share is closed once; closing again does nothing)."""
    for socks in sockets.values():
        for sock in socks:
            sock.close()
