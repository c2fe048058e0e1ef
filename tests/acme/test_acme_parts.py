"""The parts of ACME that need no CA: reading ClientHellos, the challenge board,
TLS-ALPN-01 certificates, TSIG key files, when to renew, what to cover, and
the [acme] settings."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hatoba.acme import clienthello
from hatoba.acme.challenges import ACME_IDENTIFIER, ChallengeBoard, tls_alpn01_certificate
from hatoba.acme.dns_update import DnsUpdateError, read_tsig_key
from hatoba.acme.manager import backoff, covered_names, renew_time, wanted_names
from hatoba.config.load import ConfigError
from hatoba.config.schema import (
    STANDARD_PORTS, AcmeConfig, AcmeDnsUpdate, Config, ListenerConfig, PathsConfig, ServerConfig, TlsConfig,
)
from hatoba.config.validate import find_problems
from support.service import reachable_dir  # noqa: F401 - a fixture


def client_hello(server_name: str | None, alpn: list[str] | None) -> bytes:
    """The first flight of a real TLS client (Python's ssl), as a server reads it."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


# -- ClientHello --------------------------------------------------------------------------


def test_a_real_client_hello_shows_its_name_and_protocols():
    hello = clienthello.parse(client_hello("Mail.Example.ORG", ["acme-tls/1", "http/1.1"]))
    assert hello == clienthello.Hello("mail.example.org", (b"acme-tls/1", b"http/1.1"))
    assert clienthello.parse(client_hello(None, None)) == clienthello.Hello(None, ())


def test_a_hello_in_pieces_is_incomplete_until_its_record_is_whole():
    data = client_hello("mail.example.org", ["acme-tls/1"])
    for cut in (0, 1, 4, 5, 40, len(data) - 1):
        assert clienthello.parse(data[:cut]) == clienthello.INCOMPLETE
    assert isinstance(clienthello.parse(data), clienthello.Hello)


def test_what_is_no_hello_is_none_never_an_error():
    assert clienthello.parse(b"GET / HTTP/1.1\r\n\r\n") is None
    assert clienthello.parse(b"\x16\x03\x01\xff\xff") is None  # longer than one record may be
    data = bytearray(client_hello("mail.example.org", ["acme-tls/1"]))
    for at in range(5, len(data), 7):  # a length byte gone wrong anywhere
        broken = bytes(data[:at]) + bytes([data[at] ^ 0xFF]) + bytes(data[at + 1:])
        result = clienthello.parse(broken)
        assert result is None or isinstance(result, clienthello.Hello)


# -- the challenge board ------------------------------------------------------------------


def test_http01_answers_only_pending_tokens(tmp_path):
    board = ChallengeBoard()
    board.put_http01("tok-1", "tok-1.thumb")
    assert board.http01("/.well-known/acme-challenge/tok-1") == "tok-1.thumb"
    assert board.http01("/.well-known/acme-challenge/tok-2") is None
    assert board.http01("/.well-known/acme-challenge/") is None
    assert board.http01("/.well-known/acme-challenge/" + "x" * 5000) is None
    assert board.http01("/other/tok-1") is None
    board.take_down(token="tok-1")
    assert board.http01("/.well-known/acme-challenge/tok-1") is None


def test_tls_alpn01_context_is_chosen_only_for_acme_tls_and_a_pending_name(tmp_path):
    board = ChallengeBoard()
    assert not board.reads_hello()
    board.put_tls_alpn01("mail.example.org", "tok.thumb", tmp_path)
    assert board.reads_hello()
    assert list(tmp_path.iterdir()) == []  # the key went through a file that is gone
    chosen = board.context_for(client_hello("mail.example.org", ["acme-tls/1"]))
    assert isinstance(chosen, ssl.SSLContext)
    assert board.context_for(client_hello("mail.example.org", ["http/1.1"])) is None  # an ordinary client
    assert board.context_for(client_hello("other.example.org", ["acme-tls/1"])) is None
    assert board.context_for(client_hello(None, ["acme-tls/1"])) is None
    assert board.context_for(b"\x16\x03") == clienthello.INCOMPLETE
    board.take_down(name="MAIL.example.org")
    assert not board.reads_hello()


def test_the_tls_alpn01_certificate_is_what_rfc_8737_asks():
    cert_pem, _key = tls_alpn01_certificate("mail.example.org", "tok.thumb")
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert covered_names(cert) == {"mail.example.org"}
    extension = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(ACME_IDENTIFIER))
    assert extension.critical
    assert extension.value.value == b"\x04\x20" + hashlib.sha256(b"tok.thumb").digest()


