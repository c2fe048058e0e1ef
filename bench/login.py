#!/usr/bin/env python3
"""Logins: how fast IMAPS logins are served, and how many guesses a password
guesser gets checked, for hatoba and for the Postfix + Dovecot reference stack.

    .venv/bin/python bench/login.py                        # both targets
    .venv/bin/python bench/login.py --target hatoba --guess-seconds 120

logins: C clients at once, each R times in a row: connect to IMAPS (TLS,
  certificate verified), LOGIN (hatoba: also AUTHENTICATE SCRAM-SHA-256 in a
  second round), LOGOUT. logins/s = all logins / wall time; the latency is
  connect to the tagged OK. Mail programs log in again every few minutes,
  so this is the cost of a busy morning.
guessing: from 127.0.0.2, G connections at once send wrong passwords for one
  account for S seconds, each reconnecting as soon as it is answered, while
  the account's owner logs in from 127.0.0.1 every 5 s. "checked" counts
  answers that tested a password (AUTHENTICATIONFAILED), "refused" those
  the server turned away unchecked; the owner's refusals and slowest login
  show what the attack costs the real user.

This is a script that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import shutil
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import run as run_cli  # noqa: E402
from common import (  # noqa: E402
    REFSTACK_CA,
    REFSTACK_IMAPS_PORT,
    BenchError,
    Children,
    Interrupted,
    add_hatoba_user,
    enable_hatoba_listeners,
    ensure_refstack,
    exit_cleanly_on_sigterm,
    make_hatoba_home,
    percentile,
    run_targets,
    wait_smtp_banner,
)

REFSTACK_USERS = [("alice@example.test", "alice-pass-1"), ("bob@example.test", "bob-pass-1"),
                  ("carol@example.test", "carol-pass-1")] + [(f"pop{n}@example.test", f"pop{n}-pass-1")
                                                             for n in range(1, 5)]


@dataclass
class Result:
    target: str
    rounds: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # name -> (logins/s, p50, p99 ms)
    checked: int = 0
    refused: int = 0
    owner_refused: int = 0
    owner_logins: int = 0
    owner_slowest_ms: float = 0.0


async def _line(reader: asyncio.StreamReader) -> bytes:
    line = await asyncio.wait_for(reader.readline(), 60)
    if not line:
        raise ConnectionError("closed")
    return line


async def _tagged(reader: asyncio.StreamReader, tag: bytes) -> bytes:
    while True:
        line = await _line(reader)
        if line.startswith(tag + b" "):
            return line


async def imap_login(port: int, ctx: ssl.SSLContext, user: str, password: str, *,
                     scram: bool = False, source: str = "127.0.0.1") -> bytes:
    """One connection, one login, LOGOUT; the tagged answer to the login."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, local_addr=(source, 0),
                                                   server_hostname="mail.example.test")
    try:
        await _line(reader)
        if scram:
            import scramp

            client = scramp.ScramClient(["SCRAM-SHA-256"], user, password)
            first = base64.b64encode(client.get_client_first().encode())
            writer.write(b"a AUTHENTICATE SCRAM-SHA-256 " + first + b"\r\n")
            line = await _line(reader)
            client.set_server_first(base64.b64decode(line[2:].strip()).decode())
            writer.write(base64.b64encode(client.get_client_final().encode()) + b"\r\n")
            line = await _line(reader)
            if line.startswith(b"+ "):
                client.set_server_final(base64.b64decode(line[2:].strip()).decode())
                writer.write(b"\r\n")
                line = await _tagged(reader, b"a")
        else:
            writer.write(f'a LOGIN "{user}" "{password}"\r\n'.encode())
            line = await _tagged(reader, b"a")
        writer.write(b"b LOGOUT\r\n")
        return line
    finally:
        writer.close()


async def login_round(port: int, ctx: ssl.SSLContext, users, clients: int, repeat: int,
                      scram: bool) -> tuple[float, float, float]:
    latencies: list[float] = []

    async def client(n: int) -> None:
        user, password = users[n % len(users)]
        for _ in range(repeat):
            started = time.perf_counter()
            answer = await imap_login(port, ctx, user, password, scram=scram)
            if not answer.startswith(b"a OK"):
                raise BenchError(f"login of {user} refused: {answer[:120]!r}")
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    wall = time.perf_counter() - started
    return len(latencies) / wall, percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000


