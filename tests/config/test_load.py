"""load_config and validate on real files: what loads, and every one-line refusal."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hatoba.config.load import ConfigError, load_config
from hatoba.config.schema import (
    STANDARD_PORTS,
    AuthConfig,
    DeliveryConfig,
    DomainTls,
    LimitsConfig,
    LogConfig,
    MetricsConfig,
    SmtpConfig,
)
from hatoba.config.template import render_config
from hatoba.config.validate import is_open_relay_network

MINIMAL = """\
[server]
hostname = "mail.example.test"

[tls]
cert = "tls/server.crt"
key = "tls/server.key"
"""

OPEN_RELAY = (
    "smtp.trusted_networks: {} would make hatoba an open relay (anyone could send mail "
    "through it); list only your own networks, e.g. 192.168.1.0/24"
)


def write_setup(root: Path, text: str) -> Path:
    """A config file plus the TLS files it names (validate checks that they exist)."""
    (root / "tls").mkdir(parents=True, exist_ok=True)
    for name in ("server.crt", "server.key", "ca.crt"):
        (root / "tls" / name).write_text("placeholder\n")
    path = root / "hatoba.toml"
    path.write_text(text)
    return path


def refusal(path: Path) -> str:
    """The ConfigError message of loading `path`, checked to be one line naming the file."""
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ") or message.startswith("config file ")
    return message.removeprefix(f"{path}: ")


def test_init_template_loads_with_the_schema_defaults(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_setup(tmp_path, render_config("mail.example.test", "0.0.0.0", 0))
    config = load_config(path)
    assert caplog.records == []  # no old spellings in what init writes
    assert config.server.hostname == "mail.example.test"
    assert config.config_path == path
    assert set(config.listeners) == set(STANDARD_PORTS)
    for name, port in STANDARD_PORTS.items():
        listener = config.listeners[name]
        assert (listener.host, listener.port) == ("0.0.0.0", port)
        assert listener.enabled == (name not in ("http", "https"))  # CONTRACT: both written, off
    assert config.tls.cert == tmp_path / "tls" / "server.crt"
    assert config.tls.key == tmp_path / "tls" / "server.key"
    assert config.tls.ca_file == tmp_path / "tls" / "ca.crt"
    assert config.tls.domains == {}
    assert config.paths.data_dir == tmp_path / "data"
    assert config.limits == LimitsConfig()
    assert config.auth == AuthConfig()
    assert config.smtp == SmtpConfig()
    assert config.delivery == DeliveryConfig()
    assert config.log == LogConfig()
    assert config.metrics == MetricsConfig()
    assert config.dns.resolver == "" and config.acme.enabled is False


def test_template_with_offset_and_ipv6_bind(tmp_path: Path) -> None:
    path = write_setup(tmp_path, render_config("mail.example.test", "::1", 20000))
    config = load_config(path)
    assert {(lc.host, lc.port) for lc in config.listeners.values()} == {
        ("::1", port + 20000) for port in STANDARD_PORTS.values()
    }
    assert '"[::1]:20025"' in path.read_text()


def test_relative_paths_are_relative_to_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "etc" / "hatoba"
    write_setup(root, MINIMAL + '[paths]\ndata_dir = "../../var/mail"\n[log]\nfile = "hatoba.log"\n'
                f'[tls.domains."Example.ORG"]\ncert = "tls/server.crt"\nkey = "{root}/tls/server.key"\n')
    monkeypatch.chdir(tmp_path)  # the config is named relative to another folder
    config = load_config(Path("etc/hatoba/hatoba.toml"))
    assert config.config_path == root / "hatoba.toml"
    assert config.paths.data_dir == root / "../../var/mail"
    assert config.paths.directory_db.resolve() == (tmp_path / "var" / "mail" / "directory.sqlite3")
    assert config.log.file == root / "hatoba.log"
    assert config.tls.cert == root / "tls" / "server.crt"
    assert config.tls.ca_file is None
    assert config.tls.domains == {
        "example.org": DomainTls(cert=root / "tls" / "server.crt", key=root / "tls" / "server.key")
    }


def test_every_table_and_key(tmp_path: Path) -> None:
    path = write_setup(tmp_path, MINIMAL + """
