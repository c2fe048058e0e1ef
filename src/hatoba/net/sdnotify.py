"""systemd's readiness protocol (sd_notify(3)) over $NOTIFY_SOCKET.

One datagram of `KEY=VALUE` lines per state change: READY=1 once the
listeners accept (after root was dropped), RELOADING=1 and READY=1 around a
SIGHUP reload, STOPPING=1 when a stop begins. Written here rather than
taken from a library: the protocol is one sendmsg, and the `systemd` Python
package needs libsystemd's headers and a compiler to install.

Rules:
- The socket is connected at start-up, while hatoba may still be root: a
  connected datagram socket needs no permission on the path afterwards.
- $NOTIFY_SOCKET is taken out of the environment, so the delivery process
  (a child) never speaks for the server.
- Never raises: without systemd, or with a socket gone, hatoba runs the same.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None) -> None:
        """`address`: $NOTIFY_SOCKET as systemd sets it (a path, or @name for the
        abstract namespace); None = no service manager to tell."""
        self.address = address
        self._sock: socket.socket | None = None
        self._warned = False
        if address:
            self._connect()

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] = os.environ) -> Notifier:
        return cls(environ.pop("NOTIFY_SOCKET", None) or None)

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        # systemd 253 and later time the reload from MONOTONIC_USEC.
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def send(self, *fields: str) -> bool:
        """Whether the datagram left; a failure is logged once, never raised."""
        if not self.address:
            return False
        data = "\n".join(fields).encode("utf-8")
        for _ in range(2):  # once more on a fresh connection: the manager may have re-created its socket
            if self._sock is None and not self._connect():
                return False
            assert self._sock is not None
            try:
                self._sock.send(data)
                return True
            except BlockingIOError:
                self._complain("the service manager's queue is full")
                return False
            except OSError as exc:
                self._sock.close()
                self._sock = None
                reason = exc.strerror or str(exc)
        self._complain(reason)
        return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connect(self) -> bool:
        assert self.address
        target = self.address
        if target.startswith("@"):
            target = "\0" + target[1:]  # the abstract namespace
        elif not target.startswith("/"):
            self._complain("not a socket path (only /path and @name are understood)")
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.connect(target)
        except OSError as exc:
            sock.close()
            self._complain(exc.strerror or str(exc))
            return False
        sock.setblocking(False)
        self._sock = sock
        return True

    def _complain(self, reason: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("NOTIFY_SOCKET %s: %s; the service manager is not told of start-up and stops",
                        self.address, reason)
