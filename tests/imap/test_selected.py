"""The selected mailbox of one session: what it holds while idle, and what it tells when."""

from __future__ import annotations

from pathlib import Path

from hatoba.imap.selected import SelectedMailbox
from hatoba.store.folder_tree import MailboxStore
from hatoba.store.maildir import MaildirStore

USER = "bob@example.test"


def deliver(root: Path, n: int, start: int = 0) -> None:
    store = MaildirStore(root, hostname="mx.example.test")
    src = root.parent / "m.eml"
    for i in range(start, start + n):
        src.write_bytes(b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i))
        store.deliver(USER, src, unique_key=f"k{i:04d}", timestamp=1700000000 + i)


def open_two(root: Path) -> tuple[SelectedMailbox, SelectedMailbox]:
    mailboxes = MailboxStore(root, hostname="imap.example.test").for_user(USER)
    one = SelectedMailbox.open(mailboxes.open("INBOX"), readonly=False, condstore=False)
    two = SelectedMailbox.open(mailboxes.open("INBOX"), readonly=False, condstore=False)
    return one, two


def holds_one_dict(view: SelectedMailbox) -> bool:
    """The session keeps its Mailbox's records dict itself, not a copy beside it."""
    return view.records is view.mailbox.lend_view()


def test_an_idle_session_holds_one_dict_of_records_before_and_after_news(tmp_path):
    root = tmp_path / "mail"
    deliver(root, 3)
    one, two = open_two(root)
    assert holds_one_dict(one) and one.uids == [1, 2, 3]
    deliver(root, 2, start=3)
    news = one.refresh(allow_expunge=True)
    assert b"* 5 EXISTS" in news
    assert one.uids == [1, 2, 3, 4, 5] and list(one.records) == [1, 2, 3, 4, 5]
    assert holds_one_dict(one)
    two.refresh(allow_expunge=True)  # a session changes only messages it was told of
    two.mailbox.store_flags([4], "+", ["\\Flagged"])
    assert b"FLAGS (\\Flagged" in one.refresh(allow_expunge=True)
    assert one.records[4].flags == {"\\Flagged"} and holds_one_dict(one)


def test_an_expunge_not_yet_told_keeps_the_message_and_its_own_dict(tmp_path):
    root = tmp_path / "mail"
    deliver(root, 3)
    one, two = open_two(root)
    two.mailbox.store_flags([2], "+", ["\\Deleted"])
    assert two.mailbox.expunge() == [2]
    news = one.refresh(allow_expunge=False)  # during FETCH, STORE or SEARCH by number
    assert b"EXPUNGE" not in news
    assert one.uids == [1, 2, 3] and 2 in one.records and one.pending_expunges == [2]
    assert list(one.mailbox.lend_view()) == [1, 3]  # the store's view moved on; the session's did not
    assert b"* 2 EXPUNGE" in one.refresh(allow_expunge=True)
    assert one.uids == [1, 3] and list(one.records) == [1, 3]
    assert holds_one_dict(one)


def test_flag_news_held_back_stays_out_of_the_records(tmp_path):
    root = tmp_path / "mail"
    deliver(root, 2)
    one, two = open_two(root)
    two.mailbox.store_flags([1], "+", ["\\Seen"])
    assert b"FETCH" not in one.refresh(allow_expunge=True, flags=False)
    assert one.records[1].flags == frozenset() and 1 in one.held_flags
    assert b"FLAGS (\\Seen" in one.refresh(allow_expunge=True)
    assert one.records[1].flags == {"\\Seen"} and holds_one_dict(one)


def test_what_the_session_drops_itself_leaves_the_store_view_alone(tmp_path):
    root = tmp_path / "mail"
    deliver(root, 3)
    one, _two = open_two(root)
    assert holds_one_dict(one)
    one.forget([2], qresync=True)  # as after its own EXPUNGE, were the store's view not yet changed
    assert list(one.records) == [1, 3]
    assert list(one.mailbox.lend_view()) == [1, 2, 3]


def test_sessions_in_step_share_one_dict_and_news_for_one_leaves_the_other_as_told(tmp_path):
    root = tmp_path / "mail"
    deliver(root, 3)
    one, two = open_two(root)
    assert one.records is two.records  # both see the folder as it is: one dict between them
    changed, _ = two.mailbox.store_flags([1], "+", ["\\Flagged"])  # two's STORE, as cmd_store does it
    for record in changed:
        two.set_record(record)
    assert two.records[1].flags == {"\\Flagged"}
    assert one.records[1].flags == frozenset()  # not told yet, and not changed under it
    deliver(root, 1, start=3)
    one.refresh(allow_expunge=True, flags=False)  # the flag change held back (NOTIFY without FlagChange)
    assert one.uids == [1, 2, 3, 4] and 1 in one.held_flags
    assert one.records[1].flags == frozenset()
    assert two.uids == [1, 2, 3] and list(two.records) == [1, 2, 3]  # told nothing of the new one yet
    assert b"FLAGS (\\Flagged" in one.refresh(allow_expunge=True)
    two.refresh(allow_expunge=True)
    assert one.records == two.records and one.records[1].flags == {"\\Flagged"}
    assert one.records is two.records  # in step again
