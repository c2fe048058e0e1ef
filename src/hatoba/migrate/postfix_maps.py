"""Postfix's virtual(5) and aliases(5) tables, read as hatoba aliases and forwards.

Both: a logical line starts at the left margin, a line starting with white space
continues it, "#" lines and blank lines are ignored. virtual(5): "PATTERN RESULT",
RESULT addresses separated by commas or white space; PATTERN is user@domain,
@domain (catch-all) or a bare domain (declares a virtual alias domain); a bare
user applies to Postfix's own domains. aliases(5): "name: value, value"; values
"|command", "/file" and ":include:/file" cannot be carried over.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hatoba.migrate.model import Problem, SourceFileError, at, read_source

MAX_TABLE_BYTES = 64 * 1024 * 1024


@dataclass
class TableEntry:
    key: str
    values: list[str]
    where: str  # "FILE:LINE" of the entry's first line


def _logical_lines(path: Path, problems: list[Problem]) -> Iterator[tuple[int, str]]:
    try:
        data = read_source(path, MAX_TABLE_BYTES)
    except SourceFileError as exc:
        problems.append(Problem(at(path), f"{exc}; not read"))
        return
    if data is None:
        problems.append(Problem(at(path), "not found; not read"))
        return
    start, parts = 0, []
    for number, raw in enumerate(data.decode("utf-8", "replace").split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] in " \t":
            if parts:
                parts.append(line.strip())
            continue
        if parts:
            yield start, " ".join(parts)
        start, parts = number, [line.strip()]
    if parts:
        yield start, " ".join(parts)


def _values(text: str) -> list[str]:
    return [v for v in text.replace(",", " ").split() if v]


def read_virtual(path: Path, problems: list[Problem]) -> list[TableEntry]:
    entries = []
    for number, line in _logical_lines(path, problems):
        key, _, rest = line.partition(" ") if " " in line else line.partition("\t")
        values = _values(rest)
        if not values:
            problems.append(Problem(at(path, number), f"{key} has no result; left out"))
            continue
        entries.append(TableEntry(key.strip(), values, at(path, number)))
    return entries


def read_aliases(path: Path, problems: list[Problem]) -> list[TableEntry]:
    entries = []
    for number, line in _logical_lines(path, problems):
        key, colon, rest = line.partition(":")
        if not colon or not key.strip():
            problems.append(Problem(at(path, number), "not \"name: value\"; left out"))
            continue
        values = []
        for value in (v.strip() for v in rest.split(",")):
            if not value:
                continue
            if value.startswith(("|", "/", ":include:", '"|')):
                problems.append(Problem(at(path, number), f"{key.strip()}: {value[:60]} (a program, file or "
                                        "include) cannot be carried over; left out"))
                continue
            values.append(value)
        if values:
            entries.append(TableEntry(key.strip().strip('"'), values, at(path, number)))
    return entries
