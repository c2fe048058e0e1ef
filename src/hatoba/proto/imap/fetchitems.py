"""The FETCH argument grammar: data items, macros, sections, partial ranges and
modifiers (RFC 9051 §6.4.5, §9; RFC 3516 BINARY; RFC 7162 CHANGEDSINCE/VANISHED).

Answering the items is fetch.py's job; this module only reads what was asked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hatoba.proto.imap.scalars import MAX_NUMBER, MAX_NUMBER64, ArgError, arg_at, as_number, as_word
from hatoba.proto.imap.types import Arg, ArgList, Atom, FetchItem, Section


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
    first = arg_at(args, 0, "fetch items")
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
            word = as_word(mods[i])
            if word == "CHANGEDSINCE":
                modifiers[word] = as_number(arg_at(mods, i + 1, "CHANGEDSINCE value"), nonzero=True)
                i += 2
            elif word == "VANISHED":
                modifiers[word] = True
                i += 1
            else:
                raise ArgError("Unknown fetch modifier")
    return items, modifiers
