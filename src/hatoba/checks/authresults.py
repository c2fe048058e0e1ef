"""Authentication-Results (RFC 8601): the field we add, and the forged ones we remove.

The field is written with the `authres` package's result classes (the same
package parses it in the tests), one result per line so a message with many
signatures stays under the 998-byte line limit. A field that arrives from
outside claiming our authserv-id (the server's hostname) would be believed by
mail programs that trust ours; RFC 8601 §5 says to remove it, and we do.
"""

from __future__ import annotations

from collections.abc import Sequence

import authres
import authres.arc
import authres.dmarc

from hatoba.checks.dkim_verify import DkimResult
from hatoba.checks.dmarc import DmarcResult
from hatoba.checks.headers import Field
from hatoba.checks.spf import SpfResult


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
    """The whole field, CRLF-terminated and folded one result per line."""
    results: list[object] = []
    for s in spf:
        identity = {"smtp_mailfrom": s.domain} if s.identity == "mailfrom" else {"smtp_helo": s.domain}
        results.append(authres.SPFAuthenticationResult(result=s.result, result_comment=_comment(s.comment), **identity))
    if dkim_checked:
        for d in dkim:
            results.append(authres.DKIMAuthenticationResult(
                result=d.result, reason=d.reason or None, header_d=d.domain or None, header_s=d.selector or None,
                header_i=d.identity or None, header_a=d.algorithm or None,
                properties=[authres.core.AuthenticationResultProperty("header", "b", d.signature_start)]
                if d.signature_start else None,
            ))
        if not dkim:
            results.append(authres.DKIMAuthenticationResult(result="none", result_comment="no signature"))
    for m in dmarc:
        comment = f"p={m.policy} dis={m.disposition}" if m.record is not None else m.reason
        if m.override:
            comment += f"; {m.override}"
        results.append(authres.dmarc.DMARCAuthenticationResult(
            result=m.result, result_comment=_comment(comment), header_from=m.from_domain or None,
        ))
    if arc:
        results.append(authres.arc.ARCAuthenticationResult(result=arc, smtp_remote_ip=client_ip or None))
    if not results:
        return f"Authentication-Results: {authserv_id}; none\r\n"
    lines = ";\r\n\t".join(str(r) for r in results)
    return f"Authentication-Results: {authserv_id};\r\n\t{lines}\r\n"


def _comment(text: str) -> str | None:
    # Parentheses and backslashes would end or escape the comment early.
    clean = " ".join(text.replace("(", "[").replace(")", "]").replace("\\", "/").split())
    return clean[:160] or None


def claims_our_id(field: Field, authserv_id: str) -> bool:
    """Whether an Authentication-Results field speaks for `authserv_id` (case-insensitive)."""
    if field.name != "authentication-results":
        return False
    first = field.value.split(";", 1)[0].strip()
    # authserv-id [version]; a comment may precede it.
    while first.startswith("("):
        first = first.partition(")")[2].strip()
    token = first.split()[0] if first.split() else ""
    return token.rstrip(".").lower() == authserv_id.rstrip(".").lower()


def forged_spans(fields: Sequence[Field], authserv_id: str) -> list[tuple[int, int]]:
    """The byte ranges of the fields that claim our authserv-id."""
    return [(f.start, f.end) for f in fields if claims_our_id(f, authserv_id)]