# -- TSIG key files -----------------------------------------------------------------------


def test_tsig_keys_of_bind_and_of_the_one_line_form(tmp_path):
    bind = tmp_path / "bind.key"
    bind.write_text('key "acme-key" {\n\talgorithm hmac-sha256;\n\tsecret "c2VjcmV0c2VjcmV0c2VjcmV0";\n};\n')
    key = read_tsig_key(bind)
    assert (key.name, key.algorithm, key.secret) == ("acme-key", "hmac-sha256", "c2VjcmV0c2VjcmV0c2VjcmV0")
    line = tmp_path / "knot.key"
    line.write_text("# hmac-sha512:acme-key:c2VjcmV0\nkey:\n  - id: acme-key\n")
    assert read_tsig_key(line).algorithm == "hmac-sha512"
    junk = tmp_path / "junk.key"
    junk.write_text("nothing here\n")
    with pytest.raises(DnsUpdateError, match="holds no TSIG key"):
        read_tsig_key(junk)
    with pytest.raises(DnsUpdateError, match="cannot read"):
        read_tsig_key(tmp_path / "missing.key")


# -- when to renew, what to cover ---------------------------------------------------------


def leaf(days: float, names: list[str]) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(key, hashes.SHA256()))


def test_renewal_is_at_two_thirds_or_earlier_when_the_ca_says_so():
    cert = leaf(90, ["mail.example.org"])
    start = cert.not_valid_before_utc.timestamp()
    assert renew_time(cert) == start + 60 * 86400
    assert renew_time(cert, start + 10 * 86400) == start + 10 * 86400
    assert renew_time(cert, start + 80 * 86400) == start + 60 * 86400  # never later than two thirds


def test_backoff_doubles_up_to_six_hours():
    assert [backoff(n) for n in (1, 2, 3, 4)] == [60, 120, 240, 480]
    assert backoff(50) == 6 * 3600


def base_config(https: bool, **acme) -> Config:
    listeners = {name: ListenerConfig(name, "127.0.0.1", port, enabled=name != "https" or https)
                 for name, port in STANDARD_PORTS.items()}
    return Config(server=ServerConfig(hostname="Mail.Example.org"), listeners=listeners,
                  tls=TlsConfig(cert=Path("c"), key=Path("k")), paths=PathsConfig(data_dir=Path("d")),
                  acme=AcmeConfig(directory="letsencrypt", **acme))


def test_the_names_covered_follow_the_domains_while_https_is_on():
    assert wanted_names(base_config(True), ["b.example", "a.example"]) == [
        "mail.example.org", "autoconfig.a.example", "mta-sts.a.example", "autoconfig.b.example", "mta-sts.b.example"]
    assert wanted_names(base_config(False), ["a.example"]) == ["mail.example.org"]
    assert wanted_names(base_config(True, names=("x.example", "x.example")), ["a.example"]) == ["x.example"]


# -- the settings -------------------------------------------------------------------------


def acme_problems(config: Config) -> list[str]:
    return [p for p in find_problems(config) if p.startswith("acme")]


