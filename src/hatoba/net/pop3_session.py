"""Pop3Session: runs one POP3 connection, joining the POP3 core to the directory and the store.

read -> conn.receive_data -> conn.next_event -> verify logins, open the
maildrop, stream messages, delete on QUIT -> write. No POP3 syntax is
handled here. Blocking work (Argon2, SQLite, files) runs in threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from secrets import token_hex
from typing import Protocol

from hatoba.i18n import translations
from hatoba.config.schema import Config, ListenerConfig
from hatoba.logs import mail_log
from hatoba.metrics import Metrics
from hatoba.net import login as L
from hatoba.net.login import Logins, ScramLogin, account_key
from hatoba.policy.pop_before_smtp import PopBeforeSmtp
from hatoba.proto import sasl
from hatoba.proto.pop3 import replies as R
from hatoba.proto.pop3.body import RetrEncoder, TopEncoder
from hatoba.proto.pop3.events import (
    NEED_DATA,
    ApopLogin,
    AuthCredentials,
    AuthLookup,
    CoreReply,
    MessageInfo,
    Quit,
    Retrieve,
    StartTlsRequested,
    Top,
    UserPass,
)
from hatoba.proto.pop3.replies import Pop3Reply
from hatoba.proto.pop3.server import Pop3Facts, Pop3ServerConn, State
from hatoba.store.changes import POP3_DELETED, Change
from hatoba.store.directory import Directory
from hatoba.store.maildir import MaildirStore
from hatoba.store.maildrop_lock import MaildropLock
from hatoba.store.pop3_maildrop import Maildrop
from hatoba.store.secretbox import SecretBox, SecretBoxError
from hatoba.net.pop3_readahead import ReadAhead
from hatoba.net.session_base import SessionBase
from hatoba.net.stream import Stream

log = logging.getLogger(__name__)

READ_SIZE = 65536
WHOLE_MESSAGE = 256 * 1024  # messages up to this size are read in one go
STREAM_CHUNK = 64 * 1024
# Answers buffered past this many bytes go out (and are drained) before the
# next pipelined command is handled: a client that sends 400 RETRs or 10,000
# LISTs in one packet and then reads slowly makes the server hold one answer.
FLUSH_AT = STREAM_CHUNK
# RFC 1939 §3: the autologout timer is at least 10 minutes.
POP3_IDLE_TIMEOUT = 600.0


class MailboxChanges(Protocol):
    def changed(self, user: str, changes: tuple[Change, ...] = ()) -> None: ...


@dataclass
class Pop3Context:
    """What every POP3 session of one server shares."""

    config: Config
    directory: Directory
    store: MaildirStore
    logins: Logins
    pop_before_smtp: PopBeforeSmtp
    tls_context: ssl.SSLContext | None
    secrets: SecretBox | None
    metrics: Metrics
    events: MailboxChanges | None = None  # tells IMAP sessions about deletions


def apop_digest(timestamp: str, secret: str) -> str:
    """RFC 1939 §7: MD5 of the greeting's timestamp followed by the shared secret."""
    return hashlib.md5((timestamp + secret).encode("utf-8"), usedforsecurity=False).hexdigest()


