"""A scripted SMTP server on loopback for the misbehaviours smtp-sink cannot show:
a chosen greeting, a refused STARTTLS. It speaks just enough SMTP to take mail."""

from __future__ import annotations

import asyncio
import threading


class ScriptedSmtp:
    def __init__(
        self, *, greeting: str = "220 scripted ESMTP", starttls_reply: str | None = None,
        rcpt_reply: str = "250 2.0.0 ok",
    ) -> None:
        self.greeting = greeting
        self.rcpt_reply = rcpt_reply  # e.g. "550 5.1.1 no such user": the message bounces
        self.starttls_reply = starttls_reply  # None: STARTTLS not offered
        self.messages: list[bytes] = []
        self.sessions = 0
        self.open_sessions = 0
        self.most_open = 0  # the most sessions open at once
        self.delay = 0.0  # seconds to wait before answering DATA's end
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def __enter__(self) -> ScriptedSmtp:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._session, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        self.open_sessions += 1
        self.most_open = max(self.most_open, self.open_sessions)
        try:
            await self._converse(reader, writer)
        finally:
            self.open_sessions -= 1

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:

        def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        say(self.greeting)
        if not self.greeting.startswith("220"):
            await writer.drain()
            writer.close()
            return
        while line := await reader.readline():
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb == b"EHLO":
                say("250-scripted")
                if self.starttls_reply is not None:
                    say("250-STARTTLS")
                say("250 8BITMIME")
            elif verb == b"STARTTLS":
                say(self.starttls_reply or "502 5.5.1 not offered")
            elif verb == b"RCPT":
                say(self.rcpt_reply)
            elif verb in (b"MAIL", b"RSET", b"NOOP"):
                say("250 2.0.0 ok")
            elif verb == b"DATA":
                say("354 go ahead")
                lines = []
                while (data := await reader.readline()) not in (b".\r\n", b""):
                    lines.append(data[1:] if data.startswith(b"..") else data)
                self.messages.append(b"".join(lines))
                await asyncio.sleep(self.delay)
                say("250 2.0.0 queued")
            elif verb == b"QUIT":
                say("221 2.0.0 bye")
                await writer.drain()
                break
            else:
                say("500 5.5.2 what?")
            await writer.drain()
        writer.close()
