"""Inflater alone: a deflate bomb comes out a bounded piece at a time; bad data is an InflateError."""

import zlib

import pytest

from hatoba.imap.inflate import Inflater, InflateError


def deflate(data: bytes, *, finish: bool = False) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    return z.compress(data) + z.flush(zlib.Z_FINISH if finish else zlib.Z_SYNC_FLUSH)


def test_a_bomb_comes_out_in_pieces_and_whole():
    bomb = deflate(b"A" * (8 * 2**20) + b"\r\n")
    assert len(bomb) < 16384
    inflater = Inflater(65536)
    pieces = [inflater.inflate(bomb)]
    while inflater.pending:
        pieces.append(inflater.inflate(b""))
    assert max(map(len, pieces)) == 65536
    assert b"".join(pieces) == b"A" * (8 * 2**20) + b"\r\n"


def test_invalid_data_is_an_inflate_error():
    with pytest.raises(InflateError):
        Inflater(65536).inflate(b"\xff" * 64)


def test_data_after_the_end_of_the_stream_is_not_kept():
    inflater = Inflater(65536)
    with pytest.raises(InflateError):
        inflater.inflate(deflate(b"a NOOP\r\n", finish=True) + b"x" * 100000)
