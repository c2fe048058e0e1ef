"""Outbound delivery against real peers on loopback: Debian's Postfix as the
remote MX (STARTTLS offered or not, right or wrong certificate name),
smtp-sink answering 4xx/5xx, a real DNS server for MX/no-MX/null-MX, and a
second hatoba as a smarthost that requires AUTH on 587."""

from __future__ import annotations

import email
import email.policy
import time
from pathlib import Path

import pytest

from hatoba.pki.ca import cert_to_pem, create_ca, issue_server_cert
from hatoba.pki.keys import key_to_pem
from interop.postfix_peer import PostfixPeer, postfix_peer_marks
from support.dnsserver import DnsServer
from support.harness import ServerThread, make_home, wait_for
from support.sink import SmtpSink, envelope_of, free_port, needs_sink

pytestmark = [
    pytest.mark.interop,
    needs_sink,
]

MESSAGE = (
    b"From: alice@example.test\r\nTo: dan@remote.example\r\nSubject: outbound\r\n"
    b"Message-ID: <outbound-1@example.test>\r\n\r\nHello, world.\r\n.leading dot\r\n"
)


@pytest.fixture
def dns():
    with DnsServer() as server:
        yield server


def outbound_home(tmp_path: Path, dns: DnsServer, mx_port: int, extra: str = "", delivery: str = ""):
    """A hatoba that looks up MX through the test DNS server and talks to MX hosts on mx_port."""
    config = (
        f'[dns]\nresolver = "{dns.address}"\n[delivery]\nmx_port = {mx_port}\nretry_min = 0.5\nretry_max = 1.0\n'
        'connect_timeout = 5.0\n' + delivery + extra
    )
    return make_home(tmp_path / "hatoba", extra_config=config)


def submit(server: ServerThread, home, rcpts: list[str], message: bytes = MESSAGE, sender: str = "alice@example.test"):
    """Send as alice through submission (STARTTLS + AUTH), as a mail client would."""
    import smtplib

    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=15) as c:
        c.starttls(context=home.client_context())
        c.login("alice@example.test", "alice-password-1")
        c.sendmail(sender, rcpts, message)


def queue_text(home) -> str:
    return home.cli("queue", "list").stdout


# -- MX lookups and bounces (smtp-sink) -----------------------------------------------------


def test_mx_delivery_in_preference_order_with_several_recipients(tmp_path, dns):
    with SmtpSink(tmp_path / "sink") as sink:
        dns.add("remote.example", "MX", "10 mx1.remote.example.")
        dns.add("remote.example", "MX", "20 mx2.remote.example.")
        dns.add("mx1.remote.example", "A", "127.0.0.1")
        dns.add("mx2.remote.example", "A", "127.0.0.2")  # never reached: mx1 answers
        home = outbound_home(tmp_path, dns, sink.port)
        with ServerThread(home) as server:
            submit(server, home, ["dan@remote.example", "eve@remote.example", "bob@example.test"])
            (dump,) = sink.wait_messages(1)
            assert len(home.wait_messages("bob@example.test", 1)) == 1
            assert wait_for(lambda: "0 message(s)" in queue_text(home), 15)
    sender, rcpts, message = envelope_of(dump)
    assert sender == "alice@example.test"
    assert sorted(rcpts) == ["dan@remote.example", "eve@remote.example"]  # one transaction
    assert b"\n.leading dot" in message  # dot-stuffing undone by the sink
    assert b"by mail.example.test (hatoba)" in message  # our Received header went along
    assert ("remote.example", "MX") in dns.queries


def test_no_mx_falls_back_to_the_address_record(tmp_path, dns):
    with SmtpSink(tmp_path / "sink") as sink:
        dns.add("plain.example", "A", "127.0.0.1")
        home = outbound_home(tmp_path, dns, sink.port)
        with ServerThread(home) as server:
            submit(server, home, ["dan@plain.example"])
            assert len(sink.wait_messages(1)) == 1


def test_ipv6_mx_host(tmp_path, dns):
    with SmtpSink(host="::1") as sink:
        dns.add("six.example", "MX", "10 mx.six.example.")
        dns.add("mx.six.example", "AAAA", "::1")
        home = outbound_home(tmp_path, dns, sink.port)
        with ServerThread(home) as server:
            submit(server, home, ["dan@six.example"])
            (dump,) = sink.wait_messages(1)
    assert envelope_of(dump)[1] == ["dan@six.example"]


