#!/usr/bin/env python3
"""IMAP: messages/s fetched by concurrent IMAPS clients, p50/p99 latency of
SELECT, FETCH 1:* (FLAGS) and SEARCH on a 10,000-message mailbox, and the
memory of the server holding 10,000 IDLE connections, for hatoba and for
the Postfix + Dovecot reference stack.

    .venv/bin/python bench/imap.py                      # both targets, every phase
    .venv/bin/python bench/imap.py --target refstack --phases fetch,latency
    .venv/bin/python bench/imap.py --target hatoba --idle-connections 2000 --keep

fetch: C clients at once over IMAPS (implicit TLS, certificate verified
  with the target's CA): LOGIN, SELECT INBOX, FETCH a:b (BODY.PEEK[]) in
  batches of 100 until every message was fetched (--passes times over), LOGOUT. msg/s = bodies
  received / (last LOGOUT - first connect); MB/s counts the literal bytes
  (CRLF), 1 MB = 10^6 bytes. Round 1 reads freshly written mailboxes (the
  server sees them for the first time); later rounds read them again.
  A round of the defaults lasts a fraction of a second and includes the
  logins; --passes 10 measures the same mailboxes over a longer window.
latency: one client logged in to a mailbox of 10,000 messages: the first
  SELECT after the mailbox was written, then each command repeated up to
  --runs times (at most --op-seconds per command): SELECT INBOX, FETCH 1:*
  (FLAGS), SEARCH <key> for each --search key. ms from sending the command
  to its tagged OK with the whole response read; p50/p99 by nearest rank
  (with fewer than 100 runs p99 is the slowest run).
idle: N clients each LOGIN, SELECT INBOX (a small mailbox) and IDLE,
  opened --idle-concurrency at a time; then the server's memory (RSS and
  PSS from /proc) after --idle-hold seconds, its CPU use in that time, and
  how many connections were still open at the end.

Mailboxes are filled by writing Maildir files directly (no SMTP). This is a
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    Interrupted,
    run_targets,
    server_log_hint,
    REFSTACK_CA,
    REFSTACK_IMAP_PORT,
    REFSTACK_IMAPS_PORT,
    BenchError,
    Children,
    ProcMemory,
    add_hatoba_user,
    cpu_seconds,
    descendant_pids,
    enable_hatoba_listeners,
    ensure_refstack,
    exit_cleanly_on_sigterm,
    fill_maildir,
    fill_refstack_maildir,
    hatoba_user_maildir,
    make_hatoba_home,
    make_message,
    parse_size,
    percentile,
    process_cmdline,
    process_memory,
    process_name,
    raise_open_files_limit,
    reset_refstack_mail,
    set_hatoba_setting,
    wait_smtp_banner,
)

SERVER_NAME = "mail.example.test"  # both targets' certificates carry it
REFSTACK_USERS = {"alice": "alice-pass-1", "bob": "bob-pass-1", "carol": "carol-pass-1"}
REFSTACK_LATENCY_USER = "carol"
REFSTACK_IDLE_USER = "alice"
DOVECOT_MASTER_PID = Path("/var/tmp/refstack/run/dovecot/master.pid")
DOVECOT_SESSION_PROCESSES = ("imap", "imap-login")  # what holds an IMAP connection in Dovecot
PHASES = ("fetch", "latency", "idle")
READ_CHUNK = 256 * 1024
MB = 1e6
MIB = 1024 * 1024


class ImapError(Exception):
    """The server answered NO/BAD, or something that is not IMAP."""


CLIENT_ERRORS = (OSError, ssl.SSLError, ConnectionError, ImapError, TimeoutError)


# -- the IMAP client ----------------------------------------------------------------


@dataclass
class Reply:
    status: str  # OK, NO or BAD
    line: bytes  # the tagged line
    untagged: int = 0  # untagged lines ("* ..."), a literal counted with its line
    literals: int = 0
    literal_octets: int = 0
    lines: list[bytes] = field(default_factory=list)  # untagged lines, when asked to keep them


class ImapClient:
    """A small tagged-command IMAP client with one buffer and no per-line copies.

    A response line that ends in {n} (RFC 9051 §4.3, a literal) carries n
    bytes after its CRLF and goes on after them; literals are counted and
    skipped, not copied, which keeps the client's CPU share small next to
    the server's on a shared machine.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.tags = 0
        self.last_line = b""

    @classmethod
    async def connect(cls, port: int, ctx: ssl.SSLContext | None) -> ImapClient:
        if ctx is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=READ_CHUNK)
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=SERVER_NAME,
                                                           ssl_handshake_timeout=60, limit=READ_CHUNK)
        client = cls(reader, writer)
        try:
            greeting = await client._line()
            if not greeting.startswith(b"* OK"):
                raise ImapError(f"greeting: {_text(greeting)}")
        except BaseException:
            client.abort()
            raise
        return client

    async def _fill(self) -> None:
        chunk = await self.reader.read(READ_CHUNK)
        if not chunk:
            last = f" after: {_text(self.last_line)}" if self.last_line else ""
            raise ConnectionError(f"server closed the connection{last}")
        self.buf += chunk

    async def _line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            await self._fill()
        line = bytes(self.buf[:end])
        del self.buf[:end + 2]
        self.last_line = line
        return line

    def send(self, text: str) -> bytes:
        self.tags += 1
        tag = b"a%d" % self.tags
        self.writer.write(tag + b" " + text.encode() + b"\r\n")
        return tag

    async def command(self, text: str, *, keep: bool = False, shown: str | None = None) -> Reply:
        """Send one command and read up to its tagged reply, which must be OK.

        `shown` replaces the command text in errors (LOGIN carries a password)."""
        reply = await self.response(self.send(text), keep=keep)
        if reply.status != "OK":
            raise ImapError(f"C: {shown or text}  S: {_text(reply.line)}")
        return reply

    async def response(self, tag: bytes, *, keep: bool = False) -> Reply:
        buf = self.buf
        prefix = tag + b" "
        start = scan = 0
        reply = Reply("", b"")
        while True:
            end = buf.find(b"\r\n", scan)
            if end < 0:
                if start > READ_CHUNK:  # drop what was read; bytearray deletes at the front cheaply
                    del buf[:start]
                    scan, start = scan - start, 0
                scan = max(scan, len(buf) - 1)
                await self._fill()
                continue
            if end > start and buf[end - 1] == 0x7D:  # "}": a literal follows this CRLF
                brace = buf.rfind(b"{", start, end)
                digits = buf[brace + 1:end - 1] if brace >= 0 else b""
                if digits.isdigit():
                    size = int(digits)
                    while len(buf) < end + 2 + size:
                        await self._fill()
                    reply.literals += 1
                    reply.literal_octets += size
                    scan = end + 2 + size
                    continue
            if buf.startswith(prefix, start):
                reply.line = bytes(buf[start:end])
                reply.status = reply.line[len(prefix):].split(b" ", 1)[0].decode("ascii", "replace").upper()
                self.last_line = reply.line
                del buf[:end + 2]
                return reply
            reply.untagged += 1
            if keep:
                reply.lines.append(bytes(buf[start:end]))
            elif end - start < 200:
                self.last_line = bytes(buf[start:end])
            start = scan = end + 2

    async def idle(self) -> None:
        """IDLE (RFC 2177): returns at the server's "+" continuation."""
        tag = self.send("IDLE")
        while True:
            line = await self._line()
            if line.startswith(b"+"):
                return
            if line.startswith(tag + b" "):
                raise ImapError(f"C: IDLE  S: {_text(line)}")

    async def login(self, user: str, password: str) -> None:
        await self.command(f"LOGIN {_quote(user)} {_quote(password)}", shown=f"LOGIN {_quote(user)} <password>")

    async def select(self, mailbox: str = "INBOX") -> int:
        """SELECT; returns EXISTS."""
        reply = await self.command(f"SELECT {_quote(mailbox)}", keep=True)
        return exists_of(reply)

    async def logout(self) -> None:
        with contextlib.suppress(ConnectionError, ImapError, OSError, ssl.SSLError):
            await self.command("LOGOUT")

    def abort(self) -> None:
        """Drop the connection at once (no TLS close_notify): for thousands of them."""
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
            await asyncio.wait_for(self.writer.wait_closed(), 5)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(line: bytes) -> str:
    return line.decode("utf-8", "replace")[:200]


