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
from collections.abc import Iterable, Iterator, Sequence
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

# RFC 5256 §5 ABNF:
#   subj-refwd  = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
#   subj-blob   = "[" *BLOBCHAR "]" *WSP
#   subj-leader = (*subj-blob subj-refwd) / WSP
#   subj-trailer = "(fwd)" / WSP
#   subj-fwd-hdr = "[fwd:"    subj-fwd-trl = "]"
# The steps below work on text[i:j] and only move i and j, each scan starting
# where the last one stopped: linear in the subject (slicing the text at each
# step, or a regular expression retried per blob, was quadratic: a 60 KB
# "[][][]..." subject took 21 s).
_SPACES = re.compile(r"[ \t\r\n]+")
_WSP = " \t"


def _blob_end(text: str, i: int, j: int) -> int:
    """The end of the subj-blob at text[i:j] (its *WSP included), or -1 when there is none."""
    if i >= j or text[i] != "[":
        return -1
    k = i + 1
    while k < j and text[k] not in "[]":
        k += 1
    if k >= j or text[k] != "]":
        return -1
    k += 1
    while k < j and text[k] in _WSP:
        k += 1
    return k


def _refwd_end(text: str, i: int, j: int) -> int:
    """The end of the subj-refwd at text[i:j], or -1."""
    word = text[i : i + 3].lower()
    if word.startswith("re"):
        k = i + 2
    elif word == "fwd":
        k = i + 3
    elif word.startswith("fw"):
        k = i + 2
    else:
        return -1
    while k < j and text[k] in _WSP:
        k += 1
    blob = _blob_end(text, k, j)
    if blob >= 0:
        k = blob
    return k + 1 if k < j and text[k] == ":" else -1


def _has_text(text: str, i: int, j: int) -> bool:
    """Whether text[i:j] holds more than white space (a non-empty subj-base)."""
    k = j - 1
    while k >= i and text[k].isspace():
        k -= 1
    return k >= i


def _strip_trailers(text: str, i: int, j: int) -> tuple[int, bool]:
    """Step (2): the new end, and whether a "(fwd)" went."""
    fwd = False
    while j > i:
        if text[j - 1] == " ":
            j -= 1
        elif j - i >= 5 and text[j - 5 : j].lower() == "(fwd)":
            j, fwd = j - 5, True
        else:
            break
    return j, fwd


def _strip_leaders(text: str, i: int, j: int) -> tuple[int, bool]:
    """Steps (3) to (5): the new start, and whether a reply/forward leader went."""
    reply = False
    while i < j:
        if text[i] in _WSP:  # subj-leader = WSP
            i += 1
            continue
        # *subj-blob: blob boundaries are fixed, so a refwd can only follow the last one
        last, k = -1, i
        while (end := _blob_end(text, k, j)) >= 0:
            last, k = k, end
        refwd = _refwd_end(text, k, j)
        if refwd >= 0:  # (3) *subj-blob subj-refwd
            i, reply = refwd, True
            continue
        if last < 0:
            break
        # (4) blobs go while a subj-base is left; none of them starts a leader (that
        # would need the same refwd after the same last blob), so all but the last go
        # at once, and the last if text follows it.
        i = k if _has_text(text, k, j) else last
        if i == last:
            break
    return i, reply


def _extract(subject: str) -> tuple[str, bool]:
    """(base subject, whether a reply/forward marker was removed), RFC 5256 §2.1."""
    # (1) encoded words decoded, runs of white space (tabs, folding) made one space
    text = _SPACES.sub(" ", decode_header_text(subject.encode("utf-8", "surrogateescape")))
    i, j = 0, len(text)
    is_reply = False
    while True:
        j, fwd = _strip_trailers(text, i, j)  # (2)
        i, reply = _strip_leaders(text, i, j)  # (3), (4), (5)
        is_reply = is_reply or fwd or reply
        # (6) "[fwd: ... ]" wrapped subjects: unwrap, then from (2) again
        if j - i >= 6 and text[i : i + 5].lower() == "[fwd:" and text[j - 1] == "]":
            i, j, is_reply = i + 5, j - 1, True
            continue
        return text[i:j], is_reply


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


