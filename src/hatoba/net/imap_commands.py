"""The IMAP commands: one handler per command, looked up in COMMANDS.

Each handler takes the session and the parsed command, calls the store in
threads, and writes untagged responses and the tagged result. Syntax errors
are ArgError (BAD); store refusals are MailboxError (NO).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import datetime

from hatoba.net.imap_selected import SelectedMailbox
from hatoba.net.imap_session import ImapSession
from hatoba.proto.imap import encode as E
from hatoba.proto.imap import fetch as F
from hatoba.proto.imap import search as S
from hatoba.proto.imap import sort as SORT
from hatoba.proto.imap.args import (
    ArgError,
    RawCommand,
    as_number,
    as_text,
    parse_datetime,
    parse_fetch_items,
    parse_flags,
    parse_list_args,
    parse_mailbox,
    parse_search,
    parse_sequence_set,
    parse_status_items,
    parse_store,
)
from hatoba.proto.imap.states import State, capabilities
from hatoba.proto.imap.types import ArgList, Atom, FetchItem, MessageMeta, String
from hatoba.store.mailboxes import DELIMITER, MailboxError

Handler = Callable[[ImapSession, RawCommand], Awaitable[None]]
FETCH_BATCH = 5000  # messages per trip to a thread when no message bytes are needed
FETCH_BATCH_WITH_BODIES = 256  # at most this many messages per trip to a thread ...
FETCH_BATCH_BYTES = 1 << 20  # ... and about this many response bytes: one large write each
PERMANENT_FLAGS = (b"\\Answered", b"\\Flagged", b"\\Deleted", b"\\Seen", b"\\Draft", b"\\*")
SYSTEM_FLAGS = b"(\\Answered \\Flagged \\Deleted \\Seen \\Draft)"
# The fields SORT (RFC 5256 §3, RFC 5957) and THREAD (RFC 5256 §2) read; all kept in the header cache.
SORT_FIELDS = frozenset({"cc", "date", "from", "in-reply-to", "message-id", "references", "subject", "to"})


def _utf8(session: ImapSession) -> bool:
    return "UTF8=ACCEPT" in session.enabled


def _mailbox_name(session: ImapSession, name: str) -> bytes:
    return E.astring(name if _utf8(session) else _mutf7(name))


def _mutf7(name: str) -> str:
    from hatoba.proto.imap import mutf7

    return mutf7.encode(name)


async def _refresh(session: ImapSession, *, allow_expunge: bool = True) -> None:
    if session.selected is not None:
        qresync = "QRESYNC" in session.enabled
        session.write(await asyncio.to_thread(session.selected.refresh, allow_expunge=allow_expunge,
                                              qresync=qresync))


# -- any state ------------------------------------------------------------------------------


async def cmd_capability(s: ImapSession, cmd: RawCommand) -> None:
    caps = capabilities(s.facts, s.state, compress_available=s._compress is None)
    s.write(f"* CAPABILITY {caps}\r\n".encode())
    s.tagged(cmd.tag, "OK", "CAPABILITY completed")


async def cmd_noop(s: ImapSession, cmd: RawCommand) -> None:
    await _refresh(s)
    s.tagged(cmd.tag, "OK", f"{cmd.name} completed")


async def cmd_logout(s: ImapSession, cmd: RawCommand) -> None:
    s.write(b"* BYE hatoba logging out\r\n")
    s.tagged(cmd.tag, "OK", "LOGOUT completed")
    s.state = State.LOGOUT
    s.closed = True


async def cmd_id(s: ImapSession, cmd: RawCommand) -> None:
    s.write(b'* ID ("name" "hatoba")\r\n')  # RFC 2971; no version: less to fingerprint
    s.tagged(cmd.tag, "OK", "ID completed")


# -- not authenticated ------------------------------------------------------------------------


async def cmd_starttls(s: ImapSession, cmd: RawCommand) -> None:
    if not s.facts.tls_available:
        s.tagged(cmd.tag, "BAD", "TLS is already active" if s.facts.tls_active else "STARTTLS is not available")
        return
    await s.start_tls(cmd.tag)


async def cmd_login(s: ImapSession, cmd: RawCommand) -> None:
    if len(cmd.args) != 2:
        raise ArgError("LOGIN needs a user name and a password")
    if not s.facts.may_login:
        s.tagged(cmd.tag, "NO", "[PRIVACYREQUIRED] Use STARTTLS first, or port 993: no passwords in clear")
        return
    await s.login(cmd.tag, as_text(cmd.args[0]), as_text(cmd.args[1]), "LOGIN")


async def cmd_authenticate(s: ImapSession, cmd: RawCommand) -> None:
    await s.authenticate(cmd)


# -- authenticated ----------------------------------------------------------------------------


async def cmd_enable(s: ImapSession, cmd: RawCommand) -> None:
    known = {"CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "IMAP4REV2"}
    enabled = []
    for arg in cmd.args:
        name = as_text(arg).upper()
        if name in known and name not in s.enabled:
            s.enabled.add(name)
            enabled.append("IMAP4rev2" if name == "IMAP4REV2" else name)
            if name == "QRESYNC":
                s.enabled.add("CONDSTORE")
    if s.selected is not None and "CONDSTORE" in s.enabled:
        s.selected.condstore = True
    s.write(("* ENABLED " + " ".join(enabled)).rstrip().encode() + b"\r\n")
    s.tagged(cmd.tag, "OK", "ENABLE completed")


async def _select(s: ImapSession, cmd: RawCommand, readonly: bool) -> None:
    if not cmd.args:
        raise ArgError(f"{cmd.name} needs a mailbox name")
    name = parse_mailbox(cmd.args[0], utf8_accepted=_utf8(s))
    params = cmd.args[1].items if len(cmd.args) > 1 and isinstance(cmd.args[1], ArgList) else ()
    condstore = "CONDSTORE" in s.enabled
    qresync: tuple | None = None
    i = 0
    while i < len(params):
        word = as_text(params[i]).upper()
        if word == "CONDSTORE":
            condstore = True
            s.enabled.add("CONDSTORE")
        elif word == "QRESYNC" and i + 1 < len(params) and isinstance(params[i + 1], ArgList):
            if "QRESYNC" not in s.enabled:
                raise ArgError("QRESYNC must be enabled first (ENABLE QRESYNC)")
            q = params[i + 1].items
            qresync = (as_number(q[0]), as_number(q[1]) if len(q) > 1 else 0,
                       parse_sequence_set(as_text(q[2])) if len(q) > 2 else None)
            i += 1
        i += 1
    if s.selected is not None:
        s.selected = None
        s.state = State.AUTHENTICATED
        s.write(b"* OK [CLOSED] Previous mailbox closed\r\n")
    assert s.boxes is not None
    mailbox = await asyncio.to_thread(s.boxes.open, name, readonly=readonly)
    view = await asyncio.to_thread(SelectedMailbox.open, mailbox, readonly=readonly, condstore=condstore)
    s.selected = view
    s.state = State.SELECTED
    keywords = [k.encode() for k in mailbox.keywords]
    s.write(b"* FLAGS " + SYSTEM_FLAGS[:-1] + b"".join(b" " + k for k in keywords) + b")\r\n")
    perm = b"()" if readonly else b"(" + b" ".join([*PERMANENT_FLAGS[:-1], *keywords, PERMANENT_FLAGS[-1]]) + b")"
    s.write(b"* OK [PERMANENTFLAGS " + perm + b"] Flags you can change\r\n")
    s.write(b"* %d EXISTS\r\n" % view.exists)
    if "IMAP4REV2" not in s.enabled:
        s.write(b"* %d RECENT\r\n" % len(mailbox.recent))
    s.write(b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % mailbox.uidvalidity)
    s.write(b"* OK [UIDNEXT %d] Predicted next UID\r\n" % mailbox.uidnext)
    if condstore or qresync:
        s.write(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % max(mailbox.highestmodseq, 1))
    if "IMAP4REV2" in s.enabled:  # RFC 9051 §6.3.2: the canonical name; IMAP4rev1 clients do not expect it
        s.write(b"* LIST () \".\" " + _mailbox_name(s, name) + b"\r\n")
    if qresync is not None and qresync[0] == mailbox.uidvalidity:
        known_modseq = qresync[1]
        vanished = await asyncio.to_thread(mailbox.vanished_since, known_modseq)
        if vanished:
            s.write(b"* VANISHED (EARLIER) " + E.format_sequence_set(sorted(vanished)) + b"\r\n")
        changed = await asyncio.to_thread(mailbox.changed_since, known_modseq)
        for record in changed:
            if record.uid in view.records:
                s.write(view.flags_line(record))
    s.tagged(cmd.tag, "OK", "[READ-ONLY] EXAMINE completed" if readonly else "[READ-WRITE] SELECT completed")


async def cmd_select(s: ImapSession, cmd: RawCommand) -> None:
    await _select(s, cmd, readonly=False)


async def cmd_examine(s: ImapSession, cmd: RawCommand) -> None:
    await _select(s, cmd, readonly=True)


def _one_mailbox(s: ImapSession, cmd: RawCommand) -> str:
    if len(cmd.args) != 1:
        raise ArgError(f"{cmd.name} needs one mailbox name")
    return parse_mailbox(cmd.args[0], utf8_accepted=_utf8(s))


async def cmd_create(s: ImapSession, cmd: RawCommand) -> None:
    assert s.boxes is not None
    name = parse_mailbox(cmd.args[0], utf8_accepted=_utf8(s)) if cmd.args else ""
    if not name:
        raise ArgError("CREATE needs a mailbox name")
    await asyncio.to_thread(s.boxes.create, name.rstrip(DELIMITER))
    s.mailbox_changed()
    s.tagged(cmd.tag, "OK", "CREATE completed")


async def cmd_delete(s: ImapSession, cmd: RawCommand) -> None:
    assert s.boxes is not None
    await asyncio.to_thread(s.boxes.delete, _one_mailbox(s, cmd))
    s.mailbox_changed()
    s.tagged(cmd.tag, "OK", "DELETE completed")


async def cmd_rename(s: ImapSession, cmd: RawCommand) -> None:
    assert s.boxes is not None
    if len(cmd.args) != 2:
        raise ArgError("RENAME needs the old and the new name")
    old = parse_mailbox(cmd.args[0], utf8_accepted=_utf8(s))
    new = parse_mailbox(cmd.args[1], utf8_accepted=_utf8(s))
    await asyncio.to_thread(s.boxes.rename, old, new)
    s.mailbox_changed()
    s.tagged(cmd.tag, "OK", "RENAME completed")


async def cmd_subscribe(s: ImapSession, cmd: RawCommand) -> None:
    assert s.boxes is not None
    await asyncio.to_thread(s.boxes.subscribe, _one_mailbox(s, cmd))
    s.tagged(cmd.tag, "OK", "SUBSCRIBE completed")


async def cmd_unsubscribe(s: ImapSession, cmd: RawCommand) -> None:
    assert s.boxes is not None
    await asyncio.to_thread(s.boxes.unsubscribe, _one_mailbox(s, cmd))
    s.tagged(cmd.tag, "OK", "UNSUBSCRIBE completed")


def _pattern_matcher(patterns: list[str]) -> Callable[[str], bool]:
    """LIST wildcards: "*" matches anything, "%" anything but the delimiter (RFC 9051 §6.3.9).

    INBOX is case-insensitive (the store always spells it "INBOX"); the rest of a name is not.
    """
    regexes = []
    for pattern in patterns:
        if pattern[:5].upper() == "INBOX" and pattern[5:6] in ("", DELIMITER, "*", "%"):
            pattern = "INBOX" + pattern[5:]
        regexes.append(re.compile("".join(
            ".*" if c == "*" else f"[^{re.escape(DELIMITER)}]*" if c == "%" else re.escape(c) for c in pattern
        )))
    return lambda name: any(r.fullmatch(name) for r in regexes)


async def _list(s: ImapSession, cmd: RawCommand, *, lsub: bool) -> None:
    assert s.boxes is not None
    largs = parse_list_args(cmd.args)
    reference = largs.reference
    patterns = largs.patterns
    if len(patterns) == 1 and patterns[0] == "" and not lsub:
        # RFC 9051 §6.3.9: the delimiter and the root of the reference.
        s.write(b'* LIST (\\Noselect) "." ""\r\n')
        s.tagged(cmd.tag, "OK", "LIST completed")
        return
    infos = await asyncio.to_thread(s.boxes.list)
    selection = {o.upper() for o in largs.selection}
    returns = {o.upper() for o in largs.return_options}
    subscribed_only = lsub or "SUBSCRIBED" in selection
    special_only = "SPECIAL-USE" in selection
    status_items = largs.status_items
    verb = b"LSUB" if lsub else b"LIST"
    matches = _pattern_matcher([reference + p for p in patterns])
    if subscribed_only:
        await _list_subscribed(s, infos, matches, verb, lsub=lsub, special_only=special_only)
        s.tagged(cmd.tag, "OK", f"{verb.decode()} completed")
        return
    for info in infos:
        if not matches(info.name):
            continue
        if subscribed_only and not info.subscribed:
            continue
        if special_only and not info.special_use:
            continue
        attrs = []
        if not info.selectable:
            attrs.append("\\Noselect")
        attrs.append("\\HasChildren" if info.has_children else "\\HasNoChildren")
        if info.subscribed and ("SUBSCRIBED" in returns or "SUBSCRIBED" in selection):
            attrs.append("\\Subscribed")
        if info.special_use and (not lsub):
            attrs.append(info.special_use)
        s.write(verb + b" (" + " ".join(attrs).encode() + b') "." ' + _mailbox_name(s, info.name) + b"\r\n")
        s.out[-1] = b"* " + s.out[-1]
        if status_items and info.selectable:
            await _status_line(s, info.name, status_items)
    s.tagged(cmd.tag, "OK", f"{verb.decode()} completed")


async def _list_subscribed(s: ImapSession, infos, matches: Callable[[str], bool], verb: bytes, *,  # type: ignore[no-untyped-def]
                           lsub: bool, special_only: bool) -> None:
    """LSUB and LIST (SUBSCRIBED): subscribed names, existing or not (RFC 3501 §6.3.9, RFC 5258 §3.1)."""
    assert s.boxes is not None
    subscribed = await asyncio.to_thread(s.boxes.subscriptions)
    by_name = {info.name: info for info in infos}
    shown: set[str] = set()
    for name in subscribed:
        info = by_name.get(name)
        if special_only and (info is None or not info.special_use):
            continue
        if matches(name):
            attrs = []
            if info is None:
                attrs.append("\\NonExistent" if not lsub else "\\Noselect")
            elif not info.selectable:
                attrs.append("\\Noselect")
            if not lsub:
                attrs.append("\\Subscribed")
                if info is not None and info.special_use:
                    attrs.append(info.special_use)
            s.write(b"* " + verb + b" (" + " ".join(attrs).encode() + b') "." ' + _mailbox_name(s, name) + b"\r\n")
            shown.add(name)
        elif lsub:
            # "%" stops at the delimiter: an unsubscribed parent of a subscribed
            # name matches as \Noselect (RFC 3501 §6.3.9).
            parts = name.split(DELIMITER)
            for depth in range(1, len(parts)):
                parent = DELIMITER.join(parts[:depth])
                if parent not in shown and parent not in subscribed and matches(parent):
                    s.write(b'* LSUB (\\Noselect) "." ' + _mailbox_name(s, parent) + b"\r\n")
                    shown.add(parent)


async def cmd_list(s: ImapSession, cmd: RawCommand) -> None:
    await _list(s, cmd, lsub=False)


async def cmd_lsub(s: ImapSession, cmd: RawCommand) -> None:
    await _list(s, cmd, lsub=True)


async def cmd_namespace(s: ImapSession, cmd: RawCommand) -> None:
    s.write(b'* NAMESPACE (("" ".")) NIL NIL\r\n')
    s.tagged(cmd.tag, "OK", "NAMESPACE completed")


async def _status_line(s: ImapSession, name: str, items: tuple[str, ...]) -> None:
    assert s.boxes is not None
    status = await asyncio.to_thread(s.boxes.status, name)
    values = {
        "MESSAGES": status.messages, "RECENT": status.recent, "UIDNEXT": status.uidnext,
        "UIDVALIDITY": status.uidvalidity, "UNSEEN": status.unseen, "DELETED": status.deleted,
        "SIZE": status.size, "HIGHESTMODSEQ": status.highestmodseq, "APPENDLIMIT": s.facts.max_literal,
    }
    parts = " ".join(f"{item} {values[item]}" for item in items if item in values)
    s.write(b"* STATUS " + _mailbox_name(s, name) + f" ({parts})\r\n".encode())


async def cmd_status(s: ImapSession, cmd: RawCommand) -> None:
    if len(cmd.args) != 2:
        raise ArgError("STATUS needs a mailbox name and a list of items")
    name = parse_mailbox(cmd.args[0], utf8_accepted=_utf8(s))
    await _status_line(s, name, parse_status_items(cmd.args[1]))
    s.tagged(cmd.tag, "OK", "STATUS completed")


async def cmd_append(s: ImapSession, cmd: RawCommand) -> None:
    assert s.boxes is not None
    if len(cmd.args) < 2:
        raise ArgError("APPEND needs a mailbox name and a message")
    name = parse_mailbox(cmd.args[0], utf8_accepted=_utf8(s))
    rest = list(cmd.args[1:])
    flags: tuple[str, ...] = ()
    when: datetime | None = None
    if rest and isinstance(rest[0], ArgList):
        flags = parse_flags(rest.pop(0))
    if rest and isinstance(rest[0], String) and not rest[0].literal and not rest[0].literal8:
        when = parse_datetime(rest.pop(0).value.decode("ascii", "replace"))
    if rest and isinstance(rest[0], Atom) and rest[0].value.upper() == "UTF8" and len(rest) > 1:
        inner = rest[1]  # RFC 6855: UTF8 (literal8)
        rest = [inner.items[0]] if isinstance(inner, ArgList) and inner.items else rest[1:]
    if len(rest) != 1 or not isinstance(rest[0], String):
        raise ArgError("APPEND: expected the message as a literal")
    data = rest[0].value
    if "\\Recent" in flags:
        raise ArgError("\\Recent cannot be set")
    try:
        mailbox = await asyncio.to_thread(s.boxes.open, name)
    except MailboxError:
        s.tagged(cmd.tag, "NO", "[TRYCREATE] No such mailbox; create it first")
        return
    uid = await asyncio.to_thread(mailbox.append, data, flags, when)
    s.mailbox_changed()
    await _refresh(s)
    s.tagged(cmd.tag, "OK", f"[APPENDUID {mailbox.uidvalidity} {uid}] APPEND completed")


async def cmd_idle(s: ImapSession, cmd: RawCommand) -> None:
    await s.idle(cmd.tag, lambda: _refresh(s))


async def cmd_getquotaroot(s: ImapSession, cmd: RawCommand) -> None:
    assert s.boxes is not None
    name = _one_mailbox(s, cmd)
    used, limit = await asyncio.to_thread(s.boxes.quota)
    if not limit:  # RFC 9208 §4.3: no quota root when nothing limits the mailbox
        s.write(b"* QUOTAROOT " + _mailbox_name(s, name) + b"\r\n")
    else:
        s.write(b"* QUOTAROOT " + _mailbox_name(s, name) + b' ""\r\n')
        s.write(b'* QUOTA "" (STORAGE %d %d)\r\n' % ((used + 1023) // 1024, limit // 1024))
    s.tagged(cmd.tag, "OK", "GETQUOTAROOT completed")


async def cmd_getquota(s: ImapSession, cmd: RawCommand) -> None:
    assert s.boxes is not None
    used, limit = await asyncio.to_thread(s.boxes.quota)
    if not limit:
        raise MailboxError("[NONEXISTENT] No quota is set for you")
    s.write(b'* QUOTA "" (STORAGE %d %d)\r\n' % ((used + 1023) // 1024, limit // 1024))
    s.tagged(cmd.tag, "OK", "GETQUOTA completed")


async def cmd_setquota(s: ImapSession, cmd: RawCommand) -> None:
    s.tagged(cmd.tag, "NO", "[NOPERM] Quotas are set by the operator")


async def cmd_compress(s: ImapSession, cmd: RawCommand) -> None:
    if not cmd.args or as_text(cmd.args[0]).upper() != "DEFLATE":
        raise ArgError("COMPRESS DEFLATE is the only kind")
    if s._compress is not None:
        s.tagged(cmd.tag, "NO", "[COMPRESSIONACTIVE] Already compressing")
        return
    s.tagged(cmd.tag, "OK", "DEFLATE active")
    await s.flush()
    s.start_compression()


# -- selected ---------------------------------------------------------------------------------


def _selected(s: ImapSession) -> SelectedMailbox:
    assert s.selected is not None
    return s.selected


async def cmd_close(s: ImapSession, cmd: RawCommand) -> None:
    view = _selected(s)
    if not view.readonly:
        expunged = await asyncio.to_thread(view.mailbox.expunge, None)
        if expunged:
            s.mailbox_changed()
    s.selected = None
    s.state = State.AUTHENTICATED
    s.tagged(cmd.tag, "OK", "CLOSE completed")


async def cmd_unselect(s: ImapSession, cmd: RawCommand) -> None:
    s.selected = None
    s.state = State.AUTHENTICATED
    s.tagged(cmd.tag, "OK", "UNSELECT completed")


async def _expunge(s: ImapSession, cmd: RawCommand, uids: list[int] | None) -> None:
    view = _selected(s)
    if view.readonly:
        s.tagged(cmd.tag, "NO", "[READ-ONLY] Mailbox was opened with EXAMINE")
        return
    expunged = await asyncio.to_thread(view.mailbox.expunge, uids)
    if expunged:
        s.write(view.forget(expunged, qresync="QRESYNC" in s.enabled))
        s.mailbox_changed()
    await _refresh(s)
    s.tagged(cmd.tag, "OK", "EXPUNGE completed")


async def cmd_expunge(s: ImapSession, cmd: RawCommand) -> None:
    await _expunge(s, cmd, None)


async def cmd_check(s: ImapSession, cmd: RawCommand) -> None:
    await cmd_noop(s, cmd)


def _largest(view: SelectedMailbox) -> tuple[int, int]:
    return view.exists, (view.uids[-1] if view.uids else 0)


async def _fetch(s: ImapSession, cmd: RawCommand, args: tuple, *, uid: bool) -> None:
    view = _selected(s)
    if len(args) < 2:
        raise ArgError("FETCH needs a sequence set and data items")
    sequence = parse_sequence_set(as_text(args[0]))
    if not uid and view.bad_sequence(sequence):
        s.tagged(cmd.tag, "BAD", "Message sequence number beyond the last message")
        s.count_bad()
        return
    items, modifiers = parse_fetch_items(args[1:])
    if uid and not any(i.name == "UID" for i in items):
        items = [*items, FetchItem("UID")]
    changedsince = modifiers.get("CHANGEDSINCE")
    if changedsince is not None or any(i.name == "MODSEQ" for i in items):
        view.condstore = True
        if not any(i.name == "MODSEQ" for i in items):
            items = [*items, FetchItem("MODSEQ")]
    uids = view.uids_for(sequence, uid=uid)
    vanished = modifiers.get("VANISHED")
    if uid and vanished and changedsince is not None:
        gone = await asyncio.to_thread(view.mailbox.vanished_since, int(changedsince))
        gone = [u for u in gone if sequence.contains(u, _largest(view)[1] or u)]
        if gone:
            s.write(b"* VANISHED (EARLIER) " + E.format_sequence_set(sorted(gone)) + b"\r\n")
    needs = F.needs_message(items)
    seen_uids: list[int] = []
    # \Recent is an IMAP4rev1 flag (RFC 3501 §2.3.2); IMAP4rev2 dropped it.
    recent = set() if "IMAP4REV2" in s.enabled else view.mailbox.recent

    records = view.records
    since = int(changedsince) if changedsince is not None else None

    def meta_work(start: int) -> tuple[list[bytes], int]:
        """FLAGS, UID, ...: answered from the records alone, one format per line."""
        end = start + FETCH_BATCH
        positions = view.positions()
        chosen = [(positions.get(u, 0), records[u]) for u in uids[start:end] if u in records]
        if since is not None:
            chosen = [pair for pair in chosen if pair[1].modseq > since]
        return F.meta_lines(items, chosen, recent), end

    # ENVELOPE reads only fields the folder's header cache keeps: no message file is opened.
    from_cache = all(item.name.upper() in F.META_ITEMS or item.name.upper() == "ENVELOPE" for item in items)

    def body_work(start: int) -> tuple[list[bytes], int]:
        out = []
        size = 0
        i = start
        if from_cache:
            heads = view.mailbox.headers(uids[start : start + FETCH_BATCH_WITH_BODIES])
        while i < len(uids) and i - start < FETCH_BATCH_WITH_BODIES and size < FETCH_BATCH_BYTES:
            u = uids[i]
            i += 1
            record = records.get(u)
            if record is None:
                continue
            if since is not None and record.modseq <= since:
                continue
            if from_cache:
                header = heads.get(u)
                if header is None:
                    continue  # expunged meanwhile; reported at the next chance
                message = header.raw + b"\n"  # the cached fields, then the empty line
            else:
                try:
                    message = view.mailbox.read(u)
                except (FileNotFoundError, MailboxError):
                    continue  # expunged meanwhile; reported at the next chance
            flags = record.flags | {"\\Recent"} if u in recent else record.flags
            meta = MessageMeta(uid=u, seq=view.seq_of(u) or 0, flags=flags,
                               internal_date=record.internal_date, size=record.size, modseq=record.modseq)
            result = F.fetch(items, meta, message)
            if result.sets_seen and "\\Seen" not in record.flags and not view.readonly:
                seen_uids.append(u)
            out.append(b"* %d FETCH %s\r\n" % (meta.seq, result.data))
            size += len(result.data)
        return out, i

    # Bodies go out in batches: a FETCH 1:* BODY[] never holds the mailbox in memory.
    work = body_work if needs else meta_work
    start = 0
    while start < len(uids):
        try:
            lines, start = await asyncio.to_thread(work, start)
        except F.FetchError as exc:  # e.g. BINARY of an unknown encoding: NO [UNKNOWN-CTE]
            s.tagged(cmd.tag, "NO", str(exc))
            return
        s.write(b"".join(lines))
        await s.flush()
    if seen_uids:
        changed, _ = await asyncio.to_thread(view.mailbox.store_flags, seen_uids, "+", ("\\Seen",))
        for record in changed:
            view.records[record.uid] = record
            s.write(view.flags_line(record))
        s.mailbox_changed()
    await _refresh(s, allow_expunge=uid)
    s.tagged(cmd.tag, "OK", f"{'UID ' if uid else ''}FETCH completed")


async def cmd_fetch(s: ImapSession, cmd: RawCommand) -> None:
    await _fetch(s, cmd, cmd.args, uid=False)


async def _store(s: ImapSession, cmd: RawCommand, args: tuple, *, uid: bool) -> None:
    view = _selected(s)
    if view.readonly:
        s.tagged(cmd.tag, "NO", "[READ-ONLY] Mailbox was opened with EXAMINE")
        return
    if len(args) < 3:
        raise ArgError("STORE needs a sequence set, an action and flags")
    sequence = parse_sequence_set(as_text(args[0]))
    if not uid and view.bad_sequence(sequence):
        s.tagged(cmd.tag, "BAD", "Message sequence number beyond the last message")
        return
    mode, silent, flags, unchangedsince = parse_store(args[1:])
    if "\\Recent" in flags:
        raise ArgError("\\Recent cannot be stored")
    uids = view.uids_for(sequence, uid=uid)
    changed, failed = await asyncio.to_thread(view.mailbox.store_flags, uids, mode, flags,
                                              unchangedsince=unchangedsince)
    if unchangedsince is not None:
        view.condstore = True
    for record in changed:
        view.records[record.uid] = record
        if not silent or unchangedsince is not None:
            s.write(view.flags_line(record, with_uid=uid))
    if changed:
        s.mailbox_changed()
    await _refresh(s, allow_expunge=uid)
    if failed:
        numbers = sorted(failed) if uid else sorted(view.seq_of(u) or 0 for u in failed)
        s.tagged(cmd.tag, "OK", f"[MODIFIED {E.format_sequence_set(numbers).decode()}] Conditional STORE failed")
        return
    s.tagged(cmd.tag, "OK", f"{'UID ' if uid else ''}STORE completed")


async def cmd_store(s: ImapSession, cmd: RawCommand) -> None:
    await _store(s, cmd, cmd.args, uid=False)


async def _copy(s: ImapSession, cmd: RawCommand, args: tuple, *, uid: bool, move: bool) -> None:
    view = _selected(s)
    assert s.boxes is not None
    if len(args) != 2:
        raise ArgError(f"{'MOVE' if move else 'COPY'} needs a sequence set and a mailbox")
    if move and view.readonly:
        s.tagged(cmd.tag, "NO", "[READ-ONLY] Mailbox was opened with EXAMINE")
        return
    sequence = parse_sequence_set(as_text(args[0]))
    if not uid and view.bad_sequence(sequence):
        s.tagged(cmd.tag, "BAD", "Message sequence number beyond the last message")
        return
    dest_name = parse_mailbox(args[1], utf8_accepted=_utf8(s))
    try:
        dest = await asyncio.to_thread(s.boxes.open, dest_name)
    except MailboxError:
        s.tagged(cmd.tag, "NO", "[TRYCREATE] No such mailbox; create it first")
        return
    uids = view.uids_for(sequence, uid=uid)
    method = view.mailbox.move if move else view.mailbox.copy
    pairs = await asyncio.to_thread(method, uids, dest)
    s.mailbox_changed()
    code = ""
    if pairs:
        src = E.format_sequence_set([p[0] for p in pairs]).decode()
        new = ",".join(str(p[1]) for p in pairs)
        code = f"[COPYUID {dest.uidvalidity} {src} {new}] "
    if move:
        if code:
            s.write(f"* OK {code}Moved\r\n".encode())
        s.write(view.forget([p[0] for p in pairs], qresync="QRESYNC" in s.enabled))
        await _refresh(s, allow_expunge=True)
        s.tagged(cmd.tag, "OK", f"{'UID ' if uid else ''}MOVE completed")
    else:
        await _refresh(s, allow_expunge=uid)
        s.tagged(cmd.tag, "OK", f"{code}{'UID ' if uid else ''}COPY completed")


async def cmd_copy(s: ImapSession, cmd: RawCommand) -> None:
    await _copy(s, cmd, cmd.args, uid=False, move=False)


async def cmd_move(s: ImapSession, cmd: RawCommand) -> None:
    await _copy(s, cmd, cmd.args, uid=False, move=True)


async def _search_uids(s: ImapSession, key, view: SelectedMailbox) -> list[int]:  # type: ignore[no-untyped-def]
    """UIDs of the messages that match, ascending: flags and numbers from the records,
    header fields from the folder's header cache, bodies from the files (proto/imap/search.py)."""
    saved = list(view.saved)
    records = [view.records[u] for u in view.uids]
    # \Recent is an IMAP4rev1 flag (RFC 3501 §2.3.2); IMAP4rev2 dropped it.
    recent = set() if "IMAP4REV2" in s.enabled else view.mailbox.recent
    return await asyncio.to_thread(S.search, key, records, view.mailbox, recent=recent, saved=saved)