def dsn_parts(stored: bytes):
    report = email.message_from_bytes(stored, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    human, status, headers = report.get_payload()
    per_message, *per_rcpt = status.get_payload()
    return report, human, per_message, per_rcpt, headers


def test_null_mx_and_unknown_domain_bounce_at_once(tmp_path, dns):
    dns.add("nullmx.example", "MX", "0 .")
    home = outbound_home(tmp_path, dns, free_port())
    with ServerThread(home) as server:
        submit(server, home, ["dan@nullmx.example", "eve@nowhere.example"])
        (stored,) = home.wait_messages("alice@example.test", 1)
    report, human, _, per_rcpt, _ = dsn_parts(stored)
    assert report["Subject"] == "Undelivered Mail Returned to Sender"
    found = {r["Final-Recipient"]: r for r in per_rcpt}
    assert found["rfc822; dan@nullmx.example"]["Status"] == "5.1.10"
    assert found["rfc822; eve@nowhere.example"]["Status"] == "5.1.2"
    assert "null MX" in human.get_content()


def test_5xx_bounces_a_dsn_into_the_senders_maildir(tmp_path, dns):
    with SmtpSink(tmp_path / "sink", reject="rcpt") as sink:
        dns.add("remote.example", "MX", "10 mx.remote.example.")
        dns.add("mx.remote.example", "A", "127.0.0.1")
        home = outbound_home(tmp_path, dns, sink.port)
        with ServerThread(home) as server:
            submit(server, home, ["dan@remote.example"])
            (stored,) = home.wait_messages("alice@example.test", 1)
            assert wait_for(lambda: "0 message(s)" in queue_text(home), 15)
    report, _, per_message, (rcpt,), headers = dsn_parts(stored)
    assert report["To"] == "alice@example.test"
    assert report["From"].addresses[0].username == "MAILER-DAEMON"
    assert b"Return-Path: <>" in stored
    assert per_message["Reporting-MTA"] == "dns; mail.example.test"
    assert rcpt["Final-Recipient"] == "rfc822; dan@remote.example"
    assert rcpt["Action"] == "failed"
    assert rcpt["Status"].startswith("5.")
    assert rcpt["Remote-MTA"] == "dns; mx.remote.example"
    assert rcpt["Diagnostic-Code"].startswith("smtp; 5")
    assert "Subject: outbound" in headers.get_content() if hasattr(headers, "get_content") else True
    assert b"Subject: outbound" in stored  # the original headers came back


def test_4xx_defers_survives_a_restart_and_delivers_when_the_peer_recovers(tmp_path, dns):
    port = free_port()
    dns.add("remote.example", "MX", "10 mx.remote.example.")
    dns.add("mx.remote.example", "A", "127.0.0.1")
    home = outbound_home(tmp_path, dns, port)
    with SmtpSink(tmp_path / "deferring", port=port, defer="rcpt"):
        with ServerThread(home) as server:
            submit(server, home, ["dan@remote.example"])
            assert wait_for(lambda: "attempts 1" in queue_text(home))
            listing = queue_text(home)
            assert "<dan@remote.example>" in listing and "last error: 4" in listing
    assert "1 message(s)" in queue_text(home)  # still queued while hatoba is down
    with SmtpSink(tmp_path / "sink", port=port) as sink:
        with ServerThread(home):
            (dump,) = sink.wait_messages(1)
            assert wait_for(lambda: "0 message(s)" in queue_text(home), 15)
    assert envelope_of(dump)[1] == ["dan@remote.example"]
    assert home.messages("alice@example.test") == []  # no bounce


def test_hold_stops_delivery_until_release(tmp_path, dns):
    port = free_port()
    dns.add("remote.example", "MX", "10 mx.remote.example.")
    dns.add("mx.remote.example", "A", "127.0.0.1")
    home = outbound_home(tmp_path, dns, port)
    with ServerThread(home) as server:
        submit(server, home, ["dan@remote.example"])  # nobody listens yet: deferred
        assert wait_for(lambda: "attempts 1" in queue_text(home))
        qid = queue_text(home).split()[0]
        assert home.cli("queue", "hold", qid).returncode == 0
        with SmtpSink(tmp_path / "sink", port=port) as sink:
            home.cli("queue", "flush")
            time.sleep(3)  # several retry periods
            assert sink.messages() == []
            assert "next held" in queue_text(home)
            assert home.cli("queue", "release", qid).returncode == 0
            assert len(sink.wait_messages(1)) == 1
            assert wait_for(lambda: "0 message(s)" in queue_text(home), 15)


def test_null_sender_is_never_bounced(tmp_path, dns):
    import smtplib

    with SmtpSink(tmp_path / "sink", reject="rcpt") as sink:
        dns.add("remote.example", "MX", "10 mx.remote.example.")
        dns.add("mx.remote.example", "A", "127.0.0.1")
        home = outbound_home(tmp_path, dns, sink.port, extra='[smtp]\ntrusted_networks = ["127.0.0.1/32"]\n')
        with ServerThread(home) as server:
            with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=15) as c:
                c.sendmail("<>", ["dan@remote.example"], MESSAGE)
            assert wait_for(lambda: "0 message(s)" in queue_text(home), 15)
            time.sleep(0.5)
    assert home.messages("postmaster@example.test") == []
    assert home.messages("alice@example.test") == []


