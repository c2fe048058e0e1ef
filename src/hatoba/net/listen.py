"""Listening sockets, bound before anything else starts.

`hatoba serve` binds every port first, while it may still be root (ports
below 1024), and hands the sockets to the Server after dropping root; the
in-process Server of the tests binds through the same function. The
options are asyncio's own: SO_REUSEADDR, IPv6 sockets IPv6-only, one socket
per address a host name stands for.
"""

from __future__ import annotations

import socket

from hatoba.config.schema import ListenerConfig

BACKLOG = 1024


def bind(listener: ListenerConfig) -> list[socket.socket]:
    """Listening sockets for every address of `listener.host`; OSError (closing what was bound) if one fails."""
    infos = socket.getaddrinfo(listener.host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # "::" must not take the IPv4 port too
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except OSError:
        for sock in bound:
            sock.close()
        raise
    return bound


def bind_all(listeners: list[ListenerConfig]) -> dict[str, list[socket.socket]]:
    """Every listener bound, or none (OSError naming the one that failed)."""
    sockets: dict[str, list[socket.socket]] = {}
    try:
        for listener in listeners:
            try:
                sockets[listener.name] = bind(listener)
            except OSError as exc:
                exc.strerror = f"{listener.name} on {listener.host}:{listener.port}: {exc.strerror or exc}"
                raise
    except OSError:
        close_all(sockets)
        raise
    return sockets


def close_all(sockets: dict[str, list[socket.socket]]) -> None:
    for socks in sockets.values():
        for sock in socks:
            sock.close()
