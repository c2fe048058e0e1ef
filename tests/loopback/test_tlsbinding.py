"""net/tlsbinding.py over real TLS on loopback, through net/stream.py: the server's
channel_bindings() must equal what clients compute independently (pyOpenSSL's
exporter, scramp's certificate hash), and SCRAM-SHA-256-PLUS must work with it."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import scramp
import scramp.core
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto

from hatoba.net import tlsbinding
from hatoba.net.stream import Stream
from hatoba.net.tlsbinding import channel_bindings
from hatoba.pki.tlsctx import server_context, sni_callback
from hatoba.proto.sasl import (
    Challenge,
    NeedKeys,
    Verified,
    server_mechanism,
)
from hatoba.proto.scram import derive_scram_keys, ScramServer

HOST = "mail.example.test"
EXPORTER_LABEL = b"EXPORTER-Channel-Binding"
USER, PW = "alice@example.test", "correct horse"
KEYS = derive_scram_keys(PW, b"s" * 16, 4096)


def make_context(tmp: Path, name: str, key: Any, digest: hashes.HashAlgorithm | None,
                 rsa_padding: Any = None) -> ssl.SSLContext:
    """A server context with a self-signed certificate for `key`, signed with `digest`."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, digest, rsa_padding=rsa_padding)
    )
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


@pytest.fixture
def p384(tmp_path: Path) -> ssl.SSLContext:
    return make_context(tmp_path, HOST, ec.generate_private_key(ec.SECP384R1()), hashes.SHA384())


def serve_one(server_ctx: ssl.SSLContext, client: Callable[[int], Any]) -> tuple[dict[str, bytes], Any]:
    """One connection to a Stream server: (the server's channel_bindings(), client(port)'s result).

    The client runs in a thread with a blocking socket; it reads the server's
    "ok" line (so the server's side has finished its handshake), then closes.
    """

    async def main() -> tuple[dict[str, bytes], Any]:
        loop = asyncio.get_running_loop()
        found: asyncio.Future[dict[str, bytes]] = loop.create_future()
        tasks: list[asyncio.Task[None]] = []

        async def session(stream: Stream) -> None:
            found.set_result(channel_bindings(stream.get_extra_info("ssl_object")))
            stream.write(b"ok\n")
            await stream.drain()
            await stream.read(100)
            stream.close()

        def opened(stream: Stream) -> None:
            tasks.append(loop.create_task(session(stream)))

        server = await loop.create_server(lambda: Stream(opened, server_ctx), "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            result = await asyncio.wait_for(asyncio.to_thread(client, port), 20)
            await asyncio.wait_for(asyncio.gather(*tasks), 20)
        return await found, result

    return asyncio.run(main())


def pyopenssl_client(version: int, server_name: str = HOST) -> Callable[[int], dict[str, bytes]]:
    """A pyOpenSSL client computing both values itself: the exporter (RFC 9266 §2)
    and, through scramp, the hash of the certificate it received (RFC 5929 §4.1)."""

    def run(port: int) -> dict[str, bytes]:
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(version)
        context.set_max_proto_version(version)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setblocking(True)  # pyOpenSSL wants a blocking socket (the test's timeout guards it)
            conn = SSL.Connection(context, sock)
            conn.set_tlsext_host_name(server_name.encode())
            conn.set_connect_state()
            conn.do_handshake()
            assert conn.recv(100) == b"ok\n"
            seen = {"version": conn.get_protocol_version_name().encode()}
            if version == SSL.TLS1_3_VERSION:
                seen["tls-exporter"] = conn.export_keying_material(EXPORTER_LABEL, 32)
            peer = conn.get_peer_certificate(as_cryptography=True)
            assert peer is not None
            seen["der"] = peer.public_bytes(serialization.Encoding.DER)
            conn.sendall(b"bye")
            conn.shutdown()
        return seen

    return run


def stdlib_client(maximum: ssl.TLSVersion, then: Callable[[ssl.SSLSocket], Any] | None = None) -> Callable[[int], Any]:
    """A stdlib ssl client; `then(sock)` runs on the connection, else scramp's end-point hash is returned."""

    def run(port: int) -> Any:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.maximum_version = maximum
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=HOST) as sock:
                assert sock.recv(100) == b"ok\n"
                result = then(sock) if then else end_point(sock.getpeercert(binary_form=True))
                sock.sendall(b"bye")
        return result

    return run


def end_point(der: bytes) -> bytes:
    """scramp's own RFC 5929 §4.1 hash (asn1crypto reads the signature algorithm)."""
    return bytes(scramp.core.CBindData.from_der(der))


# -- the values ------------------------------------------------------------------------------


def test_tls13_exporter_and_end_point_match_a_pyopenssl_client(p384: ssl.SSLContext) -> None:
    server, client = serve_one(p384, pyopenssl_client(SSL.TLS1_3_VERSION))
    assert client["version"] == b"TLSv1.3"
    assert server == {"tls-exporter": client["tls-exporter"], "tls-server-end-point": end_point(client["der"])}
    assert server["tls-server-end-point"] == hashlib.sha384(client["der"]).digest()  # the signature's own hash


