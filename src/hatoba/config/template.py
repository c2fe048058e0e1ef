"""The commented hatoba.toml that `hatoba init` writes.

Rules:
- What it writes loads without change and equals the defaults except for
  the names and ports it was given: defaults live in schema.py, and the
  commented-out lines here show them, read from the schema.
- Comments are for the operator: what each part is for and what is refused.
"""

from __future__ import annotations

import dataclasses
import json

from hatoba.config.schema import (
    STANDARD_PORTS,
    AuthConfig,
    DeliveryConfig,
    LimitsConfig,
    MetricsConfig,
    MtaStsConfig,
    Pop3Config,
    ServerConfig,
    SmtpConfig,
)

_LISTENER_NOTES = {
    "smtp": "Mail from other servers (the MX). STARTTLS offered; no AUTH here.",
    "submission": "Your users' mail programs. STARTTLS, then AUTH, before sending.",
    "smtps": "Like submission, with TLS from the first byte (RFC 8314).",
    "pop3": "POP3 (STLS before login).",
    "pop3s": "POP3 with TLS from the first byte.",
    "imap": "IMAP (STARTTLS before login).",
    "imaps": "IMAP with TLS from the first byte.",
    "http": "Plain HTTP: redirects to https; /metrics and /healthz for [metrics] networks (loopback).",
    "https": "HTTPS: mail client autoconfiguration and the MTA-STS policy.",
}
# Served by this version, and of those, on unless the operator turns them on.
_AVAILABLE = frozenset({"smtp", "submission", "smtps", "pop3", "pop3s", "imap", "imaps", "http", "https"})
_OFF_BY_DEFAULT = frozenset({"http", "https"})

_LIMIT_NOTES = {
    "max_message_size": "bytes in one message",
    "max_command_line": "bytes in one command line",
    "max_data_line": "bytes in one line of a message",
    "max_recipients": "RCPT TO per message",
    "command_timeout": "seconds to wait for the next command",
    "data_timeout": "seconds to wait for more message data",
    "max_connections": "open connections in all",
    "max_connections_per_ip": "connections from one address before login",
    "max_user_connections_per_ip": "logged-in connections per account and address",
    "max_bad_commands": "wrong commands before the connection is closed",
    "max_commands_per_session": "commands in one connection",
    "login_cache_seconds": "seconds a correct login is remembered; 0 = off",
    "login_deadline": "seconds from connect to login (port 25: to the first MAIL FROM)",
    "tls_handshake_timeout": "seconds for a TLS handshake",
    "max_command_before_login": "bytes of one IMAP command before login, literals included",
    "max_mime_parts": "MIME parts read in one message; the rest is one opaque part",
    "max_mime_depth": "levels of MIME nesting read; deeper parts are opaque",
    "max_fetch_items": "data items one IMAP FETCH may name",
    "queue_min_free": "bytes kept free on the queue's disk, else MAIL gets 452; 0 = 1.5 x max_message_size",
    "http_request_timeout": "seconds for an HTTP request's head on the http listener",
}

_AUTH_NOTES = {
    "pair_failures": "failures of one account from one address at once",
    "pair_per_hour": "then this many more per hour",
    "address_failures": "failures from one address, all accounts together",
    "address_per_hour": "then this many more per hour",
    "account_failures": "failures of one account, all addresses together",
    "account_per_hour": "then this many more per hour",
    "max_delay": "seconds at most before a failed login is answered",
    "max_block": "seconds at most that a scope past its limit is refused",
    "known_pair_days": "days an address stays known to an account after a login",
}


