"""IMAP commands on the selected mailbox's messages: CLOSE, UNSELECT, EXPUNGE,
FETCH, STORE, COPY, MOVE, SEARCH, SORT, THREAD and their UID forms
(RFC 9051 §6.4, RFC 6851, RFC 4731, RFC 5256, RFC 7162, RFC 4315).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hatoba.i18n import T, refusal
from hatoba.imap.common import enable_condstore, is_utf8, refresh_selected, selected_view
from hatoba.imap.folder_work import in_folder_turn
from hatoba.imap.contexts import MAX_UPDATE_CONTEXTS, SORT_FIELDS, UpdateContext, pin_numbers, sort_key_of
from hatoba.imap.replies import TRYCREATE, with_code
from hatoba.imap.selected import NO_DIRTY, SelectedMailbox
from hatoba.imap.structures import STRUCTURES
from hatoba.net.workers import MAILBOX
from hatoba.proto.imap import encode as E
from hatoba.proto.imap import fetch as F
from hatoba.proto.imap import search as S
from hatoba.proto.imap import sort as SORT
from hatoba.proto.imap.args import parse_mailbox, parse_store
from hatoba.proto.imap.fetchitems import parse_fetch_items
from hatoba.proto.imap.reader import RawCommand
from hatoba.proto.imap.scalars import ArgError, as_text, parse_sequence_set
from hatoba.proto.imap.searchkeys import parse_return, parse_search
from hatoba.proto.imap.states import State
from hatoba.proto.imap.types import ArgList, Atom, FetchItem, MessageMeta
from hatoba.store.changes import EXPUNGED, FLAGS, NEW, in_folder
from hatoba.store.errors import MailboxError
from hatoba.store.mailbox_view import MessageRecord

if TYPE_CHECKING:
    from hatoba.imap.session import ImapSession

FETCH_BATCH = 5000  # messages per batch when no message bytes are needed
FETCH_BATCH_WITH_BODIES = 256  # at most this many messages per batch ...
# ... and about this many bytes read or answered: one large write each, drained
# before the next batch is made. A longer answer (a large message, or one named
# many times) is cut here too, so a client that reads slowly holds about this
# much of it in the server, not the whole answer.
FETCH_BATCH_BYTES = 1 << 20
SORT_CRITERIA = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"})
SEARCH_ON_LOOP_WORK = 200_000  # messages × search keys up to which SEARCH runs without a thread



def _mime_limits(s: ImapSession) -> F.MimeLimits:
    limits = s.ctx.config.limits
    return F.MimeLimits(limits.max_mime_parts, limits.max_mime_depth)


async def cmd_close(s: ImapSession, cmd: RawCommand) -> None:
    view = selected_view(s)
    if not view.readonly:
        expunged = await in_folder_turn(view.mailbox, view.mailbox.expunge, None)
        if expunged:
            s.mailbox_changed(in_folder(view.mailbox.name, EXPUNGED))
    s.selected = None
    s.state = State.AUTHENTICATED
    s.tagged(cmd.tag, "OK", T("CLOSE completed"))


async def cmd_unselect(s: ImapSession, cmd: RawCommand) -> None:
    s.selected = None
    s.state = State.AUTHENTICATED
    s.tagged(cmd.tag, "OK", T("UNSELECT completed"))


async def _expunge(s: ImapSession, cmd: RawCommand, uids: list[int] | None) -> None:
    view = selected_view(s)
    if view.readonly:
        s.tagged(cmd.tag, "NO", T("[READ-ONLY] Mailbox was opened with EXAMINE"))
        return
    expunged = await in_folder_turn(view.mailbox, view.mailbox.expunge, uids)
    if expunged:
        s.write(view.forget(expunged, qresync="QRESYNC" in s.enabled))
        s.mailbox_changed(in_folder(view.mailbox.name, EXPUNGED))
    await refresh_selected(s)
    s.tagged(cmd.tag, "OK", T("EXPUNGE completed"))


async def cmd_expunge(s: ImapSession, cmd: RawCommand) -> None:
    await _expunge(s, cmd, None)


def _largest(view: SelectedMailbox) -> tuple[int, int]:
    return view.exists, (view.uids[-1] if view.uids else 0)


async def _fetch(s: ImapSession, cmd: RawCommand, args: tuple, *, uid: bool) -> None:
    view = selected_view(s)
    if len(args) < 2:
        raise ArgError(T("FETCH needs a sequence set and data items"))
    sequence = parse_sequence_set(as_text(args[0]))
    if not uid and view.bad_sequence(sequence):
        s.tagged(cmd.tag, "BAD", T("Message sequence number beyond the last message"))
        s.count_bad()
        return
    items, modifiers = parse_fetch_items(args[1:])
    most = s.ctx.config.limits.max_fetch_items
    if len(items) > most:  # RFC 5530 §3: an implementation limit
        s.tagged(cmd.tag, "NO", T("[LIMIT] At most %(most)s data items in one FETCH; ask for the rest in another",
                                  most=most))
        return
    if uid and not any(i.name == "UID" for i in items):
        items = [*items, FetchItem("UID")]
    changedsince = modifiers.get("CHANGEDSINCE")
    if changedsince is not None or any(i.name == "MODSEQ" for i in items):
        enable_condstore(s)
        if not any(i.name == "MODSEQ" for i in items):
            items = [*items, FetchItem("MODSEQ")]
    uids = view.uids_for(sequence, uid=uid)
    vanished = modifiers.get("VANISHED")
    if uid and vanished and changedsince is not None:
        gone = await asyncio.to_thread(view.mailbox.vanished_since, int(changedsince))
        largest = _largest(view)[1]
        if largest or not any(r.first is None or r.last is None for r in sequence.ranges):
            gone = sequence.pick(sorted(gone), largest)
        # else: in an empty view "*" stands for each UID itself, so every one matches
        if gone:
            s.write(b"* VANISHED (EARLIER) " + E.format_sequence_set(sorted(gone)) + b"\r\n")
    needs = F.needs_message(items)
    marks_seen = F.sets_seen(items)
    seen_uids: list[int] = []
    # \Recent is an IMAP4rev1 flag (RFC 3501 §2.3.2); IMAP4rev2 dropped it.
    recent = set() if "IMAP4REV2" in s.enabled else view.mailbox.recent

    records = view.records
    since = int(changedsince) if changedsince is not None else None
    mime_limits = _mime_limits(s)

    def meta_work(start: int) -> tuple[list[bytes], int]:
        """FLAGS, UID, ...: answered from the records alone, one format per line."""
        end = start + FETCH_BATCH
        batch = uids[start:end]
        chosen = list(map(records.get, batch))
        if None in chosen:  # expunged by this session since the uids were picked
            batch = [u for u in batch if u in records]
            chosen = list(map(records.__getitem__, batch))
        if since is not None:
            batch = [u for u, record in zip(batch, chosen) if record.modseq > since]
            chosen = list(map(records.__getitem__, batch))
        positions = view.positions()
        seqs = [positions.get(u, 0) for u in batch]
        return [F.meta_text(items, seqs, chosen, recent)], end

    # ENVELOPE reads only fields the folder's header cache keeps: no message file is opened.
    from_cache = all(item.name.upper() in F.META_ITEMS or item.name.upper() == "ENVELOPE" for item in items)

    # BODY and BODYSTRUCTURE (with metadata and ENVELOPE) from the values kept per message
    # file: the message is read and parsed only the first time.
    structures = None if from_cache else F.structure_names(items)
    wants_envelope = any(item.name.upper() == "ENVELOPE" for item in items)

    whole = F.whole_message_plan(items)  # the common download: one plan for every message

    def answer(u: int, record: MessageRecord, message: bytes,
               known: dict[str, bytes] | None = None) -> Iterator[bytes]:
        """The "* n FETCH (...)" line of one message, in pieces; FetchError before the first."""
        seq = view.seq_of(u) or 0
        meta = None
        if whole is None or whole.uses_meta:
            flags = record.flags | {"\\Recent"} if u in recent else record.flags
            meta = MessageMeta(uid=u, seq=seq, flags=flags,
                               internal_date=record.internal_date, size=record.size, modseq=record.modseq)
        if whole is not None:
            pieces: Iterator[bytes] = iter(whole.pieces(seq, meta, message))
        else:
            assert meta is not None
            pieces = F.fetch_pieces(items, meta, message, mime_limits, known)
        if marks_seen and "\\Seen" not in record.flags and not view.readonly:
            seen_uids.append(u)
        return pieces

    def body_work(start: int, read: Callable[[int], bytes | None], rest: Iterator[bytes] | None) -> _Batch:
        """About FETCH_BATCH_BYTES of answers: what is left of `rest` (an answer cut short
        by the batch before), then the messages from `start` on; stops before a message
        `read` gives None for."""
        batch = _Batch([], start)
        size = taken = 0  # bytes answered, bytes read
        if rest is not None:
            size = _take(rest, batch, FETCH_BATCH_BYTES)
            if batch.rest is not None:
                return batch
        i = start
        if from_cache or (structures and wants_envelope):
            heads = view.mailbox.headers(uids[start : start + FETCH_BATCH_WITH_BODIES])
        while (i < len(uids) and i - start < FETCH_BATCH_WITH_BODIES and size < FETCH_BATCH_BYTES
               and taken < FETCH_BATCH_BYTES):
            u = uids[i]
            i += 1
            batch.next = i
            record = records.get(u)
            if record is None:
                continue
            if since is not None and record.modseq <= since:
                continue
            known = None
            if structures:
                key = STRUCTURES.key(record.cur, record.name)
                known = STRUCTURES.get(key)
            if from_cache or known is not None:
                header = heads.get(u) if from_cache or wants_envelope else None
                if header is None and (from_cache or wants_envelope):
                    continue  # expunged meanwhile; reported at the next chance
                message = header.raw + b"\n" if header is not None else b""  # the cached fields, the empty line
            else:
                try:
                    message = read(u)
                except (FileNotFoundError, MailboxError):
                    continue  # expunged meanwhile; reported at the next chance
                if message is None:  # not in the page cache: the caller reads on in a thread
                    batch.next = i - 1
                    break
                if structures:
                    known = F.structure_values(message, mime_limits)
                    STRUCTURES.put(key, known)
            taken += len(message)
            try:
                pieces = answer(u, record, message, known)
            except F.FetchError as exc:  # e.g. BINARY of an unknown encoding: NO [UNKNOWN-CTE]
                batch.error = refusal(exc)
                break
            size += _take(pieces, batch, FETCH_BATCH_BYTES - size)
            if batch.rest is not None:
                break
        return batch

    # Files the page cache holds are read on the loop: handing each batch to a thread cost
    # more in GIL hand-offs than the reads (FETCH throughput halved). Only for items that
    # are slices of the message: parsing the MIME tree or header fields of a large message
    # (BODYSTRUCTURE, BINARY, parts) would stall every other session meanwhile.
    on_loop = not from_cache and F.slices_only(items)
    missed = False  # a message would have waited for the disk: threads for the rest

    def read_now(u: int) -> bytes | None:
        nonlocal missed
        message = view.mailbox.read_now(u, FETCH_BATCH_BYTES)
        missed = message is None
        return message

    # Bodies go out in batches, each drained before the next is made: a FETCH 1:* BODY[]
    # never holds the mailbox in memory, nor a FETCH of BODY[] sixty times the message.
    start, rest = 0, None
    while start < len(uids) or rest is not None:
        if not needs:
            lines, start = meta_work(start)
            batch = _Batch(lines, start)
        elif on_loop and not missed:
            batch = body_work(start, read_now, rest)
        else:
            batch = await asyncio.to_thread(body_work, start, view.mailbox.read, rest)
        start, rest = batch.next, batch.rest
        if not await _send(s, batch.pieces):
            return  # the client is gone, or took nothing for command_timeout seconds
        if batch.error is not None:
            s.tagged(cmd.tag, "NO", batch.error)
            return
        await asyncio.sleep(0)  # flush() returns at once to a fast reader: let other sessions run
    if seen_uids:
        changed, _ = await in_folder_turn(view.mailbox, view.mailbox.store_flags, seen_uids, "+", ("\\Seen",))
        for record in changed:
            view.set_record(record)
            s.write(view.flags_line(record))
        s.mailbox_changed(in_folder(view.mailbox.name, FLAGS))
    await refresh_selected(s, allow_expunge=uid)
    s.tagged(cmd.tag, "OK", T("%(command)s completed", command="UID FETCH" if uid else "FETCH"))


@dataclass
class _Batch:
    """Part of a FETCH answer, made in one go (in a thread or on the loop) and then sent."""

    pieces: list[bytes]
    next: int  # the message the next batch starts at
    rest: Iterator[bytes] | None = None  # the answer this batch cut short, to go on with
    error: str | None = None  # the FetchError that ends the command after the pieces


def _take(answer: Iterator[bytes], batch: _Batch, room: int) -> int:
    """Move pieces of `answer` into the batch until they fill `room` bytes; their size.
    An answer not finished by then is left in batch.rest."""
    size = 0
    for piece in answer:
        batch.pieces.append(piece)
        size += len(piece)
        if size >= room:
            batch.rest = answer
            return size
    batch.rest = None
    return size


async def _send(s: ImapSession, pieces: list[bytes]) -> bool:
    """Write the pieces, waiting for the client to take every FETCH_BATCH_BYTES of them.
    False when the session ended."""
    for chunk in _chunks(pieces, FETCH_BATCH_BYTES):
        s.write(chunk)
        if not await s.flush():
            return False
    return True


def _chunks(pieces: list[bytes], size: int) -> Iterator[bytes]:
    """The pieces joined into runs of about `size` bytes (one write each), and a longer
    piece (a large literal) cut into parts of `size` without copying it."""
    run: list[bytes] = []
    length = 0
    for piece in pieces:
        if len(piece) > size:
            if run:
                yield b"".join(run)
                run, length = [], 0
            view = memoryview(piece)
            for at in range(0, len(piece), size):
                yield view[at : at + size]  # type: ignore[misc]  # bytes-like: write() joins it
            continue
        run.append(piece)
        length += len(piece)
        if length >= size:
            yield b"".join(run)
            run, length = [], 0
    if run:
        yield b"".join(run)


async def cmd_fetch(s: ImapSession, cmd: RawCommand) -> None:
    await _fetch(s, cmd, cmd.args, uid=False)


async def _store(s: ImapSession, cmd: RawCommand, args: tuple, *, uid: bool) -> None:
    view = selected_view(s)
    if view.readonly:
        s.tagged(cmd.tag, "NO", T("[READ-ONLY] Mailbox was opened with EXAMINE"))
        return
    if len(args) < 3:
        raise ArgError(T("STORE needs a sequence set, an action and flags"))
    sequence = parse_sequence_set(as_text(args[0]))
    if not uid and view.bad_sequence(sequence):
        s.tagged(cmd.tag, "BAD", T("Message sequence number beyond the last message"))
        return
    mode, silent, flags, unchangedsince = parse_store(args[1:])
    if "\\Recent" in flags:
        raise ArgError(T("\\Recent cannot be stored"))
    if unchangedsince is not None:
        enable_condstore(s)
    uids = view.uids_for(sequence, uid=uid)
    changed, failed = await in_folder_turn(view.mailbox, view.mailbox.store_flags, uids, mode, flags,
                                             unchangedsince=unchangedsince)
    s.write(view.flags_news(s.language))  # a new keyword is named in FLAGS before a FETCH shows it
    for record in changed:
        view.set_record(record)
        if not silent or unchangedsince is not None:
            s.write(view.flags_line(record, with_uid=uid))
    if changed:
        s.mailbox_changed(in_folder(view.mailbox.name, FLAGS))
    await refresh_selected(s, allow_expunge=uid)
    if failed:
        numbers = sorted(failed) if uid else sorted(view.seq_of(u) or 0 for u in failed)
        s.tagged(cmd.tag, "OK", T("[MODIFIED %(numbers)s] Conditional STORE failed",
                                  numbers=E.format_sequence_set(numbers).decode()))
        return
    s.tagged(cmd.tag, "OK", T("%(command)s completed", command="UID STORE" if uid else "STORE"))


async def cmd_store(s: ImapSession, cmd: RawCommand) -> None:
    await _store(s, cmd, cmd.args, uid=False)


async def _copy(s: ImapSession, cmd: RawCommand, args: tuple, *, uid: bool, move: bool) -> None:
    view = selected_view(s)
    assert s.boxes is not None
    if len(args) != 2:
        raise ArgError(T("%(command)s needs a sequence set and a mailbox", command="MOVE" if move else "COPY"))
    if move and view.readonly:
        s.tagged(cmd.tag, "NO", T("[READ-ONLY] Mailbox was opened with EXAMINE"))
        return
    sequence = parse_sequence_set(as_text(args[0]))
    if not uid and view.bad_sequence(sequence):
        s.tagged(cmd.tag, "BAD", T("Message sequence number beyond the last message"))
        return
    dest_name = parse_mailbox(args[1], utf8_accepted=is_utf8(s))
    try:
        dest = await asyncio.to_thread(s.boxes.open, dest_name, target=True)
    except MailboxError:
        s.tagged(cmd.tag, "NO", TRYCREATE)
        return
    uids = view.uids_for(sequence, uid=uid)
    method = view.mailbox.move if move else view.mailbox.copy
    pairs = await asyncio.to_thread(method, uids, dest)
    if pairs:
        moved = (in_folder(view.mailbox.name, EXPUNGED),) if move else ()
        s.mailbox_changed(in_folder(dest.name, NEW), *moved)
        if s.ctx.feedback is not None and s.user is not None:  # into or out of Junk: spam or ham
            s.ctx.feedback.transferred(s.user, s.boxes, view.mailbox.name, dest, [p[1] for p in pairs])
    code = ""
    if pairs:
        src = E.format_sequence_set([p[0] for p in pairs]).decode()
        new = ",".join(str(p[1]) for p in pairs)
        code = f"COPYUID {dest.uidvalidity} {src} {new}"
    if move:
        if code:
            s.untagged("OK", with_code(code, T("Moved")))
        s.write(view.forget([p[0] for p in pairs], qresync="QRESYNC" in s.enabled))
        await refresh_selected(s, allow_expunge=True, fetch_new=False)
        s.tagged(cmd.tag, "OK", T("%(command)s completed", command="UID MOVE" if uid else "MOVE"))
    else:
        await refresh_selected(s, allow_expunge=uid, fetch_new=False)
        s.tagged(cmd.tag, "OK", with_code(code, T("%(command)s completed", command="UID COPY" if uid else "COPY")))


async def cmd_copy(s: ImapSession, cmd: RawCommand) -> None:
    await _copy(s, cmd, cmd.args, uid=False, move=False)


async def cmd_move(s: ImapSession, cmd: RawCommand) -> None:
    await _copy(s, cmd, cmd.args, uid=False, move=True)


async def _search_uids(s: ImapSession, key, view: SelectedMailbox) -> list[int]:  # type: ignore[no-untyped-def]
    """UIDs of the messages that match, ascending."""
    return [view.uids[i] for i in await _search_positions(s, key, view)]


async def _search_positions(s: ImapSession, key, view: SelectedMailbox) -> list[int]:  # type: ignore[no-untyped-def]
    """Where the matching messages are in view.uids (sequence number - 1), ascending: flags and
    numbers from the records, header fields from the folder's header cache, bodies from the
    files (proto/imap/search.py)."""
    saved = list(view.saved)
    records = [view.records[u] for u in view.uids]
    # \Recent is an IMAP4rev1 flag (RFC 3501 §2.3.2); IMAP4rev2 dropped it.
    recent = set() if "IMAP4REV2" in s.enabled else view.mailbox.recent
    # Flags, numbers, sizes, dates: from memory, no thread needed, unless the key is long
    # enough (a 64 KB line of sequence sets) to keep the loop from other sessions.
    if not S.needs_message(key) and len(records) * S.key_size(key) <= SEARCH_ON_LOOP_WORK:
        return S.search_positions(key, records, view.mailbox, recent=recent, saved=saved)
    return await MAILBOX.run(S.search_positions, key, records, view.mailbox, recent=recent, saved=saved,
                             mime_limits=_mime_limits(s))


async def _search(s: ImapSession, cmd: RawCommand, args: tuple, *, uid: bool) -> None:
    view = selected_view(s)
    key, options = parse_search(args, utf8_accepted=is_utf8(s))
    modseq_key = _uses_modseq(key)
    if modseq_key:
        enable_condstore(s)
    uids = view.uids  # as the search saw them: only this session's commands change them
    hits = await _search_positions(s, key, view)
    returns = options.get("return")
    # The UIDs only where they are shown or kept: a SEARCH UNSEEN of 10,000 messages shows numbers.
    found = [uids[i] for i in hits] if uid or returns is not None or modseq_key else []
    numbers = found if uid else [i + 1 for i in hits]
    code = ""
    if returns is not None:
        if "SAVE" in returns:
            view.saved = found
        if "UPDATE" in returns:
            code = _track(s, view, cmd.tag, key, options, uid=uid, criteria=None, found=found)
        shown = tuple(r for r in returns if r not in ("SAVE", "UPDATE"))
        if shown or not returns or "UPDATE" in returns:
            wanted = shown or (("UPDATE",) if "UPDATE" in returns else ("ALL",))
            top = _returned_modseq(view, found, wanted) if modseq_key else None
            s.write(S.esearch_response(cmd.tag, numbers, wanted, uid=uid, modseq=top,
                                       partial=options.get("partial")))  # type: ignore[arg-type]
    else:
        line = S.search_response(numbers)
        if modseq_key and found:  # RFC 7162 §3.1.5
            top = max(view.records[u].modseq for u in found)
            line = line.rstrip(b"\r\n") + b" (MODSEQ %d)\r\n" % top
        s.write(line)
    await refresh_selected(s, allow_expunge=uid)
    s.tagged(cmd.tag, "OK", with_code(code, T("%(command)s completed", command="UID SEARCH" if uid else "SEARCH")))


def _track(s: ImapSession, view: SelectedMailbox, tag: str, key, options: dict,  # type: ignore[no-untyped-def]
           *, uid: bool, criteria: list[tuple[str, bool]] | None, found: list[int],
           keys: dict | None = None) -> str:  # type: ignore[type-arg]
    """RETURN (UPDATE): keep the result up to date (imap/contexts.py); the response code
    of the tagged OK, "NOUPDATE tag" when it is not kept (RFC 5267 §4.2), else ""."""
    if "partial" in options or len(view.contexts) >= MAX_UPDATE_CONTEXTS:
        return "NOUPDATE " + E.string(tag).decode("utf-8", "replace")
    view.contexts.append(UpdateContext(tag, pin_numbers(key, view), uid=uid, criteria=criteria,
                                       members=found, keys=keys))
    return ""


async def cmd_cancelupdate(s: ImapSession, cmd: RawCommand) -> None:
    """CANCELUPDATE tag... (RFC 5267 §4.3): those contexts send no more updates."""
    view = selected_view(s)
    if not cmd.args:
        raise ArgError(T("CANCELUPDATE needs the tags of the searches"))
    tags = [as_text(a) for a in cmd.args]
    known = {c.tag for c in view.contexts}
    if any(t not in known for t in tags):
        s.tagged(cmd.tag, "BAD", T("Unknown search context"))
        s.count_bad()
        return
    view.contexts = [c for c in view.contexts if c.tag not in tags]
    if not view.contexts:
        view.dirty = NO_DIRTY
    s.tagged(cmd.tag, "OK", T("CANCELUPDATE completed"))


def _uses_modseq(key) -> bool:  # type: ignore[no-untyped-def]
    return key.name == "MODSEQ" or any(_uses_modseq(k) for k in key.keys)


def _returned_modseq(view: SelectedMailbox, found: list[int], shown: tuple[str, ...]) -> int | None:
    """ESEARCH's MODSEQ (RFC 7162 §3.1.5): the highest mod-sequence of the messages the answer
    names: every match for ALL or COUNT, else only the MIN and MAX ones. None: no match."""
    if not found:
        return None
    wanted = {r.upper() for r in shown}
    if wanted & {"ALL", "COUNT"}:
        named = found
    else:  # found is ascending: UIDs and sequence numbers run in the same order
        named = ([found[0]] if "MIN" in wanted else []) + ([found[-1]] if "MAX" in wanted else [])
    return max((view.records[u].modseq for u in named), default=None)


async def cmd_search(s: ImapSession, cmd: RawCommand) -> None:
    await _search(s, cmd, cmd.args, uid=False)


async def _sort_or_thread(s: ImapSession, cmd: RawCommand, args: tuple, *, uid: bool, thread: bool) -> None:
    view = selected_view(s)
    options: dict = {}  # type: ignore[type-arg]
    if not thread and args and isinstance(args[0], Atom) and args[0].value.upper() == "RETURN":
        if len(args) < 2:
            raise ArgError(T("RETURN needs options"))
        options = parse_return(args[1])  # ESORT (RFC 5267 §3), CONTEXT=SORT (§4)
        args = args[2:]
    if len(args) < 3:
        raise ArgError(T("SORT/THREAD need criteria, a charset and search keys"))
    if thread:
        algorithm = as_text(args[0]).upper()
        if algorithm not in ("REFERENCES", "ORDEREDSUBJECT"):
            raise ArgError(T("THREAD algorithm must be REFERENCES or ORDEREDSUBJECT"))
        criteria: list[tuple[str, bool]] = []
    else:
        if not isinstance(args[0], ArgList):
            raise ArgError(T("SORT criteria must be a list"))
        criteria, reverse = [], False
        for item in args[0].items:
            word = as_text(item).upper()
            if word == "REVERSE":
                reverse = True
                continue
            if word not in SORT_CRITERIA:
                raise ArgError(T("Unknown sort criterion %(criterion)s", criterion=word[:30]))
            criteria.append((word, reverse))
            reverse = False
        if reverse or not criteria:
            raise ArgError(T("Sort criteria missing"))
    key, _ = parse_search((Atom("CHARSET"), *args[1:]), utf8_accepted=is_utf8(s))
    if _uses_modseq(key):
        enable_condstore(s)
    found = await _search_uids(s, key, view)

    def headers() -> list[tuple[int, MessageMeta, bytes]]:
        out = []
        heads = view.mailbox.headers(found, SORT_FIELDS)  # from the header cache
        for u in found:
            header = heads.get(u)
            if header is None:
                continue  # gone meanwhile
            head = header.raw
            record = view.records[u]
            meta = MessageMeta(uid=u, seq=view.seq_of(u) or 0, flags=record.flags,
                               internal_date=record.internal_date, size=record.size, modseq=record.modseq)
            out.append((u, meta, head))
        return out

    number = (lambda m: m.uid) if uid else (lambda m: m.seq)

    def answer() -> bytes:  # in a thread too: sorting 10,000 headers takes a while
        items = headers()
        if thread:
            # The internal date stands in for a missing Date header (RFC 5256 §2.2).
            pairs = [(number(meta), head, meta.internal_date) for _, meta, head in items]
            tree = SORT.thread_references(pairs) if algorithm == "REFERENCES" else SORT.thread_orderedsubject(pairs)
            return b"* THREAD " + tree + b"\r\n"
        keyed = sorted(((sort_key_of(criteria, u, view.records[u], head), u, meta) for u, meta, head in items),
                       key=lambda item: item[:2])
        order[:] = [(u, number(meta), key) for key, u, meta in keyed]
        return b"* SORT" + b"".join(b" %d" % number(meta) for _, _, meta in keyed) + b"\r\n"

    order: list[tuple[int, int, tuple]] = []  # type: ignore[type-arg]  # SORT: (uid, number, key), sorted
    answer_line = await MAILBOX.run(answer)
    returns = options.get("return")
    code = ""
    if returns is None:
        s.write(answer_line)
    else:
        if "SAVE" in returns:
            view.saved = sorted(u for u, _, _ in order)
        if "UPDATE" in returns:
            code = _track(s, view, cmd.tag, key, options, uid=uid, criteria=criteria,
                          found=[u for u, _, _ in order], keys={u: k for u, _, k in order})
        shown = tuple(r for r in returns if r not in ("SAVE", "UPDATE"))
        if shown or not returns or "UPDATE" in returns:
            s.write(S.esearch_response(cmd.tag, [n for _, n, _ in order],
                                       shown or (("UPDATE",) if "UPDATE" in returns else ("ALL",)), uid=uid,
                                       partial=options.get("partial"), ordered=True))  # type: ignore[arg-type]
    await refresh_selected(s, allow_expunge=uid)
    command = f"{'UID ' if uid else ''}{'THREAD' if thread else 'SORT'}"
    s.tagged(cmd.tag, "OK", with_code(code, T("%(command)s completed", command=command)))


async def cmd_sort(s: ImapSession, cmd: RawCommand) -> None:
    await _sort_or_thread(s, cmd, cmd.args, uid=False, thread=False)


async def cmd_thread(s: ImapSession, cmd: RawCommand) -> None:
    await _sort_or_thread(s, cmd, cmd.args, uid=False, thread=True)


async def cmd_uid(s: ImapSession, cmd: RawCommand) -> None:
    if not cmd.args:
        raise ArgError(T("UID needs a command"))
    sub = as_text(cmd.args[0]).upper()
    rest = cmd.args[1:]
    if sub == "FETCH":
        await _fetch(s, cmd, rest, uid=True)
    elif sub == "STORE":
        await _store(s, cmd, rest, uid=True)
    elif sub in ("COPY", "MOVE"):
        await _copy(s, cmd, rest, uid=True, move=sub == "MOVE")
    elif sub == "SEARCH":
        await _search(s, cmd, rest, uid=True)
    elif sub == "SORT":
        await _sort_or_thread(s, cmd, rest, uid=True, thread=False)
    elif sub == "THREAD":
        await _sort_or_thread(s, cmd, rest, uid=True, thread=True)
    elif sub == "EXPUNGE":
        if len(rest) != 1:
            raise ArgError(T("UID EXPUNGE needs a uid set"))
        view = selected_view(s)
        await _expunge(s, cmd, view.uids_for(parse_sequence_set(as_text(rest[0])), uid=True))
    else:
        raise ArgError(T("UID %(command)s is not a UID command", command=sub[:20]))
