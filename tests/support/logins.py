"""Raw login clients for IMAPS, POP3S and submission, from any loopback address.

The stdlib clients cannot choose their source address (imaplib, poplib), and
the throttle tests need many parallel attempts from 127.0.0.2 and friends:
these speak just enough of each protocol to log in and say how it went.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from dataclasses import dataclass

OK = "ok"
FAILED = "failed"
THROTTLED = "throttled"
BUSY = "busy"
OTHER = "other"


@dataclass
class Outcome:
    result: str  # OK, FAILED, THROTTLED, BUSY or OTHER
    line: str  # the server's answer, for assertion messages


async def _line(reader: asyncio.StreamReader, timeout: float) -> str:
    data = await asyncio.wait_for(reader.readline(), timeout)
    if not data:
        raise ConnectionError("server closed the connection")
    return data.decode("utf-8", "replace").rstrip("\r\n")


async def _smtp_reply(reader: asyncio.StreamReader, timeout: float) -> str:
    while True:
        line = await _line(reader, timeout)
        if line[3:4] != "-":
            return line


def _classify_imap(line: str) -> str:
    if line.startswith("a OK"):
        return OK
    if "[UNAVAILABLE]" in line:
        return THROTTLED
    if "[LIMIT]" in line:
        return BUSY
    if "[AUTHENTICATIONFAILED]" in line:
        return FAILED
    return OTHER


def _classify_pop3(line: str) -> str:
    if line.startswith("+OK"):
        return OK
    if "[LOGIN-DELAY]" in line:
        return THROTTLED
    if "[IN-USE]" in line:
        return BUSY
    if "[AUTH]" in line:
        return FAILED
    return OTHER


def _classify_smtp(line: str) -> str:
    code = line[:3]
    return {"235": OK, "535": FAILED, "454": THROTTLED}.get(code, OTHER)


async def login(
    proto: str,
    port: int,
    context: ssl.SSLContext,
    user: str,
    password: str,
    *,
    source: str = "127.0.0.1",
    timeout: float = 60.0,
    keep: bool = False,
) -> Outcome | tuple[Outcome, asyncio.StreamWriter]:
    """Log in once over `proto` ("imaps", "pop3s" or "submission"); with
    keep=True also return the open connection's writer (close it yourself)."""
    tls = None if proto == "submission" else context
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            "127.0.0.1", port, ssl=tls, local_addr=(source, 0),
            server_hostname="mail.example.test" if tls else None,
        ),
        timeout,
    )
    try:
        if proto == "imaps":
            await _line(reader, timeout)
            writer.write(f'a LOGIN "{user}" "{password}"\r\n'.encode())
            while True:
                line = await _line(reader, timeout)
                if line.startswith("a "):
                    break
            outcome = Outcome(_classify_imap(line), line)
        elif proto == "pop3s":
            await _line(reader, timeout)
            writer.write(f"USER {user}\r\n".encode())
            await _line(reader, timeout)
            writer.write(f"PASS {password}\r\n".encode())
            line = await _line(reader, timeout)
            outcome = Outcome(_classify_pop3(line), line)
        elif proto == "submission":
            await _smtp_reply(reader, timeout)
            writer.write(b"EHLO client.example\r\n")
            await _smtp_reply(reader, timeout)
            writer.write(b"STARTTLS\r\n")
            await _smtp_reply(reader, timeout)
            await writer.start_tls(context, server_hostname="mail.example.test")
            writer.write(b"EHLO client.example\r\n")
            await _smtp_reply(reader, timeout)
            token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            writer.write(f"AUTH PLAIN {token}\r\n".encode())
            line = await _smtp_reply(reader, timeout)
            outcome = Outcome(_classify_smtp(line), line)
        else:
            raise ValueError(proto)
    except BaseException:
        writer.close()
        raise
    if keep:
        return outcome, writer
    writer.close()
    try:
        await writer.wait_closed()
    except (OSError, ssl.SSLError):
        pass
    return outcome
