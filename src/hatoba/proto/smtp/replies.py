"""Every SMTP reply hatoba sends, as constants. Tests assert against these.

RFC 5321 §4.2 (reply codes), RFC 3463 / RFC 2034 (enhanced status codes),
RFC 4954 (AUTH), RFC 3207 (STARTTLS), RFC 6531 (SMTPUTF8), RFC 3030 (BDAT).
Texts tell the user what to do next, not only what went wrong.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    code: int
    status: str  # enhanced status code "x.y.z"; "" where none is sent (greeting, EHLO)
    text: str | tuple[str, ...]
    closes: bool = False  # the server closes the connection after sending it

    @property
    def lines(self) -> tuple[str, ...]:
        return (self.text,) if isinstance(self.text, str) else self.text

    def with_text(self, text: str) -> Reply:
        return Reply(self.code, self.status, text, self.closes)

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_permanent_error(self) -> bool:
        return self.code >= 500


def format_reply(reply: Reply) -> bytes:
    """RFC 5321 §4.2.1: multi-line replies use 'code-' on all lines but the last."""
    lines = reply.lines
    out = []
    prefix = f"{reply.status} " if reply.status else ""
    for i, line in enumerate(lines):
        sep = " " if i == len(lines) - 1 else "-"
        # Only the first line carries the enhanced code in EHLO-style replies
        # (status == ""); ordinary multi-line replies repeat it (RFC 2034 §4).
        out.append(f"{reply.code}{sep}{prefix}{line}\r\n")
    return "".join(out).encode("utf-8", "replace")


# 2xx
R220_READY_TLS = Reply(220, "2.0.0", "Ready to start TLS")
R221_BYE = Reply(221, "2.0.0", "Bye", closes=True)
R235_AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
R250_OK = Reply(250, "2.0.0", "OK")
R250_SENDER_OK = Reply(250, "2.1.0", "Sender OK")
R250_RCPT_OK = Reply(250, "2.1.5", "Recipient OK")
R250_RESET = Reply(250, "2.0.0", "Reset state")
R250_QUEUED = Reply(250, "2.0.0", "OK: queued")
R252_VRFY = Reply(252, "2.5.0", "Cannot VRFY user, but will accept the message and attempt delivery")
R214_HELP = Reply(214, "2.0.0", "See RFC 5321 and https://hatoba.invalid/docs; commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT STARTTLS AUTH")
R334_EMPTY = Reply(334, "", "")
R354_START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")

# 4xx: temporary
R421_TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors in this session; closing", closes=True)
R421_TOO_MANY_COMMANDS = Reply(421, "4.7.0", "Too many commands in this session; closing", closes=True)
R421_TIMEOUT = Reply(421, "4.4.2", "Timeout waiting for input; closing", closes=True)
R421_LOGIN_DEADLINE = Reply(421, "4.4.2", "Too slow: no login or mail transaction in time; closing", closes=True)
R421_TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections; try again later", closes=True)
R421_TOO_MANY_FROM_IP = Reply(421, "4.7.0", "Too many connections from your address; try again later", closes=True)
R421_SHUTTING_DOWN = Reply(421, "4.3.2", "Server shutting down; try again later", closes=True)
R421_HTTP = Reply(421, "4.7.0", "This is an SMTP server, not a web server; closing", closes=True)
R451_LOCAL_ERROR = Reply(451, "4.3.0", "Local error; try again later")
R452_TOO_MANY_RCPTS = Reply(452, "4.5.3", "Too many recipients; send the rest in another message")
# RFC 5321 §4.5.3.1.10, RFC 3463 4.3.1: the queue's disk is (nearly) full (Postfix's words).
R452_NO_STORAGE = Reply(452, "4.3.1", "Insufficient system storage")
R454_TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available; try again later")
# RFC 4954 §6: a temporary refusal of a login (the throttle, the connection limit).
R454_AUTH_TEMPORARY = Reply(454, "4.7.0", "Temporary authentication failure; try again later")

# 5xx: permanent
R500_SYNTAX = Reply(500, "5.5.2", "Syntax error: command not recognized")
R500_LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")
R500_NUL = Reply(500, "5.5.2", "Syntax error: NUL byte in command")
R501_SYNTAX_ARGS = Reply(501, "5.5.4", "Syntax error in parameters or arguments")
R501_HELO_SYNTAX = Reply(501, "5.5.4", "Syntax: EHLO hostname")
R501_AUTH_CANCELLED = Reply(501, "5.7.0", "Authentication cancelled")
R501_AUTH_BAD = Reply(501, "5.5.2", "Cannot decode the authentication response (base64 expected)")
R502_NOT_IMPLEMENTED = Reply(502, "5.5.1", "Command not implemented")
R503_HELO_FIRST = Reply(503, "5.5.1", "Send EHLO (or HELO) first")
R503_NESTED_MAIL = Reply(503, "5.5.1", "Sender already given; send RSET to start over")
R503_MAIL_FIRST = Reply(503, "5.5.1", "Send MAIL FROM first")
R503_RCPT_FIRST = Reply(503, "5.5.1", "No valid recipients; send RCPT TO first")
R503_ALREADY_AUTH = Reply(503, "5.5.1", "Already authenticated")
R503_AUTH_IN_TRANSACTION = Reply(503, "5.5.1", "AUTH is not allowed during a mail transaction; send RSET first")
R503_AUTH_NOT_AVAILABLE = Reply(
    503, "5.5.1", "AUTH is not available on this port; users send mail on port 587 (STARTTLS) or 465 (TLS)"
)
R503_TLS_ACTIVE = Reply(503, "5.5.1", "TLS already active")
R503_BDAT_MIXED = Reply(503, "5.5.1", "Cannot mix DATA and BDAT in one transaction")
R504_AUTH_MECH = Reply(504, "5.5.4", "Unrecognized authentication mechanism; use PLAIN or LOGIN")
R530_STARTTLS_FIRST = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
R530_AUTH_REQUIRED = Reply(
    530, "5.7.0", "Authentication required: log in with your email address and password (AUTH) before sending"
)
R535_AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
R538_ENCRYPTION_REQUIRED = Reply(
    538, "5.7.11", "Encryption required for authentication: issue STARTTLS first, or use port 465"
)
R550_BARE_LF = Reply(550, "5.5.2", "Error: bare <LF> received; lines must end with <CR><LF>", closes=True)
# A message refused by the incoming-mail checks; the text says which and why.
R550_POLICY = Reply(550, "5.7.1", "Rejected by policy")
R451_POLICY = Reply(451, "4.7.1", "Try again later")
R554_EARLY_TALKER = Reply(554, "5.5.1", "Error: you talked before the greeting (RFC 5321 section 4.3.1)", closes=True)
# Per-address rate limits (limits.client_connection_rate, client_message_rate).
R421_RATE = Reply(421, "4.7.0", "Too many connections from your address; try again later", closes=True)
R450_RATE = Reply(450, "4.7.1", "Too many messages from your address; try again later")
R550_NO_SUCH_USER = Reply(550, "5.1.1", "Recipient address rejected: no such user here")
R550_ROUTING_CHARS = Reply(
    550, "5.7.1", "Relay access denied: '%', '!' and '@' in a local part (percent hack, bang path) are not accepted"
)
R554_RELAY_DENIED = Reply(
    554, "5.7.1", "Relay access denied: this server accepts mail only for its own domains; to send, log in on port 587 or 465"
)
R550_ALIAS_LOOP = Reply(550, "5.4.6", "Recipient address rejected: alias loop detected; tell the postmaster")
R552_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
R553_SENDER_NOT_OWNED = Reply(
    553, "5.7.1", "Sender address rejected: not owned by the logged-in user; send as your own address or an alias of it"
)
R553_NON_ASCII = Reply(553, "5.6.7", "Non-ASCII address requires the SMTPUTF8 parameter")
R553_BAD_ADDRESS = Reply(553, "5.1.3", "Bad address syntax")
R555_UNSUPPORTED_PARAM = Reply(555, "5.5.4", "Unsupported MAIL FROM or RCPT TO parameter")
R554_NO_VALID_RCPTS = Reply(554, "5.5.1", "No valid recipients")


def local_error(session_id: str) -> Reply:
    """Server-error reply: carries the session id so the operator can find the log line."""
    return Reply(451, "4.3.0", f"Local error; try again later (id={session_id})")
