"""sd_notify(3) readiness: `hatoba serve` under a service manager's NOTIFY_SOCKET.

The test plays systemd: it binds the datagram socket and reads what the
server says. READY=1 comes once every listener accepts; a SIGHUP reload is
framed by RELOADING=1 and READY=1 (also when a second SIGHUP comes in the
middle of the first); SIGTERM gives STOPPING=1. A socket that is gone costs
one warning, not the start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from support.harness import ServerProcess, free_port_offset, make_home, wait_for
from support.service import open_for, service_account

PORTS = (25, 587, 465, 110, 995, 143, 993)


class Manager:
    """The service manager's end: a datagram socket bound at `address` (a path or @name)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(30)

    def next(self) -> dict[str, str]:
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.split("\n"))

    def close(self) -> None:
        self.sock.close()


def start(home, env: dict[str, str]) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    log = open(home.root / "serve.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "hatoba", "-c", str(home.config_path), "serve"],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def serve_under(home, manager: Manager, offset: int) -> None:  # type: ignore[no-untyped-def]
    """`hatoba serve` told to speak to `manager`, through the whole handshake."""
    proc = start(home, {"NOTIFY_SOCKET": manager.address})
    try:
        handshake(manager, proc, offset)
    finally:
        if proc.poll() is None:
            proc.kill()
        manager.close()


def handshake(manager: Manager, proc: subprocess.Popen[bytes], offset: int) -> None:
    """READY=1 first, once every port accepts; RELOADING/READY around two SIGHUPs; STOPPING=1."""
    ready = manager.next()
    assert ready["READY"] == "1" and "smtp" in ready["STATUS"], ready
    assert [p for p in PORTS if not accepts(p + offset)] == []  # no retry: they accept by now

    proc.send_signal(signal.SIGHUP)
    proc.send_signal(signal.SIGHUP)  # a second reload asked for while the first runs
    first = manager.next()
    assert first["RELOADING"] == "1" and int(first["MONOTONIC_USEC"]) > 0, first
    proc.send_signal(signal.SIGTERM)
    states = ["RELOADING"]
    while states[-1] != "STOPPING":
        message = manager.next()
        states.append(next(k for k in ("RELOADING", "READY", "STOPPING") if k in message))
    # Each reload is framed, one after the other (the kernel may have merged the two signals).
    assert states in (["RELOADING", "READY", "STOPPING"], ["RELOADING", "READY", "RELOADING", "READY", "STOPPING"])
    assert proc.wait(60) == 0


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_ready_reloading_stopping(tmp_path: Path, kind: str) -> None:
    offset = free_port_offset()
    home = make_home(tmp_path / "h", port_offset=offset)
    home.keep_root()  # root or not, this is about the handshake
    address = str(tmp_path / "notify") if kind == "path" else f"@hatoba-test-{uuid.uuid4().hex}"
    serve_under(home, Manager(address), offset)
    log = (home.root / "serve.log").read_text()
    assert "NOTIFY_SOCKET" not in log and "Traceback" not in log


def test_the_service_user_still_reaches_a_socket_only_root_may_open(service_dir: Path) -> None:
    """The socket is connected before root is dropped: systemd's is root's, and so is this one."""
    service_account()
    offset = free_port_offset()
    home = make_home(service_dir / "h", port_offset=offset)
    private = service_dir / "private"
    private.mkdir(mode=0o700)
    with open_for():  # the interpreter
        serve_under(home, Manager(str(private / "notify")), offset)
    assert "running as user" in (home.root / "serve.log").read_text()


def test_a_socket_that_is_gone_costs_one_warning(tmp_path: Path) -> None:
    offset = free_port_offset()
    home = make_home(tmp_path / "h", port_offset=offset)
    gone = tmp_path / "gone.sock"
    with ServerProcess(home, offset, env={"NOTIFY_SOCKET": str(gone)}) as server:
        server.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "certificates reloaded" in server.log_path.read_text())
    assert server.proc.returncode == 0
    log = server.log_path.read_text()
    assert log.count(f"NOTIFY_SOCKET {gone}: No such file or directory;") == 1, log
