"""The configuration schema: frozen dataclasses, every field with a safe default.

Rules:
- Nothing here reads files; load.py turns TOML into these objects.
- Config objects are immutable and passed down explicitly (no global config).
- Defaults are the secure choice; the operator opts out of safety, never in.
"""

from __future__ import annotations

import os

from dataclasses import dataclass, field
from pathlib import Path

# The standard port of each listener, and what kind of service it runs.
# RFC 8314 §3.3 (465 implicit TLS), RFC 6409 (587 submission), RFC 5321 (25).
STANDARD_PORTS: dict[str, int] = {
    "smtp": 25,
    "submission": 587,
    "smtps": 465,
    "pop3": 110,
    "pop3s": 995,
    "imap": 143,
    "imaps": 993,
    "http": 80,
    "https": 443,
}

IMPLICIT_TLS_LISTENERS = frozenset({"smtps", "pop3s", "imaps", "https"})
SMTP_LISTENERS = ("smtp", "submission", "smtps")
MAX_WORKERS = 64  # server.workers, and what 0 (one per core) gives at most


@dataclass(frozen=True)
class ListenerConfig:
    """One listening socket. `name` is one of STANDARD_PORTS."""

    name: str
    host: str
    port: int
    enabled: bool = True

    @property
    def implicit_tls(self) -> bool:
        """TLS from the first byte (465, 995, 993)."""
        return self.name in IMPLICIT_TLS_LISTENERS

    @property
    def is_submission(self) -> bool:
        """Users' own clients: AUTH required to send, TLS required before AUTH."""
        return self.name in ("submission", "smtps")


