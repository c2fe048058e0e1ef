"""The NO texts for refusals decided outside the IMAP layer: the mail store's
(store/errors.py) and the login's (net/login.py), each led by its RFC 5530
response code.

The store and the login say why in plain words; which code goes in front is
IMAP's business, and lives here. The words stay T() texts (hatoba/i18n.py), so
the session says them in the language the client chose (LANGUAGE, RFC 5255);
the code is a value, never translated.
"""

from __future__ import annotations

from hatoba.i18n import T, refusal
from hatoba.net import login as L
from hatoba.store import errors
from hatoba.store.errors import MailboxError

# APPEND, COPY or MOVE to a mailbox that cannot be opened (RFC 9051 §6.3.12).
TRYCREATE = T("[TRYCREATE] No such mailbox; create it first")

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


def with_code(code: str, detail: str) -> str:
    """`detail` led by the response code "[code] " (RFC 9051 §7.1), or as it is when `code`
    is empty; a Text detail stays translatable, the code stays as it is."""
    return T("[%(code)s] %(detail)s", code=code, detail=detail) if code else detail


def either(names: tuple[str, ...] | list[str]) -> str:
    """"A or B or C": the names as they are, each "or" a translatable text."""
    if len(names) <= 1:
        return "".join(names)
    return T("%(first)s or %(rest)s", first=names[0], rest=either(names[1:]))


def store_refusal(exc: MailboxError) -> str:
    """The text after NO for a store refusal: "[CODE] detail" (no code for a type not listed)."""
    for kind in type(exc).__mro__:
        code = STORE_CODES.get(kind)
        if code is not None:
            return T("[%(code)s] %(detail)s", code=code, detail=refusal(exc))
    return refusal(exc)


def login_refusal(result: L.LoginResult) -> str:
    """The NO text for a login that did not succeed."""
    if result.status == L.THROTTLED:
        return T("[%(code)s] %(detail)s", code="UNAVAILABLE", detail=result.text)
    if result.status == L.BUSY:
        return T("[%(code)s] %(detail)s", code="LIMIT", detail=result.text)
    if result.status == L.REFUSED:
        code = {"no-tls": "PRIVACYREQUIRED", "authzid": "AUTHORIZATIONFAILED"}.get(result.reason, "AUTHENTICATIONFAILED")
        return T("[%(code)s] %(detail)s", code=code, detail=result.text)
    return T("[AUTHENTICATIONFAILED] Wrong login or password")
