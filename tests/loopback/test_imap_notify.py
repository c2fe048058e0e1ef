"""NOTIFY (RFC 5465) over real connections: news of other sessions, deliveries and
folder changes arrive unasked, between commands and in IDLE."""

from __future__ import annotations

import imaplib
import re
import smtplib
import threading
import time

import pytest

from hatoba.imap import cmd_notify as imap_cmd_notify, notify as imap_notify

BOB = ("bob@example.test", "bob-password-1")
SUPPORTED = "[BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)]"


def client(server, home) -> imaplib.IMAP4_SSL:
    m = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=home.client_context(), timeout=10)
    m.login(*BOB)
    return m


def raw(m: imaplib.IMAP4, command: str) -> tuple[str, list[bytes]]:
    """Send one command; (tagged line, untagged lines before it, without CRLF)."""
    tag = m._new_tag().decode()
    m.send(f"{tag} {command}\r\n".encode())
    lines: list[bytes] = []
    while True:
        line = m._get_line()
        if line.startswith(tag.encode() + b" "):
            return line.decode("utf-8", "replace"), lines
        lines.append(line)


def ok(m: imaplib.IMAP4, command: str) -> list[bytes]:
    status, lines = raw(m, command)
    assert " OK " in status, status
    return lines


def heard(m: imaplib.IMAP4, until: bytes, timeout: float = 10.0) -> list[bytes]:
    """Lines the server sends without being asked, up to the first that holds `until`."""
    m.sock.settimeout(timeout)
    lines = []
    while True:
        line = m.readline()
        assert line, "connection closed"
        lines.append(line)
        if until in line:
            return lines


def message(subject: str) -> bytes:
    # From another domain: mail from outside claiming one of ours would go to Junk.
    return f"From: a@elsewhere.example\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n".encode()


def append(m: imaplib.IMAP4, folder: str, subject: str, flags: str | None = None) -> None:
    assert m.append(folder, flags, None, message(subject))[0] == "OK"


def deliver(server, home, subject: str, count_after: int) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as c:
        c.sendmail("someone@elsewhere.example", [BOB[0]], message(subject))
    assert len(home.wait_messages(BOB[0], count_after)) == count_after


def status_items(line: bytes) -> dict[str, int]:
    inner = re.search(rb"\((.*)\)", line).group(1).decode().split()
    return {inner[i]: int(inner[i + 1]) for i in range(0, len(inner), 2)}


@pytest.fixture
def two(server, hatoba_home):
    """Two sessions of bob: `a` listens, `b` makes the changes."""
    a, b = client(server, hatoba_home), client(server, hatoba_home)
    yield a, b
    for m in (a, b):
        try:
            m.logout()
        except (imaplib.IMAP4.abort, OSError):
            pass


def test_notify_is_announced_once_logged_in(server, hatoba_home):
    m = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=hatoba_home.client_context(), timeout=10)
    assert b"NOTIFY" not in m.capability()[1][0].split()
    assert " BAD " in raw(m, "NOTIFY NONE")[0]  # not before login
    m.login(*BOB)
    assert b"NOTIFY" in m.capability()[1][0].split()
    m.logout()


def test_set_status_reports_each_watched_mailbox_at_once(two):
    a, b = two
    ok(b, "CREATE Lists")
    append(b, "Lists", "one")
    append(b, "Lists", "two", r"(\Seen)")
    a.select("INBOX")
    lines = ok(a, "NOTIFY SET STATUS (mailboxes (Lists INBOX) (MessageNew MessageExpunge)) (subtree Archive (FlagChange))")
    by_name = {line.split()[2]: status_items(line) for line in lines if line.startswith(b"* STATUS ")}
    assert set(by_name) == {b"Lists", b"Archive"}  # INBOX is selected: no STATUS for it
    lists = by_name[b"Lists"]
    assert lists["MESSAGES"] == 2 and lists["UIDNEXT"] == 3 and lists["UNSEEN"] == 1 and lists["UIDVALIDITY"] > 0
    assert {"UIDVALIDITY", "HIGHESTMODSEQ"} <= set(by_name[b"Archive"])  # RFC 5465 §3.1 for FlagChange
    # Without STATUS the NOTIFY only watches.
    assert not [l for l in ok(a, "NOTIFY SET (mailboxes Lists (MessageNew MessageExpunge))") if b"STATUS" in l]