[listeners.smtp]
address = "[::]:2525"
[listeners.submission]
address = "127.0.0.1:2587"
enabled = false
[listeners.imap]
[limits]
max_message_size = 1000000
command_timeout = 30
[smtp]
trusted_networks = ["192.168.1.0/24", "10.0.0.0/8", "2001:db8::/32", "127.0.0.1"]
bare_newline = "reject"
auth_on_smtp_port = true
[log]
level = "debug"
[delivery]
relayhost = "[smarthost.example]:587"
resolver = "127.0.0.1:5353"
tls = "verify"
retry_min = 5
[delivery.routes]
"Example.ORG" = "127.0.0.1:30025"
""")
    config = load_config(path)
    assert config.listeners["smtp"].host == "::"
    assert config.listeners["smtp"].port == 2525
    assert config.listeners["submission"].enabled is False
    assert (config.listeners["imap"].host, config.listeners["imap"].port, config.listeners["imap"].enabled) == (
        "0.0.0.0", 143, True,
    )
    assert config.limits.max_message_size == 1000000
    assert config.limits.command_timeout == 30.0 and isinstance(config.limits.command_timeout, float)
    assert config.smtp.trusted_networks == ("192.168.1.0/24", "10.0.0.0/8", "2001:db8::/32", "127.0.0.1")
    assert config.smtp.bare_newline == "reject"
    assert config.smtp.auth_on_smtp_port is True
    assert config.log.level == "DEBUG"
    assert config.delivery.relayhost == "[smarthost.example]:587"
    assert config.delivery.tls == "verify"
    assert config.delivery.retry_min == 5.0
    assert config.delivery.routes == {"example.org": "127.0.0.1:30025"}


def test_data_dir_in_server_table(tmp_path: Path) -> None:
    path = write_setup(tmp_path, MINIMAL.replace("[tls]", 'data_dir = "/srv/hatoba"\n\n[tls]'))
    assert load_config(path).paths.data_dir == Path("/srv/hatoba")
    path.write_text(path.read_text() + '[paths]\ndata_dir = "data"\n')
    assert refusal(path) == "data_dir is set in both [server] and [paths]; keep the one in [paths]"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "hatoba.toml"
    assert refusal(path) == (
        f"config file {path} not found; create one with: hatoba init DIR --hostname HOST"
    )


def test_toml_syntax_error_is_one_line(tmp_path: Path) -> None:
    path = write_setup(tmp_path, MINIMAL + "[limits\nmax_recipients = 5\n")
    assert refusal(path).startswith("invalid TOML: ")


def test_unknown_keys_and_tables(tmp_path: Path) -> None:
    cases = {
        "[smtp]\ntrusted_network = []\n": "unknown key smtp.trusted_network; did you mean smtp.trusted_networks?",
        "[limits]\nmax_recipient = 5\n": "unknown key limits.max_recipient; did you mean limits.max_recipients?",
        "[listener.smtp]\naddress = \"127.0.0.1:25\"\n": "unknown table [listener]; did you mean listeners?",
        "[listeners.smtpd]\n": "unknown listener listeners.smtpd; did you mean listeners.smtp? the listeners are "
        "smtp, submission, smtps, pop3, pop3s, imap, imaps, http, https",
        "[listeners.smtp]\nadress = \"127.0.0.1:25\"\n": "unknown key listeners.smtp.adress; did you mean "
        "listeners.smtp.address?",
        "[tls.domains.\"example.org\"]\ncert = \"a\"\nkey = \"b\"\nchain = \"c\"\n": "unknown key "
        "tls.domains.example.org.chain",
        "[delivery]\nrelay_host = \"x\"\n": "unknown key delivery.relay_host; did you mean delivery.relayhost?",
        "hostname = \"x\"\n": "unknown key hostname",
    }
    for extra, expected in cases.items():
        text = extra + MINIMAL if not extra.startswith("[") else MINIMAL + extra
        path = write_setup(tmp_path, text)
        assert refusal(path) == expected, extra


def test_wrong_types(tmp_path: Path) -> None:
    cases = {
        '[limits]\nmax_recipients = "100"\n': "limits.max_recipients must be an integer, not the string '100'",
        "[limits]\nmax_recipients = true\n": "limits.max_recipients must be an integer, not true",
        "[limits]\ncommand_timeout = \"5m\"\n": "limits.command_timeout must be a number, not the string '5m'",
        '[listeners.smtp]\nenabled = "yes"\n': "listeners.smtp.enabled must be true or false, not the string 'yes'",
        '[smtp]\ntrusted_networks = "10.0.0.0/8"\n': "smtp.trusted_networks must be a list, not the string "
        "'10.0.0.0/8'",
        "[smtp]\ntrusted_networks = [10]\n": "smtp.trusted_networks must be a list of strings; int 10 is not one",
        "[delivery.routes]\n\"example.org\" = 25\n": "delivery.routes.example.org must be a string, not int 25",
        "[log]\nlevel = 10\n": "log.level must be a string, not int 10",
        "listeners = 5\n": "listeners must be a table, not int 5",
    }
    for extra, expected in cases.items():
        text = extra + MINIMAL if not extra.startswith("[") else MINIMAL + extra
        path = write_setup(tmp_path, text)
        assert refusal(path) == expected, extra


def test_required_keys(tmp_path: Path) -> None:
    path = write_setup(tmp_path, MINIMAL.replace('hostname = "mail.example.test"\n', ""))
    assert refusal(path) == "server.hostname is missing; add it to [server]"
    path = write_setup(tmp_path, MINIMAL.split("[tls]")[0])
    assert refusal(path) == "[tls] is missing; it needs cert and key (hatoba init writes them)"
    path = write_setup(tmp_path, MINIMAL.replace('key = "tls/server.key"\n', ""))
    assert refusal(path) == "tls.key is missing; add it to [tls]"


def test_listen_addresses(tmp_path: Path) -> None:
    good = {"[::1]:2525": ("::1", 2525), "127.0.0.1:25": ("127.0.0.1", 25), "localhost:587": ("localhost", 587)}
    for address, expected in good.items():
        path = write_setup(tmp_path, MINIMAL + f'[listeners.smtp]\naddress = "{address}"\n')
        lc = load_config(path).listeners["smtp"]
        assert (lc.host, lc.port) == expected
    bad = {
        "::1:25": 'listeners.smtp.address: put an IPv6 address in brackets, e.g. "[::1]:25"',
        "127.0.0.1": "listeners.smtp.address: '127.0.0.1' has no port",
        "127.0.0.1:70000": "listeners.smtp.address: port '70000' is not a number from 1 to 65535",
        "127.0.0.1:0": "listeners.smtp.address: port '0' is not a number from 1 to 65535",
        "[mail.example]:25": "listeners.smtp.address: 'mail.example' in brackets is not an IPv6 address",
        ":25": "listeners.smtp.address: ':25' has no host",
    }
    for address, expected in bad.items():
        path = write_setup(tmp_path, MINIMAL + f'[listeners.smtp]\naddress = "{address}"\n')
        assert refusal(path).startswith(expected), address


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0", "10.0.0.0/7", "128.0.0.0/1", "2000::/3", "::ffff:0:0/96"])
def test_open_relay_networks_are_refused(tmp_path: Path, cidr: str) -> None:
    assert is_open_relay_network(cidr)
    path = write_setup(tmp_path, MINIMAL + f'[smtp]\ntrusted_networks = ["192.168.1.0/24", "{cidr}"]\n')
    assert refusal(path) == OPEN_RELAY.format(cidr)


def test_own_networks_are_accepted() -> None:
    for cidr in ("10.0.0.0/8", "192.168.1.0/24", "127.0.0.1", "2001:db8::/32", "fd00::/48", "::1/128",
                 "::ffff:10.0.0.0/104"):
        assert not is_open_relay_network(cidr), cidr
    with pytest.raises(ValueError):
        is_open_relay_network("10.0.0.0/33")


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "example.org", "10.0.0.0/8 ", "", "192.168.1.0/24,10.0.0.0/8"])
def test_bad_cidr(tmp_path: Path, cidr: str) -> None:
    path = write_setup(tmp_path, MINIMAL + f'[smtp]\ntrusted_networks = ["{cidr}"]\n')
    assert refusal(path) == (
        f"smtp.trusted_networks: {cidr!r} is not a network in CIDR notation; write e.g. 192.168.1.0/24"
    )


def test_meaning_checks(tmp_path: Path) -> None:
    cases = {
        '[smtp]\nbare_newline = "allow"\n': "smtp.bare_newline: 'allow' is not one of normalize, reject",
        '[delivery]\ntls = "none"\n': "delivery.tls: 'none' is not one of may, encrypt, verify",
        '[log]\nlevel = "loud"\n': "log.level: 'LOUD' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        "[limits]\nmax_recipients = 0\n": "limits.max_recipients: 0 must be more than 0; remove the line for the default",
        "[limits]\nmax_user_connections_per_ip = 0\n":
            "limits.max_user_connections_per_ip: 0 must be more than 0; remove the line for the default",
        "[limits]\nlogin_cache_seconds = -1\n": "limits.login_cache_seconds: -1.0 must be 0 (off) or more",
        "[limits]\nlogin_deadline = 0\n": "limits.login_deadline: 0.0 must be more than 0; remove the line for the default",
        "[limits]\nmax_command_before_login = 100\n":
            "limits.max_command_before_login: logins need up to 1024 bytes; use at least that",
        "[delivery]\nretry_min = 600\nretry_max = 60\n": "delivery.retry_max: 60 is less than delivery.retry_min (600)",
        '[listeners.smtp]\naddress = "127.0.0.1:2525"\n[listeners.submission]\naddress = "127.0.0.1:2525"\n':
            "listeners.submission: 127.0.0.1:2525 is also the address of listeners.smtp; "
            "give one of them another port or set enabled = false",
        '[listeners.smtp]\naddress = "0.0.0.0:2525"\n[listeners.submission]\naddress = "127.0.0.1:2525"\n':
            "listeners.submission: 127.0.0.1:2525 is also the address of listeners.smtp; "
            "give one of them another port or set enabled = false",
    }
    for extra, expected in cases.items():
        path = write_setup(tmp_path, MINIMAL + extra)
        assert refusal(path) == expected, extra
    path = write_setup(tmp_path, MINIMAL + "[limits]\nlogin_cache_seconds = 0\n")
    assert load_config(path).limits.login_cache_seconds == 0.0  # 0 = off
    hostname = MINIMAL.replace("mail.example.test", "mail_server.example")
    assert refusal(write_setup(tmp_path, hostname)).startswith("server.hostname: 'mail_server.example' is not a valid DNS name")


def test_same_port_on_other_addresses_or_disabled_is_fine(tmp_path: Path) -> None:
    path = write_setup(tmp_path, MINIMAL + (
        '[listeners.smtp]\naddress = "0.0.0.0:2525"\n'
        '[listeners.submission]\naddress = "[::]:2525"\n'
        '[listeners.smtps]\naddress = "127.0.0.1:2525"\nenabled = false\n'
    ))
    assert len(load_config(path).listeners) == 3


def test_missing_certificate_files(tmp_path: Path) -> None:
    path = write_setup(tmp_path, MINIMAL)
    os.unlink(tmp_path / "tls" / "server.crt")
    assert refusal(path) == (
        f"tls.cert: {tmp_path}/tls/server.crt does not exist; run hatoba init or point it at your certificate chain"
    )
    path = write_setup(tmp_path, MINIMAL.replace("tls/server.key", "tls/other.key"))
    assert refusal(path) == (
        f"tls.key: {tmp_path}/tls/other.key does not exist; run hatoba init or point it at your private key"
    )
    path = write_setup(tmp_path, MINIMAL + 'ca_file = "tls"\n')
    assert refusal(path).startswith(f"tls.ca_file: {tmp_path}/tls is not a file")


# -- [auth], and the keys of earlier versions ---------------------------------------------

PLAINTEXT_DEPRECATED = (
    "pop3.plaintext_auth_networks is deprecated; rename it to [auth] plaintext_networks "
    "(it covers POP3 110 and IMAP 143)"
)
THROTTLE_MOVED = (
    "the login throttle is now [auth] pair_failures/address_failures/account_failures, "
    "max_delay and max_block; remove the line"
)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The config warnings logged, each checked to be one line."""
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("hatoba.config")]
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    assert all("\n" not in line for line in lines)
    return lines