@dataclass(frozen=True)
class DomainTls:
    """A certificate chosen by SNI for one domain."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class TlsConfig:
    cert: Path  # chain file: leaf first, then intermediates
    key: Path
    ca_file: Path | None = None  # extra trust anchors for outbound verification
    domains: dict[str, DomainTls] = field(default_factory=dict)


@dataclass(frozen=True)
class LimitsConfig:
    """Explicit limits; each default is what a careful Postfix setup uses."""

    # Postfix message_size_limit is 10 MB; today's attachments need 25 MB.
    max_message_size: int = 25 * 1024 * 1024
    # RFC 5321 §4.5.3.1.4: 512 octets for a command line; we allow more for
    # long AUTH lines (SASL-IR) but cap every line.
    max_command_line: int = 4096
    # RFC 5321 §4.5.3.1.6: 1000 octets for a text line; real mail breaks it,
    # so (like Postfix line_length_limit) longer lines are accepted up to this.
    max_data_line: int = 1_000_000
    max_recipients: int = 100
    command_timeout: float = 300.0  # RFC 5321 §4.5.3.2.7: at least 5 minutes
    data_timeout: float = 600.0
    # Before the first command (greeting wait) the client gets less patience.
    max_connections: int = 1000
    # Connections from one client address that have not logged in (every
    # port-25 session, and users' sessions before their login): Postfix's
    # smtpd_client_connection_count_limit is 50. A connection that logs in
    # leaves this count for max_user_connections_per_ip, so an office behind
    # one NAT address is limited per person, not per building.
    max_connections_per_ip: int = 50
    # Logged-in connections of one account from one address (Dovecot's
    # mail_max_userip_connections); a mail program keeps up to 5 per account.
    max_user_connections_per_ip: int = 10
    # Per client address on port 25 (mail from other servers; not trusted
    # networks, not logged-in users), counted by every worker together:
    # connections and messages (MAIL FROM) in the last minute; 0 = no limit
    # (Postfix's smtpd_client_connection_rate_limit and _message_rate_limit).
    client_connection_rate: int = 0
    client_message_rate: int = 0
    # Recipients that do not exist, from one address in the last 10 minutes,
    # after which every RCPT it sends is answered more slowly (a second more
    # each, up to 10): guessing addresses (directory harvesting) gets slow.
    unknown_recipient_limit: int = 10
    max_bad_commands: int = 20  # Postfix smtpd_hard_error_limit
    max_commands_per_session: int = 10000
    # Seconds a verified login is remembered in memory, so a client that logs
    # in again skips the Argon2 check (Dovecot auth_cache_ttl); 0 = off.
    login_cache_seconds: float = 300.0
    # -- Clients that have not logged in (hostile ones among them) ----------
    # Seconds from connect until the client has logged in; on port 25, where
    # servers never log in, until its first MAIL FROM is accepted. Idle
    # timeouts restart with every byte; this one does not, so a client that
    # drips a byte at a time is closed too. Real clients need seconds.
    login_deadline: float = 120.0
    # Seconds for a TLS handshake (ports 465, 995, 993, and STARTTLS/STLS).
    # The connection counts against the limits above from accept on.
    tls_handshake_timeout: float = 30.0
    # Bytes of one IMAP command before login, its line and literals together
    # (Dovecot's login process reads a few KiB): logins need no more, and a
    # stranger cannot make the server hold megabytes.
    max_command_before_login: int = 8192
    # The MIME structure read from one message (FETCH BODYSTRUCTURE and
    # BODY[1.2], SEARCH BODY/TEXT): parts in all, and levels of nesting, as
    # Dovecot's 10,000 and 100. Past them the rest of the message is one
    # opaque part (application/octet-stream): a message of 100,000 tiny parts
    # costs what 10,000 do, not minutes and gigabytes.
    max_mime_parts: int = 10_000
    max_mime_depth: int = 100
    # Data items one IMAP FETCH may name (a macro counts as the items it
    # stands for). Clients name a handful, or one per MIME part of a message;
    # a 64 KB command line could name one 25 MB message 9,000 times. Each
    # answer is streamed whatever its size: this bounds the work one command
    # asks for. A FETCH naming more gets NO [LIMIT].
    max_fetch_items: int = 1000
    # Bytes the queue's file system must keep free to take a new message
    # (Postfix queue_minfree); 0 = 1.5 x max_message_size, Postfix's rule.
    # With less free, MAIL FROM gets "452 4.3.1 Insufficient system storage",
    # and so does a SIZE= larger than what is free beyond this reserve.
    queue_min_free: int = 0
    # Seconds a client of the http listener has to send its whole request
    # head, however slowly it drips in; then 408 and close (net/http_server.py).
    http_request_timeout: float = 10.0

    @property
    def queue_reserve(self) -> int:
        """queue_min_free, or its default worked out."""
        return self.queue_min_free or self.max_message_size * 3 // 2


@dataclass(frozen=True)
class AuthConfig:
    """Logins on every protocol (SMTP AUTH, POP3, IMAP): see net/login.py."""

    # Networks (CIDR) whose clients may log in before TLS on POP3 110 and
    # IMAP 143. Empty by default: passwords never cross an unencrypted channel.
    # (Replaces pop3.plaintext_auth_networks, still read with a warning.)
    plaintext_networks: tuple[str, ...] = ()
    # The login throttle (policy/auth_throttle.py). Failed logins are counted
    # per (address, account), per client address across accounts (password
    # spraying) and per account across addresses (distributed guessing).
    # Each scope allows `*_failures` failures at once, then one more each
    # 3600 / `*_per_hour` seconds; past that its tries are refused for a short,
    # growing time (at most max_block seconds). Answers to failed logins are
    # slowed down, at most max_delay seconds, on that connection only.
    # The address and account scopes have room for an office's worth of
    # typos at once (100) but let at most 290 guesses an hour through.
    pair_failures: int = 10
    pair_per_hour: int = 90
    address_failures: int = 100
    address_per_hour: int = 190
    account_failures: int = 100
    account_per_hour: int = 190
    max_delay: float = 15.0
    max_block: float = 300.0
    # An (address, account) that logged in within this many days is not
    # refused for failures of other accounts from its address, nor for
    # failures from other addresses against its account.
    known_pair_days: int = 30


@dataclass(frozen=True)
class SmtpConfig:
    # No AUTH on port 25: it is for other servers, which never log in.
    auth_on_smtp_port: bool = False
    # Networks (CIDR) whose clients may relay without AUTH (Postfix mynetworks).
    trusted_networks: tuple[str, ...] = ()
    # On submission, MAIL FROM must be the login or an alias pointing to it.
    restrict_sender_to_login: bool = True
    # Show the authenticated login in the Received header (Postfix
    # smtpd_sasl_authenticated_header, off by default for privacy).
    received_shows_login: bool = False
    # Bare LF / bare CR in DATA (CVE-2023-51764): "reject" answers 554 like
    # Postfix smtpd_forbid_bare_newline=reject; "normalize" turns them into
    # CRLF (Postfix's "normalize", its default since 3.9).
    bare_newline: str = "normalize"
    # Allowed AUTH on cleartext connections (never recommended).
    allow_plaintext_auth: bool = False
    # POP-before-SMTP (legacy): after a POP3 or IMAP login from an address,
    # clients at that address may relay on port 25 for this many minutes.
    # 0 = off. Prefer AUTH on 587/465: an address is not a person.
    pop_before_smtp_minutes: int = 0


@dataclass(frozen=True)
class Pop3Config:
    # Deprecated spelling of auth.plaintext_networks (load.py moves it there).
    plaintext_auth_networks: tuple[str, ...] = ()
    # Offer APOP (RFC 1939 §7) to users who have an APOP secret (hatoba user apop).
    apop: bool = True
    # Failed logins before the connection is closed.
    max_auth_failures: int = 3


@dataclass(frozen=True)
class ImapConfig:
    # Storage per user in MiB across all folders (0 = no limit); `hatoba user
    # quota ADDRESS MIB|none|default` gives one user their own. Enforced on
    # APPEND and COPY (NO [OVERQUOTA]) and on delivery (kept in the queue and
    # retried while the mailbox is full, as Dovecot's quota_full_tempfail).
    quota_mb: int = 0


@dataclass(frozen=True)
class PathsConfig:
    data_dir: Path

    @property
    def directory_db(self) -> Path:
        return self.data_dir / "directory.sqlite3"

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    @property
    def queue_dir(self) -> Path:
        return self.data_dir / "queue"

    @property
    def secrets_key(self) -> Path:
        """The key that seals secrets the server must read back (APOP)."""
        return self.data_dir / "secrets.key"

    @property
    def dkim_dir(self) -> Path:
        """DKIM signing keys: DOMAIN/SELECTOR.key, and DOMAIN/selector naming the one in use."""
        return self.data_dir / "dkim"


@dataclass(frozen=True)
class LogConfig:
    level: str = "INFO"
    file: Path | None = None  # besides stderr


@dataclass(frozen=True)
class DeliveryConfig:
    # Smarthost "[host]:port" (brackets: no MX lookup, as in Postfix); empty =
    # deliver by MX. Port 465 means implicit TLS, any other port STARTTLS.
    relayhost: str = ""
    # Credentials for the relayhost (SMTP AUTH, only ever sent over TLS).
    # The password may instead live in relayhost_password_file (mode 0600):
    # one line, the password.
    relayhost_username: str = ""
    relayhost_password: str = ""
    relayhost_password_file: str = ""
    # TLS towards the relayhost: "" = verify when credentials are set (a
    # password must not go to an impostor), else the default policy below.
    relayhost_tls: str = ""
    # The old name of [dns] resolver, still read; load.py keeps the two equal.
    resolver: str = ""
    # Outbound TLS by default: may (STARTTLS when offered), encrypt (STARTTLS
    # must succeed), verify (and the certificate must match the MX name).
    tls: str = "may"
    # Per destination domain TLS policy, overriding `tls` ("example.org" = "verify").
    tls_policies: dict[str, str] = field(default_factory=dict)
    # Per destination domain next hop, overriding MX ("example.org" = "[10.0.0.5]:25").
    routes: dict[str, str] = field(default_factory=dict)
    # The port of MX hosts (25 on the Internet; other values for lab setups).
    mx_port: int = 25
    # Retry schedule for temporary failures, in seconds.
    retry_min: float = 60.0
    retry_max: float = 4 * 3600.0
    max_queue_lifetime: float = 5 * 24 * 3600.0
    # Tell the sender when a message has waited this long (0 = never), as
    # Postfix delay_warning_time.
    delay_warning_hours: float = 0.0
    # Connections at once to one destination domain (Postfix
    # default_destination_concurrency_limit) and recipients per transaction.
    destination_concurrency: int = 20
    max_recipients_per_transaction: int = 50
    connect_timeout: float = 30.0
    command_timeout: float = 300.0
    # Idle outbound connections are kept this long for the next message.
    connection_reuse_seconds: float = 5.0
    # Where bounces that cannot be delivered go; "" = postmaster@ the first local domain.
    postmaster: str = ""


@dataclass(frozen=True)
class DnsConfig:
    # The DNS server "host:port" for every lookup (MX, A/AAAA, TXT, SRV, TLSA, SPF,
    # DKIM, DMARC, blocklists); empty = the system's (/etc/resolv.conf).
    resolver: str = ""


LOCAL_FORGERY_ACTIONS = ("junk", "reject", "accept")


@dataclass(frozen=True)
class DomainChecks:
    """[checks.domains."DOMAIN"]: the policy for mail to one local domain; None = [checks]'s."""

    dmarc_reject: bool | None = None
    local_forgery: str | None = None


