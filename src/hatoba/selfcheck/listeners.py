"""Per listener: how it is encrypted, which logins it offers and when, and
whether a password could ever cross the network in clear text.

This mirrors what the sessions enforce (net/smtp_session.session_facts and
the POP3/IMAP facts): AUTH on 587/465 always, on 25 only with
smtp.auth_on_smtp_port; before TLS only with smtp.allow_plaintext_auth,
which also lifts "STARTTLS required" on 587; POP3 and IMAP logins before TLS
only from auth.plaintext_networks (one list for both).
"""

from __future__ import annotations

import ipaddress

from hatoba.config.schema import Config, ListenerConfig
from hatoba.config.template import format_address
from hatoba.selfcheck.findings import Finding

SMTP_MECHANISMS = "PLAIN LOGIN"  # proto/smtp/server.SessionFacts.auth_mechanisms
SERVED = frozenset({"smtp", "submission", "smtps", "pop3", "pop3s", "imap", "imaps"})


def listener_findings(config: Config) -> list[Finding]:
    findings: list[Finding] = []
    enabled = [lc for lc in config.listeners.values() if lc.enabled]
    for listener in enabled:
        if listener.name in ("smtp", "submission", "smtps"):
            findings += _smtp(config, listener)
        elif listener.name in ("pop3", "imap"):
            findings += _mailbox_cleartext(config, listener)
        elif listener.name in ("pop3s", "imaps"):
            findings.append(_ok(listener, "implicit TLS", _implicit_text(listener)))
        elif listener.name == "http":
            findings.append(_http(config, listener))
        elif listener.name == "https":
            findings.append(_ok(listener, "implicit TLS",
                                "Autoconfiguration and the MTA-STS policy are served over TLS from the first byte."))
        else:
            findings.append(Finding(
                "listeners", f"listener.{listener.name}.served", "info",
                f"{_where(listener)}: not served by this version",
                "The listener is enabled in the config, but hatoba serve skips it.",
                f"Set enabled = false in [listeners.{listener.name}] to silence this.",
            ))
    if not any(lc.name in SERVED for lc in enabled):
        findings.append(Finding(
            "listeners", "listener.none", "warning", "No mail listener is enabled",
            "hatoba serve would start without accepting any connection.",
            "Set enabled = true in the [listeners.*] tables you need (at least smtp and submission).",
        ))
    return findings


def _http(config: Config, listener: ListenerConfig) -> Finding:
    """Who may read /metrics and /healthz: loopback only is "ok", wider is worth knowing."""
    networks = config.metrics.networks
    wider = [cidr for cidr in networks if not _is_loopback(cidr)]
    if not wider:
        return Finding("listeners", "listener.http.metrics", "ok", f"{_where(listener)}: metrics for loopback only",
                       "/metrics and /healthz answer only to this machine; other clients get 403.")
    return Finding(
        "listeners", "listener.http.metrics", "info",
        f"{_where(listener)}: metrics for {', '.join(networks)}",
        f"/metrics and /healthz answer to {', '.join(wider)} over plain HTTP: the figures show how busy "
        "the server is and when it is down.",
        "Keep [metrics] networks to your monitoring hosts.",
    )


def _is_loopback(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr, strict=False).is_loopback
    except ValueError:
        return False  # a config problem, reported in its own section


def plaintext_login_networks(config: Config) -> tuple[list[str], list[str]]:
    """auth.plaintext_networks split into (reaching other machines, loopback only)."""
    exposed, local = [], []
    for cidr in config.auth.plaintext_networks:
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue  # a config problem, reported in its own section
        (local if network.is_loopback else exposed).append(cidr)
    return exposed, local


def _where(listener: ListenerConfig) -> str:
    return f"{listener.name} ({format_address(listener.host, listener.port)})"


def _ok(listener: ListenerConfig, title: str, explanation: str) -> Finding:
    return Finding("listeners", f"listener.{listener.name}.encryption", "ok", f"{_where(listener)}: {title}", explanation)


def _implicit_text(listener: ListenerConfig) -> str:
    logins = {
        "smtps": f"AUTH {SMTP_MECHANISMS} is offered inside it, and sending needs AUTH",
        "pop3s": f"USER/PASS, APOP and AUTH {SMTP_MECHANISMS} work only inside it",
        "imaps": f"LOGIN and AUTHENTICATE {SMTP_MECHANISMS} work only inside it",
    }[listener.name]
    return f"TLS starts with the first byte (RFC 8314), so {logins}."


