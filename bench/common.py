"""Helpers shared by the bench/ scripts: ports, child processes, Maildirs, the
reference stack, hatoba test homes and a fast asyncio SMTP load client.

Benches print figures; they are not tests. They run only on 127.0.0.1.

Rules:
- Every child process a bench starts is registered with `Children` and is
  killed (its whole process group) on any exit: normal end, exception,
  Ctrl-C or SIGTERM.
- Times that are compared with Maildir file mtimes use the wall clock
  (`time.time()`); everything else uses `time.monotonic()`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

HATOBA_STANDARD_PORTS = (25, 587, 465, 110, 995, 143, 993, 80)

REFSTACK_DIR = Path(os.environ.get("HATOBA_REFSTACK", "/work/shared/refstack"))
REFSTACK_ROOT = Path("/var/tmp/refstack")
REFSTACK_SMTP_PORT = 30025


class BenchError(RuntimeError):
    """A bench could not set up or run its target; the message says why."""


# -- ports and processes -----------------------------------------------------


def port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port and we may bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_offset(ports: Sequence[int] = HATOBA_STANDARD_PORTS, low: int = 20000, high: int = 60000) -> int:
    """A port offset N (a multiple of 1000) with every standard port + N free."""
    candidates = list(range(low, high, 1000))
    random.shuffle(candidates)
    for offset in candidates:
        if all(port_free(p + offset) for p in ports):
            return offset
    raise BenchError(f"no free port offset between {low} and {high}; stop other servers and retry")


def wait_smtp_banner(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until 127.0.0.1:port answers with an SMTP 220 greeting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"server exited with status {proc.returncode} before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(5)
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"nothing answered SMTP on 127.0.0.1:{port} within {timeout:.0f}s")


class Children:
    """Child processes to kill on any exit; use as a context manager."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], *, stdin: int | IO[bytes] | None = None,
              stdout: int | IO[bytes] | None = None, stderr: int | IO[bytes] | None = None) -> subprocess.Popen[bytes]:
        """Popen in its own process group (so its children go with it)."""
        proc = subprocess.Popen(list(argv), stdin=stdin, stdout=stdout, stderr=stderr, start_new_session=True)
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 10.0) -> int | None:
        """SIGTERM (graceful stop), then SIGKILL of the group after `grace` seconds."""
        if proc in self._procs:
            self._procs.remove(proc)
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(5)
        # Whatever the leader left behind in its group goes too.
        _signal_group(proc, signal.SIGKILL)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in list(self._procs):
            self.stop(proc, grace=5.0)

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so `finally` blocks and `Children` run."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def run(argv: Sequence[str], *, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a setup command; raise BenchError with its stderr when it fails."""
    try:
        proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise BenchError(f"{argv[0]} not found; install it or fix PATH") from None
    except subprocess.TimeoutExpired:
        raise BenchError(f"{' '.join(argv)} did not finish within {timeout:.0f}s") from None
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise BenchError(f"{' '.join(argv)} failed (exit {proc.returncode}): {detail[0]}")
    return proc


def as_root(argv: Sequence[str]) -> list[str]:
    """argv, prefixed with non-interactive sudo unless we already are root."""
    return list(argv) if os.geteuid() == 0 else ["sudo", "-n", *argv]


# -- Maildir -------------------------------------------------------------------


def maildir_count(maildir: Path) -> int:
    """Messages in new/ and cur/ (0 when the Maildir does not exist yet)."""
    total = 0
    for sub in ("new", "cur"):
        with contextlib.suppress(FileNotFoundError):
            total += sum(1 for e in os.scandir(maildir / sub) if not e.name.startswith("."))
    return total


def maildir_last_mtime(maildir: Path) -> float | None:
    """Wall-clock time the newest message file was written, or None if empty."""
    newest: float | None = None
    for sub in ("new", "cur"):
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(maildir / sub):
                if not entry.name.startswith("."):
                    with contextlib.suppress(FileNotFoundError):
                        mtime = entry.stat().st_mtime
                        newest = mtime if newest is None or mtime > newest else newest
    return newest