@dataclass(frozen=True)
class ChecksConfig:
    # Judge mail from other servers (port 25, no login, not from smtp.trusted_networks):
    # SPF, DKIM, DMARC and ARC, written down in an Authentication-Results field.
    enabled: bool = True
    # A DMARC p=reject of the From domain is honoured: 550 5.7.1 at the end of DATA.
    # false = such mail goes to Junk instead.
    dmarc_reject: bool = True
    # Mail from outside whose From is one of our own domains and does not pass
    # DMARC: "junk" (delivered to Junk), "reject" (550 5.7.1), "accept" (fields only).
    local_forgery: str = "junk"
    # Forwarders and mailing lists (the d= of their ARC-Seal) whose ARC pass
    # overrides a DMARC failure: their members' mail is delivered as usual.
    trusted_arc_sealers: tuple[str, ...] = ()
    # hatoba's own spam score (X-Spam-Score) from which mail goes to Junk.
    junk_score: float = 5.0
    # Seconds the lookups of one message may take in all; checks not done by
    # then count as temperror and the message is accepted.
    timeout: float = 10.0
    # rspamd's normal worker ("http://127.0.0.1:11333"): its verdict replaces
    # hatoba's own score; "" = hatoba's checks alone. When rspamd is down, they judge.
    rspamd_url: str = ""
    # Its controller ("http://127.0.0.1:11334") and password, for learning from
    # what users move into and out of Junk; "" = no learning.
    rspamd_controller_url: str = ""
    rspamd_password: str = ""
    # What rspamd says to reject is refused (550) instead of delivered to Junk.
    rspamd_reject: bool = False
    # DNS blocklists and allowlists of client addresses, as Postfix's
    # postscreen_dnsbl_sites writes them: "zen.spamhaus.org*3",
    # "list.dnswl.org=127.0.[0..255].[1..3]*-2". Empty = none asked.
    dnsbl: tuple[str, ...] = ()
    # A client whose weights add up to this is refused at RCPT (550 5.7.1);
    # a lower positive sum counts towards Junk.
    dnsbl_threshold: float = 1.0
    # Greylisting: a new (client network, sender, recipient) waits `greylist_delay`
    # seconds (451 4.7.1) unless SPF or DKIM authenticates its sender; off by default.
    greylisting: bool = False
    greylist_delay: float = 300.0
    greylist_window_hours: float = 48.0  # how long a first attempt waits for its retry
    greylist_keep_days: float = 35.0  # how long a triplet that passed stays let through
    greylist_auto_allow: int = 5  # a client network that passed this often skips it (0 = never)
    # Seconds port 25 waits before its greeting: a client that talks first is a
    # spam program, not an MTA (RFC 5321 §4.3.1), and is refused. Every
    # connection from outside waits that long; 0 = no pause.
    greet_pause: float = 0.0
    # DMARC aggregate reports (RFC 7489 §7.2) to the domains that ask for them
    # (rua=), once a day: who sent mail in their name, and how it fared.
    dmarc_reports: bool = False
    dmarc_report_from: str = ""  # the reports' From; "" = dmarc-reports@HOSTNAME
    # Per recipient domain: [checks.domains."example.org"] dmarc_reject / local_forgery.
    # A message to several domains gets the strictest of their policies.
    domains: dict[str, DomainChecks] = field(default_factory=dict)

    def policy_for(self, recipients: tuple[str, ...]) -> tuple[bool, str]:
        """(dmarc_reject, local_forgery) for a message to `recipients`: each recipient domain's
        own setting where it has one, else [checks]'s; the strictest of them."""
        order = ("accept", "junk", "reject")
        rejects, forgeries = [], []
        for rcpt in recipients or ("",):
            own = self.domains.get(rcpt.rpartition("@")[2].lower(), DomainChecks())
            rejects.append(self.dmarc_reject if own.dmarc_reject is None else own.dmarc_reject)
            forgeries.append(self.local_forgery if own.local_forgery is None else own.local_forgery)
        return any(rejects), max(forgeries, key=order.index)


