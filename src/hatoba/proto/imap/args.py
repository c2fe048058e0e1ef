"""The one IMAP command parser: client bytes to tagged commands, plus the
helpers that read their arguments (RFC 9051 §9, RFC 3501 §9).

Rules:
- CommandReader assembles one whole command across literals and never
  raises: every problem is a CommandError the session answers with BAD (or
  NO [TOOBIG]), and the reader stays usable, except after a fatal error.
- Tokens are Atom, String (quoted or literal), NIL and ArgList. A "[...]" inside
  an atom is kept whole, spaces and parentheses included, so that
  "BODY[HEADER.FIELDS (A B)]<0.100>" is one Atom for parse_fetch_items.
- The command line (without literals) is capped at max_line bytes in total,
  each literal at max_literal. The reader keeps its own buffer instead of
  lines.LineBuffer: it must read the tag of an over-long line before it drops
  it, and switch between lines and literal bytes mid-command.
- Helpers take Args and raise ArgError with a short text for a BAD reply;
  nothing else escapes them (tests/fuzz/test_imap_args_fuzz.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Final

from hatoba.proto.imap import mutf7
from hatoba.proto.imap.types import (
    NIL,
    Arg,
    ArgList,
    Atom,
    FetchItem,
    Nil,
    SearchKey,
    Section,
    SeqRange,
    SequenceSet,
    String,
)
from hatoba.proto.smtp.events import NEED_DATA, _Sentinel


class ArgError(Exception):
    """A client syntax error; str(exc) is the text of the BAD reply."""


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
                 literal_minus: bool = False) -> None:
        self.max_line = max_line
        self.max_literal = max_literal
        # LITERAL- servers (RFC 7888) take non-synchronizing literals up to 4096 only.
        self.nonsync_limit = min(max_literal, LITERAL_MINUS_MAX) if literal_minus else max_literal
        self._buf = bytearray()
        self._closed = False
        self._skipping = False  # dropping the rest of an over-long line
        self._long_head = b""
        self._reset()

    def _reset(self) -> None:
        self._tag: str | None = None
        self._tokens: _Tokens | None = None
        self._used = 0  # line bytes of this command so far
        self._literal: tuple[int, bool] | None = None  # (size, literal8) being read
        self._discard = False  # reading the rest of a bad command only to drop it

    def feed(self, data: bytes) -> None:
        if not self._closed:
            self._buf += data

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
                buf.clear()
                self._skipping = True
            else:
                del buf[: end + 1]
            return _TOO_LONG
        line = bytes(buf[:end])
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > limit:
            self._long_head = line[: min(200, limit + 1)]
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
                if not self._discard:
                    assert self._tokens is not None
                    self._tokens.add_literal(value, literal8)
                continue
            line = self._take_line(self.max_line - self._used)
            if line is None:
                return NEED_DATA
            if isinstance(line, _TooLong):
                tag = self._tag
                if self._tokens is None and not self._discard:
                    m = _TAG_SP.match(self._long_head)
                    tag = m[1].decode("ascii") if m else None
                discarding = self._discard
                self._reset()
                if discarding:
                    continue
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
            if size > self.max_literal:
                self._reset()  # the client waits for "+" and will not send the bytes
                return CommandError(tag, "Literal too big", toobig=True)
            self._literal = (size, literal8)
            return ContinuationRequest(size)
        if size > self.nonsync_limit:
            return self._fatal(tag)
        self._literal = (size, literal8)
        return None

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


# -- scalar helpers -----------------------------------------------------------------------

_NUMBER = re.compile(r"[0-9]{1,20}")
MAX_NUMBER64 = 2**63 - 1  # RFC 9051 §9 number64
MAX_NUMBER = 2**32 - 1  # RFC 9051 §9 number / nz-number


def as_text(arg: Arg) -> str:
    """An astring (atom, quoted string or literal) as text; UTF-8 for strings."""
    if isinstance(arg, Atom):
        return arg.value
    if isinstance(arg, Nil):
        return "NIL"  # an atom spelled NIL is a valid astring
    if isinstance(arg, String):
        try:
            return arg.value.decode("utf-8")
        except UnicodeDecodeError:
            raise ArgError("Invalid UTF-8 in string") from None
    raise ArgError("Expected a string, not a list")


def as_number(arg: Arg, *, nonzero: bool = False, limit: int = MAX_NUMBER64) -> int:
    """number64 (RFC 9051 §9); nonzero=True for nz-number (no leading zero)."""
    if not isinstance(arg, Atom) or not _NUMBER.fullmatch(arg.value):
        raise ArgError("Expected a number")
    value = int(arg.value)
    if value > limit:
        raise ArgError("Number too large")
    if nonzero and (value == 0 or arg.value.startswith("0")):
        raise ArgError("Expected a number above zero")
    return value


def _word(arg: Arg) -> str:
    """An atom's upper-case text (keywords such as FLAGS, RETURN, CHANGEDSINCE)."""
    if not isinstance(arg, Atom):
        raise ArgError("Expected a keyword")
    return arg.value.upper()


