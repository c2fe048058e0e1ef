"""The IMAP argument grammar (RFC 9051 §9, RFC 3501 §9): mailbox names, STATUS,
LIST and STORE arguments here, and the one import point for the rest.

The command reader lives in reader.py, the shared values (strings, numbers,
sequence sets, flags, dates, ArgError) in scalars.py, the FETCH items in
fetchitems.py and the SEARCH keys in searchkeys.py; their public names are
importable from this module too.

Rules:
- Helpers take Args and raise ArgError with a short text for a BAD reply;
  nothing else escapes them (tests/fuzz/test_imap_args_fuzz.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from hatoba.proto.imap import mutf7
from hatoba.proto.imap.fetchitems import MACROS, SIMPLE_ITEMS, parse_fetch_items
from hatoba.proto.imap.reader import (
    LITERAL_MINUS_MAX,
    CommandError,
    CommandReader,
    ContinuationRequest,
    RawCommand,
)
from hatoba.proto.imap.scalars import (
    MAX_NUMBER,
    MAX_NUMBER64,
    SYSTEM_FLAGS,
    ArgError,
    ArgRefused,
    arg_at,
    as_flag,
    as_number,
    as_text,
    as_word,
    parse_date,
    parse_datetime,
    parse_flags,
    parse_sequence_set,
)
from hatoba.proto.imap.searchkeys import (
    CHARSETS,
    DATE_KEYS,
    FLAG_KEYS,
    SEARCH_RETURN,
    TEXT_KEYS,
    parse_search,
)
from hatoba.proto.imap.types import Arg, ArgList

__all__ = [
    "CHARSETS",
    "DATE_KEYS",
    "FLAG_KEYS",
    "LITERAL_MINUS_MAX",
    "MACROS",
    "MAX_NUMBER",
    "MAX_NUMBER64",
    "RETURN_OPTIONS",
    "SEARCH_RETURN",
    "SELECT_OPTIONS",
    "SIMPLE_ITEMS",
    "STATUS_ITEMS",
    "SYSTEM_FLAGS",
    "TEXT_KEYS",
    "ArgError",
    "ArgRefused",
    "CommandError",
    "CommandReader",
    "ContinuationRequest",
    "ListArgs",
    "RawCommand",
    "as_number",
    "as_text",
    "parse_date",
    "parse_datetime",
    "parse_fetch_items",
    "parse_flags",
    "parse_list_args",
    "parse_mailbox",
    "parse_search",
    "parse_sequence_set",
    "parse_status_items",
    "parse_store",
]


# -- mailboxes --------------------------------------------------------------------------


def _mailbox_text(arg: Arg, utf8_accepted: bool) -> str:
    text = as_text(arg)
    if utf8_accepted:
        return text
    try:
        return mutf7.decode(text)
    except ValueError:
        # An astring is well-formed whatever it holds: no mailbox has this name (NO, not BAD).
        raise ArgRefused("[CANNOT] Mailbox name is not valid modified UTF-7") from None


def _pattern_text(arg: Arg, utf8_accepted: bool) -> str | None:
    """A LIST reference or pattern; None when it is not modified UTF-7."""
    try:
        return _mailbox_text(arg, utf8_accepted)
    except ArgRefused:
        return None


def parse_mailbox(arg: Arg, *, utf8_accepted: bool = False) -> str:
    """A mailbox astring; INBOX in any case is "INBOX" (RFC 9051 §5.1)."""
    name = _mailbox_text(arg, utf8_accepted)
    return "INBOX" if name.upper() == "INBOX" else name


STATUS_ITEMS = frozenset({"MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT",
                          "HIGHESTMODSEQ", "APPENDLIMIT"})


def parse_status_items(arg: Arg) -> tuple[str, ...]:
    """status-att-list (RFC 9051 §6.3.11, RFC 7162 HIGHESTMODSEQ, RFC 7889 APPENDLIMIT)."""
    if not isinstance(arg, ArgList) or not arg.items:
        raise ArgError("Expected a list of status items")
    out: list[str] = []
    for item in arg.items:
        word = as_word(item)
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
            word = as_word(item)
            if word not in SELECT_OPTIONS:
                raise ArgError("Unknown LIST selection option")
            selection.append(word)
        # RFC 5258 §3.1: RECURSIVEMATCH needs a base option to modify.
        if "RECURSIVEMATCH" in selection and not {"SUBSCRIBED", "SPECIAL-USE"} & set(selection):
            raise ArgError("RECURSIVEMATCH needs another selection option")
        i = 1
    reference = _pattern_text(arg_at(args, i, "reference"), utf8_accepted)
    pattern = arg_at(args, i + 1, "mailbox pattern")
    if isinstance(pattern, ArgList):
        if not pattern.items:
            raise ArgError("Empty pattern list")
        extended = True
        texts = [_pattern_text(p, utf8_accepted) for p in pattern.items]
    else:
        texts = [_pattern_text(pattern, utf8_accepted)]
    # A reference or pattern that is not modified UTF-7 matches no mailbox name.
    patterns = () if reference is None else tuple(p for p in texts if p is not None)
    reference = reference or ""
    i += 2
    returns: list[str] = []
    status: tuple[str, ...] = ()
    if i < len(args):
        opts = arg_at(args, i + 1, "RETURN options")
        if as_word(args[i]) != "RETURN" or not isinstance(opts, ArgList) or i + 2 != len(args):
            raise ArgError("Expected RETURN (options) after the patterns")
        extended = True
        j = 0
        while j < len(opts.items):
            word = as_word(opts.items[j])
            if word not in RETURN_OPTIONS:
                raise ArgError("Unknown LIST return option")
            if word == "STATUS":
                j += 1
                status = parse_status_items(arg_at(opts.items, j, "status items"))
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
        if len(mods) != 2 or as_word(mods[0]) != "UNCHANGEDSINCE":
            raise ArgError("Unknown STORE modifier")
        unchangedsince = as_number(mods[1])
        i = 1
    m = _STORE_ITEM.fullmatch(as_word(arg_at(args, i, "FLAGS")))
    if not m:
        raise ArgError("Expected FLAGS, +FLAGS or -FLAGS")
    rest = args[i + 1 :]
    if not rest:
        raise ArgError("Missing flags")
    if len(rest) == 1:
        flags = parse_flags(rest[0])
    else:
        flags = tuple(dict.fromkeys(as_flag(a) for a in rest))
    return m[1], bool(m[2]), flags, unchangedsince
