"""Helpers every IMAP command module shares: the client's mailbox-name
encoding, the selected mailbox, and the untagged news sent before a tagged reply.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hatoba.i18n import T
from hatoba.imap.contexts import context_news
from hatoba.imap.folder_work import in_folder_turn_trying
from hatoba.imap.selected import SelectedMailbox
from hatoba.proto.imap import encode as E
from hatoba.proto.imap.args import parse_mailbox
from hatoba.proto.imap.fetch import MimeLimits
from hatoba.proto.imap.reader import RawCommand
from hatoba.proto.imap.scalars import ArgError
from hatoba.store.folder_tree import MailboxStatus

if TYPE_CHECKING:
    from hatoba.imap.session import ImapSession


def is_utf8(session: ImapSession) -> bool:
    """The client said ENABLE UTF8=ACCEPT: mailbox names travel as UTF-8 (RFC 6855)."""
    return "UTF8=ACCEPT" in session.enabled


def mailbox_name(session: ImapSession, name: str) -> bytes:
    """A mailbox name as this client reads it: UTF-8 or modified UTF-7 (RFC 3501 §5.1.3)."""
    return E.astring(name if is_utf8(session) else _mutf7(name))


def _mutf7(name: str) -> str:
    from hatoba.proto.imap import mutf7

    return mutf7.encode(name)


def enable_condstore(session: ImapSession) -> None:
    """A CONDSTORE-enabling command (RFC 7162 §3.1: FETCH MODSEQ or CHANGEDSINCE, STORE
    UNCHANGEDSINCE, SEARCH MODSEQ, ENABLE CONDSTORE): MODSEQ in every FETCH for the rest of
    the session. The first one while a mailbox is selected is told the mailbox's
    HIGHESTMODSEQ in an untagged OK before its other answers, as SELECT (CONDSTORE) would."""
    session.enabled |= {"CONDSTORE"}
    view = session.selected
    if view is not None and not view.condstore:
        view.condstore = True
        session.untagged("OK", T("[HIGHESTMODSEQ %(modseq)s] Highest", modseq=max(view.mailbox.highestmodseq, 1)))


async def refresh_selected(session: ImapSession, *, allow_expunge: bool = True, flags: bool = True,
                           fetch_new: bool = True) -> None:
    """Write the selected mailbox's news (EXISTS, FETCH FLAGS unless `flags` is False,
    EXPUNGE when allowed, the FETCH NOTIFY's MessageNew asks for unless `fetch_new` is
    False, and the ADDTO / REMOVEFROM of its update contexts)."""
    session.news = False  # before the look: a change during it asks for another
    view = session.selected
    if view is not None:
        qresync = "QRESYNC" in session.enabled
        last = view.uids[-1] if view.uids else 0
        # Flushed before it is sent: new UIDs are on disk before a client hears of them.
        # Tried at once whatever the folder's size (nothing changed is the common answer
        # after a FETCH or SEARCH), unless news held back from earlier looks is to be told.
        at_once = view.mailbox.quiet_look_at_once_allowed and not view.pending_expunges and not view.held_flags
        news = await in_folder_turn_trying(at_once, view.mailbox, view.refresh, allow_expunge=allow_expunge,
                                           qresync=qresync, flags=flags, language=session.language)
        session.write(news)
        notify = session.notify
        if fetch_new and notify is not None and notify.fetch and view.uids and view.uids[-1] > last:
            from hatoba.imap.cmd_notify import fetch_new_messages  # it builds on this module

            await fetch_new_messages(session, view, view.uids[bisect.bisect_right(view.uids, last):])
        if view.contexts:
            # \Recent is an IMAP4rev1 flag (RFC 3501 §2.3.2); IMAP4rev2 dropped it.
            recent = set() if "IMAP4REV2" in session.enabled else view.mailbox.recent
            limits = session.ctx.config.limits
            session.write(await context_news(view, recent, MimeLimits(limits.max_mime_parts, limits.max_mime_depth)))


def status_response(s: ImapSession, name: str, status: MailboxStatus, items: Iterable[str]) -> bytes:
    """The untagged STATUS response naming `items` of folder `name`, in that order."""
    values = {
        "MESSAGES": status.messages, "RECENT": status.recent, "UIDNEXT": status.uidnext,
        "UIDVALIDITY": status.uidvalidity, "UNSEEN": status.unseen, "DELETED": status.deleted,
        "SIZE": status.size, "HIGHESTMODSEQ": status.highestmodseq, "APPENDLIMIT": s.facts.max_literal,
    }
    parts = " ".join(f"{item} {values[item]}" for item in items if item in values)
    return b"* STATUS " + mailbox_name(s, name) + f" ({parts})\r\n".encode()


def selected_view(s: ImapSession) -> SelectedMailbox:
    """The selected mailbox; the state table lets these commands run only in SELECTED."""
    assert s.selected is not None
    return s.selected


def one_mailbox(s: ImapSession, cmd: RawCommand) -> str:
    """The only argument of DELETE, SUBSCRIBE, GETQUOTAROOT...: a mailbox name."""
    if len(cmd.args) != 1:
        raise ArgError(T("%(command)s needs one mailbox name", command=cmd.name))
    return parse_mailbox(cmd.args[0], utf8_accepted=is_utf8(s))
