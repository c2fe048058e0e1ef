"""The NOTIFY argument grammar (RFC 5465 §8): which events of which mailboxes a
client wants to hear about.

    notify           = "NOTIFY" SP (notify-set / notify-none)
    notify-set       = "SET" [SP "STATUS"] SP event-group *(SP event-group)
    event-group      = "(" filter-mailboxes SP events ")"
    filter-mailboxes = "selected" / "selected-delayed" / "inboxes" / "personal" /
                       "subscribed" / ("subtree" SP one-or-more-mailbox) /
                       ("mailboxes" SP one-or-more-mailbox)
    events           = "(" event *(SP event) ")" / "NONE"
    event            = "MessageNew" [SP "(" fetch-att *(SP fetch-att) ")"] / atom

Syntax errors and broken event rules are ArgError (BAD); events the server
does not support are returned in `unsupported`, for a NO [BADEVENT] (RFC 5465
§3.1 says NO, not BAD). Watching the mailboxes is the session's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hatoba.proto.imap.args import parse_mailbox
from hatoba.proto.imap.fetchitems import parse_fetch_items
from hatoba.proto.imap.scalars import ArgError, as_word
from hatoba.proto.imap.types import Arg, ArgList, Atom, FetchItem

MESSAGE_NEW = "MessageNew"
MESSAGE_EXPUNGE = "MessageExpunge"
FLAG_CHANGE = "FlagChange"
ANNOTATION_CHANGE = "AnnotationChange"
MAILBOX_NAME = "MailboxName"
SUBSCRIPTION_CHANGE = "SubscriptionChange"
MAILBOX_METADATA_CHANGE = "MailboxMetadataChange"
SERVER_METADATA_CHANGE = "ServerMetadataChange"

MESSAGE_EVENTS = frozenset({MESSAGE_NEW, MESSAGE_EXPUNGE, FLAG_CHANGE, ANNOTATION_CHANGE})
MAILBOX_EVENTS = frozenset({MAILBOX_NAME, SUBSCRIPTION_CHANGE, MAILBOX_METADATA_CHANGE, SERVER_METADATA_CHANGE})
KNOWN_EVENTS = {name.upper(): name for name in (
    MESSAGE_NEW, MESSAGE_EXPUNGE, FLAG_CHANGE, ANNOTATION_CHANGE, MAILBOX_NAME,
    SUBSCRIPTION_CHANGE, MAILBOX_METADATA_CHANGE, SERVER_METADATA_CHANGE)}
# No ANNOTATE or METADATA here, so none of their changes can happen.
SUPPORTED_EVENTS = (MESSAGE_NEW, MESSAGE_EXPUNGE, FLAG_CHANGE, MAILBOX_NAME, SUBSCRIPTION_CHANGE)

SELECTED = "SELECTED"
SELECTED_DELAYED = "SELECTED-DELAYED"
FILTERS = frozenset({SELECTED, SELECTED_DELAYED, "INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE", "MAILBOXES"})
NAMED_FILTERS = frozenset({"SUBTREE", "MAILBOXES"})


@dataclass(frozen=True, slots=True)
class EventGroup:
    filter: str  # one of FILTERS
    events: frozenset[str]  # canonical names (MessageNew...); empty for NONE
    mailboxes: tuple[str, ...] = ()  # SUBTREE and MAILBOXES
    fetch: tuple[FetchItem, ...] = ()  # MessageNew's fetch-att, for the selected mailbox

    @property
    def selected(self) -> bool:
        return self.filter in (SELECTED, SELECTED_DELAYED)


@dataclass(frozen=True, slots=True)
class NotifySet:
    status: bool  # NOTIFY SET STATUS: a STATUS for each watched mailbox now
    groups: tuple[EventGroup, ...]
    unsupported: tuple[str, ...] = ()  # events named that SUPPORTED_EVENTS lacks

    @property
    def selected(self) -> EventGroup | None:
        return next((g for g in self.groups if g.selected), None)

    @property
    def others(self) -> tuple[EventGroup, ...]:
        return tuple(g for g in self.groups if not g.selected and g.events)


def parse_notify(args: Sequence[Arg], *, utf8_accepted: bool = False) -> NotifySet | None:
    """NOTIFY's arguments: None for NOTIFY NONE, else the NotifySet."""
    if not args:
        raise ArgError("NOTIFY needs SET or NONE")
    verb = as_word(args[0])
    if verb == "NONE":
        if len(args) != 1:
            raise ArgError("NOTIFY NONE takes no arguments")
        return None
    if verb != "SET":
        raise ArgError("NOTIFY needs SET or NONE")
    rest = list(args[1:])
    status = bool(rest) and isinstance(rest[0], Atom) and rest[0].value.upper() == "STATUS"
    if status:
        rest = rest[1:]
    if not rest:
        raise ArgError("NOTIFY SET needs at least one event group")
    groups = tuple(_event_group(arg, utf8_accepted) for arg in rest)
    if sum(g.selected for g in groups) > 1:
        raise ArgError("Only one SELECTED or SELECTED-DELAYED event group is allowed")
    unsupported = {e for g in groups for e in g.events if e not in SUPPORTED_EVENTS}
    return NotifySet(status, groups, tuple(sorted(unsupported)))


