"""A well-behaved client that keeps asking while an attack runs.

`LatencyProbe` connects once to a plain SMTP or IMAP port and, from its own
thread, sends EHLO (SMTP) or NOOP (IMAP) every `interval` seconds, recording
how long each answer took. Tests of hostile clients wrap the attack in it
and assert `probe.worst < 1.0`: whatever one client does, the others are
still served. `rss_kib` reads a server process's resident memory, and
`PeakRss` keeps its largest value while an attack runs; `wait_listening`
waits for a server process's listener.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class LatencyProbe:
    def __init__(self, host: str, port: int, kind: str = "smtp", interval: float = 0.1) -> None:
        if kind not in ("smtp", "imap"):
            raise ValueError("kind is smtp or imap")
        self.host, self.port, self.kind, self.interval = host, port, kind, interval
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def worst(self) -> float:
        """The slowest answer seen; a probe that failed counts as infinitely slow."""
        if self.errors or not self.latencies:
            return float("inf")
        return max(self.latencies)

    def __enter__(self) -> "LatencyProbe":
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.latencies and not self.errors and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def summary(self) -> str:
        return (f"{len(self.latencies)} probes, worst {self.worst:.3f} s"
                + (f", errors: {self.errors[:3]}" if self.errors else ""))

    def _run(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=30)
        except OSError as e:
            self.errors.append(f"connect: {e}")
            return
        with sock:
            f = sock.makefile("rb")
            try:
                f.readline()  # greeting
                n = 0
                while not self._stop.is_set():
                    n += 1
                    start = time.monotonic()
                    if self.kind == "smtp":
                        sock.sendall(b"EHLO probe.test\r\n")
                        while True:
                            line = f.readline()
                            if not line:
                                raise ConnectionError("closed")
                            if line[3:4] != b"-":
                                break
                        if not line.startswith(b"250"):
                            raise ConnectionError(line.decode(errors="replace").strip())
                    else:
                        tag = b"p%d" % n
                        sock.sendall(tag + b" NOOP\r\n")
                        while True:
                            line = f.readline()
                            if not line:
                                raise ConnectionError("closed")
                            if line.startswith(tag + b" "):
                                break
                        if not line.startswith(tag + b" OK"):
                            raise ConnectionError(line.decode(errors="replace").strip())
                    self.latencies.append(time.monotonic() - start)
                    self._stop.wait(self.interval)
            except (OSError, ConnectionError) as e:
                self.errors.append(str(e))


def wait_listening(host: str, port: int, timeout: float = 10.0) -> None:
    """Return once `port` accepts connections (a server starts its listeners one by one)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class PeakRss:
    """The largest resident size of process `pid`, in KiB, while the block runs."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_kib(self.pid))

    def __enter__(self) -> "PeakRss":
        self.peak = rss_kib(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