def test_delivery_to_another_mailbox_is_told_without_idle(two, server, hatoba_home):
    a, b = two
    a.select("Sent")
    ok(a, "NOTIFY SET (inboxes (MessageNew MessageExpunge))")
    sender = threading.Thread(target=deliver, args=(server, hatoba_home, "pushed", 1))
    sender.start()
    line = heard(a, b"* STATUS")[-1]
    sender.join(10)  # it looks for the file, which the EXPUNGE below removes
    assert line.startswith(b"* STATUS INBOX ")
    assert status_items(line) == {"MESSAGES": 1, "UIDNEXT": 2, "UNSEEN": 1}
    b.select("INBOX")
    b.store("1", "+FLAGS", r"(\Deleted)")
    b.expunge()  # MessageExpunge: told too; the flag change is not asked for
    assert status_items(heard(a, b"* STATUS")[-1]) == {"MESSAGES": 0, "UIDNEXT": 2, "UNSEEN": 0}
    ok(a, "NOOP")


def test_message_new_fetches_what_was_asked_for_the_selected_mailbox(two):
    a, b = two
    a.select("INBOX")
    ok(a, "NOTIFY SET (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS (Subject)]) MessageExpunge))")
    append(b, "INBOX", "hello")
    lines = heard(a, b")\r\n")
    assert lines[0] == b"* 1 EXISTS\r\n"
    fetch = b"".join(lines[1:])
    assert re.search(rb"\* 1 FETCH \(UID 1 BODY\[HEADER\.FIELDS \(SUBJECT\)\] \{\d+\}\r\nSubject: hello\r\n", fetch)
    b.select("INBOX")
    b.store("1", "+FLAGS", r"(\Deleted)")
    b.expunge()
    assert heard(a, b"EXPUNGE")[-1] == b"* 1 EXPUNGE\r\n"  # SELECTED: at once, between commands
    # The client's own APPEND brings no FETCH (RFC 5465 §5.2).
    lines = ok(a, "APPEND INBOX {%d+}\r\n%s" % (len(message("mine")), message("mine").decode()))
    assert b"* 1 EXISTS" in lines and not [l for l in lines if b"FETCH" in l], lines


def test_flag_changes_by_another_session(two):
    a, b = two
    append(b, "INBOX", "first")
    ok(b, "CREATE Lists")
    append(b, "Lists", "listed")
    a.select("INBOX")
    ok(a, "NOTIFY SET (selected (MessageNew MessageExpunge FlagChange)) (mailboxes Lists (FlagChange))")
    b.select("INBOX")
    b.store("1", "+FLAGS", r"(\Flagged)")
    line = heard(a, b"FETCH")[-1]
    assert line.startswith(b"* 1 FETCH (FLAGS (") and b"\\Flagged" in line and b"UID 1" in line
    b.select("Lists")
    b.store("1", "+FLAGS", r"(\Seen)")
    line = heard(a, b"* STATUS")[-1]
    assert line.startswith(b"* STATUS Lists ")
    items = status_items(line)
    assert items["UNSEEN"] == 0 and items["HIGHESTMODSEQ"] > 0 and items["UIDVALIDITY"] > 0
    # Without FlagChange, a flag change waits for the next command; a new message does not.
    ok(a, "NOTIFY SET (selected (MessageNew MessageExpunge))")
    b.select("INBOX")
    b.store("1", "-FLAGS", r"(\Flagged)")
    append(b, "INBOX", "second")
    assert heard(a, b"EXISTS")[0] == b"* 2 EXISTS\r\n"  # the FETCH did not come first
    fetched = [l for l in ok(a, "NOOP") if b"FETCH" in l]
    assert len(fetched) == 1 and fetched[0].startswith(b"* 1 FETCH") and b"\\Flagged" not in fetched[0]


