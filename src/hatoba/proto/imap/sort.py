"""SORT keys and THREAD trees (RFC 5256), from message headers.

Rules:
- Strings compare with the i;ascii-casemap collation (RFC 5256 §3: ASCII
  letters fold to upper case, everything else compares by octet).
- The sent date is the Date: field converted to UTC; when it is missing or
  unreadable the internal date stands in (RFC 5256 §2.2). THREAD items may
  carry the internal date as a third element for that purpose; without it
  such a message sorts as the oldest.
- Ties are broken by the message number (RFC 5256 §3 "sorted in the order
  given by their sequence number"), never reversed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from functools import total_ordering
from typing import Any

from hatoba.proto.errors import LocalProtocolError
from hatoba.proto.imap.envelope import parse_address_list
from hatoba.proto.imap.headers import HeaderField, header_fields, header_value
from hatoba.proto.imap.search import decode_header_text
from hatoba.proto.imap.types import MessageMeta

__all__ = ["base_subject", "sort_keys", "thread_orderedsubject", "thread_references"]

# RFC 5256 §5 ABNF
_BLOB = r"\[[^\[\]]*\][ \t]*"  # subj-blob = "[" *BLOBCHAR "]" *WSP
_REFWD = r"(?:re|fwd?)[ \t]*(?:" + _BLOB + r")?:"  # subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
_LEADER = re.compile(r"(?:" + _BLOB + r")*" + _REFWD + r"|[ \t]", re.IGNORECASE)  # subj-leader
_BLOB_RE = re.compile(_BLOB)


def _extract(subject: str) -> tuple[str, bool]:
    """(base subject, whether a reply/forward marker was removed), RFC 5256 §2.1."""
    # (1) encoded words decoded, runs of white space (tabs, folding) made one space
    text = re.sub(r"[ \t\r\n]+", " ", decode_header_text(subject.encode("utf-8", "surrogateescape")))
    is_reply = False
    while True:
        # (2) trailers: subj-trailer = "(fwd)" / WSP
        while True:
            if text.endswith(" "):
                text = text[:-1]
            elif text.lower().endswith("(fwd)"):
                text, is_reply = text[:-5], True
            else:
                break
        # (3) leaders and (4) blobs, (5) repeated while anything changes
        while True:
            changed = False
            m = _LEADER.match(text)
            while m and m.end():
                if m.group(0).strip():
                    is_reply = True
                text, changed = text[m.end() :], True
                m = _LEADER.match(text)
            m = _BLOB_RE.match(text)
            if m and text[m.end() :].strip():
                text, changed = text[m.end() :], True
            if not changed:
                break
        # (6) "[fwd: ... ]" wrapped subjects
        if text.lower().startswith("[fwd:") and text.endswith("]"):
            text, is_reply = text[5:-1], True
            continue
        return text, is_reply


def base_subject(subject: str) -> str:
    """The RFC 5256 §2.1 base subject: no Re:/Fwd:/[list] leaders, no (fwd) trailers."""
    return _extract(subject)[0]


def _casemap(text: str) -> str:
    return re.sub(r"[a-z]+", lambda m: m.group(0).upper(), text)


@total_ordering
class _Reversed:
    """Wraps a key so that it sorts the other way (SORT REVERSE applies per criterion)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and self.value == other.value

    def __lt__(self, other: _Reversed) -> bool:
        return bool(other.value < self.value)

    def __hash__(self) -> int:
        return hash(self.value)


def _timestamp(dt: datetime | None) -> float:
    if dt is None:
        return 0.0
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _sent(fields: Sequence[HeaderField], internal: datetime | None) -> float:
    value = header_value(fields, "Date")
    if value is not None:
        try:
            return _timestamp(parsedate_to_datetime(value.decode("ascii", "replace")))
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    return _timestamp(internal)


