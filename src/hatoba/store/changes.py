"""What changed in a user's mailboxes, as one session tells the others.

Deliveries, POP3 and IMAP sessions describe each change they make; IMAP
sessions use it to wake IDLE and to pick what NOTIFY (RFC 5465) reports:
STATUS for new, expunged or re-flagged messages of another folder, LIST for
a folder made, deleted, renamed, subscribed or unsubscribed.
"""

from __future__ import annotations

from dataclasses import dataclass

NEW = "new"
EXPUNGED = "expunged"
FLAGS = "flags"


@dataclass(frozen=True, slots=True)
class MessagesChanged:
    """Messages of folder `name` arrived (NEW), went (EXPUNGED) or got other flags (FLAGS)."""

    name: str
    kinds: frozenset[str]


@dataclass(frozen=True, slots=True)
class NameChanged:
    """Folder `name` was made or deleted, or renamed from `old`."""

    name: str
    old: str | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionChanged:
    name: str
    subscribed: bool


Change = MessagesChanged | NameChanged | SubscriptionChanged


def in_folder(name: str, *kinds: str) -> MessagesChanged:
    return MessagesChanged(name, frozenset(kinds))


# A delivery puts a message into INBOX; a POP3 session can only delete from it.
DELIVERED = (in_folder("INBOX", NEW),)
POP3_DELETED = (in_folder("INBOX", EXPUNGED),)
