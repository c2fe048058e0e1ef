"""The IMAP command reader: client bytes to tagged commands, across lines and
literals (RFC 9051 §9, RFC 3501 §9, RFC 7888 LITERAL+/LITERAL-).

Rules:
- CommandReader assembles one whole command across literals and never
  raises: every problem is a CommandError the session answers with BAD (or
  NO [TOOBIG]), and the reader stays usable, except after a fatal error.
- Tokens are Atom, String (quoted or literal), NIL and ArgList. A "[...]" inside
  an atom is kept whole, spaces and parentheses included, so that
  "BODY[HEADER.FIELDS (A B)]<0.100>" is one Atom for parse_fetch_items.
- The command line (without literals) is capped at max_line bytes in total,
  its literals together at max_literal (a command carries one big literal
  at most: APPEND's), and line and literals together at max_command (a
  small budget before login). The reader keeps its own buffer instead of
  lines.LineBuffer: it must read the tag of an over-long line before it drops
  it, and switch between lines and literal bytes mid-command.
- An over-long line that starts "tag ID (" is read through and dropped like
  any other, then handed out as ID without fields rather than refused: the
  server ignores a client's ID fields (RFC 2971 §3.1 lets it), and RFC 2971's
  largest (30 fields of 1024 octets, about 31 KiB) is over the budget before
  login. Not when the line announces a literal: that is refused as before.
- What the arguments mean is not read here: args.py and the grammar modules
  it names do that, on the RawCommand this module hands out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from hatoba.proto.imap.scalars import ArgError
from hatoba.proto.imap.types import NIL, Arg, ArgList, Atom, String
from hatoba.proto.smtp.events import NEED_DATA, _Sentinel


@dataclass(frozen=True)
class RawCommand:
    tag: str
    name: str  # upper-case; "UID" keeps its sub-command as args[0]
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class ContinuationRequest:
    """A synchronizing literal was announced: send "+ Ready for literal data" now."""

    size: int


@dataclass(frozen=True)
class CommandError:
    """A command that could not be read: "TAG BAD text" ("* BAD" without a tag).

    toobig: a literal over the limit (reply NO [TOOBIG]); fatal: the client
    is sending bytes we will not read (BYE and close).
    """

    tag: str | None
    text: str
    fatal: bool = False
    toobig: bool = False


# -- the tokenizer ------------------------------------------------------------------------

# RFC 9051 §9: tag = 1*<any ASTRING-CHAR except "+">
_TAG = re.compile(rb'([^\x00-\x20\x7f-\xff(){%*"\\+]+)(?: |$)')
# ATOM-CHAR plus list-wildcards, "\" (flags) and 8-bit (UTF-8 names); "[" opens a bracket.
_TAG_SP = re.compile(rb'([^\x00-\x20\x7f-\xff(){%*"\\+]+) ')
_ATOM_RUN = re.compile(rb'[^\x00-\x20\x7f()"{\[]*')
_BRACKET = re.compile(rb"\[[^\[\]\x00-\x1f\x7f]*\]")
# RFC 9051 §9: quoted = DQUOTE *QUOTED-CHAR DQUOTE; only \" and \\ escape.
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_UNESCAPE = re.compile(rb'\\(["\\])')
# literal = "{" number64 ["+"] "}" CRLF (RFC 7888); literal8 = "~{" ... (RFC 3516)
_LITERAL = re.compile(rb"(~?)\{([0-9]{1,19})(\+?)\}")
_NONSYNC_AT_END = re.compile(rb"~?\{([0-9]{1,19})\+\}$")
_TAIL = 32  # bytes of a dropped line kept to see a literal it announces
_ID_HEAD = re.compile(rb"[^ ]+ ID \(", re.IGNORECASE)  # an ID with fields: a dropped line may still be one
_COMMAND_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")
_MAX_DEPTH = 32
LITERAL_MINUS_MAX = 4096  # RFC 7888 §4


class _Tokens:
    """One command's tokens so far; lines and literals are added in turn."""

    def __init__(self) -> None:
        self.stack: list[list[Arg]] = [[]]
        self.need_sep = False  # the last token must be followed by SP or ")"

    def add_line(self, data: bytes, pos: int) -> tuple[int, bool, bool] | None:
        """Tokenize data[pos:]; (size, synchronizing, literal8) when it ends with a literal."""
        stack, n = self.stack, len(data)
        i = pos
        while i < n:
            c = data[i]
            if c == 0x20:
                self.need_sep = False
                i += 1
                continue
            if c == 0x29:  # ")"
                if len(stack) == 1:
                    raise ArgError("Unexpected )")
                items = stack.pop()
                stack[-1].append(ArgList(tuple(items)))
                self.need_sep = True
                i += 1
                continue
            if self.need_sep:
                raise ArgError("Missing space between arguments")
            if c == 0x28:  # "("
                if len(stack) > _MAX_DEPTH:
                    raise ArgError("Lists nested too deeply")
                stack.append([])
                i += 1
                continue
            self.need_sep = True
            if c == 0x22:
                m = _QUOTED.match(data, i)
                if not m:
                    raise ArgError("Invalid quoted string")
                stack[-1].append(String(_UNESCAPE.sub(rb"\1", m[1])))
                i = m.end()
                continue
            if c == 0x7B or (c == 0x7E and data[i + 1 : i + 2] == b"{"):
                m = _LITERAL.fullmatch(data, i)
                if not m:
                    raise ArgError("Invalid literal")
                return int(m[2]), not m[3], bool(m[1])
            i = self._atom(data, i)
        return None

    def _atom(self, data: bytes, start: int) -> int:
        i = start
        while True:
            i = _ATOM_RUN.match(data, i).end()  # type: ignore[union-attr]
            if i < len(data) and data[i] == 0x5B:  # "[": a section, kept whole
                m = _BRACKET.match(data, i)
                i = m.end() if m else i + 1
                continue
            break
        if i == start:
            raise ArgError("Invalid character in command")
        try:
            text = data[start:i].decode("utf-8")
        except UnicodeDecodeError:
            raise ArgError("Invalid UTF-8 in command") from None
        self.stack[-1].append(NIL if text.upper() == "NIL" else Atom(text))
        return i

    def add_literal(self, value: bytes, literal8: bool) -> None:
        self.stack[-1].append(String(value, literal=True, literal8=literal8))

    def finish(self) -> list[Arg]:
        if len(self.stack) != 1:
            raise ArgError("Missing )")
        return self.stack[0]