def test_expired_message_bounces_and_delay_warning_goes_first(tmp_path, dns):
    port = free_port()  # nothing listens: every attempt fails with a connection error
    dns.add("remote.example", "MX", "10 mx.remote.example.")
    dns.add("mx.remote.example", "A", "127.0.0.1")
    extra = "max_queue_lifetime = 4.0\ndelay_warning_hours = 0.0003\n"  # about one second
    home = outbound_home(tmp_path, dns, port, delivery=extra)
    with ServerThread(home) as server:
        submit(server, home, ["dan@remote.example"])
        stored = home.wait_messages("alice@example.test", 2, timeout=20)
    assert len(stored) == 2
    subjects = sorted(email.message_from_bytes(m)["Subject"] for m in stored)
    assert subjects == ["Delayed Mail (still being retried)", "Undelivered Mail Returned to Sender"]
    final = next(m for m in stored if b"Undelivered" in m)
    _, _, _, (rcpt,), _ = dsn_parts(final)
    assert rcpt["Status"] == "4.4.7" and rcpt["Action"] == "failed"


# -- TLS policies against Postfix as the MX ------------------------------------------------


def mx_certificates(tmp_path: Path) -> dict[str, Path]:
    """A CA, and server certificates for the right MX name and for a wrong one."""
    ca_key, ca_cert = create_ca("Outbound Test CA")
    files = {"ca": tmp_path / "mxca.crt"}
    files["ca"].write_bytes(cert_to_pem(ca_cert))
    for label, name in (("right", "mx.remote.example"), ("wrong", "wrong.example")):
        key, cert = issue_server_cert(ca_key, ca_cert, name)
        files[f"{label}_cert"] = tmp_path / f"{label}.crt"
        files[f"{label}_key"] = tmp_path / f"{label}.key"
        files[f"{label}_cert"].write_bytes(cert_to_pem(cert) + cert_to_pem(ca_cert))
        files[f"{label}_key"].write_bytes(key_to_pem(key))
        files[f"{label}_key"].chmod(0o600)
    return files


def postfix_mx(tmp_path: Path, sink: SmtpSink, *, cert: Path | None, key: Path | None) -> PostfixPeer:
    """Postfix accepting mail for remote.example on a free port, passing it on to the sink."""
    extra = {"relay_domains": "remote.example", "smtpd_tls_loglevel": "1"}
    if cert is not None:
        extra |= {"smtpd_tls_security_level": "may", "smtpd_tls_cert_file": str(cert),
                  "smtpd_tls_key_file": str(key)}
    else:
        extra |= {"smtpd_tls_security_level": "none"}
    return PostfixPeer(tmp_path / "postfix", smtp_port=free_port(), relay_to=sink.address,
                       tls_level="none", hostname="mx.remote.example", main_cf_extra=extra)


def needs_postfix(test):
    for mark in postfix_peer_marks():
        test = mark(test)
    return test


def mx_zone(dns: DnsServer) -> None:
    dns.add("remote.example", "MX", "10 mx.remote.example.")
    dns.add("mx.remote.example", "A", "127.0.0.1")


