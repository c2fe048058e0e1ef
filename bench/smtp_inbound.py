#!/usr/bin/env python3
"""Inbound SMTP throughput: messages/s accepted (250 after DATA) and messages/s
delivered into the recipient's Maildir, for hatoba and for the Postfix +
Dovecot reference stack, with the same load (N messages over S parallel
sessions to one user).

    .venv/bin/python bench/smtp_inbound.py                 # both targets, 4 KB and 50 KB
    .venv/bin/python bench/smtp_inbound.py --target refstack --count 1000 --sizes 4k

hatoba judges mail from other servers as it arrives (SPF, DKIM, DMARC: its
default); `--checks both` adds a run with `[checks] enabled = false` beside
it, to show what the checks cost. hatoba's lookups go to a DNS server of the
bench's own on loopback, which publishes SPF and DMARC for the
sender's domain (tests/support/dnsserver.py), so nothing waits on the Internet.

accepted/s  = messages answered 250 / (time of the last 250 - start)
delivered/s = messages in Maildir new/+cur/ / (mtime of the newest file - start)
wall        = start to the later of the last 250 and the last delivery

This is a script that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.dnsserver import DnsServer  # noqa: E402  (the tests' loopback DNS server)
from common import (  # noqa: E402
    Interrupted,
    run_each,
    REFSTACK_SMTP_PORT,
    BenchError,
    Children,
    LoadResult,
    ensure_refstack,
    set_hatoba_setting,
    exit_cleanly_on_sigterm,
    make_hatoba_home,
    make_message,
    maildir_count,
    maildir_last_mtime,
    refstack_maildir,
    reset_refstack_mail,
    smtp_load,
    smtp_source_load,
    wait_maildir,
    wait_smtp_banner,
)

SENDER = "loadgen@example.net"
# What the sender's domain publishes, as a real one would: the bench's client
# may send for it (SPF), and a DMARC policy that asks for nothing.
SENDER_DNS = {
    "example.net": [("TXT", "v=spf1 ip4:127.0.0.1 -all")],
    "_dmarc.example.net": [("TXT", "v=DMARC1; p=none")],
}


@dataclass(frozen=True)
class Spec:
    target: str
    size: int
    count: int
    sessions: int


@dataclass(frozen=True)
class Outcome:
    spec: Spec
    accepted: int
    delivered: int
    accept_rate: float
    deliver_rate: float
    wall: float
    note: str = ""


def measure(spec: Spec, port: int, rcpt: str, maildir: Path, client: str, timeout: float) -> Outcome:
    """Run the load against 127.0.0.1:port and wait for the deliveries (bounded by `timeout`)."""
    if maildir_count(maildir):
        raise BenchError(f"{maildir} is not empty before the run; reset it first")
    deadline = time.monotonic() + timeout
    start_wall = time.time()
    note = ""
    if client == "smtp-source":
        load = smtp_source_load(port, SENDER, rcpt, spec.size, spec.count, spec.sessions, timeout)
    else:
        load = LoadResult()
        message = make_message(spec.size, SENDER, rcpt)
        try:
            asyncio.run(asyncio.wait_for(
                smtp_load(port, SENDER, rcpt, message, spec.count, spec.sessions, result=load), timeout))
        except TimeoutError:
            note = f"load timed out after {timeout:.0f}s"
    if load.first_error:
        note = note or load.first_error
    delivered = wait_maildir(maildir, load.accepted, deadline)
    if delivered < load.accepted and not note:
        note = f"only {delivered}/{load.accepted} delivered within {timeout:.0f}s"
    last = maildir_last_mtime(maildir)
    deliver_time = (last - start_wall) if last is not None else 0.0
    wall = max(load.elapsed, deliver_time)
    return Outcome(
        spec=spec,
        accepted=load.accepted,
        delivered=delivered,
        accept_rate=load.accepted / load.elapsed if load.elapsed > 0 else 0.0,
        deliver_rate=delivered / deliver_time if deliver_time > 0 else 0.0,
        wall=wall,
        note=note,
    )


def run_refstack(spec: Spec, client: str, timeout: float) -> Outcome:
    ensure_refstack()
    reset_refstack_mail()
    return measure(spec, REFSTACK_SMTP_PORT, "bob@example.test", refstack_maildir("bob"), client, timeout)


def run_hatoba(spec: Spec, client: str, timeout: float, port_offset: int | None, keep: bool,
               cli: list[str] | None, dns_address: str) -> Outcome:
    """A fresh `hatoba init` home and `hatoba serve` per run, stopped with SIGTERM at the end."""
    home = make_hatoba_home("bench@example.test", port_offset, cli)
    set_hatoba_setting(home, "dns", "resolver", f'"{dns_address}"')
    if spec.target == "hatoba-nochecks":
        set_hatoba_setting(home, "checks", "enabled", "false")
    log_path = home.root.parent / "serve.log"
    try:
        with Children() as children, log_path.open("wb") as log:
            server = children.start(home.serve_argv(), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            try:
                wait_smtp_banner(home.smtp_port, timeout=60, proc=server)
            except BenchError as exc:
                raise BenchError(f"{exc}; see {log_path}") from None
            outcome = measure(spec, home.smtp_port, home.address, home.maildir, client, timeout)
            status = children.stop(server, grace=15)
            if status not in (0, None) and not outcome.note:
                outcome = Outcome(**{**outcome.__dict__, "note": f"serve exited with status {status} on SIGTERM"})
            return outcome
    finally:
        if not keep:
            shutil.rmtree(home.root.parent, ignore_errors=True)
        else:
            print(f"# kept {home.root} (server log {log_path})", file=sys.stderr)


def parse_size(text: str) -> int:
    text = text.strip().lower().removesuffix("b")
    factor = 1024 if text.endswith("k") else 1024 * 1024 if text.endswith("m") else 1
    number = text.rstrip("km")
    if not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r} must look like 4096, 4k or 1m")
    return int(number) * factor


def size_label(size: int) -> str:
    return f"{size // 1024}KB" if size % 1024 == 0 else f"{size}B"


def format_outcome(o: Outcome) -> str:
    s = o.spec
    line = (f"{s.target:<15}{size_label(s.size):>5} {s.count:>6} msgs {s.sessions:>3} sessions"
            f"  accepted {o.accept_rate:8.1f} msg/s  delivered {o.deliver_rate:8.1f} msg/s  wall {o.wall:6.1f} s")
    if o.accepted != s.count or o.delivered != o.accepted:
        line += f"  ({o.accepted} accepted, {o.delivered} delivered)"
    return line + (f"  [{o.note}]" if o.note else "")


def format_table(outcomes: list[Outcome]) -> str:
    head = f"{'target':<15} {'size':>5} {'messages':>8} {'sessions':>8} {'accepted/s':>11} {'delivered/s':>12} {'wall s':>7}"
    rows = [head, "-" * len(head)]
    for o in sorted(outcomes, key=lambda o: (o.spec.size, o.spec.target)):
        s = o.spec
        rows.append(f"{s.target:<15} {size_label(s.size):>5} {s.count:>8} {s.sessions:>8} "
                    f"{o.accept_rate:>11.1f} {o.deliver_rate:>12.1f} {o.wall:>7.1f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=("hatoba", "refstack", "both"), default="both")
    parser.add_argument("--sizes", default="4k,50k", help="message sizes, comma-separated (default 4k,50k)")
    parser.add_argument("--count", type=int, default=5000, help="messages for the first size (default 5000)")
    parser.add_argument("--large-count", type=int, default=5000, help="messages for every other size (default 5000)")
    parser.add_argument("--sessions", type=int, default=20, help="parallel SMTP sessions (default 20)")
    parser.add_argument("--client", choices=("asyncio", "smtp-source"), default="asyncio",
                        help="load generator: built-in asyncio client or Postfix's smtp-source")
    parser.add_argument("--timeout", type=float, default=300, help="seconds allowed per run (default 300)")
    parser.add_argument("--port-offset", type=int, default=None, help="hatoba port offset (default: a free one)")
    parser.add_argument("--hatoba", metavar="CMD", default=None,
                        help="hatoba command to run (default: the one beside this Python, on PATH, or -m hatoba)")
    parser.add_argument("--keep", action="store_true", help="keep the hatoba temp folder and its server log")
    parser.add_argument("--checks", choices=("on", "both"), default="on",
                        help="both: also run hatoba with [checks] enabled = false, to show their cost")
    args = parser.parse_args(argv)
    try:
        sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.count <= 0 or args.large_count <= 0 or args.sessions <= 0:
        parser.error("--count, --large-count and --sessions must be positive")

    exit_cleanly_on_sigterm()
    hatobas = ["hatoba", "hatoba-nochecks"] if args.checks == "both" else ["hatoba"]
    targets = {"both": [*hatobas, "refstack"], "hatoba": hatobas, "refstack": ["refstack"]}[args.target]
    cli = shlex.split(args.hatoba) if args.hatoba else None

    def job(spec: Spec) -> Callable[[], Outcome]:
        if spec.target == "refstack":
            return lambda: run_refstack(spec, args.client, args.timeout)
        return lambda: run_hatoba(spec, args.client, args.timeout, args.port_offset, args.keep, cli, dns.address)

    specs = [Spec(target, size, args.count if i == 0 else args.large_count, args.sessions)
             for i, size in enumerate(sizes) for target in targets]
    try:
        with DnsServer(SENDER_DNS) as dns:
            outcomes, failed = run_each(
                [(f"{s.target:<15}{size_label(s.size):>5} ", job(s)) for s in specs],
                troubled=lambda o: bool(o.note), show=format_outcome,
            )
    except Interrupted:
        return 130
    if len(outcomes) > 1:
        print()
        print(format_table(outcomes))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