def test_settings_that_cannot_work_are_named(tmp_path):
    assert base_config(True).acme.directory_url == "https://acme-v02.api.letsencrypt.org/directory"
    http_off = dataclasses.replace(base_config(True), listeners={
        **base_config(True).listeners, "http": ListenerConfig("http", "127.0.0.1", 80, enabled=False)})
    assert any("[listeners.http] is off" in p for p in acme_problems(http_off))
    assert any("[listeners.https] is off" in p for p in acme_problems(base_config(False)))
    odd = base_config(True, contact="postmaster@example.org", challenges=("http-02",), names=("bad name",))
    problems = acme_problems(odd)
    assert any('must be a "mailto:"' in p for p in problems)
    assert any("'http-02' is not one of" in p for p in problems)
    assert any("'bad name' is not a domain name" in p for p in problems)
    dns = base_config(True, challenges=("dns-01",), dns_update=AcmeDnsUpdate(tsig_key=tmp_path / "none.key"))
    problems = acme_problems(dns)
    assert any("dns_update.server is empty" in p for p in problems)
    assert any("none.key is not a file" in p for p in problems)
    plain = dataclasses.replace(base_config(True), acme=AcmeConfig(directory="http://ca.example/dir"))
    assert any("must be an https:// URL" in p for p in acme_problems(plain))


def test_the_acme_table_loads_and_refuses_unknown_keys(tmp_path):
    from hatoba.config.load import load_config
    from support.harness import make_home

    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "ddns.key").write_text('key "k" { algorithm hmac-sha256; secret "c2VjcmV0"; };\n')
    home = make_home(tmp_path / "h", extra_config=(
        '[acme]\ndirectory = "letsencrypt-staging"\nchallenges = ["dns-01"]\n'
        '[acme.dns_update]\nserver = "127.0.0.1:53"\ntsig_key = "ddns.key"\nzone = "Example.ORG."\n'))
    config = load_config(home.config_path)
    assert config.acme.directory_url.startswith("https://acme-staging-v02")
    assert config.acme.challenges == ("dns-01",)
    assert config.acme.dns_update.tsig_key == home.root / "ddns.key"
    assert config.acme.dns_update.zone == "example.org"
    home.config_path.write_text(home.config_path.read_text().replace("directory =", "directry ="))
    with pytest.raises(ConfigError, match="did you mean acme.directory"):
        load_config(home.config_path)


# -- what a damaged setup or an odd CA must not do ---------------------------------------


def test_tsig_keys_with_weak_or_unknown_algorithms_or_binary_content_are_refused(tmp_path):
    md5 = tmp_path / "md5.key"
    md5.write_text('key "k" { algorithm hmac-md5; secret "c2VjcmV0"; };\n')
    with pytest.raises(DnsUpdateError, match="hmac-md5 is not one hatoba signs with"):
        read_tsig_key(md5)
    binary = tmp_path / "binary.key"
    binary.write_bytes(b"\xff\xfe\x00key")
    with pytest.raises(DnsUpdateError, match="binary.key is not a TSIG key file"):
        read_tsig_key(binary)


def test_the_update_server_must_be_an_address_with_a_port(tmp_path):
    key = tmp_path / "k.key"
    key.write_text('key "k" { algorithm hmac-sha256; secret "c2VjcmV0"; };\n')
    for server, words in (("192.0.2.53", "has no port"), ("ns1.example.org:53", "is a name"),
                          ("[2001:db8::53]:53", None), ("192.0.2.53:5353", None)):
        config = base_config(True, challenges=("dns-01",), dns_update=AcmeDnsUpdate(server=server, tsig_key=key))
        problems = acme_problems(config)
        if words is None:
            assert problems == [], server
        else:
            assert any(words in p for p in problems), (server, problems)


def test_any_error_of_the_library_or_the_ca_is_one_line_that_names_it():
    from acme import errors, messages
    from hatoba.acme.order import describe

    acme = AcmeConfig(directory="https://ca.example/dir")
    for exc in (KeyError('Directory field "newAccount" not found'), TypeError("'NoneType' is not subscriptable"),
                ValueError("bad\ndate"), errors.TimeoutError(), messages.Error(typ="urn:x:rateLimited", detail="slow\n down"),
                RuntimeError("")):
        text = describe(exc, acme)
        assert text and "\n" not in text, (exc, text)
    assert "does not answer as an ACME server (KeyError" in describe(KeyError("newAccount"), acme)
    assert describe(messages.Error(typ="urn:x:rateLimited", detail="slow down"), acme) == \
        "the CA refused: slow down (rateLimited)"