def wait_maildir(maildir: Path, expected: int, deadline: float) -> int:
    """Poll until `expected` messages are in the Maildir or the monotonic deadline passes."""
    count = maildir_count(maildir)
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.05)
        count = maildir_count(maildir)
    return count


# -- targets -----------------------------------------------------------------


def ensure_refstack(refstack_dir: Path = REFSTACK_DIR) -> None:
    """Set up and start the Postfix + Dovecot reference stack unless it already answers."""
    if _answers_smtp(REFSTACK_SMTP_PORT):
        return
    if not (refstack_dir / "setup.sh").is_file():
        raise BenchError(f"reference stack scripts not found in {refstack_dir}; set HATOBA_REFSTACK")
    if not (REFSTACK_ROOT / "tls" / "server.crt").is_file():
        run(as_root(["bash", str(refstack_dir / "setup.sh")]), timeout=600)
    run(as_root(["bash", str(refstack_dir / "start.sh")]), timeout=120)
    wait_smtp_banner(REFSTACK_SMTP_PORT, timeout=30)


def reset_refstack_mail(refstack_dir: Path = REFSTACK_DIR) -> None:
    """Empty every reference-stack mailbox and its Postfix queue."""
    run(as_root(["bash", str(refstack_dir / "reset-mail.sh")]), timeout=120)


def refstack_maildir(user: str = "bob") -> Path:
    return REFSTACK_ROOT / "mail" / "example.test" / user / "Maildir"


def hatoba_command() -> list[str]:
    """The hatoba CLI: the console script beside this Python, on PATH, or `-m hatoba`."""
    beside = Path(sys.executable).with_name("hatoba")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("hatoba")
    return [found] if found else [sys.executable, "-m", "hatoba"]


@dataclass(frozen=True)
class HatobaHome:
    """A throwaway `hatoba init` folder with one user, for one bench run."""

    root: Path
    port_offset: int
    address: str
    cli: tuple[str, ...]

    @property
    def config(self) -> Path:
        return self.root / "hatoba.toml"

    @property
    def smtp_port(self) -> int:
        return 25 + self.port_offset

    @property
    def maildir(self) -> Path:
        local, domain = self.address.split("@")
        return self.root / "data" / "mail" / domain / local.lower() / "Maildir"

    def serve_argv(self) -> list[str]:
        return [*self.cli, "-c", str(self.config), "serve"]


def make_hatoba_home(address: str = "bench@example.test", port_offset: int | None = None,
                     cli: Sequence[str] | None = None) -> HatobaHome:
    """`hatoba init` in a new temp folder (`home/` inside it), then `user add`, through the CLI.

    The caller removes `home.root.parent` when done; on failure it is removed here.
    """
    domain = address.split("@")[1]
    root = Path(tempfile.mkdtemp(prefix="hatoba-bench-")) / "home"
    try:
        offset = free_port_offset() if port_offset is None else port_offset
        argv = tuple(cli) if cli else tuple(hatoba_command())
        run([*argv, "init", str(root), "--hostname", f"mail.{domain}", "--domain", domain,
             "--port-offset", str(offset)])
        home = HatobaHome(root, offset, address, argv)
        if os.geteuid() == 0:
            _stay_root(home.config)
        if os.environ.get("HATOBA_BENCH_WORKERS"):  # compare worker counts: [server] workers
            set_hatoba_setting(home, "server", "workers", str(int(os.environ["HATOBA_BENCH_WORKERS"])))
        listed = run([*argv, "-c", str(home.config), "domain", "list"])
        if domain not in listed.stdout.split():
            run([*argv, "-c", str(home.config), "domain", "add", domain])
        run([*argv, "-c", str(home.config), "user", "add", address, "--password-stdin"],
            stdin=secrets.token_urlsafe(16) + "\n")
    except BaseException:
        shutil.rmtree(root.parent, ignore_errors=True)
        raise
    return home


