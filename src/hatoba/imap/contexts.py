"""SEARCH and SORT RETURN (UPDATE) contexts (RFC 5267 §4, CONTEXT=SEARCH / CONTEXT=SORT).

A context keeps the result of one SEARCH or SORT of the selected mailbox and
tells the client how it changes, in untagged ESEARCH responses (ADDTO,
REMOVEFROM) sent with the other news of the mailbox, until CANCELUPDATE or
until the mailbox is closed.

Cost: a context never searches the mailbox again. The view notes the
messages whose flags changed or that arrived (SelectedMailbox.dirty); only
those are tested against each context's key, with the same search as SEARCH
(in the MAILBOX pool when the key reads headers or bodies). An expunged
message leaves a context without a test. Sort keys (headers, dates, sizes)
never change, so a sorted result moves only by what joins or leaves it, each
placed by bisection. A session keeps at most MAX_UPDATE_CONTEXTS contexts
(docs/limits.md); past that, or with PARTIAL, the command answers as usual
and says NOUPDATE.

Rules:
- Sequence numbers and "$" in the key stand for the messages they named when
  the context was made (they become a UID set): later numbers shift with
  every expunge, a context must not.
- An unsorted result has no positions to speak of: its ADDTO and REMOVEFROM
  carry position 0. A sorted one carries each message's place (1 = first):
  REMOVEFROM pairs are given last place first, ADDTO pairs first place
  first, so that each is right once the ones before it are applied.
- REMOVEFROM for expunged messages goes before their EXPUNGE responses, in
  the sequence numbers they had.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Sequence
from typing import Any

from hatoba.imap.selected import NO_DIRTY, SelectedMailbox
from hatoba.net.workers import MAILBOX
from hatoba.proto.imap import search as S
from hatoba.proto.imap import sort as SORT
from hatoba.proto.imap.encode import format_sequence_set, string
from hatoba.proto.imap.fetch import MimeLimits
from hatoba.proto.imap.types import MessageMeta, SearchKey, SequenceSet, SeqRange

__all__ = ["MAX_UPDATE_CONTEXTS", "UpdateContext", "context_news", "pin_numbers", "sort_key_of"]

MAX_UPDATE_CONTEXTS = 10  # per session (docs/limits.md)

# The fields SORT (RFC 5256 §3, RFC 5957) and THREAD (RFC 5256 §2) read; all kept in the header cache.
SORT_FIELDS = frozenset({"cc", "date", "from", "in-reply-to", "message-id", "references", "subject", "to"})


class UpdateContext:
    """One SEARCH / SORT result the client asked to be kept up to date."""

    def __init__(self, tag: str, key: SearchKey, *, uid: bool, criteria: Sequence[tuple[str, bool]] | None,
                 members: Sequence[int], keys: dict[int, tuple[Any, ...]] | None = None) -> None:
        self.tag = tag
        self.key = key
        self.uid = uid
        self.criteria = list(criteria) if criteria else None  # None: a SEARCH
        self.members = set(members)  # uids
        self.keys: dict[int, tuple[Any, ...]] = dict(keys or {})  # uid -> sort key (SORT only)
        self.order: list[tuple[tuple[Any, ...], int]] = sorted((self.keys[u], u) for u in members) \
            if self.criteria else []

    def _line(self, data: bytes) -> bytes:
        return b"* ESEARCH (TAG " + string(self.tag) + b")" + (b" UID" if self.uid else b"") + data + b"\r\n"

    def removed(self, gone: set[int], seq_of: Callable[[int], int]) -> bytes:
        """The REMOVEFROM for messages that left the result (expunged, or no longer matching);
        `seq_of` gives their sequence numbers as the client knows them now."""
        hit = [u for u in gone if u in self.members] if len(gone) < len(self.members) \
            else [u for u in self.members if u in gone]
        if not hit:
            return b""
        self.members.difference_update(hit)
        number = (lambda u: u) if self.uid else seq_of
        if self.criteria is None:
            return self._line(b" REMOVEFROM (0 " + format_sequence_set(number(u) for u in hit) + b")")
        places = sorted(((bisect_left(self.order, (self.keys[u], u)), u) for u in hit), reverse=True)
        pairs = []
        for place, u in places:  # last first: the places before it stay as they are
            del self.order[place]
            del self.keys[u]
            pairs.append(b"%d %d" % (place + 1, number(u)))
        return self._line(b" REMOVEFROM (" + b" ".join(pairs) + b")")

    def checked(self, uids: Sequence[int], now: set[int], keys: dict[int, tuple[Any, ...]],
                seq_of: Callable[[int], int]) -> bytes:
        """News after testing the messages `uids` again: `now` those that match, `keys` the
        sort keys of those new to a sorted result."""
        out = self.removed({u for u in uids if u in self.members and u not in now}, seq_of)
        new = sorted(u for u in now if u not in self.members)
        if not new:
            return out
        self.members.update(new)
        number = (lambda u: u) if self.uid else seq_of
        if self.criteria is None:
            return out + self._line(b" ADDTO (0 " + format_sequence_set(number(u) for u in new) + b")")
        pairs = []
        for key, u in sorted((keys[u], u) for u in new):  # first place first
            self.keys[u] = key
            insort(self.order, (key, u))
            pairs.append(b"%d %d" % (bisect_left(self.order, (key, u)) + 1, number(u)))
        return out + self._line(b" ADDTO (" + b" ".join(pairs) + b")")


def pin_numbers(key: SearchKey, view: SelectedMailbox) -> SearchKey:
    """`key` with its sequence-number sets and "$" made into the UID sets they name now."""
    if key.keys:
        return SearchKey(key.name, keys=tuple(pin_numbers(k, view) for k in key.keys))
    if key.sequence is None or (key.name == "UID" and not key.sequence.saved):
        return key
    if key.sequence.saved:
        uids = sorted(u for u in view.saved if u in view.records)
    else:
        uids = view.uids_for(key.sequence, uid=False)
    if not uids:
        return SearchKey("NOT", keys=(SearchKey("ALL"),))
    ranges = []
    for part in format_sequence_set(uids).split(b","):
        low, _, high = part.partition(b":")
        ranges.append(SeqRange(int(low), int(high or low)))
    return SearchKey("UID", sequence=SequenceSet(tuple(ranges)))


def sort_key_of(criteria: Sequence[tuple[str, bool]], uid: int, record: Any, header: bytes) -> tuple[Any, ...]:
    """The sort key of a message, ties broken by UID (the order of sequence numbers too, and
    unlike them kept across expunges)."""
    meta = MessageMeta(uid=uid, seq=uid, flags=record.flags, internal_date=record.internal_date,
                       size=record.size, modseq=record.modseq)
    return SORT.sort_keys(criteria, meta, header)


async def context_news(view: SelectedMailbox, recent: set[int] | frozenset[int],
                       mime_limits: MimeLimits) -> bytes:
    """ADDTO / REMOVEFROM for the messages changed or arrived since the last call."""
    if not view.contexts or not view.dirty:
        view.dirty = NO_DIRTY
        return b""
    dirty, view.dirty = view.dirty, NO_DIRTY
    uids = sorted(u for u in dirty if u in view.records and u not in view.pending_expunges)
    if not uids:
        return b""
    records = [view.records[u] for u in uids]
    contexts = list(view.contexts)

    def work() -> list[tuple[set[int], dict[int, tuple[Any, ...]]]]:
        results = []
        for context in contexts:
            hits = S.search_positions(context.key, records, view.mailbox, recent=recent, mime_limits=mime_limits)
            now = {uids[i] for i in hits}
            keys: dict[int, tuple[Any, ...]] = {}
            if context.criteria is not None:
                new = sorted(u for u in now if u not in context.members)
                heads = view.mailbox.headers(new, SORT_FIELDS) if new else {}
                for u in new:
                    header = heads.get(u)
                    if header is None:
                        now.discard(u)  # gone meanwhile
                    else:
                        keys[u] = sort_key_of(context.criteria, u, view.records[u], header.raw)
            results.append((now, keys))
        return results

    cheap = all(not S.needs_message(c.key) and c.criteria is None for c in contexts) and \
        len(uids) * sum(S.key_size(c.key) for c in contexts) <= 20_000
    results = work() if cheap else await MAILBOX.run(work)
    positions = view.positions()
    return b"".join(context.checked(uids, now, keys, positions.__getitem__)
                    for context, (now, keys) in zip(contexts, results) if context in view.contexts)