class Pop3Session(SessionBase):
    def __init__(
        self,
        ctx: Pop3Context,
        listener: ListenerConfig,
        stream: Stream,
        session_id: str,
        client_ip: str,
    ) -> None:
        super().__init__(ctx, listener, stream, session_id, client_ip)
        self.ctx: Pop3Context = ctx
        cfg = ctx.config
        # RFC 1939 §7 suggests the process id; random bits are as unique and tell a client nothing.
        self.timestamp = f"<{token_hex(8)}.{time.time_ns()}@{cfg.server.hostname}>"
        apop_on = cfg.pop3.apop and ctx.secrets is not None
        self.conn = Pop3ServerConn(
            Pop3Facts(
                hostname=cfg.server.hostname,
                tls_available=ctx.tls_context is not None and not listener.implicit_tls,
                tls_active=listener.implicit_tls,
                allow_plaintext_auth=ctx.logins.plaintext_allowed(listener, client_ip),
                apop_timestamp=self.timestamp if apop_on else None,
                max_line=cfg.limits.max_command_line,
                max_bad_commands=cfg.limits.max_bad_commands,
                # No max_commands from the SMTP limit: fetching a big maildrop
                # takes a RETR and a DELE per message.
            )
        )
        if self.tls_info is not None:
            self.conn.channel_bindings = self.channel_bindings()
        self.maildrop: Maildrop | None = None
        self.read_ahead: ReadAhead | None = None
        self.mailbox: str | None = None
        self.lock: MaildropLock | None = None  # held from login to the end of the session
        self.scram: ScramLogin | None = None  # a SCRAM exchange past its key look-up
        self.auth_failures = 0
        self.retrieved = 0
        self.deleted = 0
        self.unflushed = 0  # bytes written since the last flush

    # -- the loop ----------------------------------------------------------------

    async def run(self) -> None:
        self._write(self.conn.greeting())
        await self._flush()
        timeout = min(self.ctx.config.limits.command_timeout * 2, POP3_IDLE_TIMEOUT)
        try:
            while not self.conn.closed:
                try:
                    data = await self.stream.read(READ_SIZE, self.read_timeout(timeout))
                except TimeoutError:
                    overdue = self.login_overdue()
                    reply = R.ERR_LOGIN_TIMEOUT if overdue else R.ERR_AUTOLOGOUT
                    self._write(R.format_reply(reply, self.conn.language))
                    mail_log("timeout", ip=self.client_ip, proto="pop3", reason="login-deadline" if overdue else "idle")
                    break
                if not data:
                    break  # dropped: nothing is deleted (RFC 1939 §6)
                self.conn.receive_data(data)
                await self._process_events()
                await self._flush()
        finally:
            if self.read_ahead is not None:
                self.read_ahead.close()
            await self._abandon_scram()
            self._unlock()
            await self._flush()

    async def _process_events(self) -> None:
        while not self.conn.closed:
            event = self.conn.next_event()
            self.trace_received(self.conn.take_line())
            if event is NEED_DATA:
                return
            try:
                await self._handle(event)
            except Exception:  # our bug or an I/O failure: the client gets -ERR, the server stays up
                log.exception("error handling %s", type(event).__name__)
                if self.conn.closed:
                    return
                self._write(self.conn.send(R.local_error(self.session_id)))
            if self.unflushed >= FLUSH_AT:
                await self._flush()

    async def _handle(self, event: object) -> None:
        logins = self.ctx.logins
        match event:
            case CoreReply(verb=verb, reply=reply):
                if self.scram is not None and not self.conn.in_sasl:
                    await self._abandon_scram()  # cancelled or malformed before the proof
                if verb == "LANG":  # a catalog's first read takes ~0.2 s: not on the event loop
                    await asyncio.to_thread(translations, self.conn.language)
                self._write(self.conn.send(reply))
            case StartTlsRequested():
                await self._starttls()
            case UserPass(user=user, password=password):
                await self._login(await logins.password(self, user, password, mechanism="USER"))
            case ApopLogin(user=user, digest=digest):
                await self._login(await logins.check(self, user, "APOP", lambda: self._check_apop(user, digest)))
            case AuthLookup(mechanism=mechanism, username=username, authzid=authzid):
                await self._abandon_scram()
                found = await logins.scram_keys(self, username, authzid, mechanism)
                if isinstance(found, L.LoginResult):
                    self._write(self.conn.send(_refusal(found)))
                else:
                    self.scram, keys = found
                    self.conn.sasl_keys(keys)
            case AuthCredentials(mechanism=mechanism, credentials=creds):
                if isinstance(creds, sasl.Verified):
                    scram, self.scram = self.scram, None
                    assert scram is not None
                    await self._login(await logins.scram_verified(self, scram, creds))
                else:
                    await self._login(await logins.password(
                        self, creds.username, creds.password, mechanism=mechanism, authzid=creds.authzid))
            case Retrieve(index=index, info=info):
                # Maildir files have LF line ends: lf_only keeps RETR equal to LIST's W= size.
                if await self._send_message(index, info, RetrEncoder(lf_only=True), self.conn.retr_ok):
                    self.retrieved += 1
            case Top(index=index, info=info, lines=lines):
                await self._send_message(index, info, TopEncoder(lines, lf_only=True), self.conn.top_ok)
            case Quit(deleted=deleted):
                await self._quit(deleted)
            case _:
                raise AssertionError(f"unexpected POP3 event {event!r}")

    # -- STLS ----------------------------------------------------------------------

    async def _starttls(self) -> None:
        self._write(self.conn.send(R.OK_STLS_BEGIN))
        await self._flush()
        if self.conn.closed or not await self.upgrade_tls("pop3"):
            self.conn.state = State.CLOSED
            return
        self.conn.tls_started()
        self.conn.channel_bindings = self.channel_bindings()

    # -- logins ----------------------------------------------------------------------

    def _check_apop(self, user: str, digest: str) -> str | None:
        """In a thread: the account when `digest` matches the user's APOP secret (RFC 1939 §7)."""
        sealed = self.ctx.directory.apop_secret(user)
        if sealed is None or self.ctx.secrets is None:
            return None
        try:
            secret = self.ctx.secrets.open(sealed)
        except SecretBoxError as exc:
            log.error("%s", exc)
            return None
        if not hmac.compare_digest(apop_digest(self.timestamp, secret), digest.lower()):
            return None
        return account_key(user)

    async def _abandon_scram(self) -> None:
        if self.scram is not None:
            scram, self.scram = self.scram, None
            await self.ctx.logins.scram_abandoned(self, scram)

    async def _login(self, result: L.LoginResult) -> None:
        """Answer a login the login module has judged; open the maildrop when it is ok."""
        if not result.ok:
            self._write(self.conn.send(_refusal(result)))
            if result.status == L.FAILED:
                self.auth_failures += 1
                if self.auth_failures >= self.ctx.config.pop3.max_auth_failures:
                    self._write(R.format_reply(R.ERR_TOO_MANY_FAILED_LOGINS, self.conn.language))
                    self.conn.state = State.CLOSED
            return
        mailbox = result.account
        assert mailbox is not None
        maildir = self.ctx.store.maildir(mailbox)
        # Kept before the thread starts: a session cancelled meanwhile still releases it (run's finally).
        lock = self.lock = MaildropLock(maildir)
        maildrop = None
        try:
            maildrop = await asyncio.to_thread(_open_locked, lock, maildir)
        except OSError as exc:
            log.error("cannot open the maildrop of %s: %s", mailbox, exc)
            self._write(self.conn.send(R.ERR_MAILDROP_UNAVAILABLE))
            return
        finally:
            if maildrop is None:
                self._unlock()  # not logged in: the maildrop must not stay locked
        if maildrop is None:
            mail_log("auth", result="in-use", proto="pop3", login=mailbox, ip=self.client_ip)
            self._write(self.conn.send(R.ERR_IN_USE))
            return
        self.mailbox = mailbox
        self.maildrop = maildrop
        self.read_ahead = ReadAhead(maildrop, WHOLE_MESSAGE, lambda index: not self.conn.is_deleted(index))
        if self.ctx.pop_before_smtp.enabled:  # off by default: then no thread and no disk
            await asyncio.to_thread(self.ctx.pop_before_smtp.record_login, self.client_ip, mailbox)
        infos = [MessageInfo(m.wire_size, m.uid) for m in maildrop.messages]
        self._write(self.conn.login_succeeded(mailbox, infos))

    def _unlock(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # -- messages ----------------------------------------------------------------------

    async def _send_message(self, index: int, info: MessageInfo, encoder, start) -> bool:  # type: ignore[no-untyped-def]
        """Stream one message (RETR or TOP); False when it could not be read."""
        assert self.maildrop is not None and self.read_ahead is not None
        maildrop = self.maildrop
        small = info.size <= WHOLE_MESSAGE
        try:
            if small:  # the common case: read whole, often ahead of the command (ReadAhead)
                data = await self.read_ahead.read(index)
            else:
                f = await asyncio.to_thread(maildrop.open_message, index)
        except FileNotFoundError:
            # Removed by another client (IMAP) since the session began.
            self._write(self.conn.send(R.ERR_MESSAGE_GONE))
            return False
        except OSError as exc:
            log.error("cannot read message %d of %s: %s", index + 1, self.mailbox, exc)
            self._write(self.conn.send(R.ERR_MESSAGE_UNAVAILABLE))
            return False
        self._write(start(info))
        if small:
            self._write(encoder.feed(data) + encoder.finish(), trace=False)
        else:
            try:
                while not getattr(encoder, "done", False):
                    chunk = await asyncio.to_thread(f.read, STREAM_CHUNK)
                    if not chunk:
                        break
                    self._write(encoder.feed(chunk), trace=False)
                    await self._flush()  # bounded memory: one chunk at a time
                self._write(encoder.finish(), trace=False)
            finally:
                await asyncio.to_thread(f.close)
        self.conn.message_sent()
        return True

    async def _quit(self, deleted: tuple[int, ...]) -> None:
        assert self.maildrop is not None
        try:
            removed = await asyncio.to_thread(self.maildrop.delete, deleted)
        except OSError as exc:
            log.error("cannot delete messages of %s: %s", self.mailbox, exc)
            self._write(self.conn.send(R.ERR_QUIT_FAILED))
            return
        self.deleted = removed
        if removed and self.ctx.events is not None and self.mailbox is not None:
            self.ctx.events.changed(self.mailbox, POP3_DELETED)
        mail_log("pop3-update", login=self.mailbox, ip=self.client_ip, retrieved=self.retrieved, deleted=removed)
        self._write(self.conn.send(R.update_done(self.ctx.config.server.hostname, removed)))

    # -- output ----------------------------------------------------------------------------

    def _write(self, data: bytes, *, trace: bool = True) -> None:
        self.write(data, trace=trace)
        self.unflushed += len(data)

    async def _flush(self) -> None:
        self.unflushed = 0
        if not await self.flush():
            self.conn.state = State.CLOSED


def _open_locked(lock: MaildropLock, maildir: Path) -> Maildrop | None:
    """In a thread: lock the maildrop, then list it; None when another session holds it."""
    if not lock.acquire():
        return None
    return Maildrop.open(maildir)


def _refusal(result: L.LoginResult) -> Pop3Reply:
    """The -ERR for a login that did not succeed (RFC 2449 §8.1, RFC 3206 codes)."""
    if result.status == L.THROTTLED:
        return R.err(result.text, R.CODE_LOGIN_DELAY)
    if result.status == L.BUSY:
        return R.err(result.text, R.CODE_IN_USE)
    if result.status == L.REFUSED:
        return R.err(result.text, R.CODE_AUTH)
    return R.ERR_LOGIN_FAILED


__all__ = ["Pop3Context", "Pop3Reply", "Pop3Session", "apop_digest"]
