"""NOTIFY (RFC 5465): the command, and writing the news it asks for.

cmd_notify reads the request (proto/imap/notifyargs.py), answers NOTIFY SET
STATUS and gives the session a Watch (imap/notify.py), which keeps the
changes the client wants to hear of. tell() writes them when the client
waits between commands or in IDLE: the selected mailbox's EXISTS, EXPUNGE and
FETCH, a LIST for each folder made, deleted, renamed or (un)subscribed, a
STATUS for other folders whose messages changed. fetch_new_messages()
answers MessageNew's fetch attributes for new messages of the selected mailbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from hatoba.i18n import T
from hatoba.imap.common import is_utf8, mailbox_name, refresh_selected, status_response
from hatoba.imap.cmd_message import FETCH_BATCH_BYTES
from hatoba.imap.notify import MAX_EAGER_FETCH, MAX_WATCHED, Watch, watched_count
from hatoba.imap.selected import SelectedMailbox
from hatoba.proto.imap import fetch as F
from hatoba.proto.imap.notifyargs import (
    FLAG_CHANGE,
    MESSAGE_EXPUNGE,
    MESSAGE_NEW,
    SUPPORTED_EVENTS,
    parse_notify,
)
from hatoba.proto.imap.reader import RawCommand
from hatoba.proto.imap.types import FetchItem, MessageMeta
from hatoba.store.changes import FLAGS, Change, NameChanged, in_folder
from hatoba.store.errors import MailboxError
from hatoba.store.folder_tree import MailboxInfo, MailboxStatus, UserMailboxes

if TYPE_CHECKING:
    from hatoba.imap.session import ImapSession

STATUS_ORDER = ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ")
# RFC 5465 §3.1: what the STATUS of NOTIFY SET STATUS must hold for each event ...
FIRST_STATUS = {
    MESSAGE_NEW: {"MESSAGES", "UIDNEXT", "UIDVALIDITY"},
    MESSAGE_EXPUNGE: {"MESSAGES"},
    FLAG_CHANGE: {"UIDVALIDITY", "HIGHESTMODSEQ"},
}
# ... and §5.1-§5.3: what a STATUS telling of one holds. UNSEEN goes with each, so
# that a client can show unread counts without a STATUS of its own.
NEWS_STATUS = {
    MESSAGE_NEW: {"MESSAGES", "UIDNEXT"},
    MESSAGE_EXPUNGE: {"MESSAGES", "UIDNEXT"},
    FLAG_CHANGE: {"UIDVALIDITY", "HIGHESTMODSEQ"},
}
STATUS_EVENTS = frozenset(FIRST_STATUS)
OVERFLOW = T("[NOTIFICATIONOVERFLOW] Too many changes to tell; NOTIFY is off, look for yourself")


async def cmd_notify(s: ImapSession, cmd: RawCommand) -> None:
    assert s.boxes is not None
    request = parse_notify(cmd.args, utf8_accepted=is_utf8(s))
    if request is None:  # NOTIFY NONE
        s.notify = None
        s.tagged(cmd.tag, "OK", T("NOTIFY completed"))
        return
    if request.unsupported:
        # RFC 5465 §3.1: NO, not BAD, naming every event the server supports.
        s.tagged(cmd.tag, "NO", T("[BADEVENT (%(events)s)] Unsupported NOTIFY event %(event)s",
                                  events=" ".join(SUPPORTED_EVENTS), event=request.unsupported[0]))
        return
    most = s.ctx.config.limits.max_fetch_items
    if request.selected is not None and len(request.selected.fetch) > most:
        s.tagged(cmd.tag, "NO", T("[LIMIT] At most %(most)s fetch attributes after MessageNew", most=most))
        return
    infos, subscribed = await asyncio.to_thread(_folders, s.boxes)
    if watched_count(request, subscribed) > MAX_WATCHED:
        s.tagged(cmd.tag, "NO", T("[NOTIFICATIONOVERFLOW] At most %(most)s mailboxes in one NOTIFY", most=MAX_WATCHED))
        return
    watch = Watch(request, subscribed)
    if request.status:
        first = {info.name: watch.wants(info.name) for info in infos
                 if info.selectable and info.name != s.selected_name}
        first = {name: events for name, events in first.items() if events & STATUS_EVENTS}
        if len(first) > MAX_WATCHED:
            s.tagged(cmd.tag, "NO", T("[NOTIFICATIONOVERFLOW] At most %(most)s mailboxes for NOTIFY SET STATUS",
                                      most=MAX_WATCHED))
            return
        statuses = await asyncio.to_thread(_statuses, s.boxes, first)
        for name, status in statuses.items():
            s.write(status_response(s, name, status, _status_items(s, first[name], FIRST_STATUS)))
    s.notify = watch  # replaces the last NOTIFY SET, and what it still had to tell
    await refresh_selected(s)  # RFC 5465 §3.1: a NOTIFY SET is a NOOP too
    s.tagged(cmd.tag, "OK", T("NOTIFY completed"))


async def tell(s: ImapSession, *, idle: bool) -> None:
    """Write what the session's Watch kept. idle: in IDLE, where expunges may be told
    even with SELECTED-DELAYED (RFC 5465 §6.1.2)."""
    watch = s.notify
    assert watch is not None and s.boxes is not None
    if watch.overflowed:  # RFC 5465 §5.8: as after NOTIFY NONE
        s.notify = None
        s.untagged("OK", OVERFLOW)
        return
    selected, names, statuses = watch.take()
    if selected:
        await refresh_selected(s, allow_expunge=idle or not watch.delayed,
                               flags=FLAG_CHANGE in watch.selected_events)
    statuses.pop(s.selected_name or "", None)  # selected since: its news came as EXISTS and FETCH
    if not names and not statuses:
        return
    infos, subscribed, found = await asyncio.to_thread(_look, s.boxes, names, statuses)
    by_name = {info.name: info for info in infos}
    for change in names:
        s.write(_list_response(s, change, by_name, subscribed))
    for name, status in found.items():
        s.write(status_response(s, name, status, _status_items(s, statuses[name], NEWS_STATUS)))


async def fetch_new_messages(s: ImapSession, view: SelectedMailbox, uids: list[int]) -> None:
    """MessageNew's FETCH for messages new in the selected mailbox, after their EXISTS
    (RFC 5465 §5.2); more than MAX_EAGER_FETCH at once are left to the client."""
    watch = s.notify
    if watch is None or not watch.fetch or len(uids) > MAX_EAGER_FETCH:
        return
    items = watch.fetch
    recent = set() if "IMAP4REV2" in s.enabled else view.mailbox.recent
    limits = s.ctx.config.limits
    mime_limits = F.MimeLimits(limits.max_mime_parts, limits.max_mime_depth)
    seen: list[int] = []
    for uid in uids:
        record = view.records.get(uid)
        if record is None:
            continue
        meta = MessageMeta(uid=uid, seq=view.seq_of(uid) or 0,
                           flags=record.flags | {"\\Recent"} if uid in recent else record.flags,
                           internal_date=record.internal_date, size=record.size, modseq=record.modseq)
        answer = await asyncio.to_thread(_answer, view, items, meta, mime_limits)
        if answer is None:
            continue  # expunged meanwhile, or not answerable: the client may FETCH it itself
        finished = False
        while not finished:  # a large message goes out a part at a time, each drained
            part, finished = await asyncio.to_thread(_next_part, answer)
            s.write(b"".join(part))
            if not await s.flush():
                return
        if F.sets_seen(items) and "\\Seen" not in record.flags and not view.readonly:
            seen.append(uid)
    if seen:  # BODY[] without PEEK sets \Seen here as in FETCH (RFC 5465 §5.2 advises against it)
        changed, _ = await asyncio.to_thread(view.mailbox.store_flags, seen, "+", ("\\Seen",))
        for changed_record in changed:
            view.set_record(changed_record)
            s.write(view.flags_line(changed_record))
        s.mailbox_changed(in_folder(view.mailbox.name, FLAGS))


# -- in threads ---------------------------------------------------------------------------


def _folders(boxes: UserMailboxes) -> tuple[list[MailboxInfo], set[str]]:
    return boxes.list(), set(boxes.subscriptions())


def _statuses(boxes: UserMailboxes, names: Iterable[str]) -> dict[str, MailboxStatus]:
    """STATUS of each folder that still exists."""
    found = {}
    for name in names:
        try:
            found[name] = boxes.status(name, with_size=False)
        except MailboxError:
            continue  # deleted meanwhile: its LIST says so, when asked for
    return found


def _look(boxes: UserMailboxes, names: list[Change],
          statuses: dict[str, set[str]]) -> tuple[list[MailboxInfo], set[str], dict[str, MailboxStatus]]:
    """What tell() reports: the folder list and subscriptions for LIST news, STATUS for the rest."""
    infos, subscribed = _folders(boxes) if names else ([], set())
    return infos, subscribed, _statuses(boxes, statuses)


def _answer(view: SelectedMailbox, items: tuple[FetchItem, ...], meta: MessageMeta,
            mime_limits: F.MimeLimits) -> Iterator[bytes] | None:
    try:
        message = view.mailbox.read(meta.uid) if F.needs_message(items) else None
        return F.fetch_pieces(items, meta, message, mime_limits)
    except (FileNotFoundError, MailboxError, F.FetchError):
        return None


def _next_part(answer: Iterator[bytes]) -> tuple[list[bytes], bool]:
    """The answer's next pieces, about FETCH_BATCH_BYTES of them; True when it is all out."""
    part: list[bytes] = []
    size = 0
    for piece in answer:
        part.append(piece)
        size += len(piece)
        if size >= FETCH_BATCH_BYTES:
            return part, False
    return part, True


