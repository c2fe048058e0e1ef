"""IMAP commands on mailboxes as a whole: SELECT, EXAMINE, CREATE, DELETE,
RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, NAMESPACE, STATUS, APPEND and the
QUOTA commands (RFC 9051 §6.3, RFC 5258, RFC 6154, RFC 5819, RFC 7162 §3.2.5,
RFC 9208).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from hatoba.i18n import T
from hatoba.imap.common import is_utf8, mailbox_name, one_mailbox, refresh_selected, status_response
from hatoba.imap.folder_work import in_folder_turn, in_turn_of
from hatoba.imap.replies import TRYCREATE
from hatoba.imap.selected import PERMANENT_FLAGS, SelectedMailbox
from hatoba.proto.imap import encode as E
from hatoba.proto.imap import mutf7
from hatoba.proto.imap.appendargs import AppendMessage, CatenateUrl, encode_binary_parts, parse_append
from hatoba.proto.imap.args import parse_list_args, parse_mailbox, parse_status_items
from hatoba.proto.imap.fetch import to_crlf
from hatoba.proto.imap.mime import parse_message
from hatoba.proto.imap.sections import section_data, top_section
from hatoba.proto.imap.listmatch import list_matcher
from hatoba.proto.imap.reader import RawCommand
from hatoba.proto.imap.scalars import ArgError, ArgRefused, as_number, as_text, parse_sequence_set
from hatoba.proto.imap.states import State
from hatoba.proto.imap.types import ArgList
from hatoba.net.workers import MAILBOX
from hatoba.store.changes import EXPUNGED, NEW, NameChanged, SubscriptionChanged, in_folder
from hatoba.store.errors import MailboxError
from hatoba.store.folder_tree import DELIMITER, MAX_DIRNAME, UserMailboxes, normalize_name
from hatoba.store.mailbox_view import discard_staged

if TYPE_CHECKING:
    from hatoba.imap.session import ImapSession

SYSTEM_FLAGS = E.format_list(PERMANENT_FLAGS[:-1])


async def _select(s: ImapSession, cmd: RawCommand, readonly: bool) -> None:
    if not cmd.args:
        raise ArgError(T("%(command)s needs a mailbox name", command=cmd.name))
    name = parse_mailbox(cmd.args[0], utf8_accepted=is_utf8(s))
    params = cmd.args[1].items if len(cmd.args) > 1 and isinstance(cmd.args[1], ArgList) else ()
    condstore = "CONDSTORE" in s.enabled
    qresync: tuple | None = None
    i = 0
    while i < len(params):
        word = as_text(params[i]).upper()
        if word == "CONDSTORE":
            condstore = True
            s.enabled |= {"CONDSTORE"}
        elif word == "QRESYNC" and i + 1 < len(params) and isinstance(params[i + 1], ArgList):
            if "QRESYNC" not in s.enabled:
                raise ArgError(T("QRESYNC must be enabled first (ENABLE QRESYNC)"))
            q = params[i + 1].items
            qresync = (as_number(q[0]), as_number(q[1]) if len(q) > 1 else 0,
                       parse_sequence_set(as_text(q[2])) if len(q) > 2 else None)
            i += 1
        i += 1
    if s.selected is not None:
        s.selected = None
        s.state = State.AUTHENTICATED
        s.untagged("OK", T("[CLOSED] Previous mailbox closed"))
    assert s.boxes is not None
    rev1 = "IMAP4REV2" not in s.enabled
    # Flushed before the answer: its UIDs are on disk before the client hears of them.
    mailbox = await in_turn_of(s.boxes.folder_of(name), s.boxes.open, name, readonly=readonly)
    view = SelectedMailbox.open(mailbox, readonly=readonly, condstore=condstore, recent_flag=rev1)
    s.selected = view
    s.state = State.SELECTED
    s.write(view.flags_news(s.language))
    s.write(b"* %d EXISTS\r\n" % view.exists)
    if rev1:  # RFC 9051 dropped RECENT and UNSEEN; RFC 3501 §6.3.1 has them
        s.write(b"* %d RECENT\r\n" % len(mailbox.recent))
        unseen = view.first_unseen()
        if unseen is not None:
            s.untagged("OK", T("[UNSEEN %(number)s] First unseen message", number=unseen))
    s.untagged("OK", T("[UIDVALIDITY %(uidvalidity)s] UIDs valid", uidvalidity=mailbox.uidvalidity))
    s.untagged("OK", T("[UIDNEXT %(uidnext)s] Predicted next UID", uidnext=mailbox.uidnext))
    if condstore or qresync:
        s.untagged("OK", T("[HIGHESTMODSEQ %(modseq)s] Highest", modseq=max(mailbox.highestmodseq, 1)))
    if "IMAP4REV2" in s.enabled:  # RFC 9051 §6.3.2: the canonical name; IMAP4rev1 clients do not expect it
        s.write(b"* LIST () \".\" " + mailbox_name(s, name) + b"\r\n")
    if qresync is not None and qresync[0] == mailbox.uidvalidity:
        known_modseq = qresync[1]
        vanished = await asyncio.to_thread(mailbox.vanished_since, known_modseq)
        if vanished:
            s.write(b"* VANISHED (EARLIER) " + E.format_sequence_set(sorted(vanished)) + b"\r\n")
        changed = await asyncio.to_thread(mailbox.changed_since, known_modseq)
        for record in changed:
            if record.uid in view.records:
                s.write(view.flags_line(record))
    s.tagged(cmd.tag, "OK", T("[READ-ONLY] EXAMINE completed") if readonly else T("[READ-WRITE] SELECT completed"))


async def cmd_select(s: ImapSession, cmd: RawCommand) -> None:
    await _select(s, cmd, readonly=False)


async def cmd_examine(s: ImapSession, cmd: RawCommand) -> None:
    await _select(s, cmd, readonly=True)


async def cmd_create(s: ImapSession, cmd: RawCommand) -> None:
    assert s.boxes is not None
    name = parse_mailbox(cmd.args[0], utf8_accepted=is_utf8(s)) if cmd.args else ""
    if not name:
        raise ArgError(T("CREATE needs a mailbox name"))
    made = await asyncio.to_thread(s.boxes.create, name.rstrip(DELIMITER))
    s.mailbox_changed(*(NameChanged(n) for n in made))
    s.tagged(cmd.tag, "OK", T("CREATE completed"))


async def cmd_delete(s: ImapSession, cmd: RawCommand) -> None:
    assert s.boxes is not None
    name = one_mailbox(s, cmd)
    await asyncio.to_thread(s.boxes.delete, name)
    s.mailbox_changed(NameChanged(normalize_name(name)))
    s.tagged(cmd.tag, "OK", T("DELETE completed"))


async def cmd_rename(s: ImapSession, cmd: RawCommand) -> None:
    assert s.boxes is not None
    if len(cmd.args) != 2:
        raise ArgError(T("RENAME needs the old and the new name"))
    old = parse_mailbox(cmd.args[0], utf8_accepted=is_utf8(s))
    new = parse_mailbox(cmd.args[1], utf8_accepted=is_utf8(s))
    renamed = await asyncio.to_thread(s.boxes.rename, old, new)
    moved = (in_folder("INBOX", EXPUNGED), in_folder(normalize_name(new), NEW)) if old == "INBOX" else ()
    s.mailbox_changed(*(NameChanged(n, was) for n, was in renamed), *moved)
    s.tagged(cmd.tag, "OK", T("RENAME completed"))


async def cmd_subscribe(s: ImapSession, cmd: RawCommand) -> None:
    assert s.boxes is not None
    name = one_mailbox(s, cmd)
    await asyncio.to_thread(s.boxes.subscribe, name)
    s.mailbox_changed(SubscriptionChanged(normalize_name(name), True))
    s.tagged(cmd.tag, "OK", T("SUBSCRIBE completed"))


async def cmd_unsubscribe(s: ImapSession, cmd: RawCommand) -> None:
    assert s.boxes is not None
    name = one_mailbox(s, cmd)
    await asyncio.to_thread(s.boxes.unsubscribe, name)
    s.mailbox_changed(SubscriptionChanged(normalize_name(name), False))
    s.tagged(cmd.tag, "OK", T("UNSUBSCRIBE completed"))


async def _list(s: ImapSession, cmd: RawCommand, *, lsub: bool) -> None:
    assert s.boxes is not None
    largs = parse_list_args(cmd.args)
    reference = largs.reference
    patterns = largs.patterns
    if len(patterns) == 1 and patterns[0] == "" and not lsub:
        # RFC 9051 §6.3.9: the delimiter and the root of the reference.
        s.write(b'* LIST (\\Noselect) "." ""\r\n')
        s.tagged(cmd.tag, "OK", T("LIST completed"))
        return
    infos = await asyncio.to_thread(s.boxes.list)
    selection = {o.upper() for o in largs.selection}
    returns = {o.upper() for o in largs.return_options}
    subscribed_only = lsub or "SUBSCRIBED" in selection
    special_only = "SPECIAL-USE" in selection
    status_items = largs.status_items
    verb = b"LSUB" if lsub else b"LIST"
    subscribed = await asyncio.to_thread(s.boxes.subscriptions) if subscribed_only else []
    candidates = [info.name for info in infos] + [
        DELIMITER.join(name.split(DELIMITER)[:depth]) for name in subscribed
        for depth in range(1, name.count(DELIMITER) + 2)]
    # Many long patterns against many names is CPU work: not on the event loop.
    matches = (await MAILBOX.run(_names_matching, reference, patterns, candidates)).__contains__
    if subscribed_only:
        await _list_subscribed(s, infos, subscribed, matches, verb, lsub=lsub, special_only=special_only,
                               recursive="RECURSIVEMATCH" in selection and "SUBSCRIBED" in selection,
                               children="CHILDREN" in returns)
        s.tagged(cmd.tag, "OK", T("LSUB completed") if lsub else T("LIST completed"))
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
        s.write(verb + b" (" + " ".join(attrs).encode() + b') "." ' + mailbox_name(s, info.name) + b"\r\n")
        s.out[-1] = b"* " + s.out[-1]
        if status_items and info.selectable:
            await _status_line(s, info.name, status_items)
    s.tagged(cmd.tag, "OK", T("LSUB completed") if lsub else T("LIST completed"))


def _names_matching(reference: str, patterns: tuple[str, ...], names: list[str]) -> set[str]:
    matches = list_matcher(reference, patterns, DELIMITER, longest=MAX_DIRNAME)
    return {name for name in dict.fromkeys(names) if matches(name)}


async def _list_subscribed(s: ImapSession, infos, subscribed: list[str],  # type: ignore[no-untyped-def]
                           matches: Callable[[str], bool], verb: bytes, *, lsub: bool, special_only: bool,
                           recursive: bool = False, children: bool = False) -> None:
    """LSUB and LIST (SUBSCRIBED): subscribed names, existing or not (RFC 3501 §6.3.9, RFC 5258 §3.1).

    recursive (LIST (SUBSCRIBED RECURSIVEMATCH), RFC 5258 §3.5): a name that matches but is not
    subscribed is listed too, with CHILDINFO ("SUBSCRIBED"), when a subscribed name below it is
    not listed itself (it does not match); when each such name is listed, the parent is not."""
    assert s.boxes is not None
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
                if children and info is not None:
                    attrs.append("\\HasChildren" if info.has_children else "\\HasNoChildren")
                attrs.append("\\Subscribed")
                if info is not None and info.special_use:
                    attrs.append(info.special_use)
            s.write(b"* " + verb + b" (" + " ".join(attrs).encode() + b') "." ' + mailbox_name(s, name) + b"\r\n")
            shown.add(name)
        elif lsub:
            # "%" stops at the delimiter: an unsubscribed parent of a subscribed
            # name matches as \Noselect (RFC 3501 §6.3.9).
            parts = name.split(DELIMITER)
            for depth in range(1, len(parts)):
                parent = DELIMITER.join(parts[:depth])
                if parent not in shown and parent not in subscribed and matches(parent):
                    s.write(b'* LSUB (\\Noselect) "." ' + mailbox_name(s, parent) + b"\r\n")
                    shown.add(parent)
    if not recursive:
        return
    wanted = set(subscribed)
    parents: set[str] = set()
    for name in subscribed:
        if name in shown:
            continue
        parts = name.split(DELIMITER)
        for depth in range(1, len(parts)):
            parent = DELIMITER.join(parts[:depth])
            if parent not in wanted and matches(parent):
                parents.add(parent)
    for parent in sorted(parents):
        info = by_name.get(parent)
        attrs = []
        if info is None:
            attrs.append("\\NonExistent")
        elif not info.selectable:
            attrs.append("\\Noselect")
        if children:
            attrs.append("\\HasChildren")
        s.write(b"* LIST (" + " ".join(attrs).encode() + b') "." ' + mailbox_name(s, parent)
                + b' ("CHILDINFO" ("SUBSCRIBED"))\r\n')


async def cmd_list(s: ImapSession, cmd: RawCommand) -> None:
    await _list(s, cmd, lsub=False)


async def cmd_lsub(s: ImapSession, cmd: RawCommand) -> None:
    await _list(s, cmd, lsub=True)


async def cmd_namespace(s: ImapSession, cmd: RawCommand) -> None:
    s.write(b'* NAMESPACE (("" ".")) NIL NIL\r\n')
    s.tagged(cmd.tag, "OK", T("NAMESPACE completed"))


async def _status_line(s: ImapSession, name: str, items: tuple[str, ...]) -> None:
    assert s.boxes is not None
    # Flushed before the answer: UIDNEXT is on disk before the client hears of it.
    status = await in_turn_of(s.boxes.folder_of(name), s.boxes.status, name, with_size="SIZE" in items)
    s.write(status_response(s, name, status, items))


async def cmd_status(s: ImapSession, cmd: RawCommand) -> None:
    if len(cmd.args) != 2:
        raise ArgError(T("STATUS needs a mailbox name and a list of items"))
    name = parse_mailbox(cmd.args[0], utf8_accepted=is_utf8(s))
    await _status_line(s, name, parse_status_items(cmd.args[1]))
    s.tagged(cmd.tag, "OK", T("STATUS completed"))


async def cmd_append(s: ImapSession, cmd: RawCommand) -> None:
    """APPEND (RFC 9051 §6.3.12) of one message or several (RFC 3502 MULTIAPPEND), each
    a literal or CATENATE parts (RFC 4469); all stored or none, one APPENDUID set."""
    assert s.boxes is not None
    if len(cmd.args) < 2:
        raise ArgError(T("APPEND needs a mailbox name and a message"))
    utf8 = is_utf8(s)
    name = parse_mailbox(cmd.args[0], utf8_accepted=utf8)
    messages = parse_append(list(cmd.args[1:]))
    try:
        mailbox = await asyncio.to_thread(s.boxes.open, name, target=True)
    except MailboxError:
        s.tagged(cmd.tag, "NO", TRYCREATE)
        return
    built = await asyncio.to_thread(_assemble, s.boxes, messages, s.facts.max_literal, utf8)
    staged = await asyncio.to_thread(mailbox.stage, built)  # written and flushed before the lock
    try:
        uids = await in_folder_turn(mailbox, mailbox.add_staged, staged)
    finally:
        discard_staged(staged)
    s.mailbox_changed(in_folder(mailbox.name, NEW))
    try:
        await refresh_selected(s, fetch_new=False)  # RFC 5465 §5.2: no FETCH for the client's own APPEND
    except MailboxError:
        pass  # the selected folder went away: the message is stored all the same, and the next command says so
    uid_set = E.format_sequence_set(uids).decode()
    s.tagged(cmd.tag, "OK", T("[APPENDUID %(uidvalidity)s %(uids)s] APPEND completed",
                              uidvalidity=mailbox.uidvalidity, uids=uid_set))


def _assemble(boxes: UserMailboxes, messages: list[AppendMessage], limit: int,
              utf8: bool) -> list[tuple[bytes, tuple[str, ...], datetime | None]]:
    """The messages to store: CATENATE URLs read, binary parts encoded; in a thread.

    Together they stay within `limit` (APPENDLIMIT), or NO [TOOBIG]; a URL that
    does not name a message of the user's is NO [BADURL url].
    """
    total = 0
    out: list[tuple[bytes, tuple[str, ...], datetime | None]] = []
    for message in messages:
        pieces: list[bytes] = []
        for part in message.parts:
            piece = part if isinstance(part, bytes) else _url_data(boxes, part, utf8)
            total += len(piece)
            if total > limit:
                raise ArgRefused(T("[TOOBIG] Messages of one APPEND are over %(limit)s octets", limit=limit))
            pieces.append(piece)
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        from_urls = any(isinstance(part, CatenateUrl) for part in message.parts)
        if message.binary or (from_urls and b"\x00" in data):  # a URL part may bring NUL too
            encoded = encode_binary_parts(data)
            total += len(encoded) - len(data)
            if total > limit:
                raise ArgRefused(T("[TOOBIG] Messages of one APPEND are over %(limit)s octets once encoded",
                                   limit=limit))
            data = encoded
        out.append((data, message.flags, message.when))
    return out


def _url_data(boxes: UserMailboxes, url: CatenateUrl, utf8: bool) -> bytes:
    """The octets a CATENATE URL names: a message, BODY[section], and <partial> of that."""
    bad = ArgRefused(T("[BADURL %(url)s] Bad URL", url=url.text) if _plain(url.text) else T("[BADURL] Bad URL"))
    if not url.uid:
        raise bad
    try:
        name = url.mailbox if utf8 or not url.mailbox.isascii() else mutf7.decode(url.mailbox)
        uidvalidity, raw = boxes.read_message(name, url.uid)
    except (MailboxError, ValueError):
        raise bad from None
    if raw is None or (url.uidvalidity is not None and url.uidvalidity != uidvalidity):
        raise bad
    data = to_crlf(raw)
    section = url.section
    if section.part or section.text:
        root = parse_message(data) if section.part else None
        data = top_section(data, section) if root is None else section_data(data, root, section)
    if url.partial is not None:
        offset, length = url.partial
        data = data[offset:] if length is None else data[offset : offset + length]
    return data


def _plain(text: str) -> bool:
    """Whether a URL can go back in a response code as it is (printable ASCII, no "]")."""
    return text.isascii() and text.isprintable() and "]" not in text


async def cmd_getquotaroot(s: ImapSession, cmd: RawCommand) -> None:
    assert s.boxes is not None
    name = one_mailbox(s, cmd)
    used, limit = await asyncio.to_thread(s.boxes.quota)
    if not limit:  # RFC 9208 §4.3: no quota root when nothing limits the mailbox
        s.write(b"* QUOTAROOT " + mailbox_name(s, name) + b"\r\n")
    else:
        s.write(b"* QUOTAROOT " + mailbox_name(s, name) + b' ""\r\n')
        s.write(b'* QUOTA "" (STORAGE %d %d)\r\n' % ((used + 1023) // 1024, limit // 1024))
    s.tagged(cmd.tag, "OK", T("GETQUOTAROOT completed"))


async def cmd_getquota(s: ImapSession, cmd: RawCommand) -> None:
    assert s.boxes is not None
    used, limit = await asyncio.to_thread(s.boxes.quota)
    if not limit:
        s.tagged(cmd.tag, "NO", T("[NONEXISTENT] No quota is set for you"))
        return
    s.write(b'* QUOTA "" (STORAGE %d %d)\r\n' % ((used + 1023) // 1024, limit // 1024))
    s.tagged(cmd.tag, "OK", T("GETQUOTA completed"))


async def cmd_setquota(s: ImapSession, cmd: RawCommand) -> None:
    s.tagged(cmd.tag, "NO", T("[NOPERM] Quotas are set by the operator"))
