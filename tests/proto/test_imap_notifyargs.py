"""The NOTIFY argument grammar (RFC 5465 §8) and its event rules (§5, §6.1)."""

import pytest
from hypothesis import given, settings, strategies as st

from hatoba.proto.imap.args import ArgError, ArgRefused, CommandReader, RawCommand
from hatoba.proto.imap.notifyargs import SUPPORTED_EVENTS, EventGroup, parse_notify
from hatoba.proto.imap.types import FetchItem, Section


def notify(line: str, **kw):
    reader = CommandReader()
    reader.feed(f"t NOTIFY {line}\r\n".encode())
    cmd = reader.next()
    assert isinstance(cmd, RawCommand), cmd
    return parse_notify(cmd.args, **kw)


def test_none_turns_notifications_off():
    assert notify("NONE") is None
    assert notify("none") is None


def test_set_with_status_and_every_filter():
    request = notify(
        "SET STATUS (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS (From Subject)]) MessageExpunge FlagChange))"
        ' (subtree (Lists "Other Lists") (MessageNew MessageExpunge)) (mailboxes misc (FlagChange))'
        " (inboxes (MessageNew)) (personal (MailboxName SubscriptionChange)) (subscribed NONE)")
    assert request.status
    selected, subtree, mailboxes, inboxes, personal, subscribed = request.groups
    assert selected == EventGroup("SELECTED", frozenset({"MessageNew", "MessageExpunge", "FlagChange"}), (), (
        FetchItem("UID"), FetchItem("BODY", Section((), "HEADER.FIELDS", ("FROM", "SUBJECT")), peek=True)))
    assert request.selected is selected
    assert subtree.filter == "SUBTREE" and subtree.mailboxes == ("Lists", "Other Lists")
    assert mailboxes.mailboxes == ("misc",) and mailboxes.events == {"FlagChange"}
    assert inboxes.filter == "INBOXES" and personal.events == {"MailboxName", "SubscriptionChange"}
    assert subscribed.events == frozenset()
    assert request.others == (subtree, mailboxes, inboxes, personal)  # NONE watches nothing
    assert request.unsupported == ()


def test_event_names_and_filters_are_case_insensitive():
    request = notify("set (SELECTED-delayed (messagenew MESSAGEEXPUNGE)) (MAILBOXES inbox (mailboxname))")
    assert request.selected.filter == "SELECTED-DELAYED"
    assert request.selected.events == {"MessageNew", "MessageExpunge"}
    assert request.groups[1].mailboxes == ("INBOX",) and request.groups[1].events == {"MailboxName"}
    assert not request.status


def test_mailbox_names_are_modified_utf7_unless_utf8_is_enabled():
    assert notify("SET (mailboxes &AOk-t&AOk- (MessageNew))").groups[0].mailboxes == ("été",)
    assert notify('SET (mailboxes "été" (MessageNew))', utf8_accepted=True).groups[0].mailboxes == ("été",)
    with pytest.raises(ArgRefused):  # well-formed, but no mailbox has such a name: NO
        notify("SET (mailboxes &Jjo (MessageNew))")


def test_unsupported_events_are_reported_not_refused_as_syntax():
    request = notify("SET (personal (MessageNew MessageExpunge AnnotationChange MailboxMetadataChange XFuture))")
    assert request.unsupported == ("AnnotationChange", "MailboxMetadataChange", "XFuture")
    assert "AnnotationChange" not in SUPPORTED_EVENTS
    assert notify("SET (selected (MessageNew MessageExpunge AnnotationChange))").unsupported == ("AnnotationChange",)


@pytest.mark.parametrize("line", [
    "",
    "SET",
    "SET STATUS",
    "FOO (selected (MessageNew MessageExpunge))",
    "NONE (selected (MessageNew MessageExpunge))",
    "SET selected (MessageNew MessageExpunge)",
    "SET (selected)",
    "SET (nowhere (MessageNew))",
    "SET (subtree (MessageNew))",
    "SET (subtree () (MessageNew))",
    "SET (mailboxes a b (MessageNew))",
    "SET (personal ())",
    "SET (personal MessageNew)",
    'SET (personal ("MessageNew"))',
    "SET (personal (MessageNew)) STATUS",
    "SET (selected (MessageNew MessageExpunge)) (selected-delayed (MessageNew MessageExpunge))",
    # RFC 5465 §5: MessageNew and MessageExpunge together; FlagChange needs both
    "SET (selected (MessageNew))",
    "SET (selected (MessageExpunge))",
    "SET (selected-delayed (FlagChange))",
    "SET (selected (FlagChange MessageNew))",
    # RFC 5465 §6.1: only message events for the selected mailbox
    "SET (selected (MessageNew MessageExpunge MailboxName))",
    # fetch attributes: only after MessageNew, once, for the selected mailbox, well-formed
    "SET (selected (MessageExpunge (UID) MessageNew))",
    "SET (selected (MessageNew (UID) (FLAGS) MessageExpunge))",
    "SET (personal (MessageNew (UID) MessageExpunge))",
    "SET (selected (MessageNew () MessageExpunge))",
    "SET (selected (MessageNew (ALL) MessageExpunge))",
    "SET (selected (MessageNew (BODY[BAD]) MessageExpunge))",
])
def test_syntax_and_rule_errors_are_bad(line):
    with pytest.raises(ArgError) as caught:
        notify(line)
    assert not isinstance(caught.value, ArgRefused)  # BAD, not NO


def test_other_mailboxes_take_message_events_alone():
    # Dovecot's imaptest "notify" expects these to succeed; they only choose STATUS items.
    for events in ("MessageNew", "MessageExpunge", "FlagChange"):
        assert notify(f"SET STATUS (mailboxes x ({events}))").groups[0].events == {events}


def test_duplicate_mailboxes_and_events_count_once():
    group = notify("SET (mailboxes (a b a) (MessageNew MessageNew))").groups[0]
    assert group.mailboxes == ("a", "b") and group.events == {"MessageNew"}


_WORDS = st.sampled_from(["SET", "NONE", "STATUS", "selected", "subtree", "mailboxes", "personal", "MessageNew",
                          "MessageExpunge", "FlagChange", "NONE", "(", ")", "(UID)", "a", '"b c"', "INBOX"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_WORDS, max_size=12))
def test_any_word_soup_is_parsed_or_refused_cleanly(words):
    reader = CommandReader()
    reader.feed(("t NOTIFY " + " ".join(words) + "\r\n").encode())
    cmd = reader.next()
    if not isinstance(cmd, RawCommand):
        return  # unbalanced parentheses: the reader's BAD
    try:
        parse_notify(cmd.args)
    except ArgError:
        pass