def _at(args: Sequence[Arg], i: int, what: str) -> Arg:
    if i >= len(args):
        raise ArgError(f"Missing {what}")
    return args[i]


# RFC 9051 §9:
#   sequence-set = (seq-number / seq-range) ["," sequence-set]
#   seq-range = seq-number ":" seq-number;  seq-number = nz-number / "*"
#   RFC 5182: sequence-set =/ "$"
_SEQ_NUMBER = re.compile(r"\*|[1-9][0-9]{0,9}")


def _seq_number(text: str) -> int | None:
    if not _SEQ_NUMBER.fullmatch(text):
        raise ArgError("Invalid sequence set")
    if text == "*":
        return None
    value = int(text)
    if value > MAX_NUMBER:
        raise ArgError("Invalid sequence set")
    return value


def parse_sequence_set(text: str) -> SequenceSet:
    if text == "$":
        return SequenceSet((), saved=True)
    if not text or len(text) > 100_000:
        raise ArgError("Invalid sequence set")
    ranges = []
    for part in text.split(","):
        first, sep, last = part.partition(":")
        a = _seq_number(first)
        ranges.append(SeqRange(a, _seq_number(last) if sep else a))
    return SequenceSet(tuple(ranges))


# -- flags ------------------------------------------------------------------------------

