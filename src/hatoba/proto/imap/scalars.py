"""IMAP argument values every command shares: astrings, numbers, sequence
sets, flags and dates (RFC 9051 §9), and ArgError, the one client syntax error.

Rules:
- Helpers take Args and raise ArgError with a short text for a BAD reply;
  nothing else escapes them (tests/fuzz/test_imap_args_fuzz.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone

from hatoba.proto.imap.types import Arg, ArgList, Atom, Nil, SeqRange, SequenceSet, String


class ArgError(Exception):
    """A client syntax error; str(exc) is the text of the BAD reply."""


class ArgRefused(ArgError):
    """A well-formed argument the server cannot take (a mailbox name that is not
    modified UTF-7): the reply is NO with str(exc), not BAD."""


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


def as_word(arg: Arg) -> str:
    """An atom's upper-case text (keywords such as FLAGS, RETURN, CHANGEDSINCE)."""
    if not isinstance(arg, Atom):
        raise ArgError("Expected a keyword")
    return arg.value.upper()


def arg_at(args: Sequence[Arg], i: int, what: str) -> Arg:
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


def check_keyword(text: str) -> str:
    if not _KEYWORD.fullmatch(text):
        raise ArgError("Invalid keyword")
    return text


def as_flag(arg: Arg) -> str:
    if isinstance(arg, Nil):  # flag-keyword = atom, and "NIL" is one where no nstring may stand
        return "NIL"
    if not isinstance(arg, Atom):
        raise ArgError("Invalid flag")
    if arg.value.startswith("\\"):
        flag = SYSTEM_FLAGS.get(arg.value.lower())
        if flag is None:
            raise ArgError("Unknown system flag")
        return flag
    return check_keyword(arg.value)


def parse_flags(arg: Arg) -> tuple[str, ...]:
    """A flag list "(\\Seen $Junk)" or one flag; system flags in RFC spelling."""
    items = arg.items if isinstance(arg, ArgList) else (arg,)
    out: list[str] = []
    for item in items:
        flag = as_flag(item)
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
