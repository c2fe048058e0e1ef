"""SORT keys and THREAD trees (RFC 5256)."""

from datetime import datetime, timezone

import pytest

from hatoba.proto.imap.sort import base_subject, sort_keys, thread_orderedsubject, thread_references
from hatoba.proto.imap.types import MessageMeta


@pytest.mark.parametrize(
    ("subject", "base"),
    [
        ("hello", "hello"),
        ("Re: hello", "hello"),
        ("RE:   Re: re:hello", "hello"),
        ("Fwd: hello", "hello"),
        ("fw: hello", "hello"),
        ("Re[2]: hello", "hello"),  # subj-refwd with a blob before the colon
        ("Re: [list] Fwd: hello (fwd)", "hello"),  # (3)+(4) repeated, (2) trailer
        ("hello (fwd) (FWD)  ", "hello"),
        ("[list] hello", "hello"),  # (4) a blob prefix goes when text remains
        ("[list]", "[list]"),  # ...but not when it is all there is
        ("[fwd: hello]", "hello"),  # (6)
        ("[Fwd: Re: [list] hello (fwd)]", "hello"),  # (6) then from (2) again
        ("hello\tworld  again", "hello world again"),  # (1) white space runs
        ("=?UTF-8?Q?Re=3A_caf=C3=A9?=", "café"),  # (1) encoded words first
        ("Re: ", ""),
        ("Rebuild: plan", "Rebuild: plan"),  # "re" must be followed by WSP, a blob or ":"
        ("Recent news", "Recent news"),
        ("Fwdx: a", "Fwdx: a"),
    ],
)
def test_base_subject(subject, base):
    assert base_subject(subject) == base


