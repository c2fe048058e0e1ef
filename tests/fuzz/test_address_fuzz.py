"""Fuzz hatoba.proto.address: parse or raise AddressError, nothing else; round trips."""

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hatoba.proto.address import (
    AddressError,
    parse_address,
    parse_domain,
    parse_path,
    quote_local,
    split_esmtp_params,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters that steer the parser into its interesting corners.
_TRICKY = '<>@"\\.:,[]% !-_=aZ09üß例\x00\r\n\t\x7f\x85\u2028\u0301xn-IPv6'
tricky_text = st.text(alphabet=st.sampled_from(_TRICKY), max_size=40)
# Lines as the SMTP core may hand them over: any bytes, decoded either way.
wire_text = st.binary(max_size=80).flatmap(
    lambda b: st.sampled_from([b.decode("utf-8", "surrogateescape"), b.decode("latin-1")])
)
any_text = st.one_of(st.text(max_size=80), tricky_text, wire_text, tricky_text.map(lambda s: f"<{s}>"))


def _round_trips(address_text: str) -> None:
    """If text parses, its canonical form parses to the same address, and is stable."""
    try:
        address = parse_address(address_text)
    except AddressError:
        return
    canonical = str(address)
    again = parse_address(canonical)
    assert again == address
    assert str(again) == canonical
    path = parse_path(f"<{canonical}>", smtputf8=True)
    assert path.address == address


@FUZZ
@given(any_text, st.booleans(), st.booleans())
def test_parse_path_never_crashes(text: str, smtputf8: bool, allow_null: bool) -> None:
    try:
        path = parse_path(text, smtputf8=smtputf8, allow_null=allow_null)
    except AddressError as exc:
        message = str(exc)
        assert message and message.isascii() and "\n" not in message and "\r" not in message
        return
    if path.address is None:
        assert allow_null
        return
    if not smtputf8:
        assert str(path).isascii()
    _round_trips(str(path.address))


@FUZZ
@given(any_text, st.booleans())
def test_parse_address_never_crashes(text: str, smtputf8: bool) -> None:
    try:
        parse_address(text, smtputf8=smtputf8)
    except AddressError:
        pass
    _round_trips(text)


@FUZZ
@given(any_text)
def test_parse_domain_never_crashes(text: str) -> None:
    try:
        domain = parse_domain(text)
    except AddressError:
        return
    assert domain.isascii() and domain == domain.lower()
    assert parse_domain(domain) == domain


@FUZZ
@given(st.one_of(any_text, tricky_text.map(lambda s: f"<{s}> {s}")))
def test_split_esmtp_params_never_crashes(text: str) -> None:
    try:
        path, params = split_esmtp_params(text)
    except AddressError:
        return
    assert text.startswith(path)
    assert all(key == key.upper() for key in params)


# --- generated valid addresses ------------------------------------------------

_ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
_UNICODE_LETTERS = "äöüéèçñßøåæœłžšıяжщλω中文例子日本語한국"
atom = st.text(alphabet=_ATEXT + _UNICODE_LETTERS, min_size=1, max_size=8)
dot_string = st.lists(atom, min_size=1, max_size=4).map(".".join)
# Any printable ASCII or letter, to exercise quoting.
quoted_value = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126) | st.sampled_from(_UNICODE_LETTERS), min_size=1, max_size=20)
local_part = st.one_of(dot_string, quoted_value).filter(lambda s: len(quote_local(s).encode()) <= 64)

ldh_label = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?\Z").filter(lambda s: s[2:4] != "--")
unicode_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789" + _UNICODE_LETTERS, min_size=1, max_size=10)
domain = st.lists(st.one_of(ldh_label, unicode_label), min_size=1, max_size=4).map(".".join)


@FUZZ
@given(local_part, domain, st.booleans())
def test_generated_addresses_parse_and_round_trip(local: str, domain_text: str, upper: bool) -> None:
    assume(not domain_text.startswith("xn--") and ".xn--" not in domain_text)
    if upper:
        domain_text = domain_text.upper()
    text = f"{quote_local(local)}@{domain_text}"
    address = parse_address(text)  # must not raise: every part was valid
    assert address.local == local
    assert address.domain == parse_domain(domain_text)
    assert address.domain.isascii() and address.domain == address.domain.lower()
    assert str(address) == f"{quote_local(local)}@{address.domain}"
    assert parse_address(str(address)) == address
    path = parse_path(f"<{address}>", smtputf8=True)
    assert path.address == address
    # Parameters after a generated path are split off intact.
    split = split_esmtp_params(f"<{address}> SIZE=10 SMTPUTF8")
    assert split == (f"<{address}>", {"SIZE": "10", "SMTPUTF8": None})
