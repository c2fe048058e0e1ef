"""Every POP3 reply hatoba sends, as constants and small builders. Tests assert against these.

RFC 1939 (POP3), RFC 2449 §8 (response codes, CAPA), RFC 3206 (SYS/TEMP,
SYS/PERM, AUTH), RFC 2595 (STLS), RFC 5034 (AUTH).
Texts tell the user what to do next, not only what went wrong. Clients read
only "+OK"/"-ERR" and the response code; the text is for people.

Rules:
- A reply is one status line, optionally followed by lines and the "."
  terminator (multi-line, RFC 1939 §3), or a SASL continuation "+ data".
- format_reply() never lets CR, LF or NUL from a text onto the wire, so a
  text built from client or store data cannot inject a reply line.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from hatoba.i18n import T, say

# RFC 2449 §8.1 and RFC 3206: the response codes hatoba uses.
CODE_AUTH: Final = "AUTH"
CODE_SYS_TEMP: Final = "SYS/TEMP"
CODE_SYS_PERM: Final = "SYS/PERM"
CODE_IN_USE: Final = "IN-USE"
CODE_LOGIN_DELAY: Final = "LOGIN-DELAY"

# -ERR replies with these codes blame the server, not the client: they do not
# count against the client's bad-command budget.
SERVER_SIDE_CODES: Final = frozenset({CODE_SYS_TEMP, CODE_SYS_PERM, CODE_IN_USE, CODE_LOGIN_DELAY})


@dataclass(frozen=True)
class Pop3Reply:
    ok: bool
    text: str
    code: str | None = None  # RFC 2449 §8 response code, sent as "[CODE]"
    lines: tuple[str, ...] | None = None  # set: a multi-line reply (may be empty)
    closes: bool = False  # the server closes the connection after sending it
    continuation: bool = False  # a SASL challenge "+ base64" (RFC 5034 §4)


def ok(text: str = "") -> Pop3Reply:
    return Pop3Reply(True, text)


def err(text: str, code: str | None = None) -> Pop3Reply:
    return Pop3Reply(False, text, code)


def multiline(text: str, lines: tuple[str, ...] | list[str]) -> Pop3Reply:
    """A "+OK" reply followed by `lines` and the "." terminator (RFC 1939 §3)."""
    return Pop3Reply(True, text, lines=tuple(lines))


def challenge(encoded: str) -> Pop3Reply:
    """A SASL server challenge, already base64 (RFC 5034 §4: "+" SP base64)."""
    return Pop3Reply(True, encoded, continuation=True)


def _clean(text: str) -> str:
    # A text may carry a user name or a store message: never let it end the line.
    return text.replace("\r", " ").replace("\n", " ").replace("\x00", " ")


def format_reply(reply: Pop3Reply, language: str = "en") -> bytes:
    """The wire bytes of a reply, CRLF-terminated; its text in `language` (chosen with LANG,
    RFC 6856 §3) when it has a translation (hatoba/i18n.py)."""
    text = _clean(say(reply.text, language))
    if reply.continuation:
        return f"+ {text}\r\n".encode("utf-8", "replace")
    head = "+OK" if reply.ok else "-ERR"
    if reply.code:
        head += f" [{_clean(reply.code).replace(']', '')}]"
    if text:
        head += " " + text
    out = [head]
    if reply.lines is not None:
        for line in reply.lines:
            line = _clean(say(line, language))
            # RFC 1939 §3: a line starting with "." is byte-stuffed.
            out.append("." + line if line.startswith(".") else line)
        out.append(".")
    return ("\r\n".join(out) + "\r\n").encode("utf-8", "replace")


# -- +OK --------------------------------------------------------------------

OK_EMPTY = ok()
OK_USER = ok(T("Now send your password with PASS"))
OK_STLS = ok(T("Begin TLS negotiation now"))
OK_STLS_BEGIN = ok(T("Begin TLS negotiation"))  # the session's answer to StartTlsRequested
OK_BYE = Pop3Reply(True, T("Bye"), closes=True)
OK_CAPA_HEAD = T("Capability list follows")
OK_LANG_HEAD = T("Language listing follows")
ERR_LANG = err(T("This server speaks English (en) and Japanese (ja) only"))
OK_UIDL_HEAD = T("Unique-ID listing follows")
OK_AUTH_LIST_HEAD = T("SASL mechanisms follow")
OK_TOP = ok(T("Top of message follows"))


def lang_ok(tag: str, name: str) -> Pop3Reply:
    """RFC 6856 §3: "+OK" then the tag, in the language just chosen."""
    return ok(T("%(tag)s Replies are now in %(name)s", tag=tag, name=name))


def logged_in(count: int, octets: int) -> Pop3Reply:
    return ok(T("Logged in; %(count)s messages (%(octets)s octets)", count=count, octets=octets))


def list_head(count: int, octets: int) -> str:
    """The head of a LIST listing (RFC 1939 §5 example: "+OK 2 messages (320 octets)")."""
    return T("%(count)s messages (%(octets)s octets)", count=count, octets=octets)


def maildrop_summary(count: int, octets: int) -> Pop3Reply:
    """RSET's answer (RFC 1939 §5 example: "+OK maildrop has 2 messages (320 octets)")."""
    return ok(T("maildrop has %(count)s messages (%(octets)s octets)", count=count, octets=octets))


def retr_ok(octets: int) -> Pop3Reply:
    return ok(T("%(octets)s octets", octets=octets))


def message_deleted(number: int) -> Pop3Reply:
    return ok(T("message %(number)s deleted", number=number))


