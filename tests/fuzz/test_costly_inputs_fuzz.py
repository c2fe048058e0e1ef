"""Inputs whose cost a client or a sender chooses: LIST patterns, SORT and THREAD
headers (subjects, References), MIME trees.

For each: answers agree with a plain reference (a direct transcription of
the RFC, fine on small inputs), and hostile inputs up to the configured
limits stay within stated bounds of time and memory:

- LIST: a pattern of 4,096 characters against 200 names of 200 characters, < 0.5 s.
- base subject: 60 KB of any mix of leaders, blobs and trailers, < 0.25 s.
- THREAD REFERENCES: a References chain 5,000 deep and messages that make the
  loop check walk it, < 3 s, and never a recursion error.
- MIME: 10,000 parts or 100 levels (the defaults of limits.max_mime_parts and
  max_mime_depth), and 5 times more of either, parsed and answered in < 4 s and
  < 64 MiB.

Bounds are about 10 times what a 2-core machine takes, so that they fail on a
cost that grows faster than the input, not on a busy machine.
"""

from __future__ import annotations

import random
import re
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from hatoba.proto.imap.bodystructure import bodystructure
from hatoba.proto.imap.listmatch import list_matcher
from hatoba.proto.imap.mime import DEFAULT_LIMITS, MimeLimits, Part, parse_message, walk
from hatoba.proto.imap.search import decode_header_text
from hatoba.proto.imap.sections import decode_transfer
from hatoba.proto.imap.sort import base_subject, thread_references

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def timed(func, *args):
    start = time.perf_counter()
    result = func(*args)
    return result, time.perf_counter() - start


# -- LIST -------------------------------------------------------------------------------------------


def reference_list_match(reference: str, pattern: str, name: str) -> bool:
    """RFC 9051 §6.3.9 read literally, as a regular expression (exponential only on long patterns)."""
    joined = reference + pattern
    if joined[:5].upper() == "INBOX" and joined[5:6] in ("", ".", "*", "%"):
        joined = "INBOX" + joined[5:]
    regex = "".join(".*" if c == "*" else r"[^.]*" if c == "%" else re.escape(c) for c in joined)
    return re.fullmatch(regex, name, re.DOTALL) is not None


list_text = st.lists(st.sampled_from(["a", "b", ".", "*", "%", "INBOX", "inbox", "In"]), max_size=7).map("".join)
names = st.lists(st.sampled_from(["a", "b", ".", "INBOX", "x"]), max_size=7).map("".join)


@FUZZ
@given(st.sampled_from(["", "a.", "INBOX.", "inbox"]), list_text, st.lists(names, max_size=8))
def test_list_matcher_agrees_with_the_rfc(reference, pattern, candidates):
    matches = list_matcher(reference, [pattern], ".", longest=200)
    for name in candidates:
        assert matches(name) == reference_list_match(reference, pattern, name), (reference, pattern, name)