def _smtp(config: Config, listener: ListenerConfig) -> list[Finding]:
    smtp = config.smtp
    if listener.name == "smtps":
        return [_ok(listener, "implicit TLS", _implicit_text(listener))]
    if listener.name == "submission":
        if not smtp.allow_plaintext_auth:
            return [_ok(
                listener, "STARTTLS required",
                f"AUTH {SMTP_MECHANISMS} is offered only after STARTTLS, and sending needs AUTH.",
            )]
        return [Finding(
            "listeners", f"listener.{listener.name}.encryption", "critical",
            f"{_where(listener)}: STARTTLS not required, passwords can cross in clear",
            f"smtp.allow_plaintext_auth = true offers AUTH {SMTP_MECHANISMS} and accepts mail before STARTTLS, "
            "so anyone on the path can read a user's password.",
            "Remove allow_plaintext_auth from [smtp] (the default, false, requires STARTTLS on 587).",
        )]
    # Port 25: other servers deliver here and never log in.
    if not smtp.auth_on_smtp_port:
        return [_ok(
            listener, "STARTTLS offered, no AUTH",
            "Other servers deliver here and choose to encrypt (RFC 3207); no login is offered on this port.",
        )]
    if smtp.allow_plaintext_auth:
        return [Finding(
            "listeners", f"listener.{listener.name}.auth", "critical",
            f"{_where(listener)}: AUTH offered in clear text",
            f"smtp.auth_on_smtp_port and smtp.allow_plaintext_auth offer AUTH {SMTP_MECHANISMS} before STARTTLS "
            "on port 25, so a mail program's password can cross the Internet unencrypted.",
            "Remove allow_plaintext_auth and auth_on_smtp_port from [smtp]; users log in on 587 or 465.",
        )]
    return [
        _ok(listener, "STARTTLS offered", f"AUTH {SMTP_MECHANISMS} is offered only after STARTTLS."),
        Finding(
            "listeners", f"listener.{listener.name}.auth", "warning",
            f"{_where(listener)}: AUTH offered on the MX port",
            "Servers never log in on port 25, so AUTH there only gives password guessers another door.",
            "Remove auth_on_smtp_port from [smtp]; users send on 587 or 465.",
        ),
    ]


def _mailbox_cleartext(config: Config, listener: ListenerConfig) -> list[Finding]:
    """POP3 on 110 and IMAP on 143: TLS offered, logins only after it unless a network is listed."""
    pop = listener.name == "pop3"
    starttls = "STLS" if pop else "STARTTLS"
    login = "USER/PASS and AUTH" if pop else "LOGIN and AUTHENTICATE"
    exposed, local = plaintext_login_networks(config)
    findings = []
    if not exposed and not local:
        before = "no login before it" if pop else "LOGINDISABLED before it"
        findings.append(_ok(
            listener, f"{starttls} offered, {before}",
            f"{login} work only after {starttls}, so passwords never cross in clear text.",
        ))
    else:
        findings.append(Finding(
            "listeners", f"listener.{listener.name}.encryption", "info",
            f"{_where(listener)}: {starttls} offered, plaintext login allowed for some networks",
            f"Clients in {', '.join(exposed + local)} may use {login} before {starttls}; all others must start TLS first.",
        ))
    if exposed:
        findings.append(Finding(
            "listeners", f"listener.{listener.name}.plaintext-login", "critical",
            f"{_where(listener)}: plaintext login allowed",
            f"[auth] plaintext_networks lets clients in {', '.join(exposed)} send {login} before {starttls}, "
            "so their passwords cross the network in clear text.",
            "Empty [auth] plaintext_networks, or keep only 127.0.0.1/32 and ::1/128 "
            "(older configs spell it pop3.plaintext_auth_networks); "
            f"mail programs use {starttls} or port {'995' if pop else '993'}.",
        ))
    if pop and exposed and config.pop3.apop:
        findings.append(_apop_before_tls(listener, exposed))
    if local and not exposed:
        findings.append(Finding(
            "listeners", f"listener.{listener.name}.plaintext-login", "info",
            f"{_where(listener)}: plaintext login from this machine only",
            f"Only {', '.join(local)} may log in before {starttls}; such passwords never leave this machine.",
        ))
    return findings


def _apop_before_tls(listener: ListenerConfig, exposed: list[str]) -> Finding:
    """APOP is no safe way to log in without TLS, though it was meant to be one."""
    return Finding(
        "listeners", f"listener.{listener.name}.apop", "warning",
        f"{_where(listener)}: APOP offered before STLS",
        f"Clients in {', '.join(exposed)} may log in with APOP before STLS: its MD5 digest crosses the network "
        "unencrypted and can be cracked offline, and the server must keep each APOP secret in a readable, "
        "password-equivalent form (RFC 1939 §7).",
        "Set apop = false in [pop3] and have those mail programs use STLS or port 995.",
    )