SYSTEM_FLAGS = {f.lower(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")}
# flag-keyword = atom: ATOM-CHAR is any CHAR except atom-specials (RFC 9051 §9)
_KEYWORD = re.compile(r'[^\x00-\x20\x7f-\U0010ffff(){%*"\\\]]+')


def _keyword(text: str) -> str:
    if not _KEYWORD.fullmatch(text):
        raise ArgError("Invalid keyword")
    return text


def _flag(arg: Arg) -> str:
    if not isinstance(arg, Atom):
        raise ArgError("Invalid flag")
    if arg.value.startswith("\\"):
        flag = SYSTEM_FLAGS.get(arg.value.lower())
        if flag is None:
            raise ArgError("Unknown system flag")
        return flag
    return _keyword(arg.value)


def parse_flags(arg: Arg) -> tuple[str, ...]:
    """A flag list "(\\Seen $Junk)" or one flag; system flags in RFC spelling."""
    items = arg.items if isinstance(arg, ArgList) else (arg,)
    out: list[str] = []
    for item in items:
        flag = _flag(item)
        if flag not in out:
            out.append(flag)
    return tuple(out)


# -- dates ------------------------------------------------------------------------------

_MONTHS = {m: i for i, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1)}
# date-text = date-day "-" date-month "-" date-year; date-day = 1*2DIGIT
_DATE = re.compile(r"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
# date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE
_DATETIME = re.compile(r"( ?[0-9]|[0-9]{2})-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})")


def _make_date(day: str, month: str, year: str) -> date:
    number = _MONTHS.get(month.upper())
    if number is None:
        raise ArgError("Invalid month in date")
    try:
        return date(int(year), number, int(day))
    except ValueError:
        raise ArgError("Invalid date") from None


def parse_date(text: str) -> date:
    """A SEARCH date, "1-Feb-1994" (RFC 9051 §9 date-text)."""
    m = _DATE.fullmatch(text)
    if not m:
        raise ArgError("Invalid date, expected d-Mon-yyyy")
    return _make_date(m[1], m[2], m[3])


def parse_datetime(text: str) -> datetime:
    """An APPEND date-time, "17-Jul-1996 02:44:25 -0700", timezone-aware."""
    m = _DATETIME.fullmatch(text)
    if not m:
        raise ArgError("Invalid date-time, expected dd-Mon-yyyy hh:mm:ss +zzzz")
    day = _make_date(m[1].strip(), m[2], m[3])
    hour, minute, second, zh, zm = (int(m[i]) for i in (4, 5, 6, 8, 9))
    if hour > 23 or minute > 59 or second > 60 or zm > 59 or zh > 23:
        raise ArgError("Invalid date-time")
    offset = timedelta(hours=zh, minutes=zm) * (-1 if m[7] == "-" else 1)
    # A leap second (":60") is kept as :59 rather than refused.
    return datetime(day.year, day.month, day.day, hour, minute, min(second, 59), tzinfo=timezone(offset))


# -- mailboxes --------------------------------------------------------------------------


def _name(arg: Arg, utf8_accepted: bool) -> str:
    text = as_text(arg)
    if utf8_accepted:
        return text
    try:
        return mutf7.decode(text)
    except ValueError:
        raise ArgError("Mailbox name is not valid modified UTF-7") from None


def parse_mailbox(arg: Arg, *, utf8_accepted: bool = False) -> str:
    """A mailbox astring; INBOX in any case is "INBOX" (RFC 9051 §5.1)."""
    name = _name(arg, utf8_accepted)
    return "INBOX" if name.upper() == "INBOX" else name


STATUS_ITEMS = frozenset({"MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT",
                          "HIGHESTMODSEQ", "APPENDLIMIT"})


def parse_status_items(arg: Arg) -> tuple[str, ...]:
    """status-att-list (RFC 9051 §6.3.11, RFC 7162 HIGHESTMODSEQ, RFC 7889 APPENDLIMIT)."""
    if not isinstance(arg, ArgList) or not arg.items:
        raise ArgError("Expected a list of status items")
    out: list[str] = []
    for item in arg.items:
        word = _word(item)
        if word not in STATUS_ITEMS:
            raise ArgError("Unknown status item")
        if word not in out:
            out.append(word)
    return tuple(out)


@dataclass(frozen=True)
class ListArgs:
    """LIST arguments (RFC 9051 §6.3.9, RFC 5258 LIST-EXTENDED, RFC 6154)."""

    reference: str
    patterns: tuple[str, ...]
    selection: tuple[str, ...] = ()
    return_options: tuple[str, ...] = ()
    status_items: tuple[str, ...] = ()  # RETURN (STATUS (...)), RFC 5819
    extended: bool = False  # any LIST-EXTENDED syntax was used


SELECT_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"})


def parse_list_args(args: Sequence[Arg], *, utf8_accepted: bool = False) -> ListArgs:
    # list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]
    i = 0
    selection: list[str] = []
    extended = False
    if args and isinstance(args[0], ArgList):
        extended = True
        for item in args[0].items:
            word = _word(item)
            if word not in SELECT_OPTIONS:
                raise ArgError("Unknown LIST selection option")
            selection.append(word)
        # RFC 5258 §3.1: RECURSIVEMATCH needs a base option to modify.
        if "RECURSIVEMATCH" in selection and not {"SUBSCRIBED", "SPECIAL-USE"} & set(selection):
            raise ArgError("RECURSIVEMATCH needs another selection option")
        i = 1
    reference = _name(_at(args, i, "reference"), utf8_accepted)
    pattern = _at(args, i + 1, "mailbox pattern")
    if isinstance(pattern, ArgList):
        if not pattern.items:
            raise ArgError("Empty pattern list")
        extended = True
        patterns = tuple(_name(p, utf8_accepted) for p in pattern.items)
    else:
        patterns = (_name(pattern, utf8_accepted),)
    i += 2
    returns: list[str] = []
    status: tuple[str, ...] = ()
    if i < len(args):
        opts = _at(args, i + 1, "RETURN options")
        if _word(args[i]) != "RETURN" or not isinstance(opts, ArgList) or i + 2 != len(args):
            raise ArgError("Expected RETURN (options) after the patterns")
        extended = True
        j = 0
        while j < len(opts.items):
            word = _word(opts.items[j])
            if word not in RETURN_OPTIONS:
                raise ArgError("Unknown LIST return option")
            if word == "STATUS":
                j += 1
                status = parse_status_items(_at(opts.items, j, "status items"))
            returns.append(word)
            j += 1
    return ListArgs(reference, patterns, tuple(selection), tuple(returns), status, extended)


# -- STORE ------------------------------------------------------------------------------

_STORE_ITEM = re.compile(r"([+-]?)FLAGS(\.SILENT)?")


def parse_store(args: Sequence[Arg]) -> tuple[str, bool, tuple[str, ...], int | None]:
    """STORE after the sequence set: (mode "+"/"-"/"", silent, flags, unchangedsince).

    store-att-flags = (["+" / "-"] "FLAGS" [".SILENT"]) SP (flag-list / (flag *(SP flag)))
    RFC 7162 §3.1.3: an optional "(UNCHANGEDSINCE n)" comes first.
    """
    i = 0
    unchangedsince = None
    if args and isinstance(args[0], ArgList):
        mods = args[0].items
        if len(mods) != 2 or _word(mods[0]) != "UNCHANGEDSINCE":
            raise ArgError("Unknown STORE modifier")
        unchangedsince = as_number(mods[1])
        i = 1
    m = _STORE_ITEM.fullmatch(_word(_at(args, i, "FLAGS")))
    if not m:
        raise ArgError("Expected FLAGS, +FLAGS or -FLAGS")
    rest = args[i + 1 :]
    if not rest:
        raise ArgError("Missing flags")
    if len(rest) == 1:
        flags = parse_flags(rest[0])
    else:
        flags = tuple(dict.fromkeys(_flag(a) for a in rest))
    return m[1], bool(m[2]), flags, unchangedsince


# -- FETCH ------------------------------------------------------------------------------

MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
SIMPLE_ITEMS = frozenset({"ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE",
                          "RFC822.TEXT", "BODY", "BODYSTRUCTURE", "UID", "MODSEQ"})
_FETCH_ATT = re.compile(r"([A-Z0-9.]+)(?:\[(.*)\])?(?:<([0-9]{1,19})\.([0-9]{1,19})>)?", re.DOTALL)
# section-part = nz-number *("." nz-number), then optional "." section-text
_SECTION_PART = re.compile(r"([1-9][0-9]{0,9}(?:\.[1-9][0-9]{0,9})*)(?:\.(.+)|$)", re.DOTALL)
_HEADER_FIELDS = re.compile(r"HEADER\.FIELDS(\.NOT)? \((.*)\)", re.DOTALL)
_FIELD_NAME = re.compile(r' *("(?:[^"\\]|\\.)*"|[^ "()]+)')


def _header_list(inner: str) -> tuple[str, ...]:
    names: list[str] = []
    pos = 0
    while pos < len(inner):
        m = _FIELD_NAME.match(inner, pos)
        if not m:
            raise ArgError("Invalid header field list")
        name = m[1]
        if name.startswith('"'):
            name = re.sub(r'\\(.)', r"\1", name[1:-1])
        if not name:
            raise ArgError("Empty header field name")
        names.append(name.upper())
        pos = m.end()
        if inner[pos:].strip(" ") == "":
            break
    if not names:
        raise ArgError("Empty header field list")
    return tuple(names)


def _section(spec: str, binary: bool) -> Section:
    """section-spec (RFC 9051 §9), already upper-case; binary: section-binary."""
    part: tuple[int, ...] = ()
    text = spec
    m = _SECTION_PART.match(spec)
    if m:
        part = tuple(int(p) for p in m[1].split("."))
        if any(p > MAX_NUMBER for p in part):
            raise ArgError("Invalid section part")
        text = m[2] or ""
    if binary:
        if text:
            raise ArgError("BINARY takes part numbers only")
        return Section(part)
    if text in ("", "HEADER", "TEXT") or (text == "MIME" and part):
        return Section(part, text)
    h = _HEADER_FIELDS.fullmatch(text)
    if not h:
        raise ArgError("Invalid section")
    return Section(part, "HEADER.FIELDS.NOT" if h[1] else "HEADER.FIELDS", _header_list(h[2]))


def _fetch_item(arg: Arg) -> FetchItem:
    if not isinstance(arg, Atom):
        raise ArgError("Invalid fetch item")
    m = _FETCH_ATT.fullmatch(arg.value.upper())
    if not m:
        raise ArgError("Invalid fetch item")
    name, spec, offset, count = m[1], m[2], m[3], m[4]
    if spec is None:
        if name not in SIMPLE_ITEMS or offset is not None:
            raise ArgError("Unknown fetch item")
        return FetchItem(name)
    peek = name.endswith(".PEEK")
    base = name.removesuffix(".PEEK")
    if base not in ("BODY", "BINARY", "BINARY.SIZE") or (base == "BINARY.SIZE" and (peek or offset)):
        raise ArgError("Unknown fetch item")
    partial = None
    if offset is not None:
        # partial = "<" number64 "." nz-number64 ">"
        start, size = int(offset), int(count)
        if size == 0 or start > MAX_NUMBER64 or size > MAX_NUMBER64:
            raise ArgError("Invalid partial range")
        partial = (start, size)
    return FetchItem(base, _section(spec, base != "BODY"), peek, partial)


def parse_fetch_items(args: Sequence[Arg]) -> tuple[list[FetchItem], dict[str, int | bool]]:
    """FETCH after the sequence set: a macro, one item or a list, then modifiers.

    fetch = "FETCH" SP sequence-set SP ("ALL" / "FULL" / "FAST" / fetch-att /
            "(" fetch-att *(SP fetch-att) ")") [fetch-modifiers]   ; RFC 7162 §3.1.4
    """
    first = _at(args, 0, "fetch items")
    if isinstance(first, Atom) and first.value.upper() in MACROS:
        items = [FetchItem(n) for n in MACROS[first.value.upper()]]
    elif isinstance(first, ArgList):
        if not first.items:
            raise ArgError("Empty fetch item list")
        items = [_fetch_item(a) for a in first.items]
    else:
        items = [_fetch_item(first)]
    modifiers: dict[str, int | bool] = {}
    if len(args) > 2 or (len(args) == 2 and not isinstance(args[1], ArgList)):
        raise ArgError("Unexpected arguments after fetch items")
    if len(args) == 2:
        mods = args[1].items  # type: ignore[union-attr]
        if not mods:
            raise ArgError("Empty fetch modifier list")
        i = 0
        while i < len(mods):
            word = _word(mods[i])
            if word == "CHANGEDSINCE":
                modifiers[word] = as_number(_at(mods, i + 1, "CHANGEDSINCE value"), nonzero=True)
                i += 2
            elif word == "VANISHED":
                modifiers[word] = True
                i += 1
            else:
                raise ArgError("Unknown fetch modifier")
    return items, modifiers


# -- SEARCH -----------------------------------------------------------------------------

FLAG_KEYS = frozenset({"ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "NEW", "OLD", "RECENT", "SEEN",
                       "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN"})
TEXT_KEYS = frozenset({"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"})
DATE_KEYS = frozenset({"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"})
SEARCH_RETURN = frozenset({"MIN", "MAX", "COUNT", "ALL", "SAVE"})  # RFC 4731, RFC 5182
CHARSETS = ("UTF-8", "US-ASCII")
_MAX_SEARCH_DEPTH = 40


def _search_key(args: Sequence[Arg], i: int, depth: int) -> tuple[SearchKey, int]:
    if depth > _MAX_SEARCH_DEPTH:
        raise ArgError("Search criteria nested too deeply")
    arg = args[i]
    if isinstance(arg, ArgList):
        return SearchKey("AND", keys=_search_keys(arg.items, depth + 1)), i + 1
    if not isinstance(arg, Atom):
        raise ArgError("Invalid search key")
    word = arg.value.upper()
    if word[:1] in tuple("0123456789*$"):
        return SearchKey("SEQSET", sequence=parse_sequence_set(arg.value)), i + 1
    if word in FLAG_KEYS:
        return SearchKey(word), i + 1
    if word in TEXT_KEYS:
        return SearchKey(word, text=as_text(_at(args, i + 1, word + " text"))), i + 2
    if word in DATE_KEYS:
        return SearchKey(word, day=parse_date(as_text(_at(args, i + 1, "date")))), i + 2
    if word in ("KEYWORD", "UNKEYWORD"):
        flag = _at(args, i + 1, "keyword")
        if not isinstance(flag, Atom):
            raise ArgError("Invalid keyword")
        return SearchKey(word, text=_keyword(flag.value)), i + 2
    if word == "HEADER":
        name = as_text(_at(args, i + 1, "header name"))
        return SearchKey(word, header=name, text=as_text(_at(args, i + 2, "header value"))), i + 3
    if word in ("LARGER", "SMALLER"):
        return SearchKey(word, number=as_number(_at(args, i + 1, "size"))), i + 2
    if word == "UID":
        text = _at(args, i + 1, "UID set")
        if not isinstance(text, Atom):
            raise ArgError("Invalid UID set")
        return SearchKey(word, sequence=parse_sequence_set(text.value)), i + 2
    if word == "NOT":
        key, j = _search_key(args, _check(args, i + 1), depth + 1)
        return SearchKey(word, keys=(key,)), j
    if word == "OR":
        left, j = _search_key(args, _check(args, i + 1), depth + 1)
        right, j = _search_key(args, _check(args, j), depth + 1)
        return SearchKey(word, keys=(left, right)), j
    if word == "MODSEQ":
        # RFC 7162 §3.1.5: "MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer
        j = i + 1
        if isinstance(_at(args, j, "MODSEQ value"), String):
            kind = _at(args, j + 1, "entry type")
            if not isinstance(kind, Atom) or kind.value.lower() not in ("priv", "shared", "all"):
                raise ArgError("Invalid MODSEQ entry type")
            j += 2
        return SearchKey(word, number=as_number(_at(args, j, "MODSEQ value"))), j + 1
    raise ArgError("Unknown search key")


def _check(args: Sequence[Arg], i: int) -> int:
    if i >= len(args):
        raise ArgError("Missing search key")
    return i


def _search_keys(args: Sequence[Arg], depth: int) -> tuple[SearchKey, ...]:
    keys = []
    i = 0
    while i < len(args):
        key, i = _search_key(args, i, depth)
        keys.append(key)
    if not keys:
        raise ArgError("Missing search criteria")
    return tuple(keys)


def parse_search(args: Sequence[Arg], *, utf8_accepted: bool = False) -> tuple[SearchKey, dict[str, object]]:
    """SEARCH arguments: (the criteria as one AND key, options).

    search = "SEARCH" [search-return-opts] [SP "CHARSET" SP charset] 1*(SP search-key)
    options: "return" (a tuple; RFC 4731 ESEARCH, RFC 5182 SAVE), "charset".
    Strings are always read as UTF-8 (US-ASCII is a subset; RFC 6855 makes
    UTF-8 the only charset once UTF8=ACCEPT is on).
    """
    options: dict[str, object] = {}
    i = 0
    if i < len(args) and isinstance(args[i], Atom) and _word(args[i]) == "RETURN":
        opts = _at(args, i + 1, "RETURN options")
        if not isinstance(opts, ArgList):
            raise ArgError("Expected RETURN (options)")
        returns = []
        for item in opts.items:
            word = _word(item)
            if word not in SEARCH_RETURN:
                raise ArgError("Unknown SEARCH return option")
            if word not in returns:
                returns.append(word)
        options["return"] = tuple(returns)
        i += 2
    if i < len(args) and isinstance(args[i], Atom) and _word(args[i]) == "CHARSET":
        charset = as_text(_at(args, i + 1, "charset")).upper()
        if charset not in CHARSETS:
            raise ArgError("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset")
        options["charset"] = charset
        i += 2
    keys = _search_keys(args[i:], 0)
    return SearchKey("AND", keys=keys), options