def _first_address(fields: Sequence[HeaderField], name: str) -> tuple[str, str, str]:
    """(display name decoded, mailbox, domain) of the first address in `name`; empty strings
    when none. A group's first address is the group: its name is both display name and
    mailbox (RFC 5256 §3 takes the first address whatever it is, RFC 5957 §3 its name)."""
    value = header_value(fields, name)
    if value is None:
        return "", "", ""
    for display, _adl, local, domain in parse_address_list(value.decode("utf-8", "surrogateescape")):
        if local is None:
            continue  # the end of a group
        if domain is None:  # the start of a group
            shown = decode_header_text(local.encode("utf-8", "surrogateescape"))
            return shown, local, ""
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
        return _casemap(_first_address(fields, name.capitalize())[1])
    if name in ("DISPLAYFROM", "DISPLAYTO"):
        # RFC 5957 §3: the display name, else the address itself.
        shown, local, domain = _first_address(fields, name[7:].capitalize())
        return _casemap(shown or (f"{local}@{domain}" if domain else local))
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
    # In order; a dict so that a child leaves its parent in constant time (as a
    # list, a parent with 10,000 children made each unlink cost 10,000 steps).
    children: dict[_Node, None] = field(default_factory=dict)

    def first_child(self) -> _Node:
        return next(iter(self.children))


def _messages(items: Sequence[tuple[Any, ...]]) -> list[tuple[_Node, list[HeaderField]]]:
    out = []
    for item in items:
        number, header = item[0], item[1]
        internal = item[2] if len(item) > 2 else None
        fields = header_fields(header)
        subject, is_reply = _extract((header_value(fields, "Subject") or b"").decode("utf-8", "surrogateescape"))
        out.append((_Node(number, _sent(fields, internal), _casemap(subject), is_reply), fields))
    return out


# Trees may be thousands deep (one References field can list 1,200 ancestors), so every
# walk below keeps its own stack: Python's recursion limit must not decide an answer.


def _below(roots: Iterable[_Node]) -> list[_Node]:
    """Every node of the trees under `roots`, each before its children."""
    out: list[_Node] = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node.children)
    return out


def _render(roots: Sequence[_Node]) -> bytes:
    """thread-list of thread-members / thread-nested (RFC 5256 §5): a message with one
    child is followed by it; with more, each child is in parentheses; a dummy is only
    its children."""
    out: list[str] = []
    todo: list[_Node | str] = []  # a stack: text to write, or a node to write out
    for root in reversed(roots):
        todo += [")", root, "("]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        children = list(item.children)
        if item.number is not None:
            out.append(f"{item.number} " if children else str(item.number))
            if len(children) == 1:
                todo.append(children[0])
                continue
        for child in reversed(children):
            todo += [")", child, "("]
    return "".join(out).encode("ascii")


def _order(node: _Node) -> tuple[float, int]:
    first = node if node.number is not None or not node.children else node.first_child()
    return first.sent, first.number or 0


def thread_orderedsubject(items: Sequence[tuple[Any, ...]]) -> bytes:
    """THREAD=ORDEREDSUBJECT (RFC 5256 §2.3): threads by base subject, children flat under the oldest."""
    nodes = sorted((n for n, _ in _messages(items)), key=lambda n: (n.subject, n.sent, n.number))
    roots: list[_Node] = []
    for node in nodes:
        if roots and roots[-1].subject == node.subject:
            roots[-1].children[node] = None
        else:
            roots.append(node)
    roots.sort(key=_order)
    return _render(roots)


_MSGID = re.compile(rb"<([^<>\s]+)>")


def _would_loop(child: _Node, parent: _Node) -> bool:
    """Whether making `child` a child of `parent` closes a loop: `child` is `parent`
    or one of its ancestors. Walks up from `parent` and through `child`'s subtree by
    turns, so it costs the smaller of the two, and answers exactly."""
    up: _Node | None = parent
    down: list[Iterator[_Node]] = [iter((child,))]
    while True:
        if up is None:
            return False
        if up is child:
            return True
        up = up.parent
        while down:
            node = next(down[-1], None)
            if node is not None:
                break
            down.pop()
        else:
            return False
        if node is parent:
            return True
        down.append(iter(node.children))