@FEW
@given(st.text(alphabet="%*ab.", min_size=1, max_size=12), st.integers(1, 4096), st.integers(0, 2**32))
def test_list_matcher_is_linear_on_hostile_patterns(unit, length, seed):
    rnd = random.Random(seed)
    pattern = (unit * (4096 // len(unit) + 1))[:length]
    candidates = ["".join(rnd.choice("ab.") for _ in range(200)) for _ in range(200)]
    matches, built = timed(lambda: list_matcher("", [pattern], ".", longest=200))
    _, took = timed(lambda: [matches(n) for n in candidates])
    assert built + took < 0.5, (unit, length, built, took)


def test_list_matcher_builds_long_patterns_of_many_characters_quickly():
    # 30,000 distinct characters, a "%" between each: one mask per character.
    pattern = "%".join(chr(0x4E00 + i) for i in range(30_000))
    short = "%".join(chr(0x4E00 + i) for i in range(150))
    (long_match, short_match), took = timed(
        lambda: (list_matcher("", [pattern] * 50, ".", longest=200), list_matcher("", [short], ".", longest=200)))
    assert took < 0.5, took
    name = "".join(chr(0x4E00 + i) for i in range(150))
    assert short_match(name) and not long_match(name)


# -- base subject -----------------------------------------------------------------------------------

_BLOB = r"\[[^\[\]]*\][ \t]*"
_LEADER = re.compile(r"(?:" + _BLOB + r")*(?:re|fwd?)[ \t]*(?:" + _BLOB + r")?:|[ \t]", re.IGNORECASE)


def reference_base_subject(subject: str) -> str:
    """RFC 5256 §2.1 steps (1) to (6), each a regular expression, repeated until nothing changes."""
    text = re.sub(r"[ \t\r\n]+", " ", decode_header_text(subject.encode("utf-8", "surrogateescape")))
    while True:
        while True:  # (2)
            if text.endswith(" "):
                text = text[:-1]
            elif text.lower().endswith("(fwd)"):
                text = text[:-5]
            else:
                break
        while True:  # (3), (4), (5)
            before = text
            while (m := _LEADER.match(text)) and m.end():
                text = text[m.end() :]
            m = re.match(_BLOB, text)
            if m and text[m.end() :].strip():
                text = text[m.end() :]
            if text == before:
                break
        if text.lower().startswith("[fwd:") and text.endswith("]"):  # (6)
            text = text[5:-1]
            continue
        return text


SUBJECT_ATOMS = ["re", "Re:", "RE", "fw", "fwd", "Fwd:", ":", "[", "]", "[x]", "[fwd:", "(fwd)", "(FWD)",
                 " ", "\t", "a", "b c", "\x0c", "é"]
subjects = st.lists(st.sampled_from(SUBJECT_ATOMS), max_size=12).map("".join)


@FUZZ
@given(subjects)
def test_base_subject_agrees_with_the_rfc(subject):
    assert base_subject(subject) == reference_base_subject(subject)


@FEW
@given(st.lists(st.sampled_from(SUBJECT_ATOMS), min_size=1, max_size=6).map("".join), st.sampled_from(["", "x"]))
def test_base_subject_of_60kb_is_linear(unit, tail):
    subject = unit * (60_000 // len(unit)) + tail
    base, took = timed(base_subject, subject)
    assert took < 0.25, (unit, took)
    assert len(base) <= len(subject)


ENCODED_ATOMS = ["=?", "?=", "=?utf-8?q?", "=?utf-8?b?", "?", "=", "x", " ", "QQ==", "_", "=E9", "=?a?q?x?="]


@FEW
@given(st.lists(st.sampled_from(ENCODED_ATOMS), min_size=1, max_size=6).map("".join))
def test_encoded_words_of_1mb_decode_in_linear_time(unit):
    # email.header took 15 s for 192 KB of "=?utf-8?q?x " (quadratic), holding the GIL.
    subject = (unit * (1_000_000 // len(unit) + 1)).encode()
    _, took = timed(decode_header_text, subject)
    assert took < 2.0, (unit, took)


@pytest.mark.parametrize("raw, text", [
    (b"=?UTF-8?Q?Caf=C3=A9_menu?= for Friday", "Café menu for Friday"),
    (b"=?utf-8?b?5bGx55Sw?= =?UTF-8?B?5aSq6YOO?=", "山田太郎"),  # the space between two words goes
    (b"=?iso-8859-1?q?caf=E9?= =?utf-8*en?q?ok?=", "caféok"),  # RFC 2231 language dropped
    (b"x =?utf-8?b?QQ?=", "x A"),  # missing base64 padding
    (b"=?nope?q?a?= =?utf-8?q?b?=", "=?nope?q?a?= b"),  # unknown charset: that word as written
    (b"=?zlib?b?eJxLBAAAYgBi?=", "=?zlib?b?eJxLBAAAYgBi?="),  # a codec that is not a charset never runs
    (b"=?utf-8?q?a b?=", "=?utf-8?q?a b?="),  # white space ends an encoded word
])
def test_encoded_words(raw, text):
    assert decode_header_text(raw) == text


# -- THREAD REFERENCES ------------------------------------------------------------------------------


def header(msgid: str, refs: list[str], subject: str = "s") -> bytes:
    lines = [f"Subject: {subject}", f"Message-ID: <{msgid}>", "Date: Mon, 01 Jul 2024 10:00:00 +0000"]
    if refs:
        lines.append("References: " + " ".join(f"<{r}>" for r in refs))
    return ("\n".join(lines) + "\n\n").encode()


def numbers_in(tree: bytes) -> list[int]:
    return sorted(int(n) for n in re.findall(rb"\d+", tree))


def balanced(text: bytes) -> bool:
    depth = 0
    for c in text:
        depth += (c == 0x28) - (c == 0x29)
        if depth < 0:
            return False
    return depth == 0


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 9), st.lists(st.integers(0, 11), max_size=6),
                          st.sampled_from(["a", "Re: a", "b", ""])), max_size=12))
def test_thread_references_keeps_every_message_once(mailbox):
    items = [(n + 1, header(f"m{mid}", [f"m{r}" for r in refs], subj)) for n, (mid, refs, subj) in enumerate(mailbox)]
    tree = thread_references(items)
    assert balanced(tree)
    assert numbers_in(tree) == list(range(1, len(items) + 1))


@FEW
@given(st.integers(2, 1500), st.randoms(use_true_random=False))
def test_thread_references_of_a_deep_chain_in_any_order(depth, rnd):
    # Message k replies to k-1 and lists every ancestor: one thread, k under k-1, whatever the order.
    items = [(k, header(f"c{k}", [f"c{j}" for j in range(1, k)])) for k in range(1, depth + 1)]
    rnd.shuffle(items)
    tree, took = timed(thread_references, items)
    assert tree == ("(" + " ".join(str(k) for k in range(1, depth + 1)) + ")").encode()
    assert took < 3.0, took


def test_thread_references_loop_checks_stay_cheap():
    # A chain 5,000 deep of missing messages, and messages that each ask to put the
    # chain's root under its deepest node (a loop, refused) many times over.
    chain = [f"d{i}" for i in range(5000)]
    items = [(1, header("top", chain, "one"))]
    for n in range(2, 202):
        items.append((n, header(f"x{n}", [chain[-1], chain[0]] * 50 + [f"y{n}"], f"s{n}")))
    tree, took = timed(thread_references, items)
    assert numbers_in(tree) == list(range(1, 202))
    assert took < 3.0, took


# -- MIME -------------------------------------------------------------------------------------------

# A tree: a leaf is None; a multipart is (boundary, [children]).
boundaries = st.sampled_from(["a", "aa", "b", "a-b", "==x", "a a"])
trees = st.recursive(st.none(), lambda kids: st.tuples(boundaries, st.lists(kids, min_size=1, max_size=4)),
                     max_leaves=20)


def render(tree, depth: int = 0) -> bytes:
    """The entity for `tree`: each multipart's boundary made unique by its depth."""
    if tree is None:
        return b"Content-Type: text/plain\r\n\r\nleaf text\r\n"
    boundary = f"{tree[0]}{depth}".encode()
    out = b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\npreamble\r\n'
    for child in tree[1]:
        out += b"--" + boundary + b"\r\n" + render(child, depth + 1) + b"\r\n"
    return out + b"--" + boundary + b"--\r\nepilogue\r\n"


def shape(tree):
    return None if tree is None else [shape(c) for c in tree[1]]


def parsed_shape(part: Part):
    return [parsed_shape(c) for c in part.children] if part.is_multipart else None


@FUZZ
@given(trees)
def test_mime_tree_is_parsed_as_built(tree):
    data = render(tree)
    root = parse_message(data)
    assert parsed_shape(root) == shape(tree)
    answer = bodystructure(data, root, extensible=True)
    assert balanced(answer)


def flat(parts: int) -> bytes:
    return (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n\r\nx\r\n" * parts + b"--b--\r\n")


def nested(depth: int) -> bytes:
    out = b""
    for level in range(depth):
        out += b"Content-Type: multipart/mixed; boundary=a" + b"a" * level + b"\r\n\r\n--a" + b"a" * level + b"\r\n"
    return out + b"\r\nx\r\n"


def measured(data: bytes, limits: MimeLimits) -> tuple[Part, bytes, float, int]:
    tracemalloc.start()
    start = time.perf_counter()
    root = parse_message(data, limits)
    answer = bodystructure(data, root, extensible=True)
    took = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return root, answer, took, peak


@settings(max_examples=6, deadline=None)
@given(st.sampled_from([DEFAULT_LIMITS, MimeLimits(2_000, 20)]), st.sampled_from([1, 5]), st.booleans())
def test_mime_cost_stays_bounded_at_and_past_the_limits(limits, times, deep):
    data = nested(limits.max_depth * times) if deep else flat(limits.max_parts * times)
    root, answer, took, peak = measured(data, limits)
    parts = list(walk(root))
    assert len(parts) <= limits.max_parts
    assert balanced(answer)
    assert took < 4.0, took
    assert peak < 64 << 20, peak
    if times > 1:  # past a limit: the rest is one opaque leaf
        assert parts[-1].maintype == "application" and not parts[-1].is_multipart


@pytest.mark.parametrize("unit", [b" ", b"a \r\n", b"\r\n", b"= \t\r\n", b" \t=41"])
def test_quoted_printable_of_8mb_with_trailing_white_space_decodes_in_linear_time(unit):
    # Trailing white space comes off each line (RFC 2045 §6.7): a run of blanks with no
    # line end after it, or millions of short padded lines, must not cost more than their size.
    body = unit * (8_000_000 // len(unit))
    decoded, took = timed(decode_transfer, body, "quoted-printable")
    assert len(decoded) <= len(body)
    assert took < 3.0, (unit, took)
