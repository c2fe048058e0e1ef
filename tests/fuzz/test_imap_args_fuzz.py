"""Hypothesis against the IMAP command parser: the reader never raises and
gives the same events however the bytes are split; the helpers raise
ArgError and nothing else; modified UTF-7 round-trips."""

import pytest
from hypothesis import given, settings, strategies as st

from hatoba.proto.imap import args as A
from hatoba.proto.imap import mutf7
from hatoba.proto.imap.types import NIL, ArgList, Atom, String
from hatoba.proto.smtp.events import NEED_DATA

PIECES = [
    b"a1 ", b"NOOP", b"\r\n", b"\n", b"\r", b" ", b"(", b")", b'"', b"\\", b"{3}\r\n", b"{3+}\r\n", b"~{2}\r\n",
    b"{0+}\r\n", b"{99999999999999999999}\r\n", b"{200+}\r\n", b"{5000}\r\n", b"BODY[HEADER.FIELDS (A B)]<0.9>",
    b"[", b"]", b"NIL", b"\x00", b"\xff", b"\xc3\xa9", b"1:*", b"$", b"\\Seen", b"UID FETCH", b"SEARCH OR ",
    b"x" * 70, b"a2 APPEND INBOX ", b"LOGIN", b"*",
]
streams = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=20)), max_size=40).map(b"".join)


def run(chunks, literal_minus=False):
    r = A.CommandReader(max_line=120, max_literal=300, literal_minus=literal_minus)
    out = []
    for c in chunks:
        r.feed(c)
        while (item := r.next()) is not NEED_DATA:
            assert isinstance(item, (A.RawCommand, A.ContinuationRequest, A.CommandError))
            out.append(item)
    return out


@settings(max_examples=400, deadline=None)
@given(streams, st.lists(st.integers(0, 2000), max_size=8), st.booleans())
def test_reader_never_raises_and_ignores_chunking(data, cuts, minus):
    whole = run([data], minus)
    cuts = sorted({c for c in cuts if c <= len(data)})
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    assert run(pieces, minus) == whole
    assert run([data[i : i + 1] for i in range(len(data))], minus) == whole


@settings(max_examples=200, deadline=None)
@given(streams)
def test_raw_lines_never_raise(data):
    r = A.CommandReader(max_line=50)
    r.feed(data)
    for _ in range(len(data) + 1):
        line = r.next_raw_line()
        if line is NEED_DATA:
            break
        assert line is None or (isinstance(line, bytes) and b"\n" not in line)


atoms = st.one_of(
    st.sampled_from(["ALL", "FAST", "FULL", "FLAGS", "BODY[]", "BODY.PEEK[1.2.MIME]<0.5>", "BINARY.SIZE[1]",
                     "BODY[HEADER.FIELDS (A \"B\")]", "OR", "NOT", "UID", "1:*", "$", "*", "0", "MODSEQ", "SINCE",
                     "1-Feb-1994", "RETURN", "CHARSET", "UTF-8", "HEADER", "KEYWORD", "LARGER", "+FLAGS.SILENT",
                     "UNCHANGEDSINCE", "CHANGEDSINCE", "VANISHED", "\\Seen", "\\foo", "STATUS", "MESSAGES",
                     "SUBSCRIBED", "RECURSIVEMATCH", "INBOX", "&Jjo-", "&", ""]),
    st.text(max_size=12),
).map(Atom)
leaves = st.one_of(atoms, st.binary(max_size=8).map(String), st.just(NIL))
args = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4).map(lambda x: ArgList(tuple(x))), max_leaves=20)
arg_lists = st.lists(args, max_size=8).map(tuple)

SEQ_HELPERS = [A.parse_fetch_items, A.parse_search, A.parse_store, A.parse_list_args]
ONE_HELPERS = [A.as_text, A.as_number, A.parse_flags, A.parse_mailbox, A.parse_status_items]
TEXT_HELPERS = [A.parse_sequence_set, A.parse_date, A.parse_datetime]


def only_arg_error(fn, *a):
    try:
        fn(*a)
    except A.ArgError as exc:
        assert str(exc)


@settings(max_examples=500, deadline=None)
@given(arg_lists)
def test_helpers_raise_only_arg_error(values):
    for fn in SEQ_HELPERS:
        only_arg_error(fn, values)
    for value in values:
        for fn in ONE_HELPERS:
            only_arg_error(fn, value)


@settings(max_examples=300, deadline=None)
@given(streams)
def test_helpers_on_tokenized_bytes(data):
    for item in run([b"t X " + data + b"\r\n"]):
        if isinstance(item, A.RawCommand):
            for fn in SEQ_HELPERS:
                only_arg_error(fn, item.args)
            for value in item.args:
                for fn in ONE_HELPERS:
                    only_arg_error(fn, value)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=30), st.from_regex(r"[0-9*:,$]{0,20}", fullmatch=True),
                 st.from_regex(r" ?[0-9]{1,2}-[A-Za-z]{3}-[0-9]{4}( [0-9:]{8} [+-][0-9]{4})?", fullmatch=True)))
def test_text_helpers_raise_only_arg_error(text):
    for fn in TEXT_HELPERS:
        only_arg_error(fn, text)


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_mutf7_round_trip(name):
    encoded = mutf7.encode(name)
    assert encoded.isascii() and all(0x20 <= ord(c) <= 0x7E for c in encoded)
    assert mutf7.decode(encoded) == name


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=20), st.from_regex(r"[a-z&,+A-Z0-9-]{0,20}", fullmatch=True)))
def test_mutf7_decode_raises_only_value_error(text):
    try:
        decoded = mutf7.decode(text)
    except ValueError:
        return
    # Whatever decodes is canonical up to how shifts are split.
    assert mutf7.decode(mutf7.encode(decoded)) == decoded


@pytest.mark.parametrize("depth", [5, 31, 33, 200])
def test_deep_nesting_is_refused_cleanly(depth):
    out = run([b"a X " + b"(" * depth + b")" * depth + b"\r\n"])
    assert len(out) == 1 and isinstance(out[0], (A.RawCommand, A.CommandError))
    assert isinstance(out[0], A.RawCommand) == (depth <= 32)
