"""Why the mail store refused a mailbox operation: one exception type per reason.

Each carries a plain sentence for people (str(exc); a T() text, which a
protocol can say in the client's language), never a protocol's syntax: a
protocol picks its own reply from the type (IMAP's response codes:
imap/replies.py). A refused operation has changed nothing.
"""

from __future__ import annotations

from hatoba.i18n import T


class MailboxError(Exception):
    """A mailbox operation the store refused; catch this for any of the reasons below."""

    detail = T("Mailbox operation refused")

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(self.detail if detail is None else detail)


class NoSuchMailbox(MailboxError):
    """The folder does not exist, or was deleted or renamed under the caller."""

    detail = T("No such mailbox")


class MailboxExists(MailboxError):
    """CREATE or RENAME to a name that is taken."""

    detail = T("Mailbox already exists")


class HasChildren(MailboxError):
    """DELETE of a name that holds no messages, only folders below it."""

    detail = T("Mailbox has children; delete them first")


class InvalidName(MailboxError):
    """A folder name the store cannot keep (characters, empty parts, length)."""

    detail = T("Invalid mailbox name")


class InvalidFlag(MailboxError):
    """A flag that cannot be stored: an unknown system flag or a malformed keyword."""

    detail = T("Invalid keyword")


class ImpossibleChange(MailboxError):
    """A change to the folder tree that can never succeed (deleting INBOX, a folder into itself)."""


class MailboxReset(MailboxError):
    """The folder got a new UIDVALIDITY while a session had it open."""

    detail = T("Mailbox was reset (new UIDVALIDITY); select it again")


class TooManyKeywords(MailboxError):
    """The folder has no keyword letter left for a new keyword."""

    detail = T("Too many keywords in this mailbox")


class ReadOnly(MailboxError):
    """A change to a folder opened read-only."""

    detail = T("Mailbox was opened read-only")


class Expunged(MailboxError):
    """The message is gone (expunged by another session, or by POP3)."""

    detail = T("Message was expunged")


class OverQuota(MailboxError):
    """The user's storage limit would be passed."""

    detail = T("Quota exceeded")


class DiskFull(MailboxError):
    """The disk (or a file-system quota) is full; what was started is undone."""

    detail = T("Not enough disk space")
