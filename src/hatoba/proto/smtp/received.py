"""The Received: trace header (RFC 5321 §4.4) with RFC 3848 `with` keywords."""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import format_datetime
from datetime import datetime


@dataclass(frozen=True)
class TraceInfo:
    helo: str  # what the client said in EHLO/HELO
    client_ip: str
    extended: bool  # EHLO rather than HELO
    tls_version: str | None  # e.g. "TLSv1.3"; None when the session is in clear
    tls_cipher: str | None
    tls_bits: int | None
    auth_login: str | None
    show_login: bool  # put the login in the header (off by default: privacy)
    server_hostname: str
    session_id: str
    recipients: tuple[str, ...]
    when: datetime  # timezone-aware


def with_keyword(*, extended: bool, tls: bool, authenticated: bool) -> str:
    """RFC 3848 §2: ESMTP + S (TLS) + A (AUTH); plain SMTP for HELO sessions."""
    if not extended:
        return "SMTP"
    return "ESMTP" + ("S" if tls else "") + ("A" if authenticated else "")


def _clean(text: str) -> str:
    """Peer text in a header: printable ASCII only, no parentheses, bounded."""
    out = "".join(c if 32 < ord(c) < 127 and c not in "()\\" else "_" for c in text)
    return out[:255] or "unknown"


def format_received(info: TraceInfo) -> bytes:
    ip = info.client_ip
    literal = f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"
    lines = [f"Received: from {_clean(info.helo)} ({literal})"]
    if info.tls_version:
        bits = f" ({info.tls_bits}/{info.tls_bits} bits)" if info.tls_bits else ""
        lines.append(f"\t(using {info.tls_version} with cipher {info.tls_cipher}{bits})")
    if info.auth_login and info.show_login:
        lines.append(f"\t(authenticated sender: {_clean(info.auth_login)})")
    kw = with_keyword(
        extended=info.extended, tls=info.tls_version is not None, authenticated=info.auth_login is not None
    )
    lines.append(f"\tby {info.server_hostname} (hatoba) with {kw} id {info.session_id}")
    # Name the recipient only when there is one: a list would disclose Bcc.
    if len(info.recipients) == 1:
        lines.append(f"\tfor <{info.recipients[0]}>; {format_datetime(info.when)}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{format_datetime(info.when)}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")