def test_tls12_has_the_end_point_but_no_exporter(p384: ssl.SSLContext) -> None:
    server, client = serve_one(p384, pyopenssl_client(SSL.TLS1_2_VERSION))
    assert client["version"] == b"TLSv1.2"
    assert server == {"tls-server-end-point": end_point(client["der"])}
    server, binding = serve_one(p384, stdlib_client(ssl.TLSVersion.TLSv1_2))
    assert server == {"tls-server-end-point": binding}


def test_each_connection_has_its_own_exporter(p384: ssl.SSLContext) -> None:
    first, _ = serve_one(p384, pyopenssl_client(SSL.TLS1_3_VERSION))
    second, _ = serve_one(p384, pyopenssl_client(SSL.TLS1_3_VERSION))
    assert first["tls-exporter"] != second["tls-exporter"]
    assert first["tls-server-end-point"] == second["tls-server-end-point"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pyOpenSSL's X509 API, the one left that signs with SHA-1
def test_sha1_signed_certificate_is_hashed_with_sha256(tmp_path: Path) -> None:
    # RFC 5929 §4.1: MD5 and SHA-1 are replaced by SHA-256.
    key = rsa.generate_private_key(65537, 2048)
    cert = crypto.X509()
    cert.get_subject().CN = HOST
    cert.set_issuer(cert.get_subject())
    cert.set_pubkey(crypto.PKey.from_cryptography_key(key))
    cert.set_serial_number(x509.random_serial_number())
    cert.gmtime_adj_notBefore(-3600)
    cert.gmtime_adj_notAfter(86400)
    cert.sign(crypto.PKey.from_cryptography_key(key), "sha1")
    assert isinstance(cert.to_cryptography().signature_hash_algorithm, hashes.SHA1)
    (tmp_path / "sha1.crt").write_bytes(crypto.dump_certificate(crypto.FILETYPE_PEM, cert))
    (tmp_path / "sha1.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "sha1.crt", tmp_path / "sha1.key")
    server, client = serve_one(context, pyopenssl_client(SSL.TLS1_3_VERSION))
    assert server["tls-server-end-point"] == hashlib.sha256(client["der"]).digest() == end_point(client["der"])


def test_rsa_pss_certificate_is_hashed_with_its_pss_hash(tmp_path: Path) -> None:
    # RFC 5929 §4.1 names the hash of the signature algorithm: for RSASSA-PSS, its parameters' hash.
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=padding.PSS.DIGEST_LENGTH)
    context = make_context(tmp_path, HOST, rsa.generate_private_key(65537, 2048), hashes.SHA512(), pss)
    server, client = serve_one(context, pyopenssl_client(SSL.TLS1_3_VERSION))
    assert server["tls-server-end-point"] == hashlib.sha512(client["der"]).digest()


def test_ed25519_certificate_has_no_end_point(tmp_path: Path) -> None:
    # RFC 5929 §4.1 leaves signatures without a single hash function undefined.
    context = make_context(tmp_path, HOST, ed25519.Ed25519PrivateKey.generate(), None)
    server, client = serve_one(context, pyopenssl_client(SSL.TLS1_3_VERSION))
    assert server == {"tls-exporter": client["tls-exporter"]}


def test_sni_binds_the_certificate_actually_presented(tmp_path: Path) -> None:
    default = make_context(tmp_path, HOST, ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    other = make_context(tmp_path, "other.example.test", ec.generate_private_key(ec.SECP384R1()), hashes.SHA384())
    default.sni_callback = sni_callback({"other.example.test": other})
    server, client = serve_one(default, pyopenssl_client(SSL.TLS1_3_VERSION, "other.example.test"))
    assert x509.load_der_x509_certificate(client["der"]).subject.rfc4514_string() == "CN=other.example.test"
    assert server["tls-server-end-point"] == end_point(client["der"]) == hashlib.sha384(client["der"]).digest()
    assert server["tls-exporter"] == client["tls-exporter"]
    server, client = serve_one(default, pyopenssl_client(SSL.TLS1_2_VERSION, HOST))
    assert server["tls-server-end-point"] == end_point(client["der"]) == hashlib.sha256(client["der"]).digest()


@pytest.mark.parametrize("cipher", [b"ECDHE-RSA-AES128-GCM-SHA256", b"ECDHE-ECDSA-AES128-GCM-SHA256"])
def test_with_an_rsa_and_an_ecdsa_certificate_the_one_sent_is_bound(tmp_path: Path, cipher: bytes) -> None:
    context = make_context(tmp_path, HOST, rsa.generate_private_key(65537, 2048), hashes.SHA256())
    make_context(tmp_path, "ecdsa", ec.generate_private_key(ec.SECP384R1()), hashes.SHA384())
    context.load_cert_chain(tmp_path / "ecdsa.crt", tmp_path / "ecdsa.key")  # a second certificate, by key type

    def client(port: int) -> bytes:
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_cipher_list(cipher)  # the cipher suite decides which certificate the server sends
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setblocking(True)
            conn = SSL.Connection(ctx, sock)
            conn.set_connect_state()
            conn.do_handshake()
            assert conn.recv(100) == b"ok\n"
            peer = conn.get_peer_certificate(as_cryptography=True)
            assert peer is not None
            conn.sendall(b"bye")
            conn.shutdown()
        return peer.public_bytes(serialization.Encoding.DER)

    server, der = serve_one(context, client)
    assert server == {"tls-server-end-point": end_point(der)}


@pytest.mark.parametrize("version", [SSL.TLS1_3_VERSION, SSL.TLS1_2_VERSION])
def test_the_servers_own_context_from_hatoba_init(hatoba_home, version: int) -> None:
    server, client = serve_one(server_context(hatoba_home.config().tls), pyopenssl_client(version))
    assert server["tls-server-end-point"] == end_point(client["der"])
    assert server.get("tls-exporter") == client.get("tls-exporter")


def test_no_values_before_the_handshake_or_on_the_client_side(p384: ssl.SSLContext) -> None:
    server_side = p384.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)
    assert channel_bindings(server_side) == {}  # no handshake yet
    seen: list[dict[str, bytes]] = []
    serve_one(p384, stdlib_client(ssl.TLSVersion.TLSv1_3, lambda sock: seen.append(channel_bindings(sock))))
    assert seen == [{}]  # a client's connection: the values are the server's to give
    server, _ = serve_one(p384, pyopenssl_client(SSL.TLS1_3_VERSION))  # nothing was marked unavailable
    assert set(server) == {"tls-exporter", "tls-server-end-point"}


def test_once_unavailable_nothing_is_returned(p384: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tlsbinding, "_unavailable", False)  # restored after the test
    tlsbinding._give_up("test")
    server, _ = serve_one(p384, pyopenssl_client(SSL.TLS1_3_VERSION))
    assert server == {}


# -- SCRAM-SHA-256-PLUS end to end ------------------------------------------------------------


def scram_plus(bindings: dict[str, bytes], client: scramp.ScramClient) -> Verified:
    server = server_mechanism("SCRAM-SHA-256-PLUS", bindings)
    assert isinstance(server, ScramServer)
    assert isinstance(server.start(client.get_client_first().encode()), NeedKeys)
    challenge = server.keys(KEYS)
    assert isinstance(challenge, Challenge)
    client.set_server_first(challenge.data.decode())
    result = server.step(client.get_client_final().encode())
    if isinstance(result, Challenge):
        client.set_server_final(result.data.decode())
        result = server.step(b"")
    assert isinstance(result, Verified)
    return result


def test_scram_plus_tls_server_end_point_with_scramp(p384: ssl.SSLContext, tmp_path: Path) -> None:
    def login(sock: ssl.SSLSocket) -> scramp.ScramClient:
        # scramp hashes the certificate of this socket's peer itself.
        return scramp.ScramClient(
            ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"], USER, PW, channel_binding=("tls-server-end-point", sock)
        )

    server, client = serve_one(p384, stdlib_client(ssl.TLSVersion.TLSv1_3, login))
    assert client.mechanism_name == "SCRAM-SHA-256-PLUS"
    assert scram_plus(server, client) == Verified("", USER, True)
    # A man in the middle holds another certificate: the client's hash is of that one.
    other = make_context(tmp_path, HOST, ec.generate_private_key(ec.SECP384R1()), hashes.SHA384())
    _, relayed = serve_one(other, stdlib_client(ssl.TLSVersion.TLSv1_3, login))
    assert scram_plus(server, relayed) == Verified("", USER, False)


def test_scram_plus_tls_exporter_with_scramp(p384: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch) -> None:
    # scramp refuses the type name "tls-exporter" only because it cannot compute
    # the value from an ssl socket; given the bytes, its arithmetic is the same.
    monkeypatch.setattr(scramp.core.CbName, "SUPPORTED_TYPES", scramp.core.CbName.SUPPORTED_TYPES | {"tls-exporter"})
    monkeypatch.setattr(scramp.core.CbName, "UNSUPPORTED_TYPES", frozenset())
    server, client = serve_one(p384, pyopenssl_client(SSL.TLS1_3_VERSION))

    def scramp_client(exporter: bytes) -> scramp.ScramClient:
        return scramp.ScramClient(["SCRAM-SHA-256-PLUS"], USER, PW, channel_binding=("tls-exporter", exporter))

    assert scram_plus(server, scramp_client(client["tls-exporter"])) == Verified("", USER, True)
    # Another connection, even to the same server with the same certificate, has another exporter.
    _, other = serve_one(p384, pyopenssl_client(SSL.TLS1_3_VERSION))
    assert scram_plus(server, scramp_client(other["tls-exporter"])) == Verified("", USER, False)
