"""Keys, the private CA, server certificates and the TLS contexts, over real loopback sockets."""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store

from hatoba.config.schema import DomainTls, TlsConfig
from hatoba.pki.ca import create_ca, issue_server_cert, load_certs, write_cert_chain
from hatoba.pki.keys import generate_key, load_private_key, write_private_key
from hatoba.pki.tlsctx import TlsSetupError, client_context, lookup, server_context

HOST = "mail.example.test"


@pytest.fixture(scope="module")
def ca():
    return create_ca("hatoba test CA")


@pytest.fixture(scope="module")
def server(ca):
    return issue_server_cert(ca[0], ca[1], HOST)


def write_pair(folder: Path, ca, server, stem: str = "server") -> TlsConfig:
    folder.mkdir(parents=True, exist_ok=True)
    write_private_key(folder / f"{stem}.key", server[0])
    write_cert_chain(folder / f"{stem}.crt", [server[1], ca[1]])
    write_cert_chain(folder / f"{stem}-ca.crt", [ca[1]])
    return TlsConfig(cert=folder / f"{stem}.crt", key=folder / f"{stem}.key", ca_file=folder / f"{stem}-ca.crt")


# -- keys --------------------------------------------------------------------------


def test_key_file_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    key = generate_key()
    old = os.umask(0)
    try:
        write_private_key(tmp_path / "a.key", key)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.key").stat().st_mode) == 0o600
    text = (tmp_path / "a.key").read_text()
    assert text.startswith("-----BEGIN PRIVATE KEY-----\n")  # PKCS #8, not encrypted
    assert load_private_key(tmp_path / "a.key").private_numbers() == key.private_numbers()


def test_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "a.key"
    write_private_key(path, generate_key())
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        write_private_key(path, generate_key())
    assert path.read_bytes() == before
    with pytest.raises(FileExistsError):
        write_cert_chain(path, [create_ca("x")[1]])
    assert path.read_bytes() == before


# -- CA and server certificates ------------------------------------------------------


def test_ca_certificate(ca) -> None:
    key, cert = ca
    assert isinstance(key.curve, ec.SECP256R1)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert.verify_directly_issued_by(cert)  # self-signed


def test_server_certificate(ca, server) -> None:
    key, cert = server
    assert isinstance(key.curve, ec.SECP256R1)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [HOST, "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"),
    ]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca[1].extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert 397 <= days <= 398


def test_server_certificate_verifies_against_the_ca_only(ca, server) -> None:
    store = Store([ca[1]])
    for name in (x509.DNSName(HOST), x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
        chain = PolicyBuilder().store(store).build_server_verifier(name).verify(server[1], [])
        assert chain == [server[1], ca[1]]
    with pytest.raises(Exception):
        PolicyBuilder().store(store).build_server_verifier(x509.DNSName("other.example")).verify(server[1], [])
    other_ca = create_ca("another CA")
    with pytest.raises(Exception):
        PolicyBuilder().store(Store([other_ca[1]])).build_server_verifier(x509.DNSName(HOST)).verify(server[1], [])


def test_chain_file_is_leaf_first(tmp_path: Path, ca, server) -> None:
    tls = write_pair(tmp_path, ca, server)
    assert stat.S_IMODE(tls.cert.stat().st_mode) == 0o644
    assert load_certs(tls.cert) == [server[1], ca[1]]
    with pytest.raises(ValueError):
        write_cert_chain(tmp_path / "empty.crt", [])


# -- TLS over loopback ----------------------------------------------------------------


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str | None):
    """One real handshake on 127.0.0.1; returns (client result, server result): a dict or the error."""
    listener = socket.create_server(("127.0.0.1", 0))
    result: dict[str, object] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(10)
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                result["version"] = tls.version()
                tls.recv(1)  # wait for the client to finish and close
        except (ssl.SSLError, OSError) as exc:
            result["error"] = exc

    thread = threading.Thread(target=serve)
    thread.start()
    client: dict[str, object] = {}
    try:
        with socket.create_connection(listener.getsockname(), timeout=10) as sock:
            with client_ctx.wrap_socket(sock, server_hostname=server_hostname) as tls:
                client["version"] = tls.version()
                client["cipher"] = tls.cipher()[0]
                client["cert"] = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    except (ssl.SSLError, OSError) as exc:
        client["error"] = exc
    finally:
        thread.join(10)
        listener.close()
    return client, result


def pinned_client(version: ssl.TLSVersion, ca_file: Path | None = None, ciphers: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_file is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cafile=str(ca_file))
    ctx.minimum_version = version
    ctx.maximum_version = version
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


@pytest.fixture
def tls(tmp_path: Path, ca, server) -> TlsConfig:
    return write_pair(tmp_path / "tls", ca, server)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls12_and_tls13_handshakes_verify(tls: TlsConfig, server, version: ssl.TLSVersion) -> None:
    client, srv = handshake(server_context(tls), pinned_client(version, tls.ca_file), HOST)
    expected = "TLSv1.2" if version is ssl.TLSVersion.TLSv1_2 else "TLSv1.3"
    assert client.get("version") == expected, client
    assert srv.get("version") == expected
    assert client["cert"] == server[1]
    if expected == "TLSv1.2":
        assert client["cipher"].startswith("ECDHE-ECDSA-") and ("GCM" in client["cipher"] or "CHACHA20" in client["cipher"])


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_tls_is_refused(tls: TlsConfig, version: ssl.TLSVersion) -> None:
    # SECLEVEL=0 lets this client's OpenSSL offer TLS 1.0/1.1 at all; the
    # refusal must then come from the server.
    with pytest.warns(DeprecationWarning):
        client_ctx = pinned_client(version, ciphers="ALL:@SECLEVEL=0")
    client, srv = handshake(server_context(tls), client_ctx, HOST)
    assert "version" not in client and "version" not in srv
    assert isinstance(srv["error"], ssl.SSLError)
    assert "UNSUPPORTED_PROTOCOL" in str(srv["error"]) or "VERSION" in str(srv["error"]).upper()