# -- responses ----------------------------------------------------------------------------


def _status_items(s: ImapSession, events: Iterable[str], table: dict[str, set[str]]) -> tuple[str, ...]:
    """The STATUS items telling of `events`; HIGHESTMODSEQ too once CONDSTORE is on (RFC 5465 §5.2)."""
    wanted = {"UNSEEN"}.union(*(table[e] for e in events if e in table))
    if "CONDSTORE" in s.enabled:
        wanted.add("HIGHESTMODSEQ")
    return tuple(item for item in STATUS_ORDER if item in wanted)


def _list_response(s: ImapSession, change: Change, by_name: dict[str, MailboxInfo], subscribed: set[str]) -> bytes:
    """RFC 5465 §5.4, §5.5: the folder's LIST as it is now (\\NonExistent when gone), with
    OLDNAME after a rename and \\Subscribed when it is subscribed."""
    info = by_name.get(change.name)
    attrs = []
    if info is None:
        attrs.append("\\NonExistent")
    else:
        if not info.selectable:
            attrs.append("\\Noselect")
        attrs.append("\\HasChildren" if info.has_children else "\\HasNoChildren")
        if info.special_use:
            attrs.append(info.special_use)
    if change.name in subscribed:
        attrs.append("\\Subscribed")
    line = b"* LIST (" + " ".join(attrs).encode() + b') "." ' + mailbox_name(s, change.name)
    if isinstance(change, NameChanged) and change.old is not None:
        line += b' ("OLDNAME" (' + mailbox_name(s, change.old) + b"))"
    return line + b"\r\n"
