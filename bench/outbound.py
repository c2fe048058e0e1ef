#!/usr/bin/env python3
"""Outbound delivery throughput: messages/s a server delivers from its queue
to Postfix's smtp-sink over a fixed number of connections, for hatoba and for
Postfix, with the same load (N messages of one size to one remote domain).

    .venv/bin/python bench/outbound.py                          # both, 5000 x 4 KB, 20 connections
    .venv/bin/python bench/outbound.py --target hatoba --count 1000 --loop both

Method, the same for both servers so the figures compare:
1. queue N messages while the destination is unreachable (hatoba routes
   sink.example to a closed port and retries after an hour; Postfix relays
   to a closed port with defer_transports = smtp), injected with smtp-source
   over as many sessions as there are connections; wait until every message
   sits in the queue, deferred once;
2. stop the server, start smtp-sink (it only counts) on a free port, point
   the server at it and start the server again (Postfix also gets
   `postqueue -f`): it delivers everything it holds;
3. poll the queue folder every 20 ms until it holds no message file (less
   often while one look costs more than 1 ms, so that the polling never
   takes more than 5 % of a core from the server measured), and check that
   the sink counted N messages.
Both use N connections from the first moment: hatoba's
destination_concurrency, and Postfix's destination concurrency limits with
initial_destination_concurrency raised (no slow start). Postfix's start is
`postfix start` + `postqueue -f`; its `postfix check` (a walk over the whole
queue) runs before the clock starts.

wall       = server start to empty queue (start-up included)
queue      = first message gone from the queue to empty queue
log        = first to last `delivered` line of hatoba's mail log (ms
             timestamps; Postfix logs whole seconds, so it has no such figure)
Every msg/s figure is N divided by the matching time.

This is a script that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent / "tests" / "interop"))

from common import (  # noqa: E402
    Interrupted,
    run_each,
    BenchError,
    Children,
    descendant_pids,
    HatobaHome,
    exit_cleanly_on_sigterm,
    hatoba_command,
    make_hatoba_home,
    parse_size,
    process_cmdline,
    run,
    server_log_hint,
    set_hatoba_setting,
    smtp_source_load,
    wait_smtp_banner,
)
from postfix_peer import PostfixPeer, PostfixPeerError, postfix_unavailable_reason  # noqa: E402

SENDER = "loadgen@example.net"
SINK_DOMAIN = "sink.example"
RCPT = f"user@{SINK_DOMAIN}"
POLL = 0.02  # seconds between looks at the queue folder
# Postfix queue folders that hold messages (defer/, bounce/, trace/ hold logs).
POSTFIX_MESSAGE_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")

_DELIVERED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*?hatoba\.mail: delivered (.*)$")
_DEFERRED_QID = re.compile(r"hatoba\.mail: deferred qid=(\S+)")
_SINK_COUNT = re.compile(rb"mesg=(\d+)")


@dataclass(frozen=True)
class Outcome:
    target: str  # "hatoba (uvloop)", "postfix"
    count: int
    connections: int
    delivered: int  # messages the sink counted
    wall: float  # server start to empty queue
    queue_span: float | None  # first message gone to empty queue
    log_span: float | None  # first to last "delivered" line (hatoba)
    note: str = ""


def rate(count: int, seconds: float | None) -> float | None:
    return count / seconds if seconds else None


# -- small helpers -------------------------------------------------------------------


def unused_port() -> int:
    """A loopback port nothing listens on (the kernel's pick, released at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink(children: Children, port: int, counter: Path) -> subprocess.Popen[bytes]:
    """smtp-sink on 127.0.0.1:port that only counts (no -d); -c writes its
    running counters ("sess=N quit=N mesg=N") to `counter`."""
    exe = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if not Path(exe).exists():
        raise BenchError("smtp-sink not found; install postfix")
    argv = [exe]
    if os.geteuid() == 0:
        argv += ["-u", pwd.getpwnam("nobody").pw_name]  # it refuses to run as root
    argv += ["-c", f"127.0.0.1:{port}", "256"]
    with counter.open("wb") as out:
        proc = children.start(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    wait_smtp_banner(port, timeout=10, proc=proc)
    return proc


def sink_messages(counter: Path) -> int:
    """Messages the sink has received so far (its last mesg= counter)."""
    with contextlib.suppress(OSError):
        found = _SINK_COUNT.findall(counter.read_bytes())
        if found:
            return int(found[-1])
    return 0


def wait_drain(count_files: Callable[[], int], total: int, deadline: float,
               alive: Callable[[], bool]) -> tuple[int, float | None, float]:
    """Poll until the queue holds no message. Returns (left, monotonic time the
    first message was seen gone, monotonic time the queue was seen empty)."""
    first_gone: float | None = None
    pause = POLL
    left = count_files()
    while left > 0 and time.monotonic() < deadline and alive():
        time.sleep(pause)
        began = time.monotonic()
        left = count_files()
        # A look at a folder of 10,000 files takes milliseconds of the cores the
        # server is measured on: look at most 5 % of the time (closer together as
        # the queue empties and the listing gets cheaper).
        pause = max(POLL, 19 * (time.monotonic() - began))
        if first_gone is None and left < total:
            first_gone = time.monotonic()
    return left, first_gone, time.monotonic()


def wait_until(condition: Callable[[], bool], deadline: float, what: str, step: float = 0.1) -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting until {what}")
        time.sleep(step)


@contextlib.contextmanager
def uvloop_blocked(blocked: bool, work: Path) -> Iterator[None]:
    """While active, children started get a PYTHONPATH whose `uvloop` package
    raises ImportError, so hatoba runs on the standard asyncio loop."""
    if not blocked:
        yield
        return
    shadow = work / "no-uvloop"
    (shadow / "uvloop").mkdir(parents=True, exist_ok=True)
    (shadow / "uvloop" / "__init__.py").write_text('raise ImportError("uvloop turned off for this run")\n')
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(shadow), saved) if p)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def loop_of(server_pid: int) -> str:
    """The event loop hatoba delivers with: "uvloop" when its delivery process
    (`python -m hatoba.queue.process`, a child of the server; the server
    itself if there is none) has uvloop's extension mapped, else "asyncio"."""
    children = [p for p in descendant_pids(server_pid) if "hatoba.queue.process" in process_cmdline(p)]
    with contextlib.suppress(OSError):
        if "uvloop" in Path(f"/proc/{(children or [server_pid])[0]}/maps").read_text():
            return "uvloop"
        return "asyncio"
    return "?"


