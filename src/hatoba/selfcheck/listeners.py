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
from hatoba.i18n import T
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
            findings.append(_ok(listener, T("%(where)s: implicit TLS", where=_where(listener)),
                                _implicit_text(listener)))
        elif listener.name == "http":
            findings.append(_http(config, listener))
        elif listener.name == "https":
            findings.append(_ok(listener, T("%(where)s: implicit TLS", where=_where(listener)),
                                T("Autoconfiguration and the MTA-STS policy are served over TLS from the first byte.")))
        else:
            findings.append(Finding(
                "listeners", f"listener.{listener.name}.served", "info",
                T("%(where)s: not served by this version", where=_where(listener)),
                T("The listener is enabled in the config, but hatoba serve skips it."),
                T("Set enabled = false in [listeners.%(name)s] to silence this.", name=listener.name),
            ))
    if not any(lc.name in SERVED for lc in enabled):
        findings.append(Finding(
            "listeners", "listener.none", "warning", T("No mail listener is enabled"),
            T("hatoba serve would start without accepting any connection."),
            T("Set enabled = true in the [listeners.*] tables you need (at least smtp and submission)."),
        ))
    return findings


def _http(config: Config, listener: ListenerConfig) -> Finding:
    """Who may read /metrics and /healthz: loopback only is "ok", wider is worth knowing."""
    networks = config.metrics.networks
    wider = [cidr for cidr in networks if not _is_loopback(cidr)]
    if not wider:
        return Finding("listeners", "listener.http.metrics", "ok",
                       T("%(where)s: metrics for loopback only", where=_where(listener)),
                       T("/metrics and /healthz answer only to this machine; other clients get 403."))
    return Finding(
        "listeners", "listener.http.metrics", "info",
        T("%(where)s: metrics for %(networks)s", where=_where(listener), networks=", ".join(networks)),
        T("/metrics and /healthz answer to %(networks)s over plain HTTP: the figures show how busy "
          "the server is and when it is down.", networks=", ".join(wider)),
        T("Keep [metrics] networks to your monitoring hosts."),
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
    """`title` names the listener (%(where)s: ...) as every title of this section does."""
    return Finding("listeners", f"listener.{listener.name}.encryption", "ok", title, explanation)


def _implicit_text(listener: ListenerConfig) -> str:
    mechanisms = SMTP_MECHANISMS
    return {
        "smtps": T("TLS starts with the first byte (RFC 8314), so AUTH %(mechanisms)s is offered inside it, "
                   "and sending needs AUTH.", mechanisms=mechanisms),
        "pop3s": T("TLS starts with the first byte (RFC 8314), so USER/PASS, APOP and AUTH %(mechanisms)s "
                   "work only inside it.", mechanisms=mechanisms),
        "imaps": T("TLS starts with the first byte (RFC 8314), so LOGIN and AUTHENTICATE %(mechanisms)s "
                   "work only inside it.", mechanisms=mechanisms),
    }[listener.name]


def _smtp(config: Config, listener: ListenerConfig) -> list[Finding]:
    smtp = config.smtp
    if listener.name == "smtps":
        return [_ok(listener, T("%(where)s: implicit TLS", where=_where(listener)), _implicit_text(listener))]
    if listener.name == "submission":
        if not smtp.allow_plaintext_auth:
            return [_ok(
                listener, T("%(where)s: STARTTLS required", where=_where(listener)),
                T("AUTH %(mechanisms)s is offered only after STARTTLS, and sending needs AUTH.",
                  mechanisms=SMTP_MECHANISMS),
            )]
        return [Finding(
            "listeners", f"listener.{listener.name}.encryption", "critical",
            T("%(where)s: STARTTLS not required, passwords can cross in clear", where=_where(listener)),
            T("smtp.allow_plaintext_auth = true offers AUTH %(mechanisms)s and accepts mail before STARTTLS, "
              "so anyone on the path can read a user's password.", mechanisms=SMTP_MECHANISMS),
            T("Remove allow_plaintext_auth from [smtp] (the default, false, requires STARTTLS on 587)."),
        )]
    # Port 25: other servers deliver here and never log in.
    if not smtp.auth_on_smtp_port:
        return [_ok(
            listener, T("%(where)s: STARTTLS offered, no AUTH", where=_where(listener)),
            T("Other servers deliver here and choose to encrypt (RFC 3207); no login is offered on this port."),
        )]
    if smtp.allow_plaintext_auth:
        return [Finding(
            "listeners", f"listener.{listener.name}.auth", "critical",
            T("%(where)s: AUTH offered in clear text", where=_where(listener)),
            T("smtp.auth_on_smtp_port and smtp.allow_plaintext_auth offer AUTH %(mechanisms)s before STARTTLS "
              "on port 25, so a mail program's password can cross the Internet unencrypted.",
              mechanisms=SMTP_MECHANISMS),
            T("Remove allow_plaintext_auth and auth_on_smtp_port from [smtp]; users log in on 587 or 465."),
        )]
    return [
        _ok(listener, T("%(where)s: STARTTLS offered", where=_where(listener)),
            T("AUTH %(mechanisms)s is offered only after STARTTLS.", mechanisms=SMTP_MECHANISMS)),
        Finding(
            "listeners", f"listener.{listener.name}.auth", "warning",
            T("%(where)s: AUTH offered on the MX port", where=_where(listener)),
            T("Servers never log in on port 25, so AUTH there only gives password guessers another door."),
            T("Remove auth_on_smtp_port from [smtp]; users send on 587 or 465."),
        ),
    ]


def _mailbox_cleartext(config: Config, listener: ListenerConfig) -> list[Finding]:
    """POP3 on 110 and IMAP on 143: TLS offered, logins only after it unless a network is listed."""
    pop = listener.name == "pop3"
    starttls = "STLS" if pop else "STARTTLS"
    login = T("USER/PASS and AUTH") if pop else T("LOGIN and AUTHENTICATE")
    where = _where(listener)
    exposed, local = plaintext_login_networks(config)
    findings = []
    if not exposed and not local:
        findings.append(_ok(
            listener,
            T("%(where)s: STLS offered, no login before it", where=where) if pop
            else T("%(where)s: STARTTLS offered, LOGINDISABLED before it", where=where),
            T("%(login)s work only after %(starttls)s, so passwords never cross in clear text.",
              login=login, starttls=starttls),
        ))
    else:
        findings.append(Finding(
            "listeners", f"listener.{listener.name}.encryption", "info",
            T("%(where)s: %(starttls)s offered, plaintext login allowed for some networks",
              where=where, starttls=starttls),
            T("Clients in %(networks)s may use %(login)s before %(starttls)s; all others must start TLS first.",
              networks=", ".join(exposed + local), login=login, starttls=starttls),
        ))
    if exposed:
        findings.append(Finding(
            "listeners", f"listener.{listener.name}.plaintext-login", "critical",
            T("%(where)s: plaintext login allowed", where=where),
            T("[auth] plaintext_networks lets clients in %(networks)s send %(login)s before %(starttls)s, "
              "so their passwords cross the network in clear text.",
              networks=", ".join(exposed), login=login, starttls=starttls),
            T("Empty [auth] plaintext_networks, or keep only 127.0.0.1/32 and ::1/128 "
              "(older configs spell it pop3.plaintext_auth_networks); "
              "mail programs use %(starttls)s or port %(port)s.", starttls=starttls, port="995" if pop else "993"),
        ))
    if pop and exposed and config.pop3.apop:
        findings.append(_apop_before_tls(listener, exposed))
    if local and not exposed:
        findings.append(Finding(
            "listeners", f"listener.{listener.name}.plaintext-login", "info",
            T("%(where)s: plaintext login from this machine only", where=where),
            T("Only %(networks)s may log in before %(starttls)s; such passwords never leave this machine.",
              networks=", ".join(local), starttls=starttls),
        ))
    return findings


def _apop_before_tls(listener: ListenerConfig, exposed: list[str]) -> Finding:
    """APOP is no safe way to log in without TLS, though it was meant to be one."""
    return Finding(
        "listeners", f"listener.{listener.name}.apop", "warning",
        T("%(where)s: APOP offered before STLS", where=_where(listener)),
        T("Clients in %(networks)s may log in with APOP before STLS: its MD5 digest crosses the network "
          "unencrypted and can be cracked offline, and the server must keep each APOP secret in a readable, "
          "password-equivalent form (RFC 1939 §7).", networks=", ".join(exposed)),
        T("Set apop = false in [pop3] and have those mail programs use STLS or port 995."),
    )
