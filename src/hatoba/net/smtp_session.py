"""SmtpSession: runs one SMTP connection, joining the core to policy, directory and spool.

read -> conn.receive_data -> conn.next_event -> decide (policy/directory/spool)
-> conn.send(reply) -> write. No SMTP syntax is handled here; no file is touched
here (the spool owns them). Blocking work (SQLite, Argon2) runs in threads.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from datetime import datetime, timezone

from hatoba.checks.dnsbl import DnsblScore
from hatoba.checks.headers import without_spans
from hatoba.checks.judge import DEFER, JUNK, REJECT, MessageFacts, Verdict
from hatoba.checks.runner import CheckRunner
from hatoba.config.schema import Config, ListenerConfig
from hatoba.logs import mail_log
from hatoba.metrics import Metrics
from hatoba.net import login as L
from hatoba.net.login import Logins, ScramLogin
from hatoba.policy import relay, submission
from hatoba.policy.pop_before_smtp import PopBeforeSmtp, WindowStoreError
from hatoba.proto.smtp import replies as R
from hatoba.proto.smtp.events import (
    NEED_DATA,
    AuthCredentials,
    AuthLookup,
    CoreReply,
    DataChunk,
    DataEnd,
    DataStart,
    Hello,
    MailFrom,
    QuitRequested,
    RcptTo,
    Reset,
    StartTlsRequested,
)
from hatoba.proto import sasl
from hatoba.proto.address import parse_address
from hatoba.proto.smtp.received import TraceInfo, format_received
from hatoba.proto.smtp.replies import Reply
from hatoba.proto.smtp.server import SessionFacts, SmtpServerConn, State
from hatoba.queue.spool import Envelope, IncomingMessage, Spool, SpoolError
from hatoba.store.api import UserDB
from hatoba.net.session_base import SessionBase
from hatoba.net.rates import CONNECTIONS, MESSAGES, UNKNOWN_RECIPIENTS, EventRates
from hatoba.net.stream import Stream

log = logging.getLogger(__name__)

READ_SIZE = 65536
MAX_GUESSER_DELAY = 10  # seconds an RCPT answer is held at most (below every client's timeout)


@dataclass
class SmtpContext:
    """What every SMTP session of one server shares."""

    config: Config
    directory: UserDB
    spool: Spool
    logins: Logins
    trusted: relay.TrustedNetworks
    pop_before_smtp: PopBeforeSmtp
    tls_context: ssl.SSLContext | None
    metrics: Metrics
    checks: CheckRunner | None = None  # judges mail from other servers ([checks] enabled)
    rates: EventRates | None = None  # connections and messages per address, last minute
    harvest: EventRates | None = None  # unknown recipients per address, last 10 minutes


def session_facts(ctx: SmtpContext, listener: ListenerConfig) -> SessionFacts:
    """Turn config into the facts the core enforces (the per-port security table)."""
    cfg, limits = ctx.config, ctx.config.limits
    submission_port = listener.is_submission
    return SessionFacts(
        hostname=cfg.server.hostname,
        tls_available=ctx.tls_context is not None and not listener.implicit_tls,
        tls_active=listener.implicit_tls,
        auth_enabled=submission_port or cfg.smtp.auth_on_smtp_port,
        require_auth=submission_port,
        require_tls=submission_port and not cfg.smtp.allow_plaintext_auth,
        allow_plaintext_auth=ctx.logins.plaintext_allowed(listener, ""),
        max_message_size=limits.max_message_size,
        max_recipients=limits.max_recipients,
        max_command_line=limits.max_command_line,
        max_bad_commands=limits.max_bad_commands,
        max_commands=limits.max_commands_per_session,
        reject_bare_lf=cfg.smtp.bare_newline == "reject",
    )


class SmtpSession(SessionBase):
    def __init__(
        self,
        ctx: SmtpContext,
        listener: ListenerConfig,
        stream: Stream,
        session_id: str,
        client_ip: str,
    ) -> None:
        super().__init__(ctx, listener, stream, session_id, client_ip)
        self.ctx: SmtpContext = ctx
        self.conn = SmtpServerConn(session_facts(ctx, listener))
        if self.tls_info is not None:
            self.conn.channel_bindings = self.channel_bindings()
        self.scram: ScramLogin | None = None  # a SCRAM exchange past its key look-up
        self.mail_from: str | None = None
        self.mail_event: MailFrom | None = None
        self.recipients: list[str] = []
        self.message: IncomingMessage | None = None
        self.spool_failed = False
        self.messages_accepted = 0
        self.relayed_by_pop_window = False  # a recipient was accepted through POP-before-SMTP
        # The client's blocklist score, asked as the connection opens (see _dnsbl_score).
        self.dnsbl_task: asyncio.Task[DnsblScore] | None = None
        self.dnsbl: DnsblScore | None = None

    # -- the loop ----------------------------------------------------------------

    async def run(self) -> None:
        if self._over_connection_rate():
            await self._flush(final=True)
            return
        checks = self.ctx.checks
        if checks is not None and checks.asks_blocklists and self._judged():
            self.dnsbl_task = asyncio.create_task(checks.dnsbl(self.client_ip))
        if await self._talked_first():
            if self.dnsbl_task is not None:
                self.dnsbl_task.cancel()
            await self._flush(final=True)
            return
        self._write(self.conn.greeting())
        await self._flush()
        limits = self.ctx.config.limits
        try:
            while not self.conn.closed:
                timeout = limits.data_timeout if self.conn.state in (State.DATA, State.BDAT) else limits.command_timeout
                try:
                    data = await self.stream.read(READ_SIZE, self.read_timeout(timeout))
                except TimeoutError:
                    overdue = self.login_overdue()
                    self._write(R.format_reply(R.R421_LOGIN_DEADLINE if overdue else R.R421_TIMEOUT))
                    mail_log("timeout", ip=self.client_ip, state=self.conn.state.value,
                             reason="login-deadline" if overdue else "idle")
                    break
                if not data:
                    break
                self.conn.receive_data(data)
                await self._process_events()
                await self._flush()
        finally:
            if self.dnsbl_task is not None and not self.dnsbl_task.done():
                self.dnsbl_task.cancel()
            await self._abandon_scram()
            if self.message is not None:
                await self.message.abort()
                self.message = None
            await self._flush(final=True)

    async def _process_events(self) -> None:
        while not self.conn.closed:
            event = self.conn.next_event()
            self.trace_received(self.conn.take_line())
            if event is NEED_DATA:
                return
            if isinstance(event, DataChunk):
                await self._data_chunk(event)
                continue
            try:
                reply = await self._handle(event)
            except SpoolError as exc:  # disk full, permissions: the client retries later
                log.error("%s", exc)
                await self._drop_transaction()
                reply = R.local_error(self.session_id)
            except Exception:  # one catch per command: our bug or an I/O failure
                log.exception("error handling %s", type(event).__name__)
                await self._drop_transaction()
                reply = R.local_error(self.session_id)
            if reply is None:  # the handler has answered and switched to TLS itself
                continue
            self._write(self.conn.send(reply))
            if isinstance(event, StartTlsRequested) or isinstance(event, QuitRequested):
                await self._flush()

    async def _handle(self, event: object) -> Reply | None:
        match event:
            case CoreReply(reply=reply):
                if self.scram is not None and self.conn.state is not State.AUTH:
                    await self._abandon_scram()  # cancelled or malformed before the proof
                return reply
            case Hello():
                return await self._hello(event)
            case StartTlsRequested():
                await self._starttls()
                return None
            case AuthLookup():
                return await self._auth_lookup(event)
            case AuthCredentials():
                return await self._auth(event)
            case MailFrom():
                return await self._mail_from(event)
            case RcptTo():
                return await self._rcpt_to(event)
            case DataStart():
                self.message = self.ctx.spool.new_message()
                return R.R354_START_DATA
            case DataEnd():
                return await self._data_end(event)
            case Reset(reply=reply):
                await self._drop_transaction()
                return reply
            case QuitRequested():
                return R.R221_BYE
        raise AssertionError(f"unhandled event {event!r}")

    # -- handlers ---------------------------------------------------------------------

    async def _hello(self, event: Hello) -> Reply:
        await self._drop_transaction()  # RFC 5321 §4.1.4: EHLO resets the transaction
        return event.reply

    async def _starttls(self) -> None:
        self._write(self.conn.send(R.R220_READY_TLS))
        await self._flush()
        if self.conn.closed or not await self.upgrade_tls("smtp"):
            self.conn.state = State.CLOSED
            return
        self.conn.tls_started()
        self.conn.channel_bindings = self.channel_bindings()
        if self.conn.discarded_after_starttls:
            mail_log("starttls-injection", ip=self.client_ip, discarded=self.conn.discarded_after_starttls)

    # -- logins (every rule is in net/login.py) ---------------------------------------------

    async def _auth_lookup(self, event: AuthLookup) -> Reply | None:
        await self._abandon_scram()
        found = await self.ctx.logins.scram_keys(self, event.username, event.authzid, event.mechanism)
        if isinstance(found, L.LoginResult):
            return self._auth_reply(found)
        self.scram, keys = found
        self.conn.sasl_keys(keys)
        return None  # the core hands out its challenge as the next event

    async def _auth(self, event: AuthCredentials) -> Reply | None:
        creds = event.credentials
        if isinstance(creds, sasl.Verified):
            scram, self.scram = self.scram, None
            assert scram is not None
            result = await self.ctx.logins.scram_verified(self, scram, creds)
        else:
            result = await self.ctx.logins.password(
                self, creds.username, creds.password, mechanism=event.mechanism, authzid=creds.authzid
            )
        reply = self._auth_reply(result)
        if result.ok:
            out = self.conn.send(reply)  # applies the login in the core...
            self.conn.auth_login = result.account  # ...under its canonical name
            self._write(out)
            return None
        return reply

    def _auth_reply(self, result: L.LoginResult) -> Reply:
        if result.ok:
            return R.R235_AUTH_OK
        if result.status in (L.THROTTLED, L.BUSY):
            return R.R454_AUTH_TEMPORARY.with_text(result.text)
        if result.status == L.REFUSED:
            return R.R535_AUTH_FAILED.with_text(result.text)
        return R.R535_AUTH_FAILED

    async def _abandon_scram(self) -> None:
        if self.scram is not None:
            scram, self.scram = self.scram, None
            await self.ctx.logins.scram_abandoned(self, scram)

    async def _talked_first(self) -> bool:
        """An early talker: it sent something during [checks] greet_pause, before our greeting."""
        pause = self.ctx.config.checks.greet_pause
        if not pause or self.ctx.checks is None or not self._from_outside():
            return False
        try:
            await self.stream.read(READ_SIZE, pause)  # data, or the end: either way it did not wait
        except TimeoutError:
            return False
        self._rejected("early-talker", stage="connect", ip=self.client_ip)
        self._write(R.format_reply(R.R554_EARLY_TALKER))
        return True

    def _over_connection_rate(self) -> bool:
        limit, rates = self.ctx.config.limits.client_connection_rate, self.ctx.rates
        if not limit or rates is None or not self._from_outside():
            return False
        seen = rates.count(CONNECTIONS, self.client_ip)
        if seen >= limit:
            self._rejected("connection-rate", stage="connect", ip=self.client_ip, limit=limit)
            self._write(R.format_reply(R.R421_RATE.with_text(
                f"Too many connections from your address in the last minute ({limit}); try again later")))
            return True
        rates.note(CONNECTIONS, self.client_ip)
        return False

    def _over_message_rate(self) -> Reply | None:
        limit, rates = self.ctx.config.limits.client_message_rate, self.ctx.rates
        if not limit or rates is None or not self._from_outside():
            return None
        if rates.count(MESSAGES, self.client_ip) >= limit:
            self._rejected("message-rate", stage="mail", ip=self.client_ip, limit=limit)
            return R.R450_RATE.with_text(
                f"Too many messages from your address in the last minute ({limit}); try again later")
        rates.note(MESSAGES, self.client_ip)
        return None

    async def _slow_down_guessers(self) -> None:
        """A client that named many unknown recipients lately waits a little longer for each answer."""
        limit, harvest = self.ctx.config.limits.unknown_recipient_limit, self.ctx.harvest
        if not limit or harvest is None or not self._from_outside():
            return
        over = harvest.count(UNKNOWN_RECIPIENTS, self.client_ip) - limit + 1
        if over > 0:
            await asyncio.sleep(min(over, MAX_GUESSER_DELAY))

    async def _mail_from(self, event: MailFrom) -> Reply:
        too_many = self._over_message_rate()
        if too_many is not None:
            return too_many
        if not await self.ctx.spool.has_room(event.size, self.ctx.config.limits.queue_reserve):
            self._rejected("insufficient-storage", stage="mail", ip=self.client_ip,
                           size=event.size, sender=f"<{event.path.address or ''}>")
            return R.R452_NO_STORAGE
        login = self.conn.auth_login
        if login is not None and self.listener.is_submission and self.ctx.config.smtp.restrict_sender_to_login:
            owned = await asyncio.to_thread(self.ctx.directory.sender_addresses, login)
            decision = submission.check_sender(event.path, login=login, owned=owned)
            if not decision.accept:
                self._rejected(decision.log_reason, stage="mail", ip=self.client_ip,
                               login=login, sender=event.path.address)
                return decision.reply
        self.mail_event = event
        self.login_due = None  # a sender under way: only the idle timeouts apply now
        self.mail_from = "" if event.path.address is None else str(event.path.address)
        self.recipients = []
        return R.R250_SENDER_OK

    async def _rcpt_to(self, event: RcptTo) -> Reply:
        address = event.path.address
        assert address is not None
        if not address.domain:  # the bare <Postmaster>
            bare = await asyncio.to_thread(self.ctx.directory.postmaster_address)
            if bare is None:
                return R.R550_NO_SUCH_USER
            address = parse_address(bare)
        relay_ok = relay.may_relay(
            client_ip=self.client_ip, authenticated=self.conn.auth_login is not None, trusted=self.ctx.trusted
        )
        try:
            decision, pop_login = await asyncio.to_thread(
                self.ctx.pop_before_smtp.check_recipient, address, self.client_ip, relay_allowed=relay_ok,
                directory=self.ctx.directory, windows_apply=self.listener.name == "smtp",
            )
        except WindowStoreError as exc:
            log.error("POP-before-SMTP: cannot look up the window of %s: %s", self.client_ip, exc)
            return R.R451_LOCAL_ERROR
        if decision.accept and decision.log_reason == "relay" and pop_login is not None:
            self.relayed_by_pop_window = True
            mail_log("relay", via="pop-before-smtp", ip=self.client_ip, pop_login=pop_login,
                     sender=f"<{self.mail_from}>", rcpt=f"<{address}>")
        await self._slow_down_guessers()
        if not decision.accept:
            self._rejected(decision.log_reason, stage="rcpt", ip=self.client_ip,
                           helo=self.conn.helo, sender=f"<{self.mail_from}>", rcpt=f"<{address}>")
            if decision.log_reason == "unknown-user" and self.ctx.harvest is not None and self._from_outside():
                self.ctx.harvest.note(UNKNOWN_RECIPIENTS, self.client_ip)
            return decision.reply
        blocked = await self._blocklisted(address)
        if blocked is not None:
            return blocked
        self.recipients.append(str(address))
        return decision.reply

    async def _data_chunk(self, event: DataChunk) -> None:
        if self.spool_failed:
            return  # the rest of this message is read and dropped; DataEnd answers 451
        if self.message is None:  # BDAT transactions have no DataStart
            self.message = self.ctx.spool.new_message()
        try:
            await self.message.write(event.data)
        except SpoolError as exc:
            log.error("%s", exc)
            await self.message.abort()
            self.message = None
            self.spool_failed = True

    async def _data_end(self, event: DataEnd) -> Reply:
        if self.spool_failed:
            await self._drop_transaction()
            return R.local_error(self.session_id)
        if event.error is not None:
            await self._drop_transaction()
            self._rejected(event.error.status, stage="data", size=event.size, ip=self.client_ip,
                           sender=f"<{self.mail_from}>")
            return event.error
        if self.message is None:
            self.message = self.ctx.spool.new_message()
        assert self.mail_event is not None and self.mail_from is not None
        message, self.message = self.message, None
        verdict: Verdict | None = None
        if self._judged():
            try:
                verdict = await self._judge(message)
            except BaseException:
                await message.abort()
                raise
            if verdict.action in (REJECT, DEFER):
                await message.abort()
                self._rejected(verdict.log_reason, stage="data", ip=self.client_ip, helo=self.conn.helo,
                               sender=f"<{self.mail_from}>", checks=verdict.summary)
                self._clear_transaction()
                if verdict.action == DEFER:
                    return R.R451_POLICY.with_text(f"Try again later: {verdict.reason}")
                code, status = verdict.reply
                return Reply(code, status, f"Rejected: {verdict.reason}")
        envelope = Envelope(
            mail_from=self.mail_from,
            recipients=tuple(self.recipients),
            received_at=datetime.now(timezone.utc).timestamp(),
            client_ip=self.client_ip,
            helo=self.conn.helo or "",
            auth_login=self.conn.auth_login,
            smtputf8=self.mail_event.smtputf8,
            body_8bit=self.mail_event.body_8bit,
            listener=self.listener.name,
            session_id=self.session_id,
            junk=verdict.log_reason if verdict is not None and verdict.action == JUNK else "",
            header_from=verdict.from_address if verdict is not None else "",
            from_authenticated=verdict is not None and verdict.from_authenticated,
        )
        header = format_received(self._trace_info(envelope))
        if verdict is not None:
            header += verdict.fields.encode("utf-8")
        try:
            qid = await message.commit(envelope, header)
        except BaseException:
            await message.abort()
            raise
        self.messages_accepted += 1
        self.ctx.metrics.listener(self.listener.name).accepted.inc()
        tls = self.tls_info
        mail_log(
            "accepted",
            qid=qid,
            ip=self.client_ip,
            helo=self.conn.helo,
            listener=self.listener.name,
            tls=f"{tls[0]}/{tls[1]}" if tls else "none",
            login=self.conn.auth_login,
            sender=f"<{self.mail_from}>",
            rcpts=",".join(f"<{r}>" for r in self.recipients),
            nrcpt=len(self.recipients),
            size=(message.size if verdict is not None and verdict.strip else event.size) + len(header),
            checks=verdict.summary if verdict is not None else None,
            junk=verdict.reason if envelope.junk and verdict is not None else None,
        )
        self._clear_transaction()
        return R.R250_QUEUED.with_text(f"OK: queued as {qid}")

    async def _blocklisted(self, address: object) -> Reply | None:
        """550 when the client's blocklist score reaches the threshold (postmaster@ is always let through)."""
        if self.dnsbl_task is None or not self._judged():
            return None
        if self.dnsbl is None:
            try:
                self.dnsbl = await self.dnsbl_task
            except Exception:
                log.exception("blocklist lookups of %s failed; not counted", self.client_ip)
                self.dnsbl_task = None
                return None
            for error in self.dnsbl.errors:
                log.warning("blocklist lookup for %s: %s", self.client_ip, error)
        assert self.ctx.checks is not None
        if self.dnsbl.score < self.ctx.config.checks.dnsbl_threshold:
            return None
        if str(address).lower().startswith("postmaster@"):
            return None  # RFC 5321 §4.5.1: a listed sender can still reach the postmaster
        self._rejected("dnsbl", stage="rcpt", ip=self.client_ip, helo=self.conn.helo,
                       sender=f"<{self.mail_from}>", rcpt=f"<{address}>", dnsbl=self.dnsbl.summary)
        return R.R550_POLICY.with_text(
            f"Service unavailable; client [{self.client_ip}] blocked using {', '.join(self.dnsbl.listed_by)}"
        )

    def _from_outside(self) -> bool:
        """Another server's session: port 25, no login, not a trusted network, no POP-before-SMTP relay."""
        return (
            self.listener.name == "smtp"
            and self.conn.auth_login is None
            and self.client_ip not in self.ctx.trusted
            and not self.relayed_by_pop_window
        )

    def _judged(self) -> bool:
        """Mail the checks judge: from outside, while [checks] is on."""
        return self.ctx.checks is not None and self._from_outside()

    async def _judge(self, message: IncomingMessage) -> Verdict:
        assert self.ctx.checks is not None and self.mail_from is not None
        facts = MessageFacts(client_ip=self.client_ip, helo=self.conn.helo or "", mail_from=self.mail_from,
                             recipients=tuple(self.recipients), dnsbl=self.dnsbl)
        verdict, content = await self.ctx.checks.assess(facts, message.size, message.contents)
        if verdict.strip:  # forged Authentication-Results or X-Spam fields: gone before it is queued
            await message.replace_contents(without_spans(content, verdict.strip))
        return verdict

    def _rejected(self, reason: str, *, stage: str, **fields: object) -> None:
        """A policy refusal: its mail-log line, and its count (by the same reason)."""
        mail_log("rejected", stage=stage, reason=reason, **fields)
        self.ctx.metrics.rejected(reason)

    def _trace_info(self, envelope: Envelope) -> TraceInfo:
        tls = self.tls_info
        return TraceInfo(
            helo=envelope.helo,
            client_ip=self.client_ip,
            extended=self.conn.extended,
            tls_version=tls[0] if tls else None,
            tls_cipher=tls[1] if tls else None,
            tls_bits=tls[2] if tls else None,
            auth_login=self.conn.auth_login,
            show_login=self.ctx.config.smtp.received_shows_login,
            server_hostname=self.ctx.config.server.hostname,
            session_id=self.session_id,
            recipients=envelope.recipients,
            when=datetime.now(timezone.utc),
        )

    async def _drop_transaction(self) -> None:
        if self.message is not None:
            message, self.message = self.message, None
            await message.abort()
        self._clear_transaction()

    def _clear_transaction(self) -> None:
        self.spool_failed = False
        self.mail_from = None
        self.mail_event = None
        self.recipients = []
        self.relayed_by_pop_window = False

    # -- output ---------------------------------------------------------------------------

    _write = SessionBase.write

    async def _flush(self, *, final: bool = False) -> None:
        if not await self.flush() or final:
            self.conn.state = State.CLOSED
