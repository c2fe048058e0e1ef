"""LIST and LSUB patterns (RFC 9051 §6.3.9, RFC 3501 §6.3.8): which mailbox names
a reference and a pattern select.

Rules:
- "*" matches any run of characters, "%" any run without the hierarchy
  delimiter; every other character matches itself.
- The reference and the pattern are joined as written (hatoba has one
  namespace, rooted at "", so no delimiter is inserted or removed).
- INBOX is case-insensitive (RFC 9051 §5.1): a pattern that starts with it
  matches the store's spelling, "INBOX"; the rest of a name is compared as is.
- Matching takes time linear in the name, whatever the pattern: runs of
  wildcards are one wildcard, and the pattern is run as a set of positions
  (bit-parallel, one integer) rather than by backtracking, so
  LIST "" "%%%...%b" costs what LIST "" "%b" does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["list_matcher"]


def _canonical_inbox(pattern: str, delimiter: str) -> str:
    if pattern[:5].upper() == "INBOX" and pattern[5:6] in ("", delimiter, "*", "%"):
        return "INBOX" + pattern[5:]
    return pattern


def _collapse(pattern: str) -> str:
    """Each run of wildcards as one: "*" if the run holds a "*", else "%"."""
    out: list[str] = []
    for c in pattern:
        if c in "*%" and out and out[-1] in "*%":
            if c == "*":
                out[-1] = "*"
            continue
        out.append(c)
    return "".join(out)


def _compile(pattern: str, delimiter: str, longest: int) -> Callable[[str], bool]:
    """A test for one pattern: bit i of the state means "pattern[:i] matched so far"."""
    tokens = _collapse(pattern)
    if sum(c not in "*%" for c in tokens) > longest:
        return _never  # more characters than any name has
    # One bit mask per character class, built in bytes: OR-ing bits into an
    # integer one at a time would cost time quadratic in the pattern.
    size = len(tokens) // 8 + 1
    masks: dict[str, bytearray] = {}
    for i, c in enumerate(tokens):
        mask = masks.setdefault(c, bytearray(size))
        mask[i >> 3] |= 1 << (i & 7)
    literal = {c: int.from_bytes(mask, "little") for c, mask in masks.items() if c not in "*%"}
    star = int.from_bytes(masks.get("*", b""), "little")
    percent = int.from_bytes(masks.get("%", b""), "little")
    wild = star | percent
    accept = 1 << len(tokens)

    def close(state: int) -> int:
        # A wildcard may match nothing: step over it. Runs were collapsed, so one step is enough.
        return state | (state & wild) << 1

    start = close(1)

    def matches(name: str) -> bool:
        state = start
        for c in name:
            stay = star if c == delimiter else wild  # wildcards that may swallow c
            state = close((state & literal.get(c, 0)) << 1 | state & stay)
            if not state:
                return False
        return bool(state & accept)

    return matches


def _never(name: str) -> bool:
    return False


def list_matcher(reference: str, patterns: Sequence[str], delimiter: str, *,
                 longest: int) -> Callable[[str], bool]:
    """A test of mailbox names no longer than `longest` characters: True when
    some `reference + pattern` selects the name."""
    joined = dict.fromkeys(_canonical_inbox(reference + p, delimiter) for p in patterns)
    tests = [_compile(pattern, delimiter, longest) for pattern in joined]
    return lambda name: any(test(name) for test in tests)
