"""Checks that need the whole Config: refusing unsafe or impossible setups.

Rules:
- load.py checks that each key has the right type; this module checks what
  the values mean together (an open relay, two listeners on one port, a
  certificate file that is not there).
- Each problem is one line starting with the key, saying what to do.
- It reads no file contents; it only asks whether the named files exist.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from hatoba.config.load import ConfigError, parse_listen_address
from hatoba.config.schema import ACME_CHALLENGES, MTA_STS_MODES, AuthConfig, Config, LimitsConfig
from hatoba.proto.address import AddressError, parse_address, parse_domain

BARE_NEWLINE_MODES = ("normalize", "reject")
DELIVERY_TLS_MODES = ("may", "encrypt", "verify")
MTA_STS_MAX_AGE = 31557600  # RFC 8461 §3.2: a year
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# A trusted network wider than this lets a large part of the Internet relay
# through us. Real sites trust a LAN (/16../32) or a provider block, never
# a whole /8 of other people's addresses.
MIN_IPV4_PREFIX = 8
MIN_IPV6_PREFIX = 32
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")

# RFC 5321 §4.5.3.1.4 and §4.5.3.1.6: the lines every server must accept.
MIN_COMMAND_LINE = 512
MIN_DATA_LINE = 1000
# A LOGIN with a long address and password, or SASL PLAIN in base64, fits in this.
MIN_COMMAND_BEFORE_LOGIN = 1024
# Each level of MIME nesting is a level of recursion when a message is parsed and answered.
MAX_MIME_DEPTH = 500

# A failed login is answered after at most this many seconds: some mail
# programs give up waiting for an answer after a minute (Outlook's default),
# and a longer delay would only keep a guesser's connection open.
MAX_LOGIN_DELAY = 60.0
# A refused scope waits at most an hour: a longer block shuts the account's
# owner out (from new addresses) for longer than it slows a guesser, whom the
# per-hour rate already holds.
MAX_LOGIN_BLOCK = 3600.0


def validate(config: Config) -> None:
    """Raise ConfigError with the first problem found, if any."""
    for problem in find_problems(config):
        raise ConfigError(problem)


def find_problems(config: Config) -> list[str]:
    """Every problem in `config`, one line each (for `hatoba check`, which lists them all)."""
    return [
        *_server_problems(config),
        *_listener_problems(config),
        *_tls_problems(config),
        *_smtp_problems(config),
        *_auth_problems(config.auth),
        *_pop3_problems(config),
        *_limit_problems(config.limits),
        *_delivery_problems(config),
        *_log_problems(config),
        *_metrics_problems(config),
        *_mta_sts_problems(config),
        *_acme_problems(config),
        *_dns_problems(config),
    ]


def hostname_problem(hostname: str) -> str | None:
    """Why `hostname` cannot be this server's name, or None when it is a fine DNS name."""
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        pass
    else:
        return f"{hostname!r} is an IP address; give the server's DNS name, e.g. mail.example.org"
    if not hostname.isascii():
        return f"{hostname!r} is not ASCII; write an internationalised name in its xn-- form"
    try:
        parse_domain(hostname)
    except AddressError as exc:
        return f"{hostname!r} is not a valid DNS name ({exc}); e.g. mail.example.org"
    if hostname.endswith("."):
        return f"{hostname!r} ends with a dot; write it without the dot"
    return None


def is_open_relay_network(cidr: str) -> bool:
    """True when trusting `cidr` would let a large part of the Internet relay mail.

    Raises ValueError when `cidr` is not a network. Host bits are ignored, as
    the relay policy ignores them (10.1.2.3/8 means 10.0.0.0/8).
    """
    network = ipaddress.ip_network(cidr, strict=False)
    if isinstance(network, ipaddress.IPv4Network):
        return network.prefixlen < MIN_IPV4_PREFIX
    if network.subnet_of(_IPV4_MAPPED):
        # ::ffff:a.b.c.d/n names IPv4 addresses; judge it as the IPv4 network.
        return network.prefixlen - 96 < MIN_IPV4_PREFIX
    return network.prefixlen < MIN_IPV6_PREFIX