def quit_ok(deleted: int) -> Pop3Reply:
    """The adapter's answer to Quit once the deleted messages are gone (RFC 1939 §6)."""
    return Pop3Reply(True, T("Bye; %(count)s messages deleted", count=deleted), closes=True)


def update_done(hostname: str, deleted: int) -> Pop3Reply:
    """The session's answer to Quit in the TRANSACTION state: the UPDATE state is over (RFC 1939 §6)."""
    return ok(T("%(hostname)s closing; %(count)s messages deleted", hostname=hostname, count=deleted))


# -- -ERR: the client's fault ----------------------------------------------

ERR_UNKNOWN_COMMAND = err(T("Unknown command; send CAPA to see what this server supports"))
ERR_LINE_TOO_LONG = err(T("line too long"))
ERR_NUL = err(T("NUL byte in command"))
ERR_NON_ASCII = err(T("Commands must be plain ASCII (only a PASS password may be UTF-8)"))
ERR_LOGIN_FIRST = err(T("Not logged in: log in first (send CAPA to see how)"))
ERR_ALREADY_LOGGED_IN = err(T("Already logged in"))
ERR_PASS_WITHOUT_USER = err(T("Send USER with your user name first, then PASS"))
ERR_PLAINTEXT_DISABLED = err(
    T("Plaintext authentication is disabled here: use STLS first, or connect to port 995 (POP3S)"), CODE_AUTH
)
ERR_APOP_BEFORE_TLS = err(
    T("No password of any kind before TLS: use STLS first, or connect to port 995 (POP3S)"), CODE_AUTH
)
ERR_APOP_UNAVAILABLE = err(T("APOP is not available here; log in with USER and PASS, or AUTH"))
ERR_TLS_ACTIVE = err(T("TLS is already active"))
ERR_TLS_UNAVAILABLE = err(T("STLS is not available here; connect to port 995 (POP3S) if it is enabled"))
ERR_AUTH_MECHANISM = err(T("Unknown SASL mechanism; send CAPA and use one from its SASL line"))
ERR_AUTH_CANCELLED = err(T("Authentication cancelled"))
ERR_AUTH_BAD = err(T("Cannot decode the authentication response (base64 expected)"))
ERR_TOO_MANY_ERRORS = Pop3Reply(False, T("Too many errors; closing"), CODE_SYS_PERM, closes=True)
ERR_TOO_MANY_COMMANDS = Pop3Reply(
    False, T("Too many commands in this session; closing"), CODE_SYS_PERM, closes=True
)
ERR_HTTP = Pop3Reply(False, T("This is a POP3 server, not a web server; closing"), closes=True)

# Sent by the adapter after the directory, the lock or the store said no.
ERR_LOGIN_FAILED = err(T("Authentication failed: wrong user name or password"), CODE_AUTH)
ERR_IN_USE = err(T("Mailbox is in use by another session; close it and try again"), CODE_IN_USE)
ERR_QUIT_FAILED = Pop3Reply(
    False, T("Some messages could not be deleted; they are still there, try again later"), CODE_SYS_TEMP, closes=True
)
ERR_MESSAGE_UNAVAILABLE = err(T("Message cannot be read right now; try again later"), CODE_SYS_TEMP)
ERR_MAILDROP_UNAVAILABLE = err(T("Cannot open your maildrop now; try again later"), CODE_SYS_TEMP)
ERR_MESSAGE_GONE = err(T("That message was deleted by another session"), CODE_SYS_PERM)

# Sent by the adapter on its own: the client failed too often, or was silent too long.
ERR_TOO_MANY_FAILED_LOGINS = err(T("Too many failed logins; closing"))
ERR_LOGIN_TIMEOUT = err(T("Too slow: no login in time"))
ERR_AUTOLOGOUT = err(T("Autologout; idle for too long"))


def local_error(session_id: str) -> Pop3Reply:
    """Server-error reply: carries the session id so the operator can find the log line."""
    return err(T("Local error; try again later (id=%(id)s)", id=session_id), CODE_SYS_TEMP)


def no_such_message(count: int) -> Pop3Reply:
    """RFC 1939 §5 example: "-ERR no such message, only 2 messages in maildrop"."""
    return err(T("no such message, only %(count)s messages in maildrop", count=count))


def already_deleted(number: int) -> Pop3Reply:
    """DELE of a deleted message (RFC 1939 §5 example)."""
    return err(T("message %(number)s already deleted", number=number))


def marked_deleted(number: int) -> Pop3Reply:
    """Any other command naming a deleted message (RFC 1939 §5: may not refer to it)."""
    return err(T("message %(number)s is deleted; RSET undeletes it", number=number))


# Syntax errors, one per command: the text shows the right form.
USAGE: Final = MappingProxyType({
    "CAPA": "CAPA",
    "LANG": "LANG [language]",
    "QUIT": "QUIT",
    "NOOP": "NOOP",
    "STLS": "STLS",
    "USER": "USER name",
    "PASS": "PASS password",
    "APOP": "APOP name digest (32 hex digits)",
    "AUTH": "AUTH mechanism [initial-response]",
    "STAT": "STAT",
    "LIST": "LIST [message-number]",
    "UIDL": "UIDL [message-number]",
    "RETR": "RETR message-number",
    "DELE": "DELE message-number",
    "RSET": "RSET",
    "TOP": "TOP message-number lines",
})
# The usage stays as it is in every language: it is what the client must send.
SYNTAX: Final = MappingProxyType({verb: err(T("Syntax: %(usage)s", usage=usage)) for verb, usage in USAGE.items()})
