"""Outbound transactions with PIPELINING (RFC 2920) against a scripted server on
loopback that answers the envelope only once it has read MAIL, every RCPT and
DATA, and then writes all those replies at once: a client that waited for each
reply would never get one."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from hatoba.delivery.smtp_client import ConnectionFailed, SmtpConnection, TlsContexts
from hatoba.delivery.tlspolicy import TlsPolicy


class Scripted:
    """EHLO offers PIPELINING (or not); replies per command from `answers`."""

    def __init__(self, *, pipelining: bool = True, rcpt: dict[str, str] | None = None, mail: str = "250 2.1.0 ok",
                 data: str = "354 go ahead", final: str = "250-2.0.0 queued\r\n250 2.0.0 as ABC",
                 raw_envelope_reply: bytes | None = None, lossy: bool = False) -> None:
        self.pipelining = pipelining
        self.lossy = lossy  # offers PIPELINING, loses all but the first command of a packet
        self.pipelined_unasked = False  # commands came after MAIL before its reply, though not offered
        self.rcpt = rcpt or {}
        self.mail = mail
        self.data = data
        self.final = final
        self.raw_envelope_reply = raw_envelope_reply
        self.commands: list[bytes] = []
        self.bodies: list[bytes] = []
        self.envelope_chunks: list[int] = []  # reads it took to get MAIL ... DATA, per transaction

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted ESMTP\r\n")
        while line := await reader.readline():
            verb = line.split(b" ", 1)[0].strip().upper()
            self.commands.append(line.rstrip(b"\r\n"))
            if verb == b"EHLO":
                writer.write(b"250-scripted\r\n" + (b"250-PIPELINING\r\n" if self.pipelining else b"") + b"250 8BITMIME\r\n")
            elif verb == b"MAIL":
                await self._envelope(reader, writer)
            elif verb == b"RCPT":  # one command at a time (no PIPELINING, or it was lost)
                address = line.split(b"<", 1)[1].split(b">", 1)[0].decode()
                writer.write(self.rcpt.get(address, "250 2.1.5 ok").encode() + b"\r\n")
            elif verb == b"DATA":
                writer.write(self.data.encode() + b"\r\n")
                if self.data.startswith("354"):
                    await self._body(reader, writer)
            elif verb in (b"RSET", b"NOOP"):
                writer.write(b"250 2.0.0 ok\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"500 5.5.2 what?\r\n")
            await writer.drain()
        writer.close()

    async def _envelope(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        replies = [self.mail]
        accepted = False
        if not self.pipelining:  # not offered: the client must wait for this reply before RCPT
            await asyncio.sleep(0.05)
            self.pipelined_unasked = self.pipelined_unasked or bool(reader._buffer)  # type: ignore[attr-defined]
        if self.lossy:  # reads one packet, answers its first command, loses the rest
            await asyncio.sleep(0.05)
            if reader._buffer:  # type: ignore[attr-defined]  # what came with MAIL in the same packet
                reader._buffer.clear()  # type: ignore[attr-defined]
            writer.write(self.mail.encode() + b"\r\n")
            return
        if self.pipelining:
            # Read on to DATA before answering anything: only a pipelining client gets here.
            while True:
                line = await asyncio.wait_for(reader.readline(), 5)
                self.commands.append(line.rstrip(b"\r\n"))
                if line.upper().startswith(b"DATA"):
                    break
                address = line.split(b"<", 1)[1].split(b">", 1)[0].decode()
                reply = self.rcpt.get(address, "250 2.1.5 ok")
                accepted = accepted or reply.startswith("2")
                replies.append(reply)
            replies.append(self.data)
            writer.write(self.raw_envelope_reply or "".join(r + "\r\n" for r in replies).encode())
            await writer.drain()
            if self.data.startswith("354"):
                await self._body(reader, writer)
            return
        writer.write(self.mail.encode() + b"\r\n")

    async def _body(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines = []
        while (line := await reader.readline()) not in (b".\r\n", b""):
            lines.append(line[1:] if line.startswith(b".") else line)
        self.bodies.append(b"".join(lines))
        writer.write(self.final.encode() + b"\r\n")
        await writer.drain()


async def _open(port: int, command_timeout: float = 5) -> SmtpConnection:
    context = ssl.create_default_context()
    return await SmtpConnection.open(
        ip="127.0.0.1", port=port, server_name="peer.example", helo_name="mail.example.test",
        policy=TlsPolicy("may", "test"), implicit_tls=False,
        contexts=TlsContexts(verifying=context, opportunistic=context),
        connect_timeout=5, command_timeout=command_timeout,
    )


@pytest.fixture(params=["asyncio", "uvloop"], autouse=True)
def loop_kind(request, monkeypatch):
    """Every test on both loops: the delivery process runs uvloop, whose transports
    must hand their input over (set_protocol) as asyncio's do."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        monkeypatch.setattr(asyncio, "run", lambda coro: uvloop.run(coro))
    return request.param


