"""The SEARCH argument grammar: search keys, RETURN options, CHARSET
(RFC 9051 §6.4.4, §9; RFC 4731 ESEARCH; RFC 5182 SAVE; RFC 7162 MODSEQ).

Matching messages against the keys is search.py's job; this module only
turns the arguments into one SearchKey tree.
"""

from __future__ import annotations

from collections.abc import Sequence

from hatoba.proto.imap.scalars import (
    ArgError,
    arg_at,
    as_number,
    as_text,
    as_word,
    check_keyword,
    parse_date,
    parse_sequence_set,
)
from hatoba.proto.imap.types import Arg, ArgList, Atom, SearchKey, String


FLAG_KEYS = frozenset({"ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "NEW", "OLD", "RECENT", "SEEN",
                       "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN"})
TEXT_KEYS = frozenset({"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"})
DATE_KEYS = frozenset({"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"})
SEARCH_RETURN = frozenset({"MIN", "MAX", "COUNT", "ALL", "SAVE", "UPDATE", "PARTIAL"})  # RFC 4731, 5182, 5267
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
        return SearchKey(word, text=as_text(arg_at(args, i + 1, word + " text"))), i + 2
    if word in DATE_KEYS:
        return SearchKey(word, day=parse_date(as_text(arg_at(args, i + 1, "date")))), i + 2
    if word in ("KEYWORD", "UNKEYWORD"):
        flag = arg_at(args, i + 1, "keyword")
        if not isinstance(flag, Atom):
            raise ArgError("Invalid keyword")
        return SearchKey(word, text=check_keyword(flag.value)), i + 2
    if word == "HEADER":
        name = as_text(arg_at(args, i + 1, "header name"))
        return SearchKey(word, header=name, text=as_text(arg_at(args, i + 2, "header value"))), i + 3
    if word in ("LARGER", "SMALLER"):
        return SearchKey(word, number=as_number(arg_at(args, i + 1, "size"))), i + 2
    if word == "UID":
        text = arg_at(args, i + 1, "UID set")
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
        if isinstance(arg_at(args, j, "MODSEQ value"), String):
            kind = arg_at(args, j + 1, "entry type")
            if not isinstance(kind, Atom) or kind.value.lower() not in ("priv", "shared", "all"):
                raise ArgError("Invalid MODSEQ entry type")
            j += 2
        return SearchKey(word, number=as_number(arg_at(args, j, "MODSEQ value"))), j + 1
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


def parse_return(opts: Arg) -> dict[str, object]:
    """The list after RETURN (RFC 4731 §3.1, RFC 5267 §4): {"return": (words...)}, and
    "partial": (low, high) for PARTIAL low:high (ascending whichever way written)."""
    if not isinstance(opts, ArgList):
        raise ArgError("Expected RETURN (options)")
    options: dict[str, object] = {}
    returns: list[str] = []
    items = opts.items
    j = 0
    while j < len(items):
        word = as_word(items[j])
        j += 1
        if word not in SEARCH_RETURN:
            raise ArgError("Unknown SEARCH return option")
        if word == "PARTIAL":
            options["partial"] = _partial_range(arg_at(items, j, "PARTIAL range"))
            j += 1
        if word not in returns:
            returns.append(word)
    if "SAVE" in returns and "UPDATE" in returns:
        raise ArgError("SAVE and UPDATE cannot be used together")
    options["return"] = tuple(returns)
    return options


def _partial_range(arg: Arg) -> tuple[int, int]:
    """partial-range = nz-number ":" nz-number (RFC 5267 §4.4): no "*", no single number."""
    if not isinstance(arg, Atom):
        raise ArgError("Invalid PARTIAL range")
    low, colon, high = arg.value.partition(":")
    if not colon or not low.isdigit() or not high.isdigit() or low.startswith("0") or high.startswith("0") \
            or len(low) > 10 or len(high) > 10:
        raise ArgError("Invalid PARTIAL range")
    a, b = int(low), int(high)
    if max(a, b) > 0xFFFFFFFF:
        raise ArgError("Invalid PARTIAL range")
    return min(a, b), max(a, b)


def parse_search(args: Sequence[Arg], *, utf8_accepted: bool = False) -> tuple[SearchKey, dict[str, object]]:
    """SEARCH arguments: (the criteria as one AND key, options).

    search = "SEARCH" [search-return-opts] [SP "CHARSET" SP charset] 1*(SP search-key)
    options: "return" (a tuple; RFC 4731 ESEARCH, RFC 5182 SAVE), "charset".
    Strings are always read as UTF-8 (US-ASCII is a subset; RFC 6855 makes
    UTF-8 the only charset once UTF8=ACCEPT is on).
    """
    options: dict[str, object] = {}
    i = 0
    if i < len(args) and isinstance(args[i], Atom) and as_word(args[i]) == "RETURN":
        options.update(parse_return(arg_at(args, i + 1, "RETURN options")))
        i += 2
    if i < len(args) and isinstance(args[i], Atom) and as_word(args[i]) == "CHARSET":
        charset = as_text(arg_at(args, i + 1, "charset")).upper()
        if charset not in CHARSETS:
            raise ArgError("[BADCHARSET (UTF-8 US-ASCII)] Unsupported charset")
        options["charset"] = charset
        i += 2
    keys = _search_keys(args[i:], 0)
    return SearchKey("AND", keys=keys), options
