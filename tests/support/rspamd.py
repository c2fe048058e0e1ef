"""Debian's rspamd as a test peer: a private instance on loopback ports, with its own
redis for the classifier, asking a loopback DNS server (so nothing waits on the Internet).

The system's /etc/rspamd is read as is; the instance's own settings go in a
LOCAL_CONFDIR of its own (override.d), so the system's local.d is never used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from support.peers import needs, require
from support.sink import free_port

WHY = "Debian packages rspamd and redis-server; scripts/install-test-peers.sh installs them"
needs_rspamd = [needs("rspamd", why=WHY), needs("redis-server", why=WHY)]

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
PASSWORD = "rspamd-test-password"


class RspamdPeer:
    def __init__(self, dns_address: str) -> None:
        self.dns_address = dns_address
        # rspamd drops to "nobody", which cannot enter pytest's 0700 folders.
        self.dir = Path(tempfile.mkdtemp(prefix="hatoba-rspamd-"))
        self.port, self.controller_port, self.proxy_port, self.redis_port = (free_port() for _ in range(4))
        self._rspamd: subprocess.Popen[bytes] | None = None
        self._redis: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def controller_url(self) -> str:
        return f"http://127.0.0.1:{self.controller_port}"

    def start(self) -> RspamdPeer:
        rspamd, redis = require("rspamd", WHY), require("redis-server", WHY)
        for sub in ("override.d", "local.d", "db", "run", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        for sub in ("db", "run", "log"):
            os.chmod(self.dir / sub, 0o777)
        self._redis = subprocess.Popen(
            [redis, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        override = self.dir / "override.d"
        (override / "worker-normal.inc").write_text(f'bind_socket = "127.0.0.1:{self.port}";\ncount = 1;\n')
        (override / "worker-controller.inc").write_text(
            f'bind_socket = "127.0.0.1:{self.controller_port}";\ncount = 1;\n'
            f'password = "{PASSWORD}";\nenable_password = "{PASSWORD}";\n'
        )
        (override / "worker-proxy.inc").write_text(f'bind_socket = "127.0.0.1:{self.proxy_port}";\ncount = 1;\n')
        (override / "worker-fuzzy.inc").write_text("count = -1;\n")
        (override / "logging.inc").write_text('type = "console";\nlevel = "error";\n')
        local = self.dir / "local.d"
        (local / "options.inc").write_text(
            f'dns {{ nameserver = ["{self.dns_address}"]; timeout = 1s; retransmits = 1; }}\n'
        )
        (local / "redis.conf").write_text(f'servers = "127.0.0.1:{self.redis_port}";\n')
        # Learn from the first message: the test teaches one and checks that it counts.
        (local / "classifier-bayes.conf").write_text('backend = "redis";\nmin_learns = 1;\n')
        args = [rspamd, "-f", "-c", "/etc/rspamd/rspamd.conf",
                "--var", f"LOCAL_CONFDIR={self.dir}", "--var", f"DBDIR={self.dir / 'db'}",
                "--var", f"RUNDIR={self.dir / 'run'}", "--var", f"LOGDIR={self.dir / 'log'}"]
        if os.geteuid() == 0:
            args += ["-u", "nobody", "-g", "nogroup"]
        self._rspamd = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self._rspamd.poll() is not None:
                raise RuntimeError(f"rspamd exited: {self._rspamd.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as answer:
                    if answer.read().strip() == b"pong":
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("rspamd did not answer /ping within 90 s")

    def stop(self) -> None:
        for proc in (self._rspamd, self._redis):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self._rspamd = self._redis = None

    def learned(self) -> int:
        """How many messages the classifier has learned (the controller's /stat)."""
        import json

        request = urllib.request.Request(f"{self.controller_url}/stat", headers={"Password": PASSWORD})
        with urllib.request.urlopen(request, timeout=10) as answer:
            stats = json.loads(answer.read())
        return int(stats.get("learned", 0))

    def __enter__(self) -> RspamdPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