def _first_mailbox(fields: Sequence[HeaderField], name: str) -> tuple[str, str, str]:
    """(display name decoded, local part, domain) of the first mailbox in `name`; empty strings when none."""
    value = header_value(fields, name)
    if value is None:
        return "", "", ""
    for display, _adl, local, domain in parse_address_list(value.decode("utf-8", "surrogateescape")):
        if local is not None and domain is not None:
            shown = decode_header_text(display.encode("utf-8", "surrogateescape")) if display else ""
            return shown, local, domain
    return "", "", ""


def _criterion(name: str, meta: MessageMeta, fields: Sequence[HeaderField]) -> Any:
    if name == "ARRIVAL":
        return _timestamp(meta.internal_date)
    if name == "DATE":
        return _sent(fields, meta.internal_date)
    if name == "SIZE":
        return meta.size
    if name == "SUBJECT":
        return _casemap(base_subject((header_value(fields, "Subject") or b"").decode("utf-8", "surrogateescape")))
    if name in ("FROM", "TO", "CC"):
        # RFC 5256 §3: the addr-mailbox (local part) of the first address.
        return _casemap(_first_mailbox(fields, name.capitalize())[1])
    if name in ("DISPLAYFROM", "DISPLAYTO"):
        # RFC 5957 §3: the display name, else the address itself.
        shown, local, domain = _first_mailbox(fields, name[7:].capitalize())
        return _casemap(shown or (f"{local}@{domain}" if local else ""))
    raise LocalProtocolError(f"unknown sort criterion {ascii(name[:30])}")


def sort_keys(criteria: Sequence[tuple[str, bool]], meta: MessageMeta, message_header: bytes) -> tuple[Any, ...]:
    """A key for sorted(): one value per (criterion, reverse), then meta.seq for ties."""
    fields = header_fields(message_header)
    values: list[Any] = []
    for name, reverse in criteria:
        value = _criterion(name.upper(), meta, fields)
        values.append(_Reversed(value) if reverse else value)
    values.append(meta.seq)
    return tuple(values)


# -- THREAD ---------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Node:
    number: int | None = None  # None: a dummy (a message referred to but not present)
    sent: float = 0.0
    subject: str = ""  # base subject, case-mapped
    is_reply: bool = False
    parent: _Node | None = None
    children: list[_Node] = field(default_factory=list)


def _messages(items: Sequence[tuple[Any, ...]]) -> list[tuple[_Node, list[HeaderField]]]:
    out = []
    for item in items:
        number, header = item[0], item[1]
        internal = item[2] if len(item) > 2 else None
        fields = header_fields(header)
        subject, is_reply = _extract((header_value(fields, "Subject") or b"").decode("utf-8", "surrogateescape"))
        out.append((_Node(number, _sent(fields, internal), _casemap(subject), is_reply), fields))
    return out


def _format(node: _Node) -> str:
    """thread-members / thread-nested (RFC 5256 §5)."""
    nested = "".join(f"({_format(c)})" for c in node.children)
    if node.number is None:
        return nested
    if len(node.children) == 1:
        return f"{node.number} {_format(node.children[0])}"
    return f"{node.number} {nested}" if nested else str(node.number)


def _render(roots: Sequence[_Node]) -> bytes:
    return "".join(f"({_format(r)})" for r in roots).encode("ascii")


def _order(node: _Node) -> tuple[float, int]:
    first = node if node.number is not None or not node.children else node.children[0]
    return first.sent, first.number or 0


def thread_orderedsubject(items: Sequence[tuple[Any, ...]]) -> bytes:
    """THREAD=ORDEREDSUBJECT (RFC 5256 §2.3): threads by base subject, children flat under the oldest."""
    nodes = sorted((n for n, _ in _messages(items)), key=lambda n: (n.subject, n.sent, n.number))
    roots: list[_Node] = []
    for node in nodes:
        if roots and roots[-1].subject == node.subject:
            roots[-1].children.append(node)
        else:
            roots.append(node)
    roots.sort(key=_order)
    return _render(roots)


_MSGID = re.compile(rb"<([^<>\s]+)>")