async def guessing(port: int, ctx: ssl.SSLContext, owner: tuple[str, str], parallel: int, seconds: float,
                   result: Result) -> None:
    end = time.monotonic() + seconds
    user, password = owner

    async def guesser(n: int) -> None:
        tries = 0
        while time.monotonic() < end:
            tries += 1
            try:
                answer = await imap_login(port, ctx, user, f"guess-{n}-{tries}", source="127.0.0.2")
            except (ConnectionError, OSError, asyncio.TimeoutError):
                result.refused += 1
                await asyncio.sleep(0.5)
                continue
            if b"AUTHENTICATIONFAILED" in answer:
                result.checked += 1
            else:
                result.refused += 1

    async def real_user() -> None:
        while time.monotonic() < end:
            started = time.perf_counter()
            answer = await imap_login(port, ctx, user, password)
            result.owner_logins += 1
            result.owner_slowest_ms = max(result.owner_slowest_ms, (time.perf_counter() - started) * 1000)
            if not answer.startswith(b"a OK"):
                result.owner_refused += 1
            await asyncio.sleep(5)

    await asyncio.gather(real_user(), *(guesser(n) for n in range(parallel)))


def measure(target: str, port: int, ca: Path, users, args: argparse.Namespace, scram: bool) -> Result:
    ctx = ssl.create_default_context(cafile=str(ca))
    result = Result(target)
    result.rounds["LOGIN"] = asyncio.run(login_round(port, ctx, users, args.clients, args.repeat, False))
    if scram:
        result.rounds["SCRAM"] = asyncio.run(login_round(port, ctx, users, args.clients, args.repeat, True))
    asyncio.run(guessing(port, ctx, users[0], args.guessers, args.guess_seconds, result))
    return result


def run_hatoba(args: argparse.Namespace) -> Result:
    home = make_hatoba_home("u01@example.test")
    try:
        users = [(f"u{n:02d}@example.test", f"bench-password-{n:02d}") for n in range(1, 11)]
        run_cli([*home.cli, "-c", str(home.config), "user", "passwd", users[0][0], "--password-stdin"],
                stdin=users[0][1] + "\n")
        for address, password in users[1:]:
            add_hatoba_user(home, address, password)
        enable_hatoba_listeners(home, ["imaps"])
        with Children() as children:
            proc = children.start(home.serve_argv())
            wait_smtp_banner(home.smtp_port, 30, proc)
            return measure("hatoba", 993 + home.port_offset, home.root / "tls" / "ca.crt", users, args, True)
    finally:
        shutil.rmtree(home.root.parent, ignore_errors=True)


def run_refstack(args: argparse.Namespace) -> Result:
    ensure_refstack()
    return measure("refstack", REFSTACK_IMAPS_PORT, REFSTACK_CA, REFSTACK_USERS, args, False)


def main() -> int:
    exit_cleanly_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=("hatoba", "refstack", "both"), default="both")
    parser.add_argument("--clients", type=int, default=10, help="clients logging in at once (default 10)")
    parser.add_argument("--repeat", type=int, default=30, help="logins per client (default 30)")
    parser.add_argument("--guessers", type=int, default=6, help="guessing connections at once (default 6)")
    parser.add_argument("--guess-seconds", type=float, default=60, help="length of the attack (default 60)")
    args = parser.parse_args()
    try:
        results, failed = run_targets(args.target, {
            "hatoba": lambda: run_hatoba(args),
            "refstack": lambda: run_refstack(args),
        })
    except Interrupted:
        return 130
    for r in results:
        for name, (rate, p50, p99) in r.rounds.items():
            print(f"{r.target:<9} {name:<6} {rate:8.1f} logins/s   p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")
        print(f"{r.target:<9} guessing {args.guess_seconds:.0f} s from one address x{args.guessers}: "
              f"{r.checked} passwords checked, {r.refused} tries refused unchecked; "
              f"owner: {r.owner_refused}/{r.owner_logins} refused, slowest login {r.owner_slowest_ms:.0f} ms")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