def header(number: int, subject: str = "", date: str | None = None, msgid: str | None = None,
           refs: str | None = None, irt: str | None = None, **extra: str) -> bytes:
    lines = [f"Subject: {subject}"]
    if date is not None:
        lines.append(f"Date: {date}")
    if msgid is not None:
        lines.append(f"Message-ID: <{msgid}>")
    if refs is not None:
        lines.append(f"References: {refs}")
    if irt is not None:
        lines.append(f"In-Reply-To: {irt}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in extra.items()]
    return ("\n".join(lines) + "\n\n").encode()


def day(n: int) -> str:
    return f"Mon, {n:02d} Jul 2024 10:00:00 +0000"


def test_orderedsubject():
    items = [
        (1, header(1, "hello", day(1))),
        (2, header(2, "Re: hello", day(3))),
        (3, header(3, "other", day(2))),
        (4, header(4, "RE: Hello", day(2))),
        (5, header(5, "third", day(5))),
        (6, header(6, "Fwd: third", day(6))),
    ]
    # hello: 1 then 4 (day 2) and 2 (day 3), flat under 1; a single child is written inline.
    assert thread_orderedsubject(items) == b"(1 (4)(2))(3)(5 6)"


def test_orderedsubject_uses_internal_date_without_date_header():
    items = [(1, header(1, "x"), datetime(2024, 7, 9, tzinfo=timezone.utc)), (2, header(2, "y", day(1)))]
    assert thread_orderedsubject(items) == b"(2)(1)"


def test_references_builds_the_tree():
    items = [
        (1, header(1, "topic", day(1), "a@x")),
        (2, header(2, "Re: topic", day(2), "b@x", refs="<a@x>")),
        (3, header(3, "Re: topic", day(3), "c@x", refs="<a@x> <b@x>")),
        (4, header(4, "Re: topic", day(4), "d@x", irt="<a@x>")),
        (5, header(5, "unrelated", day(5), "e@x")),
        (6, header(6, "Re: topic", day(6), "f@x", refs="<a@x> <b@x>")),
    ]
    assert thread_references(items) == b"(1 (2 (3)(6))(4))(5)"


def test_references_dummy_root_with_two_children():
    # Both reply to a message we do not have, under different subjects: the dummy stays.
    items = [
        (7, header(7, "Re: first", day(1), "g@x", refs="<gone@x>")),
        (8, header(8, "Re: second", day(2), "h@x", refs="<gone@x>")),
    ]
    assert thread_references(items) == b"((7)(8))"


def test_references_dummy_with_one_child_is_pruned():
    items = [(9, header(9, "Re: lone", day(1), "i@x", refs="<gone@x> <also-gone@x>"))]
    assert thread_references(items) == b"(9)"


def test_references_gathers_by_subject():
    items = [
        (1, header(1, "Re: party", day(2), "r@x")),  # a reply whose parent we lost
        (2, header(2, "party", day(3), "p@x")),
        (3, header(3, "lunch", day(1), "l1@x")),
        (4, header(4, "lunch", day(4), "l2@x")),
    ]
    # "party" (not a reply) takes "Re: party" as its child; two "lunch" originals share a dummy.
    assert thread_references(items) == b"((3)(4))(2 1)"


def test_references_survives_loops_and_duplicate_ids():
    items = [
        (1, header(1, "a", day(1), "x@x", refs="<y@x>")),
        (2, header(2, "b", day(2), "y@x", refs="<x@x>")),
        (3, header(3, "c", day(3), "x@x")),  # duplicate Message-ID: a thread of its own
        (4, header(4, "d", day(4), "self@x", refs="<self@x>")),
    ]
    out = thread_references(items)
    numbers = sorted(int(n) for n in out.replace(b"(", b" ").replace(b")", b" ").split())
    assert numbers == [1, 2, 3, 4]
    assert b"(3)" in out and b"(4)" in out


def meta(seq: int, size: int = 0, day_: int = 1) -> MessageMeta:
    return MessageMeta(uid=100 + seq, seq=seq, size=size, internal_date=datetime(2024, 7, day_, tzinfo=timezone.utc))


def sort(criteria, rows):
    return [m.seq for m, _ in sorted(rows, key=lambda r: sort_keys(criteria, r[0], r[1]))]


def test_sort_by_each_criterion():
    rows = [
        (meta(1, 300, 3), header(1, "Re: banana", day(9), From="Zed <zed@x>", To="b@x", Cc="m@x")),
        (meta(2, 100, 1), header(2, "apple", day(8), From="=?UTF-8?Q?=C3=85sa?= <asa@x>", To="C@x")),
        (meta(3, 200, 2), header(3, "[list] Cherry", None, From="amy@x", To="a@x", Cc="k@x")),
    ]
    assert sort([("ARRIVAL", False)], rows) == [2, 3, 1]
    assert sort([("SIZE", False)], rows) == [2, 3, 1]
    assert sort([("SIZE", True)], rows) == [1, 3, 2]
    assert sort([("SUBJECT", False)], rows) == [2, 1, 3]
    assert sort([("DATE", False)], rows) == [3, 2, 1]  # 3 has no Date: its internal date (July 2)
    assert sort([("FROM", False)], rows) == [3, 2, 1]  # amy, asa, zed (local parts)
    assert sort([("TO", False)], rows) == [3, 1, 2]  # a, b, C (case-mapped)
    assert sort([("CC", False)], rows) == [2, 3, 1]  # missing sorts as ""
    assert sort([("DISPLAYFROM", False)], rows) == [3, 1, 2]  # AMY@X, ZED, Åsa (octet order past ASCII)


def test_sort_ties_use_sequence_numbers_never_reversed():
    rows = [(meta(s, 10), header(s, "same")) for s in (3, 1, 2)]
    assert sort([("SIZE", True)], rows) == [1, 2, 3]
    rows.append((meta(4, 5), header(4, "same")))
    assert sort([("SUBJECT", False), ("SIZE", True)], rows) == [1, 2, 3, 4]


def _order(criteria, headers):
    rows = [(MessageMeta(uid=i, seq=i, flags=frozenset()), h) for i, h in enumerate(headers, 1)]
    return [m.seq for m, _ in sorted(rows, key=lambda r: sort_keys(criteria, r[0], r[1]))]


def test_address_sort_takes_a_group_name_when_the_group_comes_first():
    # RFC 5256 §3: the first address's mailbox; a group's first address is the group itself
    headers = [b"Cc: user2@domain2.org (foo bar)\n\n", b"Cc: user2: blah@domain1.org;\n\n",
               b"Cc: user1@domain1.org\n\n"]
    assert _order([("CC", False)], headers) == [3, 1, 2]
    assert _order([("CC", True)], headers) == [1, 2, 3]  # 1 and 2 tie: by number, never reversed


def test_display_sort_takes_the_display_name_else_the_address_else_the_group_name():
    # RFC 5957 §3
    headers = [b"To: foo bar <a@b.c>\n\n", b"To: b@c.d\n\n", b"To: d\n\n",
               b"To: =?iso-8859-1?q?foo_aar?= <e@f.g>\n\n", b"To: a: xx@xx.org, yy@yy.org;\n\n",
               b"To: empty:;\n\n"]
    assert _order([("DISPLAYTO", False)], headers) == [5, 2, 3, 6, 4, 1]
    assert _order([("DISPLAYFROM", False)], [h.replace(b"To:", b"From:") for h in headers]) == [5, 2, 3, 6, 4, 1]