def test_requests_are_files_named_by_token_and_every_one_is_answered(tmp_path):
    from hatoba.acme.files import AcmeFiles

    files = AcmeFiles(tmp_path / "acme")
    files.make()
    first, second = files.write_request(), files.write_request()
    (files.folder / "renew.nonsense.request").write_text("x")  # not a token: left alone
    assert sorted(files.take_requests()) == sorted([first, second])
    assert files.take_requests() == []
    files.answer([first, second], "installed")
    answered = files.read_state()["answered"]
    assert answered[first]["result"] == answered[second]["result"] == "installed"
    for n in range(40):  # old answers go, so the file stays small
        files.answer([f"{n:016x}"], "nothing to do")
    assert len(files.read_state()["answered"]) <= 16


def test_state_is_written_beside_a_planted_symlink_never_through_it(tmp_path):
    from hatoba.acme.files import AcmeFiles

    files = AcmeFiles(tmp_path / "acme")
    files.make()
    victim = tmp_path / "victim"
    victim.write_text("root's\n")
    files.state.symlink_to(victim)
    files.write_state({"failures": 1})
    assert victim.read_text() == "root's\n"
    assert not files.state.is_symlink() and files.read_state() == {"failures": 1}


def test_a_damaged_state_file_is_read_as_empty_fields(tmp_path):
    from hatoba.acme.files import AcmeFiles, number, table

    files = AcmeFiles(tmp_path / "acme")
    files.make()
    files.state.write_text('{"ari": 5, "account": "x", "next_attempt": "soon", "failures": true}')
    state = files.read_state()
    assert table(state, "ari") == {} and table(state, "account") == {}
    assert number(state, "next_attempt") == 0 and number(state, "failures") == 0
    files.state.write_text("[1, 2]")
    assert files.read_state() == {}


def manager_for(tmp_path):
    from hatoba.acme.manager import AcmeManager
    from support.harness import make_home

    home = make_home(tmp_path / "h", extra_config=(
        "[listeners.http]\nenabled = true\n[listeners.https]\nenabled = true\n"
        "[acme]\ndirectory = \"https://127.0.0.1:9/dir\"\n"))
    config = home.config()
    reloads = []
    manager = AcmeManager(config, ChallengeBoard(), local_domains=lambda: ["example.test"],
                          reload=lambda: reloads.append(1) or True)
    manager.files.make()
    return manager


def test_an_unexpected_error_in_an_order_is_a_failure_like_any_other(tmp_path, monkeypatch):
    import asyncio

    from hatoba.acme import order

    manager = manager_for(tmp_path)

    def broken(*args, **kwargs):
        raise KeyError('Directory field "newAccount" not found')

    monkeypatch.setattr(order, "issue", broken)
    token = manager.files.write_request()
    asyncio.run(manager.tend(manager.files.take_requests()))
    state = manager.files.read_state()
    assert "ordering" not in state
    assert state["failures"] == 1 and "newAccount" in state["last_error"]
    assert state["next_attempt"] > state["last_attempt"]  # backing off
    assert state["answered"][token]["result"].startswith("failed: ")
    asyncio.run(manager.tend())  # not asked, and backing off: no second order
    assert manager.files.read_state()["failures"] == 1


def test_a_failing_renewal_information_check_never_stops_renewal(tmp_path, monkeypatch):
    import asyncio

    from cryptography.hazmat.primitives.serialization import Encoding
    from hatoba.acme import order

    manager = manager_for(tmp_path)
    manager.files.cert.write_bytes(leaf(90, ["mail.example.test"]).public_bytes(Encoding.PEM))

    def odd_ari(*args, **kwargs):
        raise TypeError("'NoneType' object is not subscriptable")

    ordered = []
    monkeypatch.setattr(order, "renewal_info", odd_ari)
    monkeypatch.setattr(order, "issue", lambda *a, **k: ordered.append(a[3]) or (_ for _ in ()).throw(
        order.AcmeError("the CA refused: no")))
    asyncio.run(manager.tend())
    state = manager.files.read_state()
    assert ordered == [["mail.example.test", "autoconfig.example.test", "mta-sts.example.test"]]
    assert state["ari"]["renew_at"] is None and state["ari"]["ask_again"] > state["last_attempt"]
    assert state["last_error"] == "the CA refused: no"


