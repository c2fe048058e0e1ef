"""RETR/TOP encoders: CRLF, dot-stuffing, terminator, any chunk boundaries."""

import pytest
from hypothesis import given, settings, strategies as st

from hatoba.proto.pop3.body import RetrEncoder, TopEncoder, wire_size


def retr(data: bytes, **kw) -> bytes:
    enc = RetrEncoder(**kw)
    return enc.feed(data) + enc.finish()


def top(data: bytes, lines: int, **kw) -> bytes:
    enc = TopEncoder(lines, **kw)
    return enc.feed(data) + enc.finish()


def chunked(encoder, data: bytes, cuts: list[int]) -> bytes:
    out = b""
    prev = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        out += encoder.feed(data[prev:cut])
        prev = cut
    return out + encoder.finish()


def unstuff(wire: bytes) -> bytes:
    """What a POP3 client reads: up to the first CRLF.CRLF, dots removed."""
    assert wire.endswith(b".\r\n")
    lines = wire.split(b"\r\n")
    body = []
    for line in lines:
        if line == b".":
            break
        body.append(line[1:] if line.startswith(b".") else line)
    return b"\r\n".join(body) + b"\r\n" if body else b""


def test_examples():
    assert retr(b"") == b".\r\n"
    assert retr(b"a\nb\n") == b"a\r\nb\r\n.\r\n"
    assert retr(b"a\r\nb\r\n") == b"a\r\nb\r\n.\r\n"
    assert retr(b"a\nb") == b"a\r\nb\r\n.\r\n"
    assert retr(b".\n..x\n.") == b"..\r\n...x\r\n..\r\n.\r\n"
    assert retr(b"x\r\n.\r\nsmuggled\r\n") == b"x\r\n..\r\nsmuggled\r\n.\r\n"


def test_bare_cr_is_kept_and_never_ends_a_line():
    assert retr(b"a\rb\n") == b"a\rb\r\n.\r\n"
    assert retr(b"a\r.b\n") == b"a\r.b\r\n.\r\n"  # no line start after a bare CR
    assert retr(b"a\r\r\n") == b"a\r\r\n.\r\n"
    assert retr(b"a\r") == b"a\r\r\n.\r\n"
    assert wire_size(b"a\r") == 2


def test_chunk_boundaries_inside_crlf_and_before_dot():
    enc = RetrEncoder()
    assert enc.feed(b"a\r") == b"a"
    assert enc.feed(b"\n") == b"\r\n"
    assert enc.feed(b".b\r") == b"..b"
    assert enc.feed(b"c") == b"\rc"
    assert enc.finish() == b"\r\n.\r\n"


def test_lf_only_matches_the_maildir_w_size():
    # hatoba's Maildir stores LF line ends and reports W = size + lines.
    stored = b"Subject: x\n\nbare cr at end\r\n.\n"
    wire = retr(stored, lf_only=True)
    assert wire == b"Subject: x\r\n\r\nbare cr at end\r\r\n..\r\n.\r\n"
    assert len(unstuff(wire)) == wire_size(stored, lf_only=True) == len(stored) + stored.count(b"\n")
    assert len(unstuff(retr(stored))) == wire_size(stored) != wire_size(stored, lf_only=True)


def test_wire_size():
    assert wire_size(b"") == 0
    assert wire_size(b"a\nb\n") == 6
    assert wire_size(b"a\r\nb\r\n") == 6
    assert wire_size(b"a\r\nb\n") == 6


def test_top():
    msg = b"A: 1\nB: 2\n\nl1\n.l2\nl3\n"
    assert top(msg, 0) == b"A: 1\r\nB: 2\r\n\r\n.\r\n"
    assert top(msg, 2) == b"A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\n.\r\n"
    assert top(msg, 3) == retr(msg)
    assert top(msg, 50) == retr(msg)
    assert top(b"A: 1\nB: 2\n", 0) == b"A: 1\r\nB: 2\r\n.\r\n"  # no body at all
    assert top(b"A: 1\n\nno end", 5) == b"A: 1\r\n\r\nno end\r\n.\r\n"
    assert top(b"\nbody\n", 0) == b"\r\n.\r\n"  # empty header
    enc = TopEncoder(1)
    assert enc.feed(b"A: 1\r\n\r\nfirst\r\nsecond") == b"A: 1\r\n\r\nfirst\r\n"
    assert enc.done
    assert enc.feed(b"more\r\n") == b""
    assert enc.finish() == b".\r\n"
    with pytest.raises(ValueError):
        TopEncoder(-1)


def test_top_header_line_split_across_chunks_is_not_blank():
    enc = TopEncoder(0)
    out = enc.feed(b"Subject: x\r") + enc.feed(b"\nX-Long: ab") + enc.feed(b"\r\n") + enc.feed(b"\r\nbody\r\n")
    assert out + enc.finish() == b"Subject: x\r\nX-Long: ab\r\n\r\n.\r\n"


messages = st.lists(
    st.sampled_from([b"\r", b"\n", b".", b"\r\n", b"a", b"..", b"\r\n.\r\n", b"\n.\n", b"x: y", b" "]), max_size=40
).map(b"".join) | st.binary(max_size=80)


@settings(max_examples=400, deadline=None)
@given(messages, st.lists(st.integers(min_value=0, max_value=80), max_size=10), st.booleans())
def test_retr_any_chunks_equal_one_shot(data, cuts, lf_only):
    whole = retr(data, lf_only=lf_only)
    assert chunked(RetrEncoder(lf_only=lf_only), data, cuts) == whole
    # The client reads exactly the message back, CRLF-normalised.
    body = unstuff(whole)
    ends_with_line_end = data.endswith(b"\n") or not data
    assert len(body) == wire_size(data, lf_only=lf_only) + (0 if ends_with_line_end else 2)
    assert body.count(b"\r\n") == data.count(b"\n") + (0 if ends_with_line_end else 1)
    # No early terminator: the only CRLF.CRLF is the last five bytes (or the whole answer).
    assert (b"\r\n" + whole).find(b"\r\n.\r\n") == len(whole) - 3


@settings(max_examples=400, deadline=None)
@given(messages, st.lists(st.integers(min_value=0, max_value=80), max_size=10), st.integers(0, 5))
def test_top_any_chunks_equal_one_shot(data, cuts, lines):
    whole = top(data, lines)
    assert chunked(TopEncoder(lines), data, cuts) == whole
    # TOP is a prefix of RETR, cut at a line end, with the same terminator rule.
    full = retr(data)
    assert full[:-3].startswith(whole[:-3]) or whole == full
    assert whole.endswith(b"\r\n.\r\n") or whole == b".\r\n"
