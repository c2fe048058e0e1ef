"""Tests for hatoba.proto.sasl: PLAIN, LOGIN, framing, client halves."""

import base64

import pytest

from hatoba.proto.errors import LocalProtocolError, RemoteProtocolError
from hatoba.proto.sasl import (
    MAX_RESPONSE_OCTETS,
    SERVER_MECHANISMS,
    Cancelled,
    Challenge,
    Credentials,
    LoginClient,
    LoginServer,
    PlainServer,
    SaslError,
    client_plain,
    decode_response,
    encode_challenge,
    server_mechanism,
)

# --- framing -------------------------------------------------------------------


def test_decode_response() -> None:
    assert decode_response(b"*") == Cancelled()
    assert decode_response(b"=") == b""
    assert decode_response(b"") == b""
    assert decode_response(b"AHRpbQB0YW5zdGFhZnRhbnN0YWFm") == b"\x00tim\x00tanstaaftanstaaf"
    assert decode_response(b"dGVzdAB0ZXN0ADEyMzQ=") == b"test\x00test\x001234"  # RFC 4954 §4 example


@pytest.mark.parametrize(
    "line",
    [
        b"dGVzdA",  # missing padding
        b"dGVzdA==x",  # data after padding
        b"////=",  # stray padding after a full quantum
        b"dGVz dA==",  # white space inside
        b"dGVzdA== ",
        b"dGVzdA==\r",
        b"**",
        b"====",
        b"d!==",
        b"\xff\xfe",
        b"\x00",
    ],
)
def test_decode_response_refuses_bad_base64(line: bytes) -> None:
    with pytest.raises(SaslError):
        decode_response(line)


def test_decode_response_length_limit() -> None:
    assert decode_response(base64.b64encode(b"x" * MAX_RESPONSE_OCTETS)) == b"x" * MAX_RESPONSE_OCTETS
    with pytest.raises(SaslError, match="too long"):
        decode_response(base64.b64encode(b"x" * (MAX_RESPONSE_OCTETS + 3)))


def test_encode_challenge() -> None:
    assert encode_challenge(b"") == b""
    assert encode_challenge(b"Username:") == b"VXNlcm5hbWU6"
    assert encode_challenge(b"Password:") == b"UGFzc3dvcmQ6"
    assert b"\n" not in encode_challenge(b"x" * 300)


def test_sasl_error_is_a_remote_protocol_error() -> None:
    assert issubclass(SaslError, RemoteProtocolError)


# --- mechanism table -------------------------------------------------------------


def test_server_mechanism_lookup() -> None:
    assert set(SERVER_MECHANISMS) == {"PLAIN", "LOGIN", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"}
    plain = server_mechanism("plain")
    assert isinstance(plain, PlainServer) and plain.name == "PLAIN"
    login = server_mechanism("Login")
    assert isinstance(login, LoginServer) and login.name == "LOGIN"
    assert server_mechanism("CRAM-MD5") is None
    assert server_mechanism("") is None
    # Each call is a fresh exchange.
    assert server_mechanism("PLAIN") is not server_mechanism("PLAIN")
    with pytest.raises(TypeError):
        SERVER_MECHANISMS["X"] = PlainServer  # type: ignore[index]


def test_plain_and_login_ignore_channel_bindings_and_never_take_keys() -> None:
    for name in ("PLAIN", "LOGIN"):
        mech = server_mechanism(name, {"tls-exporter": b"x" * 32})
        assert mech is not None and mech.name == name
        with pytest.raises(LocalProtocolError):
            mech.keys(None)


# --- PLAIN (RFC 4616) -----------------------------------------------------------


def test_plain_rfc4616_example_with_initial_response() -> None:
    # RFC 4616 §4: user "tim", password "tanstaaftanstaaf".
    result = PlainServer().start(b"\x00tim\x00tanstaaftanstaaf")
    assert result == Credentials("", "tim", "tanstaaftanstaaf")


def test_plain_rfc4616_example_authzid() -> None:
    # RFC 4616 §4: "Kurt" with password "xipj3plmq" acting as "Ursel".
    result = PlainServer().start(b"Ursel\x00Kurt\x00xipj3plmq")
    assert result == Credentials("Ursel", "Kurt", "xipj3plmq")


def test_plain_without_initial_response_sends_empty_challenge() -> None:
    mech = PlainServer()
    assert mech.start(None) == Challenge(b"")
    assert mech.step(b"\x00tim\x00tanstaaftanstaaf") == Credentials("", "tim", "tanstaaftanstaaf")
    with pytest.raises(LocalProtocolError):
        mech.step(b"\x00tim\x00again")


def test_plain_full_line_round_trip() -> None:
    # What an SMTP client sends: AUTH PLAIN <base64>.
    line = base64.b64encode(client_plain("tim", "tanstaaftanstaaf"))
    decoded = decode_response(line)
    assert isinstance(decoded, bytes)
    assert PlainServer().start(decoded) == Credentials("", "tim", "tanstaaftanstaaf")


def test_plain_utf8() -> None:
    message = "ädmin\x00jörg\x00pässwörd".encode()
    assert PlainServer().start(message) == Credentials("ädmin", "jörg", "pässwörd")


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b"", "must be"),  # "=" (empty initial response)
        (b"tim", "must be"),
        (b"\x00tim", "must be"),
        (b"\x00tim\x00pw\x00", "must be"),  # NUL inside the password
        (b"\x00\x00pw", "empty SASL username"),
        (b"\x00tim\x00", "empty SASL password"),
        (b"\x00t\xffim\x00pw", "not valid UTF-8"),
        (b"\x00tim\x00p\xc3", "not valid UTF-8"),
        (b"\xed\xa0\x80\x00tim\x00pw", "not valid UTF-8"),  # encoded surrogate
        (b"\x00tim\x00" + b"p" * MAX_RESPONSE_OCTETS, "too long"),
    ],
)
def test_plain_malformed(message: bytes, error: str) -> None:
    with pytest.raises(SaslError, match=error):
        PlainServer().start(message)
    mech = PlainServer()
    mech.start(None)
    with pytest.raises(SaslError, match=error):
        mech.step(message)


