"""Local delivery of one queued message: aliases expanded, one copy per mailbox.

Runs in a worker thread (SQLite, file writes and fsyncs block). Each final
mailbox gets Return-Path and Delivered-To, then our Received header, then
the message. Aliases are expanded at delivery time, as Postfix's local(8)
does, so an alias changed while a message waits applies to it.

Non-local targets (recipients relayed for trusted clients, forwards of
aliases) are returned in `pending_remote` for delivery/remote.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hatoba.logs import mail_log
from hatoba.queue.spool import Envelope, QueuedMessage
from hatoba.store.api import AliasLoopError, DirectoryError, MailStore, QueueState, UserDB

log = logging.getLogger(__name__)

# Where mail judged as spam goes when the user has no folder marked \\Junk (Maildir/.Junk).
JUNK_FOLDER = ".Junk"


@dataclass
class Attempt:
    """What one delivery attempt did to a message."""

    finished: bool  # nothing left to deliver; the spool entry may go
    state: QueueState
    pending_remote: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (recipient, reason)
    temporary_error: str = ""
    deferred: list[tuple[str, str, str]] = field(default_factory=list)  # (recipient, mailbox, reason) to retry
    delivered: list[str] = field(default_factory=list)  # mailboxes that got a new message


def trace_prefix(envelope: Envelope, mailbox: str) -> bytes:
    """Return-Path (RFC 5321 §4.4) and Delivered-To (loop detection), then our Received."""
    return (
        f"Return-Path: <{envelope.mail_from}>\r\nDelivered-To: {mailbox}\r\n{envelope.received}"
    ).encode("utf-8")


# Junk reasons a sender allow list overrides, for a From its domain authenticated; the
# others say the From field is forged or unreadable, which no list keyed on it can undo.
ALLOWABLE_JUNK = ("score", "rspamd")


def goes_to_junk(envelope: Envelope, mailbox: str, sender_lists: Callable[[str, str], str] | None) -> bool:
    """Whether `mailbox`'s copy goes to Junk: the verdict on arrival, then the mailbox's sender lists."""
    if not envelope.header_from or sender_lists is None:
        return bool(envelope.junk)
    try:
        choice = sender_lists(mailbox, envelope.header_from)
    except Exception as exc:  # the lists are a preference: never a reason to hold mail
        log.warning("sender lists of %s not read (%s); the verdict on arrival stands", mailbox, exc)
        return bool(envelope.junk)
    if choice == "block":
        return True
    if choice == "allow" and envelope.junk in ALLOWABLE_JUNK and envelope.from_authenticated:
        return False
    return bool(envelope.junk)


def deliver_locally(
    queued: QueuedMessage,
    state: QueueState,
    *,
    directory: UserDB,
    store: MailStore,
    thorough: bool,
    mailbox_full: Callable[[str], bool] | None = None,
    sender_lists: Callable[[str, str], str] | None = None,
) -> Attempt:
    """Deliver `queued` to every local mailbox it is for; `mailbox_full(mailbox)`
    (the quota check) keeps the message queued for mailboxes that are full;
    `sender_lists(mailbox, sender)` ("allow", "block" or "") may move a judged
    message into or out of that mailbox's Junk folder."""
    qid, envelope = queued.qid, queued.envelope
    done = set(state.done)
    attempt = Attempt(finished=False, state=state)
    # Final mailbox -> the recipient it came from (first one wins: one copy each).
    mailboxes: dict[str, str] = {}
    for rcpt in envelope.recipients:
        if rcpt in done:
            continue
        try:
            resolution = directory.resolve(rcpt)
        except AliasLoopError as exc:
            attempt.failed.append((rcpt, f"5.4.6 alias loop: {exc}"))
            continue
        except DirectoryError as exc:
            attempt.temporary_error = f"4.3.0 directory unavailable: {exc}"
            attempt.deferred.append((rcpt, rcpt, attempt.temporary_error))
            continue
        if not resolution.known:
            attempt.failed.append((rcpt, "5.1.1 no such user here (removed after the message was accepted)"))
            continue
        for mailbox in resolution.mailboxes:
            mailboxes.setdefault(mailbox, rcpt)
        attempt.pending_remote += [f for f in resolution.forwards if f not in done]

    size = queued.body_length
    for mailbox, rcpt in mailboxes.items():
        if mailbox in done:
            continue
        if mailbox_full is not None and mailbox_full(mailbox):
            attempt.temporary_error = f"4.2.2 the mailbox of {mailbox} is full (quota); will retry"
            attempt.deferred.append((rcpt, mailbox, attempt.temporary_error))
            mail_log("deferred", qid=qid, to=f"<{mailbox}>", relay="local", reason=attempt.temporary_error)
            continue
        try:
            junk = goes_to_junk(envelope, mailbox, sender_lists)
            folder = store.special_folder(mailbox, "\\Junk", JUNK_FOLDER) if junk else ""
            result = store.deliver(
                mailbox,
                queued.path,
                prefix=trace_prefix(envelope, mailbox),
                length=queued.body_length,
                unique_key=qid,
                timestamp=envelope.received_at,
                thorough=thorough,
                folder=folder,
            )
        except OSError as exc:
            attempt.temporary_error = f"4.3.0 cannot write to the mailbox of {mailbox}: {exc.strerror}"
            attempt.deferred.append((rcpt, mailbox, attempt.temporary_error))
            mail_log("deferred", qid=qid, to=f"<{mailbox}>", relay="local", reason=attempt.temporary_error)
            continue
        done.add(mailbox)
        state.done.append(mailbox)
        if not result.duplicate:
            attempt.delivered.append(mailbox)
        mail_log(
            "delivered",
            qid=qid,
            to=f"<{mailbox}>",
            orig_to=f"<{rcpt}>" if rcpt != mailbox else None,
            relay="local",
            folder=folder[1:] if folder else None,
            size=size,
            delay=f"{time.time() - envelope.received_at:.3f}s",
            note="already there" if result.duplicate else None,
        )
    for rcpt, reason in attempt.failed:
        state.done.append(rcpt)
        mail_log("bounced", qid=qid, to=f"<{rcpt}>", sender=f"<{envelope.mail_from}>", relay="local", reason=reason)
    if not attempt.temporary_error and not attempt.pending_remote:
        attempt.finished = True
    return attempt
