"""Reading hatoba.toml into a Config.

Rules:
- Every key the file may hold is named here; any other key or table is an
  error naming it, so a typo never silently leaves a safe setting unset.
- Types are checked (a quoted number is an error, not a string limit).
- Relative paths are relative to the config file's folder, so a setup made
  by `hatoba init` can be moved as one folder.
- Errors are one line: "FILE: key: what is wrong; what to do".
- Keys of earlier versions keep loading (a config that worked keeps working):
  a renamed key is moved to its new place, a removed setting is ignored, and
  each costs one warning line per load, "FILE: key ...; what to do", logged
  on this module's logger. Before logging is set up (`hatoba check`, and
  `hatoba serve` until the config is read) Python's logging prints WARNING
  records on stderr by itself (logging.lastResort), so the operator sees them.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import logging
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hatoba.i18n import T, refusal
from hatoba.config.schema import (
    MAX_WORKERS,
    AcmeConfig,
    AcmeDnsUpdate,
    STANDARD_PORTS,
    AuthConfig,
    Config,
    DeliveryConfig,
    ChecksConfig,
    DomainChecks,
    LOCAL_FORGERY_ACTIONS,
    DkimConfig,
    DnsConfig,
    DomainTls,
    LimitsConfig,
    ListenerConfig,
    LogConfig,
    MetricsConfig,
    MtaStsConfig,
    PathsConfig,
    ServerConfig,
    ImapConfig,
    Pop3Config,
    SmtpConfig,
    TlsConfig,
)

DEFAULT_DATA_DIR = "data"
MAX_CONNECTIONS = 60_000  # limits.max_connections

log = logging.getLogger(__name__)

# [limits] keys of the per-address login lockout that [auth]'s throttle
# replaced. Still accepted, with a warning, so that configs written for it
# start; they can become errors once configs of that time are gone.
REMOVED_LIMITS = ("auth_failures_before_delay", "auth_failures_per_ip", "auth_lockout")
THROTTLE_NOTE = (
    "the login throttle is now [auth] pair_failures/address_failures/account_failures, "
    "max_delay and max_block; remove the line"
)


class ConfigError(Exception):
    """The config cannot be used; the message is one line naming the file and the key."""


def load_config(path: Path, *, validate: bool = True) -> Config:
    """Read, check and validate the config file at `path`.

    validate=False keeps unsafe but well-formed values (an open relay, say):
    `hatoba check` reports them instead of refusing the file."""
    from hatoba.config.validate import validate as check  # validate imports ConfigError from here

    path = Path(path).absolute()
    raw = _read_toml(path)
    warnings: list[str] = []
    try:
        config = _build(raw, path, warnings)
        for warning in warnings:
            log.warning("%s: %s", path, warning)
        if validate:
            check(config)
    except ConfigError as exc:
        raise ConfigError(T("%(path)s: %(problem)s", path=str(path), problem=refusal(exc))) from None
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} not found; create one with: hatoba init DIR --hostname HOST"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a folder; give the config file inside it, e.g. {path / 'hatoba.toml'}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


# -- checked access to one TOML table ------------------------------------------

_MISSING = object()

_TYPE_WORDS = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{type(value).__name__} {value!r}"


class _Table:
    """One TOML table: typed look-ups, and an error for every key never looked up."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a table ([{where}]), not {_describe(data)}")
        self.data: dict[str, Any] = data
        self.where = where
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def has(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str, kind: type, default: Any = _MISSING) -> Any:
        self.used.add(name)
        if name not in self.data:
            if default is _MISSING:
                raise ConfigError(f"{self.key(name)} is missing; add it to [{self.where}]")
            return default
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{self.key(name)} must be {_TYPE_WORDS[kind]}, not {_describe(value)}")
        return value

    def table(self, name: str) -> _Table:
        return _Table(self.get(name, dict, {}), self.key(name))

    def path(self, name: str, base: Path, default: Any = _MISSING) -> Any:
        value = self.get(name, str, default)
        if not isinstance(value, str):
            return value
        if not value:
            raise ConfigError(f"{self.key(name)} is empty; give a file name")
        return base / Path(value).expanduser()

    def strings(self, name: str) -> tuple[str, ...]:
        values = self.get(name, list, [])
        for value in values:
            if not isinstance(value, str):
                raise ConfigError(f"{self.key(name)} must be a list of strings; {_describe(value)} is not one")
        return tuple(values)

    def done(self) -> None:
        """Refuse the keys nobody asked for: they are typos or settings this version lacks."""
        for name in self.data:
            if name not in self.used:
                hint = difflib.get_close_matches(name, sorted(self.used), n=1)
                suggestion = f"; did you mean {self.key(hint[0])}?" if hint else ""
                if isinstance(self.data[name], dict):
                    raise ConfigError(f"unknown table [{self.key(name)}]{suggestion}")
                raise ConfigError(f"unknown key {self.key(name)}{suggestion}")


