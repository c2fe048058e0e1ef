"""SCRAM-SHA-256 and -PLUS in hatoba.proto.scram (RFC 5802, RFC 7677), against scramp
and against a few lines of client arithmetic written here from the RFC."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
import scramp

from hatoba.proto.errors import LocalProtocolError
from hatoba.proto.sasl import (
    MAX_RESPONSE_OCTETS,
    Challenge,
    NeedKeys,
    SaslError,
    ScramKeys,
    Verified,
    mechanisms_offered,
    server_mechanism,
)
from hatoba.proto.scram import unknown_user_keys, derive_scram_keys, _saslprep, SCRAM_ITERATIONS, ScramServer

MECH = "SCRAM-SHA-256"
PLUS = "SCRAM-SHA-256-PLUS"
USER = "alice@example.test"
PW = "correct horse"
SALT = bytes(range(16))
KEYS = derive_scram_keys(PW, SALT, SCRAM_ITERATIONS)
EXPORTER = b"E" * 32
END_POINT = b"S" * 32
BINDINGS = {"tls-exporter": EXPORTER, "tls-server-end-point": END_POINT}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def client_final(password: str, bare: str, server_first: str, without_proof: str) -> str:
    """RFC 5802 §3 from the client's side, for ASCII passwords: without_proof + ",p=" + proof."""
    attrs = dict(a.split("=", 1) for a in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = _hmac(salted, b"Client Key")
    auth = f"{bare},{server_first},{without_proof}".encode()
    signature = _hmac(hashlib.sha256(client_key).digest(), auth)
    return f"{without_proof},p={b64(bytes(a ^ b for a, b in zip(client_key, signature)))}"


def scramp_login(server: ScramServer, client: scramp.ScramClient, keys: ScramKeys | None, *, initial: bool = True):
    """Run one exchange; returns the last result (Verified) after the client checked v=."""
    first = client.get_client_first().encode()
    if initial:
        need = server.start(first)
    else:
        assert server.start(None) == Challenge(b"")
        need = server.step(first)
    assert isinstance(need, NeedKeys)
    challenge = server.keys(keys)
    assert isinstance(challenge, Challenge)
    client.set_server_first(challenge.data.decode())
    result = server.step(client.get_client_final().encode())
    if isinstance(result, Challenge):
        client.set_server_final(result.data.decode())  # raises if the server's signature is wrong
        result = server.step(b"")
    return result


# -- keys -------------------------------------------------------------------------------


def test_derive_scram_keys_rfc7677_example() -> None:
    # RFC 7677 §3: user "user", password "pencil".
    keys = derive_scram_keys("pencil", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096)
    bare = "n=user,r=rOprNGfwEbeRWgbNEkqO"
    server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    without_proof = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth = f"{bare},{server_first},{without_proof}".encode()
    client_key = bytes(a ^ b for a, b in zip(base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
                                             _hmac(keys.stored_key, auth)))
    assert hashlib.sha256(client_key).digest() == keys.stored_key
    assert b64(_hmac(keys.server_key, auth)) == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert client_final("pencil", bare, server_first, without_proof).endswith(
        "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")


@pytest.mark.parametrize(
    "password",
    [
        PW,
        "pässwörd-ünïcode",  # precomposed
        "pa\u0308sswo\u0308rd",  # decomposed: NFKC makes it the same as precomposed
        "no\u00a0break\u2003spaces",  # RFC 4013 §2.1: non-ASCII spaces become SPACE
        "soft\u00adhyphen-1",  # B.1: mapped to nothing
        "\u2168 roman nine",  # NFKC: IX
        "\ufb01ligature-pw",  # NFKC: fi
    ],
)
def test_derived_keys_match_scramp(password: str) -> None:
    salt, stored_key, server_key, iterations = scramp.ScramMechanism(MECH).make_auth_info(
        password, iteration_count=4096, salt=SALT
    )
    assert derive_scram_keys(password, SALT, 4096) == ScramKeys(iterations, salt, stored_key, server_key)


def test_non_ascii_password_logs_in_with_scramp() -> None:
    password = "Ünïcødé\u00a0pässwörd"
    keys = derive_scram_keys(password, SALT, SCRAM_ITERATIONS)
    client = scramp.ScramClient([MECH], USER, "U\u0308nïcødé pässwörd")  # other spelling, same SASLprep
    assert scramp_login(ScramServer(), client, keys) == Verified("", USER, True)


def test_password_saslprep_refuses_is_used_as_it_is() -> None:
    # U+1F511 (a key emoji) is unassigned in Unicode 3.2: SASLprep refuses it,
    # so the keys come from the raw UTF-8, which is what a client that does
    # not prepare would send; scramp refuses such a password outright.
    password = "open \U0001f511 sesame"
    expected = hashlib.pbkdf2_hmac("sha256", password.encode(), SALT, 4096)
    keys = derive_scram_keys(password, SALT, 4096)
    assert keys.server_key == _hmac(expected, b"Server Key")
    with pytest.raises(scramp.ScramException):
        scramp.ScramClient([MECH], USER, password)


@pytest.mark.parametrize(
    ("text", "prepared"),
    [
        # RFC 4013 §3 examples
        ("I\u00adX", "IX"),
        ("user", "user"),
        ("USER", "USER"),
        ("\u00aa", "a"),
        ("\u2168", "IX"),
        ("\u0007", None),  # prohibited: control character
        ("\u0627\u0031", None),  # bidi: RandALCat must start and end the string
        # more
        ("\u0627\u0031\u0628", "\u0627\u0031\u0628"),
        ("\u0627a\u0628", None),  # RandALCat and LCat mixed
        ("\ue000", None),  # private use
        ("\u00ad", None),  # empty after mapping
        ("\u0221", None),  # unassigned in Unicode 3.2
    ],
)
def test_saslprep_rfc4013_examples(text: str, prepared: str | None) -> None:
    assert _saslprep(text) == prepared


# -- exchanges with scramp ------------------------------------------------------------


@pytest.mark.parametrize("initial", [True, False])
def test_scram_sha256_with_scramp(initial: bool) -> None:
    client = scramp.ScramClient([MECH], USER, PW)
    server = server_mechanism("scram-sha-256")
    assert isinstance(server, ScramServer) and server.name == MECH
    assert scramp_login(server, client, KEYS, initial=initial) == Verified("", USER, True)


def test_wrong_password_fails_without_a_server_signature() -> None:
    server = ScramServer()
    client = scramp.ScramClient([MECH], USER, "wrong horse")
    assert server.start(client.get_client_first().encode()) == NeedKeys(USER, "")
    client.set_server_first(server.keys(KEYS).data.decode())  # type: ignore[union-attr]
    assert server.step(client.get_client_final().encode()) == Verified("", USER, False)
    with pytest.raises(LocalProtocolError):
        server.step(b"")


def test_unknown_user_gets_a_stable_plausible_salt_and_always_fails() -> None:
    secret = b"s" * 32

    def server_first(user: str) -> dict[str, str]:
        server = ScramServer()
        server.start(f"n,,n={user},r=abc".encode())
        challenge = server.keys(unknown_user_keys(user.lower(), secret))  # the caller's lookup key
        assert isinstance(challenge, Challenge)
        return dict(a.split("=", 1) for a in challenge.data.decode().split(","))

    first = server_first("ghost@example.test")
    assert first == {**server_first("ghost@example.test"), "r": first["r"]}  # same salt and count
    assert len(base64.b64decode(first["s"])) == len(SALT) and first["i"] == str(SCRAM_ITERATIONS)
    assert server_first("other@example.test")["s"] != first["s"]
    assert server_first("Ghost@Example.test")["s"] == first["s"]  # as for a real user's spellings
    # keys() without keys is a bug in the caller, not an unknown user.
    server = ScramServer()
    server.start(b"n,,n=ghost@example.test,r=abc")
    with pytest.raises(LocalProtocolError):
        server.keys(None)
    # Even a client that computes a valid proof for the salt it was given fails.
    server = ScramServer()
    server.start(b"n,,n=ghost@example.test,r=abc")
    sf = server.keys(unknown_user_keys("ghost@example.test", secret)).data.decode()  # type: ignore[union-attr]
    nonce = sf.split(",")[0][2:]
    final = client_final("anything-at-all", "n=ghost@example.test,r=abc", sf, f"c=biws,r={nonce}")
    assert server.step(final.encode()) == Verified("", "ghost@example.test", False)


def test_username_saslname_escapes_are_decoded() -> None:
    # RFC 5802 §5.1: "," is sent as =2C and "=" as =3D (scramp escapes them).
    client = scramp.ScramClient([MECH], "we,ird=name@example.test", PW)
    server = ScramServer()
    assert server.start(client.get_client_first().encode()) == NeedKeys("we,ird=name@example.test", "")
    assert ScramServer().start(b"n,,n=a=3D2C=2C,r=x") == NeedKeys("a=2C,", "")  # decoded once, left to right


def test_authzid_in_the_gs2_header_and_extensions_are_kept_in_the_auth_message() -> None:
    server = ScramServer()
    assert server.start(b"n,a=bo=2Cb@example.test,n=alice@example.test,r=cn,x=ignored") == NeedKeys(
        USER, "bo,b@example.test"
    )
    sf = server.keys(KEYS).data.decode()  # type: ignore[union-attr]
    nonce = sf.split(",")[0][2:]
    c = b64(b"n,a=bo=2Cb@example.test,")
    final = client_final(PW, "n=alice@example.test,r=cn,x=ignored", sf, f"c={c},r={nonce},y=also-ignored")
    assert isinstance(server.step(final.encode()), Challenge)
    assert server.step(b"") == Verified("bo,b@example.test", USER, True)


def test_nonce_mismatch_fails() -> None:
    server = ScramServer()
    server.start(b"n,,n=alice@example.test,r=cn")
    sf = server.keys(KEYS).data.decode()  # type: ignore[union-attr]
    final = client_final(PW, "n=alice@example.test,r=cn", sf, "c=biws,r=cnOTHER")  # valid proof, wrong nonce
    assert server.step(final.encode()) == Verified("", USER, False)


def test_non_empty_answer_to_the_server_final_message_is_malformed() -> None:
    server = ScramServer()
    client = scramp.ScramClient([MECH], USER, PW)
    server.start(client.get_client_first().encode())
    client.set_server_first(server.keys(KEYS).data.decode())  # type: ignore[union-attr]
    assert isinstance(server.step(client.get_client_final().encode()), Challenge)
    with pytest.raises(SaslError):
        server.step(b"v=whatever")


# -- channel binding (RFC 5802 §6) ---------------------------------------------------------


def test_plus_with_scramp_tls_server_end_point() -> None:
    client = scramp.ScramClient([MECH, PLUS], USER, PW, channel_binding=("tls-server-end-point", END_POINT))
    server = server_mechanism(PLUS, BINDINGS)
    assert isinstance(server, ScramServer) and server.name == PLUS
    assert scramp_login(server, client, KEYS) == Verified("", USER, True)


def test_plus_with_a_different_end_point_hash_fails() -> None:
    client = scramp.ScramClient([PLUS], USER, PW, channel_binding=("tls-server-end-point", b"M" * 32))
    server = server_mechanism(PLUS, BINDINGS)
    assert server is not None
    assert scramp_login(server, client, KEYS) == Verified("", USER, False)  # type: ignore[arg-type]


@pytest.mark.parametrize(("data", "ok"), [(EXPORTER, True), (b"X" * 32, False)])
def test_plus_tls_exporter(data: bytes, ok: bool) -> None:
    # scramp does not do tls-exporter; the client arithmetic here does.
    server = server_mechanism(PLUS, BINDINGS)
    assert server is not None
    server.start(b"p=tls-exporter,,n=alice@example.test,r=cn")
    sf = server.keys(KEYS).data.decode()  # type: ignore[union-attr]
    nonce = sf.split(",")[0][2:]
    c = b64(b"p=tls-exporter,," + data)
    result = server.step(client_final(PW, "n=alice@example.test,r=cn", sf, f"c={c},r={nonce}").encode())
    if ok:
        assert isinstance(result, Challenge) and server.step(b"") == Verified("", USER, True)
    else:
        assert result == Verified("", USER, False)


def test_c_must_repeat_the_gs2_header() -> None:
    server = ScramServer()
    server.start(b"n,,n=alice@example.test,r=cn")
    sf = server.keys(KEYS).data.decode()  # type: ignore[union-attr]
    nonce = sf.split(",")[0][2:]
    final = client_final(PW, "n=alice@example.test,r=cn", sf, f"c={b64(b'y,,')},r={nonce}")
    assert server.step(final.encode()) == Verified("", USER, False)


def test_y_flag_is_a_downgrade_when_this_connection_has_binding() -> None:
    # The client supports binding but saw no -PLUS offer: on a connection that has
    # binding data the offer was there, so someone removed it.
    client = scramp.ScramClient([MECH], USER, PW, channel_binding=("tls-server-end-point", END_POINT))
    first = client.get_client_first()
    assert first.startswith("y,,")
    with pytest.raises(SaslError):
        ScramServer(BINDINGS).start(first.encode())
    # Without TLS binding data the client was right and the login works.
    client = scramp.ScramClient([MECH], USER, PW, channel_binding=("tls-server-end-point", END_POINT))
    assert scramp_login(ScramServer({}), client, KEYS) == Verified("", USER, True)


@pytest.mark.parametrize(
    ("mechanism", "first"),
    [
        (PLUS, b"n,,n=a,r=b"),  # -PLUS requires p=
        (PLUS, b"y,,n=a,r=b"),
        (PLUS, b"p=tls-unique,,n=a,r=b"),  # a type this connection has no data for
        (MECH, b"p=tls-exporter,,n=a,r=b"),  # p= only with -PLUS
        (PLUS, b"p=tls exporter,,n=a,r=b"),  # cb-name syntax
        (PLUS, b"p=,,n=a,r=b"),
    ],
)
def test_gs2_flag_rules(mechanism: str, first: bytes) -> None:
    server = server_mechanism(mechanism, BINDINGS)
    assert server is not None
    with pytest.raises(SaslError):
        server.start(first)


def test_plus_only_with_binding_data() -> None:
    assert server_mechanism(PLUS) is None
    assert server_mechanism(PLUS, {}) is None
    assert isinstance(server_mechanism(MECH), ScramServer)
    with pytest.raises(LocalProtocolError):
        ScramServer({}, plus=True)


def test_mechanisms_offered() -> None:
    configured = ["PLAIN", "login", "CRAM-MD5", MECH, PLUS, "PLAIN"]
    assert mechanisms_offered(configured, channel_binding=True) == ("PLAIN", "LOGIN", MECH, PLUS)
    assert mechanisms_offered(configured, channel_binding=False) == ("PLAIN", "LOGIN", MECH)
    assert mechanisms_offered([], channel_binding=True) == ()


# -- malformed input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        b"",
        b"n",
        b"n,",
        b"n,,",
        b"x,,n=a,r=b",
        b"n,b=x,n=a,r=b",  # authzid must be a=
        b"n,a=,n=a,r=b",
        b"n,,m=ext,n=a,r=b",  # RFC 5802 §5.1: mandatory extension
        b"n,,n=a,r=b,m=ext",
        b"n,,n=,r=b",
        b"n,,n=a=b,r=c",  # bare '='
        b"n,,n=a=2c,r=c",  # escapes are upper-case
        b"n,,r=b,n=a",
        b"n,,n=a",
        b"n,,n=a,r=",
        b"n,,n=a,r=b c",  # nonce: printable only
        b"n,,n=a,r=b\x7f",
        b"n,,n=a,r=b,",
        b"n,,n=a,r=b,1=x",
        b"n,,n=a\x00,r=b",
        b"n,,n=\xff,r=b",
        b"n,,n=a,r=b,x=" + b"y" * MAX_RESPONSE_OCTETS,
    ],
)
def test_malformed_client_first(first: bytes) -> None:
    with pytest.raises(SaslError):
        ScramServer().start(first)


