"""ESORT, PARTIAL and update contexts (RFC 5267: ESORT, CONTEXT=SEARCH, CONTEXT=SORT), and
SORT=DISPLAY (RFC 5957), over a real connection."""

from __future__ import annotations

import imaplib
import re

import pytest

BOB = ("bob@example.test", "bob-password-1")


def client(server, home) -> imaplib.IMAP4_SSL:
    m = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=home.client_context(), timeout=10)
    m.login(*BOB)
    return m


def raw(m: imaplib.IMAP4, command: str) -> tuple[str, list[bytes]]:
    """Send one command; (tagged line, untagged lines)."""
    tag = m._new_tag().decode()
    m.send(f"{tag} {command}\r\n".encode())
    lines: list[bytes] = []
    while True:
        line = m._get_line()
        if line.startswith(tag.encode() + b" "):
            return line.decode("utf-8", "replace"), lines
        lines.append(line)


def message(subject: str, sender: str) -> bytes:
    return f"From: {sender}\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n".encode()


@pytest.fixture
def five(server, hatoba_home):
    """INBOX with five messages: subjects e, c, a, d, b; senders in the same order."""
    m = client(server, hatoba_home)
    for letter in "ecadb":
        assert m.append("INBOX", None, None, message(letter, f"{letter}@example.test"))[0] == "OK"
    m.logout()
    return server


def test_capabilities_announce_esort_contexts_and_display_sort(five, hatoba_home):
    m = client(five, hatoba_home)
    caps = set(raw(m, "CAPABILITY")[1][0].decode().split())
    assert {"ESORT", "CONTEXT=SEARCH", "CONTEXT=SORT", "SORT=DISPLAY"} <= caps
    m.logout()


def test_esort_and_partial(five, hatoba_home):
    m = client(five, hatoba_home)
    m.select("INBOX")
    status, lines = raw(m, "SORT RETURN (MIN MAX COUNT ALL) (SUBJECT) US-ASCII ALL")
    tag = status.split()[0]
    assert " OK " in status
    # sorted: a=3 b=5 c=2 d=4 e=1; MIN and MAX are the first and last in that order
    assert lines == [f'* ESEARCH (TAG "{tag}") MIN 3 MAX 1 COUNT 5 ALL 3,5,2,4,1'.encode()]
    status, lines = raw(m, "SORT RETURN (PARTIAL 4:2) (DISPLAYFROM) US-ASCII ALL")
    assert lines == [f'* ESEARCH (TAG "{status.split()[0]}") PARTIAL (2:4 5,2,4)'.encode()]
    status, lines = raw(m, "SEARCH RETURN (PARTIAL 2:9) ALL")
    assert lines == [f'* ESEARCH (TAG "{status.split()[0]}") PARTIAL (2:9 2:5)'.encode()]
    status, lines = raw(m, "SEARCH RETURN (PARTIAL 6:7) ALL")
    assert lines == [f'* ESEARCH (TAG "{status.split()[0]}") PARTIAL (6:7 NIL)'.encode()]
    for bad in ("PARTIAL 1", "PARTIAL 1:*", "PARTIAL *:1"):
        assert " BAD " in raw(m, f"SEARCH RETURN ({bad}) ALL")[0]
        assert " BAD " in raw(m, f"SORT RETURN ({bad}) (ARRIVAL) US-ASCII ALL")[0]
    assert " BAD " in raw(m, "SORT (SUBJECT FOO) US-ASCII ALL")[0]
    m.logout()


def test_search_update_follows_flags_expunges_and_arrivals(five, hatoba_home):
    m = client(five, hatoba_home)
    m.select("INBOX")
    status, lines = raw(m, "SEARCH RETURN (UPDATE) SEEN")
    tag = status.split()[0]
    assert " OK " in status and "NOUPDATE" not in status
    assert lines == [f'* ESEARCH (TAG "{tag}")'.encode()]
    head = f'* ESEARCH (TAG "{tag}")'.encode()
    _, lines = raw(m, "STORE 1,2,4 +FLAGS.SILENT (\\Seen)")
    assert lines == [head + b" ADDTO (0 1:2,4)"]
    _, lines = raw(m, "STORE 1 -FLAGS.SILENT (\\Seen)")
    assert lines == [head + b" REMOVEFROM (0 1)"]
    raw(m, "STORE 3:4 +FLAGS.SILENT (\\Deleted)")  # 4 matched: its REMOVEFROM comes before its EXPUNGE
    _, lines = raw(m, "EXPUNGE")
    assert lines[0] == head + b" REMOVEFROM (0 4)" and sorted(lines[1:]) == [b"* 3 EXPUNGE", b"* 4 EXPUNGE"]
    # another session's changes arrive with the news (NOOP here)
    other = client(five, hatoba_home)
    other.append("INBOX", "(\\Seen)", None, message("f", "f@example.test"))
    other.select("INBOX")
    other.store("2", "-FLAGS", "(\\Seen)")
    other.logout()
    _, lines = raw(m, "NOOP")
    assert b"* 4 EXISTS" in lines
    assert head + b" REMOVEFROM (0 2)" in lines and head + b" ADDTO (0 4)" in lines, lines
    status, _ = raw(m, f'CANCELUPDATE "{tag}"')
    assert " OK " in status
    _, lines = raw(m, "STORE 1 +FLAGS.SILENT (\\Seen)")
    assert lines == []
    assert " BAD " in raw(m, f'CANCELUPDATE "{tag}"')[0]
    m.logout()