def _event_group(arg: Arg, utf8_accepted: bool) -> EventGroup:
    if not isinstance(arg, ArgList) or len(arg.items) < 2:
        raise ArgError("Expected an event group: (filter events)")
    items = arg.items
    name = as_word(items[0])
    if name not in FILTERS:
        raise ArgError("Unknown NOTIFY mailbox filter")
    mailboxes: tuple[str, ...] = ()
    at = 1
    if name in NAMED_FILTERS:
        mailboxes = _mailboxes(items[1], utf8_accepted)
        at = 2
    if len(items) != at + 1:
        raise ArgError("Expected the events after the mailbox filter")
    events, fetch = _events(items[at])
    group = EventGroup(name, events, mailboxes, fetch)
    _check(group)
    return group


def _mailboxes(arg: Arg, utf8_accepted: bool) -> tuple[str, ...]:
    """one-or-more-mailbox: a mailbox name or a list of them."""
    names = arg.items if isinstance(arg, ArgList) else (arg,)
    if not names:
        raise ArgError("Empty mailbox list")
    return tuple(dict.fromkeys(parse_mailbox(n, utf8_accepted=utf8_accepted) for n in names))


def _events(arg: Arg) -> tuple[frozenset[str], tuple[FetchItem, ...]]:
    """events: NONE or a list of event names, MessageNew perhaps followed by fetch-att."""
    if isinstance(arg, Atom) and arg.value.upper() == "NONE":
        return frozenset(), ()
    if not isinstance(arg, ArgList) or not arg.items:
        raise ArgError("Expected a list of events or NONE")
    events: set[str] = set()
    fetch: tuple[FetchItem, ...] = ()
    previous = None
    for item in arg.items:
        if isinstance(item, ArgList):
            if previous != MESSAGE_NEW or fetch:
                raise ArgError("Fetch attributes may only follow MessageNew")
            fetch = tuple(parse_fetch_items([item])[0])
            previous = None
            continue
        if not isinstance(item, Atom):
            raise ArgError("Expected an event name")
        # An unknown atom is a well-formed event-ext: unsupported (NO), not a syntax error.
        previous = KNOWN_EVENTS.get(item.value.upper(), item.value)
        events.add(previous)
    return frozenset(events), fetch


def _check(group: EventGroup) -> None:
    """RFC 5465 §5 and §6.1 rules for the events of one group (BAD when broken).

    The rules that MessageNew and MessageExpunge come together, and that FlagChange
    needs both, are kept for the selected mailbox, where a missing EXPUNGE or EXISTS
    would leave the client's message numbers wrong. For other mailboxes the events
    only choose the STATUS items sent, and Dovecot (and its imaptest) take any of
    them alone, so hatoba does too.
    """
    if group.fetch and not group.selected:
        raise ArgError("Fetch attributes are only for SELECTED and SELECTED-DELAYED")
    if not group.selected:
        return
    if group.events & MAILBOX_EVENTS:
        raise ArgError("Only message events may go with SELECTED or SELECTED-DELAYED")
    new_or_expunge = group.events & {MESSAGE_NEW, MESSAGE_EXPUNGE}
    if len(new_or_expunge) == 1:
        raise ArgError("MessageNew and MessageExpunge must be given together")
    if group.events & {FLAG_CHANGE, ANNOTATION_CHANGE} and not new_or_expunge:
        raise ArgError("FlagChange and AnnotationChange need MessageNew and MessageExpunge")
