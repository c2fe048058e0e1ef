"""A worker process other than the first: serves SMTP, POP3 and IMAP sessions
on the listening sockets it inherited (net/worker_procs.py starts it).

It does everything the first worker does for a session, and tells the
first worker, one line at a time on its stdout (net/worker_link.py), what
the others must know: each message it committed to the queue (for the
delivery process) and each change its sessions made to a mailbox (for IDLE
and NOTIFY elsewhere). It stops at end of file on its stdin or on SIGTERM;
Ctrl-C and SIGHUP are for the first worker, which passes a reload on.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from pathlib import Path

from hatoba.linebatch import LineBatch
from hatoba.net import worker_link as W
from hatoba.runloop import run_child, settle_garbage_collector, start_child

log = logging.getLogger(__name__)


class PrimaryLink:
    """This worker's line to the first worker: messages sent in one turn of the
    event loop go in one write."""

    def __init__(self, out: asyncio.WriteTransport) -> None:
        self.lines = LineBatch(lambda: out)

    def send(self, message: W.Message) -> None:
        self.lines.add(W.encode(message))

    def flush(self) -> None:
        self.lines.flush()


def _listener_fds(specs: list[str]) -> dict[str, list[socket.socket]]:
    sockets: dict[str, list[socket.socket]] = {}
    for spec in specs:
        name, _, fds = spec.partition("=")
        sockets[name] = [socket.socket(fileno=int(fd)) for fd in fds.split(",")]
        for sock in sockets[name]:
            sock.setblocking(False)
    return sockets


async def _serve(config, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    from hatoba.net.server import Server
    from hatoba.net.shared_counts import SharedCounts

    loop = asyncio.get_running_loop()
    out, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout)
    link = PrimaryLink(out)
    counts = SharedCounts.attach(args.counts_fd, args.workers, args.index) if args.counts_fd is not None else None
    server = Server(config, forward=link.send, counts=counts)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    reader = asyncio.StreamReader(limit=W.MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    answering: set[asyncio.Task[None]] = set()  # held, or the loop may drop them half done

    async def answer_metrics() -> None:
        text = await asyncio.to_thread(server.metrics.render)
        link.send(W.MetricsText(text))

    async def read_messages() -> None:
        while True:
            try:
                line = await reader.readline()
            except ValueError:
                continue  # over-long: skipped
            if not line:
                break
            match W.decode(line):
                case W.Changed(user=user, changes=changes):
                    server.mailbox_events.receive(user, changes)
                case W.MetricsAsked():
                    task = loop.create_task(answer_metrics())
                    answering.add(task)
                    task.add_done_callback(answering.discard)
                case W.Reload():
                    server.reload_tls()
        stop.set()  # end of file: the first worker stopped or died

    await server.start(_listener_fds(args.listener))
    settle_garbage_collector()
    link.send(W.Ready())
    reading = loop.create_task(read_messages())
    await stop.wait()
    reading.cancel()
    log.info("worker %d stopping", args.index)
    await server.stop()
    link.flush()  # the last commits' ids, before the pipe closes with the process
    if counts is not None:
        counts.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hatoba-worker")
    parser.add_argument("config", type=Path)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-fd", type=int, help="the server's open log file")
    parser.add_argument("--counts-fd", type=int, help="the shared connection counts (net/shared_counts.py)")
    parser.add_argument("--listener", action="append", default=[], help="NAME=FD[,FD...]")
    args = parser.parse_args(argv)
    name = f"hatoba worker {args.index}"
    config = start_child(name, args.config, args.log_level, args.log_fd)
    if config is None:
        return 1
    return run_child(name, _serve(config, args))

if __name__ == "__main__":
    raise SystemExit(main())
