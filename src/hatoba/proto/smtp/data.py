"""Streaming decoder for the DATA phase: dot-unstuffing and end-of-data.

Rules (RFC 5321 §4.1.1.4, §4.5.2; the CVE-2023-51764 "SMTP smuggling" fix):
- Only <CR><LF>.<CR><LF> ends the data: the "." line must follow a real CRLF
  and end with a real CRLF. "\\n.\\n", "\\r\\n.\\n" and "\\n.\\r\\n" never end it,
  so a message cannot carry a second, smuggled message past us.
- A line that starts with "." loses that dot (dot-unstuffing).
- Bare LF: mode "normalize" turns it into CRLF (Postfix's
  smtpd_forbid_bare_newline = normalize); mode "reject" stops at the first
  one (the session answers 550 and closes). A bare CR is ordinary data.
- Memory stays bounded: a line longer than PARTIAL_FLUSH is passed on in
  pieces, and a piece in the middle of a line is never taken for a line start.
- Output lines always end in CRLF, so the spooled message is canonical.
"""

from __future__ import annotations

from dataclasses import dataclass

PARTIAL_FLUSH = 64 * 1024


@dataclass(frozen=True, slots=True)
class DataProgress:
    content: bytes  # decoded message bytes ready to store
    finished: bool  # the terminating "." line was seen
    bare_lf: bool  # a bare LF was seen (in "reject" mode decoding stops there)
    leftover: bytes  # bytes after the terminating line (pipelined commands)


class DataDecoder:
    def __init__(self, *, reject_bare_lf: bool) -> None:
        self.reject_bare_lf = reject_bare_lf
        self._buf = b""
        self._mid_line = False  # the buffer starts in the middle of a line
        self._after_crlf = True  # the last complete line ended with a real CRLF

    def feed(self, data: bytes) -> DataProgress:
        buf = self._buf + data if self._buf else data
        fast = self._feed_whole_lines(buf)
        if fast is not None:
            return fast
        return self._feed_line_by_line(buf)

    def _feed_whole_lines(self, buf: bytes) -> DataProgress | None:
        """The usual chunk, decoded by whole-buffer operations instead of a loop over
        its lines (a 50 KB message has some 700): every line ends in a real CRLF and
        the chunk starts at a line start. None when the chunk needs the line-by-line
        rules (a bare LF, a line still open after a partial flush, a long open tail)."""
        if self._mid_line or not self._after_crlf:
            return None
        last_lf = buf.rfind(b"\n")
        if last_lf < 0 or len(buf) - last_lf - 1 > PARTIAL_FLUSH:
            return None
        whole = buf[: last_lf + 1]
        if whole.count(b"\n") != whole.count(b"\r\n"):
            return None  # a bare LF somewhere: rejected or normalized line by line
        first_dot = whole.find(b"\r\n.")  # a line after the first that starts with "."
        if whole.startswith(b".\r\n"):
            end, rest = 0, 3
        else:
            end = whole.find(b"\r\n.\r\n", first_dot) if first_dot >= 0 else -1
            end, rest = (end + 2, end + 5) if end >= 0 else (-1, -1)
        lines = whole if end < 0 else whole[:end]
        # Unstuffing: every line that starts with "." loses that dot; lines start at
        # 0 and after each CRLF (no bare LF here), and none is the "." line itself.
        if lines.startswith(b"."):
            lines = lines[1:]
            first_dot -= 1
        if 0 <= first_dot < len(lines) - 2:
            lines = lines.replace(b"\r\n.", b"\r\n")
        if end >= 0:
            self._buf = b""
            return DataProgress(lines, True, False, buf[rest:])
        self._buf = buf[last_lf + 1 :]
        return DataProgress(lines, False, False, b"")

    def _feed_line_by_line(self, buf: bytes) -> DataProgress:
        out: list[bytes] = []
        pos = 0
        n = len(buf)
        while pos < n:
            end = buf.find(b"\n", pos)
            if end < 0:
                if n - pos > PARTIAL_FLUSH:
                    # Keep a trailing CR: it may pair with the next chunk's LF.
                    cut = n - 1 if buf[n - 1] == 0x0D else n
                    out.append(self._unstuff(buf[pos:cut], line_start=not self._mid_line))
                    self._mid_line = True
                    pos = cut
                break
            real_crlf = end > pos and buf[end - 1] == 0x0D
            body_end = end - 1 if real_crlf else end
            line_start = not self._mid_line
            if not real_crlf and self.reject_bare_lf:
                self._buf = b""
                return DataProgress(b"".join(out), False, True, b"")
            if (
                line_start
                and real_crlf
                and self._after_crlf
                and body_end - pos == 1
                and buf[pos] == 0x2E  # "."
            ):
                self._buf = b""
                return DataProgress(b"".join(out), True, False, buf[end + 1 :])
            out.append(self._unstuff(buf[pos:body_end], line_start=line_start))
            out.append(b"\r\n")
            self._mid_line = False
            self._after_crlf = real_crlf
            pos = end + 1
        self._buf = buf[pos:]
        return DataProgress(b"".join(out), False, False, b"")

    @staticmethod
    def _unstuff(segment: bytes, *, line_start: bool) -> bytes:
        if line_start and segment[:1] == b".":
            return segment[1:]
        return segment