def test_auth_table(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_setup(tmp_path, MINIMAL + """
[auth]
plaintext_networks = ["127.0.0.1/32", "::1/128"]
pair_failures = 5
address_per_hour = 100
max_delay = 2
max_block = 60.5
known_pair_days = 7
""")
    auth = load_config(path).auth
    assert auth == AuthConfig(
        plaintext_networks=("127.0.0.1/32", "::1/128"), pair_failures=5, address_per_hour=100,
        max_delay=2.0, max_block=60.5, known_pair_days=7,
    )
    assert isinstance(auth.max_delay, float)
    assert warnings_of(caplog) == []


def test_auth_types_and_unknown_keys(tmp_path: Path) -> None:
    cases = {
        '[auth]\nmax_delay = "5s"\n': "auth.max_delay must be a number, not the string '5s'",
        "[auth]\npair_failures = 2.5\n": "auth.pair_failures must be an integer, not float 2.5",
        '[auth]\nplaintext_networks = "127.0.0.1/32"\n': "auth.plaintext_networks must be a list, not the string "
        "'127.0.0.1/32'",
        "[auth]\npair_failure = 3\n": "unknown key auth.pair_failure; did you mean auth.pair_failures?",
        "[auth]\nplaintext_auth_networks = []\n": "unknown key auth.plaintext_auth_networks; "
        "did you mean auth.plaintext_networks?",
    }
    for extra, expected in cases.items():
        assert refusal(write_setup(tmp_path, MINIMAL + extra)) == expected, extra


def test_auth_meaning_checks(tmp_path: Path) -> None:
    cases = {
        "pair_failures = 0": "auth.pair_failures: 0 must be more than 0; remove the line for the default",
        "account_per_hour = -5": "auth.account_per_hour: -5 must be more than 0; remove the line for the default",
        "max_delay = 0": "auth.max_delay: 0 must be more than 0; remove the line for the default",
        "known_pair_days = 0": "auth.known_pair_days: 0 must be more than 0; remove the line for the default",
        "max_delay = 61": "auth.max_delay: 61 is more than 60 seconds; "
        "mail programs may give up waiting for the answer before that",
        "max_block = 7200": "auth.max_block: 7200 is more than 3600 seconds; "
        "a longer block locks the account's owner out longer than it slows a guesser",
        'plaintext_networks = ["0.0.0.0/0"]': "auth.plaintext_networks: 0.0.0.0/0 would let passwords cross the "
        "Internet unencrypted; list only networks you trust, e.g. 127.0.0.1/32",
        'plaintext_networks = ["10.0.0.0/33"]': "auth.plaintext_networks: '10.0.0.0/33' is not a network in CIDR "
        "notation; write e.g. 192.168.1.0/24",
    }
    for line, expected in cases.items():
        assert refusal(write_setup(tmp_path, MINIMAL + f"[auth]\n{line}\n")) == expected, line
    path = write_setup(tmp_path, MINIMAL + "[auth]\nmax_delay = 60\nmax_block = 3600\n")
    assert (load_config(path).auth.max_delay, load_config(path).auth.max_block) == (60.0, 3600.0)


def test_old_plaintext_spelling_loads_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_setup(tmp_path, MINIMAL + '[pop3]\nplaintext_auth_networks = ["127.0.0.1/32"]\napop = false\n')
    config = load_config(path)
    assert config.auth.plaintext_networks == ("127.0.0.1/32",)
    assert config.pop3.plaintext_auth_networks == ()  # code reads auth.plaintext_networks only
    assert config.pop3.apop is False
    assert warnings_of(caplog) == [f"{path}: {PLAINTEXT_DEPRECATED}"]


def test_old_plaintext_spelling_is_checked_under_its_new_name(tmp_path: Path) -> None:
    path = write_setup(tmp_path, MINIMAL + '[pop3]\nplaintext_auth_networks = ["0.0.0.0/0"]\n')
    assert refusal(path).startswith("auth.plaintext_networks: 0.0.0.0/0 would let passwords cross the Internet")


@pytest.mark.parametrize("old, new", [('["127.0.0.1/32"]', '["127.0.0.1/32"]'), ("[]", '["::1/128"]'), ("[]", "[]")])
def test_both_plaintext_spellings_are_an_error(tmp_path: Path, old: str, new: str) -> None:
    path = write_setup(tmp_path, MINIMAL + f"[pop3]\nplaintext_auth_networks = {old}\n[auth]\nplaintext_networks = {new}\n")
    assert refusal(path) == (
        "pop3.plaintext_auth_networks and auth.plaintext_networks are both set; keep only [auth] plaintext_networks"
    )


def test_removed_limit_keys_load_with_a_warning_each(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_setup(tmp_path, MINIMAL + (
        "[limits]\nauth_failures_before_delay = 3\nauth_failures_per_ip = 10\n"
        "auth_lockout = -1\nmax_recipients = 5\n"  # any value: they are not read
    ))
    config = load_config(path)
    assert config.limits == LimitsConfig(max_recipients=5)
    assert config.auth == AuthConfig()
    assert warnings_of(caplog) == [
        f"{path}: limits.{name} is ignored; {THROTTLE_MOVED}"
        for name in ("auth_failures_before_delay", "auth_failures_per_ip", "auth_lockout")
    ]
    # Only those: other unknown keys stay errors.
    path = write_setup(tmp_path, MINIMAL + "[limits]\nauth_lockouts = 600\n")
    assert refusal(path).startswith("unknown key limits.auth_lockouts")


def test_warnings_reach_stderr_before_logging_is_set_up(tmp_path: Path) -> None:
    """`hatoba serve` reads the config before it sets up logging: the lines still reach stderr."""
    path = write_setup(tmp_path, MINIMAL + (
        '[pop3]\nplaintext_auth_networks = []\n[limits]\nauth_lockout = 600\n[auth]\nmax_delay = 100\n'
    ))
    run = subprocess.run(
        [sys.executable, "-m", "hatoba", "-c", str(path), "serve"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "HATOBA_CONFIG": ""},
    )
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        f"{path}: {PLAINTEXT_DEPRECATED}",
        f"{path}: limits.auth_lockout is ignored; {THROTTLE_MOVED}",
        f"hatoba: {path}: auth.max_delay: 100 is more than 60 seconds; "
        "mail programs may give up waiting for the answer before that",
    ]


def test_metrics_networks(tmp_path: Path) -> None:
    assert load_config(write_setup(tmp_path, MINIMAL)).metrics.networks == ("127.0.0.0/8", "::1/128")
    path = write_setup(tmp_path, MINIMAL + '[metrics]\nnetworks = ["10.1.0.0/16", "2001:db8::/48"]\n')
    assert load_config(path).metrics.networks == ("10.1.0.0/16", "2001:db8::/48")
    path = write_setup(tmp_path, MINIMAL + '[metrics]\nnetworks = ["localhost"]\n')
    assert refusal(path) == "metrics.networks: 'localhost' is not a network in CIDR notation; write e.g. 127.0.0.1/32"


def test_workers_and_the_connection_ceiling(tmp_path: Path) -> None:
    def with_server(line: str) -> str:
        return MINIMAL.replace('hostname = "mail.example.test"\n', f'hostname = "mail.example.test"\n{line}\n')

    assert load_config(write_setup(tmp_path, with_server("workers = 3"))).server.worker_count() == 3
    default = load_config(write_setup(tmp_path, MINIMAL)).server
    assert default.worker_count() == len(os.sched_getaffinity(0))
    with pytest.MonkeyPatch.context() as mp:  # a 128-core machine: no more than an explicit setting may give
        mp.setattr(os, "sched_getaffinity", lambda pid: set(range(128)))
        assert default.worker_count() == 64
    for text, words in ((with_server("workers = -1"), "server.workers"), (with_server("workers = 65"), "server.workers"),
                        (MINIMAL + "[limits]\nmax_connections = 70000\n", "limits.max_connections")):
        with pytest.raises(ConfigError, match=words):
            load_config(write_setup(tmp_path, text))


MINIMAL = '[server]\nhostname = "mail.example.test"\n[tls]\ncert = "tls/server.crt"\nkey = "tls/server.key"\n'


def test_one_dns_setting_with_its_old_name_still_read(tmp_path: Path) -> None:
    path = write_setup(tmp_path, MINIMAL + '[dns]\nresolver = "127.0.0.1:5353"\n')
    config = load_config(path)
    assert config.dns.resolver == config.delivery.resolver == "127.0.0.1:5353"
    path = write_setup(tmp_path, MINIMAL + '[delivery]\nresolver = "127.0.0.1:5354"\n')
    config = load_config(path)
    assert config.dns.resolver == config.delivery.resolver == "127.0.0.1:5354"
    path = write_setup(tmp_path, MINIMAL + '[dns]\nresolver = "127.0.0.1:1"\n[delivery]\nresolver = "127.0.0.1:2"\n')
    assert "keep only [dns] resolver" in refusal(path)


def test_a_dns_resolver_that_is_no_address_is_refused_at_load(tmp_path: Path) -> None:
    path = write_setup(tmp_path, MINIMAL + '[dns]\nresolver = "nonsense:xx"\n')
    assert refusal(path).startswith("dns.resolver: ")
    path = write_setup(tmp_path, MINIMAL + '[dns]\nresolver = "ns1.example.org:53"\n')
    assert refusal(path).startswith("dns.resolver: ")


def test_checks_take_a_policy_per_recipient_domain(tmp_path: Path) -> None:
    path = write_setup(tmp_path, MINIMAL + '[checks.domains."Example.ORG"]\nlocal_forgery = "reject"\n'
                                          '[checks.domains."school.example"]\ndmarc_reject = false\n')
    checks = load_config(path).checks
    assert checks.policy_for(("a@example.org",)) == (True, "reject")
    assert checks.policy_for(("a@school.example",)) == (False, "junk")
    assert checks.policy_for(("a@school.example", "b@example.org")) == (True, "reject")  # the strictest
    path = write_setup(tmp_path, MINIMAL + '[checks.domains."x.example"]\nlocal_forgery = "maybe"\n')
    assert "local_forgery must be one of" in refusal(path)
    path = write_setup(tmp_path, MINIMAL + '[checks.domains."x.example"]\nrejekt = true\n')
    assert "rejekt" in refusal(path)