def _stay_root(config: Path) -> None:
    """A bench run as root serves as root: its temp folder and the interpreter may sit
    under root's 0700 folders, which the service user cannot reach."""
    text = config.read_text()
    if 'user = "hatoba"' not in text:
        raise SystemExit(f"bench: no [server] user line to change in {config}")
    config.write_text(text.replace('user = "hatoba"', 'user = ""', 1)
                      .replace("# allow_root = false", "allow_root = true", 1))


def _answers_smtp(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(5)
            ok = s.recv(512).startswith(b"220")
            s.sendall(b"QUIT\r\n")
            return ok
    except OSError:
        return False


# -- the SMTP load client -----------------------------------------------------


def make_message(size: int, sender: str, rcpt: str) -> bytes:
    """A plain-text RFC 5322 message of about `size` bytes, CRLF lines, dot-stuffing-free."""
    header = (
        f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: bench {size} bytes\r\n"
        "Date: Thu, 1 Jan 2026 00:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen.\r\n"
    body_len = max(size - len(header), len(line))
    body = (line * (body_len // len(line) + 1))[:body_len]
    return header + body.rstrip(b"\r\n") + b"\r\n"


@dataclass
class LoadResult:
    accepted: int = 0
    rejected: int = 0
    first_error: str = ""
    elapsed: float = 0.0  # seconds from the first connect to the last 250


class _Reader:
    """SMTP replies off an asyncio stream: multi-line aware (RFC 5321 §4.2.1)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    async def reply(self) -> tuple[int, bytes]:
        lines = []
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            lines.append(line)
            if line[3:4] != b"-":
                return int(line[:3]), b"".join(lines)


async def smtp_load(port: int, sender: str, rcpt: str, message: bytes, count: int, sessions: int,
                    ehlo_name: str = "bench.example.net", result: LoadResult | None = None) -> LoadResult:
    """Send `count` copies of `message` over `sessions` parallel SMTP sessions.

    Each session says EHLO once, then repeats MAIL/RCPT/DATA, pipelining the
    three commands when the server offers PIPELINING (RFC 2920 §3.1: DATA may
    end a pipelined group). Message-ID is unique per message. Counts go into
    `result` as they happen, so a caller that cancels on timeout keeps them.
    """
    result = LoadResult() if result is None else result
    remaining = [count]
    payload = message if message.endswith(b"\r\n") else message + b"\r\n"
    # RFC 5321 §4.5.2: dot-stuffing of lines that begin with "."
    payload = payload.replace(b"\r\n.", b"\r\n..")
    if payload.startswith(b"."):
        payload = b"." + payload
    started = time.monotonic()
    last_ok = [started]
    result.elapsed = 0.0

    async def session(index: int) -> None:
        reader_, writer = await asyncio.open_connection("127.0.0.1", port)
        reader = _Reader(reader_)
        try:
            code, text = await reader.reply()
            if code != 220:
                raise ConnectionError(f"greeting {text!r}")
            writer.write(f"EHLO {ehlo_name}\r\n".encode())
            code, text = await reader.reply()
            if code != 250:
                raise ConnectionError(f"EHLO refused: {text!r}")
            pipelining = b"PIPELINING" in text.upper()
            n = 0
            while remaining[0] > 0:
                remaining[0] -= 1
                n += 1
                mail = f"MAIL FROM:<{sender}>\r\n".encode()
                rcpt_cmd = f"RCPT TO:<{rcpt}>\r\n".encode()
                if pipelining:
                    writer.write(mail + rcpt_cmd + b"DATA\r\n")
                    codes = [(await reader.reply())[0] for _ in range(3)]
                else:
                    codes = []
                    for cmd in (mail, rcpt_cmd, b"DATA\r\n"):
                        writer.write(cmd)
                        codes.append((await reader.reply())[0])
                        if codes[-1] >= 400:
                            break
                if codes[-1] != 354:
                    result.rejected += 1
                    result.first_error = result.first_error or f"MAIL/RCPT/DATA replies {codes}"
                    if codes[-1] < 400 and len(codes) == 3:
                        # DATA got an unexpected positive reply; end it to resync.
                        writer.write(b".\r\n")
                        await reader.reply()
                    writer.write(b"RSET\r\n")
                    await reader.reply()
                    continue
                msgid = f"Message-ID: <{index}.{n}.{secrets.token_hex(4)}@{ehlo_name}>\r\n".encode()
                writer.write(msgid + payload + b".\r\n")
                code, text = await reader.reply()
                if code == 250:
                    result.accepted += 1
                    last_ok[0] = time.monotonic()
                    result.elapsed = last_ok[0] - started
                else:
                    result.rejected += 1
                    result.first_error = result.first_error or f"end of DATA: {text.decode(errors='replace').strip()}"
            writer.write(b"QUIT\r\n")
            await writer.drain()
            with contextlib.suppress(ConnectionError):
                await reader.reply()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    outcomes = await asyncio.gather(*(session(i) for i in range(sessions)), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not result.first_error:
            result.first_error = f"session failed: {outcome!r}"
    result.elapsed = last_ok[0] - started
    return result


def smtp_source_load(port: int, sender: str, rcpt: str, size: int, count: int, sessions: int,
                     timeout: float) -> LoadResult:
    """The same load with Postfix's smtp-source (-d: many messages per connection)."""
    exe = shutil.which("smtp-source") or ("/usr/sbin/smtp-source" if Path("/usr/sbin/smtp-source").exists() else None)
    if exe is None:
        raise BenchError("smtp-source not found; install postfix or use --client asyncio")
    argv = [exe, "-d", "-l", str(size), "-m", str(count), "-s", str(sessions),
            "-f", sender, "-t", rcpt, f"127.0.0.1:{port}"]
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return LoadResult(first_error=f"smtp-source did not finish within {timeout:.0f}s",
                          elapsed=time.monotonic() - started)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        return LoadResult(first_error=f"smtp-source: {(proc.stderr or proc.stdout).strip()[-200:]}", elapsed=elapsed)
    return LoadResult(accepted=count, elapsed=elapsed)



# -- filling stores directly ---------------------------------------------------
# Read benches (POP3, IMAP) need big mailboxes fast: writing Maildir files
# directly takes seconds where delivering them over SMTP takes minutes.

REFSTACK_POP3S_PORT = 30995
REFSTACK_CA = REFSTACK_ROOT / "tls" / "ca.crt"
REFSTACK_MAIL_UID = 5000  # the vmail user Dovecot reads and writes mail as
MAILDIR_NAME_TIME = 1700000000


def fill_maildir(maildir: Path, message: bytes, count: int, *, owner: tuple[int, int] | None = None,
                 tag: str = "bench") -> int:
    """Write `count` copies of `message` into maildir/new/, as a delivery agent would.

    Each copy gets its own Message-ID line first. Files hold LF line ends
    (what every Maildir reader expects) and are named
    "TIME.M<n>P<pid>.<tag>,S=<bytes on disk>,W=<bytes with CRLF>", the
    size fields Dovecot's own delivery writes so that no reader has to open
    a file just to learn its size. Nothing is fsynced: this is bench data.
    `owner` (uid, gid) is applied to the folders and files (needs root).
    Returns the bytes written.
    """
    body = message.replace(b"\r\n", b"\n")
    for sub in ("", "tmp", "new", "cur"):
        path = maildir / sub if sub else maildir
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if owner is not None:
            os.chown(path, *owner)
    pid = os.getpid()
    written = 0
    new = maildir / "new"
    for n in range(1, count + 1):
        data = f"Message-ID: <{n}.{pid}.{tag}@example.test>\n".encode() + body
        vsize = len(data) + data.count(b"\n")
        path = new / f"{MAILDIR_NAME_TIME + n}.M{n}P{pid}.{tag},S={len(data)},W={vsize}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_fully(fd, data)
            if owner is not None:
                os.fchown(fd, *owner)
        finally:
            os.close(fd)
        written += len(data)
    return written


def _write_fully(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fill_refstack_maildir(user: str, message: bytes, count: int) -> int:
    """fill_maildir() for a reference-stack user, owned by vmail as Dovecot expects.

    As root the files are written in place; otherwise they are written to a
    temp folder and copied in with sudo.
    """
    owner = (REFSTACK_MAIL_UID, REFSTACK_MAIL_UID)
    target = refstack_maildir(user)
    if os.geteuid() == 0:
        for parent in (target.parent.parent, target.parent):  # example.test/ and the user's home
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chown(parent, *owner)
        return fill_maildir(target, message, count, owner=owner)
    stage = Path(tempfile.mkdtemp(prefix="refstack-fill-"))
    try:
        written = fill_maildir(stage / "Maildir", message, count)
        run(as_root(["mkdir", "-p", str(target.parent)]))
        run(as_root(["cp", "-r", str(stage / "Maildir"), str(target.parent)]), timeout=600)
        run(as_root(["chown", "-R", f"{owner[0]}:{owner[1]}", str(target.parent.parent)]), timeout=600)
        return written
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def hatoba_user_maildir(home: HatobaHome, address: str) -> Path:
    """Where hatoba keeps `address`'s mail: DATA/mail/DOMAIN/LOCAL/Maildir."""
    local, domain = address.split("@")
    return home.root / "data" / "mail" / domain.lower() / local.lower() / "Maildir"


def add_hatoba_user(home: HatobaHome, address: str, password: str) -> None:
    """`hatoba user add ADDRESS --password-stdin` in the home."""
    run([*home.cli, "-c", str(home.config), "user", "add", address, "--password-stdin"], stdin=password + "\n")


def enable_hatoba_listeners(home: HatobaHome, names: Sequence[str]) -> None:
    """Set `enabled = true` in the [listeners.NAME] tables of the home's hatoba.toml."""
    lines = home.config.read_text().splitlines()
    for name in names:
        header = f"[listeners.{name}]"
        try:
            start = next(i for i, line in enumerate(lines) if line.strip() == header)
        except StopIteration:
            raise BenchError(f"{home.config} has no {header} table") from None
        end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
        for i in range(start + 1, end):
            if lines[i].split("=")[0].strip() == "enabled":
                lines[i] = "enabled = true"
                break
        else:
            lines.insert(start + 1, "enabled = true")
    home.config.write_text("\n".join(lines) + "\n")


# -- processes: open-file limit, memory, CPU -------------------------------------
# Connection benches hold thousands of sockets and weigh servers by what the
# kernel says they hold (/proc), the same way for one process or for many.

REFSTACK_IMAP_PORT = 30143
REFSTACK_IMAPS_PORT = 30993


def raise_open_files_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE to `wanted` (the hard limit too when we may: root);
    children started afterwards inherit it. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass(frozen=True)
class ProcMemory:
    """Memory of a set of processes: RSS counts shared pages once per process,
    PSS divides them among the processes that share them (fair for many)."""

    rss: int = 0  # bytes
    pss: int = 0  # bytes; 0 when /proc/PID/smaps_rollup cannot be read
    processes: int = 0

    def __add__(self, other: ProcMemory) -> ProcMemory:
        return ProcMemory(self.rss + other.rss, self.pss + other.pss, self.processes + other.processes)


def _proc_field_kb(path: str, name: bytes) -> int | None:
    with contextlib.suppress(OSError):
        with open(path, "rb") as f:
            for line in f:
                if line.startswith(name):
                    return int(line.split()[1])
    return None


def process_memory(pids: Sequence[int], *, with_pss: bool = True) -> ProcMemory:
    """VmRSS (/proc/PID/status) and Pss (/proc/PID/smaps_rollup) summed over
    `pids`; processes that are gone are skipped. PSS walks the page tables:
    leave it out (with_pss=False) when sampling often."""
    total = ProcMemory()
    for pid in pids:
        rss = _proc_field_kb(f"/proc/{pid}/status", b"VmRSS:")
        if rss is None:
            continue
        pss = (_proc_field_kb(f"/proc/{pid}/smaps_rollup", b"Pss:") or 0) if with_pss else 0
        total = total + ProcMemory(rss * 1024, pss * 1024, 1)
    return total


def process_name(pid: int) -> str:
    """The kernel's short name of the process (/proc/PID/comm), "" when gone."""
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return ""


def process_cmdline(pid: int) -> str:
    """The process's argv joined by spaces, "" when gone."""
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    return ""


def descendant_pids(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...), from the
    parent field of /proc/*/stat."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{entry.name}/stat").read_bytes()
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time used so far by `pids` (not their reaped children)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_bytes()
            fields = stat[stat.rindex(b")") + 2:].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / tick


def set_hatoba_setting(home: HatobaHome, table: str, key: str, value: str) -> None:
    """Write `key = value` (value as TOML text, e.g. "20000" or '["127.0.0.1/32"]')
    into [table] of the home's hatoba.toml, replacing the key or its
    commented-out default; the table is added when missing."""
    lines = home.config.read_text().splitlines()
    header = f"[{table}]"
    start = next((i for i, line in enumerate(lines) if line.strip() == header), None)
    if start is None:
        lines += ["", header, f"{key} = {value}"]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
        for i in range(start + 1, end):
            if lines[i].lstrip("# ").split("=")[0].strip() == key and "=" in lines[i]:
                lines[i] = f"{key} = {value}"
                break
        else:
            lines.insert(start + 1, f"{key} = {value}")
    home.config.write_text("\n".join(lines) + "\n")


# -- figures -----------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def parse_size(text: str) -> int:
    """A message size option: 4096, 4k, 4kb or 1m (argparse type)."""
    text = text.strip().lower().removesuffix("b")
    factor = 1024 if text.endswith("k") else 1024 * 1024 if text.endswith("m") else 1
    number = text.rstrip("km")
    if not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r} must look like 4096, 4k or 1m")
    return int(number) * factor


def server_log_hint(log_path: Path, exited: bool, keyword: str) -> str:
    """The server's own word, as ` (server log: ...)`: its last line when it
    exited (the error), else the first line that mentions `keyword`."""
    with contextlib.suppress(OSError):
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        related = [line for line in lines if keyword in line.lower()]
        pick = lines[-1:] if exited else related[:1]
        if pick:
            return f" (server log: {pick[0][:160]})"
    return ""


Outcome = TypeVar("Outcome")


class Interrupted(Exception):
    """Ctrl-C during run_each: the script stops with status 130."""


def run_each(
    jobs: Sequence[tuple[str, Callable[[], Outcome]]],
    *,
    troubled: Callable[[Outcome], bool] = lambda _: False,
    show: Callable[[Outcome], str] | None = None,
) -> tuple[list[Outcome], bool]:
    """Run each (label, job) in turn: (the outcomes, whether any failed).

    A BenchError is one line under its label and the next job goes on; an
    outcome counts as failed when troubled(outcome); show(outcome) is
    printed as soon as a job ends. Ctrl-C raises Interrupted.
    """
    outcomes: list[Outcome] = []
    failed = False
    for label, job in jobs:
        try:
            outcome = job()
        except BenchError as exc:
            print(f"{label} failed: {exc}", flush=True)
            failed = True
            continue
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise Interrupted from None
        outcomes.append(outcome)
        failed = failed or troubled(outcome)
        if show is not None:
            print(show(outcome), flush=True)
    return outcomes, failed


def run_targets(
    target: str,
    jobs: Mapping[str, Callable[[], Outcome]],
    *,
    troubled: Callable[[Outcome], bool] = lambda _: False,
) -> tuple[list[Outcome], bool]:
    """run_each over the jobs `target` names ("both": every one, in order), labelled by name."""
    names = list(jobs) if target == "both" else [target]
    return run_each([(f"{name:<9}", jobs[name]) for name in names], troubled=troubled)
