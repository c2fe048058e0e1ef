"""Dovecot's imaptest compliance tests against a test hatoba.

imaptest (github.com/dovecot/imaptest) replays its scripted IMAP tests, one
file per command or extension, and checks every reply. It is not a packaged
program: the tools folder beside the checkout (`../shared/tools/imaptest`,
or $HATOBA_IMAPTEST_DIR) builds it with `build.sh` (it needs dovecot-dev,
which it apt-gets as root) and runs the tests with `compliance.sh`, whose
summary this test reads.

When the binary cannot be built here (no tools folder, no dovecot-dev and not
root, a build error) the test is skipped and says why, also under
HATOBA_REQUIRE_PEERS=1: that switch is for the packaged peer programs
(tests/support/peers.py), and imaptest is built from a source tarball with
headers a plain CI image may lack.

The server runs in-process with only its IMAP listener, on a free loopback
port above 40000, and allows plaintext LOGIN from 127.0.0.0/8 (imaptest has
no STARTTLS).
"""

from __future__ import annotations

import dataclasses
import imaplib
import itertools
import os
import random
import re
import socket
import subprocess
from pathlib import Path

import pytest
from support.harness import PASSWORDS, ServerThread, make_home

pytestmark = [pytest.mark.interop, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
DIR_ENV = "HATOBA_IMAPTEST_DIR"
USER = "carol@example.test"

# Test files that compliance.sh may report as "not run" because hatoba does
# not announce a capability they need (names exactly as compliance.sh prints
# them). URLAUTH (RFC 4467) is not planned.
NOT_RUN_ALLOWED = {"urlauth", "urlauth-binary", "urlauth2"}
# The NOTIFY (RFC 5465) test: allowed not to run only while the server does
# not announce NOTIFY; once it does, the test must run and pass.
NOTIFY_TESTS = {"notify"}


def tools_dir() -> Path:
    override = os.environ.get(DIR_ENV, "").strip()
    if override:
        return Path(override).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "tools" / "imaptest").resolve()