def _link(parent: _Node, child: _Node) -> None:
    if child.parent is not None:
        del child.parent.children[child]
    child.parent = parent
    parent.children[child] = None


def _link_message(table: dict[bytes, _Node], node: _Node, fields: Sequence[HeaderField]) -> None:
    """RFC 5256 §2.2 (1): one message into the table of containers."""
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
    # (1A) link the references in order, never re-parenting, never making loops; an id
    # written twice is linked once (else each repeat could cost a walk of the tree)
    previous: _Node | None = None
    seen: set[bytes] = set()
    for ref in refs:
        ref_node = table.setdefault(ref, _Node())
        if ref not in seen and previous is not None and ref_node.parent is None \
                and not _would_loop(ref_node, previous):
            _link(previous, ref_node)
        seen.add(ref)
        previous = ref_node
    # (1B) the last reference is this message's parent
    if node.parent is not None:
        del node.parent.children[node]
        node.parent = None
    if previous is not None and not _would_loop(node, previous):
        _link(previous, node)


def _spliced(nodes: Iterable[_Node], at_root: bool) -> dict[_Node, None]:
    """RFC 5256 §2.2 (3): childless dummies go; a dummy's children take its place, except
    at the root where a dummy with several children stays."""
    out: dict[_Node, None] = {}
    for node in nodes:
        if node.number is None:
            if not node.children:
                continue
            if not at_root or len(node.children) == 1:
                out.update(node.children)
                continue
        out[node] = None
    return out


def _prune(roots: list[_Node]) -> list[_Node]:
    for node in reversed(_below(roots)):  # children before their parents
        node.children = _spliced(node.children, False)
        for child in node.children:
            child.parent = node
    pruned = list(_spliced(roots, True))
    for root in pruned:
        root.parent = None
    return pruned


def _sort_tree(roots: list[_Node]) -> None:
    """Every set of siblings by sent date, then message number (RFC 5256 §2.2 (4), (6))."""
    for node in reversed(_below(roots)):  # a dummy sorts by its first child: children first
        node.children = dict.fromkeys(sorted(node.children, key=_order))
    roots.sort(key=_order)


def _gather(roots: list[_Node]) -> list[_Node]:
    """RFC 5256 §2.2 (5): threads whose roots share a base subject become one."""

    def subject_of(node: _Node) -> _Node:
        return node if node.number is not None else node.first_child()

    by_subject: dict[str, _Node] = {}
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
    result = dict.fromkeys(roots)  # ordered, and a root leaves it in constant time
    for root in roots:
        if root not in result:
            continue
        subj = subject_of(root).subject
        if not subj or by_subject[subj] is root:
            continue
        other = by_subject[subj]
        del result[root]
        if other.number is None and root.number is None:
            for child in root.children:
                child.parent = other
            other.children.update(root.children)
            root.children = {}
        elif other.number is None:
            _link(other, root)
        elif root.number is None:
            del result[other]
            _link(root, other)
            result[root] = None
            by_subject[subj] = root
        elif not other.is_reply and root.is_reply:
            _link(other, root)
        else:
            dummy = _Node()
            del result[other]
            _link(dummy, other)
            _link(dummy, root)
            result[dummy] = None
            by_subject[subj] = dummy
    return list(result)


def thread_references(items: Sequence[tuple[Any, ...]]) -> bytes:
    """THREAD=REFERENCES (RFC 5256 §2.2): the JWZ algorithm, then subject gathering."""
    table: dict[bytes, _Node] = {}
    for node, fields in _messages(items):
        _link_message(table, node, fields)
    # (2) the root set, (3) pruned, (4) sorted, (5) gathered by subject
    roots = _prune([n for n in table.values() if n.parent is None])
    _sort_tree(roots)
    result = _gather(roots)
    # (6) every set of siblings by sent date, (7) the response
    _sort_tree(result)
    return _render(result)
