"""Fuzz hatoba.proto.sasl: any client input gives a result or SaslError, nothing else."""

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from hatoba.proto.sasl import (
    SERVER_MECHANISMS,
    Cancelled,
    Challenge,
    Credentials,
    PlainServer,
    SaslError,
    client_plain,
    decode_response,
    encode_challenge,
    server_mechanism,
)

FUZZ = settings(max_examples=300, deadline=None)

# Responses near the shapes mechanisms expect, plus arbitrary bytes.
_PIECES = st.sampled_from([b"\x00", b"tim", b"pw", b"\xff", b"\xc3\xa4", b"", b"*", b"="])
near_plain = st.lists(_PIECES, max_size=6).map(b"".join)
response = st.one_of(st.binary(max_size=64), near_plain)
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
@given(st.sampled_from(sorted(SERVER_MECHANISMS)), st.one_of(st.none(), response), st.lists(response, max_size=4))
def test_server_mechanisms_never_crash(name: str, initial: bytes | None, responses: list[bytes]) -> None:
    mech = server_mechanism(name)
    assert mech is not None
    try:
        result = mech.start(initial)
        steps = iter(responses)
        while isinstance(result, Challenge):
            nxt = next(steps, None)
            if nxt is None:
                return
            result = mech.step(nxt)
    except SaslError:
        return
    assert isinstance(result, Credentials)
    for value in (result.authzid, result.username, result.password):
        assert "\x00" not in value
    assert result.username and result.password


text_field = st.text(min_size=1, max_size=30).filter(lambda s: "\x00" not in s)


@FUZZ
@given(text_field, text_field, st.one_of(st.just(""), text_field))
def test_plain_client_server_round_trip(username: str, password: str, authzid: str) -> None:
    line = base64.b64encode(client_plain(username, password, authzid=authzid))
    decoded = decode_response(line)
    assert isinstance(decoded, bytes)
    assert PlainServer().start(decoded) == Credentials(authzid, username, password)