@pytest.mark.parametrize(
    "final",
    [
        b"",
        b"c=biws,r=x",
        b"r=x,c=biws,p=" + b"A" * 44,
        b"c=biws,r=x,p=notbase64",
        b"c=biws,r=x,p=" + base64.b64encode(b"short"),
        b"c=biws,r=x,p=" + base64.b64encode(b"x" * 32) + b",x=after-proof",
        b"c=biws,r=x,m=ext,p=" + base64.b64encode(b"x" * 32),
        b"c=biws,r=x,p=" + base64.b64encode(b"x" * 32)[:-1] + b" ",
        b"c=biws,r=\xff,p=" + base64.b64encode(b"x" * 32),
    ],
)
def test_malformed_client_final(final: bytes) -> None:
    server = ScramServer()
    server.start(b"n,,n=a,r=b")
    server.keys(KEYS)
    with pytest.raises(SaslError):
        server.step(final)


def test_calls_out_of_order_are_local_errors() -> None:
    with pytest.raises(LocalProtocolError):
        ScramServer().keys(KEYS)
    with pytest.raises(LocalProtocolError):
        ScramServer().step(b"n,,n=a,r=b")
    server = ScramServer()
    server.start(b"n,,n=a,r=b")
    with pytest.raises(LocalProtocolError):
        server.start(b"n,,n=a,r=b")
    with pytest.raises(LocalProtocolError):
        server.step(b"c=biws")  # keys first
    server = ScramServer()
    with pytest.raises(SaslError):
        server.start(b"garbage")
    with pytest.raises(LocalProtocolError):
        server.step(b"n,,n=a,r=b")  # the exchange ended


def test_keys_never_show_in_repr() -> None:
    assert KEYS.stored_key.hex() not in repr(KEYS) and KEYS.server_key.hex() not in repr(KEYS)