# -- building the Config ----------------------------------------------------------


def _build(raw: dict[str, Any], path: Path, warnings: list[str]) -> Config:
    """The Config in `raw`; what the operator should change, though it loads, goes to `warnings`."""
    base = path.parent
    root = _Table(raw, "")
    server_t = root.table("server")
    paths_t = root.table("paths")
    hostname = server_t.get("hostname", str)
    postmaster = server_t.get("postmaster", str, "")
    user = server_t.get("user", str, ServerConfig.user).strip()
    group = server_t.get("group", str, ServerConfig.group).strip()
    allow_root = server_t.get("allow_root", bool, ServerConfig.allow_root)
    workers = server_t.get("workers", int, ServerConfig.workers)
    if not 0 <= workers <= MAX_WORKERS:
        raise ConfigError(f"server.workers must be 0 (one per core) to {MAX_WORKERS}, not {workers}")
    data_dir = _data_dir(server_t, paths_t, base)
    server_t.done()
    paths_t.done()
    auth, pop3 = _auth_and_pop3(root.table("auth"), root.table("pop3"), warnings)
    delivery, dns = _delivery_and_dns(root.table("delivery"), root.table("dns"))
    config = Config(
        server=ServerConfig(
            hostname=hostname, postmaster=postmaster.strip(), user=user, group=group, allow_root=allow_root,
            workers=workers,
        ),
        listeners=_listeners(root.table("listeners")),
        tls=_tls(root, base),
        paths=PathsConfig(data_dir=data_dir),
        limits=_limits(root.table("limits"), warnings),
        auth=auth,
        smtp=_from_fields(SmtpConfig, root.table("smtp")),
        pop3=pop3,
        imap=_from_fields(ImapConfig, root.table("imap")),
        log=_log(root.table("log"), base),
        delivery=delivery,
        dns=dns,
        dkim=_from_fields(DkimConfig, root.table("dkim")),
        checks=_checks(root.table("checks")),
        metrics=_from_fields(MetricsConfig, root.table("metrics")),
        mta_sts=_from_fields(MtaStsConfig, root.table("mta_sts")),
        acme=_acme(root.table("acme"), base),
        config_path=path,
    )
    root.done()
    return config


def _data_dir(server_t: _Table, paths_t: _Table, base: Path) -> Path:
    """[paths] data_dir, also accepted as [server] data_dir (but not both)."""
    if server_t.has("data_dir") and paths_t.has("data_dir"):
        raise ConfigError("data_dir is set in both [server] and [paths]; keep the one in [paths]")
    table = server_t if server_t.has("data_dir") else paths_t
    return table.path("data_dir", base, base / DEFAULT_DATA_DIR)


def _listeners(table: _Table) -> dict[str, ListenerConfig]:
    listeners = {}
    for name in table.data:
        if name not in STANDARD_PORTS:
            hint = difflib.get_close_matches(name, STANDARD_PORTS, n=1)
            suggestion = f"did you mean listeners.{hint[0]}? " if hint else ""
            raise ConfigError(
                f"unknown listener listeners.{name}; {suggestion}the listeners are {', '.join(STANDARD_PORTS)}"
            )
        t = table.table(name)
        address = t.get("address", str, f"0.0.0.0:{STANDARD_PORTS[name]}")
        host, port = parse_listen_address(address, t.key("address"))
        listeners[name] = ListenerConfig(name=name, host=host, port=port, enabled=t.get("enabled", bool, True))
        t.done()
    return listeners


def parse_listen_address(text: str, key: str = "address") -> tuple[str, int]:
    """"host:port" or "[ipv6]:port" -> (host, port); ConfigError naming `key` otherwise."""
    example = 'write it as "host:port", e.g. "0.0.0.0:25" or "[::1]:25"'
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if not rest.startswith(":"):
            raise ConfigError(f"{key}: {text!r} has no port; {example}")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"{key}: {host!r} in brackets is not an IPv6 address; {example}") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ConfigError(f"{key}: {text!r} has no port; {example}")
        if ":" in host:
            raise ConfigError(f"{key}: put an IPv6 address in brackets, e.g. \"[{host}]:{port_text}\"")
        if not host:
            raise ConfigError(f"{key}: {text!r} has no host; use 0.0.0.0 (every IPv4 address) or [::]; {example}")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"{key}: port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)


