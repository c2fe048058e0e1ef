"""One outbound SMTP connection: connect, EHLO, TLS by policy, AUTH, transactions.

Built on aiosmtplib for the wire protocol (transactions with a server that
offers PIPELINING: delivery/pipelining.py). What this module adds is the
policy: when STARTTLS must succeed, when a certificate must verify, when a
password may be sent (only over TLS), and turning every failure into a
reply code that says whether to retry (4xx) or bounce (5xx).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl
import time
from dataclasses import dataclass

import aiosmtplib

from hatoba.delivery.pipelining import Pipeline, can_pipeline, distrust_pipelining, pipelining_trusted
from hatoba.delivery.tlspolicy import TlsPolicy


_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


@dataclass(frozen=True)
class Reply:
    """An SMTP reply, ours or the server's (`remote` says which)."""

    code: int
    text: str
    remote: bool = True

    @property
    def temporary(self) -> bool:
        return self.code < 500

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def enhanced(self) -> str:
        """The RFC 3463 status code of the reply when it is well formed and of the reply's
        class (a 550 with "2.1.5" is not trusted), else one derived from the basic code."""
        first = self.text.split(" ", 1)[0]
        if _ENHANCED.fullmatch(first) and first[0] == str(self.code)[0]:
            return first
        return {2: "2.0.0", 4: "4.0.0", 5: "5.0.0"}.get(self.code // 100, "4.0.0")

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


class ConnectionFailed(Exception):
    """The host could not take mail now: try the next MX host, or later. Carries our reply."""

    def __init__(self, reply: Reply, *, tls_handshake_failed: bool = False) -> None:
        super().__init__(str(reply))
        self.reply = reply
        self.tls_handshake_failed = tls_handshake_failed


@dataclass(frozen=True)
class TlsContexts:
    verifying: ssl.SSLContext
    opportunistic: ssl.SSLContext


@dataclass
class TransactionResult:
    replies: dict[str, Reply]  # per recipient: the final word on it


def _reply_of(exc: aiosmtplib.SMTPResponseException) -> Reply:
    return Reply(exc.code, " ".join(exc.message.split()))


def _rcpt_reply(reply: Reply) -> Reply:
    """A refused RCPT as we count it: 552 is "too many recipients", to try again
    later (RFC 5321 §4.5.3.1.10), so a 452."""
    if reply.code != 552:
        return reply
    return Reply(452, reply.text.replace("5.", "4.", 1) if reply.text.startswith("5.") else reply.text)


class SmtpConnection:
    """An open, greeted (and maybe TLS-protected, authenticated) connection to one server."""

    def __init__(self, smtp: aiosmtplib.SMTP, *, server_name: str, ip: str, port: int) -> None:
        self.smtp = smtp
        self.server_name = server_name
        self.ip = ip
        self.port = port
        self.tls_version = ""
        self.tls_cipher = ""
        self.verified = False
        self.last_used = time.monotonic()
        self.transactions = 0

    @property
    def relay_text(self) -> str:
        return f"{self.server_name}[{self.ip}]:{self.port}"

    @property
    def tls_text(self) -> str:
        if not self.tls_version:
            return "none"
        return f"{self.tls_version} {self.tls_cipher}"

    @classmethod
    async def open(
        cls,
        *,
        ip: str,
        port: int,
        server_name: str,
        helo_name: str,
        policy: TlsPolicy,
        implicit_tls: bool,
        contexts: TlsContexts,
        connect_timeout: float,
        command_timeout: float,
        credentials: tuple[str, str] | None = None,
        try_tls: bool = True,
    ) -> SmtpConnection:
        """Connect and get ready for MAIL FROM, or raise ConnectionFailed."""
        where = f"{server_name}[{ip}]:{port}"
        context = contexts.verifying if policy.verifies else contexts.opportunistic
        sock = await _connect(ip, port, connect_timeout, where)
        smtp = aiosmtplib.SMTP(
            hostname=server_name, sock=sock, use_tls=implicit_tls, start_tls=False,
            tls_context=context, local_hostname=helo_name, timeout=command_timeout,
        )
        conn = cls(smtp, server_name=server_name, ip=ip, port=port)
        try:
            await conn._greet(policy, implicit_tls, context, try_tls, credentials, where)
        except ConnectionFailed:
            smtp.close()
            raise
        except ssl.SSLCertVerificationError as exc:
            smtp.close()
            raise ConnectionFailed(
                Reply(454, f"4.7.5 TLS certificate of {where} not trusted ({exc.verify_message}); "
                           f"TLS policy verify from {policy.source}", remote=False)
            ) from None
        except ssl.SSLError as exc:
            smtp.close()
            raise ConnectionFailed(
                Reply(454, f"4.7.5 TLS handshake with {where} failed: {_words(exc)}", remote=False),
                tls_handshake_failed=True,
            ) from None
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            smtp.close()
            if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 400:
                raise ConnectionFailed(_reply_of(exc)) from None
            raise ConnectionFailed(Reply(451, f"4.4.2 lost connection with {where}: {_words(exc)}", remote=False)) from None
        return conn

    async def _greet(
        self,
        policy: TlsPolicy,
        implicit_tls: bool,
        context: ssl.SSLContext,
        try_tls: bool,
        credentials: tuple[str, str] | None,
        where: str,
    ) -> None:
        smtp = self.smtp
        await smtp.connect()
        await self._ehlo()
        if implicit_tls:
            self._record_tls(policy)
        elif smtp.supports_extension("starttls") and (try_tls or policy.requires_tls):
            try:
                await smtp.starttls(server_hostname=self.server_name, tls_context=context)
            except ssl.SSLCertVerificationError:
                raise
            except (aiosmtplib.SMTPException, ssl.SSLError, OSError, asyncio.TimeoutError) as exc:
                # Refused (454/554), reset or timed out: under `may` the caller
                # tries again in clear, as Postfix does; otherwise it defers.
                raise ConnectionFailed(
                    Reply(454, f"4.7.5 STARTTLS with {where} failed: {_words(exc)}", remote=False),
                    tls_handshake_failed=True,
                ) from None
            self._record_tls(policy)
            await self._ehlo()
        elif policy.requires_tls:
            raise ConnectionFailed(
                Reply(454, f"4.7.4 {where} does not offer STARTTLS; TLS policy {policy.level} "
                           f"from {policy.source} forbids clear text", remote=False)
            )
        if credentials is not None:
            if not self.tls_version:
                raise ConnectionFailed(
                    Reply(454, f"4.7.4 not sending the relayhost password to {where} without TLS", remote=False)
                )
            try:
                await smtp.login(*credentials)
            except aiosmtplib.SMTPAuthenticationError as exc:
                # Temporary, as Postfix's smtp_sasl_auth_soft_bounce: a wrong
                # password in our config must not bounce everyone's mail.
                raise ConnectionFailed(
                    Reply(454, f"4.7.8 relayhost {where} refused the login ({exc.code} "
                               f"{' '.join(exc.message.split())}); check delivery.relayhost_username "
                               "and the password", remote=False)
                ) from None
            except aiosmtplib.SMTPException as exc:
                raise ConnectionFailed(Reply(454, f"4.7.0 cannot log in to {where}: {_words(exc)}", remote=False)) from None

    async def _ehlo(self) -> None:
        try:
            await self.smtp.ehlo()
        except aiosmtplib.SMTPHeloError:
            await self.smtp.helo()  # an old server without ESMTP

    def _record_tls(self, policy: TlsPolicy) -> None:
        transport = self.smtp.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is None:
            return
        self.tls_version = ssl_object.version() or ""
        cipher = ssl_object.cipher()
        self.tls_cipher = cipher[0] if cipher else ""
        self.verified = policy.verifies

    async def send(
        self, mail_from: str, recipients: list[str], data: bytes, *, smtputf8: bool, body_8bit: bool
    ) -> TransactionResult:
        """One transaction; raises ConnectionFailed when the connection broke before an answer."""
        smtp = self.smtp
        self.last_used = time.monotonic()
        self.transactions += 1
        options = []
        encoding = "ascii"
        if smtp.supports_extension("size"):
            options.append(f"SIZE={len(data)}")
        if body_8bit and smtp.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        smtputf8 = smtputf8 or not (mail_from.isascii() and all(r.isascii() for r in recipients))
        if smtputf8:
            if not smtp.supports_extension("smtputf8"):
                reply = Reply(553, f"5.6.7 {self.relay_text} does not support SMTPUTF8, needed for this message", remote=False)
                return TransactionResult({r: reply for r in recipients})
            options.append("SMTPUTF8")
            encoding = "utf-8"
        try:
            if (smtp.supports_extension("pipelining") and can_pipeline(mail_from, recipients, options)
                    and pipelining_trusted(self.ip, self.port)):
                return await self._send_pipelined(mail_from, recipients, data, options, encoding)
            try:
                await smtp.mail(mail_from, options=options, encoding=encoding)
            except aiosmtplib.SMTPResponseException as exc:
                await self._reset()
                reply = _reply_of(exc)
                return TransactionResult({r: reply for r in recipients})
            replies: dict[str, Reply] = {}
            accepted = []
            for rcpt in recipients:
                try:
                    response = await smtp.rcpt(rcpt, encoding=encoding)
                except aiosmtplib.SMTPResponseException as exc:
                    replies[rcpt] = _rcpt_reply(_reply_of(exc))
                    continue
                accepted.append(rcpt)
                replies[rcpt] = Reply(response.code, response.message)
            if not accepted:
                await self._reset()
                return TransactionResult(replies)
            if not data.endswith(b"\r\n"):
                data += b"\r\n"
            try:
                response = await smtp.data(data)
                final = Reply(response.code, " ".join(response.message.split()))
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code < 400:
                    # aiosmtplib raises for a DATA reply other than 354 and a final one other
                    # than 250: a 2xx here cannot be told from "DATA refused" out of step.
                    raise aiosmtplib.SMTPServerDisconnected(f"unexpected reply {exc.code} to DATA") from None
                final = _reply_of(exc)
                # Refused at the DATA command itself the transaction is still
                # open; after the body it is over. RSET is right either way and
                # keeps the pooled connection clean for the next message.
                await self._reset()
            for rcpt in accepted:
                replies[rcpt] = final
            return TransactionResult(replies)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError, asyncio.TimeoutError) as exc:
            self.smtp.close()
            raise ConnectionFailed(
                Reply(451, f"4.4.2 lost connection with {self.relay_text}: {_words(exc)}", remote=False)
            ) from None
        finally:
            self.last_used = time.monotonic()

    async def _send_pipelined(
        self, mail_from: str, recipients: list[str], data: bytes, options: list[str], encoding: str
    ) -> TransactionResult:
        """The transaction in two round trips (delivery/pipelining.py); the replies mean
        what they mean in the step-by-step path of send()."""
        replies: dict[str, Reply] = {}
        async with Pipeline(self.smtp) as pipeline:
            try:
                answers = await pipeline.envelope(mail_from, recipients, options, encoding)
            except aiosmtplib.SMTPReadTimeoutError:
                # Offered but lost: some firewalls and old servers read one command per
                # packet. The next attempt goes step by step (the message stays queued).
                distrust_pipelining(self.ip, self.port)
                raise
            mail = Reply(answers.mail.code, answers.mail.text)
            accepted = []
            for rcpt, answer in zip(recipients, answers.rcpts):
                reply = replies[rcpt] = _rcpt_reply(Reply(answer.code, answer.text))
                if mail.ok and reply.ok:
                    accepted.append(rcpt)
            final: Reply | None = None
            if answers.data.code == 354:
                if accepted:
                    answer = await pipeline.message(data)
                    final = Reply(answer.code, answer.text)
                else:
                    await pipeline.abandon_data()
            elif accepted:
                if answers.data.code < 400:
                    # Only 354 lets the message go; a 2xx/3xx here means the replies are out
                    # of step with the commands (an extra or missing line): nothing was sent.
                    raise aiosmtplib.SMTPServerDisconnected(
                        f"reply out of step: {answers.data.code} {answers.data.text} to DATA")
                final = Reply(answers.data.code, answers.data.text)
        if not mail.ok:
            replies = {rcpt: mail for rcpt in recipients}
        for rcpt in accepted:
            assert final is not None
            replies[rcpt] = final
        if final is None or not final.ok:
            await self._reset()  # a transaction left open, or refused: a clean one for the next message
        return TransactionResult(replies)

    async def _reset(self) -> None:
        try:
            await self.smtp.rset()
        except aiosmtplib.SMTPException:
            self.smtp.close()

    @property
    def usable(self) -> bool:
        return self.smtp.is_connected

    async def close(self) -> None:
        if not self.smtp.is_connected:
            return
        try:
            async with asyncio.timeout(5):
                await self.smtp.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self.smtp.close()


async def _connect(ip: str, port: int, timeout: float, where: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:  # e.g. IPv6 switched off on this host
        raise ConnectionFailed(Reply(451, f"4.4.1 cannot connect to {where}: {exc.strerror or exc}", remote=False)) from None
    sock.setblocking(False)
    try:
        async with asyncio.timeout(timeout):
            await asyncio.get_running_loop().sock_connect(sock, (ip, port))
    except TimeoutError:
        sock.close()
        raise ConnectionFailed(Reply(451, f"4.4.1 connection to {where} timed out", remote=False)) from None
    except OSError as exc:
        sock.close()
        raise ConnectionFailed(
            Reply(451, f"4.4.1 cannot connect to {where}: {os.strerror(exc.errno) if exc.errno else exc}", remote=False)
        ) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _words(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
