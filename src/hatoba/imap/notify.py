"""One session's NOTIFY SET (RFC 5465): which changes it reports, and those still to report.

Changes come from MailboxEvents (imap/session.py) as the other sessions,
deliveries and POP3 describe them (store/changes.py); Watch.note() keeps the
ones the client asked for, on the event loop, without touching the disk. The
session writes them (imap/cmd_notify.py) when it waits between commands
or in IDLE: nothing polls.

Rules:
- What is kept is bounded: the folders with STATUS news and the LIST news
  together at most MAX_PENDING; past that the client is told OK
  [NOTIFICATIONOVERFLOW] and the session behaves as after NOTIFY NONE
  (RFC 5465 §5.8).
- The session's own changes are not reported (RFC 5465 §5: SHOULD omit).
- The selected mailbox gets EXISTS, EXPUNGE and FETCH, never STATUS; the
  other filters do not apply to its messages (RFC 5465 §6.1).
"""

from __future__ import annotations

from hatoba.proto.imap.notifyargs import (
    FLAG_CHANGE,
    MAILBOX_NAME,
    MESSAGE_EXPUNGE,
    MESSAGE_NEW,
    SELECTED_DELAYED,
    SUBSCRIPTION_CHANGE,
    EventGroup,
    NotifySet,
)
from hatoba.store.changes import EXPUNGED, FLAGS, NEW, Change, NameChanged, SubscriptionChanged
from hatoba.store.folder_tree import DELIMITER

# Mailboxes one NOTIFY may name (SUBTREE, MAILBOXES) and hold (SUBSCRIBED's names),
# and that NOTIFY SET STATUS reports on; more is NO [NOTIFICATIONOVERFLOW].
MAX_WATCHED = 250
# Folders with STATUS news and LIST news waiting for the client, together.
MAX_PENDING = 256
# New messages of the selected mailbox answered with MessageNew's FETCH in one go;
# more arrive as EXISTS only, and the client fetches them itself.
MAX_EAGER_FETCH = 100

EVENT_OF_KIND = {NEW: MESSAGE_NEW, EXPUNGED: MESSAGE_EXPUNGE, FLAGS: FLAG_CHANGE}


class Watch:
    """The effect of one NOTIFY SET, until the next NOTIFY or an overflow."""

    __slots__ = ("selected_events", "delayed", "fetch", "_others", "_by_subscription",
                 "subscribed", "selected_news", "statuses", "names", "overflowed")

    def __init__(self, request: NotifySet, subscribed: set[str]) -> None:
        group = request.selected
        self.selected_events = group.events if group is not None else frozenset()
        self.delayed = group is not None and group.filter == SELECTED_DELAYED
        self.fetch = group.fetch if group is not None else ()
        self._others = request.others
        # SUBSCRIBED is judged on the subscriptions as they are now (RFC 5465 §6.4).
        self._by_subscription = any(g.filter == "SUBSCRIBED" for g in self._others)
        self.subscribed = subscribed if self._by_subscription else set()
        self.selected_news = False  # the selected mailbox changed: EXISTS, EXPUNGE, FETCH due
        self.statuses: dict[str, set[str]] = {}  # folder -> the events to tell in a STATUS
        self.names: list[Change] = []  # LIST news, oldest first
        self.overflowed = False

    @property
    def due(self) -> bool:
        return self.overflowed or self.selected_news or bool(self.statuses) or bool(self.names)

    def wants(self, name: str) -> frozenset[str]:
        """The events the groups other than SELECTED ask for about folder `name`."""
        events: set[str] = set()
        for group in self._others:
            if _matches(group, name, self.subscribed):
                events |= group.events
        return frozenset(events)

    def note(self, changes: tuple[Change, ...], *, own: bool, selected: str | None) -> None:
        """Keep what the client asked to hear of `changes` (made by this session when `own`)."""
        for change in changes:
            if isinstance(change, SubscriptionChanged):
                self._note_subscription(change, own)
            elif own or self.overflowed:
                continue
            elif isinstance(change, NameChanged):
                names = (change.name,) if change.old is None else (change.name, change.old)
                if any(MAILBOX_NAME in self.wants(name) for name in names):
                    self._keep_name(change)
            elif change.name == selected:
                if self.selected_events & {EVENT_OF_KIND[k] for k in change.kinds}:
                    self.selected_news = True
            else:
                events = self.wants(change.name) & {EVENT_OF_KIND[k] for k in change.kinds}
                if events:
                    self._keep_status(change.name, events)
        if len(self.subscribed) > MAX_WATCHED:
            self._overflow()

    def note_unknown(self, selected: str | None) -> None:
        """Something changed, nobody said what (files put into the Maildir by other tools)."""
        if selected is not None and self.selected_events:
            self.selected_news = True

    def take(self) -> tuple[bool, list[Change], dict[str, set[str]]]:
        """(selected mailbox news, LIST news, STATUS news), forgotten here."""
        taken = (self.selected_news, self.names, self.statuses)
        self.selected_news, self.names, self.statuses = False, [], {}
        return taken

    def _note_subscription(self, change: SubscriptionChanged, own: bool) -> None:
        was_watched = SUBSCRIPTION_CHANGE in self.wants(change.name)
        if self._by_subscription:
            if change.subscribed:
                self.subscribed.add(change.name)
            else:
                self.subscribed.discard(change.name)
        if not own and not self.overflowed and (was_watched or SUBSCRIPTION_CHANGE in self.wants(change.name)):
            self._keep_name(change)

    def _keep_name(self, change: Change) -> None:
        self.names.append(change)
        self._check_room()

    def _keep_status(self, name: str, events: frozenset[str]) -> None:
        self.statuses.setdefault(name, set()).update(events)
        self._check_room()

    def _check_room(self) -> None:
        if len(self.names) + len(self.statuses) > MAX_PENDING:
            self._overflow()

    def _overflow(self) -> None:
        """Too much to keep: the client is told, and nothing more is kept (RFC 5465 §5.8)."""
        self.overflowed = True
        self.selected_news = False
        self.names, self.statuses = [], {}


def _matches(group: EventGroup, name: str, subscribed: set[str]) -> bool:
    """Whether a filter other than SELECTED covers folder `name` (RFC 5465 §6.2-§6.6)."""
    kind = group.filter
    if kind == "PERSONAL":
        return True
    if kind == "INBOXES":
        return name == "INBOX"  # deliveries only ever go to INBOX
    if kind == "SUBSCRIBED":
        return name in subscribed
    if kind == "MAILBOXES":
        return name in group.mailboxes
    return any(name == top or name.startswith(top + DELIMITER) for top in group.mailboxes)  # SUBTREE


def watched_count(request: NotifySet, subscribed: set[str]) -> int:
    """How many mailbox names a NOTIFY SET holds (MAX_WATCHED bounds it)."""
    named = sum(len(g.mailboxes) for g in request.groups)
    if any(g.filter == "SUBSCRIBED" for g in request.others):
        named += len(subscribed)
    return named
