"""The NO texts IMAP clients get for store refusals: each store error type
(plain words, no IMAP syntax) led by its RFC 5530 response code."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from hatoba.imap.replies import STORE_CODES, store_refusal
from hatoba.store import errors
from hatoba.store.errors import MailboxError, MailboxReset
from hatoba.store.folder_tree import MailboxStore
from hatoba.store.uidlist import MAX_KEYWORDS

USER = "bob@example.test"
MSG = b"Subject: hi\r\n\r\nbody\r\n"


def refusal(call, *args, **kw) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(MailboxError) as info:
        call(*args, **kw)
    return store_refusal(info.value)


def test_store_refusals_keep_their_response_codes_and_words(tmp_path: Path, monkeypatch):
    boxes = MailboxStore(tmp_path / "mail", hostname="imap.example.test").for_user(USER)
    boxes.ensure_defaults()
    assert refusal(boxes.open, "Nope") == "[NONEXISTENT] No such mailbox"
    assert refusal(boxes.create, "Sent") == "[ALREADYEXISTS] Mailbox already exists"
    assert refusal(boxes.rename, "Sent", "Trash") == "[ALREADYEXISTS] Target mailbox already exists"
    assert refusal(boxes.rename, "Sent", "Sent.Old") == "[CANNOT] Cannot move a mailbox into itself"
    assert refusal(boxes.delete, "INBOX") == "[CANNOT] INBOX cannot be deleted"
    assert refusal(boxes.create, "a/b") == "[CANNOT] Invalid mailbox name"
    assert refusal(boxes.create, "x" * 300) == "[CANNOT] Mailbox name is too long"
    boxes.create("Jobs.Old")
    boxes.delete("Jobs")  # has a child: becomes \Noselect
    assert refusal(boxes.delete, "Jobs") == "[HASCHILDREN] Mailbox has children; delete them first"

    inbox = boxes.open("INBOX")
    uid = inbox.append(MSG)
    inbox.sync()
    assert refusal(inbox.store_flags, [uid], "+", ["\\Bogus"]) == "[CANNOT] Flag \\Bogus cannot be stored"
    assert refusal(inbox.store_flags, [uid], "+", ["bad(keyword"]) == "[CANNOT] Invalid keyword"
    too_many = [f"k{i}" for i in range(MAX_KEYWORDS + 1)]
    assert refusal(inbox.store_flags, [uid], "+", too_many) == "[LIMIT] Too many keywords in this mailbox"
    assert refusal(boxes.open("INBOX", readonly=True).expunge) == "[READ-ONLY] Mailbox was opened read-only"

    import hatoba.store.mailbox_view as mailbox_view

    def full(path, data, mode):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mailbox_view, "write_new_file", full)
    assert refusal(inbox.append, MSG) == "[OVERQUOTA] Not enough disk space"
    monkeypatch.undo()

    inbox.store_flags([uid], "+", ["\\Deleted"])
    inbox.expunge()
    assert refusal(inbox.read, uid) == "[EXPUNGEISSUED] Message was expunged"
    assert store_refusal(MailboxReset()) == "[CANNOT] Mailbox was reset (new UIDVALIDITY); select it again"


def test_over_quota(tmp_path: Path):
    boxes = MailboxStore(tmp_path / "mail", quota_bytes=10).for_user(USER)
    assert refusal(boxes.open("INBOX").append, MSG) == "[OVERQUOTA] Quota exceeded"


def test_every_store_error_has_a_response_code_and_no_imap_syntax_of_its_own():
    kinds = [k for k in vars(errors).values()
             if isinstance(k, type) and issubclass(k, MailboxError) and k is not MailboxError]
    assert set(kinds) == set(STORE_CODES)
    for kind in kinds:
        assert not str(kind("some detail")).startswith("["), kind
        assert not kind.detail.startswith("["), kind
    assert store_refusal(MailboxError("Plain words")) == "Plain words"  # no code for the base type