def test_plain_started_twice_is_a_local_bug() -> None:
    mech = PlainServer()
    mech.start(None)
    with pytest.raises(LocalProtocolError):
        mech.start(None)
    with pytest.raises(LocalProtocolError):
        PlainServer().step(b"\x00a\x00b")  # step before start


# --- LOGIN ------------------------------------------------------------------------


def test_login_without_initial_response() -> None:
    mech = LoginServer()
    first = mech.start(None)
    assert isinstance(first, Challenge) and first == Challenge(b"Username:")
    assert encode_challenge(first.data) == b"VXNlcm5hbWU6"
    assert mech.step(b"tim") == Challenge(b"Password:")
    assert mech.step(b"tanstaaftanstaaf") == Credentials("", "tim", "tanstaaftanstaaf")
    with pytest.raises(LocalProtocolError):
        mech.step(b"more")


def test_login_with_initial_response() -> None:
    # AUTH LOGIN dGlt: the username comes with the command.
    mech = LoginServer()
    assert mech.start(b"tim") == Challenge(b"Password:")
    assert mech.step("pässwörd".encode()) == Credentials("", "tim", "pässwörd")


@pytest.mark.parametrize(
    ("username", "password", "error"),
    [
        (b"", b"pw", "empty SASL username"),
        (b"t\x00im", b"pw", "NUL"),
        (b"t\xffim", b"pw", "not valid UTF-8"),
        (b"tim", b"", "empty SASL password"),
        (b"tim", b"p\x00w", "NUL"),
        (b"tim", b"\xc3", "not valid UTF-8"),
        (b"u" * (MAX_RESPONSE_OCTETS + 1), b"pw", "too long"),
        (b"tim", b"p" * (MAX_RESPONSE_OCTETS + 1), "too long"),
    ],
)
def test_login_malformed(username: bytes, password: bytes, error: str) -> None:
    mech = LoginServer()
    mech.start(None)
    with pytest.raises(SaslError, match=error):
        mech.step(username)
        mech.step(password)
    # Once an exchange failed it is over.
    with pytest.raises(LocalProtocolError):
        mech.step(b"x")


def test_login_empty_initial_response_is_an_empty_username() -> None:
    # "AUTH LOGIN =" sends an empty username (RFC 4954 §4).
    with pytest.raises(SaslError, match="empty SASL username"):
        LoginServer().start(b"")


def test_cancel_mid_exchange_is_seen_by_the_framing() -> None:
    mech = LoginServer()
    mech.start(None)
    assert decode_response(b"*") == Cancelled()  # the protocol answers 501 and drops mech


# --- credentials ----------------------------------------------------------------


def test_credentials_repr_hides_password() -> None:
    creds = Credentials("", "tim", "tanstaaftanstaaf")
    assert "tanstaaf" not in repr(creds)
    assert "tim" in repr(creds)


# --- client halves ------------------------------------------------------------


def test_client_plain() -> None:
    assert client_plain("tim", "tanstaaftanstaaf") == b"\x00tim\x00tanstaaftanstaaf"
    assert client_plain("Kurt", "xipj3plmq", authzid="Ursel") == b"Ursel\x00Kurt\x00xipj3plmq"
    assert client_plain("jörg", "pw") == "\x00jörg\x00pw".encode()
    for bad in (("", "pw"), ("tim", ""), ("t\x00im", "pw"), ("tim", "p\x00w")):
        with pytest.raises(LocalProtocolError):
            client_plain(*bad)


def test_login_client_against_login_server() -> None:
    client = LoginClient("tim", "tanstaaftanstaaf")
    server = LoginServer()
    result = server.start(None)
    while isinstance(result, Challenge):
        # Through the wire encoding both ways, as the protocols do it.
        challenge = base64.b64decode(encode_challenge(result.data))
        response = decode_response(base64.b64encode(client.step(challenge)))
        assert isinstance(response, bytes)
        result = server.step(response)
    assert result == Credentials("", "tim", "tanstaaftanstaaf")
    with pytest.raises(SaslError):
        client.step(b"Again:")


def test_login_client_ignores_challenge_wording() -> None:
    client = LoginClient("tim", "pw")
    assert client.step(b"User Name\x00") == b"tim"  # draft-murchison-sasl-login wording
    assert client.step(b"Passwort:") == b"pw"
