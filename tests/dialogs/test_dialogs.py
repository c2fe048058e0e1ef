"""Byte-exact SMTP dialogs (chasquid's .cmy idea) run against the real server.

Script lines:
    c -> TEXT      send TEXT + CRLF (Python escapes like \\n, \\r, \\x00 allowed)
    c => TEXT      send TEXT as is, no CRLF added (escapes allowed)
    c <- LINE      the next reply line is exactly LINE
    c <~ PREFIX    read one whole reply; its last line starts with PREFIX
    c <eof         the server has closed the connection
    # comment
"""

import socket
from pathlib import Path

import pytest

DIALOGS = sorted(Path(__file__).parent.glob("*.dialog"))


def unescape(text: str) -> bytes:
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1")


def run_dialog(path: Path, port: int) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = sock.makefile("rb")
    try:
        for number, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            where = f"{path.name}:{number}: {line}"
            op, _, arg = line[2:].partition(" ")
            if op == "->":
                sock.sendall(unescape(arg) + b"\r\n")
            elif op == "=>":
                sock.sendall(unescape(arg))
            elif op == "<-":
                got = f.readline().decode("utf-8", "replace").rstrip("\r\n")
                assert got == arg, f"{where}\n   got: {got!r}"
            elif op == "<~":
                got = ""
                while True:
                    reply_line = f.readline().decode("utf-8", "replace")
                    assert reply_line, f"{where}\n   connection closed"
                    got = reply_line.rstrip("\r\n")
                    if got[3:4] != "-":
                        break
                assert got.startswith(arg), f"{where}\n   got: {got!r}"
            elif op == "<eof":
                assert f.readline() == b"", where
            else:
                raise AssertionError(f"{where}: unknown operation")
    finally:
        sock.close()


@pytest.mark.parametrize("path", DIALOGS, ids=[p.stem for p in DIALOGS])
def test_dialog(server, path):
    run_dialog(path, server.port(path.stem.split("-")[0]))