async def _search(s: ImapSession, cmd: RawCommand, args: tuple, *, uid: bool) -> None:
    view = _selected(s)
    key, options = parse_search(args, utf8_accepted=_utf8(s))
    found = await _search_uids(s, key, view)
    returns = options.get("return")
    positions = view.positions()
    numbers = found if uid else [positions.get(u, 0) for u in found]
    if returns is not None:
        if "SAVE" in returns:
            view.saved = found
        shown = tuple(r for r in returns if r != "SAVE")
        if shown or not returns:
            s.write(S.esearch_response(cmd.tag, numbers, shown or ("ALL",), uid=uid))
    else:
        line = S.search_response(numbers)
        if view.condstore and _uses_modseq(key) and found:  # RFC 7162 §3.1.5
            top = max(view.records[u].modseq for u in found)
            line = line.rstrip(b"\r\n") + b" (MODSEQ %d)\r\n" % top
        s.write(line)
    await _refresh(s, allow_expunge=uid)
    s.tagged(cmd.tag, "OK", f"{'UID ' if uid else ''}SEARCH completed")


def _uses_modseq(key) -> bool:  # type: ignore[no-untyped-def]
    return key.name == "MODSEQ" or any(_uses_modseq(k) for k in key.keys)


async def cmd_search(s: ImapSession, cmd: RawCommand) -> None:
    await _search(s, cmd, cmd.args, uid=False)