def _str(value: str) -> str:
    """A TOML basic string (JSON's escapes are a subset of TOML's)."""
    return json.dumps(value, ensure_ascii=False)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return f"{value:.1f}"
    if isinstance(value, str):
        return _str(value)
    return str(value)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render_config(
    hostname: str, bind_host: str, port_offset: int, *, user: str = ServerConfig.user, data_dir: str = "data"
) -> str:
    """The text of a new hatoba.toml for `hostname`, listening on `bind_host` at standard port + offset,
    run as `user` when started as root, keeping its data in `data_dir`."""
    out = [
        "# hatoba configuration, written by `hatoba init`.",
        "# Relative paths are relative to this file's folder. `hatoba check` validates it.",
        "# Lines starting with # show the defaults; remove the # to change one.",
        "",
        "[server]",
        "# The name in the SMTP greeting and on the certificate. Point the domain's MX",
        "# record at it, and give it matching A/AAAA and reverse DNS (PTR) records.",
        f"hostname = {_str(hostname)}",
        "# Who gets mail for postmaster@ and abuse@ of every local domain when no alias",
        '# names someone: a user\'s address; "" = the first user added.',
        'postmaster = ""',
        "# Started as root, hatoba binds its ports, then runs as this user, who owns",
        '# the data folder and the keys; "" = stay as started (as root only with',
        "# allow_root = true, never advisable). Started as another user, it runs as that user.",
        f"user = {_str(user)}",
        '# group = ""  # "" = the user\'s primary group',
        f"# allow_root = {_value(ServerConfig.allow_root)}",
        "# Processes that serve connections, each on a core of its own; 0 = one per core.",
        f"# workers = {_value(ServerConfig.workers)}",
        "",
        "[paths]",
        "# Directory database, mailboxes (mail/) and queue (queue/). Keep it private.",
        f"data_dir = {_str(data_dir)}",
        "",
        '# Listeners: address = "host:port" ("[::]:25" for IPv6); enabled = false turns one off.',
    ]
    for name, port in STANDARD_PORTS.items():
        out.append(f"[listeners.{name}]")
        out.append(f"# {_LISTENER_NOTES[name]}")
        if name not in _AVAILABLE:
            out.append("# Not yet available in this version.")
        out.append(f"address = {_str(format_address(bind_host, port + port_offset))}")
        out.append(f"enabled = {_value(name in _AVAILABLE and name not in _OFF_BY_DEFAULT)}")
        out.append("")
    out += [
        "[tls]",
        "# Certificate chain (the server's certificate first, then intermediates) and its",
        "# key. hatoba init made a private CA; give clients tls/ca.crt, or replace these",
        "# two with a public certificate (e.g. from Let's Encrypt) for the hostname.",
        'cert = "tls/server.crt"',
        'key = "tls/server.key"',
        "# Extra CA certificates trusted when delivering to other servers.",
        'ca_file = "tls/ca.crt"',
        "# Other certificates, chosen by the name the client asks for (SNI):",
        '# [tls.domains."example.org"]',
        '# cert = "tls/example.org.crt"',
        '# key = "tls/example.org.key"',
        "",
        "[auth]",
        "# Logins on every port (SMTP AUTH, POP3, IMAP).",
        "# Networks whose clients may log in on POP3 110 and IMAP 143 before STLS or",
        '# STARTTLS (never on the Internet), e.g. ["127.0.0.1/32"]. Empty: a password',
        "# is only accepted over TLS.",
        "# plaintext_networks = []",
        "# Failed logins are counted per account and address, per address (many",
        "# accounts tried from one) and per account (tried from many addresses). Past",
        "# its limit only that scope is refused, for seconds to a few minutes; an",
        "# address that logged in to an account before is not refused for the",
        "# failures of others.",
    ]
    auth = AuthConfig()
    for f in dataclasses.fields(auth):
        if f.name != "plaintext_networks":
            note = _AUTH_NOTES.get(f.name)
            out.append(f"# {f.name} = {_value(getattr(auth, f.name))}" + (f"  # {note}" if note else ""))
    out += [
        "",
        "[smtp]",
        "# Networks whose clients may send mail anywhere without logging in (Postfix's",
        "# mynetworks), e.g. [\"192.168.1.0/24\", \"2001:db8::/48\"]. Empty: every client",
        "# must log in to send mail off this server. 0.0.0.0/0, ::/0 and any network",
        "# wider than /8 (IPv4) or /32 (IPv6) are refused: they make an open relay.",
        "trusted_networks = []",
    ]
    smtp = SmtpConfig()
    out += [
        f"# auth_on_smtp_port = {_value(smtp.auth_on_smtp_port)}  # AUTH on port 25 too (servers never log in)",
        f"# restrict_sender_to_login = {_value(smtp.restrict_sender_to_login)}  # MAIL FROM must be the login or its alias",
        f"# received_shows_login = {_value(smtp.received_shows_login)}  # put the login in the Received header",
        f"# bare_newline = {_value(smtp.bare_newline)}  # or \"reject\": bare CR/LF in DATA (SMTP smuggling)",
        f"# allow_plaintext_auth = {_value(smtp.allow_plaintext_auth)}  # AUTH without TLS: never on the Internet",
        f"# pop_before_smtp_minutes = {_value(smtp.pop_before_smtp_minutes)}  # legacy POP-before-SMTP relaying; 0 = off",
        "",
        "[pop3]",
        "# (Logins before STLS: [auth] plaintext_networks.)",
        f"# apop = {_value(Pop3Config().apop)}  # APOP for users given a secret with `hatoba user apop`",
        f"# max_auth_failures = {_value(Pop3Config().max_auth_failures)}  # failed logins before the connection closes",
        "",
        "[imap]",
        "# Storage per user in MiB, all folders together; 0 = no limit. Full mailboxes",
        "# refuse APPEND and keep new mail in the queue until there is room.",
        "# quota_mb = 0",
        "",
        "[limits]",
    ]
    limits = LimitsConfig()
    for f in dataclasses.fields(limits):
        note = _LIMIT_NOTES.get(f.name)
        comment = f"  # {note}" if note else ""
        out.append(f"# {f.name} = {_value(getattr(limits, f.name))}{comment}")
    delivery = DeliveryConfig()
    out += [
        "",
        "[delivery]",
        '# Send all outgoing mail through this server ("[host]:port"); empty: look up MX.',
        f"relayhost = {_str(delivery.relayhost)}",
        "# Outgoing TLS: may (STARTTLS when offered), encrypt (always), verify (and check",
        "# the certificate).",
        f"tls = {_str(delivery.tls)}",
        f"# retry_min = {_value(delivery.retry_min)}  # seconds before the first retry",
        f"# retry_max = {_value(delivery.retry_max)}  # longest wait between retries",
        f"# max_queue_lifetime = {_value(delivery.max_queue_lifetime)}  # then the mail bounces",
        f"# delay_warning_hours = {_value(delivery.delay_warning_hours)}  # tell the sender after this long; 0 = never",
        f"# destination_concurrency = {_value(delivery.destination_concurrency)}  # connections per destination",
        "# Port 25 blocked by your provider? Log in to its smarthost (only ever over TLS):",
        '# relayhost = "[smtp.provider.example]:587"',
        '# relayhost_username = "me@provider.example"',
        '# relayhost_password_file = "relay-password"  # one line, chmod 600',
        "",
        "[delivery.routes]",
        "# Next hop for one domain, instead of its MX:",
        '# "example.org" = "[10.0.0.5]:25"',
        "",
        "[delivery.tls_policies]",
        "# Stricter TLS for some destinations (\".example.org\" covers its subdomains):",
        '# "bank.example" = "verify"',
        "",
        "[dkim]",
        "# Sign mail of logged-in users for domains with a key (hatoba dkim keygen DOMAIN).",
        "sign = true",
        "",
        "[metrics]",
        "# Who may read /metrics (Prometheus) and /healthz on the http listener (turn",
        "# it on above). Others get 403. The figures tell how busy the server is.",
        f"# networks = [{', '.join(_str(n) for n in MetricsConfig().networks)}]",
        "",
        "[mta_sts]",
        "# Our MTA-STS policy (RFC 8461), served on the https listener for mta-sts.DOMAIN:",
        '# "testing" (senders report TLS failures), "enforce" once the reports are clean',
        '# and the certificate is publicly trusted, or "none" to withdraw it.',
        f'mode = "{MtaStsConfig().mode}"',
        f"# max_age = {MtaStsConfig().max_age}  # seconds senders keep it",
        "",
        "[dns]",
        '# The DNS server for every lookup (MX, SPF, DKIM, DMARC, TLSA, ...), "host:port";',
        "# empty: the system's (/etc/resolv.conf).",
        'resolver = ""',
        "",
        "[acme]",
        "# Certificates from an ACME CA (RFC 8555), renewed by hatoba: \"letsencrypt\",",
        "# \"letsencrypt-staging\" or a directory URL. Needs the http listener (port 80)",
        "# or the https one (443) reachable from the Internet, or dns-01 below.",
        'directory = ""',
        '# contact = "mailto:postmaster@example.org"',
        '# challenges = ["http-01", "tls-alpn-01"]  # or ["dns-01"] with [acme.dns_update]',
        "# names = []  # default: the hostname, autoconfig.DOMAIN and mta-sts.DOMAIN",
        "# [acme.dns_update]",
        '# server = "192.0.2.53:53"  # the primary that takes RFC 2136 updates',
        '# tsig_key = "acme.key"  # tsig-keygen hatoba-acme > acme.key',
        "",
        "[log]",
        "# DEBUG, INFO, WARNING or ERROR. DEBUG shows every protocol line (passwords hidden).",
        'level = "INFO"',
        '# file = "hatoba.log"  # besides standard error',
        "",
    ]
    return "\n".join(out)
