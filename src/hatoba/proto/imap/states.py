"""IMAP session states, the commands legal in each, and the capability list.

RFC 9051 §3 and RFC 3501 §3: not authenticated -> authenticated -> selected
-> logout. One table says which command may run in which state (as mox's
commandsState* tables); the session looks a command up here before it
runs anything.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hatoba.proto import sasl


class State(enum.Enum):
    NOT_AUTHENTICATED = "not-authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


ANY = frozenset({"CAPABILITY", "NOOP", "LOGOUT", "ID", "LANGUAGE"})
NOT_AUTHENTICATED = ANY | {"STARTTLS", "AUTHENTICATE", "LOGIN"}
AUTHENTICATED = ANY | {
    "ENABLE", "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE",
    "LIST", "LSUB", "NAMESPACE", "STATUS", "APPEND", "IDLE", "GETQUOTA", "GETQUOTAROOT", "SETQUOTA",
    "COMPRESS", "NOTIFY",
}
SELECTED = AUTHENTICATED | {
    "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "UID",
    "SORT", "THREAD", "CANCELUPDATE",
}
ALLOWED: dict[State, frozenset[str]] = {
    State.NOT_AUTHENTICATED: NOT_AUTHENTICATED,
    State.AUTHENTICATED: AUTHENTICATED,
    State.SELECTED: SELECTED,
    State.LOGOUT: frozenset(),
}
UID_COMMANDS = frozenset({"FETCH", "STORE", "COPY", "MOVE", "SEARCH", "EXPUNGE", "SORT", "THREAD"})
KNOWN = frozenset().union(*ALLOWED.values())


@dataclass(frozen=True, slots=True)
class ImapFacts:
    hostname: str
    tls_available: bool  # STARTTLS can be offered (port 143 with a certificate)
    tls_active: bool
    allow_plaintext_auth: bool = False
    sasl_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS")
    channel_binding: bool = False  # TLS channel-binding data is at hand: -PLUS mechanisms work
    max_line: int = 65536
    max_literal: int = 64 * 1024 * 1024  # also APPENDLIMIT
    max_bad_commands: int = 20

    @property
    def offered_mechanisms(self) -> tuple[str, ...]:
        return sasl.mechanisms_offered(self.sasl_mechanisms, channel_binding=self.channel_binding)

    @property
    def may_login(self) -> bool:
        """Passwords only over TLS (or from a network the operator trusts)."""
        return self.tls_active or self.allow_plaintext_auth


# Extensions offered once logged in (RFC 9051 §7.2.2 says clients ask again after login).
EXTENSIONS = (
    "IMAP4rev2", "LITERAL+", "ENABLE", "IDLE", "UIDPLUS", "MOVE", "CONDSTORE", "QRESYNC",
    "SPECIAL-USE", "ESEARCH", "SEARCHRES", "SORT", "THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT",
    "SORT=DISPLAY", "ESORT", "CONTEXT=SEARCH", "CONTEXT=SORT",
    "QUOTA", "QUOTA=RES-STORAGE", "CHILDREN", "UTF8=ACCEPT", "LIST-EXTENDED", "LIST-STATUS",
    "NAMESPACE", "ID", "UNSELECT", "BINARY", "STATUS=SIZE", "SASL-IR", "LIST-MYRIGHTS",
    "MULTIAPPEND", "CATENATE", "NOTIFY", "LANGUAGE",
)


def capabilities(facts: ImapFacts, state: State, *, compress_available: bool = False) -> str:
    """The CAPABILITY list for this connection now (RFC 9051 §6.1.1, RFC 2595 LOGINDISABLED)."""
    caps = ["IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE", "LANGUAGE"]
    if state is State.NOT_AUTHENTICATED:
        if facts.tls_available and not facts.tls_active:
            caps.append("STARTTLS")
        if facts.may_login:
            caps += [f"AUTH={m}" for m in facts.offered_mechanisms]
        else:
            caps.append("LOGINDISABLED")
        return " ".join(caps)
    caps = ["IMAP4rev1", *EXTENSIONS, f"APPENDLIMIT={facts.max_literal}"]
    if compress_available:
        caps.append("COMPRESS=DEFLATE")
    return " ".join(caps)
