"""Listening sockets, bound before anything else starts.

`hatoba serve` binds every port first, while it may still be root (ports
below 1024), and hands the sockets to the Server after dropping root; the
in-process Server of the tests binds through the same function. The
options are asyncio's own: SO_REUSEADDR, IPv6 sockets IPv6-only, one socket
per address a host name stands for.

Several worker processes (`[server] workers`) get a socket each per address,
bound with SO_REUSEPORT: the kernel spreads new connections over them evenly,
where one shared socket would let whichever worker woke first take a whole
burst. A port some other program listens on must still fail the start, so
each address is first bound by a probe socket without SO_REUSEPORT, which
the kernel refuses while any socket listens there.
"""

from __future__ import annotations

import socket

from hatoba.config.schema import ListenerConfig

BACKLOG = 1024


# Served by the first worker only: its answers (/metrics, /healthz) speak for the whole server.
FIRST_WORKER_ONLY = ("http",)

Sockets = dict[str, list[socket.socket]]  # listener name -> one listening socket per address


def bind(listener: ListenerConfig, copies: int = 1) -> list[list[socket.socket]]:
    """`copies` sets of listening sockets for every address of `listener.host`
    (more than one: SO_REUSEPORT); OSError (closing what was bound) if one fails."""
    infos = socket.getaddrinfo(listener.host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sets: list[list[socket.socket]] = [[] for _ in range(copies)]
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            if copies > 1:
                address = _probe(family, kind, proto, address)
            for bound in sets:
                sock = socket.socket(family, kind, proto)
                bound.append(sock)
                _listen(sock, address, shared=copies > 1)
    except OSError:
        for bound in sets:
            for sock in bound:
                sock.close()
        raise
    return sets


def _probe(family: int, kind: int, proto: int, address: tuple) -> tuple:  # type: ignore[type-arg]
    """Fail as a plain bind would if anything listens on `address`; the address to share
    (with the port the kernel picked for port 0)."""
    with socket.socket(family, kind, proto) as probe:
        _listen(probe, address, shared=False)
        return probe.getsockname()


def _listen(sock: socket.socket, address: tuple, *, shared: bool) -> None:  # type: ignore[type-arg]
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if sock.family == socket.AF_INET6:  # "::" must not take the IPv4 port too
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind(address)
    sock.listen(BACKLOG)
    sock.setblocking(False)


def bind_all(listeners: list[ListenerConfig]) -> Sockets:
    """Every listener bound, or none (OSError naming the one that failed)."""
    return bind_workers(listeners, 1)[0]


def bind_workers(listeners: list[ListenerConfig], workers: int) -> list[Sockets]:
    """Every listener bound for each of `workers` processes (the first also
    gets FIRST_WORKER_ONLY's), or none (OSError naming the one that failed)."""
    per_worker: list[Sockets] = [{} for _ in range(workers)]
    try:
        for listener in listeners:
            copies = 1 if listener.name in FIRST_WORKER_ONLY else workers
            try:
                sets = bind(listener, copies)
            except OSError as exc:
                exc.strerror = f"{listener.name} on {listener.host}:{listener.port}: {exc.strerror or exc}"
                raise
            for index, bound in enumerate(sets):
                per_worker[index][listener.name] = bound
    except OSError:
        for sockets in per_worker:
            close_all(sockets)
        raise
    return per_worker


def close_all(sockets: dict[str, list[socket.socket]]) -> None:
    for socks in sockets.values():
        for sock in socks:
            sock.close()