def build_imaptest(folder: Path) -> str:
    """Run build.sh; the path of the imaptest binary, or a skip saying why not."""
    where = f"{folder} (set {DIR_ENV} to the imaptest tools folder)"
    if not folder.is_dir():
        pytest.skip(f"imaptest cannot be built: no tools folder at {where}")
    for script in ("build.sh", "compliance.sh"):
        if not (folder / script).is_file():
            pytest.skip(f"imaptest cannot be built: no {script} in {where}")
    try:
        r = subprocess.run(["bash", str(folder / "build.sh")], capture_output=True, text=True,
                           timeout=540, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.skip(f"imaptest cannot be built: {folder}/build.sh took more than 540 s")
    lines = r.stdout.strip().splitlines()
    binary = lines[-1].strip() if lines else ""
    if r.returncode != 0 or not binary or not os.access(binary, os.X_OK):
        said = "\n  ".join((r.stderr.strip().splitlines() or lines or ["(no output)"])[-5:])
        pytest.skip(f"imaptest cannot be built: {folder}/build.sh exited {r.returncode}:\n  {said}")
    return binary


def free_port() -> int:
    """A loopback port above 40000 that is free now (outside 10xxx-30xxx, used by other stacks)."""
    for _ in range(200):
        port = random.randrange(40000, 61000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port above 40000")


@dataclasses.dataclass
class Summary:
    base_failed: int
    base_total: int
    ext_failed: int
    ext_total: int
    not_run: dict[str, str] | None  # test file -> the capabilities it lacks; None: unknown
    failing: list[str]  # compliance.sh's lines about each failing test
    log: str

    def line(self) -> str:
        if self.not_run is None:
            not_run = "unknown"
        else:
            not_run = ", ".join(f"{n} ({c})" for n, c in sorted(self.not_run.items())) or "none"
        return (f"{self.base_failed} failed of {self.base_total} base, {self.ext_failed} failed of "
                f"{self.ext_total} ext; not run: {not_run}")

    def failing_names(self) -> list[str]:
        return [l.split()[0] for l in self.failing if l.startswith("  ") and not l.startswith("    ")]


def parse(out: str) -> Summary | None:
    """compliance.sh's summary, or None when imaptest did not run to the end."""
    base = re.search(r"^base tests:\s+(\d+) failed of (\d+) commands", out, re.M)
    ext = re.search(r"^extension tests:\s+(\d+) failed of (\d+) commands", out, re.M)
    not_run = re.search(r"^not run \(server lacks a capability they need\): (\d+)(?:: (.*))?$", out, re.M)
    log = re.search(r"; log: (\S+)\s*$", out, re.M)
    if not (base and ext):
        return None
    names = None
    if not_run:  # absent when compliance.sh's LOGIN+CAPABILITY probe failed
        names = dict(re.findall(r"([^\s,()]+) \(([^)]*)\)", not_run.group(2) or ""))
        assert len(names) == int(not_run.group(1)), f"cannot read the not-run list: {not_run.group(0)}"
    lines = out.splitlines()
    failing: list[str] = []
    for i, l in enumerate(lines):
        if l.startswith("failing tests: ") and l != "failing tests: none":
            failing = list(itertools.takewhile(lambda f: f.startswith("  "), lines[i + 1:]))
            break
    return Summary(int(base.group(1)), int(base.group(2)), int(ext.group(1)), int(ext.group(2)),
                   names, failing, log.group(1) if log else "(no log path printed)")


def server_capabilities(port: int) -> set[str]:
    """CAPABILITY after LOGIN, read with imaplib (also proves LOGIN works before imaptest starts)."""
    with imaplib.IMAP4("127.0.0.1", port, timeout=10) as m:
        m.login(USER, PASSWORDS[USER])
        typ, data = m.capability()
        assert typ == "OK", data
        caps = {c.upper() for c in data[0].decode().split()}
        m.logout()
    return caps


@pytest.mark.timeout(900)
def test_imaptest_compliance(tmp_path: Path) -> None:
    folder = tools_dir()
    binary = build_imaptest(folder)

    home = make_home(tmp_path / "hatoba", extra_config='[auth]\nplaintext_networks = ["127.0.0.0/8"]\n')
    srv = ServerThread(home)
    port = free_port()
    listeners = {name: dataclasses.replace(lc, port=port, enabled=name == "imap")
                 for name, lc in srv.config.listeners.items()}
    srv.config = dataclasses.replace(srv.config, listeners=listeners)
    out_dir = tmp_path / "imaptest"
    with srv:
        assert srv.port("imap") == port and list(srv.server.bound) == ["imap"]
        caps = server_capabilities(port)
        env = dict(os.environ, IMAPTEST_BIN=binary, IMAPTEST_OUT=str(out_dir), IMAPTEST_TIMEOUT="300")
        r = subprocess.run(["bash", str(folder / "compliance.sh"), "127.0.0.1", str(port), USER, PASSWORDS[USER]],
                           capture_output=True, text=True, timeout=360, env=env, stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    summary = parse(out)
    assert summary is not None, f"imaptest did not run to the end (compliance.sh exit {r.returncode}):\n{out}"
    print(f"imaptest: {summary.line()}\nlog: {summary.log}")

    assert summary.base_total > 0 and summary.ext_total > 0, f"imaptest ran no tests: {summary.line()}\n{out}"
    failed = summary.base_failed + summary.ext_failed
    assert failed == 0 and r.returncode == 0, (
        f"imaptest: {summary.line()}\n"
        f"failing tests: {', '.join(summary.failing_names()) or '(see the log)'}\n"
        + "\n".join(summary.failing) + f"\nlog: {summary.log}\n"
        f"(IMAPTEST_RAWLOG=1 keeps each connection's traffic next to it)"
    )

    assert summary.not_run is not None, f"compliance.sh could not tell which tests did not run:\n{out}"
    allowed = NOT_RUN_ALLOWED | (set() if "NOTIFY" in caps else NOTIFY_TESTS)
    unexpected = {n: c for n, c in summary.not_run.items() if n not in allowed}
    assert not unexpected, (
        "imaptest did not run these tests because the server lacks a capability they need: "
        + ", ".join(f"{n} (needs {c})" for n, c in sorted(unexpected.items()))
        + f"\nserver capabilities: {' '.join(sorted(caps))}\nlog: {summary.log}"
    )