def exists_of(reply: Reply) -> int:
    for line in reply.lines:
        words = line.split()
        if len(words) == 3 and words[2].upper() == b"EXISTS" and words[1].isdigit():
            return int(words[1])
    raise ImapError(f"SELECT answer without EXISTS: {_text(reply.line)}")


def search_count(reply: Reply) -> int:
    for line in reply.lines:
        if line.upper().startswith(b"* SEARCH"):
            return len(line.split()) - 2
    return 0


def wait_imap_greeting(port: int, ctx: ssl.SSLContext, timeout: float, what: str,
                       proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until 127.0.0.1:port completes a verified TLS handshake and says * OK."""

    async def probe() -> bool:
        try:
            client = await asyncio.wait_for(ImapClient.connect(port, ctx), 5)
        except CLIENT_ERRORS:
            return False
        client.abort()
        return True

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{what} server exited with status {proc.returncode}")
        if asyncio.run(probe()):
            return
        time.sleep(0.2)
    raise BenchError(f"{what} IMAPS did not answer on 127.0.0.1:{port}")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:240]


# -- what a run measures ------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    clients: int
    messages: int  # per mailbox, fetch phase
    size: int
    rounds: int
    batch: int
    latency_messages: int
    runs: int
    op_seconds: float
    searches: tuple[str, ...]
    idle_connections: int
    idle_concurrency: int
    idle_messages: int
    idle_hold: float
    idle_timeout: float
    idle_plain: bool
    phases: tuple[str, ...]
    timeout: float
    passes: int = 1  # whole-mailbox fetches per session in a fetch round


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
        return self.octets / MB / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class Idle:
    wanted: int
    mode: str  # "IMAPS" or "IMAP, no TLS"
    main_label: str = ""
    other_label: str = ""
    opened: int = 0
    failed: int = 0
    first_error: str = ""
    open_seconds: float = 0.0
    stopped: str = ""  # why opening stopped early
    capped: bool = False  # it stopped because the server refused more (a limit of its own)
    still_open: int = 0
    at_rest: ProcMemory = field(default_factory=ProcMemory)
    peak_rss: int = 0  # server (main processes) while connections were being opened
    server: ProcMemory = field(default_factory=ProcMemory)  # holding the connections
    other: ProcMemory = field(default_factory=ProcMemory)
    cpu_share: float = 0.0  # cores used while holding
    cap: str = ""


@dataclass
class Outcome:
    target: str
    clients: int
    mailboxes: int
    rounds: list[Round] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)  # operation -> seconds per run
    idle: Idle | None = None
    notes: list[str] = field(default_factory=list)


class Probe(NamedTuple):
    """Which processes make up a server: `main` hold the connections, `other`
    is the rest of it (hatoba's delivery child; Dovecot's master, auth, ...)."""

    main: Callable[[], list[int]]
    other: Callable[[], list[int]]
    main_label: str
    other_label: str


# -- fetch ----------------------------------------------------------------------------


@dataclass
class FetchStats:
    exists: int = -1
    messages: int = 0
    octets: int = 0


async def fetch_session(port: int, ctx: ssl.SSLContext, user: str, password: str, batch: int,
                        stats: FetchStats, passes: int = 1) -> None:
    client = await ImapClient.connect(port, ctx)
    try:
        await client.login(user, password)
        stats.exists = await client.select()
        for _ in range(passes):
            for first in range(1, stats.exists + 1, batch):
                last = min(stats.exists, first + batch - 1)
                reply = await client.command(f"FETCH {first}:{last} (BODY.PEEK[])")
                stats.messages += reply.literals
                stats.octets += reply.literal_octets
        await client.logout()
    finally:
        await client.close()


def fetch_round(port: int, ctx: ssl.SSLContext, logins: Sequence[tuple[str, str]], spec: Spec) -> Round:
    """All `logins` at once, each fetching its whole mailbox; bounded by spec.timeout."""
    sessions = [FetchStats() for _ in logins]

    async def all_sessions() -> list[object]:
        return await asyncio.gather(*(fetch_session(port, ctx, user, password, spec.batch, stats, spec.passes)
                                      for (user, password), stats in zip(logins, sessions)),
                                    return_exceptions=True)

    note = ""
    started = time.monotonic()
    try:
        results = asyncio.run(asyncio.wait_for(all_sessions(), spec.timeout))
    except TimeoutError:
        results = []
        note = f"round timed out after {spec.timeout:.0f}s"
    elapsed = time.monotonic() - started
    for outcome in results:
        if isinstance(outcome, BaseException) and not note:
            note = f"session failed: {_describe(outcome)}"
    counts = {s.exists for s in sessions}
    if not note and counts != {spec.messages}:
        note = f"SELECT saw {sorted(counts)} messages, expected {spec.messages}"
    fetched = sum(s.messages for s in sessions)
    if not note and fetched != spec.messages * len(logins) * spec.passes:
        note = f"fetched {fetched} bodies, expected {spec.messages * len(logins) * spec.passes}"
    return Round(fetched, sum(s.octets for s in sessions), elapsed, note)


def first_logins(port: int, ctx: ssl.SSLContext | None, logins: Sequence[tuple[str, str]], timeout: float) -> str:
    """LOGIN + LOGOUT once per user, one after the other; "" or what failed.
    A first login may set up the user's folders: the runs measure users who
    have logged in before, as a server mostly meets them."""

    async def once(user: str, password: str) -> None:
        client = await ImapClient.connect(port, ctx)
        try:
            await client.login(user, password)
            await client.logout()
        finally:
            await client.close()

    for login in dict.fromkeys(logins):
        try:
            asyncio.run(asyncio.wait_for(once(*login), timeout))
        except CLIENT_ERRORS as exc:
            return f"first login of {login[0]}: {_describe(exc)}"
    return ""


def measure_fetch(outcome: Outcome, spec: Spec, port: int, ctx: ssl.SSLContext,
                  logins: Sequence[tuple[str, str]]) -> None:
    """The fetch rounds; prints a line for each as it ends, stops at the first that fails."""
    if note := first_logins(port, ctx, logins, spec.timeout):
        outcome.notes.append(note)
        print(f"{outcome.target:<9} fetch  [{note}]", flush=True)
        return
    for number in range(1, spec.rounds + 1):
        result = fetch_round(port, ctx, logins, spec)
        outcome.rounds.append(result)
        print(format_round(outcome, number, result), flush=True)
        if result.note:
            outcome.notes.append(result.note)
            return


# -- latency --------------------------------------------------------------------------


FIRST_SELECT = "SELECT INBOX (first)"


async def latency_session(outcome: Outcome, spec: Spec, port: int, ctx: ssl.SSLContext,
                          login: tuple[str, str]) -> None:
    """One client: the first SELECT, then each operation --runs times (or --op-seconds)."""
    expected = spec.latency_messages
    client = await asyncio.wait_for(ImapClient.connect(port, ctx), spec.timeout)
    try:
        await asyncio.wait_for(client.login(*login), spec.timeout)

        async def timed(command: str) -> tuple[float, Reply]:
            started = time.monotonic()
            reply = await asyncio.wait_for(client.command(command, keep=not command.startswith("FETCH")),
                                           spec.timeout)
            return time.monotonic() - started, reply

        def check_select(reply: Reply) -> str:
            seen = exists_of(reply)
            return "" if seen == expected else f"SELECT saw {seen} messages, expected {expected}"

        def check_fetch(reply: Reply) -> str:
            return "" if reply.untagged >= expected else f"FETCH answered {reply.untagged} lines, expected {expected}"

        seconds, reply = await timed("SELECT INBOX")
        outcome.latencies[FIRST_SELECT] = [seconds]
        print(format_latency(outcome.target, FIRST_SELECT, [seconds]), flush=True)
        if note := check_select(reply):
            outcome.notes.append(note)
            return
        operations: list[tuple[str, str, Callable[[Reply], str]]] = [
            ("SELECT INBOX", "SELECT INBOX", check_select),
            ("FETCH 1:* (FLAGS)", "FETCH 1:* (FLAGS)", check_fetch),
        ]
        for key in spec.searches:
            operations.append((f"SEARCH {key}", f"SEARCH {key}", lambda reply: ""))
        for label, command, check in operations:
            times: list[float] = []
            matches = -1
            budget_end = time.monotonic() + spec.op_seconds
            while len(times) < spec.runs and (not times or time.monotonic() < budget_end):
                seconds, reply = await timed(command)
                if note := check(reply):
                    outcome.notes.append(note)
                    return
                times.append(seconds)
                if command.startswith("SEARCH"):
                    matches = search_count(reply)
            outcome.latencies[label] = times
            extra = f"  ({matches} matches)" if matches >= 0 else ""
            print(format_latency(outcome.target, label, times) + extra, flush=True)
        await client.logout()
    finally:
        await client.close()


def measure_latency(outcome: Outcome, spec: Spec, port: int, ctx: ssl.SSLContext, login: tuple[str, str]) -> None:
    try:
        asyncio.run(latency_session(outcome, spec, port, ctx, login))
    except CLIENT_ERRORS as exc:
        note = f"latency: {_describe(exc)}"
        outcome.notes.append(note)
        print(f"{outcome.target:<9} latency  [{note}]", flush=True)


# -- idle -----------------------------------------------------------------------------


async def open_idle(port: int, ctx: ssl.SSLContext | None, user: str, password: str) -> ImapClient:
    client = await ImapClient.connect(port, ctx)
    try:
        await client.login(user, password)
        await client.select()
        await client.idle()
    except BaseException:
        client.abort()
        raise
    return client


async def idle_phase(spec: Spec, port: int, ctx: ssl.SSLContext | None, login: tuple[str, str],
                     probe: Probe, result: Idle) -> None:
    """Open spec.idle_connections IDLE sessions, idle_concurrency at a time, then hold them."""
    clients: list[ImapClient] = []
    watchers: list[asyncio.Task[None]] = []
    closed = [0]
    stop = [""]
    consecutive = [0, 0]  # failures in a row, and how many of them were refusals
    # A server that stops accepting (a process cap) leaves connections
    # hanging until they time out; a whole batch of failures in a row ends
    # the opening instead of waiting out every remaining connection.
    give_up_after = max(spec.idle_concurrency, 50)
    gate = asyncio.Semaphore(spec.idle_concurrency)
    connect_timeout = min(spec.timeout, 120.0)
    result.at_rest = process_memory(probe.main())
    result.peak_rss = result.at_rest.rss
    started = time.monotonic()

    async def watch(client: ImapClient) -> None:
        # Read what the server sends while idle (Dovecot's "* OK Still here")
        # and notice when it closes the connection.
        with contextlib.suppress(*CLIENT_ERRORS):
            while await client.reader.read(4096):
                pass
        closed[0] += 1

    async def one() -> None:
        if stop[0]:
            return
        async with gate:
            if stop[0]:
                return
            try:
                client = await asyncio.wait_for(open_idle(port, ctx, *login), connect_timeout)
            except CLIENT_ERRORS as exc:
                result.failed += 1
                result.first_error = result.first_error or _describe(exc)
                consecutive[0] += 1
                consecutive[1] += _refused(exc)
                if consecutive[0] >= give_up_after and not stop[0]:
                    result.capped = consecutive[1] == consecutive[0]
                    what = "were refused by the server" if result.capped else "failed"
                    stop[0] = f"{consecutive[0]} connections in a row {what}; opening stopped"
                return
            consecutive[0] = consecutive[1] = 0
            clients.append(client)
            watchers.append(asyncio.create_task(watch(client)))
            result.opened = len(clients)
            if result.opened % 1000 == 0:
                print(f"# {result.opened} idle connections open after {time.monotonic() - started:.0f} s",
                      file=sys.stderr, flush=True)

    async def sample_peak() -> None:
        while True:
            await asyncio.sleep(2)
            result.peak_rss = max(result.peak_rss, process_memory(probe.main(), with_pss=False).rss)

    sampler = asyncio.create_task(sample_peak())
    tasks = [asyncio.create_task(one()) for _ in range(spec.idle_connections)]
    try:
        _done, pending = await asyncio.wait(tasks, timeout=spec.idle_timeout)
        if pending:
            stop[0] = f"opening stopped after {spec.idle_timeout:.0f}s (--idle-timeout)"
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=10)
        result.open_seconds = time.monotonic() - started
        result.stopped = stop[0]
        sampler.cancel()
        # Hold: let the server settle (and run its periodic work), then weigh it.
        main_pids = probe.main()
        cpu_before, held_from = cpu_seconds(main_pids), time.monotonic()
        await asyncio.sleep(spec.idle_hold)
        main_pids = probe.main()
        result.cpu_share = (cpu_seconds(main_pids) - cpu_before) / (time.monotonic() - held_from)
        result.server = process_memory(main_pids)
        result.other = process_memory(probe.other())
        result.peak_rss = max(result.peak_rss, result.server.rss)
        result.still_open = len(clients) - closed[0]
    finally:
        sampler.cancel()
        for watcher in watchers:
            watcher.cancel()
        for client in clients:
            client.abort()
        await asyncio.sleep(0)


def _refused(exc: BaseException) -> bool:
    """The server said no to a new connection (its own limit): "* BYE", a
    reset or a refused connect, as opposed to a timeout or an error."""
    return isinstance(exc, (ConnectionResetError, ConnectionRefusedError)) or "* BYE" in _describe(exc)


def measure_idle(outcome: Outcome, spec: Spec, port: int, ctx: ssl.SSLContext | None,
                 login: tuple[str, str], probe: Probe, cap: str = "") -> None:
    mode = "IMAP, no TLS" if ctx is None else "IMAPS"
    result = Idle(spec.idle_connections, mode, probe.main_label, probe.other_label, cap=cap)
    outcome.idle = result
    if note := first_logins(port, ctx, [login], spec.timeout):
        outcome.notes.append(note)
        print(f"{outcome.target:<9} idle  [{note}]", flush=True)
        return
    try:
        asyncio.run(idle_phase(spec, port, ctx, login, probe, result))
    except CLIENT_ERRORS as exc:
        result.stopped = result.stopped or _describe(exc)
    for line in format_idle(outcome.target, result, spec):
        print(line, flush=True)
    if result.opened < result.wanted and not result.capped:
        outcome.notes.append(f"idle: {result.opened} of {result.wanted} connections opened")
    if result.still_open < result.opened:
        outcome.notes.append(f"idle: {result.opened - result.still_open} connections closed by the server while idle")


# -- targets --------------------------------------------------------------------------


def run_refstack(spec: Spec, message: bytes) -> Outcome:
    """Dovecot over IMAPS on 30993. Its passwd-file has three users, so the
    fetch clients share three mailboxes (read-only use: BODY.PEEK[])."""
    ensure_refstack()
    ctx = ssl.create_default_context(cafile=str(REFSTACK_CA))
    wait_imap_greeting(REFSTACK_IMAPS_PORT, ctx, 15, "refstack")
    users = list(REFSTACK_USERS)
    boxes = users[:min(spec.clients, len(users))]
    outcome = Outcome("refstack", spec.clients, len(boxes))

    def login_of(user: str) -> tuple[str, str]:
        return f"{user}@example.test", REFSTACK_USERS[user]

    try:
        if "fetch" in spec.phases:
            reset_refstack_mail()
            for user in boxes:
                fill_refstack_maildir(user, message, spec.messages)
            measure_fetch(outcome, spec, REFSTACK_IMAPS_PORT, ctx,
                          [login_of(boxes[i % len(boxes)]) for i in range(spec.clients)])
        if "latency" in spec.phases:
            reset_refstack_mail()
            fill_refstack_maildir(REFSTACK_LATENCY_USER, message, spec.latency_messages)
            measure_latency(outcome, spec, REFSTACK_IMAPS_PORT, ctx, login_of(REFSTACK_LATENCY_USER))
        if "idle" in spec.phases:
            reset_refstack_mail()
            fill_refstack_maildir(REFSTACK_IDLE_USER, message, spec.idle_messages)
            raise_open_files_limit(spec.idle_connections + 1024)
            port, idle_ctx = (REFSTACK_IMAP_PORT, None) if spec.idle_plain else (REFSTACK_IMAPS_PORT, ctx)
            measure_idle(outcome, spec, port, idle_ctx, login_of(REFSTACK_IDLE_USER), dovecot_probe(),
                         dovecot_cap())
    finally:
        reset_refstack_mail()  # leave no 10,000-message mailbox behind
    return outcome


def dovecot_master() -> int:
    try:
        return int(DOVECOT_MASTER_PID.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        raise BenchError(f"Dovecot's master pid not found in {DOVECOT_MASTER_PID}; is the refstack running?") from None


def dovecot_probe() -> Probe:
    master = dovecot_master()

    def split() -> tuple[list[int], list[int]]:
        main, other = [], [master]
        for pid in descendant_pids(master):
            (main if process_name(pid) in DOVECOT_SESSION_PROCESSES else other).append(pid)
        return main, other

    return Probe(lambda: split()[0], lambda: split()[1], "imap + imap-login",
                 "master, auth, anvil, log, config, stats")


def dovecot_cap() -> str:
    """Dovecot's own limits on IMAP connections, as doveconf reports them."""
    values = []
    for service in ("imap-login", "imap"):
        found = []
        for setting in ("process_limit", "client_limit"):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                proc = subprocess.run(["doveconf", "-h", f"service/{service}/{setting}"], capture_output=True,
                                      text=True, timeout=10)
                if proc.returncode == 0 and proc.stdout.strip():
                    found.append(f"{setting} {proc.stdout.strip()}")
        if found:
            values.append(f"{service}: {', '.join(found)}")
    return "; ".join(values)


def hatoba_probe(server: subprocess.Popen[bytes]) -> Probe:
    """The serving processes: `hatoba serve` and its other workers ([server] workers)."""
    def serving() -> list[int]:
        kids = descendant_pids(server.pid)
        return [server.pid, *(p for p in kids if "hatoba.net.worker_main" in process_cmdline(p))]

    def other() -> list[int]:
        kids = descendant_pids(server.pid)
        delivery = [p for p in kids if "hatoba.queue.process" in process_cmdline(p)]
        return delivery or [p for p in kids if p not in serving()]

    return Probe(serving, other, "hatoba serve and workers", "delivery children")


def run_hatoba(spec: Spec, message: bytes, port_offset: int | None, keep: bool, cli: list[str] | None,
               mailboxes: int) -> Outcome:
    """A fresh `hatoba init` home, one user per fetch mailbox plus one for
    latency and one for idle, then `hatoba serve`."""
    home = make_hatoba_home("imapbench@example.test", port_offset, cli)
    log_path = home.root.parent / "serve.log"
    outcome = Outcome("hatoba", spec.clients, mailboxes)
    try:
        enable_hatoba_listeners(home, ["imap", "imaps"])
        if "idle" in spec.phases:
            # Room for every idle connection, all from 127.0.0.1.
            room = str(spec.idle_connections + 1000)
            set_hatoba_setting(home, "limits", "max_connections", room)
            set_hatoba_setting(home, "limits", "max_connections_per_ip", room)
            set_hatoba_setting(home, "limits", "max_user_connections_per_ip", room)
            # The login throttle counts logins under way against one account from one
            # address (a guesser's parallel tries): the idle clients are one user on
            # 127.0.0.1, `--idle-concurrency` of them at once.
            burst = str(max(spec.idle_concurrency * 2, 100))
            for scope in ("pair", "address", "account"):
                set_hatoba_setting(home, "auth", f"{scope}_failures", burst)
            if spec.idle_plain:
                set_hatoba_setting(home, "auth", "plaintext_networks", '["127.0.0.1/32"]')
        logins = []
        if "fetch" in spec.phases:
            for n in range(1, mailboxes + 1):
                address, password = f"u{n:02d}@example.test", secrets.token_urlsafe(12)
                add_hatoba_user(home, address, password)
                fill_maildir(hatoba_user_maildir(home, address), message, spec.messages)
                logins.append((address, password))
        big = ("big@example.test", secrets.token_urlsafe(12))
        if "latency" in spec.phases:
            add_hatoba_user(home, *big)
            fill_maildir(hatoba_user_maildir(home, big[0]), message, spec.latency_messages)
        idler = ("idle@example.test", secrets.token_urlsafe(12))
        if "idle" in spec.phases:
            add_hatoba_user(home, *idler)
            fill_maildir(hatoba_user_maildir(home, idler[0]), message, spec.idle_messages)
            # The server inherits the limit: it needs a descriptor per connection too.
            raise_open_files_limit(spec.idle_connections + 1024)
        ctx = ssl.create_default_context(cafile=str(home.root / "tls" / "ca.crt"))
        port = 993 + home.port_offset
        with Children() as children, log_path.open("wb") as log:
            server = children.start(home.serve_argv(), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            try:
                wait_smtp_banner(home.smtp_port, timeout=60, proc=server)
                wait_imap_greeting(port, ctx, 10, "hatoba", server)
            except BenchError as exc:
                raise BenchError(f"{exc}{_log_hint(log_path, server.poll() is not None)}") from None
            if "fetch" in spec.phases:
                measure_fetch(outcome, spec, port, ctx, [logins[i % mailboxes] for i in range(spec.clients)])
            if "latency" in spec.phases:
                measure_latency(outcome, spec, port, ctx, big)
            if "idle" in spec.phases:
                idle_port, idle_ctx = (143 + home.port_offset, None) if spec.idle_plain else (port, ctx)
                measure_idle(outcome, spec, idle_port, idle_ctx, idler, hatoba_probe(server))
            if server.poll() is not None:
                outcome.notes.append(f"serve exited with status {server.returncode} during the run"
                                     f"{_log_hint(log_path, True)}")
            status = children.stop(server, grace=30)
            if status not in (0, None):
                outcome.notes.append(f"serve exited with status {status} on SIGTERM")
        return outcome
    finally:
        if keep:
            print(f"# kept {home.root} (server log {log_path})", file=sys.stderr)
        else:
            shutil.rmtree(home.root.parent, ignore_errors=True)


def _log_hint(log_path: Path, exited: bool) -> str:
    return server_log_hint(log_path, exited, "imap")


# -- output ---------------------------------------------------------------------------


def format_round(o: Outcome, number: int, r: Round) -> str:
    boxes = f"{o.mailboxes} mailbox{'es' if o.mailboxes != 1 else ''}"
    if o.mailboxes < o.clients:
        boxes += " (shared)"
    line = (f"{o.target:<9} fetch round {number}  {o.clients} clients  {boxes:<20} {r.messages:>6} msgs"
            f"  {r.rate:8.1f} msg/s  {r.mbps:6.1f} MB/s  wall {r.elapsed:6.1f} s")
    return line + (f"  [{r.note}]" if r.note else "")


def format_latency(target: str, label: str, times: Sequence[float]) -> str:
    runs = f"{len(times)} run{'s' if len(times) != 1 else ''}"
    return (f"{target:<9} {label:<34} {runs:>8}  p50 {_cell(percentile(times, 50), 8, 1000)} ms"
            f"  p99 {_cell(percentile(times, 99), 8, 1000)} ms")


def format_idle(target: str, r: Idle, spec: Spec) -> list[str]:
    rate = r.opened / r.open_seconds if r.open_seconds > 0 else 0.0
    lines = [f"{target:<9} idle  {r.opened}/{r.wanted} connections open ({r.mode}, LOGIN + SELECT + IDLE,"
             f" {spec.idle_concurrency} at a time) in {r.open_seconds:.1f} s ({rate:.1f}/s)"]
    if r.failed:
        lines.append(f"{target:<9} idle  {r.failed} failed; first: {r.first_error}")
    if r.stopped:
        lines.append(f"{target:<9} idle  [{r.stopped}]")
    if r.cap:
        lines.append(f"{target:<9} idle  server limits: {r.cap}")
    rss_each = (r.server.rss - r.at_rest.rss) / r.opened / 1024 if r.opened else 0.0
    pss_each = (r.server.pss - r.at_rest.pss) / r.opened / 1024 if r.opened else 0.0
    lines += [
        f"{target:<9} idle  after {spec.idle_hold:.0f} s: {r.still_open} still open;"
        f" CPU {r.cpu_share * 100:.1f}% of a core while idle",
        f"{target:<9} idle  {r.main_label} ({r.server.processes} processes): RSS {r.server.rss / MIB:.1f} MiB"
        f"  PSS {r.server.pss / MIB:.1f} MiB  (before: RSS {r.at_rest.rss / MIB:.1f} MiB; per connection"
        f" +{rss_each:.1f} KiB RSS, +{pss_each:.1f} KiB PSS; peak RSS while opening {r.peak_rss / MIB:.1f} MiB)",
        f"{target:<9} idle  {r.other_label} ({r.other.processes} processes): RSS {r.other.rss / MIB:.1f} MiB"
        f"  PSS {r.other.pss / MIB:.1f} MiB",
    ]
    return lines


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _cell(value: float | None, width: int, scale: float = 1.0) -> str:
    return f"{value * scale:>{width}.1f}" if value is not None else f"{'-':>{width}}"


def format_tables(outcomes: list[Outcome]) -> str:
    head = (f"{'target':<9} {'clients':>7} {'boxes':>5} {'msg/s 1st':>10} {'msg/s med':>10} {'MB/s med':>9}"
            f" {'idle conns':>10} {'open s':>7} {'RSS MiB':>8} {'PSS MiB':>8} {'other MiB':>9} {'CPU %':>6}")
    rows = [head, "-" * len(head)]
    for o in outcomes:
        good = [r for r in o.rounds if not r.note]
        first = o.rounds[0].rate if o.rounds and not o.rounds[0].note else None
        i = o.idle
        opened = f"{i.opened}{'*' if i.capped else ''}" if i else "-"
        idle_cells = (f"{opened:>10} {i.open_seconds:>7.1f} {i.server.rss / MIB:>8.1f} {i.server.pss / MIB:>8.1f}"
                      f" {i.other.rss / MIB:>9.1f} {i.cpu_share * 100:>6.1f}") if i else \
            f"{opened:>10} {'-':>7} {'-':>8} {'-':>8} {'-':>9} {'-':>6}"
        rows.append(f"{o.target:<9} {o.clients:>7} {o.mailboxes:>5} {_cell(first, 10)} "
                    f"{_cell(_median([r.rate for r in good]), 10)} {_cell(_median([r.mbps for r in good]), 9)} "
                    + idle_cells)
    rows.append("RSS/PSS: the processes that hold the connections (hatoba: serve and its workers; Dovecot: imap + imap-login),"
                " with the idle connections open; other: hatoba's delivery children, Dovecot's other processes"
                " (RSS); CPU %: theirs while idle; * the server refused more connections")
    labels: list[str] = []
    for o in outcomes:
        labels += [label for label in o.latencies if label not in labels]
    if labels:
        rows.append("")
        head = f"{'latency (ms)':<34}" + "".join(f" {o.target + ' p50':>13} {o.target + ' p99':>13}" for o in outcomes)
        rows += [head, "-" * len(head)]
        for label in labels:
            cells = "".join(f" {_cell(percentile(o.latencies.get(label, []), 50), 13, 1000)}"
                            f" {_cell(percentile(o.latencies.get(label, []), 99), 13, 1000)}" for o in outcomes)
            rows.append(f"{label:<34}{cells}")
    return "\n".join(rows)


def parse_phases(text: str) -> tuple[str, ...]:
    phases = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in phases if p not in PHASES]
    if unknown or not phases:
        raise argparse.ArgumentTypeError(f"phases are a comma list of {', '.join(PHASES)}")
    return phases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=("hatoba", "refstack", "both"), default="both")
    parser.add_argument("--phases", type=parse_phases, default=PHASES,
                        help="comma list of fetch, latency, idle (default: all three)")
    parser.add_argument("--clients", type=int, default=10, help="concurrent fetch clients (default 10)")
    parser.add_argument("--messages", type=int, default=1000, help="messages in each fetch mailbox (default 1000)")
    parser.add_argument("--size", type=parse_size, default=4096, help="message size (default 4k)")
    parser.add_argument("--rounds", type=int, default=3, help="fetch rounds over the same mailboxes (default 3)")
    parser.add_argument("--batch", type=int, default=100, help="messages per FETCH command (default 100)")
    parser.add_argument("--passes", type=int, default=1,
                        help="times each session fetches its whole mailbox in a round (default 1)")
    parser.add_argument("--mailboxes", type=int, help="hatoba fetch mailboxes the clients share (default: one each)")
    parser.add_argument("--latency-messages", type=int, default=10000, help="latency mailbox size (default 10000)")
    parser.add_argument("--runs", type=int, default=100, help="runs of each timed command (default 100)")
    parser.add_argument("--op-seconds", type=float, default=60, help="no new run of a command after (default 60)")
    parser.add_argument("--search", action="append", default=None, metavar="KEY",
                        help='SEARCH keys to time (repeatable; default: UNSEEN and FROM "nobody@example.net")')
    parser.add_argument("--idle-connections", type=int, default=10000, help="IDLE connections to hold (default 10000)")
    parser.add_argument("--idle-concurrency", type=int, default=200, help="opened at a time (default 200)")
    parser.add_argument("--idle-messages", type=int, default=10, help="messages in the idle mailbox (default 10)")
    parser.add_argument("--idle-hold", type=float, default=40, help="seconds held before weighing (default 40)")
    parser.add_argument("--idle-timeout", type=float, default=1800, help="seconds to open them in (default 1800)")
    parser.add_argument("--idle-plain", action="store_true",
                        help="idle connections over plain IMAP (port 143, no TLS; hatoba gets "
                             "[auth] plaintext_networks = [\"127.0.0.1/32\"])")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per fetch round or command (default 300)")
    parser.add_argument("--port-offset", type=int, help="hatoba port offset (default: a free one)")
    parser.add_argument("--hatoba", metavar="CMD",
                        help="hatoba command to run (default: the one beside this Python, on PATH, or -m hatoba)")
    parser.add_argument("--keep", action="store_true", help="keep the hatoba temp folder and its server log")
    args = parser.parse_args(argv)
    if min(args.clients, args.messages, args.rounds, args.batch, args.passes, args.latency_messages, args.runs,
           args.idle_connections, args.idle_concurrency) <= 0 or args.idle_messages < 0:
        parser.error("counts must be positive (--idle-messages may be 0)")
    mailboxes = args.clients if args.mailboxes is None else args.mailboxes
    if not 0 < mailboxes <= args.clients:
        parser.error("--mailboxes must be between 1 and --clients")

    exit_cleanly_on_sigterm()
    spec = Spec(args.clients, args.messages, args.size, args.rounds, args.batch, args.latency_messages, args.runs,
                args.op_seconds, tuple(args.search or ("UNSEEN", 'FROM "nobody@example.net"')),
                args.idle_connections, args.idle_concurrency, args.idle_messages, args.idle_hold,
                args.idle_timeout, args.idle_plain, args.phases, args.timeout, args.passes)
    message = make_message(args.size, "loadgen@example.net", "reader@example.test")
    cli = shlex.split(args.hatoba) if args.hatoba else None
    jobs = {
        "hatoba": lambda: run_hatoba(spec, message, args.port_offset, args.keep, cli, mailboxes),
        "refstack": lambda: run_refstack(spec, message),
    }
    try:
        outcomes, failed = run_targets(args.target, jobs, troubled=lambda o: bool(o.notes))
    except Interrupted:
        return 130
    if outcomes:
        print()
        print(format_tables(outcomes))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