@needs_postfix
@pytest.mark.parametrize("offer_tls", [True, False], ids=["starttls-offered", "no-starttls"])
def test_may_uses_starttls_when_offered_and_clear_text_otherwise(tmp_path, dns, offer_tls, caplog):
    certs = mx_certificates(tmp_path)
    mx_zone(dns)
    with SmtpSink(tmp_path / "sink") as sink:
        cert = certs["right_cert"] if offer_tls else None
        with postfix_mx(tmp_path, sink, cert=cert, key=certs["right_key"]) as peer:
            home = outbound_home(tmp_path, dns, peer.smtp_port, extra=f'[tls]\nca_file = "{certs["ca"]}"\n')
            with ServerThread(home) as server:
                submit(server, home, ["dan@remote.example"])
                (dump,) = sink.wait_messages(1, timeout=30)
            log = peer.log_text()
    assert b"Subject: outbound" in dump
    if offer_tls:
        assert "TLS connection established from" in log
    else:
        assert "TLS connection established" not in log


@needs_postfix
def test_verify_defers_on_a_wrong_name_while_may_delivers(tmp_path, dns):
    certs = mx_certificates(tmp_path)
    mx_zone(dns)
    with SmtpSink(tmp_path / "sink") as sink:
        with postfix_mx(tmp_path, sink, cert=certs["wrong_cert"], key=certs["wrong_key"]) as peer:
            strict = f'[tls]\nca_file = "{certs["ca"]}"\n[delivery.tls_policies]\n"remote.example" = "verify"\n'
            home = outbound_home(tmp_path, dns, peer.smtp_port, extra=strict)
            with ServerThread(home) as server:
                submit(server, home, ["dan@remote.example"])
                assert wait_for(lambda: "attempts 1" in queue_text(home), timeout=30)
                listing = queue_text(home)
                assert "certificate" in listing and "not trusted" in listing, listing
                assert sink.messages() == []
            # The same setup with the default policy (may) delivers, encrypted.
            may_home = outbound_home(tmp_path / "may", dns, peer.smtp_port, extra=f'[tls]\nca_file = "{certs["ca"]}"\n')
            with ServerThread(may_home) as server:
                submit(server, may_home, ["dan@remote.example"])
                assert len(sink.wait_messages(1, timeout=30)) == 1


@needs_postfix
def test_verify_delivers_to_the_right_name_and_encrypt_refuses_clear_text(tmp_path, dns, caplog):
    certs = mx_certificates(tmp_path)
    mx_zone(dns)
    with SmtpSink(tmp_path / "sink") as sink:
        with postfix_mx(tmp_path, sink, cert=certs["right_cert"], key=certs["right_key"]) as peer:
            extra = f'[tls]\nca_file = "{certs["ca"]}"\n'
            home = outbound_home(tmp_path, dns, peer.smtp_port, extra=extra, delivery='tls = "verify"\n')
            with ServerThread(home) as server:
                submit(server, home, ["dan@remote.example"])
                assert len(sink.wait_messages(1, timeout=30)) == 1
    with SmtpSink(tmp_path / "sink2") as sink:
        with postfix_mx(tmp_path / "plain", sink, cert=None, key=None) as peer:
            home = outbound_home(tmp_path / "enc", dns, peer.smtp_port, delivery='tls = "encrypt"\n')
            with ServerThread(home) as server:
                submit(server, home, ["dan@remote.example"])
                assert wait_for(lambda: "does not offer STARTTLS" in queue_text(home), timeout=30)
                assert sink.messages() == []


# -- a smarthost that requires AUTH on 587 ------------------------------------------------