async def _sort_or_thread(s: ImapSession, cmd: RawCommand, args: tuple, *, uid: bool, thread: bool) -> None:
    view = _selected(s)
    if len(args) < 3:
        raise ArgError("SORT/THREAD need criteria, a charset and search keys")
    if thread:
        algorithm = as_text(args[0]).upper()
        if algorithm not in ("REFERENCES", "ORDEREDSUBJECT"):
            raise ArgError("THREAD algorithm must be REFERENCES or ORDEREDSUBJECT")
        criteria: list[tuple[str, bool]] = []
    else:
        if not isinstance(args[0], ArgList):
            raise ArgError("SORT criteria must be a list")
        criteria, reverse = [], False
        for item in args[0].items:
            word = as_text(item).upper()
            if word == "REVERSE":
                reverse = True
                continue
            criteria.append((word, reverse))
            reverse = False
    key, _ = parse_search((Atom("CHARSET"), *args[1:]), utf8_accepted=_utf8(s))
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
        items.sort(key=lambda item: SORT.sort_keys(criteria, item[1], item[2]))
        return b"* SORT" + b"".join(b" %d" % number(meta) for _, meta, _ in items) + b"\r\n"

    s.write(await asyncio.to_thread(answer))
    await _refresh(s, allow_expunge=uid)
    s.tagged(cmd.tag, "OK", f"{'UID ' if uid else ''}{'THREAD' if thread else 'SORT'} completed")


