"""CONDSTORE switched on by a command that uses it (RFC 7162 §3.1) after a plain SELECT:
the mailbox's HIGHESTMODSEQ comes first, once, and ESEARCH answers a MODSEQ search key
with the MODSEQ of the messages it names (RFC 7162 §3.1.5)."""

from __future__ import annotations

import re

import pytest

from test_imap_extensions import client, raw


@pytest.fixture
def four(server, hatoba_home):
    m = client(server, hatoba_home)
    for i in range(4):
        assert m.append("INBOX", None, None, f"Subject: n{i}\r\n\r\nbody {i}\r\n".encode())[0] == "OK"
    m.logout()
    return server


def _modseq(line: bytes) -> int:
    return int(re.search(rb"MODSEQ \((\d+)\)", line).group(1))


def test_fetch_modseq_after_plain_select_sends_highestmodseq_first_and_once(four, hatoba_home):
    m = client(four, hatoba_home)
    status, lines = raw(m, "SELECT INBOX")
    assert not any(b"HIGHESTMODSEQ" in line for line in lines)
    status, lines = raw(m, "FETCH 1 MODSEQ")
    assert status.split()[1] == "OK"
    assert re.fullmatch(rb"\* OK \[HIGHESTMODSEQ \d+\].*", lines[0]), lines
    assert lines[1].startswith(b"* 1 FETCH (") and b"MODSEQ (" in lines[1], lines
    status, lines = raw(m, "FETCH 2 MODSEQ")
    assert not any(b"HIGHESTMODSEQ" in line for line in lines), lines
    m.logout()


def test_search_modseq_enables_condstore_and_esearch_returns_modseq(four, hatoba_home):
    m = client(four, hatoba_home)
    raw(m, "SELECT INBOX")
    status, lines = raw(m, "SEARCH MODSEQ 1")
    assert lines[0].startswith(b"* OK [HIGHESTMODSEQ "), lines
    mods = {}
    for n in (1, 3, 2, 4):  # message 2 changes after 3: the highest of 1:3
        status, lines = raw(m, f"STORE {n} +FLAGS (\\Seen)")
        mods[n] = _modseq(lines[0])

    def esearch(command: str) -> bytes:
        """What the one ESEARCH answer says after its tag."""
        status, lines = raw(m, command)
        assert status.split()[1] == "OK", status
        head = b'* ESEARCH (TAG "%s")' % status.split()[0].encode()
        assert len(lines) == 1 and lines[0].startswith(head), lines
        return lines[0][len(head):]

    assert esearch('SEARCH RETURN (MIN) 1:3 MODSEQ "/flags/\\\\seen" all 1') == b" MIN 1 MODSEQ %d" % mods[1]
    assert esearch('SEARCH RETURN (MAX) 1:3 MODSEQ "/flags/\\\\seen" all 1') == b" MAX 3 MODSEQ %d" % mods[3]
    assert esearch("SEARCH RETURN () 1:3 MODSEQ 1") == b" ALL 1:3 MODSEQ %d" % mods[2]
    assert esearch("SEARCH RETURN (COUNT) 1:3 MODSEQ 1") == b" COUNT 3 MODSEQ %d" % mods[2]
    assert esearch(f"SEARCH RETURN (ALL) 2:3 MODSEQ {mods[2]}") == b" ALL 2 MODSEQ %d" % mods[2]
    assert esearch(f"SEARCH RETURN (ALL) 1:3 MODSEQ {mods[4]}") == b""  # nothing matched: no MODSEQ
    assert esearch("SEARCH RETURN (MIN MAX) 1:4 ALL") == b" MIN 1 MAX 4"  # no MODSEQ key: no MODSEQ
    m.logout()


def test_store_unchangedsince_sends_highestmodseq_before_its_fetch(four, hatoba_home):
    m = client(four, hatoba_home)
    raw(m, "SELECT INBOX")
    status, lines = raw(m, "STORE 1 (UNCHANGEDSINCE 999999) +FLAGS (\\Flagged)")
    assert lines[0].startswith(b"* OK [HIGHESTMODSEQ "), lines
    assert lines[1].startswith(b"* 1 FETCH (") and b"MODSEQ (" in lines[1], lines
    m.logout()
