"""A stored message into its POP3 wire form, for RETR and TOP (RFC 1939 §3, §7).

Rules:
- Every line ends in CRLF on the wire. A stored CRLF or LF is a line end;
  a CR not followed by LF is message data and is sent as it is (it never
  ends a line for the client, so it needs no stuffing after it).
- A line that starts with "." gets a second "." (byte-stuffing), so no
  message line can look like the terminator.
- finish() gives the terminator: CRLF first when the message does not end
  with a line end, then ".\r\n".
- Chunk boundaries never matter: feeding a message in any pieces gives the
  same bytes as feeding it whole (a CR at the end of a piece waits for the
  next piece; the line-start state carries over).
- lf_only=True reads the store's format exactly: every LF is a line end and
  every CR is data. hatoba's Maildir keeps LF line ends and reports
  W=size+lines, which is wire_size(data, lf_only=True); in the default mode
  a stored "\\r\\n" is one line end, so a bare CR just before a line end
  would be lost and the size reported by LIST would be off by one.
"""

from __future__ import annotations


def wire_size(data: bytes, *, lf_only: bool = False) -> int:
    """Size of a whole message with CRLF line ends, before dot-stuffing (what LIST reports)."""
    if lf_only:
        return len(data) + data.count(b"\n")
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


class RetrEncoder:
    """Streams a message for RETR: feed() the stored bytes in any chunks, then finish()."""

    def __init__(self, *, lf_only: bool = False) -> None:
        self.lf_only = lf_only
        self._line_start = True  # the output so far ends at a line start
        self._cr = False  # the last chunk ended with a CR, not yet written

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        data = bytes(chunk)
        prefix = b""
        if self._cr:
            self._cr = False
            if data.startswith(b"\n"):
                prefix, data = b"\r\n", data[1:]
            else:
                prefix = b"\r"  # a bare CR: data
        if self.lf_only:
            body = data.replace(b"\n", b"\r\n")
        else:
            if data.endswith(b"\r"):  # maybe the first half of a CRLF
                data, self._cr = data[:-1], True
            body = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        out = prefix + body
        if not out:
            return b""
        # Every CRLF in `out` is a line end, so every "." after one starts a line.
        if self._line_start and out.startswith(b"."):
            out = b"." + out
        out = out.replace(b"\r\n.", b"\r\n..")
        self._line_start = out.endswith(b"\n")
        return out

    def finish(self) -> bytes:
        """The end of the answer: a pending CR, a CRLF if needed, then ".\\r\\n"."""
        out = b""
        if self._cr:
            self._cr = False
            out = b"\r"
            self._line_start = False
        if not self._line_start:
            out += b"\r\n"
        self._line_start = True
        return out + b".\r\n"


class TopEncoder:
    """Streams the head of a message for TOP: the header, the blank line, and `lines` body lines.

    When `done` turns True the answer is complete but for finish(); the
    caller can stop reading the message.
    """

    def __init__(self, lines: int, *, lf_only: bool = False) -> None:
        if lines < 0:
            raise ValueError("TOP needs a non-negative number of lines")
        self._encoder = RetrEncoder(lf_only=lf_only)
        self._left = lines  # body lines still to pass
        self._in_header = True
        self._partial = False  # the current output line already has bytes
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        if self.done:
            return b""
        return self._cut(self._encoder.feed(chunk))

    def finish(self) -> bytes:
        if self.done:
            return b".\r\n"  # stopped right after a CRLF
        return self._encoder.finish()

    def _cut(self, out: bytes) -> bytes:
        """Pass `out` up to the end of the last allowed line; see where lines end.

        Every LF in encoder output is the end of a CRLF, and a CRLF is never
        split across two outputs, so a line is empty exactly when it is "\\r\\n".
        """
        pos, n = 0, len(out)
        while pos < n:
            if not self._in_header:
                ends = out.count(b"\n", pos)
                if ends < self._left:  # fast path: the whole rest fits
                    self._left -= ends
                    if ends:
                        self._partial = not out.endswith(b"\n")
                    else:
                        self._partial = True
                    return out
            end = out.find(b"\n", pos)
            if end < 0:
                self._partial = True
                return out
            empty = not self._partial and end == pos + 1
            self._partial = False
            if self._in_header:
                if empty:  # RFC 5322 §2.1: the blank line ends the header
                    self._in_header = False
                    if self._left == 0:
                        self.done = True
                        return out[: end + 1]
            else:
                self._left -= 1
                if self._left == 0:
                    self.done = True
                    return out[: end + 1]
            pos = end + 1
        return out
