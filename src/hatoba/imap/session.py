"""ImapSession: one IMAP connection: reading commands, logins, TLS, IDLE, dispatch.

read -> CommandReader (proto/imap/args.py) -> the state table
(proto/imap/states.py) -> one handler per command in imap/commands.py
-> write. Protocol syntax lives in proto/imap; mailboxes in store/folder_tree.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from hatoba.i18n import T, refusal, say
from hatoba.checks.feedback import JunkFeedback
from hatoba.config.schema import Config, ListenerConfig
from hatoba.imap.cmd_notify import tell
from hatoba.imap.commands import COMMANDS
from hatoba.imap.common import refresh_selected
from hatoba.imap.inflate import Inflater, InflateError
from hatoba.imap.notify import Watch
from hatoba.imap.replies import either, login_refusal, store_refusal
from hatoba.imap.wakeclock import WakeClock
from hatoba.metrics import Metrics
from hatoba.net import login as L
from hatoba.net.login import Logins, ScramLogin
from hatoba.policy.pop_before_smtp import PopBeforeSmtp
from hatoba.proto import sasl
from hatoba.proto.imap.args import (
    ArgError,
    ArgRefused,
    CommandError,
    CommandReader,
    ContinuationRequest,
    RawCommand,
    as_text,
)
from hatoba.proto.imap.encode import resp_text
from hatoba.proto.imap.traceform import trace_form
from hatoba.proto.imap.states import ALLOWED, KNOWN, ImapFacts, State, capabilities
from hatoba.proto.smtp.events import NEED_DATA
from hatoba.store.api import UserDB
from hatoba.store.changes import DELIVERED, Change
from hatoba.store.errors import MailboxError
from hatoba.store.folder_tree import MailboxStore, UserMailboxes
from hatoba.net.session_base import SessionBase
from hatoba.net.stream import Stream
from hatoba.net.workers import LOGINS
from hatoba.logs import trace_line

log = logging.getLogger(__name__)

READ_SIZE = 65536
PRE_LOGIN_TIMEOUT = 60.0
# RFC 9051 §5.4: the autologout timer is at least 30 minutes once logged in.
IDLE_AUTOLOGOUT = 30 * 60.0
# Deliveries, POP3 and other sessions wake IDLE at once; this slow rescan only
# catches files that outside tools put into the Maildir.
IDLE_RESCAN = 120.0
# The texts of the untagged BYEs: said in the session's language (LANGUAGE, RFC 5255).
AUTOLOGOUT_BYE = T("Autologout; idle for too long")
LOGIN_DEADLINE_BYE = T("Too slow: no login in time")
SHUTDOWN_BYE = T("Server shutting down; try again later")
BAD_DEFLATE_BYE = T("Invalid compressed data")
TOO_MANY_ERRORS_BYE = T("Too many errors; closing")
NOTHING_ENABLED: frozenset[str] = frozenset()


class MailboxEvents:
    """Tells a user's IMAP sessions what changed in their mailboxes (deliveries, POP3,
    other sessions): IDLE wakes, NOTIFY picks what to report (store/changes.py).

    It holds the sessions themselves, not an asyncio.Event each: with
    thousands of clients sitting in IDLE, an Event (and the deque inside it)
    per connection was a measurable share of the memory they cost.
    """

    def __init__(self) -> None:
        self._sessions: dict[str, set[ImapSession]] = {}
        # Set when other worker processes serve sessions too: tells them of the
        # changes made here (net/worker_link.py); they come back through receive().
        self.publish: Callable[[str, tuple[Change, ...]], None] | None = None

    def subscribe(self, user: str, session: ImapSession) -> None:
        self._sessions.setdefault(user.lower(), set()).add(session)

    def unsubscribe(self, user: str, session: ImapSession) -> None:
        sessions = self._sessions.get(user.lower())
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self._sessions[user.lower()]

    def changed(self, user: str, changes: tuple[Change, ...] = (), origin: ImapSession | None = None) -> None:
        """Runs in the event loop. `changes` empty: something changed, nobody knows what;
        `origin`: the session that made them (NOTIFY does not tell it of its own)."""
        self.receive(user, changes, origin)
        if self.publish is not None:
            self.publish(user, changes)

    def receive(self, user: str, changes: tuple[Change, ...], origin: ImapSession | None = None) -> None:
        """Tell this process's sessions only (news from another worker process)."""
        for session in tuple(self._sessions.get(user.lower(), ())):
            session.mailbox_news(changes, own=session is origin)

    def delivered(self, user: str) -> None:
        """A new message in the user's INBOX (QueueManager.on_delivered)."""
        self.changed(user, DELIVERED)