async def cmd_sort(s: ImapSession, cmd: RawCommand) -> None:
    await _sort_or_thread(s, cmd, cmd.args, uid=False, thread=False)


async def cmd_thread(s: ImapSession, cmd: RawCommand) -> None:
    await _sort_or_thread(s, cmd, cmd.args, uid=False, thread=True)


async def cmd_uid(s: ImapSession, cmd: RawCommand) -> None:
    if not cmd.args:
        raise ArgError("UID needs a command")
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
            raise ArgError("UID EXPUNGE needs a uid set")
        view = _selected(s)
        await _expunge(s, cmd, view.uids_for(parse_sequence_set(as_text(rest[0])), uid=True))
    else:
        raise ArgError(f"UID {sub[:20]} is not a UID command")


COMMANDS: dict[str, Handler] = {
    "CAPABILITY": cmd_capability,
    "NOOP": cmd_noop,
    "LOGOUT": cmd_logout,
    "ID": cmd_id,
    "STARTTLS": cmd_starttls,
    "LOGIN": cmd_login,
    "AUTHENTICATE": cmd_authenticate,
    "ENABLE": cmd_enable,
    "SELECT": cmd_select,
    "EXAMINE": cmd_examine,
    "CREATE": cmd_create,
    "DELETE": cmd_delete,
    "RENAME": cmd_rename,
    "SUBSCRIBE": cmd_subscribe,
    "UNSUBSCRIBE": cmd_unsubscribe,
    "LIST": cmd_list,
    "LSUB": cmd_lsub,
    "NAMESPACE": cmd_namespace,
    "STATUS": cmd_status,
    "APPEND": cmd_append,
    "IDLE": cmd_idle,
    "GETQUOTA": cmd_getquota,
    "GETQUOTAROOT": cmd_getquotaroot,
    "SETQUOTA": cmd_setquota,
    "COMPRESS": cmd_compress,
    "CHECK": cmd_check,
    "CLOSE": cmd_close,
    "UNSELECT": cmd_unselect,
    "EXPUNGE": cmd_expunge,
    "SEARCH": cmd_search,
    "FETCH": cmd_fetch,
    "STORE": cmd_store,
    "COPY": cmd_copy,
    "MOVE": cmd_move,
    "UID": cmd_uid,
    "SORT": cmd_sort,
    "THREAD": cmd_thread,
}