def _is_ancestor(candidate: _Node, node: _Node | None) -> bool:
    while node is not None:
        if node is candidate:
            return True
        node = node.parent
    return False


def _link(parent: _Node, child: _Node) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
    child.parent = parent
    parent.children.append(child)


def _prune(nodes: list[_Node], at_root: bool) -> list[_Node]:
    """RFC 5256 §2.2 (3): drop childless dummies, splice dummies' children into their place."""
    out: list[_Node] = []
    for node in nodes:
        node.children = _prune(node.children, False)
        for child in node.children:
            child.parent = node
        if node.number is None:
            if not node.children:
                continue
            if not at_root or len(node.children) == 1:
                out.extend(node.children)
                continue
        out.append(node)
    return out


def _sort_tree(nodes: list[_Node]) -> None:
    for node in nodes:
        _sort_tree(node.children)
    nodes.sort(key=_order)


def thread_references(items: Sequence[tuple[Any, ...]]) -> bytes:
    """THREAD=REFERENCES (RFC 5256 §2.2): the JWZ algorithm, then subject gathering."""
    table: dict[bytes, _Node] = {}
    for node, fields in _messages(items):
        # (1) the Message-ID container; missing or duplicate ids get a unique one
        ids = _MSGID.findall(header_value(fields, "Message-ID") or b"")
        key = ids[0] if ids else b""
        if not key or (key in table and table[key].number is not None):
            key = b"\x00%d" % node.number
        container = table.get(key)
        if container is None:
            table[key] = node
        else:  # a dummy made by an earlier reference: it becomes this message
            container.number, container.sent = node.number, node.sent
            container.subject, container.is_reply = node.subject, node.is_reply
            node = container
        refs = _MSGID.findall(header_value(fields, "References") or b"")
        if not refs:
            refs = _MSGID.findall(header_value(fields, "In-Reply-To") or b"")[:1]
        # (1A) link the references in order, never re-parenting, never making loops
        previous: _Node | None = None
        for ref in refs:
            ref_node = table.setdefault(ref, _Node())
            if previous is not None and ref_node.parent is None and not _is_ancestor(ref_node, previous):
                _link(previous, ref_node)
            previous = ref_node
        # (1B) the last reference is this message's parent
        if node.parent is not None:
            node.parent.children.remove(node)
            node.parent = None
        if previous is not None and not _is_ancestor(node, previous):
            _link(previous, node)
    # (2) the root set, (3) pruned, (4) sorted
    roots = _prune([n for n in table.values() if n.parent is None], True)
    for root in roots:
        root.parent = None
    _sort_tree(roots)
    # (5) gather threads whose roots share a base subject
    by_subject: dict[str, _Node] = {}

    def subject_of(node: _Node) -> _Node:
        return node if node.number is not None else node.children[0]

    for root in roots:
        subj = subject_of(root).subject
        if not subj:
            continue
        old = by_subject.get(subj)
        if (
            old is None
            or (root.number is None and old.number is not None)
            or (old.number is not None and old.is_reply and root.number is not None and not root.is_reply)
        ):
            by_subject[subj] = root
    result = list(roots)
    for root in roots:
        if root not in result:
            continue
        subj = subject_of(root).subject
        if not subj or by_subject[subj] is root:
            continue
        other = by_subject[subj]
        result.remove(root)
        if other.number is None and root.number is None:
            for child in list(root.children):
                _link(other, child)
        elif other.number is None:
            _link(other, root)
        elif root.number is None:
            result.remove(other)
            _link(root, other)
            result.append(root)
            by_subject[subj] = root
        elif not other.is_reply and root.is_reply:
            _link(other, root)
        else:
            dummy = _Node()
            result.remove(other)
            _link(dummy, other)
            _link(dummy, root)
            result.append(dummy)
            by_subject[subj] = dummy
    # (6) every set of siblings by sent date, (7) the response
    _sort_tree(result)
    return _render(result)