def test_folders_made_renamed_and_deleted_are_listed(two):
    a, b = two
    ok(a, "NOTIFY SET (personal (MailboxName))")
    assert not [l for l in ok(a, "CREATE Mine") if b"LIST" in l]  # its own change: not told
    ok(b, "CREATE Projects.Alpha")
    assert heard(a, b"Alpha") == [b'* LIST (\\HasChildren) "." Projects\r\n',
                                  b'* LIST (\\HasNoChildren) "." Projects.Alpha\r\n']
    ok(b, "RENAME Projects Work")
    assert heard(a, b"Work.Alpha") == [b'* LIST (\\HasChildren) "." Work ("OLDNAME" (Projects))\r\n',
                                       b'* LIST (\\HasNoChildren) "." Work.Alpha ("OLDNAME" (Projects.Alpha))\r\n']
    ok(b, "DELETE Work.Alpha")
    assert heard(a, b"LIST") == [b'* LIST (\\NonExistent) "." Work.Alpha\r\n']
    ok(b, 'CREATE "Caf&AOk-"')
    assert heard(a, b"LIST") == [b'* LIST (\\HasNoChildren) "." Caf&AOk-\r\n']  # modified UTF-7, as LIST says


def test_subscription_changes_and_the_subscribed_filter(two):
    a, b = two
    ok(b, "CREATE News")
    ok(a, "NOTIFY SET (subscribed (MessageNew MessageExpunge SubscriptionChange))")
    ok(b, "SUBSCRIBE News")
    assert heard(a, b"LIST") == [b'* LIST (\\HasNoChildren \\Subscribed) "." News\r\n']
    append(b, "News", "one")  # subscribed now, so watched now (RFC 5465 §6.4)
    line = heard(a, b"STATUS")[-1]
    assert line.startswith(b"* STATUS News ") and status_items(line)["MESSAGES"] == 1
    ok(b, "UNSUBSCRIBE News")
    assert heard(a, b"LIST") == [b'* LIST (\\HasNoChildren) "." News\r\n']
    append(b, "News", "two")  # not watched any more ...
    append(b, "INBOX", "three")  # ... INBOX is (every user is subscribed to it)
    assert heard(a, b"STATUS")[-1].startswith(b"* STATUS INBOX ")


def test_notify_none_stops_the_news(two, server, hatoba_home):
    a, b = two
    ok(a, "NOTIFY SET (inboxes (MessageNew MessageExpunge))")
    deliver(server, hatoba_home, "one", 1)
    assert heard(a, b"STATUS")[-1].startswith(b"* STATUS INBOX ")
    ok(a, "NOTIFY NONE")
    deliver(server, hatoba_home, "two", 2)
    append(b, "INBOX", "three")
    time.sleep(0.5)
    assert not [l for l in ok(a, "NOOP") if b"STATUS" in l]


def test_unsupported_events_and_syntax_errors(two, server, hatoba_home):
    a, b = two
    ok(a, "NOTIFY SET (inboxes (MessageNew MessageExpunge))")
    status, _ = raw(a, "NOTIFY SET (personal (MessageNew MessageExpunge AnnotationChange))")
    assert status.split(" ", 1)[1].startswith(f"NO {SUPPORTED} ")
    for bad in ("NOTIFY SET (selected (MessageNew))", "NOTIFY SET (selected (FlagChange))",
                "NOTIFY SET (selected (MessageNew MessageExpunge MailboxName))", "NOTIFY BOGUS",
                "NOTIFY SET (personal (MessageNew (UID) MessageExpunge))", "NOTIFY SET (somewhere (MessageNew))",
                "NOTIFY SET (selected (MessageNew MessageExpunge)) (selected-delayed NONE)"):
        assert " BAD " in raw(a, bad)[0], bad
    # A NOTIFY that failed leaves the one before in effect.
    deliver(server, hatoba_home, "still", 1)
    assert heard(a, b"STATUS")[-1].startswith(b"* STATUS INBOX ")


