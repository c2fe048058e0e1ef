"""Postfix's smtp-sink as a test peer: accepts (or refuses) mail and keeps each message.

`reject` makes it answer 5xx to the given commands ("rcpt", "data", ...),
`defer` 4xx. Each accepted message is dumped into its own file under
`dump_dir`, preceded by X-Mail-Args / X-Rcpt-Args lines that show the envelope.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from support.peers import needs, require


SINK_WHY = "Debian package postfix; scripts/install-test-peers.sh installs it"

# Marks a test that runs an SmtpSink: skipped where smtp-sink is missing, a failure under HATOBA_REQUIRE_PEERS=1.
needs_sink = needs("smtp-sink", why=SINK_WHY)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpSink:
    def __init__(
        self, dump_dir: Path | None = None, *, port: int | None = None, reject: str = "", defer: str = "",
        backlog: int = 256, host: str = "127.0.0.1", hard_reply: str = "",
    ) -> None:
        # smtp-sink writes as an unprivileged user, who cannot enter pytest's
        # 0700 temp folders: the dumps go to a folder of their own in /tmp.
        self.dump_dir = Path(tempfile.mkdtemp(prefix="hatoba-sink-"))
        self.host = host
        self.hard_reply = hard_reply
        self.port = port or free_port()
        self.reject = reject
        self.defer = defer
        self.backlog = backlog
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def start(self) -> SmtpSink:
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dump_dir, 0o777)  # smtp-sink drops to the unprivileged user to write
        binary = require("smtp-sink", why=SINK_WHY)
        args = [binary]
        if os.geteuid() == 0:
            args += ["-u", pwd.getpwnam("nobody").pw_name]
        args += ["-d", f"{self.dump_dir}/%M."]
        if self.reject:
            args += ["-f", self.reject]
        if self.hard_reply:
            args += ["-B", self.hard_reply]
        if self.defer:
            args += ["-r", self.defer]
        if ":" in self.host:
            args.append("-6")
        args += [self.address, str(self.backlog)]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return self
            except OSError:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"smtp-sink exited: {self._proc.stderr.read().decode()}")  # type: ignore[union-attr]
                time.sleep(0.05)
        raise RuntimeError("smtp-sink did not start listening")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(10)
        self._proc = None

    def remove(self) -> None:
        shutil.rmtree(self.dump_dir, ignore_errors=True)

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        # The dumps stay readable through messages() until the folder is removed at exit.
        import atexit

        atexit.register(self.remove)

    def messages(self) -> list[bytes]:
        if not self.dump_dir.is_dir():
            return []
        return [p.read_bytes() for p in sorted(self.dump_dir.iterdir()) if p.is_file()]

    def wait_messages(self, count: int, timeout: float = 15.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages()
            if len(found) >= count or time.monotonic() > deadline:
                # smtp-sink writes a dump while the message arrives: let the last one finish.
                time.sleep(0.3)
                return self.messages()
            time.sleep(0.05)


def envelope_of(dump: bytes) -> tuple[str, list[str], bytes]:
    """(sender, recipients, message) of one smtp-sink dump."""
    sender, rcpts = "", []
    rest = dump
    while rest.startswith(b"X-"):
        line, _, rest = rest.partition(b"\n")
        text = line.decode().rstrip("\r")
        if text.startswith("X-Mail-Args: "):
            sender = text.split(" ", 1)[1].split(" ")[0].strip("<>")
        elif text.startswith("X-Rcpt-Args: "):
            rcpts.append(text.split(" ", 1)[1].split(" ")[0].strip("<>"))
    return sender, rcpts, rest
