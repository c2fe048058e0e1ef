#!/usr/bin/env python3
"""imaptest stress: commands/s of Dovecot's imaptest under its default command
mix, against hatoba and the reference stack's Dovecot, runs alternated.

    .venv/bin/python bench/imap_stress.py                 # 2 runs each, hatoba first
    .venv/bin/python bench/imap_stress.py --runs 3 --tls  # IMAPS, ssl=any-cert on both
    .venv/bin/python bench/imap_stress.py --target hatoba --secs 30

imaptest is built and run by the tools folder beside the checkout
(`../shared/tools/imaptest`, or $HATOBA_IMAPTEST_DIR): `build.sh` once, then
`stress.sh HOST PORT USER PASS` per run (10 clients, 20 s, every client in a
fresh mailbox `imaptest-stress`; commands/s = imaptest's Totals row / secs).
hatoba serves from a throwaway `hatoba init` home with its IMAP listeners on
and plaintext LOGIN allowed from 127.0.0.0/8 (imaptest has no STARTTLS);
Dovecot allows LOGIN in clear from 127.0.0.1 as its own setting. With
`--tls` both are measured on their implicit-TLS port instead.

hatoba's server is started once and kept for all its runs, as Dovecot is.
The script prints each run as it ends, then both medians and their ratio.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    REFSTACK_IMAP_PORT,
    REFSTACK_IMAPS_PORT,
    BenchError,
    Children,
    add_hatoba_user,
    cpu_seconds,
    descendant_pids,
    enable_hatoba_listeners,
    ensure_refstack,
    exit_cleanly_on_sigterm,
    make_hatoba_home,
    set_hatoba_setting,
    wait_smtp_banner,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
HATOBA_USER = ("stress@example.test", "stress-pass-1")
REFSTACK_USER = ("bob@example.test", "bob-pass-1")


def tools_dir() -> Path:
    override = os.environ.get("HATOBA_IMAPTEST_DIR", "").strip()
    return Path(override) if override else REPO_ROOT.parent / "shared" / "tools" / "imaptest"


@dataclass
class StressRun:
    target: str
    rate: float  # commands/s
    errors: int
    cpu: float | None  # CPU seconds the server spent during the run (hatoba only)
    busy: float  # share of the machine's CPU time in use during the run (every process)
    totals: str


def build_imaptest(folder: Path) -> str:
    r = subprocess.run(["bash", str(folder / "build.sh")], capture_output=True, text=True, timeout=900)
    binary = (r.stdout.strip().splitlines() or [""])[-1].strip()
    if r.returncode != 0 or not os.access(binary, os.X_OK):
        raise BenchError(f"{folder}/build.sh failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    return binary


def stress(folder: Path, binary: str, target: str, port: int, user: tuple[str, str], secs: int, clients: int,
           tls: bool, server_pids: list[int]) -> StressRun:
    """One stress.sh run; `server_pids`: hatoba's processes, whose CPU time is counted."""
    env = dict(os.environ, IMAPTEST_BIN=binary, IMAPTEST_SECS=str(secs), IMAPTEST_CLIENTS=str(clients))
    extra = ["ssl=any-cert"] if tls else []
    cpu_before = cpu_seconds(server_pids) if server_pids else None
    busy_before = machine_cpu()
    r = subprocess.run(["bash", str(folder / "stress.sh"), "127.0.0.1", str(port), *user, *extra],
                       capture_output=True, text=True, timeout=secs + 180, env=env)
    cpu = cpu_seconds(server_pids) - cpu_before if cpu_before is not None else None
    busy_after = machine_cpu()
    busy = (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1])
    out = r.stdout + r.stderr
    rate = re.search(r"^commands/s: (\d+)", out, re.M)
    errors = re.search(r"^errors reported by imaptest: (\d+)", out, re.M)
    totals = re.search(r"^totals: (.*)$", out, re.M)
    if not (rate and errors):
        raise BenchError(f"stress.sh did not finish (exit {r.returncode}): {out.strip()[-400:]}")
    if int(errors.group(1)):
        print(out, flush=True)
    return StressRun(target, float(rate.group(1)), int(errors.group(1)), cpu, busy,
                     totals.group(1) if totals else "")


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all cores from /proc/stat; iowait counts as idle."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def start_hatoba(children: Children, tls: bool, workers: int) -> tuple[int, subprocess.Popen[bytes], Path, Path]:
    home = make_hatoba_home()
    if workers:
        set_hatoba_setting(home, "server", "workers", str(workers))
    add_hatoba_user(home, *HATOBA_USER)  # every imaptest client logs in as this one user
    enable_hatoba_listeners(home, ["imap", "imaps"])
    set_hatoba_setting(home, "auth", "plaintext_networks", '["127.0.0.0/8"]')
    log = home.root.parent / "serve.log"
    proc = children.start(home.serve_argv(), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    wait_smtp_banner(home.smtp_port, 60, proc)
    port = (993 if tls else 143) + home.port_offset
    return port, proc, home.root.parent, log


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=["both", "hatoba", "refstack"], default="both")
    ap.add_argument("--runs", type=int, default=2, help="runs per target, alternated (2)")
    ap.add_argument("--secs", type=int, default=20)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--tls", action="store_true", help="implicit TLS (993) with ssl=any-cert on both")
    ap.add_argument("--keep", action="store_true", help="keep hatoba's home and log")
    ap.add_argument("--workers", type=int, default=0, help="hatoba's server.workers (0: its default)")
    args = ap.parse_args()
    exit_cleanly_on_sigterm()
    folder = tools_dir()
    binary = build_imaptest(folder)
    targets = ["hatoba", "refstack"] if args.target == "both" else [args.target]
    runs: list[StressRun] = []
    with Children() as children:
        hatoba = None
        if "hatoba" in targets:
            hatoba = start_hatoba(children, args.tls, args.workers)
            print(f"hatoba: {hatoba[3]}", flush=True)
        if "refstack" in targets:
            ensure_refstack()
        try:
            for i in range(args.runs):
                for target in targets:
                    if target == "hatoba":
                        assert hatoba is not None
                        serving = hatoba[1]  # its workers and delivery processes, as they are now
                        run = stress(folder, binary, target, hatoba[0], HATOBA_USER, args.secs, args.clients,
                                     args.tls, [serving.pid, *descendant_pids(serving.pid)])
                    else:
                        port = REFSTACK_IMAPS_PORT if args.tls else REFSTACK_IMAP_PORT
                        run = stress(folder, binary, target, port, REFSTACK_USER, args.secs, args.clients,
                                     args.tls, [])
                    runs.append(run)
                    cpu = f"  server CPU {run.cpu:.1f} s" if run.cpu is not None else ""
                    print(f"{target:<9} run {i + 1}  {run.rate:7.0f} commands/s  errors {run.errors}"
                          f"  machine busy {run.busy:.0%}{cpu}"
                          f"\n          {run.totals}", flush=True)
        finally:
            if hatoba is not None and not args.keep:
                children.stop_all()
                shutil.rmtree(hatoba[2], ignore_errors=True)
    medians = {t: statistics.median(r.rate for r in runs if r.target == t) for t in targets}
    print(" ".join(f"{t} median {m:.0f}" for t, m in medians.items()))
    if len(medians) == 2 and medians["refstack"]:
        print(f"hatoba / Dovecot: {medians['hatoba'] / medians['refstack']:.2f}")
    return 1 if any(r.errors for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