def test_cbc_only_tls12_client_is_refused(tls: TlsConfig) -> None:
    client_ctx = pinned_client(ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384")
    client, srv = handshake(server_context(tls), client_ctx, HOST)
    assert "version" not in client
    assert "NO_SHARED_CIPHER" in str(srv["error"])


def test_sni_selects_the_domain_certificate(tmp_path: Path, ca, server) -> None:
    default = write_pair(tmp_path, ca, server)
    other_ca = create_ca("example.org CA")
    other = issue_server_cert(other_ca[0], other_ca[1], "mail.example.org")
    org = write_pair(tmp_path, other_ca, other, stem="org")
    tls = TlsConfig(cert=default.cert, key=default.key, domains={"example.org": DomainTls(org.cert, org.key)})
    ctx = server_context(tls)
    for name, expected in (("mail.example.org", other[1]), ("Example.ORG", other[1]), (HOST, server[1]),
                           ("example.organic", server[1]), (None, server[1])):
        client, _ = handshake(ctx, pinned_client(ssl.TLSVersion.TLSv1_3), name)
        assert client["cert"] == expected, name
    # The domain's own CA verifies the domain's certificate end to end.
    verified, _ = handshake(ctx, client_context(org.ca_file, verify=True), "mail.example.org")
    assert verified.get("version") == "TLSv1.3", verified


def test_lookup_prefers_the_closest_domain() -> None:
    a, b = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    table = {"example.org": a, "mail.example.org": b}
    assert lookup(table, "mail.example.org") is b
    assert lookup(table, "MAIL.Example.Org.") is b
    assert lookup(table, "imap.example.org") is a
    assert lookup(table, "x.mail.example.org") is b
    assert lookup(table, "example.com") is None
    assert lookup(table, "org") is None


def test_client_context_verifies_with_ca_file(tls: TlsConfig) -> None:
    ctx = server_context(tls)
    ok, _ = handshake(ctx, client_context(tls.ca_file, verify=True), HOST)
    assert ok.get("version") in ("TLSv1.2", "TLSv1.3"), ok
    wrong_name, _ = handshake(ctx, client_context(tls.ca_file, verify=True), "other.example")
    assert isinstance(wrong_name.get("error"), ssl.SSLCertVerificationError)
    unknown_ca, _ = handshake(ctx, client_context(None, verify=True), HOST)
    assert isinstance(unknown_ca.get("error"), ssl.SSLCertVerificationError)
    opportunistic = client_context(None, verify=False)
    assert opportunistic.verify_mode == ssl.CERT_NONE and not opportunistic.check_hostname
    assert opportunistic.minimum_version == ssl.TLSVersion.TLSv1_2
    anyway, _ = handshake(ctx, opportunistic, "other.example")
    assert anyway.get("version") in ("TLSv1.2", "TLSv1.3"), anyway


def test_client_context_bad_ca_file(tmp_path: Path) -> None:
    (tmp_path / "junk.crt").write_text("not a certificate\n")
    with pytest.raises(TlsSetupError, match=r"^tls.ca_file: cannot load .*junk.crt: no PEM certificate in it;"):
        client_context(tmp_path / "junk.crt", verify=True)
    with pytest.raises(TlsSetupError, match="No such file or directory"):
        client_context(tmp_path / "missing.crt", verify=True)


def test_unusable_files_are_one_line_errors(tmp_path: Path, ca, server) -> None:
    tls = write_pair(tmp_path, ca, server)
    fix = "; check the files, or run hatoba init"

    def message(config: TlsConfig) -> str:
        with pytest.raises(TlsSetupError) as info:
            server_context(config)
        text = str(info.value)
        assert "\n" not in text and text.endswith(fix)
        return text

    missing = TlsConfig(cert=tls.cert, key=tmp_path / "missing.key")
    assert message(missing) == (
        f"tls: cannot load {tls.cert} with key {tmp_path}/missing.key: No such file or directory{fix}"
    )
    write_private_key(tmp_path / "other.key", generate_key())
    assert "the key does not belong to the first certificate" in message(TlsConfig(cert=tls.cert, key=tmp_path / "other.key"))
    (tmp_path / "junk.crt").write_text("junk\n")
    assert f"{tmp_path}/junk.crt holds no PEM certificate" in message(TlsConfig(cert=tmp_path / "junk.crt", key=tls.key))
    # The CA first, then the leaf: the wrong order for a chain file.
    (tmp_path / "ca-first.crt").write_bytes(load_pem(ca[1]) + load_pem(server[1]))
    assert "the chain must start with the server's own certificate" in message(
        TlsConfig(cert=tmp_path / "ca-first.crt", key=tls.key)
    )
    from cryptography.hazmat.primitives import serialization

    (tmp_path / "locked.key").write_bytes(server[0].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    ))
    assert "locked.key is encrypted; hatoba needs an unencrypted key" in message(
        TlsConfig(cert=tls.cert, key=tmp_path / "locked.key")
    )
    bad_domain = TlsConfig(cert=tls.cert, key=tls.key, domains={"example.org": DomainTls(tls.cert, tmp_path / "nope.key")})
    assert message(bad_domain).startswith(f"tls.domains.example.org: cannot load {tls.cert} with key {tmp_path}/nope.key")


def load_pem(cert: x509.Certificate) -> bytes:
    from hatoba.pki.ca import cert_to_pem

    return cert_to_pem(cert)