# -- the reader -----------------------------------------------------------------------------


class _TooLong:
    pass


_TOO_LONG: Final = _TooLong()


class CommandReader:
    """Bytes in, whole commands out (h11 style: feed(), then next() until NEED_DATA)."""

    def __init__(self, max_line: int = 65536, max_literal: int = 64 * 1024 * 1024, *,
                 max_command: int | None = None, literal_minus: bool = False) -> None:
        self._literal_minus = literal_minus
        self.set_limits(max_line, max_literal, max_command=max_command)
        self._buf = bytearray()
        self._closed = False
        self._skipping = False  # dropping the rest of an over-long line
        self._long_head = b""
        self._long_tail = b""  # the last bytes of an over-long line seen so far
        self._long_id: str | None = None  # tag of an over-long ID line being dropped
        self._reset()

    def set_limits(self, max_line: int, max_literal: int, *, max_command: int | None = None) -> None:
        """Limits for the next commands (larger once the client has logged in).
        max_command None: max_line + max_literal, the two budgets apart."""
        self.max_line = max_line
        self.max_literal = max_literal
        self.max_command = max_line + max_literal if max_command is None else max_command
        # LITERAL- servers (RFC 7888) take non-synchronizing literals up to 4096 only.
        self.nonsync_limit = min(max_literal, LITERAL_MINUS_MAX) if self._literal_minus else max_literal

    def _reset(self) -> None:
        self._tag: str | None = None
        self._tokens: _Tokens | None = None
        self._used = 0  # line bytes of this command so far
        self._literal_bytes = 0  # literal bytes of this command so far
        self._literal: tuple[int, bool] | None = None  # (size, literal8) being read
        self._discard = False  # reading the rest of a bad command only to drop it

    def feed(self, data: bytes) -> None:
        if not self._closed:
            self._buf += data

    @property
    def between_commands(self) -> bool:
        """Nothing of a next command has come in yet (no bytes buffered, no literal pending)."""
        return not self._buf and self._tokens is None and self._literal is None and not self._skipping

    def _take_line(self, limit: int) -> bytes | _TooLong | None:
        buf = self._buf
        if self._skipping:
            end = buf.find(b"\n")
            if end < 0:
                buf.clear()
                return None
            del buf[: end + 1]
            self._skipping = False
        end = buf.find(b"\n", 0, limit + 2)
        if end < 0:
            # limit content bytes and a CR may still end well; one more cannot.
            if len(buf) <= limit + 1:
                return None
            # Only bytes that are surely part of the line, so that the tag
            # read from them does not depend on how the input was split.
            self._long_head = bytes(buf[: min(200, limit + 1)])
            end = buf.find(b"\n")
            if end < 0:
                self._long_tail = bytes(buf[-_TAIL:])
                buf.clear()
                self._skipping = True
            else:
                self._long_tail = bytes(buf[max(0, end - _TAIL):end])
                del buf[: end + 1]
            return _TOO_LONG
        line = bytes(buf[:end])
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > limit:
            self._long_head = line[: min(200, limit + 1)]
            self._long_tail = line[-_TAIL:]
            del buf[: end + 1]
            return _TOO_LONG
        del buf[: end + 1]
        return line

    def next_raw_line(self) -> bytes | None | _Sentinel:
        """The next line without its CRLF (AUTHENTICATE responses, IDLE's DONE).

        None: a line over max_line was dropped. Call only between commands.
        """
        if self._closed:
            return NEED_DATA
        line = self._take_line(self.max_line)
        if line is None:
            return NEED_DATA
        if isinstance(line, _TooLong):
            return None
        return line

    def next(self) -> RawCommand | ContinuationRequest | CommandError | _Sentinel:
        while not self._closed:
            if self._literal is not None:
                size, literal8 = self._literal
                if len(self._buf) < size:
                    return NEED_DATA
                value = bytes(self._buf[:size])
                del self._buf[:size]
                self._literal = None
                self._literal_bytes += size
                if not self._discard:
                    assert self._tokens is not None
                    self._tokens.add_literal(value, literal8)
                continue
            if self._skipping:
                # The rest of an over-long line: its end may announce a literal.
                end = self._buf.find(b"\n")
                if end < 0:
                    self._long_tail = (self._long_tail + bytes(self._buf[-_TAIL:]))[-_TAIL:]
                    self._buf.clear()
                    return NEED_DATA
                tail = (self._long_tail + bytes(self._buf[max(0, end - _TAIL):end]))[-_TAIL:]
                del self._buf[: end + 1]
                self._skipping = False
                long_id, self._long_id = self._long_id, None
                if self._skip_literal_after(tail.rstrip(b"\r")):
                    return self._fatal(long_id)
                if long_id is not None:
                    return self._dropped_id(long_id)
                continue
            line = self._take_line(self._line_room())
            if line is None:
                return NEED_DATA
            if isinstance(line, _TooLong):
                tag = self._tag
                is_id = False
                if self._tokens is None and not self._discard:
                    m = _TAG_SP.match(self._long_head)
                    tag = m[1].decode("ascii") if m else None
                    is_id = tag is not None and _ID_HEAD.match(self._long_head) is not None
                discarding = self._discard
                self._reset()
                if is_id and self._skipping:
                    self._long_id = tag  # answered once the line has ended
                    continue
                # A non-synchronizing literal announced at the end of the
                # dropped line is dropped too, or its bytes would run as commands.
                if not self._skipping and self._skip_literal_after(self._long_tail.rstrip(b"\r")):
                    return self._fatal(tag)
                if discarding:
                    continue
                if is_id:
                    return self._dropped_id(tag)
                return CommandError(tag, "Command line too long")
            self._used += len(line)
            result = self._segment(line)
            if result is not None:
                return result
        return NEED_DATA

    def _segment(self, line: bytes) -> RawCommand | ContinuationRequest | CommandError | None:
        if self._discard:
            if self._skip_literal_after(line):
                return self._fatal(None)
            return None
        pos = 0
        if self._tokens is None:
            if not line:
                return None  # RFC-wise an error; clients send stray CRLFs after APPEND
            self._tag = _read_tag(line)
            if self._tag is None:
                return self._fail(line, "Missing or invalid tag")
            self._tokens = _Tokens()
            pos = len(self._tag)
        if b"\x00" in line:
            return self._fail(line, "NUL byte in command")
        try:
            literal = self._tokens.add_line(line, pos)
            if literal is None:
                return self._finish()
        except ArgError as exc:
            return self._fail(line, str(exc))
        size, sync, literal8 = literal
        tag = self._tag
        if sync:
            if size > self._literal_room():
                self._reset()  # the client waits for "+" and will not send the bytes
                return CommandError(tag, "Literal too big", toobig=True)
            self._literal = (size, literal8)
            return ContinuationRequest(size)
        if size > min(self.nonsync_limit, self._literal_room()):
            return self._fatal(tag)
        self._literal = (size, literal8)
        return None

    def _dropped_id(self, tag: str) -> RawCommand | CommandError:
        """An over-long ID line, dropped: ID without its fields, unless a literal follows it."""
        if self._literal is not None:  # its literal is being dropped too; refuse as before
            return CommandError(tag, "Command line too long")
        return RawCommand(tag, "ID", ())

    def _line_room(self) -> int:
        left = self.max_command - self._used - self._literal_bytes
        return max(0, min(self.max_line - self._used, left))

    def _literal_room(self) -> int:
        left = self.max_command - self._used - self._literal_bytes
        return max(0, min(self.max_literal - self._literal_bytes, left))

    def _finish(self) -> RawCommand | CommandError:
        assert self._tokens is not None and self._tag is not None
        args = self._tokens.finish()
        tag = self._tag
        self._reset()
        if not args or not isinstance(args[0], Atom) or not _COMMAND_NAME.fullmatch(args[0].value):
            return CommandError(tag, "Missing or invalid command name")
        return RawCommand(tag, args[0].value.upper(), tuple(args[1:]))

    def _fail(self, line: bytes, text: str) -> CommandError:
        tag = self._tag
        self._reset()
        # A non-synchronizing literal is on its way: read past it, or the
        # client's bytes would run as commands (command injection).
        if self._skip_literal_after(line):
            return self._fatal(tag)
        return CommandError(tag, text)

    def _skip_literal_after(self, line: bytes) -> bool:
        """Drop the literal `line` announces; True when it is too big to drop."""
        m = _NONSYNC_AT_END.search(line)
        if not m:
            self._reset()
            return False
        size = int(m[1])
        if size > self.nonsync_limit:
            return True
        self._discard = True
        self._literal = (size, False)
        return False

    def _fatal(self, tag: str | None) -> CommandError:
        self._closed = True
        self._buf.clear()
        self._reset()
        return CommandError(tag, "Literal too big", fatal=True, toobig=True)


def _read_tag(line: bytes) -> str | None:
    m = _TAG.match(line)
    return m[1].decode("ascii") if m else None
