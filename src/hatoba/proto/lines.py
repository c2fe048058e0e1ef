"""The one line buffer shared by the SMTP, POP3 and IMAP cores.

Rules:
- A line ends with CRLF. A bare LF also ends a line (every real client is
  tolerated on command lines), but the line is marked `bare_lf` so a core can
  refuse it where its policy says so.
- A line longer than `max_line` is never buffered whole: its bytes are
  dropped up to the next LF and next_line() returns LINE_TOO_LONG once.
- Raw byte access (`take`, `take_all`) serves IMAP literals, BDAT chunks and
  the switch to DATA mode, so no bytes are ever read past a mode change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Line:
    content: bytes  # without the terminator
    bare_lf: bool  # terminated by LF alone


class _TooLong:
    def __repr__(self) -> str:
        return "LINE_TOO_LONG"


LINE_TOO_LONG: Final = _TooLong()


class LineBuffer:
    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._discarding = False  # inside an over-long line, dropping bytes

    def feed(self, data: bytes) -> None:
        self._buf += data

    def __len__(self) -> int:
        return len(self._buf)

    def next_line(self) -> Line | _TooLong | None:
        """The next complete line, LINE_TOO_LONG, or None when more data is needed."""
        while True:
            end = self._buf.find(b"\n")
            if self._discarding:
                if end < 0:
                    self._buf.clear()
                    return None
                del self._buf[: end + 1]
                self._discarding = False
                return LINE_TOO_LONG
            if end < 0:
                if len(self._buf) > self.max_line:
                    self._buf.clear()
                    self._discarding = True
                    continue
                return None
            if end > self.max_line:  # a terminated line that is too long
                del self._buf[: end + 1]
                return LINE_TOO_LONG
            bare = end == 0 or self._buf[end - 1] != 0x0D
            content = bytes(self._buf[: end if bare else end - 1])
            del self._buf[: end + 1]
            return Line(content, bare)

    def take(self, n: int) -> bytes:
        """Up to n raw bytes from the front of the buffer."""
        chunk = bytes(self._buf[:n])
        del self._buf[:n]
        return chunk

    def take_all(self) -> bytes:
        chunk = bytes(self._buf)
        self._buf.clear()
        return chunk
