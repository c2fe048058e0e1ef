"""SmtpServerConn: the sans-I/O SMTP server core (RFC 5321 with ESMTP extensions).

Use: receive_data(bytes); loop next_event() until NEED_DATA; answer each event
(but DataChunk) with send(reply) -> bytes to write. The core never decides
relay, user existence or passwords: it emits events and the adapter replies
with what policy and the directory decided.

Rules:
- The core enforces protocol-level safety from session facts: no AUTH before
  TLS (unless allowed), no MAIL before STARTTLS/AUTH on submission, line,
  message, recipient, command and bad-command limits, HTTP verbs -> close.
- Every reply leaves through send(); a 2xx/3xx reply to a pending event
  applies that event's transition, anything else leaves the state as it was.
- Bytes pipelined after STARTTLS are discarded, never read as commands
  inside TLS (CVE-2011-0411 class of attacks).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from hatoba.proto import sasl
from hatoba.proto.address import Address, AddressError, Path, parse_path, split_esmtp_params
from hatoba.proto.errors import LocalProtocolError
from hatoba.proto.lines import LINE_TOO_LONG, LineBuffer
from hatoba.proto.smtp import replies as R
from hatoba.proto.smtp.data import DataDecoder
from hatoba.proto.smtp.events import (
    NEED_DATA,
    PAUSED,
    AuthCredentials,
    AuthLookup,
    CoreReply,
    DataChunk,
    DataEnd,
    DataStart,
    Event,
    Hello,
    MailFrom,
    QuitRequested,
    RcptTo,
    Reset,
    StartTlsRequested,
)
from hatoba.proto.smtp.replies import Reply


@dataclass(frozen=True)
class SessionFacts:
    """What the core must know about its connection. Built by the adapter from config."""

    hostname: str
    tls_available: bool = True  # STARTTLS can be offered
    tls_active: bool = False  # implicit TLS: True from the first byte
    auth_enabled: bool = False  # AUTH exists on this listener at all
    require_auth: bool = False  # submission: MAIL needs AUTH first
    require_tls: bool = False  # submission on 587: TLS before AUTH and MAIL
    allow_plaintext_auth: bool = False
    max_message_size: int = 25 * 1024 * 1024
    max_recipients: int = 100
    max_command_line: int = 4096
    max_bad_commands: int = 20
    max_commands: int = 10000
    reject_bare_lf: bool = False
    auth_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS")
    software: str = "hatoba"


class State(enum.Enum):
    CONNECTED = "connected"  # greeting sent, no EHLO yet
    READY = "ready"  # EHLO done, no transaction
    MAIL = "mail"  # sender accepted
    RCPT = "rcpt"  # at least one recipient accepted
    DATA = "data"  # reading message content after 354
    BDAT = "bdat"  # reading a BDAT chunk
    AUTH = "auth"  # inside a SASL exchange
    CLOSED = "closed"


# Which verbs each state accepts; anything else is a sequence error (503).
ANYTIME = frozenset({"NOOP", "RSET", "QUIT", "HELP", "VRFY", "EXPN", "EHLO", "HELO"})
ALLOWED: dict[State, frozenset[str]] = {
    State.CONNECTED: ANYTIME | {"STARTTLS", "AUTH"},
    State.READY: ANYTIME | {"MAIL", "AUTH", "STARTTLS"},
    State.MAIL: ANYTIME | {"RCPT"},
    State.RCPT: ANYTIME | {"RCPT", "DATA", "BDAT"},
}

HTTP_VERBS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "CONNECT", "PATCH"})


class SmtpServerConn:
    def __init__(self, facts: SessionFacts) -> None:
        self.facts = facts
        self.state = State.CONNECTED
        self.tls_active = facts.tls_active
        self.helo: str | None = None
        self.extended = False
        self.auth_login: str | None = None
        self.recipients = 0
        self.bad_commands = 0
        self.commands = 0
        self.discarded_after_starttls = 0
        self._lines = LineBuffer(facts.max_command_line)
        self._last_line: tuple[bytes, bool] | None = None  # for take_line()
        self._pending: Event | None = None
        self._events: list[Event] = []
        self._data: DataDecoder | None = None
        self._data_size = 0
        self._data_too_big = False
        self._chunking = False  # the current transaction uses BDAT
        self._bdat_left = 0
        self._bdat_last = False
        self._bdat_valid = True
        self._bdat_return = State.RCPT
        self._sasl: sasl.ServerMechanism | None = None
        self._sasl_name = ""
        self._smtputf8 = False
        # SCRAM-PLUS: binding type -> data of this TLS connection (the adapter sets it).
        self.channel_bindings: dict[str, bytes] = {}

    # -- public API -------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def in_transaction(self) -> bool:
        return self.state in (State.MAIL, State.RCPT, State.DATA, State.BDAT)

    def greeting(self) -> bytes:
        # RFC 5321 §4.2: the greeting names the server; ESMTP tells clients to EHLO.
        return R.format_reply(Reply(220, "", f"{self.facts.hostname} ESMTP {self.facts.software}"))

    def receive_data(self, data: bytes) -> None:
        if self.state is State.CLOSED:
            return
        self._lines.feed(data)

    def next_event(self) -> Event | object:
        if self._pending is not None:
            return PAUSED
        if self._events:
            event = self._events.pop(0)
            self._hold(event)
            return event
        if self.state is State.CLOSED:
            return NEED_DATA
        if self.state is State.DATA:
            return self._next_data_event()
        if self.state is State.BDAT:
            return self._next_bdat_event()
        line = self._lines.next_line()
        if line is None:
            return NEED_DATA
        if line is LINE_TOO_LONG:
            return self._core(("?", R.R500_LINE_TOO_LONG))
        assert not isinstance(line, type(LINE_TOO_LONG))
        self._last_line = (line.content, self.state is State.AUTH)
        if line.bare_lf and self.facts.reject_bare_lf:
            return self._core(("?", R.R550_BARE_LF))
        if self.state is State.AUTH:
            return self._sasl_response(line.content)
        return self._command(line.content)

    def take_line(self) -> tuple[bytes, bool] | None:
        """The client line the last next_event() read, once, for the debug trace;
        True with it for a SASL response, which carries credentials."""
        line, self._last_line = self._last_line, None
        return line

    def send(self, reply: Reply) -> bytes:
        """Answer the pending event; returns the bytes to write."""
        event, self._pending = self._pending, None
        if isinstance(event, AuthLookup):
            self._end_sasl()  # refused before the salt went out (sasl_keys() continues instead)
        elif event is not None and reply.is_success:
            self._apply(event, reply)
        elif isinstance(event, DataEnd):  # a refused message still ends the transaction
            self._reset_transaction()
            self.state = State.READY
        if reply.is_permanent_error:
            self.bad_commands += 1
        out = R.format_reply(reply)
        if reply.closes:
            self.state = State.CLOSED
        elif self.bad_commands >= self.facts.max_bad_commands and self.state is not State.CLOSED:
            self.state = State.CLOSED
            out += R.format_reply(R.R421_TOO_MANY_ERRORS)
        return out

    def sasl_keys(self, keys: sasl.ScramKeys) -> None:
        """Answer a pending AuthLookup with the user's keys (scram.unknown_user_keys() for none);
        the exchange goes on with the next event (the server's challenge)."""
        if not isinstance(self._pending, AuthLookup) or self._sasl is None:
            raise LocalProtocolError("sasl_keys() without a pending AuthLookup")
        self._pending = None
        mech = self._sasl
        self._events.append(self._sasl_result(lambda: mech.keys(keys)))
        self._pending = None  # _sasl_result held its event; next_event() hands it out

    def tls_started(self) -> None:
        """STARTTLS finished: RFC 3207 §4.2, forget everything learned before it."""
        self.tls_active = True
        self.state = State.CONNECTED
        self.helo = None
        self.extended = False
        self.auth_login = None

    # -- events and transitions --------------------------------------------

    def _hold(self, event: Event) -> Event:
        if not isinstance(event, DataChunk):
            self._pending = event
        return event

    def _core(self, item: tuple[str, Reply]) -> Event:
        verb, reply = item
        return self._hold(CoreReply(verb, reply))

    def _apply(self, event: Event, reply: Reply) -> None:
        match event:
            case Hello(domain=domain, extended=extended):
                self.helo, self.extended = domain, extended
                self._reset_transaction()
                self.state = State.READY
            case Reset():
                self._reset_transaction()
                if self.state is not State.CONNECTED:
                    self.state = State.READY
            case StartTlsRequested():
                # RFC 3207 §4.2 / CVE-2011-0411: drop pipelined plaintext.
                self.discarded_after_starttls = len(self._lines.take_all())
            case AuthCredentials(credentials=creds):
                self.auth_login = creds.username
            case MailFrom(smtputf8=smtputf8):
                self.state = State.MAIL
                self.recipients = 0
                self._smtputf8 = smtputf8
            case RcptTo():
                self.recipients += 1
                self.state = State.RCPT
            case DataStart():
                self.state = State.DATA
                self._start_data()
            case DataEnd():
                self._reset_transaction()
                self.state = State.READY
            case QuitRequested():
                self.state = State.CLOSED
            case CoreReply():
                pass
            case _:
                pass

    def _reset_transaction(self) -> None:
        self.recipients = 0
        self._data = None
        self._chunking = False
        self._data_size = 0
        self._data_too_big = False
        self._smtputf8 = False

    # -- commands ---------------------------------------------------------------

    def _command(self, raw: bytes) -> Event:
        self.commands += 1
        if self.commands > self.facts.max_commands:
            return self._core(("?", R.R421_TOO_MANY_COMMANDS))
        if b"\x00" in raw:
            return self._core(("?", R.R500_NUL))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return self._core(("?", R.R500_SYNTAX))
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        if verb in HTTP_VERBS:
            return self._core((verb, R.R421_HTTP))
        handler = COMMANDS.get(verb)
        if handler is None:
            return self._core((verb, R.R500_SYNTAX))
        if verb == "BDAT":  # RFC 3030 §2: a refused chunk must still be read
            return handler(self, arg.strip())
        if verb not in ALLOWED.get(self.state, frozenset()):
            return self._core((verb, self._sequence_error(verb)))
        return handler(self, arg.strip())

    def _sequence_error(self, verb: str) -> Reply:
        if verb in ("MAIL", "AUTH", "STARTTLS") and self.state is State.CONNECTED:
            return R.R503_HELO_FIRST
        if verb == "MAIL":
            return R.R503_NESTED_MAIL
        if verb == "AUTH":
            return R.R503_AUTH_IN_TRANSACTION
        if verb == "DATA":
            return R.R503_RCPT_FIRST if self.state is State.MAIL else R.R503_MAIL_FIRST
        return R.R503_MAIL_FIRST

    def cmd_ehlo(self, arg: str) -> Event:
        return self._hello(arg, extended=True)

    def cmd_helo(self, arg: str) -> Event:
        return self._hello(arg, extended=False)

    def _hello(self, arg: str, *, extended: bool) -> Event:
        domain = arg.split(" ")[0] if arg else ""
        if not domain:
            return self._core(("EHLO" if extended else "HELO", R.R501_HELO_SYNTAX))
        if not extended:
            reply = Reply(250, "", self.facts.hostname)
        else:
            reply = Reply(250, "", (self.facts.hostname, *self.extensions()))
        return self._hold(Hello(domain, extended, reply))

    def extensions(self) -> list[str]:
        """The EHLO keywords for the current state of the session."""
        ext = [
            "PIPELINING",  # RFC 2920
            f"SIZE {self.facts.max_message_size}",  # RFC 1870
            "8BITMIME",  # RFC 6152
            "ENHANCEDSTATUSCODES",  # RFC 2034
            "SMTPUTF8",  # RFC 6531
            "CHUNKING",  # RFC 3030
        ]
        if self.facts.tls_available and not self.tls_active:
            ext.append("STARTTLS")  # RFC 3207
        if self._auth_offered():
            ext.append("AUTH " + " ".join(self._mechanisms()))  # RFC 4954
        return ext

    def _mechanisms(self) -> tuple[str, ...]:
        return sasl.mechanisms_offered(self.facts.auth_mechanisms, channel_binding=bool(self.channel_bindings))

    def _auth_offered(self) -> bool:
        return (
            self.facts.auth_enabled
            and self.auth_login is None
            and (self.tls_active or self.facts.allow_plaintext_auth)
        )

    def cmd_noop(self, arg: str) -> Event:
        return self._core(("NOOP", R.R250_OK))

    def cmd_help(self, arg: str) -> Event:
        return self._core(("HELP", R.R214_HELP))

    def cmd_vrfy(self, arg: str) -> Event:
        # RFC 5321 §3.5.3: 252 neither confirms nor denies (no user enumeration).
        if not arg:
            return self._core(("VRFY", R.R501_SYNTAX_ARGS))
        return self._core(("VRFY", R.R252_VRFY))

    def cmd_expn(self, arg: str) -> Event:
        return self._core(("EXPN", R.R502_NOT_IMPLEMENTED))

    def cmd_rset(self, arg: str) -> Event:
        return self._hold(Reset("RSET", R.R250_RESET))

    def cmd_quit(self, arg: str) -> Event:
        return self._hold(QuitRequested())

    def cmd_starttls(self, arg: str) -> Event:
        if arg:
            return self._core(("STARTTLS", R.R501_SYNTAX_ARGS))
        if self.tls_active:
            return self._core(("STARTTLS", R.R503_TLS_ACTIVE))
        if not self.facts.tls_available:
            return self._core(("STARTTLS", R.R454_TLS_UNAVAILABLE))
        return self._hold(StartTlsRequested())

    def cmd_auth(self, arg: str) -> Event:
        # RFC 4954 §4
        if not self.facts.auth_enabled:
            return self._core(("AUTH", R.R503_AUTH_NOT_AVAILABLE))
        if self.state is State.CONNECTED:
            return self._core(("AUTH", R.R503_HELO_FIRST))
        if self.auth_login is not None:
            return self._core(("AUTH", R.R503_ALREADY_AUTH))
        if not (self.tls_active or self.facts.allow_plaintext_auth):
            return self._core(("AUTH", R.R538_ENCRYPTION_REQUIRED))
        name, _, initial = arg.partition(" ")
        name = name.upper()
        if name not in self._mechanisms():
            return self._core(("AUTH", R.R504_AUTH_MECH))
        mech = sasl.server_mechanism(name, self.channel_bindings)
        if mech is None:
            return self._core(("AUTH", R.R504_AUTH_MECH))
        initial_bytes: bytes | None = None
        if initial:
            try:
                decoded = sasl.decode_response(initial.strip().encode("ascii", "replace"))
            except sasl.SaslError:
                return self._core(("AUTH", R.R501_AUTH_BAD))
            if isinstance(decoded, sasl.Cancelled):
                return self._core(("AUTH", R.R501_AUTH_CANCELLED))
            initial_bytes = decoded
        self._sasl, self._sasl_name = mech, name
        return self._sasl_result(lambda: mech.start(initial_bytes))

    def _sasl_response(self, raw: bytes) -> Event:
        mech = self._sasl
        assert mech is not None
        try:
            decoded = sasl.decode_response(raw.strip())
        except sasl.SaslError:
            self._end_sasl()
            return self._core(("AUTH", R.R501_AUTH_BAD))
        if isinstance(decoded, sasl.Cancelled):
            self._end_sasl()
            return self._core(("AUTH", R.R501_AUTH_CANCELLED))
        return self._sasl_result(lambda: mech.step(decoded))

    def _sasl_result(self, step: Callable[[], sasl.SaslResult]) -> Event:
        try:
            result = step()
        except sasl.SaslError:
            self._end_sasl()
            return self._core(("AUTH", R.R501_AUTH_BAD))
        if isinstance(result, sasl.Challenge):
            self.state = State.AUTH
            challenge = sasl.encode_challenge(result.data).decode("ascii")
            return self._core(("AUTH", Reply(334, "", challenge)))
        if isinstance(result, sasl.NeedKeys):
            self.state = State.AUTH
            return self._hold(AuthLookup(self._sasl_name, result.username, result.authzid))
        name = self._sasl_name
        self._end_sasl()
        return self._hold(AuthCredentials(name, result))

    def _end_sasl(self) -> None:
        if self.state is State.AUTH:
            self.state = State.READY  # AUTH is only accepted in READY
        self._sasl = None

    def cmd_mail(self, arg: str) -> Event:
        if self.facts.require_tls and not self.tls_active:
            return self._core(("MAIL", R.R530_STARTTLS_FIRST))
        if self.facts.require_auth and self.auth_login is None:
            return self._core(("MAIL", R.R530_AUTH_REQUIRED))
        if not arg.upper().startswith("FROM:"):
            return self._core(("MAIL", R.R501_SYNTAX_ARGS.with_text("Syntax: MAIL FROM:<address>")))
        try:
            path_text, params = split_esmtp_params(arg[5:].lstrip())
        except AddressError:
            return self._core(("MAIL", R.R501_SYNTAX_ARGS.with_text("Syntax: MAIL FROM:<address> [parameters]")))
        size: int | None = None
        body_8bit = False
        smtputf8 = False
        for key, value in params.items():
            if key == "SIZE" and value is not None and value.isdigit() and len(value) < 20:
                size = int(value)
            elif key == "BODY" and value is not None and value.upper() in ("7BIT", "8BITMIME"):
                body_8bit = value.upper() == "8BITMIME"
            elif key == "SMTPUTF8" and value is None:
                smtputf8 = True
            else:
                return self._core(("MAIL", R.R555_UNSUPPORTED_PARAM))
        if size is not None and size > self.facts.max_message_size:
            return self._core(("MAIL", R.R552_TOO_BIG))
        try:
            path = parse_path(path_text, smtputf8=smtputf8, allow_null=True)
        except AddressError as exc:
            return self._core(("MAIL", self._address_error(path_text, smtputf8, exc)))
        return self._hold(MailFrom(path, size, body_8bit, smtputf8))

    def cmd_rcpt(self, arg: str) -> Event:
        if not arg.upper().startswith("TO:"):
            return self._core(("RCPT", R.R501_SYNTAX_ARGS.with_text("Syntax: RCPT TO:<address>")))
        if self.recipients >= self.facts.max_recipients:
            return self._core(("RCPT", R.R452_TOO_MANY_RCPTS))
        smtputf8 = self._smtputf8
        try:
            path_text, params = split_esmtp_params(arg[3:].lstrip())
        except AddressError:
            return self._core(("RCPT", R.R501_SYNTAX_ARGS.with_text("Syntax: RCPT TO:<address>")))
        if params:
            return self._core(("RCPT", R.R555_UNSUPPORTED_PARAM))
        if path_text.lower() == "<postmaster>":
            # RFC 5321 §4.1.1.3: no domain, and always accepted; the adapter names the domain.
            return self._hold(RcptTo(Path(Address("postmaster", ""))))
        try:
            path = parse_path(path_text, smtputf8=smtputf8)
        except AddressError as exc:
            return self._core(("RCPT", self._address_error(path_text, smtputf8, exc)))
        return self._hold(RcptTo(path))

    @staticmethod
    def _address_error(text: str, smtputf8: bool, exc: AddressError) -> Reply:
        if not smtputf8 and not text.isascii():
            return R.R553_NON_ASCII
        return R.R553_BAD_ADDRESS.with_text(f"Bad address syntax: {exc}")

    def cmd_data(self, arg: str) -> Event:
        if arg:
            return self._core(("DATA", R.R501_SYNTAX_ARGS))
        if self._chunking:
            return self._core(("DATA", R.R503_BDAT_MIXED))
        return self._hold(DataStart())

    def _start_data(self) -> None:
        self._data = DataDecoder(reject_bare_lf=self.facts.reject_bare_lf)
        self._data_size = 0
        self._data_too_big = False
        leftover = self._lines.take_all()
        if leftover:
            self._events.extend(self._decode(leftover))

    def _next_data_event(self) -> Event | object:
        raw = self._lines.take_all()
        if raw:
            self._events.extend(self._decode(raw))
        if self._events:
            return self.next_event()
        return NEED_DATA

    def _decode(self, raw: bytes) -> list[Event]:
        assert self._data is not None
        progress = self._data.feed(raw)
        events: list[Event] = []
        if progress.content:
            events.extend(self._count(progress.content))
        if progress.bare_lf:
            self.state = State.READY
            self._data = None
            events.append(DataEnd(self._data_size, R.R550_BARE_LF))
        elif progress.finished:
            self.state = State.READY  # commands after the "." are read as commands
            self._data = None
            error = R.R552_TOO_BIG if self._data_too_big else None
            events.append(DataEnd(self._data_size, error))
            if progress.leftover:
                self._lines.feed(progress.leftover)
        return events

    def _count(self, content: bytes) -> list[Event]:
        """Track the size; past the limit, keep reading but stop passing data on."""
        self._data_size += len(content)
        if self._data_size > self.facts.max_message_size:
            self._data_too_big = True
        if self._data_too_big:
            return []
        return [DataChunk(content)]

    def cmd_bdat(self, arg: str) -> Event:
        # RFC 3030 §2: BDAT <size> [LAST]
        parts = arg.split()
        if not parts or not parts[0].isdigit() or len(parts[0]) > 18 or len(parts) > 2 or (len(parts) == 2 and parts[1].upper() != "LAST"):
            return self._core(("BDAT", R.R501_SYNTAX_ARGS.with_text("Syntax: BDAT <size> [LAST]")))
        self._bdat_valid = self.state is State.RCPT
        if self._bdat_valid and not self._chunking:
            self._data_size = 0
            self._data_too_big = False
            self._chunking = True
        self._bdat_return = self.state
        self._bdat_left = int(parts[0])
        self._bdat_last = len(parts) == 2
        self.state = State.BDAT
        return self._next_bdat_event()  # type: ignore[return-value]

    def _next_bdat_event(self) -> Event | object:
        if self._bdat_left:
            chunk = self._lines.take(self._bdat_left)
            if not chunk:
                return NEED_DATA
            self._bdat_left -= len(chunk)
            if self._bdat_valid:
                self._events.extend(self._count(chunk))
            if self._bdat_left:
                return self.next_event() if self._events else NEED_DATA
        # chunk complete
        self.state = self._bdat_return
        if not self._bdat_valid:
            reply = R.R503_MAIL_FIRST if self.state in (State.CONNECTED, State.READY) else R.R503_RCPT_FIRST
            self._events.append(CoreReply("BDAT", reply))
        elif self._bdat_last:
            error = R.R552_TOO_BIG if self._data_too_big else None
            self._events.append(DataEnd(self._data_size, error))
        else:
            size = self._data_size
            self._events.append(CoreReply("BDAT", Reply(250, "2.0.0", f"{size} octets received")))
        return self.next_event()


COMMANDS: dict[str, Callable[[SmtpServerConn, str], Event]] = {
    "EHLO": SmtpServerConn.cmd_ehlo,
    "HELO": SmtpServerConn.cmd_helo,
    "NOOP": SmtpServerConn.cmd_noop,
    "HELP": SmtpServerConn.cmd_help,
    "VRFY": SmtpServerConn.cmd_vrfy,
    "EXPN": SmtpServerConn.cmd_expn,
    "RSET": SmtpServerConn.cmd_rset,
    "QUIT": SmtpServerConn.cmd_quit,
    "STARTTLS": SmtpServerConn.cmd_starttls,
    "AUTH": SmtpServerConn.cmd_auth,
    "MAIL": SmtpServerConn.cmd_mail,
    "RCPT": SmtpServerConn.cmd_rcpt,
    "DATA": SmtpServerConn.cmd_data,
    "BDAT": SmtpServerConn.cmd_bdat,
}