@dataclass
class ImapContext:
    config: Config
    directory: UserDB
    mailboxes: MailboxStore
    logins: Logins
    pop_before_smtp: PopBeforeSmtp
    tls_context: ssl.SSLContext | None
    events: MailboxEvents
    metrics: Metrics
    clock: WakeClock = dataclasses.field(default_factory=WakeClock)  # autologout and IDLE rescans
    # Set by the server: park(session) lets an IDLE session end its task until
    # the client, news or a deadline wakes it (None: sessions wait in their task).
    park: Callable[[ImapSession], None] | None = None
    # Set by the server when it stops: sessions waiting for the client say BYE at once.
    stopping: bool = False
    # Learns from what users move into and out of Junk (checks/feedback.py); None = off.
    feedback: JunkFeedback | None = None


class ImapSession(SessionBase):
    # Slots: one of these lives as long as its connection, and IDLE clients
    # keep connections for hours; a slotted instance has no per-object dict.
    __slots__ = (
        "facts", "commands", "state", "user", "boxes", "selected", "enabled", "language",
        "bad_commands", "command_count", "closed", "_compress", "_decompress",
        "_subscribed", "news", "idling", "_idle_deadline", "_idle_rescan", "notify",
    )

    def __init__(
        self,
        ctx: ImapContext,
        listener: ListenerConfig,
        stream: Stream,
        session_id: str,
        client_ip: str,
    ) -> None:
        super().__init__(ctx, listener, stream, session_id, client_ip)
        self.ctx: ImapContext = ctx
        cfg = ctx.config
        self.facts = ImapFacts(
            hostname=cfg.server.hostname,
            tls_available=ctx.tls_context is not None and not listener.implicit_tls,
            tls_active=listener.implicit_tls,
            allow_plaintext_auth=ctx.logins.plaintext_allowed(listener, client_ip),
            max_bad_commands=cfg.limits.max_bad_commands,
            channel_binding=bool(self.tls_info and self.channel_bindings()),
        )
        self.state = State.NOT_AUTHENTICATED
        self.commands = self.new_reader()
        self.user: str | None = None
        self.boxes: UserMailboxes | None = None
        self.selected = None  # SelectedMailbox when in State.SELECTED
        self.enabled: frozenset[str] = NOTHING_ENABLED  # ENABLEd extensions; a new set on change
        self.language = "i-default"  # of the status texts: LANGUAGE (RFC 5255 §3) chooses
        self.bad_commands = 0
        self.command_count = 0
        self.closed = False
        self._compress: zlib._Compress | None = None  # type: ignore[name-defined]
        self._decompress: Inflater | None = None
        self._subscribed = False  # in ctx.events, to hear of other sessions' and deliveries' changes
        self.news = False  # a mailbox changed since the last refresh (refresh_selected clears it)
        self.idling: str | None = None  # the tag of an IDLE in progress
        self._idle_deadline = 0.0  # autologout, in loop time
        self._idle_rescan = 0.0  # the next look for files outside tools added
        self.notify: Watch | None = None  # NOTIFY SET in effect (RFC 5465); None: as before any NOTIFY

    # -- the loop ---------------------------------------------------------------------

    async def run(self) -> bool:
        """Greet, then serve(); True when the session parked (see serve)."""
        self.write(b"* OK [CAPABILITY %s] %s hatoba IMAP ready\r\n"
                   % (capabilities(self.facts, self.state).encode(), self.facts.hostname.encode()))
        await self.flush()
        return await self.serve()

    async def serve(self) -> bool:
        """Commands until the connection ends (False), or until an IDLE parks
        the session (True): then the server calls serve() again, in a new
        task, when the client, news or a deadline wakes the stream."""
        parked = False
        try:
            while not self.closed:
                if self.idling is not None:
                    # Here, not inside the IDLE command's handler: a session
                    # idling for hours holds as few coroutine frames as it can.
                    parked = await self.idle(self.idling)
                    if parked:
                        return True
                    await self.process()  # what the client sent after DONE
                    await self.flush()
                    continue
                data = await self.read()
                if data is None:
                    break
                self.commands.feed(data)
                await self.process()
                await self.flush()
            return False
        finally:
            if not parked:
                if self._subscribed and self.user is not None:
                    self.ctx.events.unsubscribe(self.user, self)
                await self.flush()

    async def read(self) -> bytes | None:
        """The client's next bytes; None when the session ends (the end of
        input, a timeout, the server stopping, invalid compressed data)."""
        if not self._inflate_pending() and not await self._await_input():
            return None
        return await self._receive()

    async def _await_input(self) -> bool:
        """Wait for the client's next bytes; False (and BYE written) on a timeout or a stop."""
        timeout = PRE_LOGIN_TIMEOUT if self.state is State.NOT_AUTHENTICATED else IDLE_AUTOLOGOUT
        deadline = asyncio.get_running_loop().time() + self.read_timeout(timeout)
        while True:
            # Stopping: a client between commands is told at once; one part-way through a
            # command (an APPEND literal on its way) gets the server's grace to finish it.
            if self.ctx.stopping and self.commands.between_commands:
                self._bye(SHUTDOWN_BYE)
                return False
            if self.notify is not None and self.notify.due and self.commands.between_commands:
                # RFC 5465: with NOTIFY, news goes out whenever no command is in progress.
                await self._report_between_commands()
                if self.closed:
                    return False
                continue
            if await self._wait_for_input(deadline):
                return True
            if asyncio.get_running_loop().time() >= deadline:
                self._bye(LOGIN_DEADLINE_BYE if self.login_overdue() else AUTOLOGOUT_BYE)
                return False

    async def _report_between_commands(self) -> None:
        """NOTIFY's news while the client sends nothing; a failure is an untagged NO."""
        try:
            await self.report_news(idle=False)
        except MailboxError as exc:  # the selected folder was deleted under us
            self.untagged("NO", refusal(exc))
        except (ConnectionError, ssl.SSLError):
            raise
        except Exception:
            log.exception("error in IMAP NOTIFY")
            self.untagged("NO", self.internal_error())
        await self.flush()

    def _bye(self, text: str) -> None:
        """End the session with an untagged BYE (RFC 9051 §7.1.5); the server closes it."""
        self.untagged("BYE", text)
        self.closed = True

    async def _wait_for_input(self, due: float) -> bool:
        """Wait for the client, a wake-up (mailbox news) or `due`; False when nothing came in."""
        clock = self.ctx.clock
        clock.add(self.stream, due)
        try:
            return await self.stream.wait_for_input()
        finally:
            clock.remove(self.stream)

    def _inflate_pending(self) -> bool:
        return self._decompress is not None and self._decompress.pending

    async def _receive(self) -> bytes | None:
        """Bytes as the client meant them: after COMPRESS (RFC 4978), inflated,
        at most READ_SIZE at a time (see inflate.py); None at the end."""
        if self._inflate_pending():
            await asyncio.sleep(0)  # other sessions run between the pieces of a large input
            data = b""
        else:
            data = await self.stream.read(READ_SIZE)
            if not data:
                return None
        if self._decompress is None:
            return data
        try:
            return self._decompress.inflate(data)
        except InflateError as exc:
            log.info("invalid compressed input (%s); closing", exc)
            self._bye(BAD_DEFLATE_BYE)
            return None

    async def process(self) -> None:
        while not self.closed and self.idling is None:
            item = self.commands.next()
            if item is NEED_DATA:
                return
            if isinstance(item, ContinuationRequest):
                self.write(b"+ Ready for literal data\r\n")
                await self.flush()
                continue
            if isinstance(item, CommandError):
                await self.command_error(item)
                continue
            assert isinstance(item, RawCommand)
            await self.dispatch(item)
            await self.flush()

    async def command_error(self, error: CommandError) -> None:
        tag = error.tag.encode() if error.tag else b"*"
        text = resp_text(say(error.text, self.language))
        if error.toobig:
            self.write(tag + b" NO [TOOBIG] " + text + b"\r\n")
        else:
            self.write(tag + b" BAD " + text + b"\r\n")
        self.count_bad()
        if error.fatal:
            self.write(b"* BYE " + text + b"\r\n")
            self.closed = True

    def count_bad(self) -> None:
        self.bad_commands += 1
        if self.bad_commands >= self.facts.max_bad_commands and not self.closed:
            self._bye(TOO_MANY_ERRORS_BYE)

    async def dispatch(self, cmd: RawCommand) -> None:
        self.command_count += 1
        trace_line("<-", trace_form(cmd))
        tag = cmd.tag
        name = cmd.name
        if name not in KNOWN or name not in COMMANDS:
            self.tagged(tag, "BAD", T("Unknown command %(command)s", command=name[:20]))
            self.count_bad()
            return
        if name not in ALLOWED[self.state]:
            where = {
                State.NOT_AUTHENTICATED: T("log in first"),
                State.AUTHENTICATED: T("select a mailbox first"),
                State.SELECTED: T("not in this state"),
            }.get(self.state, T("closing"))
            self.tagged(tag, "BAD", T("%(command)s is not allowed now: %(where)s", command=name, where=where))
            self.count_bad()
            return
        handler = COMMANDS[name]
        try:
            await handler(self, cmd)
        except ArgRefused as exc:
            self.tagged(tag, "NO", refusal(exc))
        except ArgError as exc:
            self.tagged(tag, "BAD", refusal(exc) or T("Syntax error"))
            self.count_bad()
        except MailboxError as exc:
            self.tagged(tag, "NO", store_refusal(exc))
        except (ConnectionError, ssl.SSLError):
            raise
        except Exception:
            log.exception("error in IMAP %s", name)
            self.tagged(tag, "NO", self.internal_error())

    # -- output ---------------------------------------------------------------------

    # Answers carry message contents; only the status lines are traced (tagged,
    # command errors), and commands as dispatch() reads them.
    trace_output = False

    def tagged(self, tag: str, status: str, text: str) -> None:
        line = f"{tag} {status} ".encode() + resp_text(say(text, self.language)) + b"\r\n"
        trace_line("->", line)
        self.write(line)

    def untagged(self, status: str, text: str) -> None:
        """An untagged status response ("* OK", "* NO", "* BYE"), its text in the session's language."""
        self.write(f"* {status} ".encode() + resp_text(say(text, self.language)) + b"\r\n")

    def internal_error(self) -> str:
        """The text of a NO for a failure of the server's own (the id finds it in the log)."""
        return T("[SERVERBUG] Internal error; try again later (id=%(id)s)", id=self.session_id)

    def wire_form(self, data: bytes) -> bytes:
        """`data` as it must go out now, compressed after COMPRESS (the server's farewell)."""
        if self._compress is not None:
            return self._compress.compress(data) + self._compress.flush(zlib.Z_SYNC_FLUSH)
        return data

    async def flush(self) -> bool:
        if not await super().flush():
            self.closed = True
            return False
        return True

    # -- TLS --------------------------------------------------------------------------

    async def start_tls(self, tag: str) -> None:
        self.tagged(tag, "OK", T("Begin TLS negotiation now"))
        await self.flush()
        if self.closed or not await self.upgrade_tls("imap"):
            self.closed = True
            return
        # RFC 9051 §6.2.1: forget anything pipelined before TLS (CVE-2011-0411 style injection),
        # and the language asked for in clear: whoever sat in the middle may have chosen it
        # (RFC 5255 §3: the client asks again after TLS).
        self.commands = self.new_reader()
        self.language = "i-default"
        self.facts = dataclasses.replace(
            self.facts, tls_active=True, tls_available=False, channel_binding=bool(self.channel_bindings())
        )

    def new_reader(self) -> CommandReader:
        """A command reader; before login it takes limits.max_command_before_login
        bytes a command, so a stranger cannot make the server hold megabytes."""
        if self.state is State.NOT_AUTHENTICATED:
            cap = self.ctx.config.limits.max_command_before_login
            return CommandReader(max_line=cap, max_literal=cap, max_command=cap)
        return CommandReader(max_line=self.facts.max_line, max_literal=self.facts.max_literal)

    # -- logins -----------------------------------------------------------------------

    async def login(self, tag: str, user: str, password: str, mechanism: str) -> None:
        await self.logged_in(tag, await self.ctx.logins.password(self, user, password, mechanism=mechanism))

    async def logged_in(self, tag: str, result: L.LoginResult) -> None:
        """Answer a login the login module has judged; open the user's mailboxes when it is ok."""
        if not result.ok:
            self.tagged(tag, "NO", login_refusal(result))
            if result.status == L.FAILED:
                self.count_bad()
            return
        assert result.account is not None
        self.user = result.account
        self.boxes = await LOGINS.run(self._open_user)  # part of logging in: never behind mailbox work
        self.state = State.AUTHENTICATED
        self.commands.set_limits(self.facts.max_line, self.facts.max_literal)
        self.ctx.events.subscribe(self.user, self)
        self._subscribed = True
        if self.ctx.pop_before_smtp.enabled:  # off by default: then no thread and no disk
            await asyncio.to_thread(self.ctx.pop_before_smtp.record_login, self.client_ip, self.user)
        caps = capabilities(self.facts, self.state, compress_available=True)
        self.tagged(tag, "OK", T("[CAPABILITY %(capabilities)s] Logged in", capabilities=caps))

    def _open_user(self) -> UserMailboxes:
        assert self.user is not None
        boxes = self.ctx.mailboxes.for_user(self.user)
        boxes.ensure_defaults()
        return boxes

    async def authenticate(self, cmd: RawCommand) -> None:
        tag = cmd.tag
        if not cmd.args:
            raise ArgError(T("AUTHENTICATE needs a mechanism"))
        mech_name = as_text(cmd.args[0]).upper()
        if not self.facts.may_login:
            self.tagged(tag, "NO", T("[PRIVACYREQUIRED] Use STARTTLS first, or port 993"))
            return
        offered = self.facts.offered_mechanisms
        bindings = self.channel_bindings() if self.facts.channel_binding else {}
        mechanism = sasl.server_mechanism(mech_name, bindings) if mech_name in offered else None
        if mechanism is None:
            self.tagged(tag, "NO", T("[CANNOT] Unsupported mechanism; use %(mechanisms)s", mechanisms=either(offered)))
            return
        scram: ScramLogin | None = None
        try:
            initial = None
            if len(cmd.args) > 1:  # SASL-IR (RFC 4959)
                decoded = sasl.decode_response(as_text(cmd.args[1]).encode())
                if isinstance(decoded, sasl.Cancelled):
                    self.tagged(tag, "BAD", T("Authentication cancelled"))
                    return
                initial = decoded
            result = mechanism.start(initial)
            while not isinstance(result, (sasl.Credentials, sasl.Verified)):
                if isinstance(result, sasl.NeedKeys):
                    found = await self.ctx.logins.scram_keys(self, result.username, result.authzid, mech_name)
                    if isinstance(found, L.LoginResult):
                        await self.logged_in(tag, found)
                        return
                    scram, keys = found
                    result = mechanism.keys(keys)
                    continue
                self.write(b"+ " + sasl.encode_challenge(result.data) + b"\r\n")
                await self.flush()
                line = await self.raw_line()
                if line is None:
                    self.closed = True
                    return
                trace_line("<-", line, secret=True)
                decoded = sasl.decode_response(line)
                if isinstance(decoded, sasl.Cancelled):
                    self.tagged(tag, "BAD", T("Authentication cancelled"))
                    return
                result = mechanism.step(decoded)
            if isinstance(result, sasl.Verified):
                assert scram is not None
                scram, done = None, scram
                await self.logged_in(tag, await self.ctx.logins.scram_verified(self, done, result))
            else:
                await self.logged_in(tag, await self.ctx.logins.password(
                    self, result.username, result.password, mechanism=mech_name, authzid=result.authzid))
        except sasl.SaslError as exc:
            self.tagged(tag, "BAD", refusal(exc))
            self.count_bad()
        finally:
            if scram is not None:  # ended after the salt, before a verdict: cancelled, malformed or dropped
                await self.ctx.logins.scram_abandoned(self, scram)

    async def raw_line(self) -> bytes | None:
        """The next line as sent (AUTHENTICATE responses, DONE after IDLE)."""
        while True:
            line = self.commands.next_raw_line()
            if line is not NEED_DATA and line is not None:
                return line
            data = await self.read()
            if data is None:
                return None
            self.commands.feed(data)

    # -- IDLE -------------------------------------------------------------------------

    def begin_idle(self, tag: str) -> None:
        """The IDLE command: serve() waits in idle() once the handler has returned."""
        self.write(b"+ idling\r\n")
        self.idling = tag
        now = asyncio.get_running_loop().time()
        self._idle_deadline = now + IDLE_AUTOLOGOUT
        self._idle_rescan = now + IDLE_RESCAN

    async def idle(self, tag: str) -> bool:
        """RFC 2177: push news until the client sends DONE.

        Rules:
        - The session waits on its stream (wait_for_input) with no timer of
          its own: mailbox_news() wakes the stream, and the context's
          WakeClock wakes it when the IDLE rescan or the autologout is due.
        - The rescan every IDLE_RESCAN seconds is for files that outside
          tools put into the Maildir; it and news lead to one refresh.
        - RFC 9051 §5.4: the autologout timer keeps running while idling; it
          restarts whenever the client sends anything.
        - With ctx.park set, the session parks instead of waiting and returns
          True; serve() then ends its task, and a later serve() comes back here.
        - With NOTIFY in effect, IDLE tells what NOTIFY asked for, no more and
          no less (RFC 5465 §4), as between commands.
        """
        loop = asyncio.get_running_loop()
        clock = self.ctx.clock
        clock.remove(self.stream)  # back from a park: whatever woke us, the clock is not needed
        parked = False
        try:
            while True:
                line = self.commands.next_raw_line()
                if line is None:
                    continue  # a line over the limit, dropped: look at the next one
                if line is not NEED_DATA:
                    break
                now = loop.time()
                if self.ctx.stopping or now >= self._idle_deadline:
                    self._bye(SHUTDOWN_BYE if self.ctx.stopping else AUTOLOGOUT_BYE)
                    return False
                if now >= self._idle_rescan:
                    self.news = True
                    if self.notify is not None:
                        self.notify.note_unknown(self.selected_name)
                    self._idle_rescan = now + IDLE_RESCAN
                if self.news or (self.notify is not None and self.notify.due):
                    try:
                        await self.report_news(idle=True)  # clears news first: a change meanwhile asks again
                    except MailboxError as exc:  # the folder was deleted, or reset, under us
                        self.tagged(tag, "NO", store_refusal(exc))
                        return False
                    except Exception:
                        log.exception("error in IMAP IDLE")
                        self.tagged(tag, "NO", self.internal_error())
                        return False
                    await self.flush()
                    if self.closed:
                        return False
                    continue
                due = min(self._idle_rescan, self._idle_deadline)
                pending = self._inflate_pending()
                if self.ctx.park is not None and not pending and not self.stream.has_input():
                    clock.add(self.stream, due)
                    self.ctx.park(self)
                    parked = True
                    return True
                if not pending and not await self._wait_for_input(due):
                    continue  # woken: news, or a deadline
                data = await self._receive()
                if data is None:
                    self.closed = True
                    return False
                self._idle_deadline = loop.time() + IDLE_AUTOLOGOUT
                self.commands.feed(data)
        finally:
            if not parked:
                self.idling = None
        if line.strip().upper() != b"DONE":
            self.tagged(tag, "BAD", T("Expected DONE to end IDLE"))
            return False
        self.tagged(tag, "OK", T("IDLE terminated"))
        return False

    def mailbox_news(self, changes: tuple[Change, ...], *, own: bool = False) -> None:
        """A mailbox of this user changed (MailboxEvents): an IDLE in progress reports it
        now, and so does a session waiting between commands when NOTIFY asked for it."""
        self.news = True
        notify = self.notify
        if notify is None:
            if self.idling is not None:
                self.stream.wake()
            return
        if changes:
            notify.note(changes, own=own, selected=self.selected_name)
        elif not own:
            notify.note_unknown(self.selected_name)
        if notify.due:
            self.stream.wake()  # harmless during a command: only a wait for input ends

    def mailbox_changed(self, *changes: Change) -> None:
        """This session changed its mailboxes: wake the other sessions of the user."""
        if self.user is not None:
            self.ctx.events.changed(self.user, changes, origin=self)

    @property
    def selected_name(self) -> str | None:
        return self.selected.mailbox.name if self.selected is not None else None

    async def report_news(self, *, idle: bool) -> None:
        """Write what changed: the selected mailbox's news (IDLE without NOTIFY), or what
        NOTIFY asked for. idle: in IDLE, where expunges may always be told."""
        if self.notify is None:
            await refresh_selected(self)
        else:
            self.news = False  # NOTIFY decides what the selected mailbox reports
            await tell(self, idle=idle)

    def start_compression(self) -> None:
        # RFC 4978: raw deflate both ways, from the next byte on.
        self._compress = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._decompress = Inflater(READ_SIZE)