def _server_problems(config: Config) -> Iterator[str]:
    problem = hostname_problem(config.server.hostname)
    if problem:
        yield f"server.hostname: {problem}"
    yield from _postmaster_problems(config.server.postmaster)


def _postmaster_problems(postmaster: str) -> Iterator[str]:
    if not postmaster:
        return
    try:
        parse_address(postmaster)
    except AddressError as exc:
        yield f"server.postmaster: {postmaster!r} is not an address ({exc}); give a user's address, or \"\""


def _listener_problems(config: Config) -> Iterator[str]:
    seen: dict[tuple[str, int], str] = {}
    for listener in config.listeners.values():
        if not listener.enabled:
            continue
        where = (listener.host, listener.port)
        # 0.0.0.0 takes the port on every IPv4 address: it clashes with each of them.
        clashes = [name for (host, port), name in seen.items() if port == listener.port and _overlap(host, listener.host)]
        if clashes:
            yield (
                f"listeners.{listener.name}: {_format(listener.host, listener.port)} is also the address of "
                f"listeners.{clashes[0]}; give one of them another port or set enabled = false"
            )
        seen[where] = listener.name


def _overlap(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        ip_a, ip_b = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return False
    return ip_a.version == ip_b.version and (ip_a.is_unspecified or ip_b.is_unspecified)


def _format(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _tls_problems(config: Config) -> Iterator[str]:
    tls = config.tls
    files = [
        ("tls.cert", tls.cert, "run hatoba init or point it at your certificate chain"),
        ("tls.key", tls.key, "run hatoba init or point it at your private key"),
    ]
    if tls.ca_file is not None:
        files.append(("tls.ca_file", tls.ca_file, "remove the line or point it at a file of PEM CA certificates"))
    for domain, d in tls.domains.items():
        files.append((f'tls.domains."{domain}".cert', d.cert, "point it at that domain's certificate chain"))
        files.append((f'tls.domains."{domain}".key', d.key, "point it at that domain's private key"))
    for key, path, fix in files:
        if not path.exists():
            yield f"{key}: {path} does not exist; {fix}"
        elif not path.is_file():
            yield f"{key}: {path} is not a file; {fix}"


def _smtp_problems(config: Config) -> Iterator[str]:
    smtp = config.smtp
    for cidr in smtp.trusted_networks:
        try:
            open_relay = is_open_relay_network(cidr)
        except ValueError:
            yield f"smtp.trusted_networks: {cidr!r} is not a network in CIDR notation; write e.g. 192.168.1.0/24"
            continue
        if open_relay:
            yield (
                f"smtp.trusted_networks: {cidr} would make hatoba an open relay (anyone could send mail "
                "through it); list only your own networks, e.g. 192.168.1.0/24"
            )
    if smtp.bare_newline not in BARE_NEWLINE_MODES:
        yield f"smtp.bare_newline: {smtp.bare_newline!r} is not one of {', '.join(BARE_NEWLINE_MODES)}"
    if smtp.pop_before_smtp_minutes < 0:
        yield "smtp.pop_before_smtp_minutes: must be 0 (off) or more"


def _auth_problems(auth: AuthConfig) -> Iterator[str]:
    for cidr in auth.plaintext_networks:
        try:
            too_wide = is_open_relay_network(cidr)
        except ValueError:
            yield f"auth.plaintext_networks: {cidr!r} is not a network in CIDR notation; write e.g. 192.168.1.0/24"
            continue
        if too_wide:
            yield (
                f"auth.plaintext_networks: {cidr} would let passwords cross the Internet unencrypted; "
                "list only networks you trust, e.g. 127.0.0.1/32"
            )
    for name, value in vars(auth).items():
        if name != "plaintext_networks" and value <= 0:
            yield f"auth.{name}: {value:g} must be more than 0; remove the line for the default"
    if auth.max_delay > MAX_LOGIN_DELAY:
        yield (
            f"auth.max_delay: {auth.max_delay:g} is more than {MAX_LOGIN_DELAY:g} seconds; "
            "mail programs may give up waiting for the answer before that"
        )
    if auth.max_block > MAX_LOGIN_BLOCK:
        yield (
            f"auth.max_block: {auth.max_block:g} is more than {MAX_LOGIN_BLOCK:g} seconds; "
            "a longer block locks the account's owner out longer than it slows a guesser"
        )


def _mta_sts_problems(config: Config) -> Iterator[str]:
    if config.mta_sts.mode not in MTA_STS_MODES:
        yield f"mta_sts.mode must be one of {', '.join(MTA_STS_MODES)}, not {config.mta_sts.mode!r}"
    if not 0 < config.mta_sts.max_age <= MTA_STS_MAX_AGE:  # RFC 8461 §3.2
        yield f"mta_sts.max_age must be 1 to {MTA_STS_MAX_AGE} seconds (a year), not {config.mta_sts.max_age}"


def _dns_problems(config: Config) -> Iterator[str]:
    from hatoba.dnsutil.resolver import parse_nameserver

    if config.dns.resolver:
        try:
            parse_nameserver(config.dns.resolver)
        except ValueError as exc:
            yield f"dns.resolver: {exc}"


def _acme_problems(config: Config) -> Iterator[str]:
    acme = config.acme
    if not acme.enabled:
        return
    if not acme.directory_url.startswith("https://"):
        yield (f"acme.directory must be an https:// URL, \"letsencrypt\" or \"letsencrypt-staging\", "
               f"not {acme.directory!r}")
    if acme.contact and not acme.contact.startswith("mailto:"):
        yield f'acme.contact must be a "mailto:" address, not {acme.contact!r}'
    if acme.ca_file is not None and not acme.ca_file.is_file():
        yield f"acme.ca_file: {acme.ca_file} is not a file; point it at the PEM CA certificates of the CA's HTTPS"
    if not acme.challenges:
        yield f"acme.challenges is empty; name one or more of {', '.join(ACME_CHALLENGES)}"
    for challenge in acme.challenges:
        if challenge not in ACME_CHALLENGES:
            yield f"acme.challenges: {challenge!r} is not one of {', '.join(ACME_CHALLENGES)}"
    listeners = config.listeners
    if "http-01" in acme.challenges and not (listeners.get("http") and listeners["http"].enabled):
        yield "acme.challenges has http-01 but [listeners.http] is off; enable it (port 80) or drop http-01"
    if "tls-alpn-01" in acme.challenges and not (listeners.get("https") and listeners["https"].enabled):
        yield "acme.challenges has tls-alpn-01 but [listeners.https] is off; enable it (port 443) or drop tls-alpn-01"
    update = acme.dns_update
    if update.server:
        yield from _dns_update_server_problems(update.server)
    if "dns-01" in acme.challenges:
        if not update.server:
            yield "acme.challenges has dns-01 but acme.dns_update.server is empty; give the \"address:port\" that takes updates"
        if update.tsig_key is None:
            yield "acme.challenges has dns-01 but acme.dns_update.tsig_key is empty; give the TSIG key file (tsig-keygen)"
        elif not update.tsig_key.is_file():
            yield f"acme.dns_update.tsig_key: {update.tsig_key} is not a file; write it with tsig-keygen NAME > FILE"
    for name in acme.names:
        try:
            parse_domain(name)
        except AddressError as exc:
            yield f"acme.names: {name!r} is not a domain name: {exc}"


def _dns_update_server_problems(server: str) -> Iterator[str]:
    try:
        host, _port = parse_listen_address(server, "acme.dns_update.server")
    except ConfigError as exc:
        yield f"{exc} (the primary DNS server's address and port, e.g. \"192.0.2.53:53\")"
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        yield (f"acme.dns_update.server: {host!r} is a name; give the primary's IP address "
               "(updates must not depend on the DNS they change)")


def _metrics_problems(config: Config) -> Iterator[str]:
    for cidr in config.metrics.networks:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            yield f"metrics.networks: {cidr!r} is not a network in CIDR notation; write e.g. 127.0.0.1/32"


def _pop3_problems(config: Config) -> Iterator[str]:
    pop3 = config.pop3
    if pop3.max_auth_failures <= 0:
        yield "pop3.max_auth_failures: must be more than 0"
    if config.imap.quota_mb < 0:
        yield "imap.quota_mb: must be 0 (no limit) or more"


def _limit_problems(limits: LimitsConfig) -> Iterator[str]:
    for name, value in vars(limits).items():
        if name in ("login_cache_seconds", "queue_min_free", "client_connection_rate", "client_message_rate",
                    "unknown_recipient_limit"):  # 0 = off (no limit), 0 = the default rule
            if value < 0:
                yield f"limits.{name}: {value} must be 0 (off) or more"
        elif value <= 0:
            yield f"limits.{name}: {value} must be more than 0; remove the line for the default"
    if limits.max_command_line < MIN_COMMAND_LINE:
        yield f"limits.max_command_line: SMTP clients may send {MIN_COMMAND_LINE}-octet commands (RFC 5321); use at least that"
    if limits.max_mime_depth > MAX_MIME_DEPTH:
        yield f"limits.max_mime_depth: at most {MAX_MIME_DEPTH}; real mail nests a few levels deep"
    if limits.max_data_line < MIN_DATA_LINE:
        yield f"limits.max_data_line: mail may hold {MIN_DATA_LINE}-octet lines (RFC 5321); use at least that"
    if limits.max_command_before_login < MIN_COMMAND_BEFORE_LOGIN:
        yield (f"limits.max_command_before_login: logins need up to {MIN_COMMAND_BEFORE_LOGIN} bytes; "
               "use at least that")


def _delivery_problems(config: Config) -> Iterator[str]:
    delivery = config.delivery
    if delivery.tls not in DELIVERY_TLS_MODES:
        yield f"delivery.tls: {delivery.tls!r} is not one of {', '.join(DELIVERY_TLS_MODES)}"
    for name in ("retry_min", "retry_max", "max_queue_lifetime"):
        value = getattr(delivery, name)
        if value <= 0:
            yield f"delivery.{name}: {value:g} must be more than 0 seconds"
    if 0 < delivery.retry_max < delivery.retry_min:
        yield f"delivery.retry_max: {delivery.retry_max:g} is less than delivery.retry_min ({delivery.retry_min:g})"
    for domain, target in delivery.routes.items():
        if not target.strip():
            yield f'delivery.routes."{domain}": empty next hop; give "host:port" or remove the line'
    for domain, level in delivery.tls_policies.items():
        if level not in DELIVERY_TLS_MODES:
            yield f'delivery.tls_policies."{domain}": {level!r} is not one of {", ".join(DELIVERY_TLS_MODES)}'
    if delivery.relayhost_tls and delivery.relayhost_tls not in DELIVERY_TLS_MODES:
        yield f"delivery.relayhost_tls: {delivery.relayhost_tls!r} is not one of {', '.join(DELIVERY_TLS_MODES)}"
    if delivery.relayhost_password and delivery.relayhost_password_file:
        yield "delivery.relayhost_password and relayhost_password_file are both set; keep one"
    if (delivery.relayhost_password or delivery.relayhost_password_file) and not delivery.relayhost_username:
        yield "delivery.relayhost_username is empty but a password is set; give the login name too"
    if (delivery.relayhost_username or delivery.relayhost_password) and not delivery.relayhost:
        yield "delivery.relayhost_username is set but delivery.relayhost is empty; give the smarthost"
    for name in ("destination_concurrency", "max_recipients_per_transaction", "mx_port"):
        if getattr(delivery, name) <= 0:
            yield f"delivery.{name}: must be more than 0; remove the line for the default"


def _log_problems(config: Config) -> Iterator[str]:
    if config.log.level.upper() not in LOG_LEVELS:
        yield f"log.level: {config.log.level!r} is not one of {', '.join(LOG_LEVELS)}"