@dataclass(frozen=True)
class DkimConfig:
    # Sign mail sent by authenticated users when the From domain has a key
    # (hatoba dkim keygen DOMAIN). Keys live in data/dkim/.
    sign: bool = True


@dataclass(frozen=True)
class MetricsConfig:
    # Networks (CIDR) whose clients may read /metrics and /healthz on the
    # http listener; everyone else gets 403. Loopback only by default: the
    # figures tell a stranger how busy the server is and when it is down.
    networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


MTA_STS_MODES = ("testing", "enforce", "none")


@dataclass(frozen=True)
class MtaStsConfig:
    # Our MTA-STS policy (RFC 8461), served on the https listener at
    # https://mta-sts.DOMAIN/.well-known/mta-sts.txt. "testing": senders
    # report TLS failures (TLS-RPT, RFC 8460) but deliver anyway; "enforce"
    # once the reports are clean and the certificate is publicly trusted;
    # "none" withdraws a policy published before.
    mode: str = "testing"
    max_age: int = 604800  # seconds senders keep the policy (one week; at most a year)


# Short names for the directories most operators want (acme.directory).
ACME_DIRECTORIES = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
ACME_CHALLENGES = ("http-01", "tls-alpn-01", "dns-01")


@dataclass(frozen=True)
class AcmeDnsUpdate:
    """Where DNS-01 records are written: RFC 2136 dynamic updates, signed with TSIG (RFC 8945)."""

    server: str = ""  # "host:port" of the primary server that takes updates
    # A TSIG key file as tsig-keygen, ddns-confgen or `keymgr -t` write it:
    # key "NAME" { algorithm hmac-sha256; secret "BASE64"; };
    tsig_key: Path | None = None
    zone: str = ""  # "" = the zone the server holds the name in (asked by SOA)


