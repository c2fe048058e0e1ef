"""Inflater: IMAP COMPRESS=DEFLATE input (RFC 4978), inflated a bounded piece at a time.

Rules:
- One call gives at most `piece` bytes, however little went in: 64 KiB of
  deflate data may stand for 64 MiB (a "deflate bomb"). The rest waits as
  zlib's unconsumed_tail until the session has dealt with this piece, and
  the session reads nothing from the socket meanwhile, so TCP holds the
  client back (the stream stops reading past its max_buffer).
- Invalid data, or data after the end of the deflate stream (which zlib
  would otherwise keep, all of it), raises InflateError: a client error.
"""

from __future__ import annotations

import zlib


class InflateError(Exception):
    """The client's compressed input cannot be inflated."""


class Inflater:
    __slots__ = ("_zlib", "_tail", "_full", "piece")

    def __init__(self, piece: int) -> None:
        self._zlib = zlib.decompressobj(-15)  # RFC 4978 §4: raw deflate, no zlib header
        self._tail = b""  # input not inflated yet, because the last piece was full
        self._full = False  # the last piece was full: zlib may hold more output
        self.piece = piece

    @property
    def pending(self) -> bool:
        """More inflated bytes may come without new input: call inflate(b"")."""
        return self._full or bool(self._tail)

    def inflate(self, data: bytes) -> bytes:
        """The next piece of what is pending and then `data`."""
        if self._tail:
            data = self._tail + data
        try:
            out = self._zlib.decompress(data, self.piece)
        except zlib.error as exc:
            raise InflateError(str(exc)) from None
        if self._zlib.unused_data:
            raise InflateError("data after the end of the compressed stream")
        self._tail = self._zlib.unconsumed_tail
        self._full = len(out) == self.piece
        return out
