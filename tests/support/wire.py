"""Raw connections for tests that check what the server itself does on the wire.

Client libraries refuse some things on their own (curl will not send a
password after LOGINDISABLED): a test that uses one proves the client's rule,
not the server's. `Wire` sends exactly the bytes a test gives it.

drop() ends a connection the way a vanished client does. socket.close()
alone is not enough: while a makefile() object of the socket is open, the
descriptor stays open and the server never sees the end of the connection.
drop() shuts the connection down, closes the socket and every file object
made from it, and checks that the descriptor is really gone; reset=True sends
a TCP RST (SO_LINGER 0) instead of a FIN.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import time

import pytest

MAIL_LOGGER = "hatoba.mail"


def drop(sock: socket.socket, *files: object, reset: bool = False) -> None:
    """End the connection now, without any goodbye (QUIT, LOGOUT, "." line)."""
    if reset:
        # close() with a zero linger time aborts the connection: the peer gets RST.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    else:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # FIN now, whoever else holds the descriptor
    for f in files:
        with contextlib.suppress(OSError, ValueError):
            f.close()  # type: ignore[attr-defined]
    sock.close()
    # A makefile() object left open would keep the descriptor (and the connection) alive.
    assert sock.fileno() == -1, "the socket is still open: close its makefile() objects too"


class Wire:
    """One raw client connection: send bytes, read lines, drop it."""

    def __init__(self, port: int, *, context: ssl.SSLContext | None = None, timeout: float = 10.0) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname="mail.example.test")
        self.sock = sock
        self.file = sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        """The next line, CRLF included; ConnectionError once the server has closed."""
        data = self.file.readline()
        if not data:
            raise ConnectionError("the server closed the connection")
        return data

    def smtp_reply(self) -> bytes:
        """One whole SMTP reply (all its lines)."""
        out = b""
        while True:
            line = self.line()
            out += line
            if line[3:4] != b"-":
                return out

    def closed_by_server(self) -> bool:
        """True when the server has closed its end (the next read gets EOF)."""
        try:
            return self.file.readline() == b""
        except (ConnectionError, OSError):
            return True

    def drop(self, *, reset: bool = False) -> None:
        drop(self.sock, self.file, reset=reset)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
            self.sock.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def mail_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The mail log lines (`auth result=ok ...`, `disconnect ...`) the server wrote so far."""
    return [r.getMessage() for r in caplog.records if r.name == MAIL_LOGGER]


def wait_mail_line(caplog: pytest.LogCaptureFixture, *words: str, timeout: float = 5.0) -> str:
    """The first mail log line that holds every one of `words`, waiting for it up to `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        for line in mail_lines(caplog):
            if all(w in line for w in words):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no mail log line with {words}: {mail_lines(caplog)}")
        time.sleep(0.02)


def capture_mail_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=MAIL_LOGGER)
