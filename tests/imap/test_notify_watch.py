"""Watch (imap/notify.py): which changes a NOTIFY SET keeps for its client, and the bound."""

from hatoba.imap import notify as imap_notify
from hatoba.imap.notify import Watch, watched_count
from hatoba.proto.imap.args import CommandReader
from hatoba.proto.imap.notifyargs import NotifySet, parse_notify
from hatoba.store.changes import EXPUNGED, FLAGS, NEW, NameChanged, SubscriptionChanged, in_folder


def request(groups: str) -> NotifySet:
    reader = CommandReader()
    reader.feed(f"t NOTIFY SET {groups}\r\n".encode())
    return parse_notify(reader.next().args)


def watch(groups: str, subscribed=()) -> Watch:
    return Watch(request(groups), set(subscribed))


def test_message_changes_become_status_news_for_watched_folders_only():
    w = watch("(subtree Lists (MessageNew MessageExpunge)) (inboxes (FlagChange))")
    w.note((in_folder("Lists.ietf", NEW), in_folder("Listsx", NEW), in_folder("Other", NEW),
            in_folder("INBOX", NEW), in_folder("INBOX", FLAGS), in_folder("Lists", EXPUNGED, FLAGS)),
           own=False, selected=None)
    selected, names, statuses = w.take()
    assert not selected and names == []
    assert statuses == {"Lists.ietf": {"MessageNew"}, "INBOX": {"FlagChange"}, "Lists": {"MessageExpunge"}}
    assert not w.due and w.take() == (False, [], {})


def test_own_changes_are_not_told_and_the_selected_mailbox_gets_no_status():
    w = watch("(selected (MessageNew MessageExpunge)) (personal (MessageNew MessageExpunge MailboxName))")
    w.note((in_folder("Sent", NEW), NameChanged("Made")), own=True, selected="INBOX")
    assert not w.due
    w.note((in_folder("INBOX", FLAGS),), own=False, selected="INBOX")
    assert not w.due  # FlagChange was not asked for the selected mailbox
    w.note((in_folder("INBOX", NEW),), own=False, selected="INBOX")
    assert w.take() == (True, [], {})


def test_renames_match_on_either_name():
    w = watch("(mailboxes Old (MailboxName))")
    w.note((NameChanged("New", "Old"), NameChanged("Else")), own=False, selected=None)
    assert w.take()[1] == [NameChanged("New", "Old")]


def test_subscribed_filter_follows_subscriptions_even_the_clients_own():
    w = watch("(subscribed (MessageNew MessageExpunge SubscriptionChange))", subscribed={"INBOX"})
    w.note((SubscriptionChanged("News", True),), own=True, selected=None)
    assert not w.due
    w.note((in_folder("News", NEW),), own=False, selected=None)
    assert w.take()[2] == {"News": {"MessageNew"}}
    w.note((SubscriptionChanged("News", False),), own=False, selected=None)
    w.note((in_folder("News", NEW),), own=False, selected=None)
    assert w.take() == (False, [SubscriptionChanged("News", False)], {})  # told, then no longer watched


def test_too_much_news_overflows_and_keeps_nothing(monkeypatch):
    monkeypatch.setattr(imap_notify, "MAX_PENDING", 2)
    w = watch("(personal (MessageNew MessageExpunge MailboxName))")
    w.note((in_folder("A", NEW), in_folder("A", EXPUNGED), NameChanged("B")), own=False, selected=None)
    assert not w.overflowed  # one folder's STATUS news counts once
    w.note((in_folder("C", NEW),), own=False, selected=None)
    assert w.overflowed and w.due and w.take() == (False, [], {})
    w.note((in_folder("D", NEW),), own=False, selected=None)
    assert w.take() == (False, [], {})


def test_watched_count_counts_names_and_subscriptions():
    assert watched_count(request("(mailboxes (a b) (MessageNew)) (subtree c (MessageNew))"), set()) == 3
    assert watched_count(request("(subscribed (MessageNew))"), {"x", "y"}) == 2
    assert watched_count(request("(subscribed NONE)"), {"x", "y"}) == 0