def _tls(root: _Table, base: Path) -> TlsConfig:
    if not root.has("tls"):
        raise ConfigError("[tls] is missing; it needs cert and key (hatoba init writes them)")
    t = root.table("tls")
    domains_t = t.table("domains")
    domains = {}
    for domain in domains_t.data:
        d = domains_t.table(domain)
        domains[domain.lower().rstrip(".")] = DomainTls(cert=d.path("cert", base), key=d.path("key", base))
        d.done()
    ca_file = t.get("ca_file", str, "")
    tls = TlsConfig(
        cert=t.path("cert", base),
        key=t.path("key", base),
        ca_file=base / Path(ca_file).expanduser() if ca_file else None,
        domains=domains,
    )
    t.done()
    return tls


def _acme(table: _Table, base: Path) -> AcmeConfig:
    update_t = table.table("dns_update")
    tsig_key = update_t.get("tsig_key", str, "")
    dns_update = AcmeDnsUpdate(
        server=update_t.get("server", str, "").strip(),
        tsig_key=base / Path(tsig_key).expanduser() if tsig_key else None,
        zone=update_t.get("zone", str, "").strip().rstrip(".").lower(),
    )
    update_t.done()
    ca_file = table.get("ca_file", str, "")
    acme = AcmeConfig(
        directory=table.get("directory", str, "").strip(),
        contact=table.get("contact", str, "").strip(),
        ca_file=base / Path(ca_file).expanduser() if ca_file else None,
        challenges=tuple(c.strip().lower() for c in table.strings("challenges")) if table.has("challenges")
        else AcmeConfig.challenges,
        names=tuple(n.strip().rstrip(".").lower() for n in table.strings("names")),
        dns_update=dns_update,
    )
    table.done()
    return acme


