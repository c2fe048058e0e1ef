"""Checks that need the whole Config: refusing unsafe or impossible setups.

Rules:
- load.py checks that each key has the right type; this module checks what
  the values mean together (an open relay, two listeners on one port, a
  certificate file that is not there).
- Each problem is one line starting with the key, saying what to do.
- It reads no file contents; it only asks whether the named files exist.
- Each problem is a Text (hatoba/i18n.py), so it can be said in Japanese:
  "key: what is wrong; what to do" is made by _line from the key (data) and
  the two parts as Texts, so the self-check can show each part on its own
  line and still translate it (selfcheck/runner.py). Keys, the values
  found, paths and limits come in as values of the Texts, not in msgids.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from hatoba.config.load import ConfigError, parse_listen_address
from hatoba.config.schema import ACME_CHALLENGES, MTA_STS_MODES, AuthConfig, Config, LimitsConfig
from hatoba.i18n import T, Text, refusal
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
    """Every problem in `config`, one line each (for `hatoba check`, which lists them all).

    Each is a Text: see _line for the parts the self-check takes from it."""
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
    parts = _hostname_parts(hostname)
    return _joined(*parts) if parts else None


def _hostname_parts(hostname: str) -> tuple[Text, Text] | None:
    """What is wrong with `hostname` and what to do, or None when it is a fine DNS name."""
    name = repr(hostname)
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        pass
    else:
        return (T("%(hostname)s is an IP address", hostname=name),
                T("give the server's DNS name, e.g. %(example)s", example="mail.example.org"))
    if not hostname.isascii():
        return (T("%(hostname)s is not ASCII", hostname=name),
                T("write an internationalised name in its %(prefix)s form", prefix="xn--"))
    try:
        parse_domain(hostname)
    except AddressError as exc:
        return (T("%(hostname)s is not a valid DNS name (%(reason)s)", hostname=name, reason=refusal(exc)),
                T("e.g. %(example)s", example="mail.example.org"))
    if hostname.endswith("."):
        return T("%(hostname)s ends with a dot", hostname=name), T("write it without the dot")
    return None


def _line(key: str, problem: str, fix: str | None = None) -> Text:
    """The problem line "key: problem; fix" (or "key: problem").

    CONTRACT (selfcheck/runner.py takes the parts from the values): a line is
    made here (values key, problem, fix), by _joined (problem, fix) or is one
    Text of its own; no part names a value of its own "problem" or "fix"."""
    if fix is None:
        return T("%(key)s: %(problem)s", key=key, problem=problem)
    return T("%(key)s: %(problem)s; %(fix)s", key=key, problem=problem, fix=fix)


def _joined(problem: str, fix: str) -> Text:
    """A problem line that starts with no "key: " of its own: "problem; fix"."""
    return T("%(problem)s; %(fix)s", problem=problem, fix=fix)


def _not_cidr(key: str, cidr: str, example: str) -> Text:
    return _line(key, T("%(network)s is not a network in CIDR notation", network=repr(cidr)),
                 T("write e.g. %(example)s", example=example))


def _not_one_of(key: str, value: str, choices: tuple[str, ...]) -> Text:
    return _line(key, T("%(value)s is not one of %(choices)s", value=repr(value), choices=", ".join(choices)))


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
    parts = _hostname_parts(config.server.hostname)
    if parts:
        yield _line("server.hostname", *parts)
    yield from _postmaster_problems(config.server.postmaster)


def _postmaster_problems(postmaster: str) -> Iterator[str]:
    if not postmaster:
        return
    try:
        parse_address(postmaster)
    except AddressError as exc:
        yield _line("server.postmaster",
                    T("%(address)s is not an address (%(reason)s)", address=repr(postmaster), reason=refusal(exc)),
                    T("give a user's address, or %(empty)s", empty='""'))


def _listener_problems(config: Config) -> Iterator[str]:
    seen: dict[tuple[str, int], str] = {}
    for listener in config.listeners.values():
        if not listener.enabled:
            continue
        where = (listener.host, listener.port)
        # 0.0.0.0 takes the port on every IPv4 address: it clashes with each of them.
        clashes = [name for (host, port), name in seen.items() if port == listener.port and _overlap(host, listener.host)]
        if clashes:
            yield _line(
                f"listeners.{listener.name}",
                T("%(address)s is also the address of %(other)s",
                  address=_format(listener.host, listener.port), other=f"listeners.{clashes[0]}"),
                T("give one of them another port or set %(setting)s", setting="enabled = false"),
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
        ("tls.cert", tls.cert, T("run hatoba init or point it at your certificate chain")),
        ("tls.key", tls.key, T("run hatoba init or point it at your private key")),
    ]
    if tls.ca_file is not None:
        files.append(("tls.ca_file", tls.ca_file, T("remove the line or point it at a file of PEM CA certificates")))
    for domain, d in tls.domains.items():
        files.append((f'tls.domains."{domain}".cert', d.cert, T("point it at that domain's certificate chain")))
        files.append((f'tls.domains."{domain}".key', d.key, T("point it at that domain's private key")))
    for key, path, fix in files:
        if not path.exists():
            yield _line(key, T("%(path)s does not exist", path=str(path)), fix)
        elif not path.is_file():
            yield _line(key, T("%(path)s is not a file", path=str(path)), fix)


def _smtp_problems(config: Config) -> Iterator[str]:
    smtp = config.smtp
    for cidr in smtp.trusted_networks:
        try:
            open_relay = is_open_relay_network(cidr)
        except ValueError:
            yield _not_cidr("smtp.trusted_networks", cidr, "192.168.1.0/24")
            continue
        if open_relay:
            yield _line(
                "smtp.trusted_networks",
                T("%(network)s would make hatoba an open relay (anyone could send mail through it)", network=cidr),
                T("list only your own networks, e.g. %(example)s", example="192.168.1.0/24"),
            )
    if smtp.bare_newline not in BARE_NEWLINE_MODES:
        yield _not_one_of("smtp.bare_newline", smtp.bare_newline, BARE_NEWLINE_MODES)
    if smtp.pop_before_smtp_minutes < 0:
        yield _line("smtp.pop_before_smtp_minutes", T("must be 0 (off) or more"))


def _auth_problems(auth: AuthConfig) -> Iterator[str]:
    for cidr in auth.plaintext_networks:
        try:
            too_wide = is_open_relay_network(cidr)
        except ValueError:
            yield _not_cidr("auth.plaintext_networks", cidr, "192.168.1.0/24")
            continue
        if too_wide:
            yield _line(
                "auth.plaintext_networks",
                T("%(network)s would let passwords cross the Internet unencrypted", network=cidr),
                T("list only networks you trust, e.g. %(example)s", example="127.0.0.1/32"),
            )
    for name, value in vars(auth).items():
        if name != "plaintext_networks" and value <= 0:
            yield _line(f"auth.{name}", T("%(value)s must be more than 0", value=f"{value:g}"),
                        T("remove the line for the default"))
    if auth.max_delay > MAX_LOGIN_DELAY:
        yield _line(
            "auth.max_delay",
            T("%(value)s is more than %(limit)s seconds", value=f"{auth.max_delay:g}", limit=f"{MAX_LOGIN_DELAY:g}"),
            T("mail programs may give up waiting for the answer before that"),
        )
    if auth.max_block > MAX_LOGIN_BLOCK:
        yield _line(
            "auth.max_block",
            T("%(value)s is more than %(limit)s seconds", value=f"{auth.max_block:g}", limit=f"{MAX_LOGIN_BLOCK:g}"),
            T("a longer block locks the account's owner out longer than it slows a guesser"),
        )


def _mta_sts_problems(config: Config) -> Iterator[str]:
    if config.mta_sts.mode not in MTA_STS_MODES:
        yield T("%(key)s must be one of %(choices)s, not %(value)s",
                key="mta_sts.mode", choices=", ".join(MTA_STS_MODES), value=repr(config.mta_sts.mode))
    if not 0 < config.mta_sts.max_age <= MTA_STS_MAX_AGE:  # RFC 8461 §3.2
        yield T("%(key)s must be 1 to %(max)s seconds (a year), not %(value)s",
                key="mta_sts.max_age", max=str(MTA_STS_MAX_AGE), value=str(config.mta_sts.max_age))


def _dns_problems(config: Config) -> Iterator[str]:
    from hatoba.dnsutil.resolver import parse_nameserver

    if config.dns.resolver:
        try:
            parse_nameserver(config.dns.resolver)
        except ValueError as exc:
            yield _line("dns.resolver", refusal(exc))


def _acme_problems(config: Config) -> Iterator[str]:
    acme = config.acme
    if not acme.enabled:
        return
    if not acme.directory_url.startswith("https://"):
        yield T("%(key)s must be an https:// URL, %(letsencrypt)s or %(staging)s, not %(value)s",
                key="acme.directory", letsencrypt='"letsencrypt"', staging='"letsencrypt-staging"',
                value=repr(acme.directory))
    if acme.contact and not acme.contact.startswith("mailto:"):
        yield T("%(key)s must be a %(scheme)s address, not %(value)s",
                key="acme.contact", scheme='"mailto:"', value=repr(acme.contact))
    if acme.ca_file is not None and not acme.ca_file.is_file():
        yield _line("acme.ca_file", T("%(path)s is not a file", path=str(acme.ca_file)),
                    T("point it at the PEM CA certificates of the CA's HTTPS"))
    if not acme.challenges:
        yield _joined(T("%(key)s is empty", key="acme.challenges"),
                      T("name one or more of %(choices)s", choices=", ".join(ACME_CHALLENGES)))
    for challenge in acme.challenges:
        if challenge not in ACME_CHALLENGES:
            yield _not_one_of("acme.challenges", challenge, ACME_CHALLENGES)
    listeners = config.listeners
    for challenge, name, port in (("http-01", "http", 80), ("tls-alpn-01", "https", 443)):
        if challenge in acme.challenges and not (listeners.get(name) and listeners[name].enabled):
            yield _joined(
                T("%(key)s has %(challenge)s but %(table)s is off",
                  key="acme.challenges", challenge=challenge, table=f"[listeners.{name}]"),
                T("enable it (port %(port)s) or drop %(challenge)s", port=str(port), challenge=challenge),
            )
    update = acme.dns_update
    if update.server:
        yield from _dns_update_server_problems(update.server)
    if "dns-01" in acme.challenges:
        if not update.server:
            yield _joined(
                T("%(key)s has %(challenge)s but %(other)s is empty",
                  key="acme.challenges", challenge="dns-01", other="acme.dns_update.server"),
                T("give the %(form)s that takes updates", form='"address:port"'),
            )
        if update.tsig_key is None:
            yield _joined(
                T("%(key)s has %(challenge)s but %(other)s is empty",
                  key="acme.challenges", challenge="dns-01", other="acme.dns_update.tsig_key"),
                T("give the TSIG key file (tsig-keygen)"),
            )
        elif not update.tsig_key.is_file():
            yield _line("acme.dns_update.tsig_key", T("%(path)s is not a file", path=str(update.tsig_key)),
                        T("write it with tsig-keygen NAME > FILE"))
    for name in acme.names:
        try:
            parse_domain(name)
        except AddressError as exc:
            yield _line("acme.names", T("%(name)s is not a domain name: %(reason)s", name=repr(name), reason=refusal(exc)))


def _dns_update_server_problems(server: str) -> Iterator[str]:
    try:
        host, _port = parse_listen_address(server, "acme.dns_update.server")
    except ConfigError as exc:
        # load.py's message is English (a str) until load.py makes it a Text; it is a value here either way.
        yield T("%(error)s (the primary DNS server's address and port, e.g. %(example)s)",
                error=refusal(exc), example='"192.0.2.53:53"')
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        yield _line("acme.dns_update.server", T("%(host)s is a name", host=repr(host)),
                    T("give the primary's IP address (updates must not depend on the DNS they change)"))


def _metrics_problems(config: Config) -> Iterator[str]:
    for cidr in config.metrics.networks:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            yield _not_cidr("metrics.networks", cidr, "127.0.0.1/32")


def _pop3_problems(config: Config) -> Iterator[str]:
    pop3 = config.pop3
    if pop3.max_auth_failures <= 0:
        yield _line("pop3.max_auth_failures", T("must be more than 0"))
    if config.imap.quota_mb < 0:
        yield _line("imap.quota_mb", T("must be 0 (no limit) or more"))


def _limit_problems(limits: LimitsConfig) -> Iterator[str]:
    for name, value in vars(limits).items():
        if name in ("login_cache_seconds", "queue_min_free", "client_connection_rate", "client_message_rate",
                    "unknown_recipient_limit"):  # 0 = off (no limit), 0 = the default rule
            if value < 0:
                yield _line(f"limits.{name}", T("%(value)s must be 0 (off) or more", value=f"{value}"))
        elif value <= 0:
            yield _line(f"limits.{name}", T("%(value)s must be more than 0", value=f"{value}"),
                        T("remove the line for the default"))
    if limits.max_command_line < MIN_COMMAND_LINE:
        yield _line("limits.max_command_line",
                    T("SMTP clients may send %(octets)s-octet commands (RFC 5321)", octets=str(MIN_COMMAND_LINE)),
                    T("use at least that"))
    if limits.max_mime_depth > MAX_MIME_DEPTH:
        yield _line("limits.max_mime_depth", T("at most %(depth)s", depth=str(MAX_MIME_DEPTH)),
                    T("real mail nests a few levels deep"))
    if limits.max_data_line < MIN_DATA_LINE:
        yield _line("limits.max_data_line",
                    T("mail may hold %(octets)s-octet lines (RFC 5321)", octets=str(MIN_DATA_LINE)),
                    T("use at least that"))
    if limits.max_command_before_login < MIN_COMMAND_BEFORE_LOGIN:
        yield _line("limits.max_command_before_login",
                    T("logins need up to %(size)s bytes", size=str(MIN_COMMAND_BEFORE_LOGIN)),
                    T("use at least that"))


def _delivery_problems(config: Config) -> Iterator[str]:
    delivery = config.delivery
    if delivery.tls not in DELIVERY_TLS_MODES:
        yield _not_one_of("delivery.tls", delivery.tls, DELIVERY_TLS_MODES)
    for name in ("retry_min", "retry_max", "max_queue_lifetime"):
        value = getattr(delivery, name)
        if value <= 0:
            yield _line(f"delivery.{name}", T("%(value)s must be more than 0 seconds", value=f"{value:g}"))
    if 0 < delivery.retry_max < delivery.retry_min:
        yield _line("delivery.retry_max",
                    T("%(value)s is less than %(other)s (%(minimum)s)", value=f"{delivery.retry_max:g}",
                      other="delivery.retry_min", minimum=f"{delivery.retry_min:g}"))
    for domain, target in delivery.routes.items():
        if not target.strip():
            yield _line(f'delivery.routes."{domain}"', T("empty next hop"),
                        T("give %(form)s or remove the line", form='"host:port"'))
    for domain, level in delivery.tls_policies.items():
        if level not in DELIVERY_TLS_MODES:
            yield _not_one_of(f'delivery.tls_policies."{domain}"', level, DELIVERY_TLS_MODES)
    if delivery.relayhost_tls and delivery.relayhost_tls not in DELIVERY_TLS_MODES:
        yield _not_one_of("delivery.relayhost_tls", delivery.relayhost_tls, DELIVERY_TLS_MODES)
    if delivery.relayhost_password and delivery.relayhost_password_file:
        yield _joined(T("%(key)s and %(other)s are both set",
                        key="delivery.relayhost_password", other="relayhost_password_file"),
                      T("keep one"))
    if (delivery.relayhost_password or delivery.relayhost_password_file) and not delivery.relayhost_username:
        yield _joined(T("%(key)s is empty but a password is set", key="delivery.relayhost_username"),
                      T("give the login name too"))
    if (delivery.relayhost_username or delivery.relayhost_password) and not delivery.relayhost:
        yield _joined(T("%(key)s is set but %(other)s is empty", key="delivery.relayhost_username",
                        other="delivery.relayhost"),
                      T("give the smarthost"))
    for name in ("destination_concurrency", "max_recipients_per_transaction", "mx_port"):
        if getattr(delivery, name) <= 0:
            yield _line(f"delivery.{name}", T("must be more than 0"), T("remove the line for the default"))


def _log_problems(config: Config) -> Iterator[str]:
    if config.log.level.upper() not in LOG_LEVELS:
        yield _not_one_of("log.level", config.log.level, LOG_LEVELS)
