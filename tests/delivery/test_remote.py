"""Remote delivery pieces: next-hop syntax, TLS policy lookup, and RemoteDelivery
against smtp-sink on loopback (connection reuse, recipient batches, SMTPUTF8)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from hatoba.config.schema import DeliveryConfig
from hatoba.delivery.nexthop import NextHopError, next_hop_for, parse_next_hop
from hatoba.delivery.remote import RemoteDelivery
from hatoba.delivery.tlspolicy import TlsPolicyLookup
from hatoba.queue.spool import Envelope, QueuedMessage
from support.harness import make_home
from support.sink import SmtpSink, envelope_of, needs_sink


@pytest.mark.parametrize(
    "text, host, port, mx, implicit",
    [
        ("[smtp.isp.example]:587", "smtp.isp.example", 587, False, False),
        ("smtp.isp.example:465", "smtp.isp.example", 465, True, True),
        ("Relay.Example.", "relay.example", 25, True, False),
        ("192.0.2.7:2525", "192.0.2.7", 2525, False, False),
        ("[2001:db8::1]:25", "2001:db8::1", 25, False, False),
        ("2001:db8::1", "2001:db8::1", 25, False, False),
    ],
)
def test_next_hop_syntax_follows_postfix(text, host, port, mx, implicit):
    hop = parse_next_hop(text, default_port=25, kind="route")
    assert (hop.host, hop.port, hop.mx_lookup, hop.implicit_tls) == (host, port, mx, implicit)


@pytest.mark.parametrize("text", ["", "[host", "[host]x", "host:99999", "host:port", ":25"])
def test_bad_next_hops_say_why(text):
    with pytest.raises(NextHopError):
        parse_next_hop(text, default_port=25, kind="route")


def test_route_wins_over_relayhost_which_wins_over_mx():
    delivery = DeliveryConfig(relayhost="[smart.example]:587", routes={"lab.example": "10.0.0.5:25"})
    assert next_hop_for("LAB.example", delivery).kind == "route"
    relay = next_hop_for("other.example", delivery)
    assert relay.relayhost and relay.host == "smart.example" and not relay.mx_lookup
    mx = next_hop_for("other.example", DeliveryConfig(mx_port=2525))
    assert (mx.kind, mx.host, mx.port, mx.mx_lookup) == ("mx", "other.example", 2525, True)


def test_tls_policy_sources_in_order():
    delivery = DeliveryConfig(
        tls="may", tls_policies={"bank.example": "verify", ".corp.example": "encrypt"},
        relayhost="[smart.example]:587", relayhost_username="me",
    )
    lookup = TlsPolicyLookup(delivery)
    hop = next_hop_for("x.example", DeliveryConfig())

    async def level(domain, hop=hop):
        return (await lookup.lookup(domain, hop)).level

    assert asyncio.run(level("bank.example")) == "verify"
    assert asyncio.run(level("mail.corp.example")) == "encrypt"
    assert asyncio.run(level("corp.example")) == "may"  # ".corp.example" covers subdomains only
    assert asyncio.run(level("x.example")) == "may"
    relay_hop = next_hop_for("x.example", delivery)
    assert asyncio.run(level("x.example", relay_hop)) == "verify"  # a password goes there
    relaxed = TlsPolicyLookup(dataclasses.replace(delivery, relayhost_tls="encrypt"))
    assert asyncio.run(relaxed.lookup("x.example", relay_hop)).level == "encrypt"


def queued(tmp_path: Path, recipients: tuple[str, ...], *, smtputf8: bool = False) -> tuple[QueuedMessage, bytes]:
    body = b"From: a@example.test\r\nSubject: remote\r\n\r\nbody\r\n"
    path = tmp_path / "msg"
    path.write_bytes(body)
    envelope = Envelope(mail_from="a@example.test", recipients=recipients, received_at=time.time(),
                        smtputf8=smtputf8)
    return QueuedMessage("0" * 19, envelope, path, len(body)), body


@needs_sink
def test_connections_are_reused_and_recipients_batched(tmp_path):
    with SmtpSink() as sink:
        home = make_home(tmp_path / "home", extra_config=(
            f'[delivery]\nmax_recipients_per_transaction = 2\n[delivery.routes]\n"far.example" = "{sink.address}"\n'
        ))
        config = home.config()

        async def run():
            remote = RemoteDelivery(config)
            remote.start()
            rcpts = ("a@far.example", "b@far.example", "c@far.example")
            message, data = queued(tmp_path, rcpts)
            first = await remote.deliver(message, rcpts, data)
            second = await remote.deliver(message, rcpts[:1], data)
            idle = [c for conns in remote.pool._idle.values() for c in conns]
            await remote.close()
            return first, second, idle

        first, second, idle = asyncio.run(run())
        assert all(o.delivered for o in first + second)
        dumps = sink.wait_messages(3)
    batches = sorted(len(envelope_of(d)[1]) for d in dumps)
    assert batches == [1, 1, 2]  # 3 recipients in transactions of at most 2, then 1 more message
    assert len(idle) == 1 and idle[0].transactions == 3  # one connection carried all three


@needs_sink
def test_smtputf8_message_to_a_server_without_it_bounces(tmp_path):
    with SmtpSink() as sink:
        home = make_home(tmp_path / "home", extra_config=f'[delivery.routes]\n"far.example" = "{sink.address}"\n')

        async def run():
            remote = RemoteDelivery(home.config())
            message, data = queued(tmp_path, ("ü@far.example",), smtputf8=True)
            outcomes = await remote.deliver(message, ["ü@far.example"], data)
            await remote.close()
            return outcomes

        (outcome,) = asyncio.run(run())
    # smtp-sink does not announce SMTPUTF8 (RFC 6531 §3.2: then the message cannot be relayed).
    assert outcome.bounced and outcome.reply.enhanced == "5.6.7"
    assert "SMTPUTF8" in outcome.reply.text


def remote_for(tmp_path: Path, routes: dict[str, str], extra: str = "") -> RemoteDelivery:
    lines = "".join(f'"{d}" = "{t}"\n' for d, t in routes.items())
    home = make_home(tmp_path / "home", extra_config=f"[delivery.routes]\n{lines}" + extra)
    return RemoteDelivery(home.config())


def deliver(remote: RemoteDelivery, message: QueuedMessage, data: bytes, recipients) -> list:
    async def run():
        remote.start()
        try:
            return [await remote.deliver(message, list(r), data) for r in recipients]
        finally:
            await remote.close()

    return asyncio.run(run())


def test_enhanced_status_must_match_the_reply_class():
    from hatoba.delivery.smtp_client import Reply

    assert Reply(550, "5.1.1 unknown").enhanced == "5.1.1"
    assert Reply(550, "2.1.5 ok?").enhanced == "5.0.0"
    assert Reply(550, "5.1234.1 odd").enhanced == "5.0.0"
    assert Reply(451, "try later").enhanced == "4.0.0"


@needs_sink
def test_refused_data_leaves_the_pooled_connection_clean(tmp_path):
    with SmtpSink(defer="data") as sink:
        remote = remote_for(tmp_path, {"far.example": sink.address})
        message, data = queued(tmp_path, ("a@far.example",))
        first, second = deliver(remote, message, data, [["a@far.example"], ["b@far.example"]])
    assert first[0].reply.code // 100 == 4 and second[0].reply.code // 100 == 4
    assert "nested" not in second[0].reply.text.lower() and second[0].reply.code != 503


@needs_sink
def test_552_to_rcpt_means_try_later(tmp_path):
    with SmtpSink(reject="rcpt", hard_reply="552 5.5.3 Too many recipients") as sink:
        remote = remote_for(tmp_path, {"far.example": sink.address})
        message, data = queued(tmp_path, ("a@far.example",))
        ((outcome,),) = deliver(remote, message, data, [["a@far.example"]])
    assert outcome.reply.code == 452 and outcome.reply.temporary and not outcome.bounced


@needs_sink
def test_non_ascii_forward_without_smtputf8_bounces_instead_of_crashing(tmp_path):
    with SmtpSink() as sink:
        remote = remote_for(tmp_path, {"far.example": sink.address})
        message, data = queued(tmp_path, ("a@far.example",))  # an ASCII message, forwarded to ü@
        ((outcome,),) = deliver(remote, message, data, [["ü@far.example"]])
    assert outcome.bounced and outcome.reply.enhanced == "5.6.7"


def test_a_looping_message_bounces(tmp_path):
    remote = remote_for(tmp_path, {"far.example": "[127.0.0.1]:1"})
    message, body = queued(tmp_path, ("a@far.example",))
    data = b"".join(b"Received: from h%d by x; now\r\n" % i for i in range(51)) + body
    ((outcome,),) = deliver(remote, message, data, [["a@far.example"]])
    assert outcome.bounced and outcome.reply.enhanced == "5.4.6"


@needs_sink
def test_5xx_greeting_moves_on_to_the_next_mx_host(tmp_path):
    from support.dnsserver import DnsServer
    from support.fakesmtp import ScriptedSmtp

    with DnsServer() as dns, ScriptedSmtp(greeting="554 5.7.1 go away") as rude:
        # Two MX hosts on one port (mx_port): the rude one on 127.0.0.1 first, smtp-sink on 127.0.0.2.
        dns.add("far.example", "MX", "10 rude.far.example.")
        dns.add("far.example", "MX", "20 good.far.example.")
        dns.add("rude.far.example", "A", "127.0.0.1")
        dns.add("good.far.example", "A", "127.0.0.2")
        with SmtpSink(host="127.0.0.2", port=rude.port) as good:
            remote = remote_for(tmp_path, {}, extra=f'[dns]\nresolver = "{dns.address}"\n[delivery]\nmx_port = {rude.port}\n')
            message, data = queued(tmp_path, ("a@far.example",))
            ((outcome,),) = deliver(remote, message, data, [["a@far.example"]])
            assert outcome.delivered, outcome
            assert outcome.remote_mta == "good.far.example"
            assert len(good.wait_messages(1)) == 1
        assert rude.sessions == 1


def test_refused_starttls_under_may_falls_back_to_clear_text(tmp_path):
    from support.fakesmtp import ScriptedSmtp

    with ScriptedSmtp(starttls_reply="454 4.7.0 TLS not available") as peer:
        remote = remote_for(tmp_path, {"far.example": f"127.0.0.1:{peer.port}"})
        message, data = queued(tmp_path, ("a@far.example",))
        ((outcome,),) = deliver(remote, message, data, [["a@far.example"]])
    assert outcome.delivered
    assert peer.sessions == 2 and len(peer.messages) == 1  # the second session, in clear


def test_refused_starttls_under_encrypt_defers(tmp_path):
    from support.fakesmtp import ScriptedSmtp

    with ScriptedSmtp(starttls_reply="454 4.7.0 TLS not available") as peer:
        remote = remote_for(tmp_path, {"far.example": f"127.0.0.1:{peer.port}"},
                            extra='[delivery.tls_policies]\n"far.example" = "encrypt"\n')
        message, data = queued(tmp_path, ("a@far.example",))
        ((outcome,),) = deliver(remote, message, data, [["a@far.example"]])
    assert outcome.reply.temporary and not outcome.delivered and peer.messages == []


def test_our_own_host_as_best_mx_bounces_as_a_loop(tmp_path):
    from support.dnsserver import DnsServer

    with DnsServer() as dns:
        dns.add("far.example", "MX", "10 mail.example.test.")  # make_home's server.hostname
        remote = remote_for(tmp_path, {}, extra=f'[dns]\nresolver = "{dns.address}"\n[delivery]\n')
        message, data = queued(tmp_path, ("a@far.example",))
        ((outcome,),) = deliver(remote, message, data, [["a@far.example"]])
    assert outcome.bounced and outcome.reply.enhanced == "5.4.6" and "loops back" in outcome.reply.text


def test_connections_per_destination_are_capped(tmp_path):
    from support.fakesmtp import ScriptedSmtp

    with ScriptedSmtp() as peer:
        peer.delay = 0.05  # every transaction takes a while, so deliveries overlap
        remote = remote_for(tmp_path, {"far.example": f"127.0.0.1:{peer.port}"},
                            extra="[delivery]\ndestination_concurrency = 3\n")
        message, data = queued(tmp_path, ("a@far.example",))

        async def run():
            remote.start()
            try:
                return await asyncio.gather(*(remote.deliver(message, [f"u{i}@far.example"], data) for i in range(12)))
            finally:
                await remote.close()

        results = asyncio.run(run())
    assert all(o.delivered for outcomes in results for o in outcomes)
    assert len(peer.messages) == 12
    assert peer.most_open == 3  # never more, and the limit was reached


def test_the_destination_limit_is_shared_by_the_delivery_parts():
    from hatoba.delivery.remote import share_of

    assert [share_of(20, part, 2) for part in range(2)] == [10, 10]
    assert [share_of(20, part, 3) for part in range(3)] == [7, 7, 6]
    assert share_of(20, 0, 1) == 20
    assert [share_of(2, part, 4) for part in range(4)] == [1, 1, 1, 1]  # never none at all


def test_two_delivery_parts_together_keep_to_one_destination_limit(tmp_path):
    """Each delivery process opens its share: two parts with a limit of 4 never hold more
    than 4 connections to the destination between them (each opening 4 made 8)."""
    from support.fakesmtp import ScriptedSmtp

    with ScriptedSmtp() as peer:
        peer.delay = 0.05
        home = make_home(tmp_path / "home", extra_config=(
            f'[delivery.routes]\n"far.example" = "127.0.0.1:{peer.port}"\n[delivery]\ndestination_concurrency = 4\n'))
        parts = [RemoteDelivery(home.config(), share=(part, 2)) for part in range(2)]
        message, data = queued(tmp_path, ("a@far.example",))

        async def run():
            for remote in parts:
                remote.start()
            try:
                return await asyncio.gather(*(remote.deliver(message, [f"u{i}@far.example"], data)
                                              for remote in parts for i in range(8)))
            finally:
                for remote in parts:
                    await remote.close()

        results = asyncio.run(run())
    assert all(o.delivered for outcomes in results for o in outcomes)
    assert len(peer.messages) == 16
    assert peer.most_open == 4


def test_a_delivery_process_is_given_its_share(tmp_path):
    from hatoba.queue.process import build_manager
    from hatoba.queue.spool import Spool
    from hatoba.store.directory import Directory
    from hatoba.store.maildir import MaildirStore

    config = make_home(tmp_path / "home").config()
    directory = Directory(config.paths.directory_db)
    try:
        manager = build_manager(config, Spool(config.paths.queue_dir), directory, MaildirStore(config.paths.mail_dir, hostname="mail.example.test"),
                                part=2, parts=3, on_foreign=lambda qid: None)
        assert manager.remote is not None and manager.remote.destination_limit == 6  # 20 over 3: 7, 7, 6
    finally:
        directory.close()
