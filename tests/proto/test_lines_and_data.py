"""The shared line buffer and the DATA decoder (dot-unstuffing, smuggling fix)."""

from hatoba.proto.lines import LINE_TOO_LONG, Line, LineBuffer
from hatoba.proto.smtp.data import PARTIAL_FLUSH, DataDecoder


def test_lines_crlf_and_bare_lf():
    buf = LineBuffer(100)
    buf.feed(b"EHLO a\r\nNOOP\nQU")
    assert buf.next_line() == Line(b"EHLO a", False)
    assert buf.next_line() == Line(b"NOOP", True)
    assert buf.next_line() is None
    buf.feed(b"IT\r\n")
    assert buf.next_line() == Line(b"QUIT", False)


def test_overlong_line_is_dropped_not_buffered():
    buf = LineBuffer(10)
    buf.feed(b"x" * 5000)
    assert buf.next_line() is None
    assert len(buf) == 0  # nothing kept in memory
    buf.feed(b"y" * 10 + b"\r\nNOOP\r\n")
    assert buf.next_line() is LINE_TOO_LONG
    assert buf.next_line() == Line(b"NOOP", False)


def test_overlong_terminated_line():
    buf = LineBuffer(10)
    buf.feed(b"z" * 11 + b"\r\nOK\r\n")
    assert buf.next_line() is LINE_TOO_LONG
    assert buf.next_line() == Line(b"OK", False)


def decode_all(chunks, reject=False):
    dec = DataDecoder(reject_bare_lf=reject)
    out = b""
    for c in chunks:
        p = dec.feed(c)
        out += p.content
        if p.finished or p.bare_lf:
            return out, p
    return out, None


def test_data_end_and_unstuffing():
    out, p = decode_all([b"Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n"])
    assert out == b"Subject: x\r\n\r\n.leading dot\r\n"
    assert p.finished and p.leftover == b"QUIT\r\n"


def test_end_split_across_every_byte():
    msg = b"a\r\n..b\r\n.\r\n"
    out, p = decode_all([bytes([c]) for c in msg])
    assert out == b"a\r\n.b\r\n" and p.finished


def test_smuggling_sequences_do_not_end_data():
    # CVE-2023-51764: only CRLF.CRLF ends the data.
    for evil in (b"a\n.\nMAIL FROM:<x@y>\r\n", b"a\r\n.\nX\r\n", b"a\n.\r\nX\r\n"):
        out, p = decode_all([evil])
        assert p is None, evil  # not finished
        assert b"MAIL" in out or b"X" in out


def test_bare_lf_normalized_to_crlf():
    out, p = decode_all([b"one\ntwo\r\nthree\rfour\r\n.\r\n"])
    assert out == b"one\r\ntwo\r\nthree\rfour\r\n"  # bare CR kept as data
    assert p.finished


def test_bare_lf_rejected_in_reject_mode():
    out, p = decode_all([b"one\r\ntwo\nthree\r\n.\r\n"], reject=True)
    assert p.bare_lf and not p.finished


def test_long_line_streams_in_pieces():
    dec = DataDecoder(reject_bare_lf=False)
    big = b"x" * (PARTIAL_FLUSH * 3)
    p = dec.feed(b"." + big)
    assert p.content == big  # flushed without waiting for the end of line, dot removed
    p2 = dec.feed(b"\r\n.\r\n")
    assert p2.finished and p2.content == b"\r\n"


def test_cr_at_chunk_boundary_of_long_line():
    dec = DataDecoder(reject_bare_lf=True)
    p = dec.feed(b"x" * (PARTIAL_FLUSH + 10) + b"\r")
    assert not p.bare_lf
    p2 = dec.feed(b"\n.\r\n")
    assert not p2.bare_lf and p2.finished
    assert p.content + p2.content == b"x" * (PARTIAL_FLUSH + 10) + b"\r\n"


def _decode_all(decoder, chunks, feed):
    """Feed `chunks` until the end of data or a bare LF stop; the whole result."""
    content, leftover = [], b""
    for chunk in chunks:
        progress = feed(decoder, chunk)
        content.append(progress.content)
        if progress.finished or progress.bare_lf:
            return b"".join(content), progress.finished, progress.bare_lf, progress.leftover
    return b"".join(content), False, False, leftover


def test_the_whole_chunk_decoding_agrees_with_the_line_by_line_rules():
    """The fast path (whole-buffer operations) must give exactly what the line-by-line
    decoder gives, on every chunking of messages full of dots, bare LFs and CRs."""
    import random

    from hatoba.proto.smtp.data import DataDecoder

    rng = random.Random(20261207)
    pieces = [b"text", b".", b"..", b".x", b"", b"a\r", b"\r", b"x" * 90, b". ", b".\r"]
    fast_taken = 0
    for case in range(3000):
        lines = [rng.choice(pieces) for _ in range(rng.randrange(0, 30))]
        ends = [b"\n" if rng.random() < 0.05 else b"\r\n" for _ in lines]
        message = b"".join(line + end for line, end in zip(lines, ends))
        message += rng.choice([b".\r\n", b".\r\n", b".\n", b""]) + rng.choice([b"", b"QUIT\r\n", b"MAIL FROM:<>\r\n."])
        cuts = sorted(rng.sample(range(1, len(message)), min(len(message) - 1, rng.randrange(0, 6)))) if len(message) > 1 else []
        chunks = [message[a:b] for a, b in zip([0] + cuts, cuts + [len(message)])]
        for reject in (False, True):
            whole = DataDecoder(reject_bare_lf=reject)
            taken = []

            def feed(decoder, chunk):
                buf = decoder._buf + chunk if decoder._buf else chunk
                result = decoder._feed_whole_lines(buf)
                taken.append(result is not None)
                return result if result is not None else decoder._feed_line_by_line(buf)

            got = _decode_all(whole, chunks, feed)
            want = _decode_all(DataDecoder(reject_bare_lf=reject), chunks,
                               lambda d, c: d._feed_line_by_line(d._buf + c if d._buf else c))
            assert got == want, (case, reject, chunks)
            fast_taken += any(taken)
    assert fast_taken > 1000  # the fast path was really exercised
