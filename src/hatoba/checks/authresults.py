"""Authentication-Results (RFC 8601): the field we add, and the forged ones we remove.

The field is written with the `authres` package's result classes (the same
package parses it in the tests), one result per line so a message with many
signatures stays under the 998-byte line limit. A field that arrives from
outside claiming our authserv-id (the server's hostname) would be believed by
mail programs that trust ours; RFC 8601 §5 says to remove it, and we do.
"""

from __future__ import annotations

from collections.abc import Sequence

import re

import authres
import authres.arc
import authres.dmarc

from hatoba.checks.dkim_verify import DkimResult
from hatoba.checks.dmarc import DmarcResult
from hatoba.checks.headers import Field
from hatoba.checks.spf import SpfResult
from hatoba.proto.imap.envelope import tokenize

_PARSER = authres.FeatureContext(authres.dmarc, authres.arc)


def format_field(
    authserv_id: str,
    *,
    spf: Sequence[SpfResult] = (),
    dkim: Sequence[DkimResult] = (),
    dkim_checked: bool = True,
    dmarc: Sequence[DmarcResult] = (),
    arc: str = "",
    client_ip: str = "",
) -> str:
    """The whole field, CRLF-terminated and folded one result per line.

    Every value that came from the message or the client (a DKIM tag, a HELO
    name) is written only when it is a plain token: anything else could close
    a quoted string, start a new line, or smuggle in a result of its own."""
    results: list[object] = []
    for s in spf:
        domain = _token(s.domain)
        identity = {"smtp_mailfrom": domain} if s.identity == "mailfrom" else {"smtp_helo": domain}
        results.append(authres.SPFAuthenticationResult(result=s.result, result_comment=_comment(s.comment), **identity))
    if dkim_checked:
        for d in dkim:
            signature = _token(d.signature_start)
            results.append(authres.DKIMAuthenticationResult(
                result=d.result, reason=_reason(d.reason), header_d=_token(d.domain), header_s=_token(d.selector),
                header_i=_token(d.identity), header_a=_token(d.algorithm),
                properties=[authres.core.AuthenticationResultProperty("header", "b", signature)]
                if signature else None,
            ))
        if not dkim:
            results.append(authres.DKIMAuthenticationResult(result="none", result_comment="no signature"))
    for m in dmarc:
        comment = f"p={m.policy} dis={m.disposition}" if m.record is not None else m.reason
        if m.override:
            comment += f"; {m.override}"
        results.append(authres.dmarc.DMARCAuthenticationResult(
            result=m.result, result_comment=_comment(comment), header_from=_token(m.from_domain),
        ))
    if arc:
        results.append(authres.arc.ARCAuthenticationResult(result=arc, smtp_remote_ip=_token(client_ip)))
    if not results:
        return f"Authentication-Results: {authserv_id}; none\r\n"
    lines = ";\r\n\t".join(str(r) for r in results)
    return f"Authentication-Results: {authserv_id};\r\n\t{lines}\r\n"


# A value as RFC 8601 writes it unquoted: a token, or an address/domain (RFC 5322 dot-atoms, "@").
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+\-./=?^_`{|}~@:]{1,255}$")


def _token(value: str) -> str | None:
    return value if value and _TOKEN.match(value) else None


def _reason(text: str) -> str | None:
    clean = "".join(c for c in text if " " <= c <= "~" and c not in '"\\')
    return " ".join(clean.split())[:160] or None


def _comment(text: str) -> str | None:
    # Parentheses and backslashes would end or escape the comment early; control
    # characters and non-ASCII have no place in the field.
    printable = "".join(c if " " <= c <= "~" else " " for c in text)
    clean = " ".join(printable.replace("(", "[").replace(")", "]").replace("\\", "/").split())
    return clean[:160] or None


def claims_our_id(field: Field, authserv_id: str) -> bool:
    """Whether an Authentication-Results field speaks for `authserv_id` (case-insensitive),
    however it spells it: comments (nested, escaped) around it, a quoted string; or
    whether the `authres` parser, which dkimpy's ARC sealing uses, reads it so."""
    if field.name != "authentication-results":
        return False
    ours = authserv_id.rstrip(".").lower()
    if _first_value(field.value).rstrip(".").lower() == ours:
        return True
    try:
        parsed = _PARSER.parse(f"Authentication-Results: {field.value}")
    except Exception:  # authres cannot read it: neither can the sealing, so it is not ours
        return False
    return str(parsed.authserv_id or "").rstrip(".").lower() == ours


def _first_value(text: str) -> str:
    """The authserv-id: the first quoted string, or the first dot-atom, after any comments
    (RFC 5322 CFWS, read by the tokenizer the IMAP envelope uses)."""
    parts: list[str] = []
    for kind, value in tokenize(text):
        if kind == "comment":
            if parts:
                break
            continue
        if kind == "qs" and not parts:
            return value
        if kind == "atom" and (not parts or parts[-1] == "."):
            parts.append(value)
        elif kind == "special" and value == "." and parts and parts[-1] != ".":
            parts.append(value)
        else:
            break
    return "".join(parts)


def forged_spans(fields: Sequence[Field], authserv_id: str) -> list[tuple[int, int]]:
    """The byte ranges of the fields that claim our authserv-id."""
    return [(f.start, f.end) for f in fields if claims_our_id(f, authserv_id)]
