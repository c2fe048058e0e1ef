"""Fuzz hatoba.proto.sasl: any client input gives a result or SaslError, nothing else."""

import base64

import scramp  # an independent SCRAM client
from hypothesis import given, settings
from hypothesis import strategies as st

from hatoba.proto.sasl import (
    SERVER_MECHANISMS,
    Cancelled,
    Challenge,
    Credentials,
    NeedKeys,
    PlainServer,
    SaslError,
    Verified,
    client_plain,
    decode_response,
    encode_challenge,
    server_mechanism,
)
from hatoba.proto.scram import unknown_user_keys, derive_scram_keys, SCRAM_ITERATIONS, ScramServer

FUZZ = settings(max_examples=300, deadline=None)

# Responses near the shapes mechanisms expect, plus arbitrary bytes.
_PIECES = st.sampled_from([b"\x00", b"tim", b"pw", b"\xff", b"\xc3\xa4", b"", b"*", b"="])
near_plain = st.lists(_PIECES, max_size=6).map(b"".join)
# Responses near SCRAM's shapes (RFC 5802 §7): gs2 flags, attributes, escapes.
_SCRAM_PIECES = st.sampled_from(
    [b"n", b"y", b"p=tls-exporter", b"p=tls-server-end-point", b"p=", b",", b",,", b"a=", b"n=", b"r=", b"c=",
     b"p=", b"m=", b"x=", b"=2C", b"=3D", b"=", b"biws", b"eSws", b"AAAA", b"tim", b"\x00", b"\xff", b"\xc3\xa4"]
)
near_scram = st.lists(_SCRAM_PIECES, max_size=12).map(b"".join)
_VALID_FIELDS = [b"tim", b"a=2Cb", b"x=3D", b"\xc3\xa4"]
_field = st.one_of(st.sampled_from(_VALID_FIELDS), st.sampled_from(_VALID_FIELDS),
                   st.lists(_SCRAM_PIECES, max_size=3).map(b"".join))
# Whole messages with each part chosen from valid and broken spellings, so the
# later steps (keys, proof) are reached, not only the first parser.
scram_first = st.tuples(
    st.sampled_from([b"n", b"y", b"p=tls-exporter", b"p=tls-server-end-point", b"p=tls-unique", b"q"]),
    st.sampled_from([b"", b"", b"a=tim", b"a=t=3Dm", b"a="]),
    st.sampled_from([b"", b"", b"", b"m=x,"]),
    _field,
    st.sampled_from([b"cnonce", b"cnonce", b"cnonce", b"c,n", b"", b"\x7f"]),
    st.sampled_from([b"", b"", b"", b",x=1", b",m=1", b",="]),
).map(lambda t: t[0] + b"," + t[1] + b"," + t[2] + b"n=" + t[3] + b",r=" + t[4] + t[5])
scram_final = st.tuples(
    st.sampled_from([b"biws", b"eSws", b"cD10bHMtZXhwb3J0ZXIsLEVFRUVFRUVFRUVFRUVFRUVFRUVFRUVFRUVFRUVFRUVF", b"!"]),
    _field,
    st.sampled_from([b"", b",x=1", b",m=1"]),
    st.one_of(st.binary(min_size=32, max_size=32).map(base64.b64encode), st.binary(max_size=40).map(base64.b64encode),
              _field),
).map(lambda t: b"c=" + t[0] + b",r=" + t[1] + t[2] + b",p=" + t[3])
response = st.one_of(st.binary(max_size=64), near_plain, near_scram, scram_first, scram_final)
BINDINGS = {"tls-exporter": b"E" * 32, "tls-server-end-point": b"S" * 32}
KEYS = derive_scram_keys("fuzz-password", b"s" * 16, SCRAM_ITERATIONS)
base64ish = st.one_of(
    st.binary(max_size=40),
    st.binary(max_size=40).map(base64.b64encode),
    st.text(alphabet="ABCDabcd0189+/= *\r\n", max_size=20).map(str.encode),
)


