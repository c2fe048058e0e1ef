"""Which worker process of a `hatoba serve` serves a connection, read from /proc.

With `[server] workers` above 1 every worker watches the same listening
sockets and the least loaded one takes a new connection (net/acceptor.py).
Nothing in the protocols says which; /proc does, without any help from the
server:

- /proc/net/tcp (and tcp6) lists the server's end of a connection, its local
  address being the client's remote one and the other way round, with the
  inode of its socket (0 while the connection waits in the backlog);
- that inode appears as `socket:[INODE]` among the descriptors of exactly one
  process, the worker that accepted it.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

WORKER_MODULE = "hatoba.net.worker_main"

Client = TypeVar("Client")


def worker_pids(serve_pid: int) -> dict[int, int]:
    """Worker index -> process id: 0 is `hatoba serve` itself, the others its
    `python -m hatoba.net.worker_main --index N` children."""
    pids = {0: serve_pid}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue  # ended meanwhile
        if WORKER_MODULE.encode() not in argv or b"--index" not in argv:
            continue
        ppid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:"))
        if ppid == serve_pid:
            pids[int(argv[argv.index(b"--index") + 1])] = int(entry.name)
    return pids


def wait_workers(serve_pid: int, count: int, *, timeout: float = 20.0,
                 not_pids: Iterable[int] = ()) -> dict[int, int]:
    """worker_pids() once `count` workers run, none of them one of `not_pids`."""
    excluded = set(not_pids)
    deadline = time.monotonic() + timeout
    while True:
        pids = worker_pids(serve_pid)
        if len(pids) == count and not excluded & set(pids.values()):
            return pids
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} workers wanted (not {sorted(excluded)}), found {pids}")
        time.sleep(0.05)


def _address(hex_address: str) -> tuple[str, int]:
    """ "0100007F:0019" -> ("127.0.0.1", 25); IPv6 likewise (IPv4-mapped ones as IPv4)."""
    host, port = hex_address.split(":")
    raw = b"".join(struct.pack("<I", int(host[i:i + 8], 16)) for i in range(0, len(host), 8))
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw), int(port, 16)
    if raw[:12] == b"\0" * 10 + b"\xff\xff":
        return socket.inet_ntop(socket.AF_INET, raw[12:]), int(port, 16)
    return socket.inet_ntop(socket.AF_INET6, raw), int(port, 16)


def _plain(address: tuple) -> tuple[str, int]:  # type: ignore[type-arg]
    host = address[0]
    if host.startswith("::ffff:") and "." in host:
        host = host[len("::ffff:"):]
    return host, address[1]


def server_inode(client: socket.socket) -> int:
    """The inode of the server's end of `client`'s connection; 0 if not accepted (yet)."""
    ours, theirs = _plain(client.getsockname()), _plain(client.getpeername())
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if _address(fields[1]) == theirs and _address(fields[2]) == ours:
                return int(fields[9])
    return 0


def _holds(pid: int, link: str) -> bool:
    folder = f"/proc/{pid}/fd"
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    for name in names:
        try:
            if os.readlink(f"{folder}/{name}") == link:
                return True
        except OSError:
            continue  # closed meanwhile
    return False


def serving_pid(client: socket.socket, candidate_pids: Iterable[int], *, timeout: float = 5.0) -> int:
    """The one process among `candidate_pids` that holds the server's end of
    `client`'s connection (waiting up to `timeout` for the accept)."""
    candidates = list(candidate_pids)
    deadline = time.monotonic() + timeout
    while True:
        inode = server_inode(client)
        if inode:
            holders = [pid for pid in candidates if _holds(pid, f"socket:[{inode}]")]
            if len(holders) == 1:
                return holders[0]
            if len(holders) > 1:
                raise AssertionError(f"socket {inode} is held by several workers: {holders}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no worker among {candidates} holds the server end of "
                                 f"{client.getsockname()} -> {client.getpeername()} (inode {inode})")
        time.sleep(0.02)


def one_on_each(connect: Callable[[], Client], close: Callable[[Client], None], pids: Iterable[int],
                *, tries: int = 40) -> dict[int, Client]:
    """A connection served by each of `pids` (pid -> client): `connect()` until
    each was seen, at most `tries` times; the clients not kept are `close`d.
    A client has its socket in `.sock` (imaplib, poplib, smtplib) or is one."""
    wanted = list(pids)
    kept: dict[int, Client] = {}
    seen: list[int] = []
    for _ in range(tries):
        client = connect()
        pid = serving_pid(getattr(client, "sock", client), wanted)  # type: ignore[arg-type]
        seen.append(pid)
        if pid in kept:
            close(client)
        else:
            kept[pid] = client
            if len(kept) == len(wanted):
                return kept
    for client in kept.values():
        close(client)
    raise AssertionError(f"{tries} connections never reached every worker {wanted}: served by {seen}")


def reset(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0): the port is free again at once."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