def _from_fields(cls: Callable[..., Any], table: _Table) -> Any:
    """A dataclass whose fields are plain settings, each taking its type from its default."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if not table.has(f.name):
            table.used.add(f.name)
            continue
        if isinstance(default, tuple):
            values[f.name] = table.strings(f.name)
        else:
            values[f.name] = table.get(f.name, type(default))
    table.done()
    return cls(**values)


def _checks_domains(table: _Table) -> dict[str, DomainChecks]:
    out = {}
    for domain in table.data:
        t = table.table(domain)
        forgery = t.get("local_forgery", str, None) if t.has("local_forgery") else None
        if forgery is not None and forgery not in LOCAL_FORGERY_ACTIONS:
            raise ConfigError(f"{t.key('local_forgery')} must be one of {', '.join(LOCAL_FORGERY_ACTIONS)},"
                              f" not {forgery!r}")
        reject = t.get("dmarc_reject", bool) if t.has("dmarc_reject") else None
        t.done()
        out[domain.lower().rstrip(".")] = DomainChecks(dmarc_reject=reject, local_forgery=forgery)
    return out


def _checks(table: _Table) -> ChecksConfig:
    from hatoba.checks.dnsbl import parse_site

    checks: ChecksConfig = _from_fields(ChecksConfig, table)
    checks = dataclasses.replace(checks, domains=_checks_domains(table.table("domains")))
    if checks.local_forgery not in LOCAL_FORGERY_ACTIONS:
        raise ConfigError(f"checks.local_forgery must be one of {', '.join(LOCAL_FORGERY_ACTIONS)},"
                          f" not {checks.local_forgery!r}")
    if not 0 < checks.timeout <= 120:
        raise ConfigError(f"checks.timeout must be more than 0 and at most 120 seconds, not {checks.timeout:g}")
    for name in ("rspamd_url", "rspamd_controller_url"):
        url = getattr(checks, name)
        if url and not (url.startswith("http://") and len(url) > len("http://")):
            raise ConfigError(f"checks.{name} must be an http:// URL of rspamd (e.g. http://127.0.0.1:11333), not {url!r}")
    for site in checks.dnsbl:
        try:
            parse_site(site)
        except ValueError as exc:
            raise ConfigError(f"checks.dnsbl: {exc}") from None
    if checks.greylist_delay < 0 or checks.greylist_window_hours * 3600 <= checks.greylist_delay:
        raise ConfigError("checks.greylist_delay must be 0 or more and shorter than checks.greylist_window_hours")
    if checks.greylist_keep_days <= 0 or checks.greylist_auto_allow < 0:
        raise ConfigError("checks.greylist_keep_days must be more than 0 and checks.greylist_auto_allow 0 or more")
    if checks.dnsbl_threshold <= 0:
        raise ConfigError(f"checks.dnsbl_threshold must be more than 0 (at 0 every client would be refused),"
                          f" not {checks.dnsbl_threshold:g}")
    if not 0 <= checks.greet_pause <= 30:
        raise ConfigError(f"checks.greet_pause must be 0 to 30 seconds, not {checks.greet_pause:g}")
    if checks.junk_score <= 0:
        raise ConfigError(f"checks.junk_score must be more than 0, not {checks.junk_score:g}")
    return checks


def _limits(table: _Table, warnings: list[str]) -> LimitsConfig:
    for name in REMOVED_LIMITS:
        if table.has(name):
            table.used.add(name)  # any value: it is not read
            warnings.append(f"{table.key(name)} is ignored; {THROTTLE_NOTE}")
    limits: LimitsConfig = _from_fields(LimitsConfig, table)
    if limits.max_connections > MAX_CONNECTIONS:  # the worker processes' shared counters hold 16 bits
        raise ConfigError(f"limits.max_connections must be at most {MAX_CONNECTIONS}, not {limits.max_connections}")
    return limits


def _auth_and_pop3(auth_t: _Table, pop3_t: _Table, warnings: list[str]) -> tuple[AuthConfig, Pop3Config]:
    """[auth], and [pop3] whose plaintext_auth_networks (the old spelling) moves to auth.plaintext_networks.

    In the Config only auth.plaintext_networks holds the networks (it covers
    IMAP 143 too); pop3.plaintext_auth_networks is always empty."""
    auth: AuthConfig = _from_fields(AuthConfig, auth_t)
    pop3: Pop3Config = _from_fields(Pop3Config, pop3_t)
    if not pop3_t.has("plaintext_auth_networks"):
        return auth, pop3
    if auth_t.has("plaintext_networks"):
        raise ConfigError(
            "pop3.plaintext_auth_networks and auth.plaintext_networks are both set; "
            "keep only [auth] plaintext_networks"
        )
    warnings.append(
        "pop3.plaintext_auth_networks is deprecated; rename it to [auth] plaintext_networks "
        "(it covers POP3 110 and IMAP 143)"
    )
    auth = dataclasses.replace(auth, plaintext_networks=pop3.plaintext_auth_networks)
    return auth, dataclasses.replace(pop3, plaintext_auth_networks=())


def _log(table: _Table, base: Path) -> LogConfig:
    level = table.get("level", str, LogConfig.level).upper()
    file = table.get("file", str, "")
    table.done()
    return LogConfig(level=level, file=base / Path(file).expanduser() if file else None)


def _domain_map(table: _Table) -> dict[str, str]:
    """A table of "domain" = "string" (routes, TLS policies); domains lower-cased."""
    values = {}
    for domain in table.data:
        values[domain.lower().rstrip(".")] = table.get(domain, str)
    table.done()
    return values


def _delivery_and_dns(delivery_t: _Table, dns_t: _Table) -> tuple[DeliveryConfig, DnsConfig]:
    """[dns] resolver, or its old name delivery.resolver; both are set to the one in use."""
    delivery = _delivery(delivery_t)
    resolver = dns_t.get("resolver", str, "").strip()
    dns_t.done()
    old = delivery.resolver.strip()
    if resolver and old and resolver != old:
        raise ConfigError(f"dns.resolver ({resolver!r}) and its old name delivery.resolver ({old!r}) differ; "
                          "keep only [dns] resolver")
    resolver = resolver or old
    return dataclasses.replace(delivery, resolver=resolver), DnsConfig(resolver=resolver)


def _delivery(table: _Table) -> DeliveryConfig:
    routes = _domain_map(table.table("routes"))
    policies = _domain_map(table.table("tls_policies"))
    scalars = {}
    for f in dataclasses.fields(DeliveryConfig):
        if f.name in ("routes", "tls_policies"):
            continue
        default = f.default
        scalars[f.name] = table.get(f.name, type(default), default)
    table.done()
    return DeliveryConfig(routes=routes, tls_policies=policies, **scalars)