@FUZZ
@given(base64ish)
def test_decode_response_never_crashes(line: bytes) -> None:
    try:
        result = decode_response(line)
    except SaslError:
        return
    assert isinstance(result, (bytes, Cancelled))
    if isinstance(result, bytes) and line not in (b"=", b""):
        # Strict mode: padding and length are exact (unused low bits may differ).
        assert len(base64.b64encode(result)) == len(line)
        assert base64.b64decode(line, validate=True) == result


@FUZZ
@given(st.binary(max_size=200))
def test_challenge_encoding_round_trips(data: bytes) -> None:
    assert decode_response(encode_challenge(data)) == data


@FUZZ
@given(
    st.sampled_from(sorted(SERVER_MECHANISMS)),
    st.one_of(st.none(), response),
    st.lists(response, max_size=4),
    st.sampled_from([KEYS, unknown_user_keys("nobody@example.test", b"k" * 32)]),
)
def test_server_mechanisms_never_crash(
    name: str, initial: bytes | None, responses: list[bytes], keys: object
) -> None:
    mech = server_mechanism(name, BINDINGS)
    assert mech is not None
    try:
        result = mech.start(initial)
        steps = iter(responses)
        while isinstance(result, (Challenge, NeedKeys)):
            if isinstance(result, NeedKeys):
                assert "\x00" not in result.username and result.username
                result = mech.keys(keys)  # type: ignore[arg-type]
                continue
            nxt = next(steps, None)
            if nxt is None:
                return
            result = mech.step(nxt)
    except SaslError:
        return
    if isinstance(result, Verified):
        assert not result.ok  # random bytes never carry a valid proof
        return
    assert isinstance(result, Credentials)
    for value in (result.authzid, result.username, result.password):
        assert "\x00" not in value
    assert result.username and result.password


@FUZZ
@given(
    st.sampled_from(["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"]),
    st.one_of(scram_first, near_scram),
    st.lists(st.one_of(scram_final, near_scram, st.just(b"")), max_size=3),
)
def test_scram_near_misses_never_crash(name: str, first: bytes, finals: list[bytes]) -> None:
    mech = server_mechanism(name, BINDINGS)
    assert isinstance(mech, ScramServer)
    try:
        result = mech.start(first)
        if isinstance(result, NeedKeys):
            result = mech.keys(KEYS)
        for final in finals:
            if not isinstance(result, Challenge):
                break
            result = mech.step(final)
    except SaslError:
        return
    assert isinstance(result, (Challenge, NeedKeys)) or result == Verified(result.authzid, result.username, False)


text_field = st.text(min_size=1, max_size=30).filter(lambda s: "\x00" not in s)


@FUZZ
@given(text_field, text_field, st.one_of(st.just(""), text_field))
def test_plain_client_server_round_trip(username: str, password: str, authzid: str) -> None:
    line = base64.b64encode(client_plain(username, password, authzid=authzid))
    decoded = decode_response(line)
    assert isinstance(decoded, bytes)
    assert PlainServer().start(decoded) == Credentials(authzid, username, password)


@settings(max_examples=60, deadline=None)
@given(text_field, text_field)
def test_scram_round_trip_with_scramp(username: str, password: str) -> None:
    """Any name and password scramp accepts log in; the server sees the name as scramp prepared it."""
    try:
        client = scramp.ScramClient(["SCRAM-SHA-256"], username, password)
        first = client.get_client_first()
    except scramp.ScramException:
        return  # SASLprep refused the name or the password on the client side
    server = ScramServer()
    need = server.start(first.encode())
    assert isinstance(need, NeedKeys) and need.username == str(client.username)
    challenge = server.keys(derive_scram_keys(password, b"s" * 16, SCRAM_ITERATIONS))
    assert isinstance(challenge, Challenge)
    client.set_server_first(challenge.data.decode())
    final = server.step(client.get_client_final().encode())
    assert isinstance(final, Challenge)
    client.set_server_final(final.data.decode())
    assert server.step(b"") == Verified("", need.username, True)