def test_relayhost_with_auth_over_starttls(tmp_path, dns):
    # The smarthost: a second hatoba whose user alice may send anywhere after AUTH.
    smarthost = make_home(tmp_path / "smarthost")
    smarthost_dir = __import__("hatoba.store.directory", fromlist=["Directory"]).Directory(
        smarthost.root / "data" / "directory.sqlite3"
    )
    smarthost_dir.add_domain("far.example")
    smarthost_dir.add_user("dan@far.example", "dan-password-1")
    with ServerThread(smarthost) as relay:
        dns.add("mail.example.test", "A", "127.0.0.1")  # the smarthost's name, in its certificate
        secret = tmp_path / "relay-password"
        secret.write_text("alice-password-1\n")
        secret.chmod(0o600)
        home = make_home(tmp_path / "sender", extra_config=(
            f'[dns]\nresolver = "{dns.address}"\n[delivery]\nretry_min = 0.5\nretry_max = 1.0\n'
            f'relayhost = "[mail.example.test]:{relay.port("submission")}"\n'
            f'relayhost_username = "alice@example.test"\nrelayhost_password_file = "{secret}"\n'
            f'[tls]\nca_file = "{smarthost.ca_file}"\n'
        ))
        with ServerThread(home) as server:
            submit(server, home, ["dan@far.example"],
                   message=MESSAGE.replace(b"dan@remote.example", b"dan@far.example"))
            (stored,) = smarthost.wait_messages("dan@far.example", 1, timeout=20)
    msg = email.message_from_bytes(stored)
    assert msg["Subject"] == "outbound"
    received = msg.get_all("Received")
    # The smarthost saw an authenticated, encrypted submission from the first hatoba.
    assert "with ESMTPSA" in received[0]


# -- MTA-STS: a policy served by one hatoba, honoured by another ---------------------------


def test_delivery_to_a_domain_whose_mta_sts_policy_hatoba_serves(tmp_path, dns):
    """The receiver publishes an enforce policy on its https listener; the sender's outbound
    code delivers under what the policy demands: TLS to an MX the policy names, its
    certificate verified for that name (tls_policies "verify", the policy's effect)."""
    import subprocess

    from hatoba.store.directory import Directory
    from hatoba.web.mta_sts import policy_id, policy_text

    receiver = make_home(tmp_path / "mx", hostname="mx.far.example", domain="far.example", extra_config=(
        "[listeners.http]\nenabled = true\n[listeners.https]\nenabled = true\n[mta_sts]\nmode = \"enforce\"\n"
        f'[dns]\nresolver = "{dns.address}"\n'))
    # The sender's domain says its mail comes from here (SPF): the receiver's checks let it in.
    dns.add("example.test", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    Directory(receiver.root / "data" / "directory.sqlite3").add_user("dan@far.example", "dan-password-1")
    with ServerThread(receiver) as rx:
        https = rx.port("https")
        fetched = subprocess.run(
            ["curl", "-sS", "--fail", "--max-time", "10", "--cacert", str(receiver.ca_file), "--resolve",
             f"mta-sts.far.example:{https}:127.0.0.1", f"https://mta-sts.far.example:{https}/.well-known/mta-sts.txt"],
            capture_output=True, text=True, timeout=20)
        assert fetched.returncode == 0, fetched.stderr
        policy = dict(line.split(": ", 1) for line in fetched.stdout.splitlines())
        assert policy["mode"] == "enforce" and policy["mx"] == "mx.far.example"
        # DNS as the operator publishes it: the MX the policy names, and the policy's id.
        dns.add("far.example", "MX", "10 mx.far.example.")
        dns.add("mx.far.example", "A", "127.0.0.1")
        dns.add("_mta-sts.far.example", "TXT", f"v=STSv1; id={policy_id(policy_text(rx.config))}")
        sender = outbound_home(tmp_path / "sender", dns, rx.port("smtp"),
                               extra=f'[tls]\nca_file = "{receiver.ca_file}"\n'
                                     '[delivery.tls_policies]\n"far.example" = "verify"\n')
        with ServerThread(sender) as server:
            submit(server, sender, ["dan@far.example"], message=MESSAGE.replace(b"dan@remote.example", b"dan@far.example"))
            (stored,) = receiver.wait_messages("dan@far.example", 1, timeout=30)
    received = email.message_from_bytes(stored).get_all("Received")
    assert "with ESMTPS" in received[0]  # it came over TLS, verified for mx.far.example


# -- DKIM ------------------------------------------------------------------------------


def published_record(cli_output: str) -> tuple[str, str]:
    """(name, value) of the zone line `hatoba dkim keygen` printed."""
    import re

    line = next(l for l in cli_output.splitlines() if " IN TXT " in l)
    name, _, rest = line.partition(" IN TXT ")
    return name.rstrip("."), "".join(re.findall(r'"([^"]*)"', rest))


def dns_txt_from(server: DnsServer):
    """dkimpy's dnsfunc, answered by the test DNS server over real UDP/TCP."""
    import dns.message
    import dns.query

    def txt(name: bytes, timeout: int = 5) -> bytes:
        query = dns.message.make_query(name.decode().rstrip("."), "TXT")
        answer = dns.query.udp_with_fallback(query, "127.0.0.1", port=server.port, timeout=timeout)[0]
        for rrset in answer.answer:
            for record in rrset:
                return b"".join(record.strings)
        return b""

    return txt


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_dkim_signature_of_a_users_mail_verifies_against_the_printed_record(tmp_path, dns, algorithm):
    import dkim

    mx_zone(dns)
    with SmtpSink() as sink:
        home = outbound_home(tmp_path, dns, sink.port, extra='[smtp]\ntrusted_networks = ["127.0.0.1/32"]\n')
        keygen = home.cli("dkim", "keygen", "example.test", "--algorithm", algorithm)
        assert keygen.returncode == 0, keygen.stderr
        name, value = published_record(keygen.stdout)
        dns.add(name, "TXT", value)
        with ServerThread(home) as server:
            submit(server, home, ["dan@remote.example"])
            # The same From, relayed for a trusted network without AUTH: not ours to sign.
            import smtplib

            with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=15) as c:
                c.sendmail("alice@example.test", ["dan@remote.example"], MESSAGE.replace(b"outbound", b"relayed"))
            dumps = sink.wait_messages(2)
    signed = next(envelope_of(d)[2] for d in dumps if b"Subject: outbound" in d)
    relayed = next(envelope_of(d)[2] for d in dumps if b"Subject: relayed" in d)
    signed = signed.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert b"\r\nDKIM-Signature:" in signed.split(b"\r\n\r\n")[0]
    assert b"DKIM-Signature" not in relayed
    assert dkim.verify(signed, dnsfunc=dns_txt_from(dns))
    assert not dkim.verify(signed.replace(b"Hello, world.", b"Hello, World!"), dnsfunc=dns_txt_from(dns))


