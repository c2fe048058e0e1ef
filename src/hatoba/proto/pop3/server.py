"""Pop3ServerConn: the sans-I/O POP3 server core (RFC 1939 with CAPA, STLS and AUTH).

Use: send greeting(); then receive_data(bytes) and loop next_event() until
NEED_DATA, answering each event (see events.py) before asking for the next.
The core never decides whether a password is right or what a maildrop
holds: it emits login events and the adapter answers with login_succeeded()
and the store's message list. From then on the core keeps the maildrop view
itself (numbers, sizes, uids, deletion marks) and answers STAT, LIST, UIDL,
DELE and RSET without the adapter.

Rules:
- No password of any kind (USER/PASS, APOP, AUTH) before TLS unless the
  operator allowed it; CAPA shows USER and SASL only when they would work.
- Every line gets exactly one answer, in order (pipelining, RFC 2449 §6.6);
  the core pauses until the adapter answered the last event.
- Bytes pipelined after STLS are discarded, never read as commands inside
  TLS (RFC 2595 §4; the CVE-2011-0411 class of attacks).
- Client mistakes are counted; at max_bad_commands the core sends a last
  "-ERR [SYS/PERM]" and closes. -ERR replies blaming the server do not count.
- An adapter that answers an event the wrong way (an +OK to a login event,
  send() for a RETR being streamed) is a hatoba bug: LocalProtocolError.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hatoba.i18n import LANGUAGES
from hatoba.proto import sasl
from hatoba.proto.errors import LocalProtocolError
from hatoba.proto.lines import LINE_TOO_LONG, Line, LineBuffer
from hatoba.proto.pop3 import replies as R
from hatoba.proto.pop3.events import (
    NEED_DATA,
    PAUSED,
    ApopLogin,
    AuthCredentials,
    AuthLookup,
    CoreReply,
    Event,
    MessageInfo,
    Quit,
    Retrieve,
    StartTlsRequested,
    Top,
    UserPass,
)
from hatoba.proto.pop3.replies import Pop3Reply

__all__ = ["MessageInfo", "Pop3Facts", "Pop3ServerConn", "State", "NEED_DATA", "PAUSED"]


@dataclass(frozen=True)
class Pop3Facts:
    """What the core must know about its connection. Built by the adapter from config."""

    hostname: str
    tls_available: bool  # STLS can be offered (a certificate is loaded)
    tls_active: bool  # implicit TLS (port 995): True from the first byte
    allow_plaintext_auth: bool = False  # the operator allowed passwords without TLS
    apop_timestamp: str | None = None  # "<1234.5678@mail.example.test>" in the greeting; None = no APOP
    sasl_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS")
    max_line: int = 4096
    max_bad_commands: int = 20
    max_commands: int = 100000
    implementation: str = "hatoba"


class State(enum.Enum):
    AUTHORIZATION = "authorization"  # RFC 1939 §4
    TRANSACTION = "transaction"  # RFC 1939 §5: logged in, maildrop listed
    CLOSED = "closed"


# Which verbs each state accepts (RFC 1939 §4-§7, RFC 2449 §5, RFC 2595 §4,
# RFC 5034 §4); a known verb in the wrong state gets a state error.
AUTHORIZATION_VERBS = frozenset({"CAPA", "QUIT", "NOOP", "USER", "PASS", "APOP", "AUTH", "STLS", "LANG"})
TRANSACTION_VERBS = frozenset({"CAPA", "QUIT", "NOOP", "STAT", "LIST", "UIDL", "RETR", "DELE", "RSET", "TOP", "LANG"})
ALLOWED: dict[State, frozenset[str]] = {
    State.AUTHORIZATION: AUTHORIZATION_VERBS,
    State.TRANSACTION: TRANSACTION_VERBS,
}

HTTP_VERBS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "CONNECT", "PATCH"})

LOGIN_EVENTS = (UserPass, ApopLogin, AuthCredentials)

# Message numbers and TOP line counts: more digits than this cannot name a
# message; refusing early keeps int() away from huge strings.
_MAX_NUMBER_DIGITS = 9


def _valid_uid(uid: str) -> bool:
    # RFC 1939 §7: unique-id = 1*70 characters in the range 0x21 to 0x7E.
    # ASCII and printable is 0x20 to 0x7E: all but the space (checked in C, not per character).
    return 1 <= len(uid) <= 70 and uid.isascii() and uid.isprintable() and " " not in uid


def _printable(text: str) -> bool:
    return all(0x21 <= ord(c) < 0x7F for c in text)


class Pop3ServerConn:
    def __init__(self, facts: Pop3Facts) -> None:
        self.facts = facts
        self.state = State.AUTHORIZATION
        self.tls_active = facts.tls_active
        self.bad_commands = 0
        self.commands = 0
        self.discarded_after_stls = 0
        self.language = "en"  # of the replies' texts (LANG, RFC 6856)
        self._lines = LineBuffer(facts.max_line)
        self._last_line: tuple[bytes, bool] | None = None  # for take_line()
        self._pending: Event | None = None
        self._streaming = False  # retr_ok()/top_ok() given, message_sent() not yet
        self._user: str | None = None  # USER given, PASS expected
        self._login: str | None = None
        self._sasl: sasl.ServerMechanism | None = None
        self._sasl_name = ""
        self._queued: Event | None = None  # the event after sasl_keys(), handed out next
        # SCRAM-PLUS: binding type -> data of this TLS connection (the adapter sets it).
        self.channel_bindings: dict[str, bytes] = {}
        self._maildrop: tuple[MessageInfo, ...] = ()
        self._deleted: set[int] = set()

    # -- public API -------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def in_sasl(self) -> bool:
        """An AUTH exchange is under way (the next lines are SASL responses)."""
        return self._sasl is not None

    @property
    def login(self) -> str | None:
        """The logged-in user, as the adapter named it in login_succeeded()."""
        return self._login

    @property
    def maildrop(self) -> tuple[MessageInfo, ...]:
        return self._maildrop

    @property
    def deleted(self) -> tuple[int, ...]:
        """0-based indices marked by DELE and not undone by RSET."""
        return tuple(sorted(self._deleted))

    def is_deleted(self, index: int) -> bool:
        return index in self._deleted

    def greeting(self) -> bytes:
        # RFC 1939 §4; §7: the APOP timestamp is the last thing in the greeting. Not translated:
        # it goes out before any LANG could choose a language (RFC 6856 §3).
        text = f"{self.facts.implementation} ready"
        if self.facts.apop_timestamp:
            text += " " + self.facts.apop_timestamp
        return R.format_reply(R.ok(text), self.language)

    def receive_data(self, data: bytes) -> None:
        if self.state is State.CLOSED:
            return
        self._lines.feed(data)

    def next_event(self) -> Event | object:
        """The next event, NEED_DATA, or PAUSED while the last event is unanswered."""
        if self._pending is not None:
            return PAUSED
        if self._queued is not None:
            event, self._queued = self._queued, None
            return self._hold(event)
        if self.state is State.CLOSED:
            return NEED_DATA
        line = self._lines.next_line()
        if line is None:
            return NEED_DATA
        if not isinstance(line, Line):  # LINE_TOO_LONG: its bytes are already dropped
            assert line is LINE_TOO_LONG
            self._sasl = None  # an over-long SASL response ends the exchange
            return self._core("?", R.ERR_LINE_TOO_LONG)
        self._last_line = (line.content, self._sasl is not None)
        if self._sasl is not None:
            return self._sasl_response(line.content)
        return self._command(line.content)

    def take_line(self) -> tuple[bytes, bool] | None:
        """The client line the last next_event() read, once, for the debug trace;
        True with it for a SASL response, which carries credentials."""
        line, self._last_line = self._last_line, None
        return line

    def send(self, reply: Pop3Reply) -> bytes:
        """Answer the pending event (or send an unsolicited reply); returns the bytes to write."""
        event = self._pending
        if reply.ok and isinstance(event, LOGIN_EVENTS):
            raise LocalProtocolError("answer a successful login with login_succeeded()")
        if isinstance(event, (Retrieve, Top)) and (reply.ok or self._streaming):
            raise LocalProtocolError("answer RETR/TOP with retr_ok()/top_ok(), the message, then message_sent()")
        self._pending = None
        if isinstance(event, AuthLookup):
            self._sasl = None  # refused before the salt went out (sasl_keys() continues instead)
        if reply.ok and isinstance(event, StartTlsRequested):
            # RFC 2595 §4 / CVE-2011-0411: drop pipelined plaintext.
            self.discarded_after_stls += len(self._lines.take_all())
        if not reply.ok and reply.code not in R.SERVER_SIDE_CODES:
            self.bad_commands += 1
        out = R.format_reply(reply, self.language)
        if reply.closes or isinstance(event, Quit):  # RFC 1939 §6: QUIT closes even on -ERR
            self._close()
        elif self.bad_commands >= self.facts.max_bad_commands and self.state is not State.CLOSED:
            self._close()
            out += R.format_reply(R.ERR_TOO_MANY_ERRORS, self.language)
        return out

    def login_succeeded(self, user: str, maildrop: Sequence[MessageInfo]) -> bytes:
        """Answer a pending login event: the user owns `maildrop` now (locked by the adapter)."""
        if not isinstance(self._pending, LOGIN_EVENTS):
            raise LocalProtocolError("login_succeeded() without a pending login event")
        for info in maildrop:
            if info.size < 0 or not _valid_uid(info.uid):
                raise LocalProtocolError(f"invalid maildrop entry {info!r} (RFC 1939 §7 uid rules)")
        self._pending = None
        self._login = user
        self._maildrop = tuple(maildrop)
        self._deleted = set()
        self.state = State.TRANSACTION
        return R.format_reply(R.logged_in(len(self._maildrop), sum(m.size for m in self._maildrop)), self.language)

    def retr_ok(self, info: MessageInfo | None = None) -> bytes:
        """The "+OK N octets" line that starts a RETR answer; the message follows."""
        event = self._pending
        if not isinstance(event, Retrieve) or self._streaming:
            raise LocalProtocolError("retr_ok() without a pending Retrieve")
        self._streaming = True
        return R.format_reply(R.retr_ok((info or event.info).size), self.language)

    def top_ok(self, info: MessageInfo | None = None) -> bytes:
        """The "+OK" line that starts a TOP answer; the encoded message head follows."""
        if not isinstance(self._pending, Top) or self._streaming:
            raise LocalProtocolError("top_ok() without a pending Top")
        self._streaming = True
        return R.format_reply(R.OK_TOP, self.language)

    def message_sent(self) -> None:
        """The message and its "." terminator are written: the RETR/TOP is answered."""
        if not self._streaming:
            raise LocalProtocolError("message_sent() without retr_ok() or top_ok()")
        self._streaming = False
        self._pending = None

    def sasl_keys(self, keys: sasl.ScramKeys) -> None:
        """Answer a pending AuthLookup with the user's keys (scram.unknown_user_keys() for none);
        the exchange goes on with the next event (the server's challenge)."""
        if not isinstance(self._pending, AuthLookup) or self._sasl is None:
            raise LocalProtocolError("sasl_keys() without a pending AuthLookup")
        mech = self._sasl
        self._pending = None
        self._queued = self._sasl_result(lambda: mech.keys(keys))
        self._pending = None  # _sasl_result held its event; next_event() hands it out

    def tls_started(self) -> None:
        """STLS finished (RFC 2595 §4): forget input and half-done logins from before TLS."""
        self.tls_active = True
        self.language = "en"  # chosen in clear, perhaps by someone in the middle (RFC 6856 §7)
        self.discarded_after_stls += len(self._lines.take_all())
        self._user = None
        self._sasl = None

    def capabilities(self) -> list[str]:
        """The CAPA lines for the current state of the session (RFC 2449 §6)."""
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.state is State.AUTHORIZATION:
            if self._login_allowed():
                caps.append("USER")
                mechanisms = self._mechanisms()
                if mechanisms:
                    caps.append("SASL " + " ".join(mechanisms))
            if self.facts.tls_available and not self.tls_active:
                caps.append("STLS")  # RFC 2595 §4
        caps.append("LANG")  # RFC 6856 §3
        caps.append(f"IMPLEMENTATION {self.facts.implementation}")
        return caps

    # -- events and state -----------------------------------------------------

    def _hold(self, event: Event) -> Event:
        self._pending = event
        return event

    def _core(self, verb: str, reply: Pop3Reply) -> Event:
        return self._hold(CoreReply(verb, reply))

    def _close(self) -> None:
        self.state = State.CLOSED
        self._sasl = None
        self._lines.take_all()

    def _login_allowed(self) -> bool:
        return self.tls_active or self.facts.allow_plaintext_auth

    def _mechanisms(self) -> list[str]:
        names = (name.upper() for name in self.facts.sasl_mechanisms)
        return list(sasl.mechanisms_offered(names, channel_binding=bool(self.channel_bindings)))

    def _live(self) -> list[int]:
        return [i for i in range(len(self._maildrop)) if i not in self._deleted]

    def _octets(self) -> int:
        return sum(self._maildrop[i].size for i in self._live())

    # -- commands ---------------------------------------------------------------

    def _command(self, raw: bytes) -> Event:
        self.commands += 1
        if self.commands > self.facts.max_commands:
            return self._core("?", R.ERR_TOO_MANY_COMMANDS)
        if b"\x00" in raw:
            return self._core("?", R.ERR_NUL)
        raw = raw.lstrip(b" ")
        verb_raw, _, rest_raw = raw.partition(b" ")
        try:
            verb = verb_raw.decode("ascii").upper()
        except UnicodeDecodeError:
            return self._core("?", R.ERR_NON_ASCII)
        if verb in HTTP_VERBS:
            return self._core(verb, R.ERR_HTTP)
        handler = COMMANDS.get(verb)
        if handler is None:
            return self._core(verb[:16] if verb and _printable(verb) else "?", R.ERR_UNKNOWN_COMMAND)
        try:
            # RFC 1939 §7 lets a PASS argument hold anything; a UTF-8 password
            # is let through so users whose password has accents can log in.
            rest = rest_raw.decode("utf-8" if verb == "PASS" else "ascii")
        except UnicodeDecodeError:
            return self._core(verb, R.ERR_NON_ASCII)
        if verb not in ALLOWED.get(self.state, frozenset()):
            wrong = R.ERR_LOGIN_FIRST if self.state is State.AUTHORIZATION else R.ERR_ALREADY_LOGGED_IN
            return self._core(verb, wrong)
        return handler(self, rest)

    @staticmethod
    def _args(rest: str) -> list[str]:
        # RFC 1939 §3: arguments are separated by a single space; be lenient.
        return [a for a in rest.split(" ") if a]

    def cmd_capa(self, rest: str) -> Event:
        if self._args(rest):
            return self._core("CAPA", R.SYNTAX["CAPA"])
        return self._core("CAPA", R.multiline(R.OK_CAPA_HEAD, self.capabilities()))

    def cmd_lang(self, rest: str) -> Event:
        """RFC 6856 §3: no argument lists the languages; one picks the first that matches the
        range (a regional tag matches its language; "*" is the server's choice, English). The
        +OK that says so is already in the new language."""
        args = self._args(rest)
        if not args:
            # Described in English (ASCII): the client has not said it reads UTF-8 yet.
            return self._core("LANG", R.multiline(R.OK_LANG_HEAD, [f"{tag} {name}" for tag, name in LANG_NAMES.items()]))
        if len(args) > 1:
            return self._core("LANG", R.SYNTAX["LANG"])
        chosen = _language_of(args[0])
        if chosen is None:
            return self._core("LANG", R.ERR_LANG)
        self.language = chosen
        return self._core("LANG", R.lang_ok(chosen, LANGUAGES[chosen]))  # in the new language

    def cmd_noop(self, rest: str) -> Event:
        if self._args(rest):
            return self._core("NOOP", R.SYNTAX["NOOP"])
        return self._core("NOOP", R.OK_EMPTY)

    def cmd_quit(self, rest: str) -> Event:
        # Arguments are ignored: a client must always be able to leave.
        if self.state is State.AUTHORIZATION:
            return self._core("QUIT", R.OK_BYE)  # RFC 1939 §4: no UPDATE state
        deleted = tuple(sorted(self._deleted))
        return self._hold(Quit(deleted, tuple(self._maildrop[i].uid for i in deleted)))

    def cmd_stls(self, rest: str) -> Event:
        if self._args(rest):
            return self._core("STLS", R.SYNTAX["STLS"])
        if self.tls_active:
            return self._core("STLS", R.ERR_TLS_ACTIVE)
        if not self.facts.tls_available:
            return self._core("STLS", R.ERR_TLS_UNAVAILABLE)
        return self._hold(StartTlsRequested())

    def cmd_user(self, rest: str) -> Event:
        # RFC 1939 §7. Refused before the password is typed, not after.
        if not self._login_allowed():
            return self._core("USER", R.ERR_PLAINTEXT_DISABLED)
        args = self._args(rest)
        if len(args) != 1 or not _printable(args[0]):
            return self._core("USER", R.SYNTAX["USER"])
        # Always +OK: the answer must not tell whether the user exists.
        self._user = args[0]
        return self._core("USER", R.OK_USER)

    def cmd_pass(self, rest: str) -> Event:
        # RFC 1939 §7: the password is everything after "PASS ", spaces included.
        if not self._login_allowed():
            self._user = None
            return self._core("PASS", R.ERR_PLAINTEXT_DISABLED)
        user, self._user = self._user, None
        if user is None:
            return self._core("PASS", R.ERR_PASS_WITHOUT_USER)
        if not rest:
            return self._core("PASS", R.SYNTAX["PASS"])
        return self._hold(UserPass(user, rest))

    def cmd_apop(self, rest: str) -> Event:
        # RFC 1939 §7: APOP name digest, digest = MD5(timestamp + secret) in hex.
        self._user = None
        if self.facts.apop_timestamp is None:
            return self._core("APOP", R.ERR_APOP_UNAVAILABLE)
        if not self._login_allowed():
            return self._core("APOP", R.ERR_APOP_BEFORE_TLS)
        args = self._args(rest)
        if len(args) != 2 or not _printable(args[0]):
            return self._core("APOP", R.SYNTAX["APOP"])
        digest = args[1].lower()
        if len(digest) != 32 or any(c not in "0123456789abcdef" for c in digest):
            return self._core("APOP", R.SYNTAX["APOP"])
        return self._hold(ApopLogin(args[0], digest))

    def cmd_auth(self, rest: str) -> Event:
        # RFC 5034 §4: AUTH mechanism [initial-response]
        self._user = None
        if not self._login_allowed():
            return self._core("AUTH", R.ERR_PLAINTEXT_DISABLED)
        args = self._args(rest)
        mechanisms = self._mechanisms()
        if not args:
            # Not in RFC 5034, but older clients (RFC 1734 era) send a bare AUTH
            # to list the mechanisms, and many servers answer it this way.
            return self._core("AUTH", R.multiline(R.OK_AUTH_LIST_HEAD, mechanisms))
        if len(args) > 2:
            return self._core("AUTH", R.SYNTAX["AUTH"])
        name = args[0].upper()
        mech = sasl.server_mechanism(name, self.channel_bindings) if name in mechanisms else None
        if mech is None:
            return self._core("AUTH", R.ERR_AUTH_MECHANISM)
        initial: bytes | None = None
        if len(args) == 2:
            try:
                decoded = sasl.decode_response(args[1].encode("ascii"))
            except sasl.SaslError:
                return self._core("AUTH", R.ERR_AUTH_BAD)
            if isinstance(decoded, sasl.Cancelled):
                return self._core("AUTH", R.ERR_AUTH_CANCELLED)
            initial = decoded  # "=" is the empty initial response
        self._sasl, self._sasl_name = mech, name
        return self._sasl_result(lambda: mech.start(initial))

    def _sasl_response(self, raw: bytes) -> Event:
        mech = self._sasl
        assert mech is not None
        try:
            decoded = sasl.decode_response(raw.strip(b" "))
        except sasl.SaslError:
            self._sasl = None
            return self._core("AUTH", R.ERR_AUTH_BAD)
        if isinstance(decoded, sasl.Cancelled):
            # RFC 5034 §4: "*" cancels and the server MUST answer -ERR.
            self._sasl = None
            return self._core("AUTH", R.ERR_AUTH_CANCELLED)
        return self._sasl_result(lambda: mech.step(decoded))

    def _sasl_result(self, step: Callable[[], sasl.SaslResult]) -> Event:
        try:
            result = step()
        except sasl.SaslError:
            self._sasl = None
            return self._core("AUTH", R.ERR_AUTH_BAD)
        if isinstance(result, sasl.Challenge):
            return self._core("AUTH", R.challenge(sasl.encode_challenge(result.data).decode("ascii")))
        if isinstance(result, sasl.NeedKeys):
            return self._hold(AuthLookup(self._sasl_name, result.username, result.authzid))
        self._sasl = None
        return self._hold(AuthCredentials(self._sasl_name, result))

    def _number(self, verb: str, arg: str, deleted: Callable[[int], Pop3Reply] = R.marked_deleted) -> int | Pop3Reply:
        """The 0-based index a message-number argument names, or the -ERR to send."""
        if not arg.isdigit():
            return R.SYNTAX[verb]
        count = len(self._maildrop)
        if len(arg) > _MAX_NUMBER_DIGITS or not 1 <= int(arg) <= count:
            return R.no_such_message(count)
        index = int(arg) - 1
        if index in self._deleted:
            return deleted(index + 1)
        return index

    def cmd_stat(self, rest: str) -> Event:
        # RFC 1939 §5: "+OK nn mm", deleted messages not counted.
        if self._args(rest):
            return self._core("STAT", R.SYNTAX["STAT"])
        return self._core("STAT", R.ok(f"{len(self._live())} {self._octets()}"))

    def cmd_list(self, rest: str) -> Event:
        return self._listing("LIST", rest, lambda i: str(self._maildrop[i].size))

    def cmd_uidl(self, rest: str) -> Event:
        # RFC 1939 §7
        return self._listing("UIDL", rest, lambda i: self._maildrop[i].uid)

    def _listing(self, verb: str, rest: str, value: Callable[[int], str]) -> Event:
        args = self._args(rest)
        if len(args) > 1:
            return self._core(verb, R.SYNTAX[verb])
        if args:
            index = self._number(verb, args[0])
            if isinstance(index, Pop3Reply):
                return self._core(verb, index)
            return self._core(verb, R.ok(f"{index + 1} {value(index)}"))
        live = self._live()
        lines = [f"{i + 1} {value(i)}" for i in live]
        head = R.list_head(len(live), self._octets()) if verb == "LIST" else R.OK_UIDL_HEAD
        return self._core(verb, R.multiline(head, lines))

    def cmd_retr(self, rest: str) -> Event:
        args = self._args(rest)
        if len(args) != 1:
            return self._core("RETR", R.SYNTAX["RETR"])
        index = self._number("RETR", args[0])
        if isinstance(index, Pop3Reply):
            return self._core("RETR", index)
        return self._hold(Retrieve(index, self._maildrop[index]))

    def cmd_top(self, rest: str) -> Event:
        # RFC 1939 §7: TOP msg n, n non-negative
        args = self._args(rest)
        if len(args) != 2 or not args[1].isdigit():
            return self._core("TOP", R.SYNTAX["TOP"])
        index = self._number("TOP", args[0])
        if isinstance(index, Pop3Reply):
            return self._core("TOP", index)
        # More lines than any message has means "the whole body".
        lines = int(args[1]) if len(args[1]) <= _MAX_NUMBER_DIGITS else 10**_MAX_NUMBER_DIGITS
        return self._hold(Top(index, self._maildrop[index], lines))

    def cmd_dele(self, rest: str) -> Event:
        # RFC 1939 §5: marked only; removed in the UPDATE state after QUIT.
        args = self._args(rest)
        if len(args) != 1:
            return self._core("DELE", R.SYNTAX["DELE"])
        index = self._number("DELE", args[0], R.already_deleted)
        if isinstance(index, Pop3Reply):
            return self._core("DELE", index)
        self._deleted.add(index)
        return self._core("DELE", R.message_deleted(index + 1))

    def cmd_rset(self, rest: str) -> Event:
        if self._args(rest):
            return self._core("RSET", R.SYNTAX["RSET"])
        self._deleted.clear()
        return self._core("RSET", R.maildrop_summary(len(self._maildrop), self._octets()))


LANG_NAMES = {"en": "English", "ja": "Japanese"}


def _language_of(asked: str) -> str | None:
    """The language of ours a LANG argument (a range, RFC 4647) asks for, or None."""
    tag = asked.strip().lower()
    if tag in ("*", "i-default"):
        return "en"
    primary = tag.split("-", 1)[0]
    return primary if primary in LANGUAGES else None


COMMANDS: dict[str, Callable[[Pop3ServerConn, str], Event]] = {
    "LANG": Pop3ServerConn.cmd_lang,
    "CAPA": Pop3ServerConn.cmd_capa,
    "NOOP": Pop3ServerConn.cmd_noop,
    "QUIT": Pop3ServerConn.cmd_quit,
    "STLS": Pop3ServerConn.cmd_stls,
    "USER": Pop3ServerConn.cmd_user,
    "PASS": Pop3ServerConn.cmd_pass,
    "APOP": Pop3ServerConn.cmd_apop,
    "AUTH": Pop3ServerConn.cmd_auth,
    "STAT": Pop3ServerConn.cmd_stat,
    "LIST": Pop3ServerConn.cmd_list,
    "UIDL": Pop3ServerConn.cmd_uidl,
    "RETR": Pop3ServerConn.cmd_retr,
    "TOP": Pop3ServerConn.cmd_top,
    "DELE": Pop3ServerConn.cmd_dele,
    "RSET": Pop3ServerConn.cmd_rset,
}