def test_selected_delayed_keeps_expunges_for_a_command(two):
    a, b = two
    append(b, "INBOX", "one")
    a.select("INBOX")
    ok(a, "NOTIFY SET (selected-delayed (MessageNew MessageExpunge))")
    b.select("INBOX")
    b.store("1", "+FLAGS", r"(\Deleted)")
    b.expunge()
    append(b, "INBOX", "two")
    assert heard(a, b"EXISTS")[0] == b"* 2 EXISTS\r\n"  # no EXPUNGE before it: numbers kept
    assert b"* 1 EXPUNGE" in ok(a, "NOOP")


def test_idle_reports_other_mailboxes_too(two):
    a, b = two
    ok(b, "CREATE Lists")
    a.select("INBOX")
    ok(a, "NOTIFY SET (selected (MessageNew MessageExpunge)) (mailboxes Lists (MessageNew MessageExpunge))")
    tag = a._new_tag().decode()
    a.send(f"{tag} IDLE\r\n".encode())
    assert a.readline().startswith(b"+")
    append(b, "Lists", "listed")
    assert heard(a, b"STATUS")[-1].startswith(b"* STATUS Lists (MESSAGES 1 UIDNEXT 2 UNSEEN 1)")
    append(b, "INBOX", "inboxed")
    assert heard(a, b"EXISTS")[-1] == b"* 1 EXISTS\r\n"
    a.send(b"DONE\r\n")
    assert heard(a, tag.encode())[-1].startswith(tag.encode() + b" OK")


def test_too_many_mailboxes_in_one_notify(two):
    a, _ = two
    names = " ".join(f"m{i:03}" for i in range(251))
    status, _ = raw(a, f"NOTIFY SET (mailboxes ({names}) (MessageNew MessageExpunge))")
    assert status.split(" ", 1)[1].startswith("NO [NOTIFICATIONOVERFLOW] ")
    names = " ".join(f"m{i:03}" for i in range(250))
    ok(a, f"NOTIFY SET (mailboxes ({names}) (MessageNew MessageExpunge))")


def test_too_much_news_during_a_command_turns_notify_off(two, monkeypatch):
    monkeypatch.setattr(imap_notify, "MAX_PENDING", 3)
    a, b = two
    ok(a, "NOTIFY SET (personal (MailboxName))")
    data = message("slow")
    tag = a._new_tag().decode()
    a.send(f"{tag} APPEND INBOX {{{len(data)}}}\r\n".encode())
    assert a.readline().startswith(b"+")  # a command in progress: news is kept, not sent
    for n in range(5):
        ok(b, f"CREATE Box{n}")
    a.send(data + b"\r\n")
    lines = heard(a, b"NOTIFICATIONOVERFLOW")
    assert lines[0].startswith(tag.encode() + b" OK") and lines[-1].startswith(b"* OK [NOTIFICATIONOVERFLOW]")
    assert not [l for l in lines if b"LIST" in l]
    ok(b, "CREATE After")  # as after NOTIFY NONE
    time.sleep(0.5)
    assert not [l for l in ok(a, "NOOP") if b"LIST" in l]


def test_many_new_messages_come_as_exists_only(two, monkeypatch):
    monkeypatch.setattr(imap_cmd_notify, "MAX_EAGER_FETCH", 2)
    a, b = two
    a.select("INBOX")
    ok(a, "NOTIFY SET (selected (MessageNew (UID FLAGS) MessageExpunge))")
    literals = [message(s) for s in ("one", "two", "three")]
    command = "APPEND INBOX " + " ".join("{%d+}\r\n" % len(d) + d.decode() for d in literals)
    ok(b, command)  # MULTIAPPEND: three new messages at once
    append(b, "INBOX", "four")
    lines = heard(a, b"FETCH")
    assert [l for l in lines if not l.startswith(b"* 3 RECENT") and not l.startswith(b"* 4 RECENT")] == [
        b"* 3 EXISTS\r\n", b"* 4 EXISTS\r\n", b"* 4 FETCH (UID 4 FLAGS (\\Recent))\r\n"]
