"""The NO texts for refusals decided outside the IMAP layer: the mail store's
(store/errors.py) and the login's (net/login.py), each led by its RFC 5530
response code.

The store and the login say why in plain words; which code goes in front is
IMAP's business, and lives here.
"""

from __future__ import annotations

from hatoba.net import login as L
from hatoba.store import errors
from hatoba.store.errors import MailboxError

# APPEND, COPY or MOVE to a mailbox that cannot be opened (RFC 9051 §6.3.12).
TRYCREATE = "[TRYCREATE] No such mailbox; create it first"

STORE_CODES: dict[type[MailboxError], str] = {
    errors.NoSuchMailbox: "NONEXISTENT",
    errors.MailboxExists: "ALREADYEXISTS",
    errors.HasChildren: "HASCHILDREN",
    errors.InvalidName: "CANNOT",
    errors.InvalidFlag: "CANNOT",
    errors.ImpossibleChange: "CANNOT",
    errors.MailboxReset: "CANNOT",
    errors.TooManyKeywords: "LIMIT",
    errors.ReadOnly: "READ-ONLY",
    errors.Expunged: "EXPUNGEISSUED",
    errors.OverQuota: "OVERQUOTA",
    errors.DiskFull: "OVERQUOTA",  # a full disk or file-system quota: Dovecot's code for both
}


def store_refusal(exc: MailboxError) -> str:
    """The text after NO for a store refusal: "[CODE] detail" (no code for a type not listed)."""
    for kind in type(exc).__mro__:
        code = STORE_CODES.get(kind)
        if code is not None:
            return f"[{code}] {exc}"
    return str(exc)


def login_refusal(result: L.LoginResult) -> str:
    """The NO text for a login that did not succeed."""
    if result.status == L.THROTTLED:
        return f"[UNAVAILABLE] {result.text}"
    if result.status == L.BUSY:
        return f"[LIMIT] {result.text}"
    if result.status == L.REFUSED:
        code = {"no-tls": "PRIVACYREQUIRED", "authzid": "AUTHORIZATIONFAILED"}.get(result.reason, "AUTHENTICATIONFAILED")
        return f"[{code}] {result.text}"
    return "[AUTHENTICATIONFAILED] Wrong login or password"