def test_relayhost_refusing_our_login_defers_instead_of_bouncing(tmp_path, dns):
    smarthost = make_home(tmp_path / "smarthost")
    with ServerThread(smarthost) as relay:
        dns.add("mail.example.test", "A", "127.0.0.1")
        home = make_home(tmp_path / "sender", extra_config=(
            f'[dns]\nresolver = "{dns.address}"\n[delivery]\nretry_min = 0.5\nretry_max = 1.0\n'
            f'relayhost = "[mail.example.test]:{relay.port("submission")}"\n'
            'relayhost_username = "alice@example.test"\nrelayhost_password = "wrong-password"\n'
            f'[tls]\nca_file = "{smarthost.ca_file}"\n'
        ))
        with ServerThread(home) as server:
            submit(server, home, ["dan@far.example"])
            assert wait_for(lambda: "refused the login" in queue_text(home), 20), queue_text(home)
            assert "1 message(s)" in queue_text(home)
    assert home.messages("alice@example.test") == []  # no bounce for our own configuration error


def test_a_bounce_that_bounces_goes_to_the_postmaster(tmp_path, dns):
    import smtplib

    with SmtpSink(reject="rcpt") as sink:  # remote.example refuses every recipient
        mx_zone(dns)
        home = outbound_home(tmp_path, dns, sink.port, extra='[smtp]\ntrusted_networks = ["127.0.0.1/32"]\n')
        with ServerThread(home) as server:
            # Relayed for a trusted client, from a sender at the refusing domain: the
            # message bounces, and so does its bounce.
            with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=15) as c:
                c.sendmail("x@remote.example", ["dan@remote.example"], MESSAGE)
            (notice,) = home.wait_messages("alice@example.test", 1, timeout=20)  # postmaster@ -> alice
            assert wait_for(lambda: "0 message(s)" in queue_text(home), 15)
            time.sleep(0.5)
    assert len(home.messages("alice@example.test")) == 1  # and nothing loops after that
    report, _, _, (rcpt,), _ = dsn_parts(notice)
    assert report["To"].addresses[0].username == "postmaster"
    assert rcpt["Final-Recipient"] == "rfc822; x@remote.example"  # the bounce's own recipient
    assert b"Undelivered Mail Returned to Sender" in notice  # the failed bounce's headers came along
