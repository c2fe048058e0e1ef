"""The selected mailbox as one IMAP session sees it: sequence numbers, flags, pending news.

RFC 9051 §7.5.1 / RFC 3501 §7.4.1: a session learns of expunges only when
the server may renumber (not during FETCH, STORE or SEARCH by sequence
number), so news from other sessions and deliveries waits here until the
session can be told. Every method that touches the store blocks: call it in
a thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hatoba.i18n import T, say
from hatoba.proto.imap import encode as E
from hatoba.store.folder_tree import Mailbox, MessageRecord
from hatoba.store.mailbox_view import SyncResult

# Most sessions never have UPDATE contexts (RFC 5267): they share this empty set.
NO_DIRTY: frozenset[int] = frozenset()

# FLAGS names these and the folder's keywords; PERMANENTFLAGS adds \* (keywords may be made).
PERMANENT_FLAGS = (b"\\Answered", b"\\Flagged", b"\\Deleted", b"\\Seen", b"\\Draft", b"\\*")


@dataclass(slots=True)  # one per selected session, kept for as long as the client idles
class SelectedMailbox:
    mailbox: Mailbox
    readonly: bool
    condstore: bool = False
    uids: list[int] = field(default_factory=list)  # index = sequence number - 1
    # What the client was told, by uid. While that is all the Mailbox knows, this is a dict
    # lent by the Mailbox (lend_view), which other sessions of the folder may hold too: it is
    # never changed in place (_own_records() copies it first).
    records: dict[int, MessageRecord] = field(default_factory=dict)
    borrowed: bool = False
    pending_expunges: list[int] = field(default_factory=list)
    saved: list[int] = field(default_factory=list)  # SEARCHRES "$" (uids)
    recent_flag: bool = True  # \Recent and RECENT are IMAP4rev1 (RFC 3501 §2.3.2); IMAP4rev2 dropped them
    announced: tuple[str, ...] | None = None  # the keywords the last FLAGS response named
    _positions: dict[int, int] | None = None  # uid -> sequence number, rebuilt after changes
    # SEARCH / SORT RETURN (UPDATE) contexts (RFC 5267 §4, imap/contexts.py), and the
    # messages whose flags changed or that arrived since they were last brought up to date.
    contexts: list[Any] = field(default_factory=list)
    dirty: set[int] | frozenset[int] = NO_DIRTY  # a set of its own once something is dirty
    # Flag changes not yet told: NOTIFY without FlagChange reports them at the next command.
    held_flags: dict[int, MessageRecord] = field(default_factory=dict)

    @classmethod
    def open(cls, mailbox: Mailbox, *, readonly: bool, condstore: bool, recent_flag: bool = True) -> SelectedMailbox:
        """The view of a Mailbox just opened (which brought itself up to date)."""
        view = cls(mailbox, readonly, condstore, recent_flag=recent_flag)
        view.records = mailbox.lend_view()  # in ascending uid order
        view.borrowed = True
        view.uids = list(view.records)
        return view

    # -- numbers ------------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int | None:
        return self.positions().get(uid)

    def positions(self) -> dict[int, int]:
        """uid -> sequence number, for many look-ups at once."""
        if self._positions is None or len(self._positions) != len(self.uids):
            self._positions = dict(zip(self.uids, range(1, len(self.uids) + 1)))
        return self._positions

    def uids_for(self, sequence, *, uid: bool) -> list[int]:  # type: ignore[no-untyped-def]
        """The uids a sequence set names (by uid or by sequence number), ascending, existing only."""
        if sequence.saved:
            return [u for u in self.saved if u in self.records]
        if uid:
            largest = self.uids[-1] if self.uids else 0
            return sequence.pick(self.uids, largest)
        if len(sequence.ranges) == 1:  # "1:*", "5:10": a slice, not a number at a time
            r = sequence.ranges[0]
            count = len(self.uids)
            first = count if r.first is None else r.first
            last = count if r.last is None else r.last
            low, high = min(first, last), max(first, last)
            return self.uids[max(low, 1) - 1 : high] if count else []
        numbers = sequence.resolve(len(self.uids))
        return [self.uids[n - 1] for n in numbers if 1 <= n <= len(self.uids)]

    def bad_sequence(self, sequence) -> bool:  # type: ignore[no-untyped-def]
        """RFC 9051 §6.4.5: a sequence number beyond EXISTS is an error (uids are not)."""
        if sequence.saved:
            return False
        for r in sequence.ranges:
            for n in (r.first, r.last):
                if n is not None and n > len(self.uids):
                    return True
        return False

    def first_unseen(self) -> int | None:
        """The sequence number of the first message without \\Seen (SELECT's UNSEEN, RFC 3501 §6.3.1)."""
        for seq, uid in enumerate(self.uids, 1):
            if "\\Seen" not in self.records[uid].flags:
                return seq
        return None

    # -- news ---------------------------------------------------------------------------

    def flags_news(self, language: str = "i-default") -> bytes:
        """FLAGS and PERMANENTFLAGS when the folder's keywords differ from those last named;
        the text after PERMANENTFLAGS in `language` (the session's, LANGUAGE of RFC 5255).

        A client learns a keyword from FLAGS before any FETCH shows it (RFC 9051
        §7.3.5): STORE, APPEND and COPY (this session's or another's) may add one.
        """
        keywords = tuple(self.mailbox.keywords)
        if keywords == self.announced:
            return b""
        self.announced = keywords
        names = [k.encode() for k in keywords]
        flags = b"* FLAGS " + E.format_list([*PERMANENT_FLAGS[:-1], *names]) + b"\r\n"
        perm = b"()" if self.readonly else E.format_list([*PERMANENT_FLAGS[:-1], *names, PERMANENT_FLAGS[-1]])
        # The flags go back as they were: only the words after them are said in `language`.
        text = say(T("[PERMANENTFLAGS %(flags)s] Flags you can change", flags=perm.decode("utf-8", "surrogateescape")),
                   language)
        return flags + b"* OK " + text.encode("utf-8", "surrogateescape") + b"\r\n"

    def refresh(self, *, allow_expunge: bool, qresync: bool = False, flags: bool = True,
                language: str = "i-default") -> bytes:
        """Untagged responses for what changed in the store since we last looked;
        flags=False keeps flag changes for a later refresh; texts in `language`."""
        return self._news(self.mailbox.sync(), allow_expunge=allow_expunge, qresync=qresync, flags=flags,
                          language=language)

    def _news(self, result: SyncResult, *, allow_expunge: bool, qresync: bool, flags: bool,
              language: str = "i-default") -> bytes:
        out: list[bytes] = [self.flags_news(language)]
        self.pending_expunges += [u for u in result.expunged if u in self.records]
        if allow_expunge and self.pending_expunges:
            gone, self.pending_expunges = self.pending_expunges, []
            out.append(self.forget(gone, qresync=qresync))
        self.held_flags.update((r.uid, r) for r in result.flags_changed)
        if flags:
            changed, self.held_flags = self.held_flags, {}
            for record in changed.values():
                if record.uid in self.records and record.uid not in self.pending_expunges:
                    self.set_record(record)
                    out.append(self.flags_line(record))
        added = [r for r in result.added if r.uid not in self.records]
        for record in added:
            self.uids.append(record.uid)
            self.set_record(record)
        if added:
            self._positions = None
            out.append(b"* %d EXISTS\r\n" % len(self.uids))
            if self.recent_flag:
                out.append(b"* %d RECENT\r\n" % len(self.mailbox.recent))
        self._borrow_if_same()
        return b"".join(out)

    def _borrow_if_same(self) -> None:
        """Hold the Mailbox's dict instead of a copy once nothing is left untold."""
        if self.borrowed or self.pending_expunges or self.held_flags:
            return
        if self.mailbox.view_matches(self.records):
            self.records = self.mailbox.lend_view()
            self.borrowed = True

    def _own_records(self) -> dict[int, MessageRecord]:
        """records, copied first if it was lent: call before changing it."""
        if self.borrowed:
            self.records = dict(self.records)
            self.borrowed = False
        return self.records

    def forget(self, uids, *, qresync: bool) -> bytes:  # type: ignore[no-untyped-def]
        """Drop expunged messages from the view; the EXPUNGE (or VANISHED) responses that say so."""
        gone = {u for u in uids if u in self.records}
        if not gone:
            return b""
        out: list[bytes] = []
        if self.contexts:  # REMOVEFROM before the EXPUNGEs, in the numbers still valid
            positions = self.positions()
            for context in self.contexts:
                out.append(context.removed(gone, positions.__getitem__))
            self.dirty = self.dirty - gone
        if qresync:
            out.append(b"* VANISHED " + E.format_sequence_set(sorted(gone)) + b"\r\n")
            self.uids = [u for u in self.uids if u not in gone]
        else:
            # Highest first, so the numbers of the ones still to report do not shift.
            for seq in range(len(self.uids), 0, -1):
                if self.uids[seq - 1] in gone:
                    out.append(b"* %d EXPUNGE\r\n" % seq)
                    del self.uids[seq - 1]
        records = self._own_records()
        for u in gone:
            records.pop(u, None)
            self.held_flags.pop(u, None)
        self._positions = None
        return b"".join(out)

    def set_record(self, record: MessageRecord) -> None:
        """A message's record, new or with other flags: update contexts look at it again."""
        self._own_records()[record.uid] = record
        self.held_flags.pop(record.uid, None)  # an older record must not come back later
        if self.contexts:
            if not self.dirty:
                self.dirty = set()
            self.dirty.add(record.uid)  # type: ignore[union-attr]

    def flags_line(self, record: MessageRecord, *, with_uid: bool = True) -> bytes:
        seq = self.seq_of(record.uid)
        flags = record.flags
        if self.recent_flag and record.uid in self.mailbox.recent:
            flags = flags | {"\\Recent"}
        items = [b"FLAGS " + E.format_flags(flags)]
        if with_uid:
            items.append(b"UID %d" % record.uid)
        if self.condstore:
            items.append(b"MODSEQ (%d)" % record.modseq)
        return b"* %d FETCH (%s)\r\n" % (seq or 0, b" ".join(items))
