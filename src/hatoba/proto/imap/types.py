"""Data types shared by the IMAP parser, FETCH, SEARCH and the session.

All are plain frozen dataclasses; the parser (args.py) makes them from
client bytes, fetch.py and search.py consume them.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime


# -- generic arguments (what args.py tokenizes a command line into) ----------------


@dataclass(frozen=True, slots=True)
class Atom:
    """An atom, kept as sent (NIL is Nil, not an Atom). Compare case-insensitively where the RFC says so."""

    value: str


@dataclass(frozen=True, slots=True)
class String:
    """A quoted string or a literal; `literal8` for ~{n} (RFC 3516 binary)."""

    value: bytes
    literal: bool = False
    literal8: bool = False


@dataclass(frozen=True, slots=True)
class Nil:
    pass


NIL = Nil()


@dataclass(frozen=True, slots=True)
class ArgList:
    """A parenthesized list."""

    items: tuple[Arg, ...]


Arg = Atom | String | Nil | ArgList


# -- sequence sets (RFC 9051 §9 sequence-set) -----------------------------------------


@dataclass(frozen=True, slots=True)
class SeqRange:
    """first:last; None stands for "*" (the largest number in use)."""

    first: int | None
    last: int | None


@dataclass(frozen=True, slots=True)
class SequenceSet:
    ranges: tuple[SeqRange, ...]
    saved: bool = False  # "$": the result of the last SEARCH ... SAVE (RFC 5182)

    def spans(self, largest: int) -> list[tuple[int, int]]:
        """The ranges as ascending, disjoint (low, high) pairs, overlapping and adjacent ones
        merged; "*" is `largest` (ranges with "*" name nothing when largest is 0).

        A client may send thousands of ranges (a 64 KB line of "1:*,"): merged first,
        every use costs one pass over the messages, not one per range.
        """
        pairs = []
        for r in self.ranges:
            if largest == 0 and (r.first is None or r.last is None):
                continue
            first = largest if r.first is None else r.first
            last = largest if r.last is None else r.last
            pairs.append((first, last) if first <= last else (last, first))
        pairs.sort()
        merged: list[tuple[int, int]] = []
        for low, high in pairs:
            if merged and low <= merged[-1][1] + 1:
                if high > merged[-1][1]:
                    merged[-1] = (merged[-1][0], high)
            else:
                merged.append((low, high))
        return merged

    def resolve(self, largest: int) -> list[int]:
        """The numbers named, ascending and unique; "*" is `largest` (nothing when largest is 0)."""
        return [n for low, high in self.spans(largest) for n in range(low, high + 1)]

    def pick(self, ascending: Sequence[int], largest: int) -> list[int]:
        """The numbers of an ascending list that the set names ("*" is `largest`)."""
        out: list[int] = []
        for low, high in self.spans(largest):
            out += ascending[bisect_left(ascending, low) : bisect_right(ascending, high)]
        return out

    def contains(self, number: int, largest: int) -> bool:
        for r in self.ranges:
            first = largest if r.first is None else r.first
            last = largest if r.last is None else r.last
            if min(first, last) <= number <= max(first, last):
                return True
        return False


# -- FETCH (RFC 9051 §6.4.5) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Section:
    """BODY[...] / BINARY[...] section: part numbers, then an optional text specifier.

    part=(1, 2) and text="MIME" is "1.2.MIME"; text is one of "", "HEADER",
    "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"; `fields` holds the
    header names (upper-case) for the HEADER.FIELDS forms.
    """

    part: tuple[int, ...] = ()
    text: str = ""
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FetchItem:
    """One FETCH data item.

    name: "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY" (no
    section: the non-extensible BODYSTRUCTURE), "BODYSTRUCTURE", "UID",
    "BODY[]" forms (name "BODY" with section not None), "BINARY",
    "BINARY.SIZE", "RFC822", "RFC822.HEADER", "RFC822.TEXT", "MODSEQ".
    `peek` for BODY.PEEK/BINARY.PEEK; `partial` = (offset, count) for <o.c>.
    """

    name: str
    section: Section | None = None
    peek: bool = False
    partial: tuple[int, int] | None = None


# -- SEARCH (RFC 9051 §6.4.4) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchKey:
    """One search key. `name` upper-case (ALL, ANSWERED, BCC, BEFORE, BODY, CC,
    DELETED, DRAFT, FLAGGED, FROM, HEADER, KEYWORD, LARGER, NEW, NOT, OLD, ON,
    OR, RECENT, SEEN, SENTBEFORE, SENTON, SENTSINCE, SINCE, SMALLER, SUBJECT,
    TEXT, TO, UID, UNANSWERED, UNDELETED, UNDRAFT, UNFLAGGED, UNKEYWORD,
    UNSEEN, MODSEQ, SEQSET (a bare sequence set), AND (a parenthesized list)).

    `args` by key: strings (str, decoded as UTF-8) for text keys, `header`
    name + value for HEADER, a date for date keys, an int for LARGER/SMALLER
    and MODSEQ, a SequenceSet for UID/SEQSET, sub-keys in `keys` for
    NOT (one), OR (two), AND (many).
    """

    name: str
    text: str = ""
    header: str = ""
    day: date | None = None
    number: int = 0
    sequence: SequenceSet | None = None
    keys: tuple[SearchKey, ...] = ()


# -- what FETCH and SEARCH know about a message ------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """A message's store facts (the bytes are passed separately)."""

    uid: int
    seq: int
    flags: frozenset[str] = field(default_factory=frozenset)  # "\\Seen", "$Junk", ...
    internal_date: datetime | None = None  # timezone-aware
    size: int = 0  # RFC822.SIZE: octets with CRLF line ends
    modseq: int = 0
