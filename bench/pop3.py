#!/usr/bin/env python3
"""POP3 retrieval: messages/s retrieved by concurrent POP3S clients from
1,000-message maildrops, and the time to open a 10,000-message maildrop,
for hatoba and for the Postfix + Dovecot reference stack.

    .venv/bin/python bench/pop3.py                      # both targets
    .venv/bin/python bench/pop3.py --target refstack --rounds 1 --open-runs 3

retrieval: C clients at once, each over POP3S (implicit TLS, certificate
  verified with the target's CA): USER, PASS, STAT, RETR of every message,
  QUIT without DELE. msg/s = messages retrieved / (last QUIT - first
  connect); MB/s counts message bytes as sent (CRLF), 1 MB = 10^6 bytes.
  Round 1 reads freshly written maildrops; later rounds read them again.
open: one client on a maildrop of 10,000 messages: ms from connect to the
  +OK of PASS and to the +OK of the first STAT (TLS handshake included).
  Run 1 is the first open after the maildrop was written; the median is
  over the runs after it.

Maildrops are filled by writing Maildir files directly (no SMTP). This is a
script that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import shlex
import shutil
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    Interrupted,
    run_targets,
    server_log_hint,
    REFSTACK_CA,
    REFSTACK_POP3S_PORT,
    BenchError,
    Children,
    add_hatoba_user,
    enable_hatoba_listeners,
    ensure_refstack,
    exit_cleanly_on_sigterm,
    fill_maildir,
    fill_refstack_maildir,
    hatoba_user_maildir,
    make_hatoba_home,
    make_message,
    reset_refstack_mail,
    wait_smtp_banner,
)

SERVER_NAME = "mail.example.test"  # both targets' certificates carry it
# One maildrop per client, as on hatoba: the refstack's pop1..pop4 exist for this.
REFSTACK_USERS = {f"pop{n}": f"pop{n}-pass-1" for n in range(1, 5)}
REFSTACK_OPEN_USER = ("carol", "carol-pass-1")  # the big maildrop whose opening is timed
READ_CHUNK = 256 * 1024


class Pop3Error(Exception):
    """The server answered -ERR, or something that is not POP3."""


# -- the POP3 client ------------------------------------------------------------


class _Reader:
    """POP3 responses off an asyncio stream, with one buffer and no per-line copies.

    A multi-line response ends with CRLF "." CRLF (RFC 1939 §3); its body is
    consumed and counted, not split into lines, which keeps the client's CPU
    share small next to the server's.
    """

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.buf = bytearray()

    async def _fill(self) -> None:
        chunk = await self.reader.read(READ_CHUNK)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    async def line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            await self._fill()
        out = bytes(self.buf[:end])
        del self.buf[:end + 2]
        return out

    async def ok(self) -> bytes:
        """A status line that must be +OK (RFC 1939 §3)."""
        line = await self.line()
        if not line.startswith(b"+OK"):
            raise Pop3Error(line.decode("utf-8", "replace")[:200])
        return line

    async def multiline_body(self) -> int:
        """Consume the body of a multi-line response (after its +OK line); return its bytes."""
        scan = 0
        while True:
            if len(self.buf) >= 3 and self.buf.startswith(b".\r\n"):
                del self.buf[:3]
                return 0
            end = self.buf.find(b"\r\n.\r\n", scan)
            if end >= 0:
                del self.buf[:end + 5]
                return end + 2
            scan = max(0, len(self.buf) - 4)
            await self._fill()


@dataclass
class SessionStats:
    messages: int = 0
    octets: int = 0
    stat_count: int = -1
    to_pass: float = 0.0  # seconds from connect to the +OK of PASS
    to_stat: float = 0.0  # seconds from connect to the +OK of STAT


async def pop3_session(port: int, ctx: ssl.SSLContext, user: str, password: str, *, retrieve: bool,
                       stats: SessionStats | None = None) -> SessionStats:
    """One POP3S session: USER, PASS, STAT, (RETR 1..n), QUIT; never DELE."""
    stats = SessionStats() if stats is None else stats
    started = time.monotonic()
    raw_reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=SERVER_NAME,
                                                       ssl_handshake_timeout=30)
    reader = _Reader(raw_reader)
    try:
        await reader.ok()  # greeting
        writer.write(f"USER {user}\r\n".encode())
        await reader.ok()
        writer.write(f"PASS {password}\r\n".encode())
        await reader.ok()
        stats.to_pass = time.monotonic() - started
        writer.write(b"STAT\r\n")
        fields = (await reader.ok()).split()
        stats.to_stat = time.monotonic() - started
        try:
            stats.stat_count = int(fields[1])
        except (IndexError, ValueError):
            raise Pop3Error(f"STAT answer without a count: {b' '.join(fields).decode('utf-8', 'replace')}") from None
        if retrieve:
            for number in range(1, stats.stat_count + 1):
                writer.write(b"RETR %d\r\n" % number)
                await reader.ok()
                stats.octets += await reader.multiline_body()
                stats.messages += 1
        writer.write(b"QUIT\r\n")
        with contextlib.suppress(ConnectionError, Pop3Error):
            await reader.ok()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
            await writer.wait_closed()
    return stats


def wait_pop3s_greeting(port: int, ctx: ssl.SSLContext, timeout: float, what: str,
                        proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until 127.0.0.1:port completes a verified TLS handshake and says +OK."""

    async def probe() -> bool:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", port, ssl=ctx, server_hostname=SERVER_NAME), 5)
        except (OSError, ssl.SSLError, TimeoutError):
            return False
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            if line.startswith(b"+OK"):
                writer.write(b"QUIT\r\n")
                return True
            return False
        except (OSError, ssl.SSLError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{what} server exited with status {proc.returncode}")
        if asyncio.run(probe()):
            return
        time.sleep(0.2)
    raise BenchError(f"{what} POP3S did not answer on 127.0.0.1:{port}")


# -- measurements -------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    clients: int
    messages: int  # per maildrop, retrieval
    size: int
    rounds: int
    open_messages: int
    open_runs: int
    timeout: float


@dataclass
class Round:
    messages: int
    octets: int
    elapsed: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.messages / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def mbps(self) -> float:
        return self.octets / 1e6 / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class Outcome:
    target: str
    clients: int
    maildrops: int
    rounds: list[Round] = field(default_factory=list)
    opens: list[tuple[float, float]] = field(default_factory=list)  # (to PASS, to STAT) seconds
    notes: list[str] = field(default_factory=list)


def retrieval_round(port: int, ctx: ssl.SSLContext, logins: Sequence[tuple[str, str]], expected: int,
                    timeout: float) -> Round:
    """All `logins` at once, each retrieving its whole maildrop; bounded by `timeout`."""
    sessions = [SessionStats() for _ in logins]

    async def all_sessions() -> list[object]:
        return await asyncio.gather(*(pop3_session(port, ctx, user, password, retrieve=True, stats=stats)
                                      for (user, password), stats in zip(logins, sessions)),
                                    return_exceptions=True)

    note = ""
    started = time.monotonic()
    try:
        results = asyncio.run(asyncio.wait_for(all_sessions(), timeout))
    except TimeoutError:
        results = []
        note = f"round timed out after {timeout:.0f}s"
    elapsed = time.monotonic() - started
    for outcome in results:
        if isinstance(outcome, BaseException) and not note:
            note = f"session failed: {_describe(outcome)}"
    counts = {s.stat_count for s in sessions}
    if not note and counts != {expected}:
        note = f"STAT counts {sorted(counts)}, expected {expected}"
    return Round(sum(s.messages for s in sessions), sum(s.octets for s in sessions), elapsed, note)


def open_runs(port: int, ctx: ssl.SSLContext, user: str, password: str, runs: int, expected: int,
              timeout: float) -> tuple[list[tuple[float, float]], str]:
    """`runs` sequential USER/PASS/STAT/QUIT sessions; (to PASS, to STAT) of each."""
    times: list[tuple[float, float]] = []
    for _ in range(runs):
        try:
            stats = asyncio.run(asyncio.wait_for(pop3_session(port, ctx, user, password, retrieve=False), timeout))
        except TimeoutError:
            return times, f"open timed out after {timeout:.0f}s"
        except (OSError, ssl.SSLError, Pop3Error) as exc:
            return times, f"open failed: {_describe(exc)}"
        if stats.stat_count != expected:
            return times, f"STAT counted {stats.stat_count} messages, expected {expected}"
        times.append((stats.to_pass, stats.to_stat))
    return times, ""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def measure_rounds(outcome: Outcome, spec: Spec, port: int, ctx: ssl.SSLContext,
                   logins: Sequence[tuple[str, str]]) -> None:
    """The retrieval rounds; prints a line for each as it ends, stops at the first that fails."""
    for number in range(1, spec.rounds + 1):
        result = retrieval_round(port, ctx, logins, spec.messages, spec.timeout)
        outcome.rounds.append(result)
        print(format_round(outcome, number, result), flush=True)
        if result.note:
            outcome.notes.append(result.note)
            return


def measure_opens(outcome: Outcome, spec: Spec, port: int, ctx: ssl.SSLContext, login: tuple[str, str]) -> None:
    """The first open of the big maildrop, then `spec.open_runs` more; prints a line for each."""
    times, note = open_runs(port, ctx, *login, spec.open_runs + 1, spec.open_messages, spec.timeout)
    outcome.opens = times
    for number, (to_pass, to_stat) in enumerate(times, 1):
        label = "first" if number == 1 else f"run {number - 1}"
        print(f"{outcome.target:<9} open {spec.open_messages:>6} msgs  {label:<6}"
              f"  PASS {to_pass * 1000:8.1f} ms  STAT {to_stat * 1000:8.1f} ms", flush=True)
    if note:
        outcome.notes.append(note)
        print(f"{outcome.target:<9} open  [{note}]", flush=True)


# -- targets ------------------------------------------------------------------------


def run_refstack(spec: Spec, message: bytes) -> Outcome:
    """Dovecot over POP3S on 30995. Each client has its own maildrop (pop1..pop4);
    past four clients they share them (Dovecot allows concurrent POP3 sessions
    on one maildrop: pop3_lock_session = no, its default)."""
    ensure_refstack()
    ctx = ssl.create_default_context(cafile=str(REFSTACK_CA))
    wait_pop3s_greeting(REFSTACK_POP3S_PORT, ctx, 15, "refstack")
    users = list(REFSTACK_USERS)
    drops = users[:min(spec.clients, len(users))]
    outcome = Outcome("refstack", spec.clients, len(drops))
    try:
        reset_refstack_mail()
        for user in drops:
            fill_refstack_maildir(user, message, spec.messages)
        logins = [(f"{drops[i % len(drops)]}@example.test", REFSTACK_USERS[drops[i % len(drops)]])
                  for i in range(spec.clients)]
        measure_rounds(outcome, spec, REFSTACK_POP3S_PORT, ctx, logins)
        if spec.open_runs > 0:
            reset_refstack_mail()
            user, password = REFSTACK_OPEN_USER
            fill_refstack_maildir(user, message, spec.open_messages)
            measure_opens(outcome, spec, REFSTACK_POP3S_PORT, ctx, (f"{user}@example.test", password))
    finally:
        reset_refstack_mail()  # leave no 10,000-message mailbox behind
    return outcome


def run_hatoba(spec: Spec, message: bytes, port_offset: int | None, keep: bool, cli: list[str] | None,
               maildrops: int) -> Outcome:
    """A fresh `hatoba init` home, one user per maildrop plus one for the opens, then `hatoba serve`."""
    home = make_hatoba_home("pop3bench@example.test", port_offset, cli)
    log_path = home.root.parent / "serve.log"
    outcome = Outcome("hatoba", spec.clients, maildrops)
    try:
        enable_hatoba_listeners(home, ["pop3", "pop3s"])
        logins = []
        for n in range(1, maildrops + 1):
            address, password = f"u{n:02d}@example.test", secrets.token_urlsafe(12)
            add_hatoba_user(home, address, password)
            fill_maildir(hatoba_user_maildir(home, address), message, spec.messages)
            logins.append((address, password))
        open_login = ("big@example.test", secrets.token_urlsafe(12))
        if spec.open_runs > 0:
            add_hatoba_user(home, *open_login)
            fill_maildir(hatoba_user_maildir(home, open_login[0]), message, spec.open_messages)
        ctx = ssl.create_default_context(cafile=str(home.root / "tls" / "ca.crt"))
        port = 995 + home.port_offset
        with Children() as children, log_path.open("wb") as log:
            server = children.start(home.serve_argv(), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            try:
                wait_smtp_banner(home.smtp_port, timeout=60, proc=server)
                wait_pop3s_greeting(port, ctx, 10, "hatoba", server)
            except BenchError as exc:
                raise BenchError(f"{exc}{_log_hint(log_path, server.poll() is not None)}") from None
            measure_rounds(outcome, spec, port, ctx, [logins[i % maildrops] for i in range(spec.clients)])
            if spec.open_runs > 0:
                measure_opens(outcome, spec, port, ctx, open_login)
            status = children.stop(server, grace=15)
            if status not in (0, None):
                outcome.notes.append(f"serve exited with status {status} on SIGTERM")
        return outcome
    finally:
        if keep:
            print(f"# kept {home.root} (server log {log_path})", file=sys.stderr)
        else:
            shutil.rmtree(home.root.parent, ignore_errors=True)


def _log_hint(log_path: Path, exited: bool) -> str:
    return server_log_hint(log_path, exited, "pop3")


# -- output ---------------------------------------------------------------------


def format_round(o: Outcome, number: int, r: Round) -> str:
    drops = f"{o.maildrops} maildrop{'s' if o.maildrops != 1 else ''}"
    if o.maildrops < o.clients:
        drops += " (shared)"
    line = (f"{o.target:<9} round {number}  {o.clients} clients  {drops:<20} {r.messages:>6} msgs"
            f"  {r.rate:8.1f} msg/s  {r.mbps:6.1f} MB/s  wall {r.elapsed:6.1f} s")
    return line + (f"  [{r.note}]" if r.note else "")


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _cell(value: float | None, width: int, scale: float = 1.0) -> str:
    return f"{value * scale:>{width}.1f}" if value is not None else f"{'-':>{width}}"


def format_table(outcomes: list[Outcome]) -> str:
    head = (f"{'target':<9} {'clients':>7} {'drops':>5} {'msg/s 1st':>10} {'msg/s med':>10} {'MB/s med':>9}"
            f" {'PASS 1st':>9} {'STAT 1st':>9} {'PASS med':>9} {'STAT med':>9}")
    rows = [head, "-" * len(head)]
    for o in outcomes:
        good = [r for r in o.rounds if not r.note]
        first = o.rounds[0].rate if o.rounds and not o.rounds[0].note else None
        later = o.opens[1:]
        rows.append(
            f"{o.target:<9} {o.clients:>7} {o.maildrops:>5} {_cell(first, 10)} "
            f"{_cell(_median([r.rate for r in good]), 10)} {_cell(_median([r.mbps for r in good]), 9)} "
            f"{_cell(o.opens[0][0] if o.opens else None, 9, 1000)} {_cell(o.opens[0][1] if o.opens else None, 9, 1000)} "
            f"{_cell(_median([t[0] for t in later]), 9, 1000)} {_cell(_median([t[1] for t in later]), 9, 1000)}")
    rows.append("PASS/STAT: ms from connect to the +OK, on the open maildrop; med = median of the runs after the first")
    return "\n".join(rows)


def parse_size(text: str) -> int:
    text = text.strip().lower().removesuffix("b")
    factor = 1024 if text.endswith("k") else 1024 * 1024 if text.endswith("m") else 1
    number = text.rstrip("km")
    if not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r} must look like 4096, 4k or 1m")
    return int(number) * factor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=("hatoba", "refstack", "both"), default="both")
    parser.add_argument("--clients", type=int, default=10, help="concurrent POP3S clients (default 10)")
    parser.add_argument("--messages", type=int, default=1000, help="messages in each client's maildrop (default 1000)")
    parser.add_argument("--size", type=parse_size, default=4096, help="message size (default 4k)")
    parser.add_argument("--rounds", type=int, default=3, help="retrieval rounds over the same maildrops (default 3)")
    parser.add_argument("--open-messages", type=int, default=10000,
                        help="messages in the maildrop whose opening is timed (default 10000)")
    parser.add_argument("--open-runs", type=int, default=5,
                        help="timed opens after the first one (default 5; 0 skips the opens)")
    parser.add_argument("--maildrops", type=int, default=None,
                        help="hatoba maildrops the clients share (default: one per client)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds allowed per round or open (default 300)")
    parser.add_argument("--port-offset", type=int, default=None, help="hatoba port offset (default: a free one)")
    parser.add_argument("--hatoba", metavar="CMD", default=None,
                        help="hatoba command to run (default: the one beside this Python, on PATH, or -m hatoba)")
    parser.add_argument("--keep", action="store_true", help="keep the hatoba temp folder and its server log")
    args = parser.parse_args(argv)
    if min(args.clients, args.messages, args.rounds, args.open_messages) <= 0 or args.open_runs < 0:
        parser.error("--clients, --messages, --rounds and --open-messages must be positive, --open-runs >= 0")
    maildrops = args.clients if args.maildrops is None else args.maildrops
    if not 0 < maildrops <= args.clients:
        parser.error("--maildrops must be between 1 and --clients")

    exit_cleanly_on_sigterm()
    spec = Spec(args.clients, args.messages, args.size, args.rounds, args.open_messages, args.open_runs,
                args.timeout)
    message = make_message(args.size, "loadgen@example.net", "reader@example.test")
    cli = shlex.split(args.hatoba) if args.hatoba else None
    jobs = {
        "hatoba": lambda: run_hatoba(spec, message, args.port_offset, args.keep, cli, maildrops),
        "refstack": lambda: run_refstack(spec, message),
    }
    try:
        outcomes, failed = run_targets(args.target, jobs, troubled=lambda o: bool(o.notes))
    except Interrupted:
        return 130
    if outcomes:
        print()
        print(format_table(outcomes))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