# -- hatoba --------------------------------------------------------------------------


def hatoba_queued(home: HatobaHome) -> int:
    """Messages in hatoba's queue: one active/QID.msg file each."""
    active = home.root / "data" / "queue" / "active"
    with contextlib.suppress(FileNotFoundError):
        return sum(1 for name in os.listdir(active) if name.endswith(".msg"))
    return 0


def deferred_qids(log_path: Path) -> int:
    with contextlib.suppress(OSError):
        return len(set(_DEFERRED_QID.findall(log_path.read_text(errors="replace"))))
    return 0


def delivered_span(log_path: Path) -> tuple[int, float | None]:
    """(remote deliveries logged, seconds from the first to the last one)."""
    stamps: list[float] = []
    with contextlib.suppress(OSError), log_path.open(errors="replace") as f:
        for line in f:
            match = _DELIVERED.match(line)
            if match and f"@{SINK_DOMAIN}>" in match.group(3):
                when = datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
                stamps.append(when.timestamp() + int(match.group(2)) / 1000)
    if len(stamps) < 2:
        return len(stamps), None
    return len(stamps), max(stamps) - min(stamps)


def start_hatoba(children: Children, home: HatobaHome, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return children.start(home.serve_argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def run_hatoba(count: int, size: int, connections: int, timeout: float, keep: bool,
               cli: list[str] | None, no_uvloop: bool) -> Outcome:
    home = make_hatoba_home("bench@example.test", None, cli)
    work = home.root.parent
    route = f'"{SINK_DOMAIN}"'
    try:
        set_hatoba_setting(home, "smtp", "trusted_networks", '["127.0.0.1/32"]')
        set_hatoba_setting(home, "limits", "max_connections_per_ip", str(max(20, connections + 10)))
        set_hatoba_setting(home, "delivery", "destination_concurrency", str(connections))
        # A deferred message waits an hour: nothing retries between the phases.
        set_hatoba_setting(home, "delivery", "retry_min", "3600.0")
        set_hatoba_setting(home, "delivery.routes", route, f'"[127.0.0.1]:{unused_port()}"')
        with Children() as children, uvloop_blocked(no_uvloop, work):
            # Phase 1: fill the queue while the destination refuses connections.
            fill_log = work / "fill.log"
            server = start_hatoba(children, home, fill_log)
            try:
                wait_smtp_banner(home.smtp_port, timeout=60, proc=server)
            except BenchError as exc:
                raise BenchError(f"{exc}{server_log_hint(fill_log, server.poll() is not None, 'error')}") from None
            deadline = time.monotonic() + timeout
            load = smtp_source_load(home.smtp_port, SENDER, RCPT, size, count, connections, timeout)
            if load.first_error or load.accepted != count:
                raise BenchError(f"queueing failed: {load.first_error or f'{load.accepted}/{count} accepted'}"
                                 f"{server_log_hint(fill_log, server.poll() is not None, 'reject')}")
            wait_until(lambda: hatoba_queued(home) >= count and deferred_qids(fill_log) >= count, deadline,
                       f"{count} messages are queued and deferred once (see {fill_log})")
            children.stop(server, grace=30)
            if hatoba_queued(home) != count:
                raise BenchError(f"{hatoba_queued(home)} messages queued after the stop, expected {count}")

            # Phase 2: point the route at the sink and time the drain.
            sink_port = unused_port()
            counter = work / "sink.counter"
            sink = start_sink(children, sink_port, counter)
            set_hatoba_setting(home, "delivery.routes", route, f'"[127.0.0.1]:{sink_port}"')
            drain_log = work / "drain.log"
            started = time.monotonic()
            server = start_hatoba(children, home, drain_log)
            left, first_gone, ended = wait_drain(lambda: hatoba_queued(home), count,
                                                 started + timeout, lambda: server.poll() is None)
            loop = loop_of(server.pid)
            exited = server.poll() is not None
            children.stop(server, grace=30)
            time.sleep(0.2)  # the sink's counter line is written after QUIT
            delivered = sink_messages(counter)
            children.stop(sink)
        logged, log_span = delivered_span(drain_log)
        note = ""
        if exited:
            note = f"server exited during the drain{server_log_hint(drain_log, True, 'error')}"
        elif left:
            note = f"{left} still queued after {timeout:.0f}s{server_log_hint(drain_log, False, 'deferred')}"
        elif delivered != count or logged != count:
            note = f"sink counted {delivered}, log has {logged} delivered lines"
        return Outcome(f"hatoba ({loop})", count, connections, delivered, ended - started,
                       ended - first_gone if first_gone is not None else None, log_span, note)
    finally:
        if keep:
            print(f"# kept {work} (server logs fill.log, drain.log)", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


# -- Postfix ---------------------------------------------------------------------------


def postfix_queued(peer: PostfixPeer) -> int:
    """Message files in the instance's queue folders (deferred/ is hashed into subfolders)."""
    total = 0
    for name in POSTFIX_MESSAGE_QUEUES:
        for _dir, _subdirs, files in os.walk(peer.queue_dir / name):
            total += len(files)
    return total


def postfix_deferred(peer: PostfixPeer) -> int:
    return sum(len(files) for _d, _s, files in os.walk(peer.queue_dir / "deferred"))


def postfix_error(exc: PostfixPeerError) -> BenchError:
    return BenchError(str(exc).splitlines()[0] if str(exc) else "Postfix failed")


def run_postfix(count: int, size: int, connections: int, timeout: float, keep: bool) -> Outcome:
    reason = postfix_unavailable_reason()
    if reason is not None:
        raise BenchError(reason)
    work = Path(tempfile.mkdtemp(prefix="postfix-bench-"))
    concurrency = {
        "default_destination_concurrency_limit": str(connections),
        "smtp_destination_concurrency_limit": str(connections),
        # No slow start: all connections from the first moment, as hatoba does.
        "initial_destination_concurrency": str(connections),
        "default_process_limit": str(max(100, 2 * connections + 10)),
    }
    hold = {
        "defer_transports": "smtp",
        # Nothing is retried on its own between the phases.
        "queue_run_delay": "300s",
        "minimal_backoff_time": "3600s",
        "maximal_backoff_time": "3600s",
    }
    peer = PostfixPeer(work / "postfix", smtp_port=unused_port(), relay_to=f"127.0.0.1:{unused_port()}",
                       tls_level="may", main_cf_extra={**concurrency, **hold})
    try:
        with Children() as children:
            # Phase 1: fill the queue; defer_transports keeps every message deferred.
            try:
                peer.start()
            except PostfixPeerError as exc:
                raise postfix_error(exc) from None
            deadline = time.monotonic() + timeout
            load = smtp_source_load(peer.smtp_port, SENDER, RCPT, size, count, connections, timeout)
            if load.first_error or load.accepted != count:
                raise BenchError(f"queueing failed: {load.first_error or f'{load.accepted}/{count} accepted'}")
            wait_until(lambda: postfix_deferred(peer) >= count, deadline,
                       f"{count} messages are deferred (see {peer.log_path})")
            peer.stop(timeout=30)

            # Phase 2: relay to the sink, no deferred transport, the usual backoff.
            sink_port = unused_port()
            counter = work / "sink.counter"
            sink = start_sink(children, sink_port, counter)
            peer.relay_port = sink_port
            peer.main_cf_extra = dict(concurrency)
            # `postfix check` walks the whole queue (seconds for thousands of
            # files): it runs before the clock starts, as it would on a live
            # system long before any restart. `postfix start` is timed.
            peer.write_config()
            conf = str(peer.config_dir)
            run(["postfix", "-c", conf, "check"])
            started = time.monotonic()
            run(["postfix", "-c", conf, "start"])
            wait_smtp_banner(peer.smtp_port, timeout=30)
            try:
                peer.flush()
            except PostfixPeerError as exc:
                raise postfix_error(exc) from None
            left, first_gone, ended = wait_drain(lambda: postfix_queued(peer), count, started + timeout,
                                                 lambda: True)
            peer.stop(timeout=30)
            time.sleep(0.2)
            delivered = sink_messages(counter)
            children.stop(sink)
        note = ""
        if left:
            note = f"{left} still queued after {timeout:.0f}s (see {peer.log_path})"
        elif delivered != count:
            note = f"sink counted {delivered}"
        return Outcome("postfix", count, connections, delivered, ended - started,
                       ended - first_gone if first_gone is not None else None, None, note)
    finally:
        peer.stop()
        if keep:
            print(f"# kept {work} (Postfix log {peer.log_path})", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


# -- output ------------------------------------------------------------------------------


def versions(cli: list[str]) -> str:
    parts = []
    with contextlib.suppress(BenchError):
        parts.append(run([*cli, "--version"]).stdout.strip())
    with contextlib.suppress(BenchError):
        parts.append("Postfix " + run(["postconf", "-h", "mail_version"]).stdout.strip())
    parts.append(f"{os.cpu_count()} CPUs")
    return ", ".join(parts)


def _num(value: float | None, width: int) -> str:
    return f"{value:>{width}.1f}" if value is not None else f"{'-':>{width}}"


def format_table(outcomes: list[Outcome]) -> str:
    head = (f"{'target':<17} {'messages':>8} {'conns':>5} {'drain s':>8} {'msg/s wall':>10} "
            f"{'msg/s queue':>11} {'msg/s log':>9}")
    rows = [head, "-" * len(head)]
    for o in outcomes:
        rows.append(f"{o.target:<17} {o.count:>8} {o.connections:>5} {o.wall:>8.2f} {_num(rate(o.count, o.wall), 10)} "
                    f"{_num(rate(o.count, o.queue_span), 11)} {_num(rate(o.count, o.log_span), 9)}"
                    + (f"  [{o.note}]" if o.note else ""))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=("hatoba", "postfix", "both"), default="both")
    parser.add_argument("--count", type=int, default=5000, help="messages (default 5000)")
    parser.add_argument("--size", type=parse_size, default=4096, help="message size (default 4k)")
    parser.add_argument("--connections", type=int, default=20, help="connections to the sink (default 20)")
    parser.add_argument("--loop", choices=("default", "asyncio", "both"), default="default",
                        help="hatoba's event loop: as installed (uvloop when present), asyncio, or one run of each")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per phase (default 600)")
    parser.add_argument("--hatoba", metavar="CMD", default=None,
                        help="hatoba command to run (default: the one beside this Python, on PATH, or -m hatoba)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folders and the server logs")
    args = parser.parse_args(argv)
    if args.count <= 0 or args.connections <= 0:
        parser.error("--count and --connections must be positive")

    exit_cleanly_on_sigterm()
    cli = shlex.split(args.hatoba) if args.hatoba else None
    print(f"# {versions(cli or hatoba_command())}", flush=True)
    runs: list[tuple[str, bool]] = []
    if args.target in ("hatoba", "both"):
        if args.loop in ("default", "both"):
            runs.append(("hatoba", False))
        if args.loop in ("asyncio", "both"):
            runs.append(("hatoba", True))
    if args.target in ("postfix", "both"):
        runs.append(("postfix", False))

    def job(target: str, no_uvloop: bool) -> Callable[[], Outcome]:
        if target == "hatoba":
            return lambda: run_hatoba(args.count, args.size, args.connections, args.timeout, args.keep, cli, no_uvloop)
        return lambda: run_postfix(args.count, args.size, args.connections, args.timeout, args.keep)

    try:
        outcomes, failed = run_each(
            [(f"{target:<17}", job(target, no_uvloop)) for target, no_uvloop in runs],
            troubled=lambda o: bool(o.note),
            show=lambda o: format_table([o]).splitlines()[-1],
        )
    except Interrupted:
        return 130
    if outcomes:
        print()
        print(f"{args.count} messages of {args.size} bytes to smtp-sink over {args.connections} connections")
        print(format_table(outcomes))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