def test_names_the_ca_refuses_by_subproblem_are_left_out_and_the_rest_issued(monkeypatch):
    from acme import messages
    from hatoba.acme import order

    def problem(name: str) -> messages.Error:
        return messages.Error(typ="urn:ietf:params:acme:error:rejectedIdentifier", detail=f"{name} is blocked",
                              identifier=messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name))

    asked = []

    def fake_order(client, acme, files, key_pem, names, board):
        asked.append(list(names))
        if "mta-sts.a.example" in names:
            raise messages.Error(typ="urn:ietf:params:acme:error:rejectedIdentifier", detail="some names refused",
                                 subproblems=(problem("mta-sts.a.example"),))
        return b"CHAIN"

    monkeypatch.setattr(order, "_client", lambda acme, files: object())
    monkeypatch.setattr(order, "_order", fake_order)
    acme = AcmeConfig(directory="https://ca.example/dir")
    names = ["mail.a.example", "autoconfig.a.example", "mta-sts.a.example"]
    issued = order.issue(acme, None, b"", names, ChallengeBoard(), "mail.a.example", log_step=lambda text: None)
    assert issued.names == ["mail.a.example", "autoconfig.a.example"]
    assert "mta-sts.a.example is blocked" in issued.dropped["mta-sts.a.example"]
    assert asked == [names, names[:2]]
    # The hostname refused: no certificate, and the reason says which name and why.
    monkeypatch.setattr(order, "_order", lambda *a: (_ for _ in ()).throw(
        messages.Error(typ="urn:ietf:params:acme:error:rejectedIdentifier", detail="no", subproblems=(
            problem("mail.a.example"),))))
    with pytest.raises(order.AcmeError, match="mail.a.example: the CA refused it: mail.a.example is blocked"):
        order.issue(acme, None, b"", ["mail.a.example"], ChallengeBoard(), "mail.a.example")


def test_status_reads_damaged_files_without_a_traceback(reachable_dir):
    import os

    from cryptography.hazmat.primitives.serialization import Encoding
    from support.harness import make_home

    home = make_home(reachable_dir / "h", extra_config=(
        "[listeners.http]\nenabled = true\n[listeners.https]\nenabled = true\n"
        '[acme]\ndirectory = "https://127.0.0.1:9/dir"\n'))
    acme = home.root / "data" / "acme"
    acme.mkdir(mode=0o700)
    owner = os.stat(home.root / "data")
    os.chown(acme, owner.st_uid, owner.st_gid)
    (acme / "cert.pem").write_bytes(leaf(90, ["mail.example.test"]).public_bytes(Encoding.PEM))
    for state in ('{"last_error": "x", "last_attempt": 1e400, "next_attempt": NaN}',
                  '{"ari": {"serial": "1", "renew_at": -1e20}, "account": "x", "dropped": 5}', "[]", "garbage"):
        (acme / "state.json").write_text(state)
        done = home.cli("cert", "acme", "status")
        assert done.returncode == 0 and "Traceback" not in done.stderr, (state, done.stderr)
    (acme / "state.json").unlink()
    os.mkfifo(acme / "state.json")  # nothing waits on a FIFO placed there
    done = home.cli("cert", "acme", "status")
    assert done.returncode == 0, done.stderr


def test_root_never_acts_under_a_folder_another_user_controls(tmp_path):
    import os

    from hatoba.cli.acme import _as_service_user
    from hatoba.cli.common import CliError

    if os.geteuid() != 0:
        pytest.skip("only root drops to the service user")
    from support.service import service_account

    user = service_account()
    data = tmp_path / "data"
    (data / "acme").mkdir(parents=True)
    os.chown(data, user.uid, user.gid)  # the user's data folder, root's acme folder in it
    config = dataclasses.replace(base_config(True), server=ServerConfig(hostname="m", user="", allow_root=True))
    with pytest.raises(CliError, match="another user owns or may write it"):
        _as_service_user(config, data / "acme")