@dataclass(frozen=True)
class AcmeConfig:
    # The CA's directory URL (RFC 8555 §7.1.1), or "letsencrypt" /
    # "letsencrypt-staging"; "" = ACME off (the certificate of [tls] is served).
    directory: str = ""
    contact: str = ""  # "mailto:postmaster@example.org": the CA writes before expiry or revocation
    ca_file: Path | None = None  # extra trust anchors for the CA's own HTTPS (a test or private CA)
    # Tried in this order for each name: http-01 (the http listener on port 80),
    # tls-alpn-01 (the https listener on 443), dns-01 ([acme.dns_update]).
    challenges: tuple[str, ...] = ("http-01", "tls-alpn-01")
    # The names the certificate covers; empty = the hostname, and autoconfig.DOMAIN
    # and mta-sts.DOMAIN of each local domain while the https listener is on.
    names: tuple[str, ...] = ()
    dns_update: AcmeDnsUpdate = field(default_factory=AcmeDnsUpdate)

    @property
    def enabled(self) -> bool:
        return bool(self.directory)

    @property
    def directory_url(self) -> str:
        return ACME_DIRECTORIES.get(self.directory, self.directory)


@dataclass(frozen=True)
class ServerConfig:
    hostname: str
    # Where postmaster@ and abuse@ of every local domain, and the bare
    # <Postmaster>, go when no alias says otherwise (RFC 5321 §4.5.1, RFC 2142).
    # "" = the first user added to the directory.
    postmaster: str = ""
    # Started as root, `serve` binds its ports, opens its log, then runs as
    # this user (and its delivery process too). "" = stay as started. Started
    # as another user, it runs as that user whatever this says.
    user: str = "hatoba"
    # The group to run as; "" = the user's primary group.
    group: str = ""
    # Keep running as root (user = "" or "root" while started as root).
    # Never on a server others can reach: any bug is then a root compromise.
    allow_root: bool = False
    # Processes that serve connections (SMTP, POP3, IMAP), each on a core of its
    # own; 0 = one per core this process may run on.
    workers: int = 0

    def worker_count(self) -> int:
        """The number of serving processes `workers` stands for on this machine."""
        if self.workers > 0:
            return self.workers
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # not Linux
            cores = os.cpu_count() or 1
        return min(MAX_WORKERS, max(1, cores))


@dataclass(frozen=True)
class Config:
    server: ServerConfig
    listeners: dict[str, ListenerConfig]
    tls: TlsConfig
    paths: PathsConfig
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    pop3: Pop3Config = field(default_factory=Pop3Config)
    imap: ImapConfig = field(default_factory=ImapConfig)
    log: LogConfig = field(default_factory=LogConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    dkim: DkimConfig = field(default_factory=DkimConfig)
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    mta_sts: MtaStsConfig = field(default_factory=MtaStsConfig)
    acme: AcmeConfig = field(default_factory=AcmeConfig)
    config_path: Path | None = None