def test_uid_search_update_names_uids_and_pins_sequence_numbers(five, hatoba_home):
    m = client(five, hatoba_home)
    m.select("INBOX")
    uids = [int(u) for u in re.findall(rb"UID (\d+)", b" ".join(raw(m, "FETCH 1:* (UID)")[1]))]
    status, lines = raw(m, "UID SEARCH RETURN (UPDATE ALL) 2:3 UNFLAGGED")
    tag = status.split()[0]
    head = f'* ESEARCH (TAG "{tag}") UID'.encode()
    assert lines == [head + f" ALL {uids[1]}:{uids[2]}".encode()]
    raw(m, "STORE 1 +FLAGS.SILENT (\\Deleted)")
    raw(m, "EXPUNGE")  # message 2 is now number 1; "2:3" still means the messages it named
    _, lines = raw(m, "STORE 1:4 +FLAGS.SILENT (\\Flagged)")
    assert lines == [head + f" REMOVEFROM (0 {uids[1]}:{uids[2]})".encode()]
    _, lines = raw(m, "STORE 1:4 -FLAGS.SILENT (\\Flagged)")
    assert lines == [head + f" ADDTO (0 {uids[1]}:{uids[2]})".encode()]
    m.logout()


def test_sort_update_gives_places_in_the_sorted_result(five, hatoba_home):
    m = client(five, hatoba_home)
    m.select("INBOX")
    status, lines = raw(m, "SORT RETURN (UPDATE ALL) (SUBJECT) US-ASCII UNSEEN")
    tag = status.split()[0]
    head = f'* ESEARCH (TAG "{tag}")'.encode()
    assert lines == [head + b" ALL 3,5,2,4,1"]  # a b c d e
    _, lines = raw(m, "STORE 2,5 +FLAGS.SILENT (\\Seen)")  # c (place 3) and b (place 2) leave
    assert lines == [head + b" REMOVEFROM (3 2 2 5)"]  # last place first
    _, lines = raw(m, "STORE 2,5 -FLAGS.SILENT (\\Seen)")  # back: b to place 2, then c to place 3
    assert lines == [head + b" ADDTO (2 5 3 2)"]
    raw(m, "STORE 3 +FLAGS.SILENT (\\Deleted)")
    _, lines = raw(m, "EXPUNGE")
    assert lines == [head + b" REMOVEFROM (1 3)", b"* 3 EXPUNGE"]
    m.logout()


def test_update_contexts_are_bounded_per_session(five, hatoba_home):
    from hatoba.imap.contexts import MAX_UPDATE_CONTEXTS

    m = client(five, hatoba_home)
    m.select("INBOX")
    for _ in range(MAX_UPDATE_CONTEXTS):
        assert "NOUPDATE" not in raw(m, "SEARCH RETURN (UPDATE) SEEN")[0]
    status, lines = raw(m, "SEARCH RETURN (UPDATE COUNT) SEEN")
    tag = status.split()[0]
    assert f'OK [NOUPDATE "{tag}"]' in status and lines == [f'* ESEARCH (TAG "{tag}") COUNT 0'.encode()]
    _, lines = raw(m, "STORE 1 +FLAGS.SILENT (\\Seen)")
    assert len(lines) == MAX_UPDATE_CONTEXTS  # the refused one sends nothing
    # PARTIAL results are not kept up to date
    status, _ = raw(m, "UNSELECT")
    m.select("INBOX")
    status, _ = raw(m, "SEARCH RETURN (UPDATE PARTIAL 1:2) ALL")
    assert "NOUPDATE" in status
    m.logout()
