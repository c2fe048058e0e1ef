"""Self-test of the PostfixPeer harness against a tiny SMTP sink.

The sink lives here, not in hatoba, so that a failure points at the
harness (config, TLS settings, logging) and not at the server under test.
It speaks just enough ESMTP for Postfix's client: EHLO, optional STARTTLS,
MAIL, RCPT, DATA, RSET, NOOP, QUIT.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from interop.postfix_peer import PostfixPeer, free_port, postfix_peer_marks

pytestmark = [
    pytest.mark.interop,
    *postfix_peer_marks(),
]


@dataclass
class Received:
    mail_from: str
    rcpts: list[str]
    data: bytes
    tls: bool


@dataclass
class SmtpSink:
    """Accepts everything on 127.0.0.1:<kernel port>; STARTTLS only if given a context."""

    tls: ssl.SSLContext | None
    messages: list[Received] = field(default_factory=list)
    ehlo_count: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SmtpSink:
        self._thread.start()
        assert self._ready.wait(5), "sink did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._session, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def reply(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        in_tls = False
        mail_from, rcpts = "", list[str]()
        try:
            await reply("220 sink.example.test ESMTP")
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    self.ehlo_count += 1
                    ext = ["PIPELINING", "8BITMIME"] + (["STARTTLS"] if self.tls and not in_tls else [])
                    await reply("\r\n".join(["250-sink.example.test"] + [f"250-{e}" for e in ext[:-1]] + [f"250 {ext[-1]}"]))
                elif verb == b"STAR" and self.tls and not in_tls:
                    await reply("220 2.0.0 go ahead")
                    await writer.start_tls(self.tls)
                    in_tls = True
                elif verb == b"MAIL":
                    mail_from, rcpts = line[10:].strip().decode(), []
                    await reply("250 2.1.0 ok")
                elif verb == b"RCPT":
                    rcpts.append(line[8:].strip().decode())
                    await reply("250 2.1.5 ok")
                elif verb == b"DATA":
                    await reply("354 go ahead")
                    data = b""
                    while (chunk := await reader.readline()) not in (b".\r\n", b""):
                        data += chunk[1:] if chunk.startswith(b".") else chunk
                    self.messages.append(Received(mail_from, rcpts, data, in_tls))
                    await reply("250 2.0.0 stored")
                elif verb == b"QUIT":
                    await reply("221 2.0.0 bye")
                    break
                else:  # RSET, NOOP, HELO and anything else
                    await reply("250 2.0.0 ok")
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


def make_ca_and_server_cert(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A throwaway CA and a sink certificate it signed; returns (ca file, server context)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sink test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sink.example.test")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("sink.example.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.crt", folder / "sink.crt", folder / "sink.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_file, key_file)
    return ca_file, ctx


MESSAGE = b"From: a@peer.example.net\r\nTo: b@sink.example.test\r\nSubject: harness\r\n\r\nhello\r\n.leading dot\r\n"


def test_relays_over_verified_starttls(tmp_path: Path) -> None:
    ca_file, server_ctx = make_ca_and_server_cert(tmp_path)
    with SmtpSink(tls=server_ctx) as sink, PostfixPeer(
        tmp_path / "peer", smtp_port=free_port(), relay_to=f"127.0.0.1:{sink.port}",
        tls_level="encrypt", ca_file=ca_file,
    ) as peer:
        queue_id = peer.send("a@peer.example.net", ["b@sink.example.test"], MESSAGE)
        peer.wait_log(rf"{queue_id}: to=<b@sink.example.test>.*status=sent")
        peer.wait_queue_empty(timeout=10)
        log = peer.log_text()

    [got] = sink.messages
    assert got.tls, "the sink received the message without TLS"
    assert got.mail_from.startswith("<a@peer.example.net>") and got.rcpts[0].startswith("<b@sink.example.test>")
    assert b"Subject: harness" in got.data and b"\r\n.leading dot\r\n" in got.data
    # "Trusted" proves smtp_tls_CAfile was read: without it Postfix logs "Untrusted".
    assert f"Trusted TLS connection established to 127.0.0.1[127.0.0.1]:{sink.port}" in log


def test_encrypt_without_starttls_defers(tmp_path: Path) -> None:
    ca_file, _ = make_ca_and_server_cert(tmp_path)
    with SmtpSink(tls=None) as sink, PostfixPeer(
        tmp_path / "peer", smtp_port=free_port(), relay_to=f"127.0.0.1:{sink.port}",
        tls_level="encrypt", ca_file=ca_file,
    ) as peer:
        queue_id = peer.send("a@peer.example.net", ["b@sink.example.test"], MESSAGE)
        match = peer.wait_log(rf"{queue_id}: to=<b@sink.example.test>.*status=deferred \((.*)\)")
        [queued] = peer.queue()

    assert "TLS is required, but was not offered" in match.group(1)
    # Still queued, not bounced; right after the deferral Postfix may list it
    # in any of its queues while the queue manager moves it.
    assert queued["queue_id"] == queue_id and queued["queue_name"] in ("deferred", "active", "incoming")
    assert sink.ehlo_count >= 1, "Postfix never reached the sink"
    assert sink.messages == []