def _run(script: Scripted, transactions):
    async def main():
        server = await asyncio.start_server(script.session, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            conn = await _open(port)
            results = [await conn.send(*args, smtputf8=False, body_8bit=False) for args in transactions]
            usable = conn.usable
            await conn.close()
            return results, usable
        finally:
            server.close()

    return asyncio.run(asyncio.wait_for(main(), 20))


def test_envelope_in_one_write_and_replies_read_together_per_recipient():
    script = Scripted(rcpt={"gone@peer.example": "550 5.1.1 no such user", "full@peer.example": "552 5.2.2 too many"})
    body = b"Subject: dots\r\n\r\n.leading dot\r\nbare\nlf\r\n..two\r\nend"
    (result, second), usable = _run(script, [
        ("a@example.test", ["ok@peer.example", "gone@peer.example", "full@peer.example"], body),
        ("b@example.test", ["ok@peer.example"], b"Subject: again\r\n\r\nhi\r\n"),
    ])
    replies = result.replies
    assert (replies["ok@peer.example"].code, replies["ok@peer.example"].text) == (250, "2.0.0 queued 2.0.0 as ABC")
    assert replies["gone@peer.example"].code == 550
    assert replies["full@peer.example"].code == 452  # too many recipients: try the rest later
    assert second.replies["ok@peer.example"].ok  # the same connection, given back to aiosmtplib in between
    assert usable
    # Dots doubled on the wire and undone by the server; line ends made CRLF.
    assert script.bodies[0] == b"Subject: dots\r\n\r\n.leading dot\r\nbare\r\nlf\r\n..two\r\nend\r\n"
    assert b"QUIT" in script.commands  # closed through aiosmtplib: the protocol was handed back


def test_mail_refused_gives_every_recipient_its_reply_and_resets():
    script = Scripted(mail="451 4.3.0 try later", rcpt={}, data="503 5.5.1 no valid recipients")
    (result,), usable = _run(script, [("a@example.test", ["x@peer.example", "y@peer.example"], b"hi\r\n")])
    assert {r.code for r in result.replies.values()} == {451}
    assert b"RSET" in script.commands and script.bodies == [] and usable


def test_no_recipient_taken_but_data_354_ends_the_data_at_once():
    script = Scripted(rcpt={"x@peer.example": "550 5.1.1 unknown"}, data="354 go ahead",
                      final="554 5.5.1 no valid recipients")
    (result,), usable = _run(script, [("a@example.test", ["x@peer.example"], b"Subject: secret\r\n\r\nbody\r\n")])
    assert result.replies["x@peer.example"].code == 550
    assert script.bodies == [b""]  # the message itself never went
    assert b"RSET" in script.commands and usable


def test_without_pipelining_the_commands_go_one_by_one():
    script = Scripted(pipelining=False)
    (result,), _ = _run(script, [("a@example.test", ["ok@peer.example"], b"hi\r\n")])
    assert result.replies["ok@peer.example"].ok and script.bodies == [b"hi\r\n"]
    assert not script.pipelined_unasked


def test_bare_crs_become_line_ends_so_no_server_further_on_sees_an_early_end():
    from hatoba.delivery.pipelining import stuffed

    # "<CR>.<CR>" ends the data for a server that takes a bare CR for a line end.
    assert stuffed(b"a\r.\rb\r\n.c") == b"a\r\n..\r\nb\r\n..c\r\n.\r\n"


def test_a_server_that_loses_pipelined_commands_gets_them_one_at_a_time_next_time():
    from hatoba.delivery import pipelining

    pipelining._distrusted.clear()
    script = Scripted(pipelining=True, lossy=True)

    async def main():
        server = await asyncio.start_server(script.session, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            first = await _open(port, command_timeout=1)
            with pytest.raises(ConnectionFailed, match="timed out|lost connection"):
                await first.send("a@example.test", ["ok@peer.example"], b"hi\r\n", smtputf8=False, body_8bit=False)
            second = await _open(port, command_timeout=1)
            result = await second.send("a@example.test", ["ok@peer.example"], b"again\r\n",
                                       smtputf8=False, body_8bit=False)
            await second.close()
            return result
        finally:
            server.close()

    try:
        result = asyncio.run(asyncio.wait_for(main(), 20))
    finally:
        pipelining._distrusted.clear()
    assert result.replies["ok@peer.example"].ok and script.bodies == [b"again\r\n"]


def test_a_malformed_reply_fails_the_connection_not_the_process():
    script = Scripted(raw_envelope_reply=b"250 ok\r\nxyz nonsense\r\n")
    with pytest.raises(ConnectionFailed, match="malformed reply"):
        _run(script, [("a@example.test", ["ok@peer.example"], b"hi\r\n")])


def test_an_endless_reply_is_cut_off():
    script = Scripted(raw_envelope_reply=b"250-" + b"x" * 1000 + b"\r\n" + (b"250-" + b"y" * 1000 + b"\r\n") * 80)
    with pytest.raises(ConnectionFailed, match="too long"):
        _run(script, [("a@example.test", ["ok@peer.example"], b"hi\r\n")])


def test_replies_out_of_step_never_count_as_delivered():
    """One reply too many (MAIL answered twice) shifts every reply by one: the last RCPT's
    250 would be read as the answer to DATA. Only 354 lets the message go; anything else
    below 400 there means the replies cannot be trusted: the connection is given up and
    the message stays queued."""
    extra = b"250 2.1.0 sender ok\r\n250 2.1.0 (and welcome)\r\n250 2.1.5 ok\r\n354 go\r\n"
    script = Scripted(raw_envelope_reply=extra)
    with pytest.raises(ConnectionFailed, match="out of step"):
        _run(script, [("a@example.test", ["x@peer.example"], b"Subject: t\r\n\r\nhi\r\n")])
    assert b"Subject: t" not in b"".join(script.bodies)  # nothing went: the connection was closed


def test_a_250_to_data_step_by_step_is_not_delivery_either():
    script = Scripted(pipelining=False)

    async def envelope(reader, writer):  # the step-by-step server: 250 to MAIL, RCPT and DATA
        writer.write(b"250 2.1.0 ok\r\n")
        await writer.drain()
        for _ in range(2):
            await reader.readline()
            writer.write(b"250 2.0.0 ok\r\n")
            await writer.drain()

    script._envelope = envelope
    with pytest.raises(ConnectionFailed, match="unexpected reply 250 to DATA"):
        _run(script, [("a@example.test", ["x@peer.example"], b"hi\r\n")])
